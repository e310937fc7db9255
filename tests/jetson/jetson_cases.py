"""Helpers of the Jetson tests (conftest.py holds the fixtures)."""

from __future__ import annotations

QUICK_OP = "opforge::scaled_gelu"


def x86_library(op_ids, name: str):
    """This machine's ORT library for some ops (CPU kernels only), in its own build directory."""
    from ops.core.paths import build_root
    from ops.ort.build import build, library_decls

    decls = [d for d in library_decls("ops.library") if d.id in op_ids]
    return build("ops.library", decls=decls, build_dir=build_root() / "jetson" / "x86" / name, cuda=False).library
