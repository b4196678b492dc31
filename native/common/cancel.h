// Cooperative cancellation and progress for long native jobs. The core polls a CancelToken between
// units of work and reports Progress through a callback; the addon wires them to AbortSignal and a
// thread-safe JS function. Both are optional (null pointer / empty function = not requested).
#pragma once
#include <atomic>
#include <functional>
#include <string>

#include "common/error.h"

namespace qsae {

class CancelToken {
 public:
  void cancel() noexcept { cancelled_.store(true, std::memory_order_relaxed); }
  bool cancelled() const noexcept { return cancelled_.load(std::memory_order_relaxed); }
  // Throws ErrorKind::Cancelled when cancelled; call between units of work.
  void check() const {
    if (cancelled()) throw Error(ErrorKind::Cancelled, "operation was aborted");
  }

 private:
  std::atomic<bool> cancelled_{false};
};

inline void check_cancel(const CancelToken* token) {
  if (token) token->check();
}

struct Progress {
  std::string stage;  // short label, e.g. "extract" or "train"
  double done = 0;    // units done so far
  double total = 0;   // 0 when unknown
  std::string unit;   // "tokens", "steps", "tensors", ...
  std::string message;  // free text (loss, L0, ...), may be empty
};
using ProgressFn = std::function<void(const Progress&)>;

}  // namespace qsae
