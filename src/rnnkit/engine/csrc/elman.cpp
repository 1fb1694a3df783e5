// Fused Elman recurrence: the time loop of rnnkit/engine/fused/elman.py in C++.
//
// On CPU (float, double) each step is one GEMM (straight into BLAS) into the step's output row,
// then ONE pass over (B, H) that adds the input projection and the bias, applies the
// nonlinearity with ATen's SIMD vectors and masks finished sequences, split over the cores; every
// buffer is allocated once per call. Other devices and dtypes run the same equations as composed
// ATen ops. The saved tensors and the signatures are shared by both paths:
//   forward  -> {outputs (T,B,H), h_T (B,H), states}
//   backward(states, outputs, ...) -> {grad_xp, grad_h0, grad_w_hh, grad_b_hh}
// where ``states`` is (T+1,B,H), the state before each step and the last, when some sequence
// finishes early (``alive`` given), and just h0 as (1,B,H) otherwise: then the state after step t
// is ``outputs[t]``. ``outputs`` are the activations, 0 where a sequence has finished, which is
// all the backward needs of them (a finished step gets no gradient).

// ATen's SIMD types for the instruction set this library is built for (-march=native): the
// capability macros select the implementation, and a namespace of our own keeps these inline
// functions apart from libtorch's copies built for other instruction sets.
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
#include <optional>
#include <type_traits>
#include <vector>

namespace {

// Pointwise work below this many elements per step runs on one thread: waking the other costs
// more than it saves.
constexpr int64_t kParallelElements = 8192;

// Calls body(j0, j1) on ranges of hidden units, whole SIMD vectors apart, split over the threads.
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
// 1 - tanh² that the backward takes from it is the small difference. Double keeps Sleef's.
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

inline at::vec::Vectorized<double> fast_tanh(const at::vec::Vectorized<double>& a) { return a.tanh(); }

// The BLAS that torch links (MKL on x86 builds), called directly on pointers: each step's product
// then costs no tensor views and no dispatch. Weak, so that a torch without these symbols still
// loads this library and the steps use at::mm_out (and MKL's own threading) instead.
extern "C" {
int MKL_Set_Num_Threads_Local(int threads) __attribute__((weak));  // returns the previous setting
void sgemm_(const char* transa, const char* transb, const int* m, const int* n, const int* k, const float* alpha,
            const float* a, const int* lda, const float* b, const int* ldb, const float* beta, float* c,
            const int* ldc) __attribute__((weak));
void dgemm_(const char* transa, const char* transb, const int* m, const int* n, const int* k, const double* alpha,
            const double* a, const int* lda, const double* b, const int* ldb, const double* beta, double* c,
            const int* ldc) __attribute__((weak));
}

// MKL splits even the smallest product over every thread; below this many multiply-adds per step
// (B·H·H) one thread is faster here (B=16, H=64: 0.63 ms against 0.86 for forward and backward).
constexpr int64_t kSerialGemmMacs = int64_t(1) << 17;

// MKL on one thread for the scope, when each step's product is small (and MKL is torch's BLAS).
class SerialSmallGemms {
 public:
  explicit SerialSmallGemms(int64_t macs)
      : on_(MKL_Set_Num_Threads_Local != nullptr && macs <= kSerialGemmMacs),
        previous_(on_ ? MKL_Set_Num_Threads_Local(1) : 0) {}
  ~SerialSmallGemms() {
    if (on_) MKL_Set_Num_Threads_Local(previous_);
  }
  SerialSmallGemms(const SerialSmallGemms&) = delete;
  SerialSmallGemms& operator=(const SerialSmallGemms&) = delete;

 private:
  bool on_;
  int previous_;
};

// c (rows, cols) = beta c + a (rows, inner) @ (b_transposed ? b^T : b), all row-major and dense:
// b is (cols, inner) when transposed, else (inner, cols). beta is 0 or 1.
template <typename scalar_t>
void gemm(int64_t rows, int64_t cols, int64_t inner, const scalar_t* a, const scalar_t* b, bool b_transposed,
          scalar_t beta, scalar_t* c) {
  // Row-major c = a op(b) is column-major c^T = op(b)^T a^T: BLAS sees b first.
  const int m = static_cast<int>(cols), n = static_cast<int>(rows), k = static_cast<int>(inner);
  const int lda = b_transposed ? k : m, ldb = k, ldc = m;
  const char* transa = b_transposed ? "T" : "N";
  const scalar_t one = 1;
  if constexpr (std::is_same_v<scalar_t, float>) {
    if (sgemm_ != nullptr && rows > 0 && cols > 0 && inner > 0) {
      sgemm_(transa, "N", &m, &n, &k, &one, b, &lda, a, &ldb, &beta, c, &ldc);
      return;
    }
  } else {
    if (dgemm_ != nullptr && rows > 0 && cols > 0 && inner > 0) {
      dgemm_(transa, "N", &m, &n, &k, &one, b, &lda, a, &ldb, &beta, c, &ldc);
      return;
    }
  }
  const auto options = at::TensorOptions().dtype(c10::CppTypeToScalarType<scalar_t>::value);
  const at::Tensor a_t = at::from_blob(const_cast<scalar_t*>(a), {rows, inner}, options);
  const at::Tensor b_t = b_transposed ? at::from_blob(const_cast<scalar_t*>(b), {cols, inner}, options).t()
                                      : at::from_blob(const_cast<scalar_t*>(b), {inner, cols}, options);
  at::Tensor c_t = at::from_blob(c, {rows, cols}, options);
  if (beta == scalar_t(0)) {
    at::mm_out(c_t, a_t, b_t);
  } else {
    c_t.addmm_(a_t, b_t);
  }
}

template <typename scalar_t, bool kRelu>
struct Activation {
  using Vec = at::vec::Vectorized<scalar_t>;
  static Vec apply(const Vec& z) { return kRelu ? at::vec::clamp_min(z, Vec(0)) : fast_tanh(z); }
  // d phi / d z from y = phi(z)
  static Vec derivative_times(const Vec& y, const Vec& g) {
    return kRelu ? Vec::blendv(Vec(0), g, y > Vec(0)) : g * (Vec(1) - y * y);
  }
};

template <typename scalar_t, bool kRelu>
void forward_cpu(const at::Tensor& xp, const at::Tensor& h0, const at::Tensor& w_hh, const scalar_t* bias,
                 const scalar_t* alive, at::Tensor& outputs, at::Tensor& states) {
  using Vec = at::vec::Vectorized<scalar_t>;
  using Act = Activation<scalar_t, kRelu>;
  const int64_t steps = xp.size(0), batch = xp.size(1), hidden = xp.size(2), plane = batch * hidden;
  const scalar_t* w = w_hh.data_ptr<scalar_t>();
  const bool kept = alive != nullptr;  // states kept apart from the (masked) outputs
  const SerialSmallGemms serial(batch * hidden * hidden);
  for (int64_t t = 0; t < steps; ++t) {
    const scalar_t* p = kept ? states.data_ptr<scalar_t>() + t * plane
                             : (t == 0 ? h0.data_ptr<scalar_t>() : outputs.data_ptr<scalar_t>() + (t - 1) * plane);
    scalar_t* y = outputs.data_ptr<scalar_t>() + t * plane;
    gemm<scalar_t>(batch, hidden, hidden, p, w, /*b_transposed=*/true, 0, y);  // h_{t-1} W_hh^T
    const scalar_t* x = xp.data_ptr<scalar_t>() + t * plane;
    scalar_t* h = kept ? states.data_ptr<scalar_t>() + (t + 1) * plane : nullptr;
    const scalar_t* a = kept ? alive + t * batch : nullptr;
    for_unit_ranges<scalar_t>(batch, hidden, [&](int64_t j0, int64_t j1) {
      for (int64_t b = 0; b < batch; ++b) {
        const int64_t row = b * hidden;
        const bool running = !kept || a[b] > 0;
        for (int64_t j = j0; j < j1; j += Vec::size()) {
          const int64_t n = std::min<int64_t>(Vec::size(), j1 - j), i = row + j;
          if (!running) {  // finished: output 0, state kept
            Vec(0).store(y + i, n);
            Vec::loadu(p + i, n).store(h + i, n);
            continue;
          }
          Vec z = Vec::loadu(y + i, n) + Vec::loadu(x + i, n);
          if (bias != nullptr) z = z + Vec::loadu(bias + j, n);
          const Vec out_v = Act::apply(z);
          out_v.store(y + i, n);
          if (kept) out_v.store(h + i, n);
        }
      }
    });
  }
}

template <typename scalar_t, bool kRelu>
void backward_cpu(const at::Tensor& states, const at::Tensor& outputs, const at::Tensor& w_hh, const scalar_t* alive,
                  const at::Tensor& grad_outputs, at::Tensor& deltas, at::Tensor& grad_h, at::Tensor& grad_next) {
  using Vec = at::vec::Vectorized<scalar_t>;
  using Act = Activation<scalar_t, kRelu>;
  const int64_t steps = outputs.size(0), batch = outputs.size(1), hidden = outputs.size(2), plane = batch * hidden;
  const bool kept = alive != nullptr;
  const SerialSmallGemms serial(batch * hidden * hidden);
  for (int64_t t = steps - 1; t >= 0; --t) {
    const scalar_t* y = outputs.data_ptr<scalar_t>() + t * plane;
    const scalar_t* go = grad_outputs.data_ptr<scalar_t>() + t * plane;
    const scalar_t* g = grad_h.data_ptr<scalar_t>();
    scalar_t* gn = grad_next.data_ptr<scalar_t>();
    scalar_t* d = deltas.data_ptr<scalar_t>() + t * plane;
    const scalar_t* a = kept ? alive + t * batch : nullptr;
    for_unit_ranges<scalar_t>(batch, hidden, [&](int64_t j0, int64_t j1) {
      for (int64_t b = 0; b < batch; ++b) {
        const int64_t row = b * hidden;
        const bool running = !kept || a[b] > 0;
        for (int64_t j = j0; j < j1; j += Vec::size()) {
          const int64_t n = std::min<int64_t>(Vec::size(), j1 - j), i = row + j;
          if (!running) {  // finished: no gradient through the step, the state's passes by
            Vec(0).store(d + i, n);
            Vec::loadu(g + i, n).store(gn + i, n);
            continue;
          }
          const Vec gy = Vec::loadu(go + i, n) + Vec::loadu(g + i, n);
          Act::derivative_times(Vec::loadu(y + i, n), gy).store(d + i, n);
          if (kept) Vec(0).store(gn + i, n);
        }
      }
    });
    // dL/dh_{t-1} = delta_t W_hh (+ what passed by finished sequences, already in grad_next)
    gemm<scalar_t>(batch, hidden, hidden, d, w_hh.data_ptr<scalar_t>(), /*b_transposed=*/false, kept ? 1 : 0, gn);
    std::swap(grad_h, grad_next);
  }
}

// The same equations as composed ATen ops, for devices and dtypes without the loops above.
void forward_composed(const at::Tensor& xp_in, const at::Tensor& h0, const at::Tensor& w_hh,
                      const std::optional<at::Tensor>& b_hh, const std::optional<at::Tensor>& alive, bool relu,
                      at::Tensor& outputs, at::Tensor& states) {
  const at::Tensor xp = b_hh ? xp_in + *b_hh : xp_in;
  const at::Tensor w_t = w_hh.t();
  at::Tensor h = h0;
  for (int64_t t = 0; t < xp.size(0); ++t) {
    at::Tensor y = outputs[t];
    at::addmm_out(y, xp[t], h, w_t);
    relu ? y.relu_() : y.tanh_();
    if (alive) {
      at::Tensor running = (*alive)[t] > 0;
      states[t + 1].copy_(at::where(running, y, h));
      h = states[t + 1];
      y.mul_((*alive)[t]);
    } else {
      h = y;
    }
  }
}

void backward_composed(const at::Tensor& states, const at::Tensor& outputs, const at::Tensor& w_hh,
                       const std::optional<at::Tensor>& alive, const at::Tensor& grad_outputs, bool relu,
                       at::Tensor& deltas, at::Tensor& grad_h) {
  for (int64_t t = outputs.size(0) - 1; t >= 0; --t) {
    at::Tensor delta = deltas[t];
    at::add_out(delta, grad_outputs[t], grad_h);
    if (alive) delta.mul_((*alive)[t]);
    const at::Tensor y = outputs[t];
    delta.mul_(relu ? (y > 0).to(y.scalar_type()) : 1 - y * y);
    at::Tensor carried = at::mm(delta, w_hh);
    grad_h = alive ? carried.add_(grad_h * (1 - (*alive)[t])) : carried;
  }
}

bool runs_on_cpu_loops(const at::Tensor& xp) {
  return xp.device().is_cpu() && (xp.scalar_type() == at::kFloat || xp.scalar_type() == at::kDouble);
}

std::vector<at::Tensor> elman_forward(const at::Tensor& xp_in, const at::Tensor& h0_in, const at::Tensor& w_in,
                                      const std::optional<at::Tensor>& b_in,
                                      const std::optional<at::Tensor>& alive_in, bool relu) {
  TORCH_CHECK(xp_in.dim() == 3, "elman_forward: xp must be (T, B, H), got ", xp_in.sizes());
  const int64_t steps = xp_in.size(0), batch = xp_in.size(1), hidden = xp_in.size(2);
  TORCH_CHECK(h0_in.dim() == 2 && h0_in.size(0) == batch && h0_in.size(1) == hidden,
              "elman_forward: h0 must be (B, H) = (", batch, ", ", hidden, "), got ", h0_in.sizes());
  TORCH_CHECK(w_in.dim() == 2 && w_in.size(0) == hidden && w_in.size(1) == hidden,
              "elman_forward: W_hh must be (H, H)");
  TORCH_CHECK(!b_in || b_in->numel() == hidden, "elman_forward: b_hh must have H elements");
  TORCH_CHECK(!alive_in || alive_in->numel() == steps * batch, "elman_forward: alive must be (T, B, 1)");
  const at::Tensor xp = xp_in.contiguous(), h0 = h0_in.contiguous(), w_hh = w_in.contiguous();
  const std::optional<at::Tensor> b_hh = b_in ? std::optional<at::Tensor>(b_in->contiguous()) : std::nullopt;
  const std::optional<at::Tensor> alive = alive_in ? std::optional<at::Tensor>(alive_in->contiguous()) : std::nullopt;
  at::Tensor outputs = at::empty_like(xp);
  at::Tensor states = alive ? at::empty({steps + 1, xp.size(1), xp.size(2)}, xp.options()) : h0.unsqueeze(0);
  if (alive) states[0].copy_(h0);
  if (runs_on_cpu_loops(xp)) {
    AT_DISPATCH_FLOATING_TYPES(xp.scalar_type(), "elman_forward", [&] {
      const scalar_t* bias = b_hh ? b_hh->data_ptr<scalar_t>() : nullptr;
      const scalar_t* a = alive ? alive->data_ptr<scalar_t>() : nullptr;
      relu ? forward_cpu<scalar_t, true>(xp, h0, w_hh, bias, a, outputs, states)
           : forward_cpu<scalar_t, false>(xp, h0, w_hh, bias, a, outputs, states);
    });
  } else {
    forward_composed(xp, h0, w_hh, b_hh, alive, relu, outputs, states);
  }
  at::Tensor last = steps == 0 ? h0 : (alive ? states[steps] : outputs[steps - 1]);
  return {outputs, last.clone(), states};
}

std::vector<at::Tensor> elman_backward(const at::Tensor& states, const at::Tensor& outputs, const at::Tensor& w_in,
                                       const std::optional<at::Tensor>& b_hh,
                                       const std::optional<at::Tensor>& alive_in, const at::Tensor& grad_outputs_in,
                                       const at::Tensor& grad_h_final, bool relu) {
  TORCH_CHECK(outputs.dim() == 3 && grad_outputs_in.sizes() == outputs.sizes(),
              "elman_backward: outputs and grad_outputs must be (T, B, H)");
  const int64_t steps = outputs.size(0), batch = outputs.size(1), hidden = outputs.size(2);
  TORCH_CHECK(states.dim() == 3 && (states.size(0) == 1 || states.size(0) == steps + 1) &&
                  states.size(1) == batch && states.size(2) == hidden,
              "elman_backward: states must be (1, B, H) or (T+1, B, H), got ", states.sizes());
  TORCH_CHECK(grad_h_final.numel() == batch * hidden, "elman_backward: grad of h_T must be (B, H)");
  const at::Tensor w_hh = w_in.contiguous(), grad_outputs = grad_outputs_in.contiguous();
  const std::optional<at::Tensor> alive = alive_in ? std::optional<at::Tensor>(alive_in->contiguous()) : std::nullopt;
  at::Tensor deltas = at::empty_like(outputs);
  at::Tensor grad_h = grad_h_final.contiguous().clone();
  if (runs_on_cpu_loops(outputs)) {
    at::Tensor grad_next = at::empty_like(grad_h);
    AT_DISPATCH_FLOATING_TYPES(outputs.scalar_type(), "elman_backward", [&] {
      const scalar_t* a = alive ? alive->data_ptr<scalar_t>() : nullptr;
      relu ? backward_cpu<scalar_t, true>(states, outputs, w_hh, a, grad_outputs, deltas, grad_h, grad_next)
           : backward_cpu<scalar_t, false>(states, outputs, w_hh, a, grad_outputs, deltas, grad_h, grad_next);
    });
  } else {
    backward_composed(states, outputs, w_hh, alive, grad_outputs, relu, deltas, grad_h);
  }
  // dL/dW_hh = sum_t delta_t^T h_{t-1}, as one GEMM over all steps
  at::Tensor grad_w;
  if (steps == 0) {
    grad_w = at::zeros_like(w_hh);
  } else if (states.size(0) == steps + 1) {
    grad_w = deltas.view({steps * batch, hidden}).t().mm(states.narrow(0, 0, steps).view({steps * batch, hidden}));
  } else {
    grad_w = deltas[0].t().mm(states[0]);
    if (steps > 1) {
      grad_w.addmm_(deltas.narrow(0, 1, steps - 1).view({(steps - 1) * batch, hidden}).t(),
                    outputs.narrow(0, 0, steps - 1).view({(steps - 1) * batch, hidden}));
    }
  }
  at::Tensor grad_b = b_hh ? deltas.sum({0, 1}) : at::Tensor();
  return {deltas, grad_h, grad_w, grad_b};
}

}  // namespace

TORCH_LIBRARY_FRAGMENT(rnnkit, m) {
  m.def("elman_forward", &elman_forward);
  m.def("elman_backward", &elman_backward);
}
