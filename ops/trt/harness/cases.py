"""Per-op test data derived from the declaration: plugin ops, sample attrs, expected dtype rules."""

from __future__ import annotations

import itertools

from ...core import shape_rule as sr
from ...core.dtypes import dtype_name, torch_dtype
from ...core.registry import all_ops
from ..codegen import has_plugin
from . import host as harness


def plugin_ops():
    return [op for op in all_ops() if has_plugin(op.decl)]


def op_ids():
    return [op.id for op in plugin_ops()]


def has_gap(sample) -> bool:
    """An absent optional input followed by a present one. TensorRT passes plugin inputs by position only
    (nbInputs), so such a call has no TensorRT form: the ONNX node's empty input name gives the parser a
    null tensor. Harness checks leave these samples out; ORT and torch run them."""
    present = [t is not None for t in sample.inputs]
    return any(not a and b for a, b in zip(present, present[1:]))


def samples(op, dtype="float32"):
    """The op's samples that TensorRT can express (see has_gap)."""

    all_samples = list(op.decl.samples("cpu", torch_dtype(dtype))) if op.decl.samples else []
    return [s for s in all_samples if not has_gap(s)]


def attrs_of(op, sample) -> dict:
    values = {a.name: a.default for a in op.decl.attrs if a.has_default}
    values.update(sample.attrs)
    return values


def input_shapes(op, sample) -> list[list[int]]:
    return [list(t.shape) for t in sample.inputs if t is not None]


def expected_shapes(
    op, shapes: list[list[int]], attrs: dict, at_upper: bool = False, sizes: dict | None = None
) -> list[list[int] | None]:
    """The declaration's shape rules over concrete ints (None for size outputs). A dim that depends on a
    data-dependent size is None, its upper bound with `at_upper` (what a host allocates before the kernel
    reports the real size), or computed from `sizes` (name -> the value the kernel reported)."""
    d = op.decl
    named = dict(zip([i.name for i in d.inputs], shapes))
    names = d.shape_names(attrs)
    upper = {o.name: sr.evaluate(o.upper, sr.IntAlgebra(named, names)) for o in d.outputs if o.is_size}
    known = sizes if sizes is not None else {n: (v if at_upper else None) for n, v in upper.items()}
    alg = sr.IntAlgebra(named, {**names, **known})

    class Unknown(sr.IntAlgebra):  # a size-dependent dim stays None through arithmetic
        def binary(self, op_, a, b):
            return None if a is None or b is None else super().binary(op_, a, b)

    alg = Unknown(alg.shapes, alg.names)
    out = []
    for o in d.outputs:
        out.append(None if o.is_size else sr.evaluate_shape(o.shape, alg, lambda n: len(named[n])))
    return out


def dims_match(got, want) -> bool:
    """A shape against the rules' expectation: None (a size output) or a None dim (data-dependent) match
    anything; every other dim must be equal."""
    if want is None:
        return True
    return got is not None and len(got) == len(want) and all(w is None or g == w for g, w in zip(got, want))


def output_trt_types(op, sample) -> list[int]:
    """The nvinfer1::DataType of each output for this sample's input dtypes (size outputs: kINT32)."""
    given = {i.name: t for i, t in zip(op.decl.inputs, sample.inputs) if t is not None}
    out = []
    for o in op.decl.outputs:
        if o.is_size:
            out.append(harness.TRT_DTYPE["int32"])
        else:
            out.append(harness.TRT_DTYPE[o.dtype or dtype_name(given[o.dtype_like].dtype)])
    return out


def trt_types(dtypes) -> list[int]:
    return [harness.TRT_DTYPE[t] for t in dtypes if t in harness.TRT_DTYPE]


def valid_type_combos(op):
    """Every (input types..., output types...) the declaration allows, as nvinfer1::DataType values."""
    d = op.decl
    names = [i.name for i in d.inputs]
    choices = [trt_types(i.dtypes) if not i.dtype_like else [None] for i in d.inputs]
    combos = []
    for picked in itertools.product(*choices):
        types = list(picked)
        for k, i in enumerate(d.inputs):
            if i.dtype_like:
                types[k] = types[names.index(i.dtype_like)]
        outs = []
        for o in d.outputs:
            if o.is_size:
                outs.append(harness.TRT_DTYPE["int32"])
            elif o.dtype_like:
                outs.append(types[names.index(o.dtype_like)])
            else:
                outs.append(harness.TRT_DTYPE.get(o.dtype, -1))
        combos.append(tuple(types + outs))
    return combos
