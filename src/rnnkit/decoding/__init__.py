"""Decoders: turn a model's next-token distributions into sequences."""

from .sampling import SamplingOptions as SamplingOptions
from .sampling import choose_next as choose_next
from .sampling import generate as generate
