"""`python -m ops.check <op>`: walk one op down every backend and report what passed, with numbers.

Stages live in the `*_stages.py` modules of this package and register themselves with `@stage`; the
runner discovers them, so a backend adds its stages without touching the runner. Every stage returns
rows of pass / fail / skip / reference; a skip always carries the reason, and nothing is reported as passed that
did not run. `reference` is a stage that ran, and agreed, but ran the op's reference instead of a compiled kernel
(a device listed in the declaration's kernels_pending: the kernel is an ops.new skeleton not written yet); it is
not a failure, and the summary counts it apart from the kernels that passed."""

from __future__ import annotations

import importlib
import pkgutil
import tempfile
import threading
import time
import traceback
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass, field
from pathlib import Path

PASS, FAIL, SKIP, REFERENCE = "pass", "fail", "skip", "reference"


def pending_note(decl, device: str) -> str:
    """The detail prefix of a stage that ran the reference on `device` instead of its pending kernel."""
    return (
        f"ran the REFERENCE, not the kernel ({device} kernel pending: write the body in "
        f"{decl.kernel_dir.parent.name}/{decl.kernel_dir.name}/{decl.name}_{'cpu.cpp' if device == 'cpu' else 'cuda.cu'}, then drop "
        f"{device!r} from kernels_pending)"
    )


@dataclass
class StageResult:
    stage: str
    status: str  # pass | fail | skip | reference
    detail: str = ""
    metrics: dict = field(default_factory=dict)
    seconds: float = 0.0

    def to_json(self) -> dict:
        return asdict(self)


@dataclass
class CheckContext:
    """Shared by the stages of one op: a scratch directory and artefacts (e.g. exported models) that a
    later stage reuses."""

    workdir: Path
    artifacts: dict = field(default_factory=dict)
    quick: bool = False


@dataclass(frozen=True)
class Stage:
    name: str
    order: int
    fn: Callable


_STAGES: list[Stage] = []
_PREPARERS: list[Callable] = []
_BACKGROUND: list[threading.Thread] = []


def stage(name: str, order: int):
    """Register a stage: fn(op, ctx) -> StageResult | Iterable[StageResult]."""

    def decorate(fn):
        _STAGES.append(Stage(name, order, fn))
        return fn

    return decorate


def preparer(fn):
    """Register fn(ops, only, quick) -> threading.Thread | None: work a stage module starts before the checks of
    `ops` begin and does on another thread (a build its later stages need), so it overlaps the earlier stages
    instead of following them. The stages that need it wait for it; `settle()` waits for all of it."""
    _PREPARERS.append(fn)
    return fn


def prepare(ops, only: Iterable[str] = (), quick: bool = False) -> None:
    """Start the background work of every stage module for a run over `ops` (python -m ops.check does)."""
    stages()  # imports the stage modules, which register their preparers
    for fn in _PREPARERS:
        thread = fn(list(ops), tuple(only), quick)
        if thread is not None:
            _BACKGROUND.append(thread)


def settle() -> None:
    """Wait for the background work `prepare` started (before printing, so its output never splits a table)."""
    while _BACKGROUND:
        _BACKGROUND.pop().join()


def stages() -> list[Stage]:
    for module in pkgutil.iter_modules(__path__):
        if module.name.endswith("_stages"):
            importlib.import_module(f"{__name__}.{module.name}")
    return sorted(_STAGES, key=lambda s: (s.order, s.name))


def run_stage(s: Stage, op, ctx: CheckContext) -> list[StageResult]:
    start = time.perf_counter()
    try:
        out = s.fn(op, ctx)
        rows = [out] if isinstance(out, StageResult) else list(out)
    except Exception as e:  # a crashing stage is a failed stage, reported with where it broke
        tb = traceback.extract_tb(e.__traceback__)[-1]
        rows = [StageResult(s.name, FAIL, f"{type(e).__name__}: {e} (at {Path(tb.filename).name}:{tb.lineno})")]
    elapsed = (time.perf_counter() - start) / max(len(rows), 1)
    for r in rows:
        r.seconds = round(elapsed, 3)
    return rows


def check_op(op, only: Iterable[str] = (), quick: bool = False) -> list[StageResult]:
    only = tuple(only)
    with tempfile.TemporaryDirectory(prefix=f"opforge-check-{op.decl.name}-") as tmp:
        ctx = CheckContext(Path(tmp), quick=quick)
        rows: list[StageResult] = []
        for s in stages():
            if only and not any(s.name.startswith(prefix) for prefix in only):
                continue
            rows.extend(run_stage(s, op, ctx))
        return rows
