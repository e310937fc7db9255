"""Finding and importing op packages (see ops.core.packages for what an op package is).

ops.op_package(__name__)      # in an op package's __init__.py: declare its ops, load its kernels
load_installed()              # every installed package with an `opforge.ops` entry point
import_package("mypkg.ops")   # one named on a command line
"""

from __future__ import annotations

import importlib
import importlib.metadata
import pkgutil
import sys
from collections.abc import Callable
from pathlib import Path

from .errors import OpforgeError
from .packages import OpPackage, package, register, registered
from .registry import all_ops, ops_in

ENTRY_POINT_GROUP = "opforge.ops"
# What backends do when an op package has declared its ops (ops.torch loads its compiled kernels): they add
# themselves here when imported, so the core never imports a backend.
_ON_OP_PACKAGE: list[Callable[[OpPackage], None]] = []


def on_op_package(hook: Callable[[OpPackage], None]) -> Callable[[OpPackage], None]:
    """Call `hook(package)` for every op package made from now on with `op_package(..., load=True)`."""
    _ON_OP_PACKAGE.append(hook)
    return hook


def op_package(
    name: str, *, extension: str | None = None, plugin_library: str | None = None, load: bool = True
) -> OpPackage:
    """Make `name` an op package: import each of its modules (each declares its ops on import) and load its
    compiled kernels. Call it from the package's `__init__.py` as `ops.op_package(__name__)`.

    `extension` (default `<name>._C`) and `plugin_library` (default `<name with dots as _>_trt_plugins`) name
    its artefacts. A build problem (kernels not built, stale, built for another torch) never fails here:
    calling a compiled op then raises ExtensionError with the rebuild command."""
    default = package(name)
    pkg = register(OpPackage(name, extension or default.extension, plugin_library or default.plugin_library))
    for module in pkgutil.iter_modules([str(pkg.directory)]):
        if not module.name.startswith("_"):
            importlib.import_module(f"{name}.{module.name}")
    if load:
        for hook in _ON_OP_PACKAGE:
            hook(pkg)
    return pkg


def packages() -> list[OpPackage]:
    """Every op package registered or holding a declared op in this process."""
    names = set(registered()) | {op.decl.package for op in all_ops() if op.decl.package}
    return [package(n) for n in sorted(names)]


def load_installed() -> list[str]:
    """Import every op package installed with an `opforge.ops` entry point. Returns their names.

    A package that fails to import is an error naming the package and its distribution: silently dropping
    a user's ops would make `ops.check --all` report success for less than was asked."""
    loaded = []
    for ep in importlib.metadata.entry_points(group=ENTRY_POINT_GROUP):
        try:
            importlib.import_module(ep.value)
        except Exception as e:
            dist = getattr(ep.dist, "name", "?")
            raise OpforgeError(
                f"op package {ep.value!r} (entry point {ep.name!r} of {dist}) failed to import: {type(e).__name__}: {e}"
            ) from e
        loaded.append(ep.value)
    return loaded


def load_for_cli(names) -> None:
    """What a CLI knows about: every installed op package, then those named with --package."""
    load_installed()
    for name in names:
        import_package(name)


def import_package(name: str) -> OpPackage:
    """Import an op package named on a command line (the current directory is on sys.path, as for
    `python -m`), with a clear error if it cannot be found or declares nothing."""
    if "" not in sys.path and str(Path.cwd()) not in sys.path:
        sys.path.insert(0, str(Path.cwd()))
    try:
        importlib.import_module(name)
    except ModuleNotFoundError as e:
        raise OpforgeError(
            f"op package {name!r} cannot be imported ({e}). Fix: run from the directory that holds "
            "it, or install it (pip install --no-build-isolation -e .)"
        ) from e
    if not ops_in(name):
        raise OpforgeError(
            f"op package {name!r} declares no ops. Fix: its __init__.py should call "
            "ops.op_package(__name__), and its modules declare ops with @register_op"
        )
    return package(name)
