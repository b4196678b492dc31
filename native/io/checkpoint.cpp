// Single-file and sharded (index.json) safetensors checkpoints behind one name -> tensor lookup.
#include "io/checkpoint.h"

#include <algorithm>

#include "common/error.h"
#include "io/fs.h"
#include "io/json.h"

namespace qsae {

namespace {
std::string dirname_of(const std::string& p) {
  auto pos = p.find_last_of('/');
  return pos == std::string::npos ? std::string(".") : p.substr(0, pos);
}
bool ends_with(const std::string& s, const std::string& suffix) {
  return s.size() >= suffix.size() && s.compare(s.size() - suffix.size(), suffix.size(), suffix) == 0;
}
}  // namespace

std::shared_ptr<Checkpoint> Checkpoint::open(const std::string& path) {
  auto c = std::make_shared<Checkpoint>();
  c->path_ = path;
  if (!file_exists(path)) fail(path, ": no such file or folder");
  std::string index;
  if (is_directory(path)) {
    c->folder_ = path;
    std::string single = join_path(path, "model.safetensors");
    std::string idx = join_path(path, "model.safetensors.index.json");
    if (file_exists(idx)) {
      index = idx;
    } else if (file_exists(single)) {
      c->shard_paths_.push_back(single);
    } else {
      fail(path, ": no weights (expected model.safetensors or model.safetensors.index.json)");
    }
  } else if (ends_with(path, ".index.json")) {
    index = path;
    c->folder_ = dirname_of(path);
  } else {
    c->shard_paths_.push_back(path);
  }

  if (!index.empty()) {
    json j = read_json_file(index);
    if (!j.is_object() || !j.contains("weight_map") || !j["weight_map"].is_object())
      fail(index, ": no weight_map object");
    std::map<std::string, size_t> shard_index;
    for (auto it = j["weight_map"].begin(); it != j["weight_map"].end(); ++it) {
      if (!it.value().is_string()) fail(index, ": weight_map entry '", it.key(), "' is not a file name");
      std::string file = it.value().get<std::string>();
      if (file.find('/') != std::string::npos || file == "..")
        fail(index, ": weight_map entry '", it.key(), "' points outside the folder");
      auto [pos, inserted] = shard_index.emplace(file, c->shard_paths_.size());
      if (inserted) c->shard_paths_.push_back(join_path(c->folder_, file));
      c->shard_of_[it.key()] = pos->second;
    }
    c->files_.resize(c->shard_paths_.size());
    // Every listed tensor must be in its shard.
    for (const auto& [name, i] : c->shard_of_)
      if (!c->shard(i)->contains(name)) fail(name, ": missing from ", c->shard_paths_[i]);
    return c;
  }

  c->files_.resize(1);
  for (const auto& t : c->shard(0)->tensors()) c->shard_of_[t.name] = 0;
  return c;
}

std::shared_ptr<SafetensorsFile> Checkpoint::shard(size_t i) const {
  if (!files_[i]) files_[i] = SafetensorsFile::open(shard_paths_[i]);
  return files_[i];
}

std::vector<std::string> Checkpoint::names() const {
  std::vector<std::string> out;
  out.reserve(shard_of_.size());
  for (const auto& kv : shard_of_) out.push_back(kv.first);
  return out;
}

const TensorInfo& Checkpoint::info(const std::string& name) const {
  auto it = shard_of_.find(name);
  if (it == shard_of_.end()) fail(name, ": missing from ", path_);
  return *shard(it->second)->find(name);
}

const std::string& Checkpoint::shard_path(const std::string& name) const {
  auto it = shard_of_.find(name);
  if (it == shard_of_.end()) fail(name, ": missing from ", path_);
  return shard_paths_[it->second];
}

at::Tensor Checkpoint::get(const std::string& name) const {
  auto it = shard_of_.find(name);
  if (it == shard_of_.end()) fail(name, ": missing from ", path_);
  return shard(it->second)->get(name);
}

std::string Checkpoint::get_bytes(const std::string& name) const {
  auto it = shard_of_.find(name);
  if (it == shard_of_.end()) fail(name, ": missing from ", path_);
  return shard(it->second)->get_bytes(name);
}

std::map<std::string, std::string> Checkpoint::metadata() const {
  std::map<std::string, std::string> out;
  for (size_t i = 0; i < shard_paths_.size(); ++i)
    for (const auto& kv : shard(i)->metadata()) out.insert(kv);
  return out;
}

}  // namespace qsae
