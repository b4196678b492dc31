// Precompiled header for the core, its tests and the addon: the heavy, stable includes only.
#pragma once
#include <ATen/ATen.h>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>
