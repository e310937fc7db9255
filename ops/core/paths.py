"""Where opforge's own files are, and where builds go, in a source checkout and in an installed wheel.

A source checkout keeps the kernel API and the built-in kernels in `<root>/csrc` and the TensorRT adapter
in `<root>/plugins`; a wheel carries the same trees as package data, `ops/csrc` and `ops/plugins`
(setup.py copies them). Every other module asks here instead of assuming the checkout layout.

Build outputs (generated glue, object files, plugin libraries, fetched headers) go under a *build root*:
`OPFORGE_BUILD_DIR` if set; else `build/` of the project that holds the package being built (the
nearest ancestor directory with a pyproject.toml or setup.py, outside site-packages); else a per-user
cache, `~/.cache/opforge` (`XDG_CACHE_HOME` honoured), so an installed opforge never writes into
site-packages.
"""

from __future__ import annotations

import os
from pathlib import Path

PACKAGE_DIR = Path(__file__).resolve().parent.parent  # ops/ (this file is ops/core/paths.py)
_SOURCE_ROOT = PACKAGE_DIR.parent


def _first_with(*candidates: Path, probe: str) -> Path:
    return next((c for c in candidates if (c / probe).exists()), candidates[-1])


def csrc_dir() -> Path:
    """The directory holding `opforge/kernel_api.h` (and the built-in ops' kernels)."""
    return _first_with(PACKAGE_DIR / "csrc", _SOURCE_ROOT / "csrc", probe="opforge/kernel_api.h")


def plugins_dir() -> Path:
    """The generic TensorRT adapter sources."""
    return _first_with(PACKAGE_DIR / "plugins", _SOURCE_ROOT / "plugins", probe="opforge_trt_plugin.cpp")


def is_site_install(path: Path) -> bool:
    return any(part in ("site-packages", "dist-packages") for part in Path(path).parts)


def project_root(start: Path) -> Path | None:
    """The nearest ancestor of `start` with a pyproject.toml or setup.py, unless it is an installed package."""
    start = Path(start).resolve()
    if is_site_install(start):
        return None
    for d in (start, *start.parents):
        if (d / "pyproject.toml").is_file() or (d / "setup.py").is_file():
            return d
    return None


def user_cache() -> Path:
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "opforge"


def build_root(start: Path | None = None) -> Path:
    """Where builds for the package at `start` (default: opforge itself) go."""
    if os.environ.get("OPFORGE_BUILD_DIR"):
        return Path(os.environ["OPFORGE_BUILD_DIR"])
    root = project_root(start or PACKAGE_DIR)
    return root / "build" if root is not None else user_cache()


def relative_to_project(path: Path) -> str:
    """`path` relative to its project root when it has one (so generated text does not change when a
    checkout moves), else absolute."""
    path = Path(path).resolve()
    root = project_root(path.parent)
    return str(path.relative_to(root)) if root is not None and path.is_relative_to(root) else str(path)


def write_if_changed(path: Path, text: str) -> Path:
    """Write generated text, keeping the mtime of an unchanged file so ninja rebuilds only what changed."""
    path.parent.mkdir(parents=True, exist_ok=True)
    if not path.exists() or path.read_text() != text:
        path.write_text(text)
    return path


def kernel_search_dirs(origin: Path | None) -> list[Path]:
    """Where 'auto' looks for csrc/: the declaring module's directory, each enclosing package directory, and
    the project root of a source checkout (never site-packages itself)."""
    if origin is None:
        return []
    origin = Path(origin).resolve()
    dirs = [origin]
    d = origin
    while (d / "__init__.py").is_file() and (d.parent / "__init__.py").is_file():
        d = d.parent
        dirs.append(d)
    root = project_root(origin)
    if root is not None and root not in dirs:
        dirs.append(root)
    return dirs
