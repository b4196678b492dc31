// safetensors: round trips for every dtype, strict header validation, sharded checkpoints, and a
// fuzz pass of truncations and bit flips (errors, never a crash).
#include "testing.h"
#include <unistd.h>

#include <cstdio>
#include <fstream>
#include <random>

#include "common/error.h"
#include "io/checkpoint.h"
#include "io/fs.h"
#include "io/safetensors.h"

using namespace qsae;

namespace {
std::string temp_path(const std::string& name) {
  return "/tmp/qsae-test-" + std::to_string(::getpid()) + "-" + name;
}
std::string read_all(const std::string& p) {
  std::ifstream in(p, std::ios::binary);
  return std::string((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
}
void write_all(const std::string& p, const std::string& bytes) {
  std::ofstream out(p, std::ios::binary);
  out.write(bytes.data(), bytes.size());
}
std::string file_with_header(const std::string& header, size_t data_bytes) {
  uint64_t n = header.size();
  std::string s(reinterpret_cast<const char*>(&n), 8);
  return s + header + std::string(data_bytes, '\0');
}
std::string error_of(const std::string& path) {
  try {
    SafetensorsFile::open(path);
  } catch (const Error& e) {
    return e.what();
  }
  return "";
}
}  // namespace

TEST_CASE("round trip of every dtype, with metadata") {
  std::vector<std::pair<std::string, at::Tensor>> ts;
  at::manual_seed(1);
  ts.emplace_back("f64", at::randn({3, 5}, at::kDouble));
  ts.emplace_back("f32", at::randn({7}, at::kFloat));
  ts.emplace_back("f16", at::randn({2, 3, 4}).to(at::kHalf));
  ts.emplace_back("bf16", at::randn({4, 4}).to(at::kBFloat16));
  ts.emplace_back("i64", at::randint(-1000, 1000, {5}, at::kLong));
  ts.emplace_back("i32", at::randint(-1000, 1000, {5}, at::kInt));
  ts.emplace_back("i16", at::randint(-1000, 1000, {5}, at::kShort));
  ts.emplace_back("i8", at::randint(-100, 100, {9}, at::kChar));
  ts.emplace_back("u8", at::randint(0, 255, {3, 3}, at::kByte));
  ts.emplace_back("bool", at::randint(0, 2, {6}, at::kLong).to(at::kBool));
  ts.emplace_back("scalar", at::randn({}, at::kFloat));
  ts.emplace_back("empty", at::empty({0, 4}, at::kFloat));
  auto p = temp_path("rt.safetensors");
  save_safetensors(p, ts, {{"format", "pt"}, {"note", "qsae"}});
  auto f = SafetensorsFile::open(p);
  CHECK(f->tensors().size() == ts.size());
  CHECK(f->metadata().at("note") == "qsae");
  for (const auto& [name, t] : ts) {
    at::Tensor back = f->get(name);
    CHECK((back.scalar_type() == t.scalar_type()));
    CHECK((back.sizes() == t.sizes()));
    CHECK(at::equal(back, t));
  }
  // Writing into a zero-copy tensor never reaches the file.
  f->get("f32").fill_(42.0);
  auto again = SafetensorsFile::open(p);
  CHECK(at::equal(again->get("f32"), ts[1].second));
  std::remove(p.c_str());
}

TEST_CASE("header validation names the file and the problem") {
  auto p = temp_path("bad.safetensors");
  write_all(p, "");
  CHECK(error_of(p).find("shorter than the 8-byte header length") != std::string::npos);

  write_all(p, file_with_header("{not json", 0));
  CHECK(error_of(p).find("invalid JSON") != std::string::npos);

  write_all(p, file_with_header(R"({"a":{"dtype":"F33","shape":[1],"data_offsets":[0,4]}})", 4));
  CHECK(error_of(p).find("unknown dtype 'F33'") != std::string::npos);

  write_all(p, file_with_header(R"({"a":{"dtype":"F32","shape":[2],"data_offsets":[0,4]}})", 4));
  CHECK(error_of(p).find("needs 8") != std::string::npos);

  write_all(p, file_with_header(R"({"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}})", 4));
  CHECK(error_of(p).find("beyond the end of the file") != std::string::npos);

  write_all(p, file_with_header(
                   R"({"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},"b":{"dtype":"F32","shape":[2],"data_offsets":[4,12]}})",
                   12));
  CHECK(error_of(p).find("overlap") != std::string::npos);

  write_all(p, file_with_header(R"({"a":{"dtype":"F32","shape":[-1],"data_offsets":[0,4]}})", 4));
  CHECK(error_of(p).find("negative") != std::string::npos);

  write_all(p, file_with_header(R"({"__metadata__":{"k":1}})", 0));
  CHECK(error_of(p).find("not a string") != std::string::npos);

  std::string huge(8, '\xff');
  write_all(p, huge + "{}");
  CHECK(error_of(p).find("implausible") != std::string::npos);

  CHECK(error_of(p).find(p) == 0);
  std::remove(p.c_str());
  CHECK(error_of(p).find("cannot open") != std::string::npos);
}

TEST_CASE("fuzz: truncations and bit flips give errors, never crashes") {
  auto p = temp_path("fuzz-src.safetensors");
  save_safetensors(p, {{"w", at::randn({8, 8})}, {"b", at::randn({8}).to(at::kBFloat16)}, {"i", at::arange(10)}},
                   {{"format", "pt"}});
  const std::string good = read_all(p);
  auto q = temp_path("fuzz.safetensors");
  std::mt19937 rng(1234);
  int errors = 0, opened = 0;
  for (int iter = 0; iter < 400; ++iter) {
    std::string bytes = good;
    if (iter % 2 == 0) {
      bytes.resize(std::uniform_int_distribution<size_t>(0, good.size() - 1)(rng));
    } else {
      int flips = 1 + iter % 4;
      // Mostly hit the header, where parsing happens.
      size_t hdr_end = 8 + *reinterpret_cast<const uint64_t*>(good.data());
      for (int k = 0; k < flips; ++k) {
        size_t pos = std::uniform_int_distribution<size_t>(0, (iter % 3 == 0 ? bytes.size() : hdr_end) - 1)(rng);
        bytes[pos] ^= char(1u << std::uniform_int_distribution<int>(0, 7)(rng));
      }
    }
    write_all(q, bytes);
    try {
      auto f = SafetensorsFile::open(q);
      for (const auto& t : f->tensors()) (void)f->get(t.name).sum();
      ++opened;
    } catch (const Error& e) {
      CHECK(std::string(e.what()).find(q) == 0);
      ++errors;
    }
  }
  CHECK(errors > 200);  // every truncation and most header flips must be rejected
  CHECK(errors + opened == 400);
  std::remove(p.c_str());
  std::remove(q.c_str());
}

TEST_CASE("sharded checkpoints resolve names across shards; missing tensors name the shard") {
  std::string dir = temp_path("sharded");
  std::string cmd = "mkdir -p " + dir;
  REQUIRE(std::system(cmd.c_str()) == 0);
  save_safetensors(join_path(dir, "model-00001-of-00002.safetensors"), {{"a", at::ones({2})}});
  save_safetensors(join_path(dir, "model-00002-of-00002.safetensors"), {{"b", at::zeros({3})}});
  write_file_atomic(join_path(dir, "model.safetensors.index.json"),
                    R"({"metadata":{},"weight_map":{"a":"model-00001-of-00002.safetensors","b":"model-00002-of-00002.safetensors"}})");
  auto ck = Checkpoint::open(dir);
  CHECK(ck->names() == std::vector<std::string>{"a", "b"});
  CHECK(ck->get("b").size(0) == 3);
  write_file_atomic(join_path(dir, "model.safetensors.index.json"),
                    R"({"weight_map":{"a":"model-00001-of-00002.safetensors","c":"model-00002-of-00002.safetensors"}})");
  try {
    Checkpoint::open(dir);
    FAIL("expected an error");
  } catch (const Error& e) {
    CHECK(std::string(e.what()) == "c: missing from " + join_path(dir, "model-00002-of-00002.safetensors"));
  }
  cmd = "rm -rf " + dir;
  REQUIRE(std::system(cmd.c_str()) == 0);
}

TEST_CASE("shared tiny-qwen3 fixture reads with the expected tensors") {
  const std::string path = "../shared/models/tiny-qwen3/model.safetensors";
  if (!file_exists(path)) {
    MESSAGE("skipped: ../shared not present");
    return;
  }
  auto f = SafetensorsFile::open(path);
  CHECK(f->tensors().size() == 25);
  auto e = f->get("model.embed_tokens.weight");
  CHECK((e.scalar_type() == at::kBFloat16));
  CHECK(e.dim() == 2);
}
