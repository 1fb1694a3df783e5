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

#include "kernel_support.h"

#include <optional>
#include <vector>

namespace {

using rnnkit::fast_tanh;
using rnnkit::for_unit_ranges;
using rnnkit::StepProduct;

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
  const bool kept = alive != nullptr;  // states kept apart from the (masked) outputs
  const StepProduct recurrent(w_hh.t(), batch);  // h_{t-1} W_hh^T
  for (int64_t t = 0; t < steps; ++t) {
    const scalar_t* p = kept ? states.data_ptr<scalar_t>() + t * plane
                             : (t == 0 ? h0.data_ptr<scalar_t>() : outputs.data_ptr<scalar_t>() + (t - 1) * plane);
    scalar_t* y = outputs.data_ptr<scalar_t>() + t * plane;
    recurrent(p, y, /*accumulate=*/false);
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
  const StepProduct recurrent(w_hh, batch);  // delta_t W_hh
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
    recurrent(d, gn, /*accumulate=*/kept);
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
  const at::Tensor grad_w = rnnkit::recurrent_weight_gradient(deltas, states, outputs, w_hh);
  at::Tensor grad_b = b_hh ? deltas.sum({0, 1}) : at::Tensor();
  return {deltas, grad_h, grad_w, grad_b};
}

}  // namespace

TORCH_LIBRARY_FRAGMENT(rnnkit, m) {
  m.def("elman_forward", &elman_forward);
  m.def("elman_backward", &elman_backward);
}
