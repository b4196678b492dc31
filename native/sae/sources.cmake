# Sources of native/sae (see CMakeLists.txt for the variables).
set(QSAE_SAE_SOURCES native/sae/sae.cpp native/sae/activation_source.cpp native/sae/fused_cpu.cpp
    native/sae/kernels_generic.cpp native/sae/kernels_avx2.cpp native/sae/trainer.cpp native/sae/sae_cuda_fallback.cpp
    native/sae/splice.cpp native/sae/epilogue_cpu.cpp)
# The fused step's AVX2/FMA loops: compiled for AVX2 alone (runtime dispatch via qsae::cpu_has_avx2_fma()); no
# torch headers, so no precompiled header. The portable loops without errno-setting sqrt, so Adam vectorizes.
if(CMAKE_SYSTEM_PROCESSOR MATCHES "x86_64|AMD64|amd64")
  set_source_files_properties(native/sae/kernels_avx2.cpp PROPERTIES COMPILE_OPTIONS "-mavx2;-mfma"
                              SKIP_PRECOMPILE_HEADERS ON)
endif()
set_source_files_properties(native/sae/kernels_generic.cpp PROPERTIES COMPILE_OPTIONS "-fno-math-errno"
                            SKIP_PRECOMPILE_HEADERS ON)
# The CPU references of the CUDA epilogues are compared bit for bit: no fused multiply-adds (GCC contracts by default
# on aarch64 hosts such as GH200). No torch headers.
set_source_files_properties(native/sae/epilogue_cpu.cpp PROPERTIES COMPILE_OPTIONS "-ffp-contract=off"
                            SKIP_PRECOMPILE_HEADERS ON)
set(QSAE_SAE_CUDA_SOURCES native/sae/sae_kernels.cu)
set(QSAE_SAE_CUDA_GLUE native/sae/sae_cuda.cpp)
set(QSAE_SAE_BINDINGS native/addon/sae_binding.cpp)
set(QSAE_SAE_TESTS test/native/test_sae.cpp test/native/test_sae_fused.cpp test/native/test_sae_cuda.cpp test/native/test_sae_train.cpp test/native/test_splice.cpp)
set(QSAE_SAE_BENCHES bench/native/bench_sae.cpp)
