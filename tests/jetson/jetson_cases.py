"""Helpers of the Jetson tests (conftest.py holds the fixtures)."""

from __future__ import annotations

QUICK_OP = "opforge::scaled_gelu"


def x86_library(op_ids, name: str):
    """This machine's ORT library for some ops (CPU kernels only), in its own build directory."""
    from ops.core.paths import build_root
    from ops.ort.build import build, library_decls

    decls = [d for d in library_decls("ops.library") if d.id in op_ids]
    return build("ops.library", decls=decls, build_dir=build_root() / "jetson" / "x86" / name, cuda=False).library


def record(check: str, ok: bool, detail: str, **extra) -> None:
    """ops.cross.verify.record under a lock: the slow Jetson test (the CMake cross-build) may run in the beside
    process (tests/slow_tests.py) while this one records, and record() reads, updates and rewrites one file."""
    import fcntl

    from ops.cross import verify

    lock = verify.results_path().with_suffix(".lock")
    lock.parent.mkdir(parents=True, exist_ok=True)
    with open(lock, "w") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        verify.record(check, ok, detail, **extra)
