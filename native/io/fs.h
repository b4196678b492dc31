// Filesystem helpers: atomic writes (temp file in the same folder, fsync, rename) and path checks.
#pragma once
#include <cstddef>
#include <string>
#include <vector>

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

// Directory operations on POSIX calls. qsae avoids std::filesystem: PyTorch's libtorch.so (2.x wheels)
// exports its own std::filesystem symbols, the dynamic linker binds our calls to them, and they crash
// (seen with torch 2.11: std::filesystem::remove_all jumped to address 0).
std::string parent_dir(const std::string& path);    // "" when the path has no folder part
void make_dirs(const std::string& path);             // mkdir -p; throws naming the path
void remove_tree(const std::string& path) noexcept;  // rm -rf; silent when absent
void remove_file(const std::string& path) noexcept;
void rename_path(const std::string& from, const std::string& to);  // rename(2); throws naming both
std::vector<std::string> list_dir(const std::string& path);        // entry names, sorted, without . and ..
bool is_empty_dir(const std::string& path);

}  // namespace qsae
