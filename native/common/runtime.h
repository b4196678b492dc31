// Process-wide runtime facts and settings: threads, BLAS in use, devices, versions.
#pragma once
#include <atomic>
#include <string>
#include <vector>

namespace qsae {

struct CudaDeviceInfo {
  int index = 0;
  std::string name;
  int64_t total_memory = 0;
  int major = 0, minor = 0;
};

struct RuntimeInfo {
  std::string qsae_version;
  std::string torch_version;
  std::string blas;         // e.g. "OpenBLAS 0.3.21 (pthread)", "reference BLAS (/usr/lib/...)"
  std::string blas_library;  // path of the loaded BLAS shared library, when known
  int threads = 0;
  bool cuda_built = false;    // qsae compiled with its CUDA kernels
  bool cuda_available = false;
  std::vector<CudaDeviceInfo> cuda_devices;
  std::string cpu_features;  // "avx2 fma" etc.
};

// Sets torch's intra-op threads: QSAE_THREADS when set, else the number of cores. Idempotent.
void init_runtime();
int set_threads(int n);
RuntimeInfo runtime_info();

// CPU feature detection for runtime dispatch of hand-written kernels.
bool cpu_has_avx2_fma();

// A module's choice between its AVX2/FMA loops and its portable ones (quant, sae): "auto" takes AVX2 where the
// processor has it, "generic" forces the portable loops (tests and comparisons). Thread-safe.
class CpuKernelChoice {
 public:
  explicit CpuKernelChoice(const char* module) : module_(module) {}
  bool avx2() const { return !generic_.load() && cpu_has_avx2_fma(); }
  void set(const std::string& which);  // "auto" (or "avx2") | "generic"; else a TypeError naming the module
  std::string name() const { return avx2() ? "avx2" : "generic"; }

 private:
  const char* module_;
  std::atomic<bool> generic_{false};
};

#ifdef QSAE_HAVE_CUDA
std::vector<CudaDeviceInfo> cuda_device_info();
#endif

}  // namespace qsae
