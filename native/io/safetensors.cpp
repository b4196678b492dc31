// safetensors: strict header validation, mmap + zero-copy reads, streaming atomic writes.
#include "io/safetensors.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>

#include "common/error.h"
#include "common/tensor_util.h"
#include "io/fs.h"
#include "io/json.h"

namespace qsae {

namespace {
// Header larger than this is refused: real headers are a few MB at most (100k tensors).
constexpr uint64_t kMaxHeader = 100ull << 20;

int64_t checked_numel(const std::string& path, const std::string& name, const std::vector<int64_t>& shape) {
  int64_t n = 1;
  for (int64_t d : shape) {
    if (d < 0) fail(path, ": tensor '", name, "' has a negative dimension");
    if (d != 0 && n > (int64_t(1) << 62) / d) fail(path, ": tensor '", name, "' shape overflows");
    n *= d;
  }
  return n;
}
}  // namespace

int64_t TensorInfo::numel() const {
  int64_t n = 1;
  for (int64_t d : shape) n *= d;
  return n;
}

ParsedHeader parse_safetensors_header(const std::string& path, const char* text, size_t len, uint64_t data_size) {
  json j;
  try {
    j = json::parse(text, text + len);
  } catch (const json::exception& e) {
    fail(path, ": malformed safetensors header (invalid JSON: ", e.what(), ")");
  }
  if (!j.is_object()) fail(path, ": malformed safetensors header (not a JSON object)");
  ParsedHeader out;
  for (auto it = j.begin(); it != j.end(); ++it) {
    const std::string& name = it.key();
    const json& v = it.value();
    if (name == "__metadata__") {
      if (v.is_null()) continue;  // some writers store null for "no metadata"
      if (!v.is_object()) fail(path, ": __metadata__ is not an object");
      for (auto m = v.begin(); m != v.end(); ++m) {
        if (!m.value().is_string()) fail(path, ": __metadata__ value '", m.key(), "' is not a string");
        out.metadata[m.key()] = m.value().get<std::string>();
      }
      continue;
    }
    if (!v.is_object()) fail(path, ": tensor '", name, "' entry is not an object");
    auto dt = v.find("dtype");
    auto sh = v.find("shape");
    auto off = v.find("data_offsets");
    if (dt == v.end() || !dt->is_string()) fail(path, ": tensor '", name, "' has no dtype");
    if (sh == v.end() || !sh->is_array()) fail(path, ": tensor '", name, "' has no shape");
    if (off == v.end() || !off->is_array() || off->size() != 2)
      fail(path, ": tensor '", name, "' has no data_offsets [begin, end]");
    TensorInfo t;
    t.name = name;
    t.dtype = dt->get<std::string>();
    if (!is_known_safetensors_dtype(t.dtype)) fail(path, ": tensor '", name, "' has unknown dtype '", t.dtype, "'");
    for (const auto& d : *sh) {
      if (!d.is_number_integer() || d.get<int64_t>() < 0)
        fail(path, ": tensor '", name, "' shape has a non-integer or negative dimension");
      t.shape.push_back(d.get<int64_t>());
    }
    for (const auto& o : *off)
      if (!o.is_number_unsigned()) fail(path, ": tensor '", name, "' data_offsets are not non-negative integers");
    t.begin = (*off)[0].get<uint64_t>();
    t.end = (*off)[1].get<uint64_t>();
    if (t.begin > t.end) fail(path, ": tensor '", name, "' data_offsets begin after they end");
    if (t.end > data_size)
      fail(path, ": tensor '", name, "' data [", t.begin, ", ", t.end, ") lies beyond the end of the file (data size ",
           data_size, "; truncated?)");
    const uint64_t need = uint64_t(checked_numel(path, name, t.shape)) * dtype_size(dtype_from_safetensors(t.dtype));
    if (need != t.end - t.begin)
      fail(path, ": tensor '", name, "' has ", t.end - t.begin, " bytes but shape ", shape_str(t.shape), " x ", t.dtype,
           " needs ", need);
    out.tensors.push_back(std::move(t));
  }
  std::sort(out.tensors.begin(), out.tensors.end(),
            [](const TensorInfo& a, const TensorInfo& b) { return a.begin != b.begin ? a.begin < b.begin : a.end < b.end; });
  for (size_t i = 1; i < out.tensors.size(); ++i) {
    const auto& a = out.tensors[i - 1];
    const auto& b = out.tensors[i];
    if (b.begin < a.end && b.end > b.begin && a.end > a.begin)
      fail(path, ": tensors '", a.name, "' and '", b.name, "' overlap in the data buffer");
  }
  return out;
}

std::shared_ptr<SafetensorsFile> SafetensorsFile::open(const std::string& path) {
  std::shared_ptr<SafetensorsFile> f(new SafetensorsFile());
  f->self_ = f;
  f->path_ = path;
  if (is_directory(path)) fail(path, ": is a folder, not a .safetensors file");
  f->fd_ = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (f->fd_ < 0) fail(path, ": cannot open (", std::strerror(errno), ")");
  struct stat st;
  if (::fstat(f->fd_, &st) != 0) fail(path, ": cannot stat (", std::strerror(errno), ")");
  f->size_ = static_cast<uint64_t>(st.st_size);
  if (f->size_ < 8) fail(path, ": not a safetensors file (", f->size_, " bytes, shorter than the 8-byte header length)");
  // Private, writable mapping: torch may write into a tensor; the pages are copied, the file never changes.
  f->map_ = ::mmap(nullptr, f->size_, PROT_READ | PROT_WRITE, MAP_PRIVATE, f->fd_, 0);
  if (f->map_ == MAP_FAILED) {
    f->map_ = nullptr;
    fail(path, ": mmap failed (", std::strerror(errno), ")");
  }
  uint64_t header_len = 0;
  std::memcpy(&header_len, f->map_, 8);  // little-endian on every platform we build for
  if (header_len > kMaxHeader) fail(path, ": not a safetensors file (header length ", header_len, " is implausible)");
  if (header_len > f->size_ - 8)
    fail(path, ": truncated safetensors file (header says ", header_len, " bytes, file has ", f->size_ - 8, ")");
  f->data_offset_ = 8 + header_len;
  f->header_ = parse_safetensors_header(path, static_cast<const char*>(f->map_) + 8, header_len, f->size_ - f->data_offset_);
  for (size_t i = 0; i < f->header_.tensors.size(); ++i) f->index_[f->header_.tensors[i].name] = i;
  return f;
}

SafetensorsFile::~SafetensorsFile() {
  if (map_) ::munmap(map_, size_);
  if (fd_ >= 0) ::close(fd_);
}

const TensorInfo* SafetensorsFile::find(const std::string& name) const {
  auto it = index_.find(name);
  return it == index_.end() ? nullptr : &header_.tensors[it->second];
}

at::Tensor SafetensorsFile::get(const std::string& name) const {
  const TensorInfo* t = find(name);
  if (!t) fail(path_, ": no tensor named '", name, "'");
  auto type = dtype_from_safetensors(t->dtype);
  char* ptr = static_cast<char*>(map_) + data_offset_ + t->begin;
  auto opts = at::TensorOptions().dtype(type).device(at::kCPU);
  if (t->end == t->begin) return at::empty(t->shape, opts);
  if (reinterpret_cast<uintptr_t>(ptr) % dtype_size(type) != 0) {
    at::Tensor out = at::empty(t->shape, opts);
    std::memcpy(out.data_ptr(), ptr, t->end - t->begin);
    return out;
  }
  auto keep = self_.lock();
  return at::from_blob(ptr, t->shape, [keep](void*) {}, opts);
}

std::string SafetensorsFile::get_bytes(const std::string& name) const {
  const TensorInfo* t = find(name);
  if (!t) fail(path_, ": no tensor named '", name, "'");
  const char* ptr = static_cast<const char*>(map_) + data_offset_ + t->begin;
  return std::string(ptr, t->end - t->begin);
}

void save_safetensors(const std::string& path, const std::vector<std::pair<std::string, at::Tensor>>& tensors,
                      const std::map<std::string, std::string>& metadata) {
  json header = json::object();
  if (!metadata.empty()) header["__metadata__"] = metadata;
  uint64_t offset = 0;
  for (const auto& [name, t] : tensors) {
    if (name == "__metadata__") fail(path, ": '__metadata__' cannot be a tensor name");
    if (header.contains(name)) fail(path, ": tensor '", name, "' given twice");
    if (!t.defined()) fail(path, ": tensor '", name, "' is undefined");
    const uint64_t n = uint64_t(t.numel()) * t.element_size();
    header[name] = {{"dtype", dtype_to_safetensors(t.scalar_type())},
                    {"shape", t.sizes().vec()},
                    {"data_offsets", {offset, offset + n}}};
    offset += n;
  }
  std::string text = header.dump();
  while ((8 + text.size()) % 8 != 0) text.push_back(' ');  // align the data buffer to 8 bytes
  uint64_t len = text.size();
  AtomicFile out(path);
  out.write(&len, 8);
  out.write(text.data(), text.size());
  for (const auto& [name, t] : tensors) {
    at::Tensor c = t.device().is_cpu() ? t.contiguous() : t.to(at::kCPU).contiguous();
    if (c.numel() > 0) out.write(c.data_ptr(), uint64_t(c.numel()) * c.element_size());
  }
  out.commit();
}

}  // namespace qsae
