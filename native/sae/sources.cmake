# Sources of native/sae (see CMakeLists.txt for the variables).
set(QSAE_SAE_SOURCES)
