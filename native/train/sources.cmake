# Sources of native/train (small-LM training on the model runtime; see CMakeLists.txt for the variables).
set(QSAE_TRAIN_SOURCES native/train/lm_trainer.cpp native/train/lm_init.cpp)
set(QSAE_TRAIN_BINDINGS native/addon/train_binding.cpp)
