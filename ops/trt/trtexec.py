"""Print the trtexec command that builds an engine for a model with the opforge plugins.

    python -m ops.trt.trtexec model.onnx --shapes x:1x8,4x8,16x8 [--shapes w:8,8,8] [--save model.engine]

--shapes NAME:MIN,OPT,MAX with dims joined by 'x' (one profile). The command loads the plugin library
with --dynamicPlugins (getCreators), builds --stronglyTyped, and saves the engine if asked.
"""

from __future__ import annotations

import shlex
import sys
from pathlib import Path

from .. import cli
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
    parser = cli.parser(
        "python -m ops.trt.trtexec",
        __doc__.splitlines()[0],
        json="print the command as a JSON list of arguments instead of a shell line",
    )
    parser.add_argument("onnx", help="the ONNX model to build an engine for")
    parser.add_argument(
        "--shapes",
        action="append",
        default=[],
        metavar="NAME:MIN,OPT,MAX",
        help="one input's shape profile, dims joined by 'x' (repeatable), e.g. x:1x8,4x8,16x8",
    )
    parser.add_argument("--save", help="engine path for --saveEngine")
    parser.add_argument("--plugins", help="plugin library (default: the in-tree build)")
    return cli.main(parser, run, argv)


def run(args) -> cli.Report:
    shapes = parse_shapes(args.shapes)
    lib = Path(args.plugins) if args.plugins else library_path()
    if not lib.exists() and not args.quiet:
        print(
            f"note: {lib} is not built yet: run `python -m ops.build --trt` (or use the CMake project)", file=sys.stderr
        )
    cmd = command(args.onnx, shapes, lib.resolve(), args.save)
    if not args.json:
        print(shlex.join(cmd))
    return cli.Report(cmd)


if __name__ == "__main__":
    sys.exit(main())
