"""Op packages: where declared ops live, and what is built for them.

An *op package* is a Python package whose modules declare ops with `@register_op`. Every op belongs to the
package of the module that declares it. opforge's own ops are the package `ops.library`; a user's project
has its own, e.g. `mypkg.ops`, whose `__init__.py` says

    import ops
    ops.op_package(__name__)          # import this package's declarations, load its compiled kernels

Each op package has its own artefacts, named after it and kept apart from every other package's:
- the torch extension `<package>._C` (opforge's is `ops._C`) with its build record beside it,
  `_C.build.json` (torch version, CUDA or not, a fingerprint per op);
- the TensorRT plugin library `lib<package with dots as _>_trt_plugins.so` (opforge's is
  `libopforge_trt_plugins.so`);
- the ONNX Runtime custom-op library `lib<package with dots as _>_ort_ops.so` (opforge's is
  `libopforge_ort_ops.so`);
- generated glue and objects under `<build root>/opforge/<package>/` (see ops.core.paths.build_root).

Installed op packages announce themselves with an entry point in the group `opforge.ops` (the value is the
package's import name); `python -m ops.check --all`, `ops.export` and `ops.build` load those
(ops.core.discovery). This module is the model only: names and places, no imports of declarations.
"""

from __future__ import annotations

import importlib.util
import json
import sys
from dataclasses import dataclass
from pathlib import Path

from . import paths
from .errors import OpforgeError

_PACKAGES: dict[str, OpPackage] = {}


@dataclass(frozen=True)
class OpPackage:
    name: str  # import name of the package holding the declarations, e.g. "mypkg.ops"
    extension: str  # import name of its compiled kernels, e.g. "mypkg.ops._C"
    plugin_library: str  # stem of its TensorRT plugin library: lib<stem>.so

    @property
    def ort_library(self) -> str:
        """Stem of its ONNX Runtime custom-op library, lib<stem>.so, named like the TensorRT one:
        libopforge_ort_ops.so beside libopforge_trt_plugins.so, libmypkg_ops_ort_ops.so for mypkg.ops."""
        return self.plugin_library.removesuffix("_trt_plugins") + "_ort_ops"

    @property
    def directory(self) -> Path:
        return _package_dir(self.name)

    @property
    def extension_dir(self) -> Path:
        """The directory the extension module (and its build record) is placed in."""
        parent = self.extension.rpartition(".")[0]
        return self.directory if parent == self.name else _package_dir(parent)

    @property
    def extension_leaf(self) -> str:
        return self.extension.rpartition(".")[2]

    @property
    def build_record(self) -> Path:
        return self.extension_dir / f"{self.extension_leaf}.build.json"

    @property
    def build_dir(self) -> Path:
        """Generated glue, objects and plugin libraries of this package."""
        return paths.build_root(self.directory) / "opforge" / self.name


def _package_dir(name: str) -> Path:
    module = sys.modules.get(name)
    locations = list(getattr(module, "__path__", []) or [])
    if not locations:
        spec = importlib.util.find_spec(name)
        locations = list(spec.submodule_search_locations or []) if spec else []
    if not locations:
        raise OpforgeError(
            f"{name!r} is not an importable package: an op package is a directory with an "
            "__init__.py whose modules declare ops"
        )
    return Path(locations[0]).resolve()


def _default(name: str) -> OpPackage:
    return OpPackage(name, f"{name}._C", f"{name.replace('.', '_')}_trt_plugins")


def package(name: str) -> OpPackage:
    """The op package `name` (registered by op_package, or with the default artefact names)."""
    return _PACKAGES.get(name) or _default(name)


def register(pkg: OpPackage) -> OpPackage:
    known = _PACKAGES.get(pkg.name)
    if known is not None and known != pkg:
        raise OpforgeError(f"op package {pkg.name!r} is declared twice with different options: {known} and {pkg}")
    _PACKAGES[pkg.name] = pkg
    return pkg


def registered() -> list[str]:
    return sorted(_PACKAGES)


def built_op_ids(name: str | None) -> set:
    """Op ids in the package's build record (one small JSON file; read only when kernel sources are missing)."""
    if not name:
        return set()
    try:
        return set(json.loads(package(name).build_record.read_text()).get("ops", {}))
    except (OSError, ValueError, OpforgeError):
        return set()


def partial_build(name: str | None) -> frozenset[str] | None:
    """The op ids a partial build of the package's torch extension holds (`python -m ops.build --ops ...`, what
    `make demo` runs), or None when its build is of every op (or there is none). The package's TensorRT plugin
    and ONNX Runtime libraries are then built for the same ops, until a full build."""
    if not name:  # an op declared outside any op package
        return None
    try:
        record = json.loads(package(name).build_record.read_text())
    except (OSError, ValueError, OpforgeError):
        return None
    return frozenset(record.get("ops", {})) if record.get("partial") else None


def narrowed(decls: list, name: str) -> list:
    """The declarations of package `name` that its native libraries hold: `decls` less the ops a partial build
    of its torch extension left out."""
    built = partial_build(name)
    return list(decls) if built is None else [d for d in decls if d.id in built]


def left_out(op_id: str, name: str | None) -> str | None:
    """Why op `op_id` of package `name` has no compiled code: a partial build left it out (None otherwise)."""
    built = partial_build(name)
    if built is None or op_id in built:
        return None
    pkg = package(name)
    rebuild = "python -m ops.build" + ("" if name == "ops.library" else f" --package {name}")
    return (
        f"{op_id} is not in this build of {pkg.extension}: a partial build of {len(built)} ops "
        f"({', '.join(sorted(built))}; python -m ops.build --ops, what make demo runs). Build every op: {rebuild}"
    )
