"""Image captioning: a CNN encodes the image, a conditioned recurrent language model describes it."""

from __future__ import annotations

import torch
from torch import Tensor, nn

from ..cells.base import State
from ..data.captions import CaptionVocabulary
from ..decoding import DecoderStepper, SamplingOptions, beam_search, decode, sampling_choice
from .conditioned import ConditionedGenerator

#: Tokens a decoded caption may hold, EOS included: the longest caption of three shapes has 16 words.
MAX_CAPTION_TOKENS = 20


class ImageEncoder(nn.Module):
    r"""A small convolutional network from an RGB image to a feature vector :math:`c`.

    .. math::
        a_1 &= \mathrm{pool}(\mathrm{relu}(\mathrm{conv}_1(x))), \quad
        a_2 = \mathrm{pool}(\mathrm{relu}(\mathrm{conv}_2(a_1))), \quad
        a_3 = \mathrm{relu}(\mathrm{conv}_3(a_2)) \\
        c &= W\, \mathrm{vec}(\mathrm{avgpool}_{4 \times 4}(a_3)) + b

    :math:`x` is a ``(B, 3, H, W)`` image, the convolutions are 3 × 3 with padding 1 and
    ``width``, 2 ``width`` and 2 ``width`` channels, pool is a 2 × 2 max-pool, and the adaptive
    average pool keeps a 4 × 4 map rather than one global average: the captions name where shapes
    lie (above, left of), which a global average would erase. :math:`c` has ``features`` entries.

    Example:
        >>> import torch
        >>> ImageEncoder(features=32)(torch.rand(2, 3, 64, 64)).shape
        torch.Size([2, 32])
    """

    def __init__(self, features: int, width: int = 16) -> None:
        super().__init__()
        self.features = features
        self.layers = nn.Sequential(
            nn.Conv2d(3, width, 3, padding=1), nn.BatchNorm2d(width), nn.ReLU(), nn.MaxPool2d(2),
            nn.Conv2d(width, 2 * width, 3, padding=1), nn.BatchNorm2d(2 * width), nn.ReLU(), nn.MaxPool2d(2),
            nn.Conv2d(2 * width, 2 * width, 3, padding=1), nn.BatchNorm2d(2 * width), nn.ReLU(),
            nn.AdaptiveMaxPool2d(4), nn.Flatten(), nn.Linear(2 * width * 16, features), nn.BatchNorm1d(features),
        )  # fmt: skip

    def forward(self, images: Tensor) -> Tensor:
        if images.dim() != 4 or images.size(1) != 3 or min(images.shape[2:]) < 4:
            raise ValueError(f"images must be (B, 3, H, W) with H, W >= 4, got shape {tuple(images.shape)}")
        return self.layers(images)  # (B, features)


class Captioner(nn.Module):
    r"""An image encoder feeding a :class:`ConditionedGenerator` (Vinyals et al. 2015, "Show and
    tell"; Karpathy & Fei-Fei 2015): :math:`c = \mathrm{encoder}(x)` conditions the language
    model through its input at every step, its initial state, or both (the generator's
    ``conditioning``), and the two are trained jointly by the captions' cross-entropy.

    ``forward(images (B, 3, H, W), tokens_in (T, B)) -> logits (T, B, V)`` is the teacher-forced
    pass; ``start(images) -> state`` and ``step(tokens (B,), state) -> (logits (B, V), state)``
    decode, so :class:`~rnnkit.decoding.DecoderStepper` drives it (context: ``(images,)``) for
    greedy, sampled and beam-search captions.

    Example:
        >>> import torch
        >>> generator = ConditionedGenerator(32, 20, cell="gru", hidden_size=32, conditioning="both")
        >>> model = Captioner(ImageEncoder(32), generator)
        >>> model(torch.rand(2, 3, 16, 16), torch.randint(20, (5, 2))).shape
        torch.Size([5, 2, 20])
    """

    def __init__(self, encoder: ImageEncoder, generator: ConditionedGenerator) -> None:
        super().__init__()
        if encoder.features != generator.condition_size:
            raise ValueError(
                f"the encoder's features must be the generator's condition size {generator.condition_size}, "
                f"got {encoder.features}"
            )
        self.encoder = encoder
        self.generator = generator

    def forward(self, images: Tensor, tokens_in: Tensor) -> Tensor:
        return self.generator(self.encoder(images), tokens_in)

    def start(self, images: Tensor) -> State:
        """The decoder's state before the first token, for ``images`` ``(B, 3, H, W)``."""
        return self.generator.start(self.encoder(images))

    def step(self, tokens: Tensor, state: State) -> tuple[Tensor, State]:
        """One step: the previous tokens ``(B,)`` -> logits ``(B, V)`` and the next state."""
        return self.generator.step(tokens, state)


def sample_captions(
    model: Captioner,
    images: Tensor,
    options: SamplingOptions,
    generator: torch.Generator | None = None,
    max_length: int = MAX_CAPTION_TOKENS,
) -> list[str]:
    """One caption per image of ``images`` (B, 3, H, W): greedy or sampled as ``options`` say
    (temperature, top-k, top-p), decoded from BOS through :func:`rnnkit.decoding.decode`."""
    vocab = CaptionVocabulary()
    stepper = DecoderStepper(model, vocab.BOS)
    tokens = torch.stack(list(decode(stepper, (images,), max_length, sampling_choice(options, generator))))
    return [vocab.decode(tokens[:, b]) for b in range(images.size(0))]  # tokens: (max_length, B)


def beam_captions(
    model: Captioner, images: Tensor, beam_size: int, n_best: int = 1, max_length: int = MAX_CAPTION_TOKENS
) -> list[list[tuple[str, float]]]:
    """The ``n_best`` captions of each image of ``images`` (B, 3, H, W) by beam search of width
    ``beam_size``, best first, with their log-probabilities (no length penalty)."""
    vocab = CaptionVocabulary()
    found = beam_search(DecoderStepper(model, vocab.BOS), (images,), beam_size, max_length, vocab.EOS, n_best=n_best)
    return [[(vocab.decode(h.tokens), h.score) for h in hypotheses] for hypotheses in found]
