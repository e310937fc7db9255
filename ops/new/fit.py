"""Deriving a new op's output shape rules by running the callable (--like/--from) on sample inputs and fitting each
output dim to the shape language; the samples, from those runs or (flags only) from the declared rules."""

from __future__ import annotations

import io
import warnings
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any

import torch

from ..core import shape_rule as sr
from ..core.declaration import REQUIRED, Attr, OpDecl, Output
from ..core.dtypes import dtype_name
from ..core.errors import OpforgeError
from ..onnx.quiet import quiet_torchscript_log
from .plan import Plan, output_names
from .syntax import EXAMPLES, LIKE, SpecError


def sample_value(a: Attr) -> Any:
    """A value for an attribute without a default, for the runs and the samples."""
    if a.has_default:
        return list(a.default) if isinstance(a.default, tuple) else a.default
    return (
        {"int": 1, "float": 0.5, "bool": False, "str": (a.choices or ("",))[0]}.get(a.type)
        if a.type in ("int", "float", "bool", "str")
        else [1 if a.type == "list[int]" else 1.0] * (a.length or 2)
    )


def _tensor(shape, dtype_name: str):
    dt = getattr(torch, dtype_name)
    if dt.is_floating_point:
        return torch.randn(*shape, generator=torch.Generator().manual_seed(0)).to(dt)
    if dt == torch.bool:
        return torch.rand(*shape, generator=torch.Generator().manual_seed(0)) > 0.5
    return torch.randint(0, 3, tuple(shape), generator=torch.Generator().manual_seed(0), dtype=dt)


def _input_dtype(plan: Plan, name: str) -> str:
    inp = next(i for i in plan.inputs if i.name == name)
    if isinstance(inp.dtypes, str):
        return _input_dtype(plan, LIKE.match(inp.dtypes).group(1))
    return "float32" if "float32" in inp.dtypes else inp.dtypes[0]


def _call(plan: Plan, fn: Callable, shapes: dict, attrs: dict):
    values = {
        i.name: (_tensor(shapes[i.name], _input_dtype(plan, i.name)) if shapes.get(i.name) is not None else None)
        for i in plan.inputs
    }
    values.update(attrs)
    out = fn(*[values[n] for n in plan.call_positional], **{k: values[n] for k, n in plan.call_keyword})
    return out if isinstance(out, (tuple, list)) else (out,)


@dataclass
class Run:
    shapes: dict  # input -> shape (absent optional: missing)
    attrs: dict
    outputs: list  # per output: (shape, dtype name)


def _try(plan, fn, shapes, attrs) -> Run | None:
    try:
        with torch.no_grad():
            outs = _call(plan, fn, shapes, attrs)
    except Exception:
        return None
    try:
        return Run(dict(shapes), dict(attrs), [(list(o.shape), dtype_name(o.dtype)) for o in outs])
    except (KeyError, AttributeError):
        return None


def guessed_shapes(plan: Plan) -> list[dict]:
    """Shape sets to try when --shapes is not given: every required input the same shape, ranks 4..1."""
    sets = []
    for rank in (4, 3, 2, 1):
        for base in ([2, 3, 5, 7], [3, 4, 6, 5], [1, 2, 3, 4]):
            sets.append({i.name: base[:rank] for i in plan.inputs if not i.optional})
    return sets


def collect_runs(plan: Plan, fn: Callable, shape_sets: list[dict], guessed: bool) -> list[Run]:
    base_attrs = {a.name: sample_value(a) for a in plan.attrs}
    runs = []
    for shapes in shape_sets:
        unknown = set(shapes) - {i.name for i in plan.inputs}
        if unknown:
            raise SpecError(
                "--shapes",
                f"names of the inputs {[i.name for i in plan.inputs]}",
                sorted(unknown)[0],
                EXAMPLES["--shapes"],
            )
        missing = [i.name for i in plan.inputs if not i.optional and i.name not in shapes]
        if missing:
            raise SpecError("--shapes", f"a shape for every required input (missing {missing})", shapes)
        run = _try(plan, fn, shapes, base_attrs)
        if run is None:
            if guessed:
                continue
            try:
                _call(plan, fn, shapes, base_attrs)
            except Exception as e:
                raise OpforgeError(
                    f"{plan.target} fails on --shapes {shapes} with attributes {base_attrs}: "
                    f"{type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}. Fix: give "
                    "shapes (and attribute defaults with --attr) it accepts"
                ) from e
        runs.append(run)
        if guessed and len(runs) == 3:
            break
    if guessed:
        ranks = {len(next(iter(r.shapes.values()))) for r in runs}
        runs = [r for r in runs if len(next(iter(r.shapes.values()))) == max(ranks)] if ranks else []
    if not runs:
        raise OpforgeError(
            f"{plan.target} accepted none of the guessed input shapes (every input the same shape, "
            "ranks 1-4). Fix: pass --shapes with shapes it accepts, e.g. "
            + EXAMPLES["--shapes"]
            + " (twice, with different sizes, to derive the output shapes)"
        )
    # Optional inputs present: the same shape as the first input, if the callable takes that.
    for i in plan.inputs:
        if i.optional and not any(i.name in r.shapes for r in runs):
            first = runs[0].shapes[plan.inputs[0].name]
            for candidate in (first, first[-1:], first[1:2]):
                extra = _try(plan, fn, {**runs[0].shapes, i.name: list(candidate)}, runs[0].attrs)
                if extra is not None:
                    runs.append(extra)
                    break
            else:
                plan.notes.append(
                    f"no sample has optional input '{i.name}' present (ops.new found no shape the "
                    "callable accepts for it): add samples with it, or pass --shapes naming it"
                )
    return runs


def perturbed(plan: Plan, fn: Callable, runs: list[Run]) -> list[Run]:
    """Runs with one input dim (+1) or one int / list[int] attribute (+1) changed at a time: they separate
    candidates that agree on the base runs only by coincidence (two dims of the same size)."""
    extra = []
    for run in runs[:2]:
        for name, shape in run.shapes.items():
            for d in range(len(shape)):
                changed = {**run.shapes, name: [s + (1 if k == d else 0) for k, s in enumerate(shape)]}
                if (r := _try(plan, fn, changed, run.attrs)) is not None:
                    extra.append(r)
        for a in plan.attrs:
            value = run.attrs[a.name]
            if a.type == "int" and not a.choices:
                variants = [value + 1]
            elif a.type == "list[int]" and isinstance(value, list):
                variants = [[v + (1 if k == j else 0) for k, v in enumerate(value)] for j in range(len(value))]
            else:
                continue
            for v in variants:
                if (r := _try(plan, fn, run.shapes, {**run.attrs, a.name: v})) is not None:
                    extra.append(r)
    return extra


def _value(expr, run: Run):
    try:
        names = {k: v for k, v in run.attrs.items()}
        return sr.evaluate(expr, sr.IntAlgebra({k: v for k, v in run.shapes.items()}, names))
    except Exception:
        return None


def _candidates(plan: Plan, runs: list[Run]) -> list:
    """Shape-language expressions an output dim may be, most natural first."""
    dims = []
    for i in plan.inputs:
        ranks = {len(r.shapes[i.name]) for r in runs if i.name in r.shapes}
        if not ranks:
            continue
        fixed = len(ranks) == 1
        rank = min(ranks)
        dims += [sr.Dim(i.name, k if fixed else k - rank) for k in range(rank)]
    names = [sr.Name(a.name) for a in plan.attrs if a.type == "int"]
    # Elements of list[int] attributes: of a fixed length, or of the length their value has in every run (a rule
    # that uses one then fixes the length: derive_outputs declares it)
    for a in plan.attrs:
        lengths = {len(r.attrs[a.name]) for r in runs if isinstance(r.attrs.get(a.name), list)}
        if a.type == "list[int]" and (a.length or len(lengths) == 1):
            names += [sr.Item(a.name, k) for k in range(a.length or lengths.pop())]
    combos = [sr.BinOp(op, d, n) for d in dims for n in names for op in ("mul", "floordiv", "ceil_div")]
    return dims + names + combos


def derive_outputs(plan: Plan, runs: list[Run], checks: list[Run]) -> list[Output]:
    """Fit each output's shape rule (and dtype) to the runs; stop with a clear error where none fits."""
    n_out = len(runs[0].outputs)
    if any(len(r.outputs) != n_out for r in runs):
        raise OpforgeError(f"{plan.target} returns a varying number of outputs across runs")
    if len(plan.outputs) != n_out:
        names = output_names(n_out, [i.name for i in plan.inputs] + [a.name for a in plan.attrs])
        plan.outputs = [Output(n, shape=f"like({plan.inputs[0].name})") for n in names]
    everything = runs + checks
    result = []
    for k, out in enumerate(plan.outputs):
        where = f"output {k} ('{out.name}') of {plan.target}"
        # dtype: like the first input whose dtype it has, else the fixed dtype it has
        dtypes = {r.outputs[k][1] for r in everything}
        if len(dtypes) != 1:
            raise OpforgeError(f"{where} changes dtype across runs ({sorted(dtypes)}): pass --output NAME:SHAPE:DTYPE")
        dt = dtypes.pop()
        like = [i.name for i in plan.inputs if not i.optional and _input_dtype(plan, i.name) == dt]
        dtype = f"like({like[0]})" if like else dt
        shapes = [r.outputs[k][0] for r in everything]
        # like(input): the output has that input's shape in every run (and the input is required)
        likes = [
            i.name
            for i in plan.inputs
            if not i.optional and all(r.shapes.get(i.name) == s for r, s in zip(everything, shapes))
        ]
        if likes:
            result.append(Output(out.name, shape=f"like({likes[0]})", dtype=dtype))
            if len(likes) > 1:
                plan.notes.append(
                    f"'{out.name}': like({likes[0]}) (also equal to {likes[1:]} on every run ops.new tried)"
                )
            continue
        ranks = {len(s) for s in shapes}
        if len(ranks) != 1:
            raise OpforgeError(
                f"{where} has no like(input) shape and its rank varies across runs ({sorted(ranks)}), "
                "which a [...] rule cannot express: pass --output NAME:SHAPE explicitly, "
                "e.g. --output 'y:like(x)'"
            )
        dims = []
        for d in range(ranks.pop()):
            observed = [s[d] for s in shapes]
            fits = [
                c for c in _candidates(plan, everything) if all(_value(c, r) == v for r, v in zip(everything, observed))
            ]
            const = observed[0] if len(set(observed)) == 1 else None
            if const is not None and not fits:
                fits = [sr.Const(const)]
            if not fits:
                raise OpforgeError(
                    f"{where}: ops.new cannot express dim {d} (sizes {observed} on {len(everything)} runs) in the shape "
                    "language from the input dims and int attributes it tried. Fix: pass the rule, e.g. "
                    f"--output '{out.name}:[...]' (see --help for the shape language)"
                )
            dims.append(sr.to_text(fits[0]))
            if len(fits) > 1:
                plan.notes.append(
                    f"'{out.name}' dim {d}: {sr.to_text(fits[0])} (equal to "
                    f"{[sr.to_text(f) for f in fits[1:4]]} on every run, perturbed ones included)"
                )
        result.append(Output(out.name, shape="[" + ", ".join(dims) + "]", dtype=dtype))
    # list[int] attributes a rule indexes need a fixed length (the declaration checks it everywhere)
    used = {it.name for o in result for it in sr.items(sr.parse_shape(o.shape))}
    for k, a in enumerate(plan.attrs):
        if a.name in used and a.length is None:
            n = len(runs[0].attrs[a.name])
            plan.attrs[k] = replace(a, length=n)
            plan.notes.append(f"attribute '{a.name}' gets length={n}: the output shape rule indexes it")
    return result


def verify_outputs(plan: Plan, runs: list[Run]) -> None:
    """Given --output rules: they must reproduce every run (never write a rule the callable contradicts)."""
    if len(plan.outputs) != len(runs[0].outputs):
        raise SpecError(
            "--output", f"{len(runs[0].outputs)} outputs (what {plan.target} returns)", [o.name for o in plan.outputs]
        )
    for k, out in enumerate(plan.outputs):
        rule = sr.parse_shape(out.shape)
        for r in runs:
            try:
                want = sr.evaluate_shape(rule, sr.IntAlgebra(r.shapes, r.attrs), lambda n, r=r: len(r.shapes[n]))
            except Exception as e:
                raise SpecError("--output", f"a rule {plan.target}'s runs can evaluate", out.shape) from e
            if list(want) != r.outputs[k][0]:
                raise SpecError(
                    "--output",
                    f"a rule that reproduces {plan.target}: with inputs {r.shapes} and attributes "
                    f"{r.attrs} it returns {out.name} of shape {r.outputs[k][0]}, the rule gives "
                    f"{list(want)}",
                    out.shape,
                )


def onnx_problem(plan: Plan, fn: Callable, run: Run) -> str | None:
    """Whether the callable exports to standard ONNX ops (what export_onnx(fallback=True) and ops.check's
    ort.fallback need, through the same TorchScript exporter at opset 17). None if it does, else the reason."""
    names = [i.name for i in plan.inputs if run.shapes.get(i.name) is not None]

    class Reference(torch.nn.Module):
        def forward(self, *tensors):
            values = dict(zip(names, tensors))
            values.update({i.name: None for i in plan.inputs if i.name not in values})
            values.update(run.attrs)
            return fn(*[values[n] for n in plan.call_positional], **{k: values[n] for k, n in plan.call_keyword})

    tensors = tuple(_tensor(run.shapes[n], _input_dtype(plan, n)) for n in names)
    try:
        with warnings.catch_warnings(), quiet_torchscript_log():  # no TorchScript graph dump on a failure
            warnings.simplefilter("ignore")
            torch.onnx.export(Reference(), tensors, io.BytesIO(), dynamo=False, opset_version=17)
    except Exception as e:
        return f"{type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}"[:200]
    return None


def cases_from_runs(plan: Plan, runs: list[Run]) -> list[tuple[dict, dict]]:
    cases, seen = [], set()
    for r in runs:
        key = repr(
            (sorted((k, tuple(v)) for k, v in r.shapes.items()), sorted((k, repr(v)) for k, v in r.attrs.items()))
        )
        if key not in seen:
            seen.add(key)
            cases.append(({i.name: r.shapes.get(i.name) for i in plan.inputs}, dict(r.attrs)))
    return cases


def empty_case(plan: Plan, fn: Callable | None, case) -> tuple[dict, dict] | None:
    """The case with dim 0 of the first input (and of every input with the same dim 0) set to 0."""
    shapes, attrs = case
    first = shapes[plan.inputs[0].name]
    if not first:
        return None
    n = first[0]
    empty = {k: ([0, *v[1:]] if v and v[0] == n else v) if v is not None else None for k, v in shapes.items()}
    if fn is not None and _try(plan, fn, {k: v for k, v in empty.items() if v is not None}, attrs) is None:
        return None
    return empty, attrs


# -- flags only: samples from the declared rules --


def cases_from_flags(plan: Plan, decl: OpDecl) -> list[tuple[dict, dict]]:
    """Concrete input shapes satisfying the declaration: the first input gets a few shapes of its rank, inputs with
    a shape= rule get it evaluated, the others the first input's shape; optional inputs absent and present."""
    first = decl.inputs[0]
    rank = first.rank if first.rank is not None else max(first.min_rank, 2)
    bases = [[4, 33, 3, 5, 2, 2, 2, 2], [2, 3, 8, 6, 3, 2, 2, 2], [1, 7, 5, 3, 2, 2, 2, 2]]
    attrs = {
        a.name: sample_value(Attr(a.name, a.type, a.default if a.has_default else REQUIRED, a.choices, a.length))
        for a in decl.attrs
    }
    cases = []
    for k, base in enumerate(bases):
        shapes: dict[str, Any] = {}
        for i in decl.inputs:
            if i.optional and k == 0:
                shapes[i.name] = None
                continue
            if i.shape is not None:
                algebra = sr.IntAlgebra({n: s for n, s in shapes.items() if s is not None}, decl.shape_names(attrs))
                shapes[i.name] = [
                    int(v) for v in sr.evaluate_shape(i.shape, algebra, lambda n, shapes=shapes: len(shapes[n]))
                ]
            elif i.name == first.name:
                shapes[i.name] = base[:rank]
            else:
                r = i.rank if i.rank is not None else max(i.min_rank, rank)
                shapes[i.name] = base[:rank] if r == rank else (base * 2)[:r]
        cases.append((shapes, dict(attrs)))
    # every optional input absent in case 0, present in the others; an empty case from case 1
    return cases
