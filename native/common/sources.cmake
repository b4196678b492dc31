set(QSAE_COMMON_SOURCES native/common/runtime.cpp native/common/tensor_util.cpp)
set(QSAE_COMMON_CUDA_GLUE native/common/runtime_cuda.cpp)
set(QSAE_COMMON_BINDINGS native/addon/napi_util.cpp native/addon/common_binding.cpp)
set(QSAE_COMMON_TESTS test/native/test_common.cpp)
