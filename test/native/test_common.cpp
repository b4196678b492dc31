// Runtime setup and dtype/device helpers.
#include <ATen/Parallel.h>
#include "testing.h"

#include <thread>

#include "common/error.h"
#include "common/runtime.h"
#include "common/tensor_util.h"

using namespace qsae;

TEST_CASE("init_runtime sets threads to the core count unless QSAE_THREADS says otherwise") {
  init_runtime();
  const char* env = std::getenv("QSAE_THREADS");
  int want = env ? std::atoi(env) : int(std::thread::hardware_concurrency());
  CHECK(at::get_num_threads() == want);
  auto info = runtime_info();
  CHECK(info.threads == want);
  CHECK(!info.torch_version.empty());
  CHECK(!info.blas.empty());
}

TEST_CASE("dtype names round-trip and unknown names are TypeErrors") {
  for (auto t : {at::kFloat, at::kBFloat16, at::kHalf, at::kDouble, at::kLong, at::kInt, at::kShort, at::kChar,
                 at::kByte, at::kBool}) {
    CHECK((dtype_from_safetensors(dtype_to_safetensors(t)) == t));
    CHECK((dtype_from_name(dtype_name(t)) == t));
  }
  try {
    dtype_from_name("fp12");
    FAIL("expected an error");
  } catch (const Error& e) {
    CHECK(e.kind() == ErrorKind::Type);
    CHECK(std::string(e.what()).find("fp12") != std::string::npos);
  }
}

TEST_CASE("parse_device") {
  CHECK(parse_device("cpu").is_cpu());
  CHECK_THROWS_AS(parse_device("tpu"), Error);
  if (!at::hasCUDA()) CHECK_THROWS_AS(parse_device("cuda:0"), Error);
}
