// qsae's one exception type. The kind decides which JS error class the addon throws
// (TypeError for bad arguments, RangeError for shapes and ranges, Error otherwise).
#pragma once
#include <sstream>
#include <stdexcept>
#include <string>
#include <utility>

namespace qsae {

enum class ErrorKind { Generic, Type, Range, Cancelled };

class Error : public std::runtime_error {
 public:
  Error(ErrorKind kind, const std::string& message) : std::runtime_error(message), kind_(kind) {}
  ErrorKind kind() const noexcept { return kind_; }

 private:
  ErrorKind kind_;
};

namespace detail {
template <class... Args>
std::string concat(Args&&... args) {
  std::ostringstream os;
  (os << ... << std::forward<Args>(args));
  return os.str();
}
}  // namespace detail

template <class... Args>
[[noreturn]] void fail(Args&&... args) {
  throw Error(ErrorKind::Generic, detail::concat(std::forward<Args>(args)...));
}
template <class... Args>
[[noreturn]] void fail_type(Args&&... args) {
  throw Error(ErrorKind::Type, detail::concat(std::forward<Args>(args)...));
}
template <class... Args>
[[noreturn]] void fail_range(Args&&... args) {
  throw Error(ErrorKind::Range, detail::concat(std::forward<Args>(args)...));
}

}  // namespace qsae

// Checks that throw qsae::Error with a message built from the remaining arguments.
#define QSAE_CHECK(cond, ...)     \
  do {                            \
    if (!(cond)) ::qsae::fail(__VA_ARGS__); \
  } while (0)
#define QSAE_CHECK_TYPE(cond, ...) \
  do {                             \
    if (!(cond)) ::qsae::fail_type(__VA_ARGS__); \
  } while (0)
#define QSAE_CHECK_RANGE(cond, ...) \
  do {                              \
    if (!(cond)) ::qsae::fail_range(__VA_ARGS__); \
  } while (0)
