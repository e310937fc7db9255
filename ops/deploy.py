"""A model with opforge ops, converted end to end and verified at each step:

    torch eager -> ONNX (opset 17 TorchScript exporter, opset 20 dynamo exporter, dynamic batch)
                -> ONNX Runtime (every batch size, against torch)
                -> TensorRT: an engine where TensorRT is installed; everywhere the trtexec command, and the
                   plugin host harness on every opforge node of the model with the inputs that node sees
                   (createPlugin from the node's ONNX attributes, getOutputShapes against torch's shapes)
                   plus a GPU `enqueue` of the same plugin compared with the torch op, where a GPU exists.

`convert(...)` returns one `Step` per row; `print_summary` prints them as a table. The examples in
`examples/` are thin wrappers: a model, an input maker, a tolerance.
"""

from __future__ import annotations

import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch.utils._python_dispatch import TorchDispatchMode

from . import cli
from .check.trt_stages import plugin_host, plugin_library
from .core import lazy
from .core.declaration import Sample
from .core.errors import BackendUnavailable
from .core.registry import all_ops
from .onnx import export_onnx, ort_session
from .onnx.models import run_session
from .torch.register import split_args
from .trt.build import library_path
from .trt.codegen import has_plugin
from .trt.engine import build_engine
from .trt.harness import host as harness_host
from .trt.harness.cases import dims_match, expected_shapes
from .trt.harness.enqueue import run_plugin
from .trt.trtexec import command

PASS, FAIL, SKIP = "PASS", "FAIL", "skip"


@dataclass
class Step:
    name: str
    result: str
    detail: str
    seconds: float = 0.0
    metrics: dict = field(default_factory=dict)


def _as_tuple(x) -> tuple:
    return tuple(x) if isinstance(x, (tuple, list)) else (x,)


def _max_diff(got, want, rtol: float, atol: float) -> tuple[bool, float]:
    """(within tolerance, max |diff|) over every output; integer outputs must match exactly."""
    ok, worst = True, 0.0
    for g, w in zip(got, want):
        g, w = g.detach().cpu(), w.detach().cpu()
        if g.shape != w.shape:
            return False, float("inf")
        if not w.is_floating_point():
            same = torch.equal(g.to(w.dtype), w)
            ok, worst = ok and same, max(worst, 0.0 if same else float("inf"))
            continue
        if g.numel():
            d = (g.float() - w.float()).abs()
            worst = max(worst, float(d.max()))
            ok = ok and bool((d <= atol + rtol * w.float().abs()).all())
    return ok, worst


def record_op_calls(model, args) -> list[tuple]:
    """Every opforge op call of one forward on `args`: (op, positional args, outputs), in call order."""
    wanted = {op.torch_op: op for op in all_ops()}
    calls = []

    class Record(TorchDispatchMode):
        def __torch_dispatch__(self, func, types, a=(), kw=None):
            out = func(*a, **(kw or {}))
            if func in wanted:
                calls.append((wanted[func], tuple(a), _as_tuple(out)))
            return out

    with torch.inference_mode(), Record():
        model(*args)
    return calls


class Converter:
    """Converts `model` end to end. `make_inputs(b)` gives its arguments at batch `b`; `batch_dims` says which
    dim of which argument is that batch ({argument index: dim}; default dim 0 of every tensor argument), so a
    model whose batch is elsewhere (proposals per image, queries) is exported with that dim dynamic."""

    def __init__(
        self,
        model,
        make_inputs: Callable[[int], tuple],
        *,
        name: str,
        workdir: Path,
        batches=(1, 4, 8),
        tolerance=(1e-4, 1e-4),
        progress: Callable[[str], None] = print,
        batch_dims: dict[int, int] | None = None,
        compare: Callable[[tuple, tuple, float, float], tuple[bool, float]] | None = None,
    ):
        self.model, self.make_inputs, self.name = model.eval(), make_inputs, name
        self.batch_dims = batch_dims
        # How ONNX Runtime's outputs are held against torch's: (got, want, rtol, atol) -> (ok, max |diff|).
        # Element-wise by default; a model whose outputs are a selection (NMS) passes a matcher.
        self.compare = compare or _max_diff
        self.workdir, self.batches, self.tolerance, self.progress = Path(workdir), tuple(batches), tolerance, progress
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.steps: list[Step] = []
        self.inputs = {b: make_inputs(b) for b in self.batches}
        self.models: dict[int, Path] = {}

    def _step(self, name: str, fn) -> Step:
        self.progress(f"[{self.name}] {name} ...")
        start = time.perf_counter()
        try:
            result, detail, metrics = fn()
        except Exception as e:  # one failed step is a FAIL row, not the end of the conversion
            result, detail, metrics = FAIL, f"{type(e).__name__}: {str(e).splitlines()[0][:300]}", {}
        step = Step(name, result, detail, time.perf_counter() - start, metrics)
        self.progress(f"[{self.name}] {name}: {result} ({step.seconds:.1f}s) {detail}")
        self.steps.append(step)
        return step

    def torch_reference(self):
        def run():
            with torch.inference_mode():
                self.expected = {
                    b: tuple(t.detach() for t in _as_tuple(self.model(*x))) for b, x in self.inputs.items()
                }
            shapes = {b: [list(t.shape) for t in outs] for b, outs in self.expected.items()}
            return PASS, f"torch eager at batch {'/'.join(map(str, self.batches))}: output shapes {shapes}", {}

        return self._step("torch.eager", run)

    def export(self, opset: int):
        onnx = lazy.onnx()

        exporter = "torchscript" if opset <= 17 else "dynamo"
        path = self.workdir / f"{self.name}_opset{opset}.onnx"

        def run():
            opt = self.batches[len(self.batches) // 2]
            dynamic = True if self.batch_dims is None else {k: {d: "batch"} for k, d in self.batch_dims.items()}
            m = export_onnx(self.model, self.inputs[opt], path, opset=opset, dynamic=dynamic)
            onnx.checker.check_model(m, full_check=True)
            custom = sorted({f"{n.domain}::{n.op_type}" for n in m.graph.node if n.domain not in ("", "ai.onnx")})
            dims = [[d.dim_param or d.dim_value for d in o.type.tensor_type.shape.dim] for o in m.graph.output]
            self.models[opset] = path
            return (
                PASS,
                (
                    f"{len(m.graph.node)} nodes, custom {custom}, outputs {dims}; checker(full) ok; "
                    f"{path.stat().st_size / 1e6:.1f} MB"
                ),
                {"custom": custom},
            )

        return self._step(f"onnx.export[{exporter}-{opset}]", run)

    def onnx_runtime(self, opset: int):
        def run():
            if opset not in self.models:
                return SKIP, "no export to run", {}
            session = ort_session(self.models[opset])
            worst, ok = {}, True
            for b, x in self.inputs.items():
                good, diff = self.compare(run_session(session, x), self.expected[b], *self.tolerance)
                ok, worst[b] = ok and good, diff
            return (
                (PASS if ok else FAIL),
                (
                    f"ORT vs torch, one dynamic model, max |diff| per batch "
                    f"{ {b: f'{d:.2e}' for b, d in worst.items()} } (rtol/atol "
                    f"{self.tolerance[0]:g}/{self.tolerance[1]:g})"
                ),
                {"max_diff": worst},
            )

        return self._step(f"ort.cpu[opset {opset}]", run)

    def tensorrt_engine(self, opset: int, input_names: list[str]):
        def run():
            if opset not in self.models:
                return SKIP, "no export", {}
            lo, opt, hi = min(self.batches), self.batches[len(self.batches) // 2], max(self.batches)
            shapes = {}
            present = [(k, t) for k, t in enumerate(self.inputs[opt]) if t is not None]
            for name, (k, _) in zip(input_names, present):
                # min/opt/max from the inputs made at each batch size: every dynamic dim follows the batch
                shapes[name] = tuple("x".join(map(str, self.inputs[b][k].shape)) for b in (lo, opt, hi))
            cmd = " ".join(command(self.models[opset], shapes, library_path().resolve()))
            try:
                engine = build_engine(
                    self.models[opset],
                    shapes={n: tuple(tuple(int(d) for d in s.split("x")) for s in v) for n, v in shapes.items()},
                )
            except BackendUnavailable as e:
                return SKIP, f"{e}. On a machine with TensorRT: {cmd}", {"trtexec": cmd}
            return (
                PASS,
                (f"engine built ({len(engine) / 1e6:.1f} MB; built, not run here) (trtexec equivalent: {cmd})"),
                {"trtexec": cmd},
            )

        return self._step(f"trt.engine[opset {opset}]", run)

    def plugin_nodes(self, opset: int):
        """The plugin host harness on every opforge node of the exported model, with the inputs and
        attributes that node sees at the middle batch size; GPU enqueue where CUDA exists."""
        onnx = lazy.onnx()

        def run():
            if opset not in self.models:
                return SKIP, "no export", {}
            m = onnx.load(str(self.models[opset]))
            opt = self.batches[len(self.batches) // 2]
            calls = record_op_calls(self.model, self.inputs[opt])
            nodes: dict[str, list] = {}
            for n in m.graph.node:
                nodes.setdefault(f"{n.domain}::{n.op_type}", []).append(n)
            seen: dict[str, int] = {}
            checked, enqueued, worst, problems = 0, 0, 0.0, []
            for op, args, outs in calls:
                k = seen[op.id] = seen.get(op.id, -1) + 1
                if not has_plugin(op.decl):
                    problems.append(f"{op.id} has no plugin (no CUDA kernels)")
                    continue
                if k >= len(nodes.get(op.id, [])):
                    problems.append(f"{op.id} call {k} has no ONNX node")
                    continue
                result, problem = plugin_library(op)
                if problem:
                    return SKIP if problem[0] == "skip" else FAIL, f"no plugin library: {problem[1]}", {}
                h = plugin_host(result)
                node = nodes[op.id][k]
                creator = h.creator(op.decl.name, str(op.decl.version), op.decl.namespace)
                plugin = h.create(creator, harness_host.fields_from_onnx_node(node, creator.fields))
                if plugin is None:
                    problems.append(f"{op.id} node {node.name}: createPlugin rejected its fields: {h.log().strip()}")
                    continue
                inputs, attrs = split_args(op.decl, args)
                present = [t for t in inputs.values() if t is not None]
                shapes = [list(t.shape) for t in present]
                want = expected_shapes(op, shapes, attrs)
                st, got, text = plugin.output_shapes([harness_host.tensor(s) for s in shapes], len(op.decl.outputs))
                plugin.destroy()
                torch_shapes = [list(t.shape) for t in outs]
                if st != 0 or not all(
                    dims_match(g, w) and dims_match(ts, w) for g, w, ts in zip(got, want, torch_shapes)
                ):
                    problems.append(
                        f"{op.id} node {node.name}: getOutputShapes {text.strip()!r} vs torch {torch_shapes}"
                    )
                    continue
                checked += 1
                if torch.cuda.is_available():
                    cuda_inputs = [t.cuda() if t is not None else None for t in inputs.values()]
                    plugin_out = run_plugin(h, op, Sample(*cuda_inputs, **attrs))
                    ok, diff = _max_diff(plugin_out, outs, *self.tolerance)
                    worst = max(worst, diff)
                    enqueued += 1
                    if not ok:
                        problems.append(f"{op.id} node {node.name}: GPU enqueue differs from torch CPU by {diff:.3g}")
            gpu = (
                (
                    f"; GPU enqueue on {torch.cuda.get_device_name()} of {enqueued} nodes vs torch CPU, max |diff| "
                    f"{worst:.3g}"
                )
                if torch.cuda.is_available()
                else "; GPU enqueue: no CUDA device here"
            )
            detail = (
                f"[plugin host harness, not TensorRT itself] {checked}/{len(calls)} opforge nodes: createPlugin "
                f"from the node's ONNX attributes, getOutputShapes = torch shapes{gpu}"
            )
            if problems:
                return FAIL, detail + "; " + "; ".join(problems[:3]), {}
            return PASS, detail, {"nodes": checked, "enqueued": enqueued, "max_diff": worst}

        return self._step(f"trt.plugins[opset {opset}]", run)

    def run(self, opsets=(17, 20), trt: bool = True) -> list[Step]:
        import inspect

        self.torch_reference()
        params = [p for p in inspect.signature(self.model.forward).parameters]
        for opset in opsets:
            self.export(opset)
            self.onnx_runtime(opset)
            if trt:
                self.plugin_nodes(opset)
                self.tensorrt_engine(opset, params)
        return self.steps


def print_summary(title: str, steps: list[Step], out=print) -> None:
    width = max(len(s.name) for s in steps)
    out(f"\n{title}")
    out(f"  {'step':<{width}}  result  time     detail")
    for s in steps:
        out(f"  {s.name:<{width}}  {s.result:<6}  {s.seconds:6.1f}s  {s.detail}")
    counts = {r: sum(s.result == r for s in steps) for r in (PASS, FAIL, SKIP)}
    out(f"  -> {counts[PASS]} passed, {counts[FAIL]} failed, {counts[SKIP]} skipped")


def example_main(doc: str, title: str, convert, argv=None) -> int:
    """The command line every example shares: --small, --no-trt, --workdir; prints the summary table and
    returns 1 if any step failed. `convert(workdir, small, trt)` is the example's conversion."""
    parser = cli.parser(None, doc.split("\n\n")[0] + " Exit status: 0 every step passed, 1 a step failed.")
    parser.add_argument("--small", action="store_true", help="the reduced size the tests run")
    parser.add_argument("--no-trt", dest="trt", action="store_false", help="skip the TensorRT steps")
    parser.add_argument("--workdir", type=Path, default=None, help="keep the ONNX files here")

    def run(args) -> int:
        with tempfile.TemporaryDirectory() as tmp:
            steps = convert(args.workdir or Path(tmp), args.small, args.trt)
        print_summary(title, steps)
        return 1 if any(s.result == FAIL for s in steps) else 0

    return cli.main(parser, run, argv)
