# Sources of native/sae (see CMakeLists.txt for the variables).
set(QSAE_SAE_SOURCES native/sae/sae.cpp native/sae/activation_source.cpp)
