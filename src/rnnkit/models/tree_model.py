r"""A recursive network's task model: embed each node's label, compose up the tree, predict."""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor, nn

from ..data.trees import TreeBatch
from ..layers.tree import TreeLayer


class TreeModel(nn.Module):
    r"""Predict from every node of a tree, or from its root, with a recursive network.

    .. math::
        x_j = \begin{cases} E_{leaf}[a_j] & j \text{ a leaf} \\ E_{node}[a_j] & \text{otherwise}
        \end{cases}, \qquad
        h_j = \mathrm{cell}(x_j, h_{j1}, \dots, h_{jK}), \qquad
        \mathrm{logits}_j = W_{out} h_j + b_{out}

    :math:`a_j` is node j's label id (a leaf's in the leaf vocabulary — digits, words — an inner
    node's in the node vocabulary — operators, phrase types), :math:`E_{leaf}, E_{node}` the two
    embedding tables, :math:`h_{jk}` the states of its children and :math:`\mathrm{cell}` a tree
    cell (:data:`rnnkit.cells.tree.TREE_CELLS`), stacked ``num_layers`` deep
    (:class:`~rnnkit.layers.tree.TreeLayer`), computed level by level over the batch. The same
    output layer reads every node: :meth:`node_outputs` gives them all (per-node supervision, as
    in the Stanford Sentiment Treebank), :meth:`forward` the roots' (one prediction per tree).

    Args:
        num_outputs: classes of a softmax classifier, or 1 for a regression value.
        leaf_vocab_size, node_vocab_size: labels of leaves and of inner nodes.
        cell: ``"treernn"``, ``"childsum"`` or ``"nary"``.
        hidden_size, num_layers: of the :class:`TreeLayer`.
        embedding_size: features of the label embeddings (0: ``hidden_size``).
        dropout: on the embeddings, between layers and before the output layer.
        **cell_options: the cell's own (``arity``, ``forget_bias``).

    ``forward(batch) -> (B, num_outputs)``; ``node_outputs(batch) -> (N, num_outputs)`` in the
    batch's node numbering.

    Example:
        >>> from rnnkit.data.trees import LabelVocabulary, collate_trees, parse_tree
        >>> trees = [parse_tree("(+ 1 (* 2 3))"), parse_tree("(- 4 5)"), parse_tree("6")]
        >>> leaves, nodes = LabelVocabulary.from_trees(trees)
        >>> model = TreeModel(10, len(leaves), len(nodes), cell="childsum", hidden_size=16)
        >>> batch = collate_trees(trees, leaves, nodes)
        >>> model(batch).shape, model.node_outputs(batch).shape
        (torch.Size([3, 10]), torch.Size([9, 10]))
    """

    def __init__(
        self,
        num_outputs: int,
        leaf_vocab_size: int,
        node_vocab_size: int,
        cell: str = "childsum",
        hidden_size: int = 64,
        num_layers: int = 1,
        embedding_size: int = 0,
        dropout: float = 0.0,
        **cell_options: Any,
    ) -> None:
        super().__init__()
        if num_outputs < 1:
            raise ValueError(f"num_outputs must be at least 1, got {num_outputs}")
        embedding_size = embedding_size or hidden_size
        self.leaf_embedding = nn.Embedding(leaf_vocab_size, embedding_size)
        # A tree of a single leaf has no inner node: keep at least one row so the table exists.
        self.node_embedding = nn.Embedding(max(node_vocab_size, 1), embedding_size)
        self.tree = TreeLayer(cell, embedding_size, hidden_size, num_layers, dropout=dropout, **cell_options)
        self.dropout = nn.Dropout(dropout)
        self.output = nn.Linear(hidden_size, num_outputs)

    def node_states(self, batch: TreeBatch) -> Tensor:
        """The top layer's state of every node, ``(N, H)`` in the batch's numbering."""
        leaves = batch.level_sizes[0]  # the leaves come first in the numbering
        x = torch.cat([self.leaf_embedding(batch.labels[:leaves]), self.node_embedding(batch.labels[leaves:])])
        outputs, _ = self.tree(self.dropout(x), batch)  # (N, H)
        return outputs

    def node_outputs(self, batch: TreeBatch) -> Tensor:
        """Every node's logits or value, ``(N, num_outputs)``."""
        return self.output(self.dropout(self.node_states(batch)))

    def forward(self, batch: TreeBatch) -> Tensor:
        """Each tree's root's logits or value, ``(B, num_outputs)``."""
        return self.output(self.dropout(self.node_states(batch)[batch.roots]))
