// safetensors reader (mmap, zero-copy into torch tensors) and atomic writer.
// Format: 8-byte little-endian header length N, N bytes of JSON, then the data buffer.
// The header is validated strictly; every error names the file (and the tensor when there is one).
#pragma once
#include <ATen/ATen.h>

#include <map>
#include <memory>
#include <string>
#include <utility>
#include <vector>

namespace qsae {

struct TensorInfo {
  std::string name;
  std::string dtype;  // safetensors name: F32, BF16, ...
  std::vector<int64_t> shape;
  uint64_t begin = 0;  // byte range inside the data buffer
  uint64_t end = 0;
  int64_t numel() const;
};

// Parses and validates a header (the JSON text) against a data buffer of data_size bytes.
// Throws qsae::Error naming `path` on any problem. Exposed for tests and fuzzing.
struct ParsedHeader {
  std::vector<TensorInfo> tensors;  // in file order of their byte ranges
  std::map<std::string, std::string> metadata;
};
ParsedHeader parse_safetensors_header(const std::string& path, const char* json, size_t json_len,
                                      uint64_t data_size);

class SafetensorsFile {
 public:
  // Maps the file and validates its header. Throws on any problem.
  static std::shared_ptr<SafetensorsFile> open(const std::string& path);
  ~SafetensorsFile();
  SafetensorsFile(const SafetensorsFile&) = delete;
  SafetensorsFile& operator=(const SafetensorsFile&) = delete;

  const std::string& path() const { return path_; }
  const std::vector<TensorInfo>& tensors() const { return header_.tensors; }
  const std::map<std::string, std::string>& metadata() const { return header_.metadata; }
  const TensorInfo* find(const std::string& name) const;
  bool contains(const std::string& name) const { return find(name) != nullptr; }
  uint64_t file_size() const { return size_; }

  // A CPU tensor viewing the mapped bytes (zero-copy; copy-on-write, so writes never reach the file).
  // The tensor keeps the mapping alive. Misaligned data is copied instead.
  at::Tensor get(const std::string& name) const;
  // Raw bytes of a tensor (for U8 quant_state blobs and the like).
  std::string get_bytes(const std::string& name) const;

 private:
  SafetensorsFile() = default;
  std::string path_;
  int fd_ = -1;
  void* map_ = nullptr;
  uint64_t size_ = 0;
  uint64_t data_offset_ = 0;
  ParsedHeader header_;
  std::map<std::string, size_t> index_;
  std::weak_ptr<SafetensorsFile> self_;
};

// Writes tensors (any device; made contiguous on CPU) to `path` atomically: a temp file in the same
// folder, fsync, rename. Names are written in the given order.
void save_safetensors(const std::string& path, const std::vector<std::pair<std::string, at::Tensor>>& tensors,
                      const std::map<std::string, std::string>& metadata = {});

}  // namespace qsae
