# Sources of native/sae (see CMakeLists.txt for the variables).
set(QSAE_SAE_SOURCES native/sae/sae.cpp native/sae/activation_source.cpp native/sae/fused_cpu.cpp
    native/sae/trainer.cpp native/sae/sae_cuda_fallback.cpp native/sae/splice.cpp
    native/sae/epilogue_cpu.cpp)
set(QSAE_SAE_CUDA_SOURCES native/sae/sae_kernels.cu)
set(QSAE_SAE_CUDA_GLUE native/sae/sae_cuda.cpp)
set(QSAE_SAE_BINDINGS native/addon/sae_binding.cpp)
set(QSAE_SAE_TESTS test/native/test_sae.cpp test/native/test_sae_fused.cpp test/native/test_sae_cuda.cpp test/native/test_sae_train.cpp test/native/test_splice.cpp)
set(QSAE_SAE_BENCHES bench/native/bench_sae.cpp)
