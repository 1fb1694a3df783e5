"""Structures that hold tensors (optimizer state, a recurrent state) as safetensors + JSON.

``split_tensors`` turns a nested structure into a flat dict of tensors, to be saved with
safetensors, and a JSON-able skeleton that names them; ``join_tensors`` puts it back together
exactly (tuples stay tuples, int keys stay ints). Nothing is pickled.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

import torch

from ..errors import CheckpointError

# Tags of the JSON encoding used by split_tensors. Plain dicts never carry keys starting with
# "__" (such dicts are stored as a list of items instead), so a tag cannot be mistaken for data.
_TENSOR_TAG = "__tensor__"
_TUPLE_TAG = "__tuple__"
_ITEMS_TAG = "__items__"


def split_tensors(obj: Any, prefix: str) -> tuple[dict[str, torch.Tensor], Any]:
    """Split ``obj`` into its tensors and a JSON-able skeleton that :func:`join_tensors` inverts.

    ``obj`` may nest dicts (any str/int/float/bool/None keys), lists, tuples, tensors, str, int,
    float, bool and None. Each tensor is stored under a key built from ``prefix`` and its path
    (``optimizer.state.0.exp_avg``) and replaced by ``{"__tensor__": key}``; tuples become
    ``{"__tuple__": [...]}`` and dicts with non-str keys ``{"__items__": [[key, value], ...]}``,
    so the structure comes back exactly (tuples stay tuples, int keys stay ints). Tensors are not
    copied. Raises ``TypeError`` for any other type.
    """
    tensors: dict[str, torch.Tensor] = {}
    return tensors, _encode(obj, prefix, tensors)


def join_tensors(
    tensors: Mapping[str, torch.Tensor], skeleton: Any, *, source: str | os.PathLike = "checkpoint"
) -> Any:
    """Rebuild what :func:`split_tensors` split; ``tensors`` may hold other entries too.

    The tensors are used as they are, not copied. A skeleton that names a missing tensor or is
    malformed raises :class:`CheckpointError` naming ``source`` (pass the checkpoint's path).
    """
    return _decode(skeleton, tensors, str(source))


def optimizer_state_to_tensors(
    state_dict: dict, *, prefix: str = "optimizer"
) -> tuple[dict[str, torch.Tensor], dict]:
    """Split a torch optimizer's ``state_dict()`` into tensors and a JSON-able dict.

    Works for any torch optimizer (Adam, AdamW, SGD, RMSprop, ...): moments and the tensor
    ``step`` go to the tensors, keyed ``{prefix}.state.{param_id}.{name}``; hyper-parameters and
    non-tensor state (floats, bools, None, the ``betas`` tuple) go to the dict.
    """
    if not isinstance(state_dict, dict) or not {"state", "param_groups"} <= state_dict.keys():
        raise TypeError("expected an optimizer state_dict with 'state' and 'param_groups'")
    return split_tensors(state_dict, prefix)


def optimizer_state_from_tensors(
    tensors: Mapping[str, torch.Tensor], meta: dict, *, source: str | os.PathLike = "checkpoint"
) -> dict:
    """Invert :func:`optimizer_state_to_tensors`, for ``optimizer.load_state_dict``."""
    state_dict = join_tensors(tensors, meta, source=source)
    if not isinstance(state_dict, dict) or not {"state", "param_groups"} <= state_dict.keys():
        raise CheckpointError(f"{source}: the optimizer state lacks 'state' or 'param_groups'")
    return state_dict


def _encode(value: Any, key: str, tensors: dict[str, torch.Tensor]) -> Any:
    if isinstance(value, torch.Tensor):
        if key in tensors:
            raise ValueError(f"two tensors would be stored under the key {key!r}")
        tensors[key] = value
        return {_TENSOR_TAG: key}
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    if isinstance(value, tuple):
        return {_TUPLE_TAG: [_encode(v, f"{key}.{i}", tensors) for i, v in enumerate(value)]}
    if isinstance(value, list):
        return [_encode(v, f"{key}.{i}", tensors) for i, v in enumerate(value)]
    if isinstance(value, dict):
        if all(isinstance(k, str) and not k.startswith("__") for k in value):
            return {k: _encode(v, f"{key}.{k}", tensors) for k, v in value.items()}
        items = []
        for k, v in value.items():
            if not (k is None or isinstance(k, (bool, int, float, str))):
                raise TypeError(f"cannot store the {type(k).__name__} dict key {k!r} at {key!r}")
            items.append([k, _encode(v, f"{key}.{k}", tensors)])
        return {_ITEMS_TAG: items}
    raise TypeError(f"cannot store the {type(value).__name__} at {key!r} in a checkpoint")


def _decode(value: Any, tensors: Mapping[str, torch.Tensor], source: str) -> Any:
    if isinstance(value, list):
        return [_decode(v, tensors, source) for v in value]
    if not isinstance(value, dict):
        return value
    if len(value) == 1:
        ((tag, inner),) = value.items()
        if tag == _TENSOR_TAG:
            if not isinstance(inner, str) or inner not in tensors:
                raise CheckpointError(f"{source} has no tensor {inner!r}, which its metadata names")
            return tensors[inner]
        if tag == _TUPLE_TAG and isinstance(inner, list):
            return tuple(_decode(v, tensors, source) for v in inner)
        if tag == _ITEMS_TAG and isinstance(inner, list):
            scalar = (str, int, float, bool, type(None))
            if not all(
                isinstance(item, list) and len(item) == 2 and isinstance(item[0], scalar)
                for item in inner
            ):
                raise CheckpointError(f"{source} has a malformed {_ITEMS_TAG} entry")
            return {k: _decode(v, tensors, source) for k, v in inner}
    if any(k.startswith("__") for k in value):
        raise CheckpointError(f"{source} has an unknown tagged value {sorted(value)!r}")
    return {k: _decode(v, tensors, source) for k, v in value.items()}
