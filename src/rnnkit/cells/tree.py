r"""Tree cells: one node of a recursive network, computed from its input and its children's states.

A tree cell is to a tree what a recurrent cell is to a chain: it knows how one node's state
follows from the node's input :math:`x_j` and its children's states, and nothing else. The layer
(:mod:`rnnkit.layers.tree`) walks the levels of a batch of trees and calls the cell once per
level, on every node of that height at once. A tree cell declares:

- its parameters, named as the recurrent cells' (``weight_ih``, ``weight_hh``, ``bias_ih``,
  ``bias_hh``; LSTM gates stacked ``i, f, g, o``);
- ``input_projection(x)``: ``(N, I) -> (N, G)``, the part that does not depend on the children,
  for every node of the batch in one GEMM;
- ``node(xp, children) -> (output, state)``: the node equations for ``n`` nodes, where
  ``children`` holds one ``(n, K, H)`` tensor per state entry, the K children's states in order,
  zeros for a missing child (a leaf has none);
- ``arity``: the number of children the equations name (K), or None when any number will do.

A leaf is a node whose children are all missing: the equations with zero children's states.
``TREE_CELLS`` names the cells for ``make_tree_cell`` and ``rnnkit train --cell``.
"""

from __future__ import annotations

from types import MappingProxyType
from typing import Any

import torch
from torch import Tensor, nn
from torch.nn import functional as F

from .base import CellBase, State, optional_parameter


class TreeCell(CellBase):
    """Base class of the tree cells (module docstring); sizes, initialisation and the input
    projection ``(N, I) -> (N, G)`` of every node at once come from :class:`CellBase`.

    Attributes:
        input_size: features of a node's input :math:`x_j`.
        hidden_size: units of a node's state (each entry of ``state_sizes``).
        arity: children the equations name (missing ones count as zero), or None: any number.
        state_sizes: the trailing size of each tensor of a node's state.
    """

    arity: int | None = None

    def node(self, xp: Tensor, children: State) -> tuple[Tensor, State]:
        """``n`` nodes: ``xp`` (n, G) rows of ``input_projection``, ``children`` (n, K, H) each."""
        raise NotImplementedError

    def extra_repr(self) -> str:
        arity = "" if self.arity is None else f", arity={self.arity}"
        return f"{self.input_size}, {self.hidden_size}{arity}"


class TreeRNNCell(TreeCell):
    r"""Recursive neural network node (Socher, Lin, Ng & Manning 2011; Pollack 1990).

    .. math::
        h_j = \tanh\big(W_{ih} x_j + b_{ih} + W_{hh} [h_{j1}; \dots; h_{jN}] + b_{hh}\big)

    :math:`x_j` (I) is node j's input (its label's embedding), :math:`h_{jk}` (H) the state of
    its k-th child, zero for a missing child, :math:`[\cdot;\cdot]` concatenation and :math:`h_j`
    (H) the node's state and output. ``weight_ih`` is H × I, ``weight_hh`` H × N·H (one block of
    columns per child position, so order matters: ``3 - 4`` differs from ``4 - 3``), ``bias_ih``
    and ``bias_hh`` H. Socher et al.'s binary :math:`W [h_{left}; h_{right}] + b` is ``arity=2``
    (the default) with the node's input term added, which lets a node's label (an operator) steer
    the composition.

    State: ``(h,)``, ``(n, H)``. Parameters uniform in :math:`\pm 1/\sqrt{H}` as in torch.nn.

    Example:
        >>> cell = TreeRNNCell(3, 5)
        >>> xp = cell.input_projection(torch.randn(4, 3))          # (n, H)
        >>> h, (h,) = cell.node(xp, (torch.zeros(4, 2, 5),))       # four leaves: (4, 5)
    """

    def __init__(self, input_size: int, hidden_size: int, arity: int = 2, bias: bool = True) -> None:
        super().__init__(input_size, hidden_size)
        if arity < 1:
            raise ValueError(f"arity must be at least 1, got {arity}")
        self.arity = arity
        self.weight_ih = nn.Parameter(torch.empty(hidden_size, input_size))
        self.weight_hh = nn.Parameter(torch.empty(hidden_size, arity * hidden_size))
        self.bias_ih = optional_parameter(bias, hidden_size)
        self.bias_hh = optional_parameter(bias, hidden_size)
        self.reset_parameters()

    def node(self, xp: Tensor, children: State) -> tuple[Tensor, State]:
        (h_children,) = children  # (n, N, H)
        h = torch.tanh(xp + F.linear(h_children.flatten(1), self.weight_hh, self.bias_hh))  # (n, H)
        return h, (h,)


class _TreeLSTMCell(TreeCell):
    """What the two TreeLSTMs share: the ``(h, c)`` state, the forget bias, the node's output."""

    def __init__(self, input_size: int, hidden_size: int, forget_bias: float) -> None:
        super().__init__(input_size, hidden_size)
        self.forget_bias = forget_bias

    @property
    def state_sizes(self) -> tuple[int, ...]:
        return (self.hidden_size, self.hidden_size)

    def reset_parameters(self) -> None:
        super().reset_parameters()
        if self.bias_ih is not None:
            with torch.no_grad():  # rows H..2H of bias_ih are the forget gate's, as in LSTMCell
                self.bias_ih[self.hidden_size : 2 * self.hidden_size] = self.forget_bias

    @staticmethod
    def combine(i: Tensor, f: Tensor, g: Tensor, o: Tensor, c_children: Tensor) -> tuple[Tensor, State]:
        """``c = i * g + sum_k f_k * c_k`` and ``h = o * tanh(c)``: gates (n, H), f and c_children (n, K, H)."""
        c = i * g + (f * c_children).sum(1)
        h = o * torch.tanh(c)
        return h, (h, c)

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, forget_bias={self.forget_bias}"


class ChildSumTreeLSTMCell(_TreeLSTMCell):
    r"""Child-Sum Tree-LSTM node (Tai, Socher & Manning 2015, equations 2-8): any number of
    unordered children.

    .. math::
        \tilde h_j &= \textstyle\sum_k h_{jk} \\
        i_j &= \sigma(W_{ii} x_j + b_{ii} + W_{hi} \tilde h_j + b_{hi}) \\
        f_{jk} &= \sigma(W_{if} x_j + b_{if} + W_{hf} h_{jk} + b_{hf}) \\
        g_j &= \tanh(W_{ig} x_j + b_{ig} + W_{hg} \tilde h_j + b_{hg}) \\
        o_j &= \sigma(W_{io} x_j + b_{io} + W_{ho} \tilde h_j + b_{ho}) \\
        c_j &= i_j \odot g_j + \textstyle\sum_k f_{jk} \odot c_{jk} \\
        h_j &= o_j \odot \tanh(c_j)

    :math:`x_j` (I) is node j's input, :math:`h_{jk}, c_{jk}` (H) the states of its k-th child
    (the sums run over its children; a leaf has none), :math:`i, o` the input and output gates,
    :math:`f_{jk}` one forget gate per child, :math:`g` the candidate (Tai et al.'s :math:`u`),
    :math:`\sigma` the logistic sigmoid and :math:`\odot` the elementwise product. ``weight_ih``
    (4H × I) and ``weight_hh`` (4H × H) stack the gates in torch's order ``i, f, g, o``; the
    ``f`` rows of ``weight_hh`` read each child's :math:`h_{jk}`, the others the sum.

    The children are a multiset: every sum and every forget gate treats them alike, so the node
    cannot tell ``3 - 4`` from ``4 - 3`` (use :class:`NaryTreeLSTMCell` where order matters); in
    exchange it takes any number of them, as a dependency tree's words need.

    ``forget_bias`` (default 1.0) initialises the forget gate's ``bias_ih`` as in
    :class:`~rnnkit.cells.LSTMCell`. State: ``(h, c)``, each ``(n, H)``. Parameters otherwise
    uniform in :math:`\pm 1/\sqrt{H}`.

    Example:
        >>> cell = ChildSumTreeLSTMCell(3, 5)
        >>> xp = cell.input_projection(torch.randn(2, 3))                  # (n, 4H)
        >>> children = (torch.randn(2, 3, 5), torch.randn(2, 3, 5))        # three children each
        >>> h, (h, c) = cell.node(xp, children)                            # (2, 5) each
    """

    def __init__(self, input_size: int, hidden_size: int, bias: bool = True, forget_bias: float = 1.0) -> None:
        super().__init__(input_size, hidden_size, forget_bias)
        self.weight_ih = nn.Parameter(torch.empty(4 * hidden_size, input_size))
        self.weight_hh = nn.Parameter(torch.empty(4 * hidden_size, hidden_size))
        self.bias_ih = optional_parameter(bias, 4 * hidden_size)
        self.bias_hh = optional_parameter(bias, 4 * hidden_size)
        self.reset_parameters()

    def node(self, xp: Tensor, children: State) -> tuple[Tensor, State]:
        h_children, c_children = children  # (n, K, H) each
        H = self.hidden_size
        xi, xf, xg, xo = xp.chunk(4, dim=1)  # (n, H) each
        # Two GEMMs per level: the summed children for i, g, o, and every child for its own f.
        w_i, w_f, w_go = self.weight_hh.split([H, H, 2 * H])
        b_i, b_f, b_go = (None,) * 3 if self.bias_hh is None else self.bias_hh.split([H, H, 2 * H])
        b_igo = None if b_i is None else torch.cat([b_i, b_go])
        hi, hg, ho = F.linear(h_children.sum(1), torch.cat([w_i, w_go]), b_igo).chunk(3, dim=1)
        hf = F.linear(h_children, w_f, b_f)  # (n, K, H)
        f = torch.sigmoid(xf.unsqueeze(1) + hf)  # (n, K, H)
        i, g, o = torch.sigmoid(xi + hi), torch.tanh(xg + hg), torch.sigmoid(xo + ho)
        return self.combine(i, f, g, o, c_children)


class NaryTreeLSTMCell(_TreeLSTMCell):
    r"""N-ary Tree-LSTM node (Tai, Socher & Manning 2015, equations 9-14): at most N ordered
    children, each position with its own weights.

    .. math::
        i_j &= \sigma(W_{ii} x_j + b_{ii} + \textstyle\sum_{l} U^{i}_{l} h_{jl} + b_{hi}) \\
        f_{jk} &= \sigma(W_{if} x_j + b_{if} + \textstyle\sum_{l} U^{f}_{kl} h_{jl} + b_{hf_k}) \\
        g_j &= \tanh(W_{ig} x_j + b_{ig} + \textstyle\sum_{l} U^{g}_{l} h_{jl} + b_{hg}) \\
        o_j &= \sigma(W_{io} x_j + b_{io} + \textstyle\sum_{l} U^{o}_{l} h_{jl} + b_{ho}) \\
        c_j &= i_j \odot g_j + \textstyle\sum_{k} f_{jk} \odot c_{jk} \\
        h_j &= o_j \odot \tanh(c_j)

    :math:`k, l = 1..N` run over child positions, :math:`h_{jl}, c_{jl}` (H) are the l-th child's
    states (zero for a missing child), the other symbols as in :class:`ChildSumTreeLSTMCell`.
    Every gate sees every child through its own H × H block :math:`U_l`, so the forget gate of
    child k can depend on its siblings (:math:`U^f_{kl}`). ``weight_ih`` (4H × I) stacks ``i, f,
    g, o`` (the forget gates share :math:`W_{if}` as in Tai et al.); ``weight_hh``
    ((N + 3)·H × N·H) stacks ``i, f_1 .. f_N, g, o`` over the concatenated children
    :math:`[h_{j1}; \dots; h_{jN}]`, one GEMM per level; ``bias_hh`` likewise.

    Options: ``arity`` N (default 2, Tai et al.'s Binary Tree-LSTM), ``forget_bias`` (default
    1.0, initialises the forget gates' ``bias_ih``). State: ``(h, c)``, each ``(n, H)``.

    Example:
        >>> cell = NaryTreeLSTMCell(3, 5, arity=2)
        >>> xp = cell.input_projection(torch.randn(2, 3))                  # (n, 4H)
        >>> children = (torch.randn(2, 2, 5), torch.randn(2, 2, 5))        # left, right
        >>> h, (h, c) = cell.node(xp, children)                            # (2, 5) each
    """

    def __init__(
        self, input_size: int, hidden_size: int, arity: int = 2, bias: bool = True, forget_bias: float = 1.0
    ) -> None:
        super().__init__(input_size, hidden_size, forget_bias)
        if arity < 1:
            raise ValueError(f"arity must be at least 1, got {arity}")
        self.arity = arity
        self.weight_ih = nn.Parameter(torch.empty(4 * hidden_size, input_size))
        self.weight_hh = nn.Parameter(torch.empty((arity + 3) * hidden_size, arity * hidden_size))
        self.bias_ih = optional_parameter(bias, 4 * hidden_size)
        self.bias_hh = optional_parameter(bias, (arity + 3) * hidden_size)
        self.reset_parameters()

    def node(self, xp: Tensor, children: State) -> tuple[Tensor, State]:
        h_children, c_children = children  # (n, N, H) each
        n, N, H = h_children.shape
        xi, xf, xg, xo = xp.chunk(4, dim=1)  # (n, H) each
        hp = F.linear(h_children.flatten(1), self.weight_hh, self.bias_hh)  # (n, (N + 3) H)
        hi, hf, hg, ho = hp.split([H, N * H, H, H], dim=1)
        f = torch.sigmoid(xf.unsqueeze(1) + hf.view(n, N, H))  # (n, N, H)
        i, g, o = torch.sigmoid(xi + hi), torch.tanh(xg + hg), torch.sigmoid(xo + ho)
        return self.combine(i, f, g, o, c_children)


TREE_CELLS: MappingProxyType[str, type[TreeCell]] = MappingProxyType(
    {"treernn": TreeRNNCell, "childsum": ChildSumTreeLSTMCell, "nary": NaryTreeLSTMCell}
)


def make_tree_cell(name: str, input_size: int, hidden_size: int, **options: Any) -> TreeCell:
    """Build the tree cell called ``name`` (a key of ``TREE_CELLS``) with ``options``.

    Raises:
        ValueError: for an unknown name or option (the message lists the valid ones) or a value
            the cell refuses.
    """
    if name not in TREE_CELLS:
        raise ValueError(f"unknown tree cell {name!r}; choose one of {', '.join(TREE_CELLS)}")
    try:
        return TREE_CELLS[name](input_size, hidden_size, **options)
    except TypeError as error:  # an unknown option or a value of the wrong type
        raise ValueError(f"tree cell {name!r} cannot use the options {options}: {error}") from None
