# Sources of native/model (see CMakeLists.txt for the variables).
set(QSAE_MODEL_SOURCES)
