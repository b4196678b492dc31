set(QSAE_IO_SOURCES native/io/safetensors.cpp native/io/checkpoint.cpp native/io/json.cpp native/io/fs.cpp)
set(QSAE_IO_BINDINGS native/addon/io_binding.cpp)
set(QSAE_IO_TESTS test/native/test_safetensors.cpp)
