// Fused leaky-integrator recurrence: the time loop of rnnkit/engine/fused/leaky.py in C++.
//
//   v_t = tanh(xp_t + mu_{t-1} W_hh^T + b_hh)   (tanh(xp_t) without a recurrent matrix)
//   mu_t = alpha mu_{t-1} + (1 - alpha) v_t,     alpha = sigmoid(alpha_logit), per unit
//
// On CPU (float, double) each step is one GEMM (straight into BLAS) into the step's row of ``vs``
// (a sparse product with a reservoir's CSR W_hh, forward only),
// then ONE pass over (B, H) that finishes v_t and mu_t (and, backward, every pointwise gradient),
// with ATen's SIMD vectors, split over the cores. Without a recurrent matrix the units are independent: the whole
// time loop runs inside one split of the units over the cores, and v_t is not stored but
// recomputed from xp_t in the backward (a new tensor's first touch costs more here than tanh).
// Other devices and dtypes run the same equations as composed ATen ops. Both paths keep:
//   forward  -> {outputs (T,B,H), mu_T (B,H), states, vs}
//   backward(states, outputs, vs or xp, ...) -> {grad_xp, grad_mu0, grad_w_hh, grad_b_hh, grad_alpha_logit}
// where ``states`` is (T+1,B,H), the state before each step and the last, when some sequence
// finishes early (``alive`` given), and just mu_0 as (1,B,H) otherwise: then mu_t is outputs[t];
// ``vs`` holds v_t (T,B,H) with a recurrent matrix and is empty without, where the backward gets
// xp instead. With a reservoir's sparse W_hh, whose recurrence has no backward, the CPU loops keep
// one step's v_t (1,B,H) instead: writing all T steps cost a tenth of the time loop, for nothing.

#include "kernel_support.h"

#include <optional>
#include <vector>

namespace {

using rnnkit::CsrStepProduct;
using rnnkit::fast_tanh;
using rnnkit::for_unit_ranges;
using rnnkit::StepProduct;

template <typename scalar_t>
struct Buffers {
  const scalar_t* xp;      // (T,B,H)
  const scalar_t* h0;      // (B,H)
  const scalar_t* bias;    // (H) or null
  const scalar_t* alpha;   // (H)
  const scalar_t* oma;     // (H): 1 - alpha
  const scalar_t* alive;   // (T,B) or null
  scalar_t* outputs;       // (T,B,H)
  scalar_t* states;        // (T+1,B,H), or null when the states are the outputs
  scalar_t* vs;            // (T,B,H) or (1,B,H): the product in, v_t out; null without W_hh
  int64_t batch, hidden;
  int64_t vs_step;         // elements between the steps of vs: B*H, or 0 where it holds one step

  const scalar_t* before(int64_t t) const {  // mu_{t-1}, (B,H)
    if (states != nullptr) return states + t * batch * hidden;
    return t == 0 ? h0 : outputs + (t - 1) * batch * hidden;
  }
};

// Step t of the forward on units [j0, j1) of every row; kRecurrent: vs[t] holds mu_{t-1} W_hh^T.
template <typename scalar_t, bool kRecurrent>
void forward_step(const Buffers<scalar_t>& k, int64_t t, int64_t j0, int64_t j1) {
  using Vec = at::vec::Vectorized<scalar_t>;
  const int64_t plane = k.batch * k.hidden;
  const scalar_t* p = k.before(t);
  const scalar_t* x = k.xp + t * plane;
  scalar_t* v = kRecurrent ? k.vs + t * k.vs_step : nullptr;
  scalar_t* y = k.outputs + t * plane;
  scalar_t* h = k.states != nullptr ? k.states + (t + 1) * plane : nullptr;
  for (int64_t b = 0; b < k.batch; ++b) {
    const bool running = k.alive == nullptr || k.alive[t * k.batch + b] > 0;
    for (int64_t j = j0; j < j1; j += Vec::size()) {
      const int64_t n = std::min<int64_t>(Vec::size(), j1 - j), i = b * k.hidden + j;
      Vec z = Vec::loadu(x + i, n);
      if (kRecurrent) z = z + Vec::loadu(v + i, n);
      if (k.bias != nullptr) z = z + Vec::loadu(k.bias + j, n);
      const Vec vt = fast_tanh(z);
      if (kRecurrent) vt.store(v + i, n);
      const Vec prev = Vec::loadu(p + i, n);
      if (!running) {  // finished: output 0, state kept
        Vec(0).store(y + i, n);
        prev.store(h + i, n);
        continue;
      }
      const Vec mu = Vec::loadu(k.alpha + j, n) * prev + Vec::loadu(k.oma + j, n) * vt;
      mu.store(y + i, n);
      if (h != nullptr) mu.store(h + i, n);
    }
  }
}

template <typename scalar_t>
struct GradBuffers {
  const scalar_t* grad_outputs;  // (T,B,H)
  scalar_t* deltas;              // (T,B,H): dL/d(pre-activation of v_t)
  scalar_t* dalpha;              // (T,H): per step, sum over the batch of dL/d alpha
  scalar_t* grad_h;              // (B,H): dL/d mu_t, in
  scalar_t* grad_next;           // (B,H): dL/d mu_{t-1} but for the GEMM's term, out
};

// Step t of the backward on units [j0, j1) of every row; without kRecurrent, v_t = tanh(xp_t) anew.
template <typename scalar_t, bool kRecurrent>
void backward_step(const Buffers<scalar_t>& k, const GradBuffers<scalar_t>& g, int64_t t, int64_t j0, int64_t j1) {
  using Vec = at::vec::Vectorized<scalar_t>;
  const int64_t plane = k.batch * k.hidden;
  const scalar_t* p = k.before(t);
  const scalar_t* v = (kRecurrent ? k.vs : k.xp) + t * plane;
  const scalar_t* go = g.grad_outputs + t * plane;
  scalar_t* d = g.deltas + t * plane;
  for (int64_t j = j0; j < j1; j += Vec::size()) {
    const int64_t n = std::min<int64_t>(Vec::size(), j1 - j);
    const Vec alpha = Vec::loadu(k.alpha + j, n), oma = Vec::loadu(k.oma + j, n);
    Vec dalpha(0);
    for (int64_t b = 0; b < k.batch; ++b) {
      const int64_t i = b * k.hidden + j;
      const Vec carried = Vec::loadu(g.grad_h + i, n);
      if (k.alive != nullptr && !(k.alive[t * k.batch + b] > 0)) {  // finished: passes the state's gradient by
        Vec(0).store(d + i, n);
        carried.store(g.grad_next + i, n);
        continue;
      }
      const Vec gy = Vec::loadu(go + i, n) + carried;  // dL/d mu_t
      const Vec vt = kRecurrent ? Vec::loadu(v + i, n) : fast_tanh(Vec::loadu(v + i, n));
      (gy * oma * (Vec(1) - vt * vt)).store(d + i, n);
      dalpha = dalpha + gy * (Vec::loadu(p + i, n) - vt);
      (gy * alpha).store(g.grad_next + i, n);
    }
    dalpha.store(g.dalpha + t * k.hidden + j, n);
  }
}

template <typename scalar_t>
Buffers<scalar_t> buffers(const at::Tensor& xp, const at::Tensor& h0, const std::optional<at::Tensor>& b_hh,
                          const at::Tensor& alpha, const at::Tensor& oma, const std::optional<at::Tensor>& alive,
                          const at::Tensor& outputs, const at::Tensor& states, const at::Tensor& vs) {
  return {xp.data_ptr<scalar_t>(), h0.data_ptr<scalar_t>(), b_hh ? b_hh->data_ptr<scalar_t>() : nullptr,
          alpha.data_ptr<scalar_t>(), oma.data_ptr<scalar_t>(), alive ? alive->data_ptr<scalar_t>() : nullptr,
          outputs.data_ptr<scalar_t>(), alive ? states.data_ptr<scalar_t>() : nullptr,
          vs.defined() && vs.numel() > 0 ? vs.data_ptr<scalar_t>() : nullptr, outputs.size(1), outputs.size(2),
          vs.defined() && vs.numel() == outputs.numel() ? outputs.size(1) * outputs.size(2) : 0};
}

void forward_cpu(const at::Tensor& xp, const at::Tensor& h0, const std::optional<at::Tensor>& w_hh,
                 const std::optional<at::Tensor>& b_hh, const at::Tensor& alpha, const at::Tensor& oma,
                 const std::optional<at::Tensor>& alive, at::Tensor& outputs, at::Tensor& states, at::Tensor& vs) {
  const int64_t steps = xp.size(0), batch = xp.size(1), hidden = xp.size(2);
  AT_DISPATCH_FLOATING_TYPES(xp.scalar_type(), "leaky_forward", [&] {
    const Buffers<scalar_t> k = buffers<scalar_t>(xp, h0, b_hh, alpha, oma, alive, outputs, states, vs);
    if (!w_hh) {  // independent units: the whole time loop inside one split of the units
      for_unit_ranges<scalar_t>(steps * batch, hidden, [&](int64_t j0, int64_t j1) {
        for (int64_t t = 0; t < steps; ++t) forward_step<scalar_t, false>(k, t, j0, j1);
      });
      return;
    }
    // mu_{t-1} W_hh^T: a GEMM, or a sparse product with a reservoir's CSR W_hh
    std::optional<StepProduct> dense;
    std::optional<CsrStepProduct<scalar_t>> sparse;
    if (w_hh->layout() == at::kSparseCsr) {
      sparse.emplace(*w_hh);
    } else {
      dense.emplace(w_hh->t(), batch);
    }
    for (int64_t t = 0; t < steps; ++t) {
      scalar_t* product = k.vs + t * k.vs_step;
      sparse ? (*sparse)(k.before(t), product, batch) : (*dense)(k.before(t), product, /*accumulate=*/false);
      for_unit_ranges<scalar_t>(batch, hidden, [&](int64_t j0, int64_t j1) {
        forward_step<scalar_t, true>(k, t, j0, j1);
      });
    }
  });
}

// ``saved_v``: vs (v_t) with a recurrent matrix, xp without (v_t = tanh(xp_t) is recomputed).
void backward_cpu(const at::Tensor& states, const at::Tensor& outputs, const at::Tensor& saved_v,
                  const at::Tensor& h0, const std::optional<at::Tensor>& w_hh, const at::Tensor& alpha,
                  const at::Tensor& oma, const std::optional<at::Tensor>& alive, const at::Tensor& grad_outputs,
                  at::Tensor& deltas, at::Tensor& dalpha, at::Tensor& grad_h, at::Tensor& grad_next) {
  const int64_t steps = outputs.size(0), batch = outputs.size(1), hidden = outputs.size(2);
  AT_DISPATCH_FLOATING_TYPES(outputs.scalar_type(), "leaky_backward", [&] {
    const Buffers<scalar_t> k = buffers<scalar_t>(saved_v, h0, std::nullopt, alpha, oma, alive, outputs, states,
                                                  w_hh ? saved_v : at::Tensor());
    GradBuffers<scalar_t> g{grad_outputs.data_ptr<scalar_t>(), deltas.data_ptr<scalar_t>(),
                            dalpha.data_ptr<scalar_t>(), grad_h.data_ptr<scalar_t>(), grad_next.data_ptr<scalar_t>()};
    if (!w_hh) {  // independent units: the whole time loop inside one split of the units
      for_unit_ranges<scalar_t>(steps * batch, hidden, [&](int64_t j0, int64_t j1) {
        GradBuffers<scalar_t> mine = g;  // each range swaps its own pointers, in step with the others
        for (int64_t t = steps - 1; t >= 0; --t) {
          backward_step<scalar_t, false>(k, mine, t, j0, j1);
          std::swap(mine.grad_h, mine.grad_next);
        }
      });
      if (steps % 2 == 1) std::swap(grad_h, grad_next);  // where the last step wrote
      return;
    }
    const StepProduct recurrent(*w_hh, batch);  // delta_t W_hh
    for (int64_t t = steps - 1; t >= 0; --t) {
      for_unit_ranges<scalar_t>(batch, hidden, [&](int64_t j0, int64_t j1) {
        backward_step<scalar_t, true>(k, g, t, j0, j1);
      });
      recurrent(g.deltas + t * batch * hidden, g.grad_next, /*accumulate=*/true);  // + delta_t W_hh
      std::swap(g.grad_h, g.grad_next);
      std::swap(grad_h, grad_next);
    }
  });
}

at::Tensor before_step(const at::Tensor& states, const at::Tensor& outputs, int64_t t) {
  return states.size(0) > 1 ? states[t] : (t == 0 ? states[0] : outputs[t - 1]);
}

// The same equations as composed ATen ops, for devices and dtypes without the loops above.
void forward_composed(const at::Tensor& xp_in, const at::Tensor& h0, const std::optional<at::Tensor>& w_hh,
                      const std::optional<at::Tensor>& b_hh, const at::Tensor& alpha, const at::Tensor& oma,
                      const std::optional<at::Tensor>& alive, at::Tensor& outputs, at::Tensor& states,
                      at::Tensor& vs) {
  const at::Tensor xp = b_hh ? xp_in + *b_hh : xp_in;
  at::Tensor mu = h0;
  for (int64_t t = 0; t < xp.size(0); ++t) {
    at::Tensor v;
    if (w_hh) {
      v = vs[t];
      if (w_hh->layout() == at::kSparseCsr) {
        v.copy_(xp[t] + at::mm(*w_hh, mu.t()).t());  // sparse W_hh mu_{t-1}^T, transposed
      } else {
        at::addmm_out(v, xp[t], mu, w_hh->t());
      }
      v.tanh_();
    } else {
      v = xp[t].tanh();
    }
    at::Tensor y = outputs[t];
    at::add_out(y, alpha * mu, oma * v);
    if (alive) {
      states[t + 1].copy_(at::where((*alive)[t] > 0, y, mu));
      mu = states[t + 1];
      y.mul_((*alive)[t]);
    } else {
      mu = y;
    }
  }
}

void backward_composed(const at::Tensor& states, const at::Tensor& outputs, const at::Tensor& saved_v,
                       const std::optional<at::Tensor>& w_hh, const at::Tensor& alpha, const at::Tensor& oma,
                       const std::optional<at::Tensor>& alive, const at::Tensor& grad_outputs, at::Tensor& deltas,
                       at::Tensor& dalpha, at::Tensor& grad_h) {
  for (int64_t t = outputs.size(0) - 1; t >= 0; --t) {
    at::Tensor gy = grad_outputs[t] + grad_h;
    if (alive) gy.mul_((*alive)[t]);
    const at::Tensor v = w_hh ? saved_v[t] : saved_v[t].tanh();
    at::Tensor delta = deltas[t];
    at::mul_out(delta, gy * oma, 1 - v * v);
    dalpha[t].copy_((gy * (before_step(states, outputs, t) - v)).sum(0));
    at::Tensor carried = gy * alpha;
    if (w_hh) carried.addmm_(delta, *w_hh);
    grad_h = alive ? carried.add_(grad_h * (1 - (*alive)[t])) : carried;
  }
}

bool runs_on_cpu_loops(const at::Tensor& xp) {
  return xp.device().is_cpu() && (xp.scalar_type() == at::kFloat || xp.scalar_type() == at::kDouble);
}

// A sparse tensor (a reservoir's CSR W_hh) is passed as it is: its parts are read directly.
std::optional<at::Tensor> contiguous(const std::optional<at::Tensor>& tensor) {
  if (!tensor) return std::nullopt;
  return tensor->layout() == at::kStrided ? tensor->contiguous() : *tensor;
}

std::vector<at::Tensor> leaky_forward(const at::Tensor& xp_in, const at::Tensor& h0_in,
                                      const std::optional<at::Tensor>& w_in, const std::optional<at::Tensor>& b_in,
                                      const at::Tensor& alpha_logit, const std::optional<at::Tensor>& alive_in) {
  TORCH_CHECK(xp_in.dim() == 3, "leaky_forward: xp must be (T, B, H), got ", xp_in.sizes());
  const int64_t steps = xp_in.size(0), batch = xp_in.size(1), hidden = xp_in.size(2);
  TORCH_CHECK(h0_in.dim() == 2 && h0_in.size(0) == batch && h0_in.size(1) == hidden,
              "leaky_forward: mu_0 must be (B, H) = (", batch, ", ", hidden, "), got ", h0_in.sizes());
  TORCH_CHECK(!w_in || (w_in->dim() == 2 && w_in->size(0) == hidden && w_in->size(1) == hidden),
              "leaky_forward: W_hh must be (H, H)");
  TORCH_CHECK(!w_in || w_in->layout() == at::kStrided || (w_in->layout() == at::kSparseCsr &&
                                                             w_in->scalar_type() == xp_in.scalar_type()),
              "leaky_forward: W_hh must be dense, or sparse CSR of xp's dtype");
  TORCH_CHECK(!b_in || b_in->numel() == hidden, "leaky_forward: b_hh must have H elements");
  TORCH_CHECK(alpha_logit.numel() == hidden, "leaky_forward: alpha_logit must have H elements");
  TORCH_CHECK(!alive_in || alive_in->numel() == steps * batch, "leaky_forward: alive must be (T, B, 1)");
  const at::Tensor xp = xp_in.contiguous(), h0 = h0_in.contiguous();
  const std::optional<at::Tensor> w_hh = contiguous(w_in), b_hh = contiguous(b_in), alive = contiguous(alive_in);
  const at::Tensor alpha = at::sigmoid(alpha_logit).contiguous(), oma = 1 - alpha;
  at::Tensor outputs = at::empty_like(xp);
  const bool sparse_on_loops = w_hh && w_hh->layout() == at::kSparseCsr && runs_on_cpu_loops(xp);
  at::Tensor vs = !w_hh ? at::empty({0}, xp.options())
                        : (sparse_on_loops ? at::empty({1, batch, hidden}, xp.options()) : at::empty_like(xp));
  at::Tensor states = alive ? at::empty({steps + 1, xp.size(1), xp.size(2)}, xp.options()) : h0.unsqueeze(0);
  if (alive) states[0].copy_(h0);
  if (runs_on_cpu_loops(xp)) {
    forward_cpu(xp, h0, w_hh, b_hh, alpha, oma, alive, outputs, states, vs);
  } else {
    forward_composed(xp, h0, w_hh, b_hh, alpha, oma, alive, outputs, states, vs);
  }
  at::Tensor last = steps == 0 ? h0 : (alive ? states[steps] : outputs[steps - 1]);
  return {outputs, last.clone(), states, vs};
}

std::vector<at::Tensor> leaky_backward(const at::Tensor& states, const at::Tensor& outputs,
                                       const at::Tensor& saved_v_in, const std::optional<at::Tensor>& w_in,
                                       const std::optional<at::Tensor>& b_hh, const at::Tensor& alpha_logit,
                                       const std::optional<at::Tensor>& alive_in, const at::Tensor& grad_outputs_in,
                                       const at::Tensor& grad_h_final) {
  TORCH_CHECK(outputs.dim() == 3 && saved_v_in.sizes() == outputs.sizes() &&
                  grad_outputs_in.sizes() == outputs.sizes(),
              "leaky_backward: outputs, vs (or xp) and grad_outputs must all be (T, B, H)");
  const int64_t steps = outputs.size(0), batch = outputs.size(1), hidden = outputs.size(2);
  TORCH_CHECK(states.dim() == 3 && (states.size(0) == 1 || states.size(0) == steps + 1) &&
                  states.size(1) == batch && states.size(2) == hidden,
              "leaky_backward: states must be (1, B, H) or (T+1, B, H), got ", states.sizes());
  TORCH_CHECK(grad_h_final.numel() == batch * hidden, "leaky_backward: grad of mu_T must be (B, H)");
  TORCH_CHECK(!w_in || w_in->layout() == at::kStrided,
              "leaky_backward: a sparse W_hh is a reservoir's fixed matrix; its recurrence has no backward");
  const std::optional<at::Tensor> w_hh = contiguous(w_in), alive = contiguous(alive_in);
  const at::Tensor grad_outputs = grad_outputs_in.contiguous(), saved_v = saved_v_in.contiguous();
  const at::Tensor alpha = at::sigmoid(alpha_logit).contiguous(), oma = 1 - alpha;
  at::Tensor deltas = at::empty_like(outputs);
  at::Tensor dalpha = at::empty({steps, hidden}, outputs.options());  // per step, summed over the batch
  at::Tensor grad_h = grad_h_final.contiguous().clone();
  if (runs_on_cpu_loops(outputs)) {
    at::Tensor grad_next = at::empty_like(grad_h);
    backward_cpu(states, outputs, saved_v, states[0], w_hh, alpha, oma, alive, grad_outputs, deltas, dalpha, grad_h,
                 grad_next);
  } else {
    backward_composed(states, outputs, saved_v, w_hh, alpha, oma, alive, grad_outputs, deltas, dalpha, grad_h);
  }
  at::Tensor grad_w, grad_b;
  if (w_hh) grad_w = rnnkit::recurrent_weight_gradient(deltas, states, outputs, *w_hh);
  if (b_hh) grad_b = deltas.sum({0, 1});
  // through alpha = sigmoid(alpha_logit): d alpha / d logit = alpha (1 - alpha)
  at::Tensor grad_logit = dalpha.sum(0) * alpha * oma;
  return {deltas, grad_h, grad_w, grad_b, grad_logit};
}

}  // namespace

TORCH_LIBRARY_FRAGMENT(rnnkit, m) {
  m.def("leaky_forward", &leaky_forward);
  m.def("leaky_backward", &leaky_backward);
}
