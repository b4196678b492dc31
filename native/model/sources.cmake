# Sources of native/model (see CMakeLists.txt for the variables).
set(QSAE_MODEL_SOURCES native/model/config.cpp native/model/linear.cpp native/model/forward.cpp native/model/loader.cpp)
set(QSAE_MODEL_TESTS test/native/test_model.cpp test/native/test_model_cuda.cpp)
set(QSAE_MODEL_BINDINGS native/addon/model_binding.cpp)
set(QSAE_MODEL_BENCHES bench/native/bench_model.cpp)
