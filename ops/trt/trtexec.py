"""Print the trtexec command that builds an engine for a model with the opforge plugins.

    python -m ops.trt.trtexec model.onnx --shapes x:1x8,4x8,16x8 [--shapes w:8,8,8] [--save model.engine]

--shapes NAME:MIN,OPT,MAX with dims joined by 'x' (one profile). The command loads the plugin library
with --dynamicPlugins (getCreators), builds --stronglyTyped, and saves the engine if asked.
"""

from __future__ import annotations

import argparse
import shlex
import sys
from pathlib import Path

from ..core.errors import OpforgeError
from .build import library_path


def parse_shapes(items: list[str]) -> dict[str, tuple[str, str, str]]:
    out = {}
    for item in items:
        name, sep, rest = item.rpartition(":")
        parts = rest.split(",")
        if (
            not sep
            or not name
            or len(parts) != 3
            or not all(p and all(d.isdigit() for d in p.split("x")) for p in parts)
        ):
            raise OpforgeError(f"--shapes {item!r}: expected NAME:MIN,OPT,MAX with dims like 1x8, e.g. x:1x8,4x8,16x8")
        out[name] = tuple(parts)
    return out


def command(
    onnx_path, shapes: dict[str, tuple[str, str, str]], plugin_library, save=None, extra: list[str] = ()
) -> list[str]:
    cmd = ["trtexec", f"--onnx={onnx_path}", f"--dynamicPlugins={plugin_library}", "--stronglyTyped"]
    if shapes:
        for flag, k in (("--minShapes", 0), ("--optShapes", 1), ("--maxShapes", 2)):
            cmd.append(f"{flag}=" + ",".join(f"{n}:{s[k]}" for n, s in shapes.items()))
    if save:
        cmd.append(f"--saveEngine={save}")
    return cmd + list(extra)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m ops.trt.trtexec", description=__doc__.splitlines()[0])
    parser.add_argument("onnx")
    parser.add_argument("--shapes", action="append", default=[], metavar="NAME:MIN,OPT,MAX")
    parser.add_argument("--save", help="engine path for --saveEngine")
    parser.add_argument("--plugins", help="plugin library (default: the in-tree build)")
    args = parser.parse_args(argv)
    try:
        shapes = parse_shapes(args.shapes)
    except OpforgeError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    lib = Path(args.plugins) if args.plugins else library_path()
    if not lib.exists():
        print(
            f"note: {lib} is not built yet: run `python -m ops.build --trt` (or use the CMake project)", file=sys.stderr
        )
    print(shlex.join(command(args.onnx, shapes, lib.resolve(), args.save)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
