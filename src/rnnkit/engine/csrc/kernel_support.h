// What every fused time loop (csrc/*.cpp) builds on: ATen's SIMD types for the instruction set of
// this build, a fast float tanh, and the per-step recurrent product on MKL's packed GEMM. Each
// source includes this header first.
#pragma once

// at::vec picks its SIMD width from these macros, which ATen's own build sets per kernel file; the
// library is built with -march=native, so name what the compiler may emit, before any ATen
// header. The inline namespace is rnnkit's own, so that libtorch's copies of these inline
// functions, built for other instruction sets, cannot clash with ours.
#if defined(__AVX512F__) && defined(__AVX512BW__) && defined(__AVX512DQ__) && defined(__AVX512VL__)
#define CPU_CAPABILITY_AVX512
#define CPU_CAPABILITY rnnkit_avx512
#elif defined(__AVX2__) && defined(__FMA__)
#define CPU_CAPABILITY_AVX2
#define CPU_CAPABILITY rnnkit_avx2
#else
#define CPU_CAPABILITY rnnkit_default
#endif

#include <ATen/ATen.h>
#include <ATen/Dispatch.h>
#include <ATen/Parallel.h>
#include <ATen/cpu/vec/vec.h>
#include <torch/library.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <limits>
#include <type_traits>
#include <vector>

namespace rnnkit {

// Pointwise work below this many elements per parallel region runs on one thread: waking the
// other costs more than it saves.
constexpr int64_t kParallelElements = 8192;

// Calls body(j0, j1) on ranges of hidden units, whole SIMD vectors apart, split over the threads;
// ``rows`` is how many rows of the units each call will touch (for the grain size).
template <typename scalar_t, typename Body>
void for_unit_ranges(int64_t rows, int64_t units, const Body& body) {
  constexpr int64_t width = at::vec::Vectorized<scalar_t>::size();
  const int64_t blocks = (units + width - 1) / width;
  const int64_t grain = std::max<int64_t>(1, kParallelElements / std::max<int64_t>(1, rows * width));
  at::parallel_for(0, blocks, grain, [&](int64_t b0, int64_t b1) {
    body(b0 * width, std::min(units, b1 * width));
  });
}

// tanh for float, ~3x faster than ATen's Vectorized::tanh (Sleef's, 1.6 ns per element here):
// below |x| = 2.5 Eigen's rational function (a 13/6-degree odd/even pair, within 2.5e-7 of tanh),
// above it 1 - 2 / (exp(2|x|) + 1), as exact as Sleef's where tanh nears ±1 and the derivative
// 1 - tanh² that the backward takes from it is the small difference.
inline at::vec::Vectorized<float> fast_tanh(const at::vec::Vectorized<float>& a) {
  using Vec = at::vec::Vectorized<float>;
  const Vec x = at::vec::clamp(a, Vec(-7.99881172180175781f), Vec(7.99881172180175781f));
  const Vec x2 = x * x;
  Vec p = at::vec::fmadd(x2, Vec(-2.76076847742355e-16f), Vec(2.00018790482477e-13f));
  p = at::vec::fmadd(x2, p, Vec(-8.60467152213735e-11f));
  p = at::vec::fmadd(x2, p, Vec(5.12229709037114e-08f));
  p = at::vec::fmadd(x2, p, Vec(1.48572235717979e-05f));
  p = at::vec::fmadd(x2, p, Vec(6.37261928875436e-04f));
  p = at::vec::fmadd(x2, p, Vec(4.89352455891786e-03f));
  Vec q = at::vec::fmadd(x2, Vec(1.19825839466702e-06f), Vec(1.18534705686654e-04f));
  q = at::vec::fmadd(x2, q, Vec(2.26843463243900e-03f));
  q = at::vec::fmadd(x2, q, Vec(4.89352518554385e-03f));
  const Vec rational = Vec::blendv(p * x / q, a, a.abs() < Vec(0.0004f));  // tanh x = x in float near 0
  const Vec saturated = a.abs() >= Vec(2.5f);
  if (saturated.zero_mask() == (1 << Vec::size()) - 1) return rational;  // no lane at or past 2.5
  const Vec e = at::vec::minimum(a.abs() * Vec(2.0f), Vec(18.0f)).exp_u20();  // 18: tanh 9 = 1 in float
  const Vec magnitude = Vec(1.0f) - Vec(2.0f) / (e + Vec(1.0f));
  return Vec::blendv(rational, Vec::blendv(magnitude, magnitude.neg(), a < Vec(0.0f)), saturated);
}

// 2^k for the integer k held in the low bits of ``shifted`` = k + 1.5 * 2^52 (see exp_nonpositive),
// -1022 <= k <= 1023: k + 1023 moved into the exponent field.
inline at::vec::Vectorized<double> two_to(const at::vec::Vectorized<double>& shifted) {
#if defined(CPU_CAPABILITY_AVX512)
  const __m512i bits = _mm512_add_epi64(_mm512_castpd_si512(shifted), _mm512_set1_epi64(1023));
  return _mm512_castsi512_pd(_mm512_slli_epi64(bits, 52));
#elif defined(CPU_CAPABILITY_AVX2)
  const __m256i bits = _mm256_add_epi64(_mm256_castpd_si256(shifted), _mm256_set1_epi64x(1023));
  return _mm256_castsi256_pd(_mm256_slli_epi64(bits, 52));
#else
  using Vec = at::vec::Vectorized<double>;
  alignas(64) double lanes[Vec::size()];
  (shifted - Vec(6755399441055744.0)).store(lanes);
  for (double& lane : lanes) lane = std::ldexp(1.0, static_cast<int>(lane));
  return Vec::loadu(lanes);
#endif
}

// exp(t) for t <= 0, within an ulp or so (t below -60 counts as -60: e^-60 is 1e-26, nothing next
// to 1, which is all tanh needs it for): 2^k exp(r) with k = round(t / ln 2) and |r| <= ln 2 / 2 by
// Cody and Waite's two-part ln 2, exp(r) by its Taylor series to r^13 (the next term is under 5e-18
// of it), 2^k from k's bits. Inline in place of a call to Sleef's exp (with its checks for the
// whole range): a reservoir's run of 3000 steps at 1000 units took 23.3-25.0 ms of CPU (minimum
// of 100, three processes) against 24.8-26.3 with Sleef's.
inline at::vec::Vectorized<double> exp_nonpositive(const at::vec::Vectorized<double>& t) {
  using Vec = at::vec::Vectorized<double>;
  const Vec x = at::vec::maximum(t, Vec(-60.0));
  const Vec shifter(6755399441055744.0);  // 1.5 * 2^52: x / ln 2 + shifter is rounded to an integer
  const Vec shifted = at::vec::fmadd(x, Vec(1.4426950408889634), shifter);
  const Vec k = shifted - shifter;
  Vec r = at::vec::fmadd(k, Vec(-6.93147180369123816490e-01), x);  // ln 2's leading bits: k ln2_hi exact
  r = at::vec::fmadd(k, Vec(-1.90821492927058770002e-10), r);
  Vec p(1.0 / 6227020800.0);  // 1 / 13!, then down to 1 / 0!
  for (const double inverse_factorial :
       {1.0 / 479001600.0, 1.0 / 39916800.0, 1.0 / 3628800.0, 1.0 / 362880.0, 1.0 / 40320.0, 1.0 / 5040.0,
        1.0 / 720.0, 1.0 / 120.0, 1.0 / 24.0, 1.0 / 6.0, 0.5, 1.0, 1.0}) {
    p = at::vec::fmadd(p, r, Vec(inverse_factorial));
  }
  return p * two_to(shifted);
}

// tanh for double, within 4 ulp of tanh, faster than ATen's Vectorized::tanh (Sleef's, 3.3 ns per
// element here, a third of a reservoir's time loop; 2.6x faster already with Sleef's exp inside):
// (1 - e) / (1 + e) with e = exp(-2|x|) in (0, 0.82) where |x| >= 0.1, so that 1 - e loses no more
// than 3 ulp to cancellation, the sign copied from x; below |x| = 0.1 (computed only where a lane
// of the vector lies there) its Taylor series to x^15 (the next term is under 1e-18 of x there).
inline at::vec::Vectorized<double> fast_tanh(const at::vec::Vectorized<double>& a) {
  using Vec = at::vec::Vectorized<double>;
  const Vec magnitude = a.abs();
  const Vec e = exp_nonpositive(magnitude * Vec(-2.0));
  const Vec far = ((Vec(1.0) - e) / (Vec(1.0) + e)) | (a & Vec(-0.0));  // x's sign bit
  const Vec near_zero = magnitude < Vec(0.1);
  if (near_zero.zero_mask() == (1 << Vec::size()) - 1) return far;  // no lane below 0.1
  const Vec x2 = a * a;  // the series' coefficients are 2^2n (2^2n - 1) B_2n / (2n)!
  Vec p = at::vec::fmadd(x2, Vec(-929569.0 / 638512875.0), Vec(21844.0 / 6081075.0));
  p = at::vec::fmadd(x2, p, Vec(-1382.0 / 155925.0));
  p = at::vec::fmadd(x2, p, Vec(62.0 / 2835.0));
  p = at::vec::fmadd(x2, p, Vec(-17.0 / 315.0));
  p = at::vec::fmadd(x2, p, Vec(2.0 / 15.0));
  p = at::vec::fmadd(x2, p, Vec(-1.0 / 3.0));
  const Vec near = at::vec::fmadd(a * x2, p, a);  // x + x^3 (-1/3 + 2 x^2 / 15 - ...)
  return Vec::blendv(far, near, near_zero);
}

// MKL, where torch's CPU library carries it (x86 builds): weak, so that the library still loads,
// and the products fall back to at::mm, where it does not. Values of MKL's CBLAS enums.
extern "C" {
int MKL_Set_Num_Threads_Local(int threads) __attribute__((weak));  // returns the previous setting
size_t cblas_sgemm_pack_get_size(int identifier, int m, int n, int k) __attribute__((weak));
void cblas_sgemm_pack(int layout, int identifier, int trans, int m, int n, int k, float alpha, const float* src,
                      int ld, float* dest) __attribute__((weak));
void cblas_sgemm_compute(int layout, int transa, int transb, int m, int n, int k, const float* a, int lda,
                         const float* b, int ldb, float beta, float* c, int ldc) __attribute__((weak));
}
constexpr int kRowMajor = 101, kNoTrans = 111, kTrans = 112, kPacked = 151, kBMatrix = 162;

// MKL splits even the smallest product over every thread; at or below this many multiply-adds per
// product one thread is faster here (Elman, B=16, H=64: 0.63 ms against 0.86 forward and backward).
constexpr int64_t kSerialGemmMacs = int64_t(1) << 17;

// One of a time loop's recurrent products, out (m x n) = [out +] a (m x k) w, with the same w
// (k x n) at every step. On CPU in float, MKL packs w once for all T steps: its plain GEMM would
// re-pack (copy) the whole weight at every step, which costs as much as the product at small
// batches; a small product runs on one thread. Elsewhere (double, other devices, no MKL) at::mm.
class StepProduct {
 public:
  // w: a 2-D tensor (k x n) with rows or columns contiguous, such as a weight or its transpose.
  StepProduct(const at::Tensor& w, int64_t m) : w_(w), m_(m), serial_(m * w.size(0) * w.size(1) <= kSerialGemmMacs) {
    const bool mkl = cblas_sgemm_pack_get_size != nullptr && cblas_sgemm_pack != nullptr && cblas_sgemm_compute != nullptr;
    // A dimension of size 1 may have any stride: the leading dimension is then the other's size.
    const bool row_major = w.stride(1) == 1 && (w.size(0) == 1 || w.stride(0) >= w.size(1));
    const bool column_major = w.stride(0) == 1 && (w.size(1) == 1 || w.stride(1) >= w.size(0));
    const int64_t ld = row_major ? (w.size(0) == 1 ? w.size(1) : w.stride(0))
                                 : (w.size(1) == 1 ? w.size(0) : w.stride(1));
    const int64_t largest = std::max({m, w.size(0), w.size(1), ld});
    if (!(mkl && w.is_cpu() && w.scalar_type() == at::kFloat && m > 0 && w.numel() > 0 &&
          (row_major || column_major) && largest < std::numeric_limits<int>::max())) {
      return;
    }
    const int k = static_cast<int>(w.size(0)), n = static_cast<int>(w.size(1));
    const size_t bytes = cblas_sgemm_pack_get_size(kBMatrix, static_cast<int>(m), n, k);
    packed_ = at::empty({static_cast<int64_t>(bytes / sizeof(float)) + 1}, w.options());
    cblas_sgemm_pack(kRowMajor, kBMatrix, row_major ? kNoTrans : kTrans, static_cast<int>(m), n, k, 1.0f,
                     w.data_ptr<float>(), static_cast<int>(ld), packed_.data_ptr<float>());
  }

  // a and out: row-major, rows lda and ldo elements apart (views into larger buffers allowed).
  template <typename T>
  void operator()(const T* a, int64_t lda, T* out, int64_t ldo, bool accumulate) const {
    if constexpr (std::is_same_v<T, float>) {
      if (packed_.defined()) {
        packed(a, lda, out, ldo, accumulate);
        return;
      }
    }
    const auto options = w_.options();
    at::Tensor result = at::from_blob(out, {m_, w_.size(1)}, {ldo, 1}, options);
    const at::Tensor in = at::from_blob(const_cast<T*>(a), {m_, w_.size(0)}, {lda, 1}, options);
    accumulate ? result.addmm_(in, w_) : at::mm_out(result, in, w_);
  }

  // a (m x k) and out (m x n) dense.
  template <typename T>
  void operator()(const T* a, T* out, bool accumulate) const {
    (*this)(a, w_.size(0), out, w_.size(1), accumulate);
  }

  // a and out: 2-D tensors of w's dtype and device.
  void operator()(at::Tensor& out, const at::Tensor& a, bool accumulate) const {
    if (packed_.defined() && a.stride(1) == 1 && out.stride(1) == 1) {
      packed(a.data_ptr<float>(), a.stride(0), out.data_ptr<float>(), out.stride(0), accumulate);
    } else if (accumulate) {
      out.addmm_(a, w_);
    } else {
      at::mm_out(out, a, w_);
    }
  }

 private:
  void packed(const float* a, int64_t lda, float* out, int64_t ldo, bool accumulate) const {
    const bool serial = serial_ && MKL_Set_Num_Threads_Local != nullptr;
    const int threads = serial ? MKL_Set_Num_Threads_Local(1) : 0;
    cblas_sgemm_compute(kRowMajor, kNoTrans, kPacked, static_cast<int>(m_), static_cast<int>(w_.size(1)),
                        static_cast<int>(w_.size(0)), a, static_cast<int>(lda), packed_.data_ptr<float>(),
                        static_cast<int>(w_.size(1)), accumulate ? 1.0f : 0.0f, out, static_cast<int>(ldo));
    if (serial) MKL_Set_Num_Threads_Local(threads);
  }

  at::Tensor w_, packed_;  // packed_: MKL's packed w, or undefined
  int64_t m_;
  bool serial_;
};

// A step's recurrent product with a sparse CSR matrix: out (m x n) = a (m x k) w^T, w (n x k) in CSR,
// such as a reservoir's fixed W (1% nonzero: a dense GEMM would read a hundred times the weights).
// Stored as SELL-C-sigma (Kreutzer et al., SIAM J. Sci. Comput. 2014): the rows sorted by their
// number of nonzeros, then cut into slices of C rows, C one SIMD vector; a slice is stored
// column-major, padded (value 0, column 0) to its longest row. The C dot products of a slice then
// run side by side, one vector of C state entries and one FMA per nonzero of each row: a row's
// sum in CSR is a chain of dependent scalar FMAs, bound by their latency and by the mispredicted
// branch where each row ends. The C entries are loaded one by one into a buffer, not by a SIMD
// gather, which AMD's Zen 4 runs slowly (a reservoir run of 3000 steps at 1000 units: 26-27 ms
// against 31-33 with at::vec::gather). The sort keeps the padding near zero for random sparsity
// patterns. Each row's sum runs over its nonzeros in CSR order, as a plain loop would; slices split
// over the threads when the product is large.
template <typename scalar_t>
class CsrStepProduct {
  using Vec = at::vec::Vectorized<scalar_t>;
  using index_t = int32_t;  // a column of the state (the check below keeps it in range)
  static constexpr int64_t kLanes = Vec::size();

 public:
  explicit CsrStepProduct(const at::Tensor& w) : n_(w.size(0)), k_(w.size(1)) {
    TORCH_CHECK(k_ <= std::numeric_limits<index_t>::max(), "CsrStepProduct: too many columns, ", k_);
    const at::Tensor crow = w.crow_indices().to(at::kLong).contiguous();
    const at::Tensor col = w.col_indices().to(at::kLong).contiguous();
    const at::Tensor val = w.values().contiguous();
    const int64_t* row_start = crow.data_ptr<int64_t>();
    const auto length = [&](int64_t row) { return row_start[row + 1] - row_start[row]; };
    rows_.resize(n_);
    for (int64_t i = 0; i < n_; ++i) rows_[i] = i;
    std::stable_sort(rows_.begin(), rows_.end(), [&](int64_t i, int64_t j) { return length(i) > length(j); });
    const int64_t slices = (n_ + kLanes - 1) / kLanes;
    slice_start_.assign(slices + 1, 0);
    for (int64_t s = 0; s < slices; ++s) {  // a slice's first row is its longest
      slice_start_[s + 1] = slice_start_[s] + kLanes * length(rows_[s * kLanes]);
    }
    columns_.assign(slice_start_[slices], 0);
    values_.assign(slice_start_[slices], scalar_t(0));
    const int64_t* columns = col.data_ptr<int64_t>();
    const scalar_t* values = val.data_ptr<scalar_t>();
    for (int64_t r = 0; r < n_; ++r) {
      const int64_t slot = slice_start_[r / kLanes] + r % kLanes, row = rows_[r];
      for (int64_t p = 0; p < length(row); ++p) {
        columns_[slot + p * kLanes] = static_cast<index_t>(columns[row_start[row] + p]);
        values_[slot + p * kLanes] = values[row_start[row] + p];
      }
    }
  }

  // a (m x k) and out (m x n) dense, row-major.
  void operator()(const scalar_t* a, scalar_t* out, int64_t m) const {
    const int64_t slices = static_cast<int64_t>(slice_start_.size()) - 1;
    const int64_t grain = m * static_cast<int64_t>(values_.size()) <= kSerialGemmMacs ? slices : 1;
    at::parallel_for(0, slices, grain, [&](int64_t s0, int64_t s1) {
      alignas(64) scalar_t sums[kLanes];
      for (int64_t b = 0; b < m; ++b) {
        const scalar_t* state = a + b * k_;
        for (int64_t s = s0; s < s1; ++s) {
          Vec sum(scalar_t(0));
          for (int64_t p = slice_start_[s]; p < slice_start_[s + 1]; p += kLanes) {
            alignas(64) scalar_t picked[kLanes];
            for (int64_t l = 0; l < kLanes; ++l) picked[l] = state[columns_[p + l]];
            const Vec x = Vec::loadu(picked);
            sum = at::vec::fmadd(Vec::loadu(&values_[p]), x, sum);
          }
          sum.store(sums);
          const int64_t lanes = std::min(kLanes, n_ - s * kLanes);
          for (int64_t r = 0; r < lanes; ++r) out[b * n_ + rows_[s * kLanes + r]] = sums[r];
        }
      }
    });
  }

 private:
  std::vector<int64_t> rows_;         // the rows, longest first: slice s holds rows_[s C .. s C + C)
  std::vector<int64_t> slice_start_;  // where each slice's (column-major, padded) entries begin
  std::vector<index_t> columns_;      // per entry: the column of the state it multiplies
  std::vector<scalar_t> values_;      // per entry: the matrix value, 0 in padding
  int64_t n_, k_;
};

// dL/dW_hh = sum_t delta_t^T h_{t-1}, as one GEMM over all steps, for the Elman-shaped loops
// (Elman, leaky): deltas (T,B,H), and h_{t-1} read from states (T+1,B,H) where they were kept,
// else h_0 = states[0] (1,B,H) and then outputs[t-1].
inline at::Tensor recurrent_weight_gradient(const at::Tensor& deltas, const at::Tensor& states,
                                            const at::Tensor& outputs, const at::Tensor& w_hh) {
  const int64_t steps = deltas.size(0), batch = deltas.size(1), hidden = deltas.size(2);
  if (steps == 0) return at::zeros_like(w_hh);
  if (states.size(0) == steps + 1) {
    return deltas.view({steps * batch, hidden}).t().mm(states.narrow(0, 0, steps).view({steps * batch, hidden}));
  }
  at::Tensor grad_w = deltas[0].t().mm(states[0]);
  if (steps > 1) {
    grad_w.addmm_(deltas.narrow(0, 1, steps - 1).view({(steps - 1) * batch, hidden}).t(),
                  outputs.narrow(0, 0, steps - 1).view({(steps - 1) * batch, hidden}));
  }
  return grad_w;
}

}  // namespace rnnkit
