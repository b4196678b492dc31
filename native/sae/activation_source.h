// Streams activation rows from a qsae activation store (manifest.json + shard-*.safetensors holding
// `acts.<hook>.<layer>` [N, D], `tokens` [N] I64, `doc` [N] I32, `pos` [N] I32) or from a plain .safetensors
// file holding `acts` [N, D] (and optionally `doc`, `tokens`). Shards are mapped, never read whole.
#pragma once
#include <ATen/ATen.h>

#include <memory>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

namespace qsae::sae {

struct ActivationChunk {
  at::Tensor acts;    // [n, D] in the stored dtype (a zero-copy view when a chunk lies within one shard)
  at::Tensor tokens;  // [n] int64, undefined when the source has none
  at::Tensor doc;     // [n] int32, undefined when the source has none
  int64_t row0 = 0;   // global index of the first row
  int64_t rows() const { return acts.defined() ? acts.size(0) : 0; }
};

class ActivationSource {
 public:
  struct Shard {
    std::string path;
    int64_t rows = 0, first_row = 0;
  };
  // PATH: a store folder (or its manifest.json) or a .safetensors file. hook/layer choose
  // `acts.<hook>.<layer>`; when empty/-1 and the store holds one such tensor, that one is used.
  // A store with several needs them (the error lists what is there). Empty stores are an error.
  static std::shared_ptr<ActivationSource> open(const std::string& path, const std::string& hook = "",
                                                int64_t layer = -1);

  int64_t n_rows() const { return n_rows_; }
  int64_t d() const { return d_; }
  at::ScalarType dtype() const { return dtype_; }
  const std::string& path() const { return path_; }
  const std::string& tensor_name() const { return name_; }  // "acts.resid_post.6" or "acts"
  const std::string& hook() const { return hook_; }
  int64_t layer() const { return layer_; }
  const nlohmann::json& manifest() const { return manifest_; }  // {} for a plain file
  const std::vector<Shard>& shards() const { return shards_; }
  bool has_tokens() const { return has_tokens_; }
  bool has_doc() const { return has_doc_; }

  // Sequential reading: next chunk of at most max_rows rows from the cursor (never crosses the end);
  // returns false at the end. seek() moves the cursor.
  bool next(ActivationChunk& out, int64_t max_rows);
  void seek(int64_t row);
  int64_t cursor() const { return cursor_; }

  // Rows [begin, end) across shards. With check_finite, NaN/Inf raise an error naming shard and row.
  ActivationChunk read(int64_t begin, int64_t end, bool check_finite = false) const;
  // Where a global row lives: shard file and row inside it.
  std::pair<std::string, int64_t> locate(int64_t row) const;

 private:
  struct Impl;
  std::shared_ptr<Impl> impl_;
  std::string path_, name_, hook_;
  int64_t layer_ = -1, n_rows_ = 0, d_ = 0, cursor_ = 0;
  at::ScalarType dtype_ = at::kFloat;
  nlohmann::json manifest_;
  std::vector<Shard> shards_;
  bool has_tokens_ = false, has_doc_ = false;
};

// Throws naming the shard and row of the first non-finite value in rows [row0, row0+n) of `acts`.
void check_finite_rows(const ActivationSource& src, const at::Tensor& acts, int64_t row0);

}  // namespace qsae::sae
