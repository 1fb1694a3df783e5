"""Echo state networks side by side with ReservoirPy: Mackey-Glass, the same reservoirs, fit time and error.

The task is the one of ``benchmarks/mackey_glass.py`` (``rnnkit.training.forecasting``): a reservoir
with output feedback and a constant input of 0.02 is driven teacher-forced over --train steps of the
squashed Mackey-Glass series, a ridge readout over [reservoir state; input] with a bias is fitted on
the steps after the washout, and the network then runs free for 84 steps (NRMSE84: the error at the
last step over the signal's standard deviation, root-mean-square over the trials).

Both libraries get the *same* matrices: rnnkit draws the reservoir (W with about 10 nonzeros per
row, scaled to the spectral radius; W_in, W_fb), and ReservoirPy is handed them, W as a SciPy CSR
matrix (the format of its own sparse initialisers), in an ``ESN(feedback=True,
input_to_readout=True)`` with ``Ridge(ridge)``: the same equations (its Ridge also leaves the bias
unregularised), so the errors must agree, and the fit times compare implementations alone.

Fit time is what each library's ``fit`` takes: the teacher-forced run of the reservoir and the
readout's solution (rnnkit also computes the training error). Contenders alternate, each fit of
each trial --reps times, each after a pause that lets the other's threads go idle; the table gives
the median.

ReservoirPy is not a dependency of rnnkit; install it in the benchmark environment first:

    pip install reservoirpy==0.4.2
    python benchmarks/esn_vs_reservoirpy.py                       # 100, 500 and 1000 units, 5 trials
    python benchmarks/esn_vs_reservoirpy.py --sizes 1000 --trials 2
"""

from __future__ import annotations

import argparse
import gc
import math
import os
import statistics
import sys
import time
from collections.abc import Callable

# Transparent huge pages for torch's large buffers, as NumPy (hence ReservoirPy) has for its own by
# default (numpy._core.multiarray._get_madvise_hugepage()); torch reads this once, before its first
# allocation. Without it every fresh (T, B, N) buffer of the fit is first touched 4 KB page by page:
# 16 of the 48 ms of a 1000-unit reservoir run, measured.
os.environ.setdefault("THP_MEM_ALLOC_ENABLE", "1")

import torch  # noqa: E402

from cells import machine  # noqa: E402
from rnnkit.models.esn import EchoStateNetwork  # noqa: E402
from rnnkit.training.forecasting import ForecastSetup, forecasting_esn, mackey_glass_task  # noqa: E402

try:
    import numpy as np
    import reservoirpy
    import scipy
    import scipy.sparse
    from reservoirpy import ESN as ReservoirPyESN
    from reservoirpy.nodes import Reservoir as ReservoirPyReservoir
    from reservoirpy.nodes import Ridge as ReservoirPyRidge
except ImportError as error:  # not a dependency of rnnkit
    sys.exit(f"this benchmark needs ReservoirPy: pip install reservoirpy==0.4.2 ({error})")

CONNECTIONS_PER_UNIT = 10  # Jaeger's 1% of 1000 units
# A pause before each timed fit: after its work, a BLAS's or OpenMP's threads spin for a while, and
# in one process the two libraries' threads (OpenBLAS under NumPy, OpenMP and MKL under torch) then
# compete for the cores; here a NumPy product made torch's next operations up to 8x slower.
QUIET_SECONDS = 0.5


def reservoirpy_twin(esn: EchoStateNetwork, ridge: float) -> ReservoirPyESN:
    """A ReservoirPy ESN with ``esn``'s reservoir matrices, untrained."""
    cell = esn.reservoir.cell
    reservoir = ReservoirPyReservoir(
        W=scipy.sparse.csr_matrix(cell.weight_hh.to_dense().numpy()),
        Win=cell.weight_ih.numpy().copy(),  # [W_in W_fb]: ReservoirPy appends the feedback to the input
        bias=cell.bias_ih.numpy().copy(),
        lr=esn.reservoir.leak,
    )  # fmt: skip
    return ReservoirPyESN(reservoir=reservoir, readout=ReservoirPyRidge(ridge=ridge), feedback=True,
                          input_to_readout=True)


def timed(fit: Callable[[], object]) -> tuple[float, object]:
    """``fit``'s wall time and result, with Python's cyclic garbage collector off while it runs, as
    ``timeit`` does: the objects of earlier fits otherwise make a collection that falls into a
    timed fit cost tens of milliseconds (up to 240 ms were measured)."""
    gc.collect()
    time.sleep(QUIET_SECONDS)
    gc.disable()
    try:
        started = time.perf_counter()
        result = fit()
        return time.perf_counter() - started, result
    finally:
        gc.enable()


def compare(setup: ForecastSetup, reps: int) -> tuple[list[float], list[float], float, float]:
    """Fit times of rnnkit and ReservoirPy (seconds, one per rep) and their NRMSE84 on one trial."""
    signal, inputs, targets = mackey_glass_task(setup)
    train, washout = setup.train, setup.washout
    u, y = inputs.view(-1, 1).numpy(), targets.view(-1, 1).numpy()
    esn = forecasting_esn(setup)
    ours, theirs = [], []
    for _ in range(reps):
        seconds, (_, state) = timed(lambda: esn.fit(inputs[:train], targets[:train], washout=washout,
                                                    ridges=setup.ridges))
        ours.append(seconds)
        twin = reservoirpy_twin(esn, setup.ridges[0])  # a fresh one: its fit continues from its last state
        seconds, _ = timed(lambda: twin.fit(u[:train], y[:train], warmup=washout))
        theirs.append(seconds)
    our_forecast = esn.generate(inputs[train:], state, targets[train - 1]).view(-1)
    their_forecast = torch.from_numpy(np.asarray(twin.run(u[train:]))).view(-1)
    scale = signal.std().item()
    return ours, theirs, abs(our_forecast[-1].item() - signal[-1].item()) / scale, \
        abs(their_forecast[-1].item() - signal[-1].item()) / scale


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", type=int, nargs="+", default=[100, 500, 1000])
    parser.add_argument("--trials", type=int, default=5, help="independent series and reservoirs per size")
    parser.add_argument("--reps", type=int, default=3, help="timed fits per trial and library")
    parser.add_argument("--ridge", type=float, default=1e-10, help="the readouts' regularisation, for both")
    parser.add_argument("--train", type=int, default=3000)
    parser.add_argument("--washout", type=int, default=1000)
    args = parser.parse_args()
    print(f"Machine: {machine(torch.device('cpu'))}")
    print(f"ReservoirPy {reservoirpy.__version__}, NumPy {np.__version__}, SciPy {scipy.__version__}; "
          f"THP_MEM_ALLOC_ENABLE={os.environ['THP_MEM_ALLOC_ENABLE']}")
    print(f"Command: python benchmarks/esn_vs_reservoirpy.py {' '.join(sys.argv[1:])}".rstrip())
    print("\n| units | density | rnnkit fit | ReservoirPy fit | ReservoirPy ÷ rnnkit | rnnkit NRMSE84 | "
          "ReservoirPy NRMSE84 |")
    print("|---:|---:|---:|---:|---:|---:|---:|")
    for size in args.sizes:
        density = min(1.0, CONNECTIONS_PER_UNIT / size)
        ours, theirs, our_errors, their_errors = [], [], [], []
        for seed in range(args.trials):
            setup = ForecastSetup(size=size, density=density, ridges=(args.ridge,), train=args.train,
                                  washout=args.washout, seed=seed)
            mine, other, my_error, other_error = compare(setup, args.reps)
            ours += mine
            theirs += other
            our_errors.append(my_error)
            their_errors.append(other_error)
        our_ms, their_ms = 1000 * statistics.median(ours), 1000 * statistics.median(theirs)
        rms = lambda errors: math.sqrt(statistics.mean(e * e for e in errors))  # noqa: E731
        print(f"| {size} | {density:g} | {our_ms:.1f} ms | {their_ms:.1f} ms | {their_ms / our_ms:.2f} | "
              f"{rms(our_errors):.2e} | {rms(their_errors):.2e} |", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
