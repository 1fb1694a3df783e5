"""Every built-in cell and option, as the cases that gradcheck and executor tests run through."""

# (id, cell name, options, num_layers, bidirectional). MUT1 and MUT2 add the input to an H-sized
# sum, so they cannot read a bidirectional layer's 2H outputs: they get one stacked and one
# bidirectional layout instead of both at once. Presets and bias=False, which change no code path
# of the stack, run on one bidirectional layer to keep the suite fast. transition_depth, an option
# of every cell, wraps each family once (cells whose state has several tensors included). Clockwork
# periods are a tuple: the executor tests stretch list options (a leaky alpha) to their width.
CASES = [
    ("elman-tanh", "elman", {"nonlinearity": "tanh"}, 2, True),
    ("elman-relu", "elman", {"nonlinearity": "relu"}, 2, True),
    ("elman-nobias", "elman", {"bias": False}, 1, True),
    ("lstm", "lstm", {}, 2, True),
    ("lstm-forget_bias0", "lstm", {"forget_bias": 0.0}, 1, True),
    ("lstm-peephole", "lstm", {"peephole": True}, 2, True),
    ("lstm-coupled", "lstm", {"coupled": True}, 2, True),
    ("lstm-peephole-coupled", "lstm", {"peephole": True, "coupled": True}, 2, True),
    ("lstm-proj", "lstm", {"proj_size": 1}, 2, True),
    ("lstm-nobias", "lstm", {"bias": False}, 1, True),
    ("peephole", "peephole", {}, 1, True),
    ("cifg", "cifg", {}, 1, True),
    ("gru-reset_after", "gru", {"reset_after": True}, 2, True),
    ("gru-reset_before", "gru", {"reset_after": False}, 2, True),
    ("gru-reset_before-nobias", "gru", {"reset_after": False, "bias": False}, 1, True),
    ("mut1-stacked", "mut1", {}, 2, False),
    ("mut1-bidir", "mut1", {}, 1, True),
    ("mut2-stacked", "mut2", {}, 2, False),
    ("mut2-bidir", "mut2", {}, 1, True),
    ("mut3", "mut3", {}, 2, True),
    ("leaky-fixed_alpha", "leaky", {"alpha": 0.3}, 2, True),
    ("leaky-learned_alpha", "leaky", {"learn_alpha": True}, 2, True),
    ("leaky-per_unit_alpha", "leaky", {"alpha": [0.2, 0.9], "learn_alpha": True}, 2, True),
    ("leaky-nobias", "leaky", {"bias": False}, 1, True),
    ("leaky-nonrecurrent", "leaky", {"recurrent": False, "learn_alpha": True}, 2, True),
    ("skip-d3", "skip", {"delay": 3}, 2, True),
    ("skip-relu-nobias", "skip", {"nonlinearity": "relu", "bias": False}, 1, True),
    ("clockwork", "clockwork", {"modules": 2}, 2, True),
    ("clockwork-periods", "clockwork", {"periods": (1, 3)}, 1, True),
    ("clockwork-nobias", "clockwork", {"modules": 2, "bias": False}, 1, True),
    ("elman-deep_transition", "elman", {"transition_depth": 2}, 2, True),
    ("lstm-proj-deep_transition", "lstm", {"proj_size": 1, "transition_depth": 1}, 1, True),
    ("gru-deep_transition", "gru", {"transition_depth": 2}, 1, True),
    ("mut1-deep_transition", "mut1", {"transition_depth": 1}, 2, False),
    ("mut2-deep_transition", "mut2", {"transition_depth": 1}, 2, False),
    ("mut3-deep_transition", "mut3", {"transition_depth": 1}, 1, True),
    ("leaky-deep_transition", "leaky", {"transition_depth": 1}, 1, True),
    ("skip-deep_transition", "skip", {"transition_depth": 1}, 1, True),
    ("clockwork-deep_transition", "clockwork", {"modules": 2, "transition_depth": 1}, 1, True),
]
