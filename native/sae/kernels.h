// CPU inner loops of the fused SAE step, on raw pointers (no torch headers), so that the AVX2/FMA variant can
// be compiled with -mavx2 -mfma alone and selected at run time (qsae::cpu_has_avx2_fma(); see native/quant for
// the same pattern). Threading stays in fused_cpu.cpp.
#pragma once
#include <cstdint>

namespace qsae::sae::kern {

// out[i] = (base ? base[i] : out[i]) + sum_t a[t] * rows[idx[t] * ld + i]   for i in [0, n), t in [0, cnt).
//   The sparse decoder (rows = W_dec, idx = the row's active latents) and the per-latent weight-gradient sums
//   (rows = dL/dx_hat or the encoder input, idx = the rows in which the latent fired). Each output element is
//   summed in the order of t.
void gather_axpy_generic(const float* rows, int64_t ld, const int32_t* idx, const float* a, int64_t cnt,
                         const float* base, float* out, int64_t n);
void gather_axpy_avx2(const float* rows, int64_t ld, const int32_t* idx, const float* a, int64_t cnt,
                      const float* base, float* out, int64_t n);

// out[t] = x . rows[idx[t] * ld + 0..n)   for t in [0, cnt)   (dL/df at the active latents of one row)
void gather_dot_generic(const float* x, const float* rows, int64_t ld, const int32_t* idx, int64_t cnt, float* out,
                        int64_t n);
void gather_dot_avx2(const float* x, const float* rows, int64_t ld, const int32_t* idx, int64_t cnt, float* out,
                     int64_t n);

// In place on r[0..n) (the decoder output x_hat): e = r + (bias ? bias : 0) - x; r = e * scale. Returns the sum
// of e² in double.
double residual_generic(float* r, const float* bias, const float* x, float scale, int64_t n);
double residual_avx2(float* r, const float* bias, const float* x, float scale, int64_t n);

// The indices of the k largest of row[0..n) (0 < k <= n; ties: the lower index first) in increasing order, into
// out[0..k). scratch: n int32. Bisection on the order-preserving integer image of the values, counting with
// vector compares: no data-dependent branches per element (nth_element's were most of the selection's time).
void top_k_generic(const float* row, int64_t n, int64_t k, int32_t* scratch, int32_t* out);
void top_k_avx2(const float* row, int64_t n, int64_t k, int32_t* scratch, int32_t* out);

// Counts over one row of pre-activations (for sizing the sparse rows): relu / batchtopk: entries with
// pre > 0 and pre >= lo; jumprelu: entries with pre > thr (returned), and in *window the inactive ones with
// |pre - thr| < half (the threshold's straight-through window). Branch-free: about half the entries fire at random.
int64_t count_relu_generic(const float* pre, int64_t n, float lo);
int64_t count_relu_avx2(const float* pre, int64_t n, float lo);
int64_t count_jumprelu_generic(const float* pre, const float* thr, int64_t n, float half, int64_t* window);
int64_t count_jumprelu_avx2(const float* pre, const float* thr, int64_t n, float half, int64_t* window);

// relu's dL/dpre from dL/df, in place on g[0..n): g = f > 0 ? g + l1w : 0.
void relu_backward_generic(float* g, const float* f, const float* l1w, int64_t n);
void relu_backward_avx2(float* g, const float* f, const float* l1w, int64_t n);

// Adam on elements [0, n): m = b1 m + (1 - b1) g; v = b2 v + (1 - b2) g²; p -= step_size m / (√v · inv_sqrt_bc2 + eps)
void adam_generic(float* p, const float* g, float* m, float* v, int64_t n, float b1, float b2, float step_size,
                  float inv_sqrt_bc2, float eps);
void adam_avx2(float* p, const float* g, float* m, float* v, int64_t n, float b1, float b2, float step_size,
               float inv_sqrt_bc2, float eps);

}  // namespace qsae::sae::kern
