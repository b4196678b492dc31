# Sources of native/analysis (see CMakeLists.txt for the variables).
set(QSAE_ANALYSIS_SOURCES)
