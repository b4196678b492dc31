// Shared helpers of the native benchmarks.
#pragma once
#include <algorithm>
#include <chrono>
#include <functional>
#include <vector>

namespace qsae::bench {
using clk = std::chrono::steady_clock;

// Median seconds of fn over repeats, after a warm-up: at least min_reps runs and min_time seconds (at most 200).
inline double time_it(const std::function<void()>& fn, int min_reps = 5, double min_time = 0.4) {
  fn();
  std::vector<double> t;
  const auto start = clk::now();
  while ((int)t.size() < min_reps || std::chrono::duration<double>(clk::now() - start).count() < min_time) {
    const auto t0 = clk::now();
    fn();
    t.push_back(std::chrono::duration<double>(clk::now() - t0).count());
    if (t.size() >= 200) break;
  }
  std::sort(t.begin(), t.end());
  return t[t.size() / 2];
}
}  // namespace qsae::bench
