"""Captioner: every conditioning learns to name what it sees; stepwise decoding equals the forward;
greedy, sampling and beam search run through the shared decoders and agree where they must.

The tiny task: 16 × 16 images of one circle, small or large, in one of four colours (green
circles are held out of training). An untrained model pays about ln 19 ≈ 2.9 nats per token; an
image-blind one cannot name the colour, so a greedy exact match near 1 needs the pixels, and one
that names colour and size as well as the references allow pays about 0.16 nats per token (the
references differ in whether they name the size).
"""

from __future__ import annotations

import pytest
import torch
from model_training import fit

from rnnkit.data.captions import CaptionVocabulary
from rnnkit.data.tasks import CaptionsTask
from rnnkit.decoding import SamplingOptions
from rnnkit.models import Captioner, ConditionedGenerator, ImageEncoder
from rnnkit.models.captioner import beam_captions, sample_captions
from rnnkit.models.conditioned import CONDITIONINGS
from rnnkit.training.task_trainer import greedy_exact_match, task_loss, teacher_forced

pytestmark = pytest.mark.usefixtures("one_thread")  # tiny models run fastest on one thread

TINY = CaptionsTask(image_size=16, max_shapes=1, grid=1, colours=5, kinds=1)
GREEDY = SamplingOptions(greedy=True)


def captioner(conditioning: str, cell: str = "gru", size: int = 32, num_layers: int = 1) -> Captioner:
    generator = ConditionedGenerator(
        size, TINY.output_size, cell=cell, hidden_size=size, num_layers=num_layers, conditioning=conditioning
    )
    return Captioner(ImageEncoder(size, width=8), generator)


def loss(model: Captioner, batch) -> torch.Tensor:
    return task_loss("captioning", *teacher_forced(model, "captioning", batch))


@pytest.mark.parametrize("conditioning", CONDITIONINGS)
def test_each_conditioning_learns_to_name_the_shape(conditioning):
    model = captioner(conditioning)
    validation = TINY.validation(200, seed=1)
    batches = torch.Generator().manual_seed(0)
    with torch.no_grad():
        assert loss(model.eval(), validation).item() > 2.0
    assert greedy_exact_match(model, validation) < 0.1
    fit(model, lambda: loss(model, TINY.batch(32, batches)), steps=250, lr=0.005)
    with torch.no_grad():
        assert loss(model, validation).item() < 0.25
    assert greedy_exact_match(model, validation) >= 0.98


@pytest.mark.parametrize("conditioning", CONDITIONINGS)
@pytest.mark.parametrize("cell", ["lstm", "gru"])
def test_step_by_step_equals_the_forward(cell, conditioning):
    model = captioner(conditioning, cell, size=6, num_layers=2).eval()
    images, tokens_in = torch.rand(3, 3, 16, 16), torch.randint(TINY.output_size, (5, 3))
    logits = model(images, tokens_in)  # one Recurrent call, (5, 3, V)
    state = model.start(images)
    for t, tokens in enumerate(tokens_in):
        step_logits, state = model.step(tokens, state)
        torch.testing.assert_close(step_logits, logits[t], rtol=1e-5, atol=1e-5)


def test_the_decoders_agree_on_a_trained_model():
    """Greedy equals beam search of width 1 and sampling at a tiny temperature; the best of a
    wider beam scores at least as high as greedy's caption, and its score is the caption's
    log-probability under the teacher-forced forward."""
    model = captioner("both")
    batches = torch.Generator().manual_seed(0)
    fit(model, lambda: loss(model, TINY.batch(32, batches)), steps=100, lr=0.005)
    images = TINY.validation(8, seed=2).inputs
    greedy = sample_captions(model, images, GREEDY)
    assert [best[0][0] for best in beam_captions(model, images, beam_size=1)] == greedy
    cold = SamplingOptions(temperature=1e-3)
    assert sample_captions(model, images, cold, torch.Generator().manual_seed(0)) == greedy
    vocab = CaptionVocabulary()
    for b, hypotheses in enumerate(beam_captions(model, images, beam_size=4, n_best=2)):
        (best, score), (_, second) = hypotheses
        assert score >= second
        tokens = torch.cat([torch.tensor([vocab.BOS]), vocab.encode(best), torch.tensor([vocab.EOS])])
        with torch.no_grad():
            log_probs = model(images[b : b + 1], tokens[:-1, None]).log_softmax(-1)[:, 0]  # (U - 1, V)
        torch.testing.assert_close(log_probs.gather(1, tokens[1:, None]).sum().item(), score, rtol=1e-4, atol=1e-4)
        greedy_tokens = torch.cat([vocab.encode(greedy[b]), torch.tensor([vocab.EOS])])
        with torch.no_grad():
            greedy_log_probs = model(images[b : b + 1], torch.cat([tokens[:1], greedy_tokens[:-1]])[:, None])
        greedy_score = greedy_log_probs.log_softmax(-1)[:, 0].gather(1, greedy_tokens[:, None]).sum().item()
        assert score >= greedy_score - 1e-5


@pytest.mark.parametrize(
    ("call", "message"),
    [
        pytest.param(lambda m: m.start(torch.rand(2, 1, 16, 16)),
                     r"images must be \(B, 3, H, W\) with H, W >= 4, got shape \(2, 1, 16, 16\)", id="channels"),
        pytest.param(lambda m: m(torch.rand(3, 16, 16), torch.zeros(4, 3, dtype=torch.int64)),
                     r"images must be \(B, 3, H, W\) with H, W >= 4, got shape \(3, 16, 16\)", id="batchless"),
    ],
)  # fmt: skip
def test_bad_images(call, message):
    with pytest.raises(ValueError, match=message):
        call(captioner("input", size=4))


def test_encoder_and_generator_must_agree():
    with pytest.raises(ValueError, match="the encoder's features must be the generator's condition size 8, got 6"):
        Captioner(ImageEncoder(6), ConditionedGenerator(8, 10))
