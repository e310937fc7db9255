"""The native libraries outside torch's extension build (TensorRT plugins, ONNX Runtime ops, their shared
CUDA kernel objects) are each a ninja file written here and run by ninja: incremental, parallel, and rebuilt
only where a source or flag changed (the file is rewritten only when its text changes)."""

from __future__ import annotations

import subprocess
from pathlib import Path

from . import paths
from .errors import OpforgeError


def escape(path: Path | str) -> str:
    """A path as a ninja file writes it ($, space and colon escaped)."""
    return str(path).replace("$", "$$").replace(" ", "$ ").replace(":", "$:")


def run(build_dir: Path, lines: list[str], what: str, verbose: bool = False) -> None:
    """Write build_dir/build.ninja from `lines` and run ninja there; a failure raises with the log's tail,
    introduced as "<what> failed"."""
    paths.write_if_changed(build_dir / "build.ninja", "\n".join(lines) + "\n")
    cmd = ["ninja", "-C", str(build_dir)] + (["-v"] if verbose else [])
    done = subprocess.run(cmd, capture_output=not verbose, text=True)
    if done.returncode != 0:
        tail = (done.stdout or "")[-6000:] + (done.stderr or "")[-2000:]
        raise OpforgeError(f"{what} failed (`{' '.join(cmd)}`):\n{tail}")
