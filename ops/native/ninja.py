"""The native libraries outside torch's extension build (TensorRT plugins, ONNX Runtime ops, their shared
CUDA kernel objects) are each a ninja file written here and run by ninja: incremental, parallel, and rebuilt
only where a source or flag changed (the file is rewritten only when its text changes)."""

from __future__ import annotations

import subprocess
from pathlib import Path

from ..core import paths
from ..core.errors import BuildError
from .build_output import NinjaLog


def escape(path: Path | str) -> str:
    """A path as a ninja file writes it ($, space and colon escaped)."""
    return str(path).replace("$", "$$").replace(" ", "$ ").replace(":", "$:")


def run(build_dir: Path, lines: list[str], what: str, verbose: bool = False, rebuild: str | None = None) -> None:
    """Write build_dir/build.ninja from `lines` and run ninja there, showing progress as ops.native.build_output does;
    a failure raises with the failing command, the first compiler error and `rebuild` (how to try again)."""
    paths.write_if_changed(build_dir / "build.ninja", "\n".join(lines) + "\n")
    cmd = ["ninja", "-C", str(build_dir)] + (["-v"] if verbose else [])
    log = NinjaLog(verbose=verbose)
    with subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, errors="replace") as proc:
        for line in proc.stdout:
            log.feed(line)
    log.done()
    if proc.returncode != 0:
        raise BuildError(log.failure(what, rebuild or f"ninja -C {build_dir}"))
