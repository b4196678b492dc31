// Runtime setup (threads) and the facts `qsae info` reports.
#include "common/runtime.h"

#include <ATen/Parallel.h>
#include <ATen/detail/CUDAHooksInterface.h>
#include <dlfcn.h>
#include <link.h>

#include <cstdlib>
#include <cstring>
#include <mutex>
#include <thread>

#include "common/error.h"

namespace qsae {

namespace {
std::once_flag g_init_once;

int default_threads() {
  if (const char* env = std::getenv("QSAE_THREADS")) {
    int n = std::atoi(env);
    if (n > 0) return n;
  }
  unsigned hc = std::thread::hardware_concurrency();
  return hc > 0 ? static_cast<int>(hc) : 1;
}

int find_blas_lib(struct dl_phdr_info* info, size_t, void* data) {
  auto* out = static_cast<std::string*>(data);
  if (!info->dlpi_name || !*info->dlpi_name) return 0;
  std::string name = info->dlpi_name;
  if (name.find("libblas") != std::string::npos || name.find("libopenblas") != std::string::npos ||
      name.find("libmkl") != std::string::npos) {
    if (out->empty()) *out = name;
  }
  return 0;
}
}  // namespace

int set_threads(int n) {
  if (n < 1) n = 1;
  at::set_num_threads(n);
  return at::get_num_threads();
}

void init_runtime() {
  std::call_once(g_init_once, [] { set_threads(default_threads()); });
}

bool cpu_has_avx2_fma() {
#if defined(__x86_64__) || defined(__i386__)
  static const bool has = __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
  return has;
#else
  return false;
#endif
}

void CpuKernelChoice::set(const std::string& which) {
  if (which == "auto" || which == "avx2") generic_ = false;
  else if (which == "generic") generic_ = true;
  else fail_type(module_, " cpu kernel: unknown '", which, "' (expected auto or generic)");
}

RuntimeInfo runtime_info() {
  init_runtime();
  RuntimeInfo info;
  info.qsae_version = QSAE_VERSION;
  info.torch_version = QSAE_TORCH_VERSION;
  info.threads = at::get_num_threads();

  std::string lib;
  dl_iterate_phdr(find_blas_lib, &lib);
  char resolved[4096];
  if (!lib.empty() && realpath(lib.c_str(), resolved)) lib = resolved;
  info.blas_library = lib;
  using ConfigFn = char* (*)();
  auto openblas_config = reinterpret_cast<ConfigFn>(dlsym(RTLD_DEFAULT, "openblas_get_config"));
  if (openblas_config) {
    std::string cfg = openblas_config();
    info.blas = cfg.rfind("OpenBLAS", 0) == 0 ? cfg : "OpenBLAS " + cfg;
  } else if (lib.find("mkl") != std::string::npos) {
    info.blas = "MKL";
  } else if (!lib.empty()) {
    info.blas = "reference BLAS (slow: install libopenblas0-pthread)";
  } else {
    info.blas = "built into torch";
  }

#if defined(__x86_64__) || defined(__i386__)
  auto add = [&](bool has, const char* name) {
    if (has) info.cpu_features += std::string(info.cpu_features.empty() ? "" : " ") + name;
  };
  add(__builtin_cpu_supports("avx2"), "avx2");
  add(__builtin_cpu_supports("fma"), "fma");
  add(__builtin_cpu_supports("avx512f"), "avx512f");
#endif

#ifdef QSAE_HAVE_CUDA
  info.cuda_built = true;
  info.cuda_available = at::hasCUDA();
  if (info.cuda_available) info.cuda_devices = cuda_device_info();
#else
  info.cuda_built = false;
  info.cuda_available = false;
#endif
  return info;
}

}  // namespace qsae
