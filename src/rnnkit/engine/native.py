"""The native executor: torch.nn's own kernels (oneDNN on CPU, cuDNN on CUDA) for the cells that
are exactly theirs — Elman (tanh or relu), LSTM without peepholes or coupling (projection
allowed) and GRU with the reset gate after the product — one layer and direction at a time.
"""

from __future__ import annotations

from torch import _VF, Tensor
from torch.nn.utils.rnn import PackedSequence, pack_padded_sequence, pad_packed_sequence

from ..cells.base import RecurrentCell, State
from ..cells.elman import ElmanCell
from ..cells.gru import GRUCell
from ..cells.lstm import LSTMCell


def supports(cell: RecurrentCell) -> bool:
    """Whether torch.nn has a kernel for exactly this cell."""
    if type(cell) is LSTMCell:
        return not (cell.peephole or cell.coupled)
    if type(cell) is GRUCell:
        return cell.reset_after
    return type(cell) is ElmanCell


def run_native(
    cell: RecurrentCell, x: Tensor, state: State, lengths: Tensor | None = None
) -> tuple[Tensor, State]:
    """Run ``cell`` over ``x`` (T, B, I) with torch.nn's kernel; same contract as ``loop``."""
    kernel = _kernel(cell)
    has_bias = cell.bias_ih is not None
    weights = [cell.weight_ih, cell.weight_hh]
    if has_bias:
        weights += [cell.bias_ih, cell.bias_hh]
    if isinstance(cell, LSTMCell) and cell.proj_size:
        weights.append(cell.weight_hr)
    hx = [s.unsqueeze(0) for s in state]  # (1, B, ·): one layer, one direction
    hx = tuple(hx) if len(hx) > 1 else hx[0]
    if lengths is None:
        output, *final = kernel(x, hx, weights, has_bias, 1, 0.0, cell.training, False, False)
        return output, tuple(h.squeeze(0) for h in final)
    packed = pack_padded_sequence(x, lengths.cpu(), enforce_sorted=False)
    hx = _select(hx, packed.sorted_indices)
    data, *final = kernel(packed.data, packed.batch_sizes, hx, weights, has_bias, 1, 0.0, cell.training, False)
    output, _ = pad_packed_sequence(
        PackedSequence(data, packed.batch_sizes, packed.sorted_indices, packed.unsorted_indices),
        total_length=x.size(0),
    )
    return output, tuple(h.index_select(1, packed.unsorted_indices).squeeze(0) for h in final)


def _kernel(cell: RecurrentCell):
    if isinstance(cell, LSTMCell):
        return _VF.lstm
    if isinstance(cell, GRUCell):
        return _VF.gru
    return _VF.rnn_relu if cell.nonlinearity == "relu" else _VF.rnn_tanh


def _select(hx: Tensor | tuple[Tensor, ...], order: Tensor) -> Tensor | tuple[Tensor, ...]:
    if isinstance(hx, tuple):
        return tuple(h.index_select(1, order) for h in hx)
    return hx.index_select(1, order)
