// Fused GRU recurrences: the time loops of rnnkit/engine/fused/gru.py in ATen, for CPU and CUDA.
// Same equations, same saved tensors, same signatures as the Python versions there (see its
// docstring for the derivation). Only the state-dependent products run per step; on CPU the gate
// math of a step is one vectorised pass over its rows, split over the cores; other devices
// compose ATen operations. The reset-before loop also runs MUT1-3 (rnnkit/engine/fused/mut.py).

#include "kernel_support.h"

#include <optional>
#include <utility>
#include <vector>

namespace {

using rnnkit::fast_tanh;
using rnnkit::StepProduct;

using at::Tensor;
using OptionalTensor = std::optional<Tensor>;
template <typename T>
using Vec = at::vec::Vectorized<T>;

// What the update gate's recurrent product reads (Z_READS in gru.py).
enum ZReads : int64_t { kState = 0, kNothing = 1, kTanhState = 2 };

// Rows of a step's gate math go to one thread until a step has this many elements: below it,
// waking the second core costs more than it saves.
constexpr int64_t kParallelElements = 2048;

template <typename T>
inline Vec<T> load(const T* p, int64_t n) {
  return n == Vec<T>::size() ? Vec<T>::loadu(p) : Vec<T>::loadu(p, n);
}

template <typename T>
inline void store(const Vec<T>& v, T* p, int64_t n) {
  v.store(p, static_cast<int>(n));
}

template <typename T>
inline Vec<T> sigmoid(const Vec<T>& x) {
  return (Vec<T>(T(1)) + x.neg().exp()).reciprocal();
}

// Calls f(b, j, n) for every row b < rows and every run of n <= Vec<T>::size() lanes j.. of a
// row of `width`: the rows are split over the cores when the step is large enough.
template <typename T, typename F>
void for_each_lane_run(int64_t rows, int64_t width, const F& f) {
  const int64_t grain = std::max<int64_t>(1, kParallelElements / std::max<int64_t>(width, 1));
  at::parallel_for(0, rows, grain, [&](int64_t begin, int64_t end) {
    for (int64_t b = begin; b < end; ++b) {
      int64_t j = 0;
      for (; j + Vec<T>::size() <= width; j += Vec<T>::size()) f(b, j, Vec<T>::size());
      if (j < width) f(b, j, width - j);
    }
  });
}

// ---------------------------------------------------------------------------------------------
// Reset after the product (torch.nn.GRU): one product h W_hh^T per step.
// Saved: hs (T+1, B, H), the state before each step and the last; gates (T, B, 4H): r, z, n and
// W_hn h + b_hn of each step.

template <typename T>
const T* step_pointer(const OptionalTensor& alive, int64_t offset) {
  return alive ? alive->data_ptr<T>() + offset : nullptr;
}

// The gates and new state of one step from hh = h W_hh^T (b_hh, or null, is added here).
template <typename T>
void after_forward_step(const T* xp, const T* hh, const T* bias, const T* h, const T* alive, T* gates, T* h_next,
                        T* out, int64_t batch, int64_t H) {
  for_each_lane_run<T>(batch, H, [&](int64_t b, int64_t j, int64_t n) {
    const T* x = xp + b * 3 * H + j;
    const T* p = hh + b * 3 * H + j;
    Vec<T> a_r = load(x, n) + load(p, n), a_z = load(x + H, n) + load(p + H, n), h_n = load(p + 2 * H, n);
    if (bias != nullptr) {
      a_r = a_r + load(bias + j, n);
      a_z = a_z + load(bias + H + j, n);
      h_n = h_n + load(bias + 2 * H + j, n);
    }
    const Vec<T> r = sigmoid(a_r), z = sigmoid(a_z);
    const Vec<T> c = fast_tanh(load(x + 2 * H, n) + r * h_n);
    const Vec<T> h_prev = load(h + b * H + j, n);
    const Vec<T> y = c + z * (h_prev - c);
    T* g = gates + b * 4 * H + j;
    store(r, g, n);
    store(z, g + H, n);
    store(c, g + 2 * H, n);
    store(h_n, g + 3 * H, n);
    const bool live = alive == nullptr || alive[b] > 0;
    store(live ? y : h_prev, h_next + b * H + j, n);  // finished sequences keep their state
    store(live ? y : Vec<T>(T(0)), out + b * H + j, n);
  });
}

// The gate deltas of one step: δ_r, δ_z, δ_n into grad_xp; δ_r, δ_z, δ_n r (the gradient of
// h W_hh^T + b_hh) into step_grad and δ_n r into reset_grad; carried = g z (+ the gradient a
// finished sequence passes through unchanged). The caller adds step_grad W_hh to carried.
template <typename T>
void after_backward_step(const T* gates, const T* h, const T* grad_out, const T* grad_h, const T* alive,
                         T* grad_xp, T* step_grad, T* reset_grad, T* carried, int64_t batch, int64_t H) {
  for_each_lane_run<T>(batch, H, [&](int64_t b, int64_t j, int64_t n) {
    T* dx = grad_xp + b * 3 * H + j;
    T* dh = step_grad + b * 3 * H + j;
    const Vec<T> incoming = load(grad_h + b * H + j, n);
    if (alive != nullptr && !(alive[b] > 0)) {
      const Vec<T> zero(T(0));
      for (int64_t k = 0; k < 3; ++k) {
        store(zero, dx + k * H, n);
        store(zero, dh + k * H, n);
      }
      store(zero, reset_grad + b * H + j, n);
      store(incoming, carried + b * H + j, n);
      return;
    }
    const T* s = gates + b * 4 * H + j;
    const Vec<T> one(T(1));
    const Vec<T> r = load(s, n), z = load(s + H, n), c = load(s + 2 * H, n), h_n = load(s + 3 * H, n);
    const Vec<T> g = load(grad_out + b * H + j, n) + incoming;
    const Vec<T> delta_n = g * (one - z) * (one - c * c);
    const Vec<T> delta_z = g * (load(h + b * H + j, n) - c) * z * (one - z);
    const Vec<T> delta_r = delta_n * h_n * r * (one - r);
    const Vec<T> delta_hn = delta_n * r;
    store(delta_r, dx, n);
    store(delta_z, dx + H, n);
    store(delta_n, dx + 2 * H, n);
    store(delta_r, dh, n);
    store(delta_z, dh + H, n);
    store(delta_hn, dh + 2 * H, n);
    store(delta_hn, reset_grad + b * H + j, n);
    store(g * z, carried + b * H + j, n);
  });
}

// Returns {outputs (T,B,H), h_T (B,H), hs (T+1,B,H), gates (T,B,4H)}.
std::vector<Tensor> gru_forward(const Tensor& xp_in, const Tensor& h0, const Tensor& w_hh, const OptionalTensor& b_hh_in,
                                const OptionalTensor& alive_in) {
  const Tensor xp = xp_in.contiguous();
  const OptionalTensor b_hh = b_hh_in ? OptionalTensor(b_hh_in->contiguous()) : std::nullopt;
  const int64_t steps = xp.size(0), batch = xp.size(1), H = xp.size(2) / 3;
  const OptionalTensor alive = alive_in ? OptionalTensor(alive_in->contiguous()) : std::nullopt;
  Tensor hs = at::empty({steps + 1, batch, H}, xp.options());
  Tensor gates = at::empty({steps, batch, 4 * H}, xp.options());
  Tensor outputs = at::empty({steps, batch, H}, xp.options());
  Tensor hh = at::empty({batch, 3 * H}, xp.options());  // h W_hh^T of the current step
  hs[0].copy_(h0);
  const StepProduct recurrent(w_hh.t(), batch);
  for (int64_t t = 0; t < steps; ++t) {
    const Tensor h = hs[t];
    recurrent(hh, h, false);
    if (xp.is_cpu()) {
      AT_DISPATCH_FLOATING_TYPES(xp.scalar_type(), "gru_forward", [&] {
        using T = scalar_t;
        after_forward_step<T>(xp.data_ptr<T>() + t * batch * 3 * H, hh.data_ptr<T>(), b_hh ? b_hh->data_ptr<T>() : nullptr,
                              hs.data_ptr<T>() + t * batch * H, step_pointer<T>(alive, t * batch),
                              gates.data_ptr<T>() + t * batch * 4 * H, hs.data_ptr<T>() + (t + 1) * batch * H,
                              outputs.data_ptr<T>() + t * batch * H, batch, H);
      });
      continue;
    }
    if (b_hh) hh.add_(*b_hh);
    const auto x = xp[t].chunk(3, 1), p = hh.chunk(3, 1);
    const Tensor r = at::sigmoid(x[0] + p[0]), z = at::sigmoid(x[1] + p[1]);
    const Tensor c = at::tanh(x[2] + r * p[2]);
    const Tensor y = c + z * (h - c);
    gates[t].copy_(at::cat({r, z, c, p[2]}, 1));
    if (alive) {
      outputs[t].copy_(y * (*alive)[t]);
      hs[t + 1].copy_(at::where((*alive)[t] > 0, y, h));  // finished sequences keep their state
    } else {
      outputs[t].copy_(y);
      hs[t + 1].copy_(y);
    }
  }
  return {outputs, hs[steps].clone(), hs, gates};
}

// Returns {grad_xp (T,B,3H), grad_h0 (B,H), grad_w_hh (3H,H), grad_b_hh (3H, or empty without b_hh)}.
std::vector<Tensor> gru_backward(const Tensor& hs, const Tensor& gates, const Tensor& w_hh, const OptionalTensor& b_hh,
                                 const OptionalTensor& alive_in, const Tensor& grad_outputs_in,
                                 const Tensor& grad_h_final) {
  const int64_t steps = gates.size(0), batch = gates.size(1), H = gates.size(2) / 4;
  const OptionalTensor alive = alive_in ? OptionalTensor(alive_in->contiguous()) : std::nullopt;
  const Tensor grad_outputs = grad_outputs_in.contiguous();
  Tensor grad_xp = at::empty({steps, batch, 3 * H}, gates.options());  // δ_r, δ_z, δ_n
  Tensor reset_grad = at::empty({steps, batch, H}, gates.options());   // δ_n r: the gradient of W_hn h + b_hn
  Tensor step_grad = at::empty({batch, 3 * H}, gates.options());       // δ_r, δ_z, δ_n r of the current step
  Tensor grad_h = grad_h_final.contiguous().clone();
  Tensor carried = at::empty_like(grad_h);
  const StepProduct recurrent(w_hh, batch);
  for (int64_t t = steps - 1; t >= 0; --t) {
    if (gates.is_cpu()) {
      AT_DISPATCH_FLOATING_TYPES(gates.scalar_type(), "gru_backward", [&] {
        using T = scalar_t;
        after_backward_step<T>(gates.data_ptr<T>() + t * batch * 4 * H, hs.data_ptr<T>() + t * batch * H,
                               grad_outputs.data_ptr<T>() + t * batch * H, grad_h.data_ptr<T>(),
                               step_pointer<T>(alive, t * batch), grad_xp.data_ptr<T>() + t * batch * 3 * H,
                               step_grad.data_ptr<T>(), reset_grad.data_ptr<T>() + t * batch * H,
                               carried.data_ptr<T>(), batch, H);
      });
    } else {
      const auto s = gates[t].chunk(4, 1);
      const Tensor &r = s[0], &z = s[1], &c = s[2], &h_n = s[3];
      Tensor g = grad_outputs[t] + grad_h;
      if (alive) g.mul_((*alive)[t]);
      const Tensor delta_n = g * (1 - z) * (1 - c * c);
      const Tensor delta_z = g * (hs[t] - c) * z * (1 - z);
      const Tensor delta_r = delta_n * h_n * r * (1 - r);
      reset_grad[t].copy_(delta_n * r);
      grad_xp[t].copy_(at::cat({delta_r, delta_z, delta_n}, 1));
      step_grad.copy_(at::cat({delta_r, delta_z, reset_grad[t]}, 1));
      at::mul_out(carried, g, z);
      if (alive) carried.add_(grad_h * (1 - (*alive)[t]));
    }
    recurrent(carried, step_grad, true);
    std::swap(grad_h, carried);
  }
  // Σ_t [δ_r, δ_z, δ_n r]^T h_{t-1}: one product over all steps per block of rows of W_hh.
  const Tensor previous = hs.narrow(0, 0, steps).reshape({steps * batch, H});
  const Tensor gate_deltas = grad_xp.view({steps * batch, 3 * H}).narrow(1, 0, 2 * H);
  const Tensor reset_deltas = reset_grad.view({steps * batch, H});
  Tensor grad_w = at::empty_like(w_hh);
  Tensor grad_w_rz = grad_w.narrow(0, 0, 2 * H), grad_w_n = grad_w.narrow(0, 2 * H, H);
  at::mm_out(grad_w_rz, gate_deltas.t(), previous);
  at::mm_out(grad_w_n, reset_deltas.t(), previous);
  const Tensor grad_b = b_hh ? at::cat({gate_deltas.sum(0), reset_deltas.sum(0)}) : at::empty({0}, gates.options());
  return {grad_xp, grad_h, grad_w, grad_b};
}

// ---------------------------------------------------------------------------------------------
// Reset before the product (Cho et al. 2014), and the mutants: per step, the products of the
// gates that read h (or tanh h), then n's product W_hn (r h), which depends on r.
// Saved: hs (T+1, B, H); gates (T, B, 3H): r, z, n; reset (T, B, H): r h_{t-1}; squashed
// (T, B, H): tanh h_{t-1} where z reads it, else empty.

struct ResetBeforeWeights {
  Tensor w_r, w_z, w_n;  // views of weight_hh; w_z undefined where z reads nothing
  Tensor w_gates;        // the rows multiplying h: [W_hr; W_hz] where z reads the state, else W_hr
  ResetBeforeWeights(const Tensor& w_hh, int64_t z_reads) {
    const int64_t H = w_hh.size(1);
    w_r = w_hh.narrow(0, 0, H);
    if (z_reads != kNothing) w_z = w_hh.narrow(0, H, H);
    w_n = w_hh.narrow(0, w_hh.size(0) - H, H);
    w_gates = z_reads == kState ? w_hh.narrow(0, 0, 2 * H) : w_r;
  }
};

// r, z and r h_{t-1} of one step from the products of the gates (r at pre_r, z at pre_z: row
// strides pre_stride; pre_z null where z reads nothing).
template <typename T>
void before_gates_step(const T* xp, const T* pre_r, const T* pre_z, int64_t pre_stride, const T* bias, const T* h,
                       T* gates, T* reset, int64_t batch, int64_t H) {
  for_each_lane_run<T>(batch, H, [&](int64_t b, int64_t j, int64_t n) {
    const T* x = xp + b * 3 * H + j;
    Vec<T> a_r = load(x, n) + load(pre_r + b * pre_stride + j, n);
    Vec<T> a_z = load(x + H, n);
    if (pre_z != nullptr) a_z = a_z + load(pre_z + b * pre_stride + j, n);
    if (bias != nullptr) {
      a_r = a_r + load(bias + j, n);
      a_z = a_z + load(bias + H + j, n);
    }
    const Vec<T> r = sigmoid(a_r);
    store(r, gates + b * 3 * H + j, n);
    store(sigmoid(a_z), gates + b * 3 * H + H + j, n);
    store(r * load(h + b * H + j, n), reset + b * H + j, n);
  });
}

// n and the new state of one step, from n's product; squashed_next (or null) gets tanh h_t.
template <typename T>
void before_update_step(const T* xp, const T* pre_n, const T* bias, const T* h, const T* alive, bool z_takes_candidate,
                        T* gates, T* h_next, T* out, T* squashed_next, int64_t batch, int64_t H) {
  for_each_lane_run<T>(batch, H, [&](int64_t b, int64_t j, int64_t n) {
    Vec<T> a_n = load(xp + b * 3 * H + 2 * H + j, n) + load(pre_n + b * H + j, n);
    if (bias != nullptr) a_n = a_n + load(bias + 2 * H + j, n);
    const Vec<T> c = fast_tanh(a_n);
    const Vec<T> z = load(gates + b * 3 * H + H + j, n);
    const Vec<T> h_prev = load(h + b * H + j, n);
    const Vec<T> y = z_takes_candidate ? h_prev + z * (c - h_prev) : c + z * (h_prev - c);
    store(c, gates + b * 3 * H + 2 * H + j, n);
    const bool live = alive == nullptr || alive[b] > 0;
    const Vec<T> h_new = live ? y : h_prev;  // finished sequences keep their state
    store(h_new, h_next + b * H + j, n);
    store(live ? y : Vec<T>(T(0)), out + b * H + j, n);
    if (squashed_next != nullptr) store(fast_tanh(h_new), squashed_next + b * H + j, n);
  });
}

// δ_z, δ_n of one step and carried = the gradient reaching h_{t-1} directly through the update.
template <typename T>
void before_backward_update_step(const T* gates, const T* h, const T* grad_out, const T* grad_h, const T* alive,
                                 bool z_takes_candidate, T* grad_xp, T* carried, int64_t batch, int64_t H) {
  for_each_lane_run<T>(batch, H, [&](int64_t b, int64_t j, int64_t n) {
    T* dx = grad_xp + b * 3 * H + j;
    const Vec<T> incoming = load(grad_h + b * H + j, n);
    if (alive != nullptr && !(alive[b] > 0)) {
      store(Vec<T>(T(0)), dx + H, n);
      store(Vec<T>(T(0)), dx + 2 * H, n);
      store(incoming, carried + b * H + j, n);
      return;
    }
    const T* s = gates + b * 3 * H + j;
    const Vec<T> one(T(1));
    const Vec<T> z = load(s + H, n), c = load(s + 2 * H, n), h_prev = load(h + b * H + j, n);
    const Vec<T> g = load(grad_out + b * H + j, n) + incoming;
    const Vec<T> dz = z * (one - z), dc = one - c * c;
    if (z_takes_candidate) {  // h' = z n + (1 - z) h
      store(g * (c - h_prev) * dz, dx + H, n);
      store(g * z * dc, dx + 2 * H, n);
      store(g * (one - z), carried + b * H + j, n);
    } else {  // h' = (1 - z) n + z h
      store(g * (h_prev - c) * dz, dx + H, n);
      store(g * (one - z) * dc, dx + 2 * H, n);
      store(g * z, carried + b * H + j, n);
    }
  });
}

// δ_r from ρ = δ_n W_hn, and carried += ρ r (+ (δ_z W_hz)(1 - tanh² h) where z reads tanh h).
template <typename T>
void before_backward_reset_step(const T* gates, const T* h, const T* rho, const T* through_z, const T* squashed,
                                T* grad_xp, T* carried, int64_t batch, int64_t H) {
  for_each_lane_run<T>(batch, H, [&](int64_t b, int64_t j, int64_t n) {
    const Vec<T> one(T(1));
    const Vec<T> r = load(gates + b * 3 * H + j, n);
    const Vec<T> p = load(rho + b * H + j, n);
    store(p * load(h + b * H + j, n) * r * (one - r), grad_xp + b * 3 * H + j, n);
    Vec<T> c = load(carried + b * H + j, n) + p * r;
    if (through_z != nullptr) {
      const Vec<T> s = load(squashed + b * H + j, n);
      c = c + load(through_z + b * H + j, n) * (one - s * s);
    }
    store(c, carried + b * H + j, n);
  });
}

// Returns {outputs (T,B,H), h_T (B,H), hs, gates, reset, squashed}.
std::vector<Tensor> gru_reset_before_forward(const Tensor& xp_in, const Tensor& h0, const Tensor& w_hh,
                                             const OptionalTensor& b_hh_in, const OptionalTensor& alive_in,
                                             int64_t z_reads, bool z_takes_candidate) {
  const bool cpu = xp_in.is_cpu();
  // On CPU the biases join the gate math; elsewhere they are added to xp once.
  const Tensor xp = cpu || !b_hh_in ? xp_in.contiguous() : xp_in + *b_hh_in;
  const OptionalTensor b_hh = cpu && b_hh_in ? OptionalTensor(b_hh_in->contiguous()) : std::nullopt;
  const int64_t steps = xp.size(0), batch = xp.size(1), H = xp.size(2) / 3;
  const OptionalTensor alive = alive_in ? OptionalTensor(alive_in->contiguous()) : std::nullopt;
  const ResetBeforeWeights w(w_hh, z_reads);
  Tensor hs = at::empty({steps + 1, batch, H}, xp.options());
  Tensor gates = at::empty({steps, batch, 3 * H}, xp.options());
  Tensor reset = at::empty({steps, batch, H}, xp.options());
  Tensor squashed = at::empty({z_reads == kTanhState ? steps : 0, batch, H}, xp.options());
  Tensor outputs = at::empty({steps, batch, H}, xp.options());
  Tensor pre = at::empty({batch, w.w_gates.size(0)}, xp.options());  // h [W_hr; W_hz]^T or h W_hr^T
  Tensor pre_z = at::empty({z_reads == kTanhState ? batch : 0, H}, xp.options());  // tanh(h) W_hz^T
  Tensor pre_n = at::empty({batch, H}, xp.options());                                // (r h) W_hn^T
  hs[0].copy_(h0);
  if (z_reads == kTanhState && steps > 0) squashed[0].copy_(hs[0].tanh());
  const StepProduct gates_product(w.w_gates.t(), batch), n_product(w.w_n.t(), batch);
  const std::optional<StepProduct> z_product =
      z_reads == kTanhState ? std::optional<StepProduct>(std::in_place, w.w_z.t(), batch) : std::nullopt;
  for (int64_t t = 0; t < steps; ++t) {
    const Tensor h = hs[t];
    gates_product(pre, h, false);
    if (z_product) (*z_product)(pre_z, squashed[t], false);
    if (cpu) {
      AT_DISPATCH_FLOATING_TYPES(xp.scalar_type(), "gru_reset_before_forward", [&] {
        using T = scalar_t;
        const T* bias = b_hh ? b_hh->data_ptr<T>() : nullptr;
        const T* x = xp.data_ptr<T>() + t * batch * 3 * H;
        const T* z_product = z_reads == kState ? pre.data_ptr<T>() + H
                             : z_reads == kTanhState ? pre_z.data_ptr<T>() : nullptr;
        before_gates_step<T>(x, pre.data_ptr<T>(), z_product, pre.size(1), bias,
                             hs.data_ptr<T>() + t * batch * H, gates.data_ptr<T>() + t * batch * 3 * H,
                             reset.data_ptr<T>() + t * batch * H, batch, H);
        n_product(pre_n, reset[t], false);
        T* squashed_next = z_reads == kTanhState && t + 1 < steps ? squashed.data_ptr<T>() + (t + 1) * batch * H : nullptr;
        before_update_step<T>(x, pre_n.data_ptr<T>(), bias, hs.data_ptr<T>() + t * batch * H,
                              step_pointer<T>(alive, t * batch), z_takes_candidate, gates.data_ptr<T>() + t * batch * 3 * H,
                              hs.data_ptr<T>() + (t + 1) * batch * H, outputs.data_ptr<T>() + t * batch * H,
                              squashed_next, batch, H);
      });
      continue;
    }
    const auto x = xp[t].chunk(3, 1);
    const Tensor r = at::sigmoid(x[0] + pre.narrow(1, 0, H));
    const Tensor z = at::sigmoid(z_reads == kState ? x[1] + pre.narrow(1, H, H)
                                 : z_reads == kTanhState ? x[1] + pre_z : x[1]);
    reset[t].copy_(r * h);
    n_product(pre_n, reset[t], false);
    const Tensor c = at::tanh(x[2] + pre_n);
    const Tensor y = z_takes_candidate ? h + z * (c - h) : c + z * (h - c);
    gates[t].copy_(at::cat({r, z, c}, 1));
    if (alive) {
      outputs[t].copy_(y * (*alive)[t]);
      hs[t + 1].copy_(at::where((*alive)[t] > 0, y, h));  // finished sequences keep their state
    } else {
      outputs[t].copy_(y);
      hs[t + 1].copy_(y);
    }
    if (z_reads == kTanhState && t + 1 < steps) squashed[t + 1].copy_(hs[t + 1].tanh());
  }
  return {outputs, hs[steps].clone(), hs, gates, reset, squashed};
}

// Returns {grad_xp (T,B,3H), grad_h0 (B,H), grad_w_hh, grad_b_hh (3H, or empty without b_hh)}.
std::vector<Tensor> gru_reset_before_backward(const Tensor& hs, const Tensor& gates, const Tensor& reset,
                                              const Tensor& squashed, const Tensor& w_hh, const OptionalTensor& b_hh,
                                              const OptionalTensor& alive_in, const Tensor& grad_outputs_in,
                                              const Tensor& grad_h_final, int64_t z_reads, bool z_takes_candidate) {
  const int64_t steps = gates.size(0), batch = gates.size(1), H = gates.size(2) / 3;
  const bool cpu = gates.is_cpu();
  const OptionalTensor alive = alive_in ? OptionalTensor(alive_in->contiguous()) : std::nullopt;
  const Tensor grad_outputs = grad_outputs_in.contiguous();
  const ResetBeforeWeights w(w_hh, z_reads);
  Tensor grad_xp = at::empty({steps, batch, 3 * H}, gates.options());  // δ_r, δ_z, δ_n
  Tensor grad_h = grad_h_final.contiguous().clone();
  Tensor carried = at::empty_like(grad_h);
  Tensor rho = at::empty_like(grad_h);  // δ_n W_hn = ∂L/∂(r h)
  Tensor through_z = at::empty({z_reads == kTanhState ? batch : 0, H}, gates.options());  // δ_z W_hz
  const StepProduct n_product(w.w_n, batch), gates_product(w.w_gates, batch);
  const std::optional<StepProduct> z_product =
      z_reads == kTanhState ? std::optional<StepProduct>(std::in_place, w.w_z, batch) : std::nullopt;
  for (int64_t t = steps - 1; t >= 0; --t) {
    const Tensor grad_xp_t = grad_xp[t];
    Tensor delta_z = grad_xp_t.narrow(1, H, H), delta_n = grad_xp_t.narrow(1, 2 * H, H);
    if (cpu) {
      AT_DISPATCH_FLOATING_TYPES(gates.scalar_type(), "gru_reset_before_backward", [&] {
        using T = scalar_t;
        before_backward_update_step<T>(gates.data_ptr<T>() + t * batch * 3 * H, hs.data_ptr<T>() + t * batch * H,
                                       grad_outputs.data_ptr<T>() + t * batch * H, grad_h.data_ptr<T>(),
                                       step_pointer<T>(alive, t * batch), z_takes_candidate,
                                       grad_xp_t.data_ptr<T>(), carried.data_ptr<T>(), batch, H);
        n_product(rho, delta_n, false);
        if (z_product) (*z_product)(through_z, delta_z, false);
        before_backward_reset_step<T>(gates.data_ptr<T>() + t * batch * 3 * H, hs.data_ptr<T>() + t * batch * H,
                                      rho.data_ptr<T>(), z_reads == kTanhState ? through_z.data_ptr<T>() : nullptr,
                                      z_reads == kTanhState ? squashed.data_ptr<T>() + t * batch * H : nullptr,
                                      grad_xp_t.data_ptr<T>(), carried.data_ptr<T>(), batch, H);
      });
    } else {
      const auto s = gates[t].chunk(3, 1);
      const Tensor &r = s[0], &z = s[1], &c = s[2], h = hs[t];
      Tensor g = grad_outputs[t] + grad_h;
      if (alive) g.mul_((*alive)[t]);
      if (z_takes_candidate) {  // h' = z n + (1 - z) h
        delta_n.copy_(g * z * (1 - c * c));
        delta_z.copy_(g * (c - h) * z * (1 - z));
        at::mul_out(carried, g, 1 - z);
      } else {  // h' = (1 - z) n + z h
        delta_n.copy_(g * (1 - z) * (1 - c * c));
        delta_z.copy_(g * (h - c) * z * (1 - z));
        at::mul_out(carried, g, z);
      }
      n_product(rho, delta_n, false);
      grad_xp_t.narrow(1, 0, H).copy_(rho * h * r * (1 - r));
      carried.add_(rho * r);
      if (z_product) {
        (*z_product)(through_z, delta_z, false);
        carried.add_(through_z * (1 - squashed[t] * squashed[t]));
      }
      if (alive) carried.add_(grad_h * (1 - (*alive)[t]));
    }
    // + δ_r W_hr (+ δ_z W_hz where z reads the state): δ_r and δ_z are adjacent in grad_xp
    gates_product(carried, grad_xp_t.narrow(1, 0, w.w_gates.size(0)), true);
    std::swap(grad_h, carried);
  }
  // The recurrent weights' gradients: one product over all steps per operand of W_hh.
  const Tensor deltas = grad_xp.view({steps * batch, 3 * H});
  const Tensor previous = hs.narrow(0, 0, steps).reshape({steps * batch, H});
  Tensor grad_w = at::empty_like(w_hh);
  const int64_t gates_rows = w.w_gates.size(0);
  Tensor grad_w_gates = grad_w.narrow(0, 0, gates_rows), grad_w_n = grad_w.narrow(0, w_hh.size(0) - H, H);
  at::mm_out(grad_w_gates, deltas.narrow(1, 0, gates_rows).t(), previous);
  if (z_reads == kTanhState) {
    Tensor grad_w_z = grad_w.narrow(0, H, H);
    at::mm_out(grad_w_z, deltas.narrow(1, H, H).t(), squashed.view({steps * batch, H}));
  }
  at::mm_out(grad_w_n, deltas.narrow(1, 2 * H, H).t(), reset.view({steps * batch, H}));
  const Tensor grad_b = b_hh ? deltas.sum(0) : at::empty({0}, gates.options());
  return {grad_xp, grad_h, grad_w, grad_b};
}

}  // namespace

TORCH_LIBRARY_FRAGMENT(rnnkit, m) {
  m.def("gru_forward", &gru_forward);
  m.def("gru_backward", &gru_backward);
  m.def("gru_reset_before_forward", &gru_reset_before_forward);
  m.def("gru_reset_before_backward", &gru_reset_before_backward);
}
