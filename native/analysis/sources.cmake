# Sources of native/analysis (see CMakeLists.txt for the variables).
set(QSAE_ANALYSIS_SOURCES native/analysis/lap.cpp native/analysis/align.cpp native/analysis/transfer.cpp)
set(QSAE_ANALYSIS_BINDINGS native/addon/analysis_binding.cpp)
set(QSAE_ANALYSIS_TESTS test/native/test_analysis.cpp)
set(QSAE_ANALYSIS_BENCHES bench/native/bench_analysis.cpp)
