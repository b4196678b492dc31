// Include this instead of <doctest/doctest.h> in C++ tests.
// Note: c10 declares toString(ScalarType) returning const char*, which breaks doctest's decomposition of
// `CHECK(a.scalar_type() == b)`; wrap such comparisons in extra parentheses: CHECK((a == b)).
#pragma once
#include <ATen/ATen.h>
#include <doctest/doctest.h>
