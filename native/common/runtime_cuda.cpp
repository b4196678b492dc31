// CUDA device facts for `qsae info` (built only when torch has CUDA).
#include <cuda_runtime_api.h>

#include "common/runtime.h"

namespace qsae {

std::vector<CudaDeviceInfo> cuda_device_info() {
  std::vector<CudaDeviceInfo> out;
  int n = 0;
  if (cudaGetDeviceCount(&n) != cudaSuccess) return out;
  for (int i = 0; i < n; ++i) {
    cudaDeviceProp p{};
    if (cudaGetDeviceProperties(&p, i) != cudaSuccess) continue;
    out.push_back({i, p.name, static_cast<int64_t>(p.totalGlobalMem), p.major, p.minor});
  }
  return out;
}

}  // namespace qsae
