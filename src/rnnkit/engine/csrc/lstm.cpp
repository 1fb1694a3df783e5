// Fused LSTM recurrence: the time loop of rnnkit/engine/fused/lstm.py in ATen, for CPU and CUDA.
// Same equations, same saved tensors, same signatures as the Python version there (see its
// docstring for the forward and backward equations).
//
// Per step, only the state-to-state products run (h_{t-1} W_hh^T forward, delta_t W_hh backward,
// and the projection's m_t W_hr^T / dh_t W_hr); the gate arithmetic of a step is one pass over
// memory on CPU (SIMD, split over the threads) and composed ATen ops on other devices. The
// parameters' gradients are reductions over all steps after the loop.

#include "kernel_support.h"

#include <optional>
#include <vector>

namespace {

using rnnkit::fast_tanh;
using rnnkit::StepProduct;

using at::Tensor;
using OptTensor = std::optional<Tensor>;
using at::vec::Vectorized;

// Elements of gate arithmetic below which one thread does a step's pass alone: a parallel region
// costs a few microseconds, about what one thread spends on this many elements.
constexpr int64_t kGrain = 4096;

template <typename T>
inline Vectorized<T> sigmoid(const Vectorized<T>& x) {
  const Vectorized<T> one(T(1));
  return one / (one + x.neg().exp_u20());  // exp_u20: 20 ulp in float (Sleef's 1 ulp in double)
}

template <typename T>
inline const T* ptr_or_null(const OptTensor& t) {
  return t ? t->data_ptr<T>() : nullptr;
}

// Runs fn(b, j0, j1) over the (rows x width) elements of one step, split over the threads.
template <typename Fn>
inline void for_rows(int64_t rows, int64_t width, const Fn& fn) {
  at::parallel_for(0, rows * width, kGrain, [&](int64_t begin, int64_t end) {
    for (int64_t k = begin; k < end;) {
      const int64_t b = k / width, j0 = k % width, j1 = std::min(width, j0 + end - k);
      fn(b, j0, j1);
      k += j1 - j0;
    }
  });
}

// The weights and geometry of one recurrence, shared by the step kernels.
template <typename T>
struct Cell {
  int64_t batch, hidden, gates;  // B, H, G = 3H (coupled) or 4H
  const T* w_ci;                 // (H) peepholes, or nullptr
  const T* w_cf;
  const T* w_co;
  bool coupled;
  int64_t offset(int gate) const {  // column of gate 0=i, 1=f (absent when coupled), 2=g, 3=o in a row
    return (coupled ? std::max(gate - 1, 0) : gate) * hidden;
  }
};

// Forward gate arithmetic of step t, in place: `a` (B, G) holds the pre-activations on entry and
// the activations i, f, g, o on exit; writes c_t into c_out and m_t = o tanh(c_t) into m_out.
// A finished sequence (alive 0) keeps c_{t-1}, and gets h_prev in m_out (without projection, where
// m_out is h_t) or 0 (h_prev null). `out` (B, H), when given, receives the masked output m_t alive.
template <typename T, bool kPeephole, bool kCoupled>
void forward_step(const Cell<T>& cell, T* a, const T* c_prev, T* c_out, T* m_out, const T* alive,
                  const T* h_prev, T* out) {
  using Vec = Vectorized<T>;
  const int64_t H = cell.hidden, G = cell.gates;
  const int64_t oi = cell.offset(0), of = cell.offset(1), og = cell.offset(2), oo = cell.offset(3);
  for_rows(cell.batch, H, [&](int64_t b, int64_t j0, int64_t j1) {
    T* row = a + b * G;
    const T* cp_row = c_prev + b * H;
    if (alive && alive[b] == T(0)) {
      std::copy(cp_row + j0, cp_row + j1, c_out + b * H + j0);
      if (h_prev) {
        std::copy(h_prev + b * H + j0, h_prev + b * H + j1, m_out + b * H + j0);
      } else {
        std::fill(m_out + b * H + j0, m_out + b * H + j1, T(0));
      }
      if (out) std::fill(out + b * H + j0, out + b * H + j1, T(0));
      return;
    }
    const Vec one(T(1));
    for (int64_t j = j0; j < j1; j += Vec::size()) {
      const int64_t n = std::min<int64_t>(Vec::size(), j1 - j);
      const Vec cp = Vec::loadu(cp_row + j, n);
      Vec ai = Vec::loadu(row + oi + j, n);
      if constexpr (kPeephole) ai = at::vec::fmadd(Vec::loadu(cell.w_ci + j, n), cp, ai);
      const Vec i = sigmoid(ai);
      Vec f;
      if constexpr (kCoupled) {
        f = one - i;
      } else {
        Vec af = Vec::loadu(row + of + j, n);
        if constexpr (kPeephole) af = at::vec::fmadd(Vec::loadu(cell.w_cf + j, n), cp, af);
        f = sigmoid(af);
        f.store(row + of + j, n);
      }
      const Vec g = fast_tanh(Vec::loadu(row + og + j, n));
      const Vec c = at::vec::fmadd(f, cp, i * g);
      Vec ao = Vec::loadu(row + oo + j, n);
      if constexpr (kPeephole) ao = at::vec::fmadd(Vec::loadu(cell.w_co + j, n), c, ao);
      const Vec o = sigmoid(ao);
      const Vec m = o * fast_tanh(c);
      i.store(row + oi + j, n);
      g.store(row + og + j, n);
      o.store(row + oo + j, n);
      c.store(c_out + b * H + j, n);
      m.store(m_out + b * H + j, n);
      if (out) m.store(out + b * H + j, n);
    }
  });
}

// Backward gate arithmetic of step t: from dm = dL/dm_t (B, H) and the carried dL/dc_t (gc),
// writes delta_t (B, G) and dL/dc_{t-1} into gc_out. Finished sequences pass gc through and get
// delta 0. Without projection, dm is alive * (grad_out + gh), formed here from those two (B, H)
// tensors (gh_out, when given, receives the part of gh that passes through finished sequences).
template <typename T, bool kPeephole, bool kCoupled>
void backward_step(const Cell<T>& cell, const T* acts, const T* c_prev, const T* c_new, const T* dm_in,
                   const T* grad_out, const T* gh, const T* gc, const T* alive, T* delta, T* gc_out,
                   T* gh_out) {
  using Vec = Vectorized<T>;
  const int64_t H = cell.hidden, G = cell.gates;
  const int64_t oi = cell.offset(0), of = cell.offset(1), og = cell.offset(2), oo = cell.offset(3);
  for_rows(cell.batch, H, [&](int64_t b, int64_t j0, int64_t j1) {
    const int64_t r = b * H;
    if (alive && alive[b] == T(0)) {
      std::fill(delta + b * G + oi + j0, delta + b * G + oi + j1, T(0));
      if constexpr (!kCoupled) std::fill(delta + b * G + of + j0, delta + b * G + of + j1, T(0));
      std::fill(delta + b * G + og + j0, delta + b * G + og + j1, T(0));
      std::fill(delta + b * G + oo + j0, delta + b * G + oo + j1, T(0));
      std::copy(gc + r + j0, gc + r + j1, gc_out + r + j0);
      if (gh_out) std::copy(gh + r + j0, gh + r + j1, gh_out + r + j0);
      return;
    }
    const T* row = acts + b * G;
    T* drow = delta + b * G;
    const Vec one(T(1));
    for (int64_t j = j0; j < j1; j += Vec::size()) {
      const int64_t n = std::min<int64_t>(Vec::size(), j1 - j);
      const Vec dm = dm_in ? Vec::loadu(dm_in + r + j, n) : Vec::loadu(grad_out + r + j, n) + Vec::loadu(gh + r + j, n);
      const Vec i = Vec::loadu(row + oi + j, n);
      const Vec g = Vec::loadu(row + og + j, n);
      const Vec o = Vec::loadu(row + oo + j, n);
      const Vec cp = Vec::loadu(c_prev + r + j, n);
      const Vec tc = fast_tanh(Vec::loadu(c_new + r + j, n));
      const Vec d_o = dm * tc * o * (one - o);
      Vec dc = at::vec::fmadd(dm * o, one - tc * tc, Vec::loadu(gc + r + j, n));
      if constexpr (kPeephole) dc = at::vec::fmadd(d_o, Vec::loadu(cell.w_co + j, n), dc);
      const Vec d_g = dc * i * (one - g * g);
      Vec dc_prev;
      if constexpr (kCoupled) {
        const Vec d_i = dc * (g - cp) * i * (one - i);
        dc_prev = dc * (one - i);
        if constexpr (kPeephole) dc_prev = at::vec::fmadd(d_i, Vec::loadu(cell.w_ci + j, n), dc_prev);
        d_i.store(drow + oi + j, n);
      } else {
        const Vec f = Vec::loadu(row + of + j, n);
        const Vec d_i = dc * g * i * (one - i);
        const Vec d_f = dc * cp * f * (one - f);
        dc_prev = dc * f;
        if constexpr (kPeephole) {
          dc_prev = at::vec::fmadd(d_i, Vec::loadu(cell.w_ci + j, n), dc_prev);
          dc_prev = at::vec::fmadd(d_f, Vec::loadu(cell.w_cf + j, n), dc_prev);
        }
        d_i.store(drow + oi + j, n);
        d_f.store(drow + of + j, n);
      }
      d_g.store(drow + og + j, n);
      d_o.store(drow + oo + j, n);
      dc_prev.store(gc_out + r + j, n);
      if (gh_out) Vec(T(0)).store(gh_out + r + j, n);
    }
  });
}

// Calls fn with the options as compile-time constants, so that each variant's loop is branch-free.
template <typename Fn>
void with_variant(bool peephole, bool coupled, const Fn& fn) {
  if (peephole) {
    coupled ? fn(std::integral_constant<bool, true>(), std::integral_constant<bool, true>())
            : fn(std::integral_constant<bool, true>(), std::integral_constant<bool, false>());
  } else {
    coupled ? fn(std::integral_constant<bool, false>(), std::integral_constant<bool, true>())
            : fn(std::integral_constant<bool, false>(), std::integral_constant<bool, false>());
  }
}

// The views i, f, g, o of a (B, G) row of gates; f undefined when coupled.
std::vector<Tensor> gate_views(const Tensor& row, bool coupled) {
  auto parts = row.chunk(coupled ? 3 : 4, 1);
  if (coupled) return {parts[0], Tensor(), parts[1], parts[2]};
  return {parts[0], parts[1], parts[2], parts[3]};
}

// ---- the recurrences ----

// The tensors of one recurrence's forward, allocated by lstm_forward and filled by a loop below.
struct Forward {
  Tensor gates;    // (T, B, G): the pre-activations xp_t + b_hh on entry, each step's activations on exit
  Tensor hs, cs;   // (T+1, B, P), (T+1, B, H): the state before each step, and the last
  Tensor ms;       // (T, B, H): o tanh(c), the projection's input; empty without projection
  Tensor outputs;  // (T, B, P): a view of hs[1:] without a mask
};

void forward_cpu(Forward& f, const Tensor& w_hh, const OptTensor& w_ci, const OptTensor& w_cf, const OptTensor& w_co,
                 const OptTensor& w_hr, const OptTensor& alive, bool coupled) {
  const int64_t steps = f.gates.size(0), batch = f.gates.size(1), hidden = f.cs.size(2), proj = f.hs.size(2);
  AT_DISPATCH_FLOATING_TYPES(f.gates.scalar_type(), "lstm_forward", [&] {
    using T = scalar_t;
    const Cell<T> cell{batch, hidden, f.gates.size(2), ptr_or_null<T>(w_ci), ptr_or_null<T>(w_cf),
                       ptr_or_null<T>(w_co), coupled};
    const StepProduct recurrent(w_hh.t(), batch);  // a_t += h_{t-1} W_hh^T
    const StepProduct projection = w_hr ? StepProduct(w_hr->t(), batch) : recurrent;  // h_t = m_t W_hr^T
    T* a = f.gates.data_ptr<T>();
    T* h = f.hs.data_ptr<T>();
    T* c = f.cs.data_ptr<T>();
    T* m = w_hr ? f.ms.data_ptr<T>() : nullptr;
    T* out = alive ? f.outputs.data_ptr<T>() : nullptr;
    const T* live = alive ? alive->data_ptr<T>() : nullptr;
    const int64_t G = cell.gates, BG = batch * G, BH = batch * hidden, BP = batch * proj;
    with_variant(w_ci.has_value(), coupled, [&](auto peephole, auto coupled_) {
      constexpr bool kPeephole = decltype(peephole)::value, kCoupled = decltype(coupled_)::value;
      for (int64_t t = 0; t < steps; ++t) {
        const T* alive_t = live ? live + t * batch : nullptr;
        T* h_t = h + (t + 1) * BP;
        recurrent(h + t * BP, a + t * BG, /*accumulate=*/true);
        if (!w_hr) {  // m_t is h_t
          forward_step<T, kPeephole, kCoupled>(cell, a + t * BG, c + t * BH, c + (t + 1) * BH, h_t, alive_t,
                                               h + t * BP, out ? out + t * BP : nullptr);
          continue;
        }
        forward_step<T, kPeephole, kCoupled>(cell, a + t * BG, c + t * BH, c + (t + 1) * BH, m + t * BH, alive_t,
                                             nullptr, nullptr);
        if (!alive_t) {
          projection(m + t * BH, h_t, false);
          continue;
        }
        T* y = out + t * BP;
        projection(m + t * BH, y, false);  // m_t = 0 where finished: so is the output
        for (int64_t b = 0; b < batch; ++b) {
          const T* src = (alive_t[b] != T(0) ? y : h + t * BP) + b * proj;
          std::copy(src, src + proj, h_t + b * proj);
        }
      }
    });
  });
}

void forward_composite(Forward& f, const Tensor& w_hh, const OptTensor& w_ci, const OptTensor& w_cf,
                       const OptTensor& w_co, const OptTensor& w_hr, const OptTensor& alive, bool coupled) {
  const Tensor w_t = w_hh.t();
  for (int64_t t = 0; t < f.gates.size(0); ++t) {
    Tensor a = f.gates[t].addmm_(f.hs[t], w_t);
    auto v = gate_views(a, coupled);
    const Tensor c_prev = f.cs[t];
    if (w_ci) v[0].addcmul_(*w_ci, c_prev);
    const Tensor i = v[0].sigmoid_();
    Tensor forget;
    if (coupled) {
      forget = 1 - i;
    } else {
      if (w_cf) v[1].addcmul_(*w_cf, c_prev);
      forget = v[1].sigmoid_();
    }
    const Tensor g = v[2].tanh_();
    const Tensor c_new = at::addcmul(forget * c_prev, i, g);
    if (w_co) v[3].addcmul_(*w_co, c_new);
    Tensor m = v[3].sigmoid_() * c_new.tanh();
    if (w_hr) {
      f.ms[t].copy_(m);
      m = at::mm(m, w_hr->t());
    }
    if (alive) {
      const Tensor keep = (*alive)[t] > 0;
      Tensor c_t = f.cs[t + 1], h_t = f.hs[t + 1], y_t = f.outputs[t];
      at::where_out(c_t, keep, c_new, c_prev);
      at::where_out(h_t, keep, m, f.hs[t]);
      at::mul_out(y_t, m, (*alive)[t]);
    } else {
      f.cs[t + 1].copy_(c_new);
      f.hs[t + 1].copy_(m);
    }
  }
}

// Returns {outputs (T,B,P), h_T (B,P), c_T (B,H), gates (T,B,G): each step's activations,
//          hs (T+1,B,P): h before each step and the last, cs (T+1,B,H) likewise for c,
//          ms (T,B,H): o tanh(c) before the projection, or empty without one}.
std::vector<Tensor> lstm_forward(const Tensor& xp, const Tensor& h0, const Tensor& c0, const Tensor& w_hh,
                                 const OptTensor& b_hh, const OptTensor& w_ci, const OptTensor& w_cf,
                                 const OptTensor& w_co, const OptTensor& w_hr, const OptTensor& alive, bool coupled) {
  const int64_t steps = xp.size(0), batch = xp.size(1), hidden = c0.size(1), proj = h0.size(1);
  Forward f;
  f.gates = (b_hh ? xp + *b_hh : xp.clone()).contiguous();
  f.hs = at::empty({steps + 1, batch, proj}, xp.options());
  f.cs = at::empty({steps + 1, batch, hidden}, xp.options());
  f.ms = at::empty({w_hr ? steps : 0, batch, hidden}, xp.options());
  f.outputs = alive ? at::empty({steps, batch, proj}, xp.options()) : f.hs.narrow(0, 1, steps);
  f.hs[0].copy_(h0);
  f.cs[0].copy_(c0);
  const auto contiguous = [](const OptTensor& t) { return t ? OptTensor(t->contiguous()) : std::nullopt; };
  (xp.device().is_cpu() ? forward_cpu : forward_composite)(
      f, w_hh.contiguous(), contiguous(w_ci), contiguous(w_cf), contiguous(w_co), contiguous(w_hr), contiguous(alive),
      coupled);
  return {f.outputs, f.hs[steps].clone(), f.cs[steps].clone(), f.gates, f.hs, f.cs, f.ms};
}

// The tensors of one recurrence's backward.
struct Backward {
  Tensor gates, hs, cs;  // as saved by the forward
  Tensor grad_outputs;   // (T, B, P)
  Tensor deltas;         // (T, B, G): dL/da_t, the gradient of xp_t
  Tensor grad_ys;        // (T, B, P): dL/dh_t, the projection's output, where there is one
  Tensor gh, gc;         // (B, P), (B, H): dL/dh_t, dL/dc_t flowing into step t; on exit, of the initial state
};

void backward_cpu(Backward& bw, const Tensor& w_hh, const OptTensor& w_ci, const OptTensor& w_cf,
                  const OptTensor& w_co, const OptTensor& w_hr, const OptTensor& alive, bool coupled) {
  const int64_t steps = bw.gates.size(0), batch = bw.gates.size(1), hidden = bw.cs.size(2), proj = bw.hs.size(2);
  AT_DISPATCH_FLOATING_TYPES(bw.gates.scalar_type(), "lstm_backward", [&] {
    using T = scalar_t;
    const Cell<T> cell{batch, hidden, bw.gates.size(2), ptr_or_null<T>(w_ci), ptr_or_null<T>(w_cf),
                       ptr_or_null<T>(w_co), coupled};
    const StepProduct recurrent(w_hh, batch);                  // dh_{t-1} = delta_t W_hh
    const StepProduct projection = w_hr ? StepProduct(*w_hr, batch) : recurrent;  // dm_t = dh_t W_hr
    const T* a = bw.gates.data_ptr<T>();
    const T* c = bw.cs.data_ptr<T>();
    const T* gout = bw.grad_outputs.data_ptr<T>();
    const T* live = alive ? alive->data_ptr<T>() : nullptr;
    T* d = bw.deltas.data_ptr<T>();
    T* gy = w_hr ? bw.grad_ys.data_ptr<T>() : nullptr;
    const int64_t G = cell.gates, BG = batch * G, BH = batch * hidden, BP = batch * proj;
    // the carried gradients, double-buffered: [0] flows into step t, [1] out of it
    Tensor gh[2] = {bw.gh, at::empty_like(bw.gh)};
    Tensor gc[2] = {bw.gc, at::empty_like(bw.gc)};
    Tensor dm = w_hr ? at::empty({batch, hidden}, bw.gates.options()) : Tensor();
    with_variant(w_ci.has_value(), coupled, [&](auto peephole, auto coupled_) {
      constexpr bool kPeephole = decltype(peephole)::value, kCoupled = decltype(coupled_)::value;
      for (int64_t t = steps - 1; t >= 0; --t) {
        const T* alive_t = live ? live + t * batch : nullptr;
        const T* gh_in = gh[0].data_ptr<T>();
        T* gh_out = gh[1].data_ptr<T>();
        if (w_hr) {
          // dL/dh_t = alive (grad_out + gh); the rest of gh passes through finished sequences
          T* gy_t = gy + t * BP;
          const T* go = gout + t * BP;
          for (int64_t k = 0; k < BP; ++k) {
            const T live_k = alive_t ? alive_t[k / proj] : T(1);
            gy_t[k] = live_k * (go[k] + gh_in[k]);
            gh_out[k] = (T(1) - live_k) * gh_in[k];
          }
          projection(gy_t, dm.data_ptr<T>(), false);
        }
        backward_step<T, kPeephole, kCoupled>(cell, a + t * BG, c + t * BH, c + (t + 1) * BH,
                                              w_hr ? dm.data_ptr<T>() : nullptr, gout + t * BP, gh_in,
                                              gc[0].data_ptr<T>(), alive_t, d + t * BG, gc[1].data_ptr<T>(),
                                              alive_t && !w_hr ? gh_out : nullptr);
        // delta_t W_hh, plus (with a mask) what passed through finished sequences
        recurrent(d + t * BG, gh_out, /*accumulate=*/alive_t != nullptr);
        std::swap(gh[0], gh[1]);
        std::swap(gc[0], gc[1]);
      }
    });
    bw.gh = gh[0];
    bw.gc = gc[0];
  });
}

void backward_composite(Backward& bw, const Tensor& w_hh, const OptTensor& w_ci, const OptTensor& w_cf,
                        const OptTensor& w_co, const OptTensor& w_hr, const OptTensor& alive, bool coupled) {
  for (int64_t t = bw.gates.size(0) - 1; t >= 0; --t) {
    Tensor grad_y = bw.grad_outputs[t] + bw.gh;
    Tensor grad_c = bw.gc;
    if (alive) {
      grad_y = grad_y * (*alive)[t];
      grad_c = grad_c * (*alive)[t];
    }
    if (w_hr) {
      bw.grad_ys[t].copy_(grad_y);
      grad_y = at::mm(grad_y, *w_hr);
    }
    auto v = gate_views(bw.gates[t], coupled);
    auto dv = gate_views(bw.deltas[t], coupled);
    const Tensor c_prev = bw.cs[t];
    const Tensor tanh_c = bw.cs[t + 1].tanh();
    at::mul_out(dv[3], grad_y * tanh_c, v[3] * (1 - v[3]));
    Tensor dc = grad_c + grad_y * v[3] * (1 - tanh_c * tanh_c);
    if (w_co) dc.addcmul_(dv[3], *w_co);
    at::mul_out(dv[2], dc * v[0], 1 - v[2] * v[2]);
    Tensor forget;
    if (coupled) {
      forget = 1 - v[0];
      at::mul_out(dv[0], dc * (v[2] - c_prev), v[0] * forget);
    } else {
      forget = v[1];
      at::mul_out(dv[0], dc * v[2], v[0] * (1 - v[0]));
      at::mul_out(dv[1], dc * c_prev, forget * (1 - forget));
    }
    dc = dc * forget;
    if (w_ci) dc.addcmul_(dv[0], *w_ci);
    if (w_cf) dc.addcmul_(dv[1], *w_cf);
    Tensor carried = at::mm(bw.deltas[t], w_hh);
    if (alive) {
      const Tensor dead = 1 - (*alive)[t];
      bw.gh = carried.addcmul_(bw.gh, dead);
      bw.gc = dc.addcmul_(bw.gc, dead);
    } else {
      bw.gh = carried;
      bw.gc = dc;
    }
  }
}

// Returns {grad_xp (T,B,G), grad_h0 (B,P), grad_c0 (B,H), grad_w_hh (G,P), grad_b_hh (G),
//          grad_w_ci, grad_w_cf, grad_w_co (H), grad_w_hr (P,H)}; undefined for absent parameters.
std::vector<Tensor> lstm_backward(const Tensor& gates, const Tensor& hs, const Tensor& cs, const Tensor& ms,
                                  const Tensor& w_hh, const OptTensor& b_hh, const OptTensor& w_ci,
                                  const OptTensor& w_cf, const OptTensor& w_co, const OptTensor& w_hr,
                                  const OptTensor& alive, const Tensor& grad_outputs, const Tensor& grad_h_final,
                                  const Tensor& grad_c_final, bool coupled) {
  const int64_t steps = gates.size(0);
  Backward bw;
  bw.gates = gates;
  bw.hs = hs;
  bw.cs = cs;
  bw.grad_outputs = grad_outputs.contiguous();
  bw.deltas = at::empty_like(gates);
  bw.grad_ys = w_hr ? at::empty_like(bw.grad_outputs) : Tensor();
  bw.gh = grad_h_final.contiguous().clone();
  bw.gc = grad_c_final.contiguous().clone();
  const auto contiguous = [](const OptTensor& t) { return t ? OptTensor(t->contiguous()) : std::nullopt; };
  (gates.device().is_cpu() ? backward_cpu : backward_composite)(
      bw, w_hh.contiguous(), contiguous(w_ci), contiguous(w_cf), contiguous(w_co), contiguous(w_hr),
      contiguous(alive), coupled);

  // the parameters' gradients: one reduction over all steps each
  const Tensor flat = bw.deltas.flatten(0, 1);  // (T·B, G)
  const Tensor grad_w_hh = flat.t().mm(hs.narrow(0, 0, steps).flatten(0, 1));  // sum_t delta_t^T h_{t-1}
  const Tensor grad_b_hh = b_hh ? flat.sum(0) : Tensor();
  Tensor grad_ci, grad_cf, grad_co;
  if (w_ci) {
    const auto dv = gate_views(flat, coupled);
    const Tensor c_prev = cs.narrow(0, 0, steps).flatten(0, 1), c_new = cs.narrow(0, 1, steps).flatten(0, 1);
    grad_ci = (dv[0] * c_prev).sum(0);
    if (w_cf) grad_cf = (dv[1] * c_prev).sum(0);
    grad_co = (dv[3] * c_new).sum(0);
  }
  const Tensor grad_w_hr = w_hr ? bw.grad_ys.flatten(0, 1).t().mm(ms.flatten(0, 1)) : Tensor();  // sum_t dh_t^T m_t
  return {bw.deltas, bw.gh, bw.gc, grad_w_hh, grad_b_hh, grad_ci, grad_cf, grad_co, grad_w_hr};
}

}  // namespace

TORCH_LIBRARY_FRAGMENT(rnnkit, m) {
  m.def("lstm_forward", &lstm_forward);
  m.def("lstm_backward", &lstm_backward);
}
