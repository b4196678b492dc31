// Filesystem helpers: atomic writes (temp file in the same folder, fsync, rename) and path checks.
#pragma once
#include <cstddef>
#include <string>

namespace qsae {

// Writes go to PATH.tmp-PID; commit() fsyncs and renames onto PATH. Destroyed without commit(),
// the temp file is removed, so an error or a kill leaves nothing half-written under PATH.
class AtomicFile {
 public:
  explicit AtomicFile(const std::string& path);
  ~AtomicFile();
  AtomicFile(const AtomicFile&) = delete;
  AtomicFile& operator=(const AtomicFile&) = delete;
  void write(const void* data, size_t size);
  void commit();

 private:
  std::string path_, tmp_;
  int fd_ = -1;
};

void write_file_atomic(const std::string& path, const std::string& bytes);
bool file_exists(const std::string& path);
bool is_directory(const std::string& path);
std::string join_path(const std::string& a, const std::string& b);

}  // namespace qsae
