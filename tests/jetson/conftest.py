"""Jetson: the artefacts cross-built for aarch64 + sm_87 (ops/cross), checked here under qemu user mode.

The quick checks (one op, a small model) run in every test run; tests marked `jetson_full` (every op, the
segmentation example, the fuzz) run only with OPFORGE_JETSON_FULL=1, which `make jetson` sets. A missing
tool skips with the reason and the fix (python -m ops.cross.toolchain, or `make jetson`, installs them)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from jetson_cases import QUICK_OP


def pytest_configure(config):
    config.addinivalue_line("markers", "jetson_full: the full emulated Jetson checks (make jetson)")


def pytest_collection_modifyitems(config, items):
    if os.environ.get("OPFORGE_JETSON_FULL") == "1":
        return
    skip = pytest.mark.skip(reason="full Jetson check: runs with `make jetson` (OPFORGE_JETSON_FULL=1)")
    for item in items:
        if "jetson_full" in item.keywords:
            item.add_marker(skip)


def _require(*components):
    from ops.cross import emulate, toolchain

    st = toolchain.status()
    gone = [f"{c}: {st.missing[c]}" for c in components if c not in st.found]
    why = emulate.unavailable()
    if why:
        gone.append(why)
    if gone:
        pytest.skip("; ".join(gone))
    return st


@pytest.fixture(scope="session")
def toolchain_status():
    return _require("g++-aarch64-linux-gnu", "qemu-user", "cuda12", "onnxruntime")


def _quick_dir() -> Path:
    from ops.core.paths import build_root

    return build_root() / "jetson" / "quick" / "ops.library"


@pytest.fixture(scope="session")
def quick_build(toolchain_status):
    """The quick variant: one op (scaled_gelu), JetPack 6, into build/jetson/quick (the full build's
    directory is left alone)."""
    from ops.cross.build import build

    return build(
        "ops.library", "jetson-orin", None, "6", [QUICK_OP], directory=_quick_dir() / "jetpack6", log=lambda *a: None
    )


@pytest.fixture(scope="session")
def full_build(toolchain_status):
    """Every op of opforge's library, JetPack 6, into build/jetson/ops.library/jetpack6 (make jetson)."""
    from ops.cross.build import build

    return build("ops.library", "jetson-orin", None, "6", None, log=lambda *a: None)
