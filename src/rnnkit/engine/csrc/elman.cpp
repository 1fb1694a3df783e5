// Fused Elman recurrence: the time loop of rnnkit/engine/fused/elman.py in ATen, for CPU and CUDA.
// Same equations, same saved tensors, same signatures as the Python version there.
#include <ATen/ATen.h>
#include <torch/library.h>

#include <optional>
#include <vector>

namespace {

// Returns {outputs (T,B,H), h_T (B,H), hs (T+1,B,H): the state before each step and the last,
//          ys (T,B,H): each step's activation before masking}.
std::vector<at::Tensor> elman_forward(const at::Tensor& xp_in, const at::Tensor& h0, const at::Tensor& w_hh,
                                      const std::optional<at::Tensor>& b_hh,
                                      const std::optional<at::Tensor>& alive, bool relu) {
  const at::Tensor xp = b_hh ? xp_in + *b_hh : xp_in.contiguous();
  const int64_t steps = xp.size(0);
  at::Tensor hs = at::empty({steps + 1, xp.size(1), xp.size(2)}, xp.options());
  at::Tensor ys = at::empty_like(xp);
  hs[0].copy_(h0);
  const at::Tensor w_t = w_hh.t();
  for (int64_t t = 0; t < steps; ++t) {
    at::Tensor y = ys[t];
    at::addmm_out(y, xp[t], hs[t], w_t);  // xp_t + h_{t-1} W_hh^T
    relu ? y.relu_() : y.tanh_();
    at::Tensor h = hs[t + 1];
    if (alive) {
      at::where_out(h, (*alive)[t] > 0, y, hs[t]);  // finished sequences keep their state
    } else {
      h.copy_(y);
    }
  }
  at::Tensor outputs = alive ? ys * *alive : ys;
  return {outputs, hs[steps].clone(), hs, ys};
}

// Returns {grad_xp (T,B,H), grad_h0 (B,H), grad_w_hh (H,H), grad_b_hh (H)}.
std::vector<at::Tensor> elman_backward(const at::Tensor& hs, const at::Tensor& ys, const at::Tensor& w_hh,
                                       const std::optional<at::Tensor>& b_hh,
                                       const std::optional<at::Tensor>& alive, const at::Tensor& grad_outputs,
                                       const at::Tensor& grad_h_final, bool relu) {
  const int64_t steps = ys.size(0);
  at::Tensor deltas = at::empty_like(ys);
  at::Tensor grad_h = grad_h_final.clone();
  for (int64_t t = steps - 1; t >= 0; --t) {
    at::Tensor delta = deltas[t];
    at::add_out(delta, grad_outputs[t], grad_h);
    if (alive) delta.mul_((*alive)[t]);
    if (relu) {
      delta.mul_(ys[t] > 0);
    } else {
      delta.mul_(1 - ys[t] * ys[t]);
    }
    at::Tensor carried = at::mm(delta, w_hh);
    grad_h = alive ? carried.add_(grad_h * (1 - (*alive)[t])) : carried;
  }
  at::Tensor grad_w = deltas.flatten(0, 1).t().mm(hs.narrow(0, 0, steps).flatten(0, 1));
  return {deltas, grad_h, grad_w, deltas.sum({0, 1})};
}

}  // namespace

TORCH_LIBRARY_FRAGMENT(rnnkit, m) {
  m.def("elman_forward", &elman_forward);
  m.def("elman_backward", &elman_backward);
}
