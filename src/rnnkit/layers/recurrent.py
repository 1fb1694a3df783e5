"""``Recurrent``: layers of any cell, stacked, optionally bidirectional, over padded or packed input."""

from __future__ import annotations

import re
from typing import Any

import torch
from torch import Tensor, nn
from torch.nn.utils.rnn import PackedSequence, pack_padded_sequence, pad_packed_sequence

from ..cells import make_cell
from ..cells.base import RecurrentCell, State
from ..engine import select_executor

# torch.nn's parameter names: weight_ih_l0, bias_hh_l1_reverse, ...
_TORCH_NAME = re.compile(r"^(?P<name>[a-z_]+?)_l(?P<layer>\d+)(?P<reverse>_reverse)?$")


def reverse_padded(x: Tensor, lengths: Tensor | None) -> Tensor:
    """Reverse each sequence of ``x`` (T, B, F) within its own length; padding stays in place.

    The mapping is its own inverse, so it also turns a reversed output back.
    """
    if lengths is None:
        return x.flip(0)
    steps = torch.arange(x.size(0), device=x.device).unsqueeze(1)  # (T, 1)
    source = torch.where(steps < lengths, lengths - 1 - steps, steps)  # (T, B)
    return x.gather(0, source.unsqueeze(-1).expand_as(x))


class Recurrent(nn.Module):
    """A stack of recurrent layers built from any registered cell.

    Args:
        cell: a name from ``rnnkit.cells.cell_names()`` (``"elman"``, ``"lstm"``, ``"peephole"``,
            ``"cifg"``, ``"gru"``, ``"mut1"``, ``"mut2"``, ``"mut3"``, ``"leaky"``).
        input_size: features of each input step.
        hidden_size: units of each cell.
        num_layers: stacked layers; layer l > 0 reads the outputs of layer l − 1.
        bidirectional: run a second cell per layer over the reversed sequences and concatenate
            the two outputs (each sequence is reversed within its own length).
        batch_first: input and output are ``(B, T, F)`` instead of ``(T, B, F)``.
        dropout: dropout probability on the outputs of every layer but the last (training only).
        residual: a residual connection around every layer above the first: its output is its
            cell outputs plus the output of the layer below, ``o_l = f_l(...) + o_{l-1}``.
        input_skip: a skip connection from the input to every layer above the first, which then
            reads ``[o_{l-1}; x]`` (its cells' input size grows by ``input_size``). Together with
            a deep output these are the deep RNNs of Pascanu et al. (2014, "How to construct
            deep recurrent neural networks") and Graves (2013).
        executor: how cells run over time, a name from ``rnnkit.engine.executor_names()``.
        **cell_options: passed to every cell (e.g. ``forget_bias=0.0``, ``reset_after=False``).

    ``forward(input, state=None, lengths=None)`` takes a ``(T, B, I)`` tensor (``(B, T, I)`` with
    ``batch_first``, ``(T, I)`` unbatched) or a ``PackedSequence``, and returns ``(output,
    final_state)``. The state is a tuple with one tensor per element of the cell's state, each
    ``(num_layers * num_directions, B, size)`` as in torch.nn. With ``lengths`` (or packed input)
    a sequence's state stops changing after its last step and its padded outputs are zero.

    Parameters are stored in the cells (``self.cells[layer * num_directions + direction]``);
    ``state_dict()`` names them as torch.nn does (``weight_ih_l0``, ``bias_hh_l1_reverse``, ...),
    and the same names work as attributes.

    Example:
        >>> rnn = Recurrent("gru", 10, 20, num_layers=2, reset_after=False)
        >>> output, (h,) = rnn(torch.randn(5, 3, 10))
        >>> output.shape, h.shape
        (torch.Size([5, 3, 20]), torch.Size([2, 3, 20]))
    """

    def __init__(
        self,
        cell: str,
        input_size: int,
        hidden_size: int,
        num_layers: int = 1,
        bidirectional: bool = False,
        batch_first: bool = False,
        dropout: float = 0.0,
        executor: str = "auto",
        residual: bool = False,
        input_skip: bool = False,
        **cell_options: Any,
    ) -> None:
        super().__init__()
        if num_layers < 1:
            raise ValueError(f"num_layers must be at least 1, got {num_layers}")
        for name, enabled in (("residual", residual), ("input_skip", input_skip)):
            if enabled and num_layers < 2:  # both connect layers: with one layer they would do nothing
                raise ValueError(f"{name}=True connects stacked layers and needs num_layers >= 2, got {num_layers}")
        if not 0.0 <= dropout <= 1.0:
            raise ValueError(f"dropout must be in [0, 1], got {dropout}")
        self.cell_name = cell
        self.input_size = input_size
        self.hidden_size = hidden_size
        self.num_layers = num_layers
        self.bidirectional = bidirectional
        self.num_directions = 2 if bidirectional else 1
        self.batch_first = batch_first
        self.dropout = dropout
        self.residual = residual
        self.input_skip = input_skip
        self.cells = nn.ModuleList()
        below = input_size  # features that reach layer l from layer l - 1
        for layer in range(num_layers):
            layer_input = below + input_size if layer and input_skip else below
            for _ in range(self.num_directions):
                try:
                    self.cells.append(make_cell(cell, layer_input, hidden_size, **cell_options))
                except ValueError as error:
                    if layer == 0:
                        raise
                    source = "the layer below and the input" if input_skip else "the layer below"
                    raise ValueError(f"layer {layer} reads the {layer_input} features of {source}: {error}") from None
            below = self.cells[-1].output_size * self.num_directions
        self.executor_name = executor
        self.executors = [select_executor(executor, c) for c in self.cells]
        self._loading_prefix = ""  # where load_state_dict finds this module's keys, while it runs
        self.register_state_dict_post_hook(_name_state_as_torch)
        self.register_load_state_dict_pre_hook(_read_state_named_as_torch)
        self.register_load_state_dict_post_hook(_report_keys_as_torch)

    @property
    def output_size(self) -> int:
        """Features of each output step: the last layer's cell outputs, times the directions."""
        return self.cells[-1].output_size * self.num_directions

    def forward(
        self, input: Tensor | PackedSequence, state: State | Tensor | None = None, lengths: Tensor | None = None
    ) -> tuple[Tensor | PackedSequence, State]:
        packed = input if isinstance(input, PackedSequence) else None
        if packed is not None:
            if lengths is not None:
                raise ValueError("a PackedSequence carries its own lengths; do not pass lengths too")
            x, lengths = pad_packed_sequence(packed)  # (T, B, I), batch in the caller's order
        else:
            x = input.transpose(0, 1) if self.batch_first and input.dim() == 3 else input
        unbatched = x.dim() == 2
        if unbatched:
            x = x.unsqueeze(1)
            state = None if state is None else tuple(s.unsqueeze(1) for s in _as_tuple(state))
        self._check_input(x)
        steps, batch = x.shape[:2]
        if lengths is not None:
            lengths = _checked_lengths(lengths, steps, batch).to(x.device)

        initial = self._initial_states(state, batch, x)
        finals: list[State] = []
        below = x  # (T, B, F): the output of the layer below, for layer 0 the input
        for layer in range(self.num_layers):
            # input_skip: layers above the first read the input too, (T, B, F_below + I)
            layer_input = torch.cat([below, x], dim=-1) if layer and self.input_skip else below
            outputs = []
            for direction in range(self.num_directions):
                index = layer * self.num_directions + direction
                cell = self.cells[index]
                sequence = reverse_padded(layer_input, lengths) if direction else layer_input
                output, final = self.executors[index](cell, sequence, initial[index], lengths)
                outputs.append(reverse_padded(output, lengths) if direction else output)
                finals.append(final)
            output = torch.cat(outputs, dim=-1) if self.bidirectional else outputs[0]
            if self.residual and layer:
                # Equal sizes: every layer outputs output_size features. Padded steps stay zero.
                output = output + below
            if self.dropout and layer < self.num_layers - 1:
                output = nn.functional.dropout(output, self.dropout, self.training)
            below = output
        final_state = tuple(torch.stack(parts) for parts in zip(*finals))

        output = below  # (T, B, output_size)
        if unbatched:
            return output.squeeze(1), tuple(s.squeeze(1) for s in final_state)
        if packed is not None:
            return _repack_like(output, lengths, packed), final_state
        return (output.transpose(0, 1) if self.batch_first else output), final_state

    def _check_input(self, x: Tensor) -> None:
        if x.dim() != 3:
            raise ValueError(f"input must be 2-D (unbatched) or 3-D, got {x.dim()}-D")
        if x.size(-1) != self.input_size:
            raise ValueError(
                f"input.size(-1) must be equal to input_size. Expected {self.input_size}, got {x.size(-1)}"
            )

    def _initial_states(self, state: State | Tensor | None, batch: int, x: Tensor) -> list[State]:
        """Split a stacked ``(L*D, B, size)`` state into one state tuple per cell."""
        if state is None:
            return [cell.init_state(batch, x.device, x.dtype) for cell in self.cells]
        state = _as_tuple(state)
        cell = self.cells[0]
        if len(state) != len(cell.state_sizes):
            raise ValueError(
                f"the {self.cell_name} state has {len(cell.state_sizes)} tensor(s), got {len(state)}"
            )
        for k, (tensor, size) in enumerate(zip(state, cell.state_sizes)):
            expected = (len(self.cells), batch, size)
            if tuple(tensor.shape) != expected:
                raise ValueError(f"state[{k}] must have shape {expected}, got {tuple(tensor.shape)}")
        return list(zip(*(tensor.unbind(0) for tensor in state)))

    def __getattr__(self, name: str) -> Any:
        try:
            return super().__getattr__(name)
        except AttributeError:
            match = _TORCH_NAME.match(name)
            if match is None:
                raise
            cell = self._cell_for(int(match["layer"]), bool(match["reverse"]))
            if cell is None:
                raise
            return getattr(cell, match["name"])

    def _cell_for(self, layer: int, reverse: bool) -> RecurrentCell | None:
        if layer >= self.num_layers or (reverse and not self.bidirectional):
            return None
        return self.cells[layer * self.num_directions + int(reverse)]

    def extra_repr(self) -> str:
        options = [f"{self.cell_name!r}", f"num_layers={self.num_layers}"]
        flags = ("bidirectional", "batch_first", "residual", "input_skip")
        options += [f"{k}={getattr(self, k)}" for k in flags if getattr(self, k)]
        if self.dropout:
            options.append(f"dropout={self.dropout}")
        return ", ".join(options + [f"executor={self.executor_name!r}"])


def _as_tuple(state: State | Tensor) -> State:
    return (state,) if isinstance(state, Tensor) else tuple(state)


def _checked_lengths(lengths: Tensor, steps: int, batch: int) -> Tensor:
    lengths = torch.as_tensor(lengths, dtype=torch.int64)
    if lengths.shape != (batch,):
        raise ValueError(f"lengths must have shape ({batch},), got {tuple(lengths.shape)}")
    if bool((lengths < 1).any()) or bool((lengths > steps).any()):
        raise ValueError(f"lengths must lie in [1, {steps}], got {lengths.tolist()}")
    return lengths


def _repack_like(output: Tensor, lengths: Tensor, packed: PackedSequence) -> PackedSequence:
    """Pack ``output`` (T, B, F), batch in the caller's order, exactly as ``packed`` was packed."""
    order = packed.sorted_indices
    if order is not None:
        output, lengths = output.index_select(1, order), lengths.index_select(0, order)
    data = pack_padded_sequence(output, lengths.cpu(), enforce_sorted=True).data
    return PackedSequence(data, packed.batch_sizes, packed.sorted_indices, packed.unsorted_indices)


def _torch_name(key: str, directions: int) -> str:
    """``cells.3.weight_ih`` -> ``weight_ih_l1_reverse`` (with two directions)."""
    _, index, name = key.split(".", 2)
    layer, reverse = divmod(int(index), directions)
    return f"{name}_l{layer}" + ("_reverse" if reverse else "")


def _name_state_as_torch(module: Recurrent, state_dict: dict, prefix: str, local_metadata: dict) -> None:
    for key in [k for k in state_dict if k.startswith(prefix + "cells.")]:
        state_dict[prefix + _torch_name(key[len(prefix) :], module.num_directions)] = state_dict.pop(key)


def _read_state_named_as_torch(module: Recurrent, state_dict: dict, prefix: str, *args: Any) -> None:
    module._loading_prefix = prefix
    for key in [k for k in state_dict if k.startswith(prefix)]:
        match = _TORCH_NAME.match(key[len(prefix) :])
        if match is None:
            continue
        layer, reverse = int(match["layer"]), int(bool(match["reverse"]))
        index = layer * module.num_directions + reverse
        state_dict[f"{prefix}cells.{index}.{match['name']}"] = state_dict.pop(key)


def _report_keys_as_torch(module: Recurrent, incompatible_keys: Any) -> None:
    """Name missing and unexpected keys as torch.nn would (torch lets this hook edit the lists)."""
    prefix = module._loading_prefix
    for keys in (incompatible_keys.missing_keys, incompatible_keys.unexpected_keys):
        keys[:] = [
            prefix + _torch_name(key[len(prefix) :], module.num_directions)
            if key.startswith(prefix + "cells.") else key
            for key in keys
        ]
