"""Diagnostics and plots: what happens inside a recurrent network, and how training went."""
