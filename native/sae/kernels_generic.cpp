// Portable inner loops of the fused SAE step (the reference for the AVX2 ones).
#include <cmath>
#include <cstdint>

#include "sae/kernels.h"

namespace qsae::sae::kern {

void gather_axpy_generic(const float* rows, int64_t ld, const int32_t* idx, const float* a, int64_t cnt,
                         const float* base, float* out, int64_t n) {
  if (base)
    for (int64_t i = 0; i < n; ++i) out[i] = base[i];
  for (int64_t t = 0; t < cnt; ++t) {
    const float c = a[t];
    const float* __restrict r = rows + int64_t(idx[t]) * ld;
    float* __restrict o = out;
    for (int64_t i = 0; i < n; ++i) o[i] += c * r[i];
  }
}

void gather_dot_generic(const float* x, const float* rows, int64_t ld, const int32_t* idx, int64_t cnt, float* out,
                        int64_t n) {
  for (int64_t t = 0; t < cnt; ++t) {
    const float* r = rows + int64_t(idx[t]) * ld;
    float s0 = 0, s1 = 0, s2 = 0, s3 = 0;
    int64_t i = 0;
    for (; i + 4 <= n; i += 4) {
      s0 += x[i] * r[i];
      s1 += x[i + 1] * r[i + 1];
      s2 += x[i + 2] * r[i + 2];
      s3 += x[i + 3] * r[i + 3];
    }
    for (; i < n; ++i) s0 += x[i] * r[i];
    out[t] = (s0 + s1) + (s2 + s3);
  }
}

double residual_generic(float* r, const float* bias, const float* x, float scale, int64_t n) {
  double sq = 0;
  for (int64_t i = 0; i < n; ++i) {
    const float e = (bias ? r[i] + bias[i] : r[i]) - x[i];
    sq += double(e) * e;
    r[i] = e * scale;
  }
  return sq;
}

namespace {
// Order-preserving int32 image of a float (a < b  <=>  key(a) < key(b) for non-NaN; -0 sorts below +0).
inline int32_t key_of(float f) {
  int32_t b;
  __builtin_memcpy(&b, &f, 4);
  return b >= 0 ? b : b ^ 0x7fffffff;
}
}  // namespace

void top_k_generic(const float* row, int64_t n, int64_t k, int32_t* keys, int32_t* out) {
  int32_t lo = INT32_MAX, hi = INT32_MIN;
  for (int64_t j = 0; j < n; ++j) {
    keys[j] = key_of(row[j]);
    lo = keys[j] < lo ? keys[j] : lo;
    hi = keys[j] > hi ? keys[j] : hi;
  }
  // The largest t with count(key >= t) >= k; stop early once some t has exactly k at or above it.
  int64_t c_lo = n;
  while (lo < hi && c_lo != k) {
    const int32_t mid = int32_t(lo + ((int64_t(hi) - lo + 1) >> 1));
    int64_t c = 0;
    for (int64_t j = 0; j < n; ++j) c += keys[j] >= mid;
    if (c >= k) lo = mid, c_lo = c;
    else hi = mid - 1;
  }
  int64_t m = 0;
  if (c_lo == k) {
    for (int64_t j = 0; j < n; ++j)
      if (keys[j] >= lo) out[m++] = int32_t(j);
    return;
  }
  // ties at the k-th value: all above it, then the lowest indices equal to it
  int64_t above = 0;
  for (int64_t j = 0; j < n; ++j) above += keys[j] > lo;
  int64_t ties = k - above;
  for (int64_t j = 0; j < n; ++j)
    if (keys[j] > lo || (keys[j] == lo && ties-- > 0)) out[m++] = int32_t(j);
}

int64_t count_relu_generic(const float* pre, int64_t n, float lo) {
  int64_t c = 0;
  for (int64_t j = 0; j < n; ++j) c += int64_t(pre[j] > 0.f) & int64_t(pre[j] >= lo);
  return c;
}

int64_t count_jumprelu_generic(const float* pre, const float* thr, int64_t n, float half, int64_t* window) {
  int64_t c = 0, w = 0;
  for (int64_t j = 0; j < n; ++j) {
    const int64_t on = pre[j] > thr[j];
    c += on;
    w += (1 - on) & int64_t(std::fabs(pre[j] - thr[j]) < half);
  }
  *window = w;
  return c;
}

void relu_backward_generic(float* g, const float* f, const float* l1w, int64_t n) {
  for (int64_t j = 0; j < n; ++j) g[j] = f[j] > 0.f ? g[j] + l1w[j] : 0.f;
}

void adam_generic(float* p, const float* g, float* m, float* v, int64_t n, float b1, float b2, float step_size,
                  float inv_sqrt_bc2, float eps) {
  for (int64_t i = 0; i < n; ++i) {
    const float gi = g[i];
    const float mi = b1 * m[i] + (1 - b1) * gi;
    const float vi = b2 * v[i] + (1 - b2) * gi * gi;
    m[i] = mi;
    v[i] = vi;
    p[i] -= step_size * mi / (std::sqrt(vi) * inv_sqrt_bc2 + eps);
  }
}

}  // namespace qsae::sae::kern
