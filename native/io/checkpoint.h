// A checkpoint = one .safetensors file, or an HF model folder (model.safetensors, or shards listed in
// model.safetensors.index.json). Tensors are found by name across shards; each shard is mapped lazily.
#pragma once
#include <ATen/ATen.h>

#include <map>
#include <memory>
#include <string>
#include <vector>

#include "io/safetensors.h"

namespace qsae {

class Checkpoint {
 public:
  // PATH: a .safetensors file, a model.safetensors.index.json, or a folder holding either.
  static std::shared_ptr<Checkpoint> open(const std::string& path);

  const std::string& path() const { return path_; }
  // Folder of the checkpoint (where config.json lives), or "" for a lone file.
  const std::string& folder() const { return folder_; }
  std::vector<std::string> names() const;  // every tensor, sorted by name
  bool contains(const std::string& name) const { return shard_of_.count(name) > 0; }
  const TensorInfo& info(const std::string& name) const;
  const std::string& shard_path(const std::string& name) const;
  at::Tensor get(const std::string& name) const;  // zero-copy CPU view
  std::string get_bytes(const std::string& name) const;
  std::vector<std::string> shards() const { return shard_paths_; }
  std::map<std::string, std::string> metadata() const;  // merged __metadata__ of all shards

 private:
  std::shared_ptr<SafetensorsFile> shard(size_t i) const;
  std::string path_, folder_;
  std::vector<std::string> shard_paths_;
  mutable std::vector<std::shared_ptr<SafetensorsFile>> files_;
  std::map<std::string, size_t> shard_of_;
};

}  // namespace qsae
