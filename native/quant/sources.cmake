# Sources of native/quant (see CMakeLists.txt for the variables).
set(QSAE_QUANT_SOURCES)
