"""Decoders: turn a model's next-token scores into sequences.

Every decoder drives a :class:`StepModel` through the one loop :func:`decode`: argmax and
sampling choose one token per row (:func:`sampling_choice`), beam search keeps the K best
hypotheses per problem (:func:`beam_search`).
"""

from .beam import Hypothesis as Hypothesis
from .beam import beam_search as beam_search
from .beam import gnmt_length_penalty as gnmt_length_penalty
from .sampling import SamplingOptions as SamplingOptions
from .sampling import choose_next as choose_next
from .sampling import generate as generate
from .sampling import sampling_choice as sampling_choice
from .stepper import DecoderStepper as DecoderStepper
from .stepper import LanguageModelStepper as LanguageModelStepper
from .stepper import StepModel as StepModel
from .stepper import decode as decode
from .stepper import select_rows as select_rows
