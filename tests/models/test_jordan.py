"""JordanNetwork: the parallel teacher-forced forward is the step-by-step recurrence, the free run
feeds back its own outputs, and teacher-forced training transfers to the free run.

Every reference here is written from the equations, h_t = tanh(W x_t + R y_{t-1} + b),
a_t = V h_t + c, with the network's weights.
"""

from __future__ import annotations

import pytest
import torch
from model_training import fit
from torch import Tensor
from torch.nn.functional import binary_cross_entropy_with_logits

from rnnkit.models import JordanNetwork
from rnnkit.models.jordan import OUTPUT_ACTIVATIONS

pytestmark = pytest.mark.usefixtures("one_thread")  # tiny models run fastest on one thread

STEPS, BATCH, INPUT, OUTPUT, HIDDEN = 7, 3, 4, 2, 5


def scores_by_equation(net: JordanNetwork, x_t: Tensor, previous: Tensor) -> Tensor:
    W, b = net.input_to_hidden.weight, net.input_to_hidden.bias
    R = net.output_to_hidden.weight
    V, c = net.hidden_to_output.weight, net.hidden_to_output.bias
    return torch.tanh(x_t @ W.T + previous @ R.T + b) @ V.T + c


@pytest.mark.parametrize("given_y0", [False, True], ids=["zero_y0", "given_y0"])
def test_teacher_forced_steps_equal_the_parallel_forward(given_y0):
    net = JordanNetwork(INPUT, OUTPUT, HIDDEN)
    x, targets = torch.randn(STEPS, BATCH, INPUT), torch.rand(STEPS, BATCH, OUTPUT)
    y0 = torch.rand(BATCH, OUTPUT) if given_y0 else None
    parallel = net(x, targets, y0)
    previous = torch.zeros(BATCH, OUTPUT) if y0 is None else y0
    for t in range(STEPS):
        torch.testing.assert_close(parallel[t], scores_by_equation(net, x[t], previous), rtol=0, atol=1e-6)
        previous = targets[t]  # teacher forcing: the next step reads this step's target


@pytest.mark.parametrize("activation", OUTPUT_ACTIVATIONS)
def test_free_run_feeds_back_its_own_outputs(activation):
    net = JordanNetwork(INPUT, OUTPUT, HIDDEN, output_activation=activation)
    x, y0 = torch.randn(STEPS, BATCH, INPUT), torch.rand(BATCH, OUTPUT)
    scores, outputs = net.run_free(x, y0)
    output = y0
    for t in range(STEPS):
        expected = scores_by_equation(net, x[t], output)
        torch.testing.assert_close(scores[t], expected, rtol=0, atol=1e-6)
        output = net.activation(expected)
        torch.testing.assert_close(outputs[t], output, rtol=0, atol=1e-6)
    # And the free run is the teacher-forced forward with its own outputs as the targets.
    torch.testing.assert_close(net(x, outputs, y0), scores, rtol=0, atol=1e-6)


def test_activations():
    scores = torch.randn(3, 4)
    expected = {
        "identity": scores, "sigmoid": torch.sigmoid(scores), "tanh": torch.tanh(scores),
        "softmax": torch.softmax(scores, dim=-1),
    }
    for name, value in expected.items():
        torch.testing.assert_close(JordanNetwork(1, 4, 2, output_activation=name).activation(scores), value)


def parity_task(batch: int, generator: torch.Generator) -> tuple[Tensor, Tensor]:
    """Bits ``(T, B, 1)`` and their running parity ``y_t = x_t XOR y_{t-1}``, y_0 = 0."""
    bits = torch.randint(2, (20, batch, 1), generator=generator).float()
    return bits, bits.cumsum(0) % 2


def test_learns_running_parity_teacher_forced_and_runs_it_free():
    """The parity is exactly what the fed-back output must remember: trained in parallel with
    teacher forcing, the net then computes it alone over 20 steps."""
    net = JordanNetwork(1, 1, 16)
    bits, parity = parity_task(200, torch.Generator().manual_seed(1))

    def free_accuracy() -> float:
        with torch.no_grad():
            return (net.run_free(bits)[1].round() == parity).float().mean().item()

    assert free_accuracy() < 0.7  # chance is 0.5
    batches = torch.Generator().manual_seed(0)

    def loss() -> Tensor:
        x, y = parity_task(32, batches)
        return binary_cross_entropy_with_logits(net(x, y), y)

    with torch.no_grad():
        assert binary_cross_entropy_with_logits(net(bits, parity), parity).item() > 0.5
    fit(net, loss, steps=300, lr=0.05)
    with torch.no_grad():
        assert binary_cross_entropy_with_logits(net(bits, parity), parity).item() < 0.05
    assert free_accuracy() > 0.99


@pytest.mark.parametrize(
    ("call", "message"),
    [
        pytest.param(lambda n: n(torch.zeros(5, 2, 3), torch.zeros(5, 2, OUTPUT)), rf"inputs must be \(T, B, {INPUT}\), got shape \(5, 2, 3\)", id="inputs"),
        pytest.param(lambda n: n(torch.zeros(5, 2, INPUT), torch.zeros(4, 2, OUTPUT)), rf"targets must have shape \(5, 2, {OUTPUT}\), got \(4, 2, {OUTPUT}\)", id="targets"),
        pytest.param(lambda n: n.run_free(torch.zeros(5, 2, INPUT), torch.zeros(3, OUTPUT)), rf"initial_output must have shape \(2, {OUTPUT}\), got \(3, {OUTPUT}\)", id="y0"),
    ],
)
def test_bad_input(call, message):
    with pytest.raises(ValueError, match=message):
        call(JordanNetwork(INPUT, OUTPUT, HIDDEN))


def test_bad_activation():
    with pytest.raises(ValueError, match="output_activation must be one of identity, sigmoid, tanh, softmax, got 'relu'"):
        JordanNetwork(INPUT, OUTPUT, HIDDEN, output_activation="relu")
