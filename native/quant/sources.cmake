# Sources of native/quant (see CMakeLists.txt for the variables).
set(QSAE_QUANT_SOURCES native/quant/quant.cpp native/quant/linear.cpp native/quant/kernels_generic.cpp
    native/quant/kernels_avx2.cpp native/quant/checkpoint_quant.cpp)
# The AVX2/FMA loops: compiled for AVX2 alone (runtime dispatch via qsae::cpu_has_avx2_fma()); no torch headers,
# so no precompiled header.
if(CMAKE_SYSTEM_PROCESSOR MATCHES "x86_64|AMD64|amd64")
  set_source_files_properties(native/quant/kernels_avx2.cpp PROPERTIES COMPILE_OPTIONS "-mavx2;-mfma"
                              SKIP_PRECOMPILE_HEADERS ON)
endif()
set(QSAE_QUANT_BINDINGS native/addon/quant_binding.cpp)
set(QSAE_QUANT_CUDA_SOURCES native/quant/quant_kernels.cu)
set(QSAE_QUANT_CUDA_GLUE native/quant/quant_cuda.cpp)
set(QSAE_QUANT_TESTS test/native/test_quant.cpp test/native/test_quant_cuda.cpp)
set(QSAE_QUANT_BENCHES bench/native/bench_quant.cpp)
