"""Building and loading the C++ time loops of the fused kernels (``rnnkit/engine/csrc/*.cpp``).

The sources are compiled together on first use with ``torch.utils.cpp_extension`` into one
library that registers its functions as ``torch.ops.rnnkit.*`` (ATen code, so CPU and CUDA
tensors both work), and cached by torch in its extensions directory (``TORCH_EXTENSIONS_DIR``,
by default ``~/.cache/torch_extensions``): a later process loads it in a fraction of a second.
Where no compiler is present, or the build fails, the reason is logged once and the families
run their Python implementations of the same equations. Setting ``RNNKIT_FUSED_BACKEND=python``
skips the build.
"""

from __future__ import annotations

import functools
import hashlib
import logging
import os
import time
from pathlib import Path
from typing import Any

import torch

log = logging.getLogger(__name__)

SOURCES = sorted((Path(__file__).resolve().parents[1] / "csrc").glob("*.cpp"))
HEADERS = sorted((Path(__file__).resolve().parents[1] / "csrc").glob("*.h"))
BACKEND_VARIABLE = "RNNKIT_FUSED_BACKEND"
LIBRARY = "rnnkit_fused"
# A build takes a minute or two; a lock older than this was left by a build that was killed.
STALE_LOCK_SECONDS = 15 * 60


@functools.cache
def ops() -> Any | None:
    """``torch.ops.rnnkit`` with the compiled kernels, or None to use the Python kernels."""
    if os.environ.get(BACKEND_VARIABLE, "") == "python" or not SOURCES:
        return None
    try:
        from torch.utils import cpp_extension

        remove_stale_lock(Path(cpp_extension._get_build_directory(LIBRARY, False)))
        cpp_extension.load(
            name=LIBRARY,
            sources=[str(source) for source in SOURCES],
            # -fopenmp: at::parallel_for splits pointwise loops over the cores only with OpenMP.
            # -march=native: the library is built and cached on the machine that runs it.
            # -ffp-contract=off: a * b + c is fused into one rounding only where the source says so
            # (at::vec::fmadd). GCC otherwise fuses wherever its inlining lets it, so that adding a
            # caller of a kernel's step function changed the step's rounding (float32 outputs by
            # 5e-7 in a saturated test); unfused, the kernels also round as torch's separate ops do.
            extra_cflags=["-O3", "-march=native", "-fopenmp", "-ffp-contract=off", _headers_digest()],
            extra_ldflags=["-fopenmp"],
            is_python_module=False,
            verbose=False,
        )
    except (OSError, RuntimeError, ImportError, SystemExit) as error:  # no compiler, failed build
        log.warning("the fused C++ kernels could not be built (%s); using their Python versions", _first_line(error))
        return None
    return torch.ops.rnnkit


def remove_stale_lock(build_directory: Path) -> None:
    """Delete the ``lock`` file a killed build left in ``build_directory``, if it is old.

    torch's loader makes that file while it builds and waits, without a time limit, for it to go
    before it builds or loads; a process killed mid-build leaves it behind, and every later
    import of the kernels would then wait forever."""
    lock = build_directory / "lock"
    try:
        age = time.time() - lock.stat().st_mtime
    except FileNotFoundError:
        return
    if age > STALE_LOCK_SECONDS:
        log.warning("removing %s, left %.0f minutes ago by a build that did not finish", lock, age / 60)
        lock.unlink(missing_ok=True)


def _headers_digest() -> str:
    """A define naming the headers' contents: torch rebuilds a cached library when its sources or
    flags change, and the headers are neither, so their digest rides along as a flag."""
    digest = hashlib.sha256(b"".join(header.read_bytes() for header in HEADERS)).hexdigest()[:16]
    return f"-DRNNKIT_HEADERS_DIGEST={digest}"


def _first_line(error: BaseException) -> str:
    text = str(error).strip()
    return text.splitlines()[0] if text else type(error).__name__
