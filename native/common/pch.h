// Precompiled header for the core, its tests and the addon: the heavy, stable includes only.
// Grad-mode guards and the CPU generator are included by name: PyTorch 2.x's ATen.h no longer pulls them in.
#pragma once
#include <ATen/ATen.h>
#include <ATen/CPUGeneratorImpl.h>
#include <ATen/Parallel.h>
#include <c10/core/GradMode.h>
#include <c10/core/InferenceMode.h>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>
