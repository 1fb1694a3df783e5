"""Deep transition: an MLP in the hidden-to-hidden path of any cell (Pascanu et al. 2014)."""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import Tensor, nn

from .base import RecurrentCell, State
from .elman import NONLINEARITIES


class DeepTransitionCell(RecurrentCell):
    r"""Any cell with a deep transition: an MLP of ``depth`` layers on the state it reads.

    .. math::
        z_0 &= h_{t-1}, \qquad z_k = \phi(W_{tr,k} z_{k-1} + b_{tr,k}) \quad (k = 1, \dots, L) \\
        (y_t, s_t) &= \mathrm{step}(x_t, (z_L, s_{t-1}^{(2)}, \dots))

    :math:`h_{t-1}` (S) is the first tensor of the wrapped cell's state :math:`s_{t-1}` (its
    hidden state; S is ``state_sizes[0]``: H, or P for a projected LSTM), :math:`L` = ``depth``,
    :math:`W_{tr,k}` (S×S) and :math:`b_{tr,k}` (S) the weights of layer k, stacked in
    ``weight_tr`` (L×S×S) and ``bias_tr`` (L×S), and :math:`\phi` the ``activation`` (``tanh``
    or ``relu``). The wrapped cell then takes its usual step with :math:`z_L` in place of
    :math:`h_{t-1}`; the rest of its state (an LSTM's cell state :math:`c_{t-1}`) passes
    untouched. The transition from :math:`h_{t-1}` to :math:`h_t` thus has L + 1 layers instead
    of one, while the input still enters in one place, the wrapped cell.

    Pascanu et al.'s DT-RNN feeds the input to the first layer of the transition; here it joins
    at the last one, the wrapped cell, so that any cell's step can be that layer unchanged.
    Whatever the cell does with :math:`h_{t-1}` it does with :math:`z_L`: a leaky unit leaks
    :math:`z_L`, a clockwork module that does not tick keeps :math:`z_L`, and a skip cell's
    history stores :math:`z_L`, so its delayed path reads the transformed state as well.

    Outputs, state sizes and the input projection are the wrapped cell's. The transition's
    weights are initialised uniform in :math:`\pm 1/\sqrt{S}`; the wrapped cell keeps its own
    initialisation. ``state_dict()`` names the wrapped cell's parameters as the cell itself does
    (``weight_ih``, ..., beside ``weight_tr`` and ``bias_tr``), so that ``Recurrent`` names them
    ``weight_ih_l0`` as for the bare cell, and they are reachable as attributes of the wrapper.
    ``kernel`` is None: the wrapper runs on the loop executor only.

    ``make_cell(name, ..., transition_depth=L)`` and ``Recurrent(name, ..., transition_depth=L)``
    wrap any registered cell; L = 0 (the default) leaves it bare.

    Reference: R. Pascanu, C. Gulcehre, K. Cho and Y. Bengio, "How to construct deep recurrent
    neural networks", ICLR 2014 (DT-RNN).

    Example:
        >>> from rnnkit.cells import GRUCell
        >>> cell = DeepTransitionCell(GRUCell(3, 5), depth=2)
        >>> cell.weight_tr.shape, cell.weight_hh.shape   # the transition's, the GRU's
        (torch.Size([2, 5, 5]), torch.Size([15, 5]))
        >>> xp = cell.input_projection(torch.randn(7, 2, 3))   # (T, B, 3H)
        >>> y, (h,) = cell.step(xp[0], cell.init_state(2, xp.device, xp.dtype), 0)
    """

    kernel = None  # loop only: no fused kernel runs the transition

    def __init__(self, cell: RecurrentCell, depth: int, activation: str = "tanh") -> None:
        super().__init__(cell.input_size, cell.hidden_size)
        if isinstance(cell, DeepTransitionCell):  # a cell, so no TypeError: a redundant layering
            raise ValueError(  # noqa: TRY004
                f"the cell already has a deep transition of depth {cell.depth}; "
                f"give one wrapper the total depth instead"
            )
        if not isinstance(depth, int) or isinstance(depth, bool) or depth < 1:
            raise ValueError(f"depth must be a positive integer, got {depth!r}")
        if activation not in NONLINEARITIES:
            raise ValueError(f"activation must be one of {sorted(NONLINEARITIES)}, got {activation!r}")
        self.depth = depth
        self.activation = activation
        self.cell = cell
        size = cell.state_sizes[0]  # S: the state tensor the transition transforms
        self.weight_tr = nn.Parameter(torch.empty(depth, size, size))
        self.bias_tr = nn.Parameter(torch.empty(depth, size))
        self._reset_transition()
        self._loading_prefix = ""  # where load_state_dict finds this module's keys, while it runs
        self.register_state_dict_post_hook(_name_state_as_the_cell)
        self.register_load_state_dict_pre_hook(_read_state_named_as_the_cell)
        self.register_load_state_dict_post_hook(_report_keys_as_the_cell)

    @property
    def output_size(self) -> int:
        return self.cell.output_size

    @property
    def state_sizes(self) -> tuple[int, ...]:
        return self.cell.state_sizes

    def reset_parameters(self) -> None:
        """Both parts afresh: the wrapped cell's own initialisation, then the transition's."""
        self.cell.reset_parameters()
        self._reset_transition()

    def _reset_transition(self) -> None:
        bound = 1.0 / math.sqrt(self.weight_tr.size(-1))
        nn.init.uniform_(self.weight_tr, -bound, bound)
        nn.init.uniform_(self.bias_tr, -bound, bound)

    def input_projection(self, x: Tensor) -> Tensor:
        return self.cell.input_projection(x)

    def init_state(self, batch: int, device: torch.device, dtype: torch.dtype) -> State:
        return self.cell.init_state(batch, device, dtype)

    def step(self, xp_t: Tensor, state: State, t: int) -> tuple[Tensor, State]:
        return self.cell.step(xp_t, self._transition(state), t)

    def step_and_gates(self, xp_t: Tensor, state: State, t: int) -> tuple[Tensor, State, dict[str, Tensor]]:
        return self.cell.step_and_gates(xp_t, self._transition(state), t)

    def _transition(self, state: State) -> State:
        """The state with its first tensor through the L transition layers."""
        h, *rest = state  # h: (B, S)
        phi = NONLINEARITIES[self.activation]
        for weight, bias in zip(self.weight_tr.unbind(0), self.bias_tr.unbind(0)):
            h = phi(nn.functional.linear(h, weight, bias))
        return (h, *rest)

    def __getattr__(self, name: str) -> Any:
        """The wrapped cell's parameters and buffers under their own names, as in ``state_dict``."""
        try:
            return super().__getattr__(name)
        except AttributeError:
            cell = self.__dict__.get("_modules", {}).get("cell")
            if cell is None or (name not in cell._parameters and name not in cell._buffers):
                raise
            return getattr(cell, name)

    def extra_repr(self) -> str:
        return f"depth={self.depth}, activation={self.activation!r}"


def _name_state_as_the_cell(
    module: DeepTransitionCell, state_dict: dict, prefix: str, local_metadata: dict
) -> None:
    """``cell.weight_ih`` -> ``weight_ih``: the wrapped cell's keys without the extra level."""
    inner = prefix + "cell."
    for key in [k for k in state_dict if k.startswith(inner)]:
        state_dict[prefix + key[len(inner) :]] = state_dict.pop(key)


def _read_state_named_as_the_cell(
    module: DeepTransitionCell, state_dict: dict, prefix: str, *args: Any
) -> None:
    """The inverse: every key of this module that is not the transition's goes to the cell."""
    module._loading_prefix = prefix
    own = {prefix + name for name, _ in module.named_parameters(recurse=False)}
    for key in [k for k in state_dict if k.startswith(prefix) and k not in own]:
        if "." not in key[len(prefix) :]:
            state_dict[f"{prefix}cell.{key[len(prefix):]}"] = state_dict.pop(key)


def _report_keys_as_the_cell(module: DeepTransitionCell, incompatible_keys: Any) -> None:
    """Name missing and unexpected keys as ``state_dict`` does (torch lets this hook edit them)."""
    prefix = module._loading_prefix
    inner = prefix + "cell."
    for keys in (incompatible_keys.missing_keys, incompatible_keys.unexpected_keys):
        keys[:] = [prefix + key[len(inner) :] if key.startswith(inner) else key for key in keys]
