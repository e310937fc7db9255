"""ONNX Runtime binding: opforge nodes run through onnxruntime-extensions' Python custom ops, calling
the torch op (hence the same ops._C CPU kernel) on tensors that wrap ORT's numpy buffers zero-copy.

Two limits of that bridge shape this module:
- It hands attributes over as text, and floats as `ostream << float`, i.e. 6 significant digits
  (eps=1.2345678e-7 arrives as '1.23457e-07'). The exact values are therefore read from the model
  proto when the session is made: the bridge's text is only the key that finds them. Two nodes of one op
  whose attributes differ only past the 6th digit cannot be told apart that way; that is refused at
  session creation with a clear error rather than run with a wrong value.
- It reads only int, float and string attributes and converts only some numpy dtypes (not float16 or
  bfloat16). List attributes come from the proto the same way. Half-precision inputs cross the bridge as
  float32: the session's copy of the graph gets a Cast to float32 before such a node and a Cast back
  after it. The kernels compute in float32 for every storage dtype and round the output once, so the
  result is the one the float16/bfloat16 kernel gives; the cost is the two extra copies.
"""

from __future__ import annotations

import sys

import warnings
from pathlib import Path

from ..errors import OpforgeError
from . import _lazy
from .schema import ELEM_TO_DTYPE, onnx_attr_value, onnx_supported

BRIDGE_DTYPES = ("float32", "float64", "int8", "uint8", "int32", "int64", "bool")
HALF_DTYPES = ("float16", "bfloat16")  # widened to float32 around the node (see the module docstring)
_BOUND: dict[str, object] = {}  # op id -> onnxruntime_extensions Opdef (registration is per process)
_EXACT: dict[str, dict[tuple, set]] = {}  # op id -> bridge key -> exact attribute tuples seen in models


def _render(a, value) -> str | None:
    """The text the bridge produces for an attribute (None: the bridge does not read this type)."""
    import numpy as np

    if a.type == "float":
        return "%g" % float(np.float32(value))
    if a.type in ("int", "bool"):
        return str(int(value))
    if a.type == "str":
        return value
    return None


def _bridge_attrs(decl):
    return [a for a in decl.attrs if a.type in ("int", "bool", "float", "str")]


def _key(decl, values: dict) -> tuple:
    return tuple(_render(a, values[a.name]) for a in _bridge_attrs(decl))


def _exact_values(decl, node) -> dict:
    """The node's attributes as ORT holds them (FLOAT is float32) in declaration terms."""
    import numpy as np

    onnx = _lazy.onnx()
    given = {p.name: onnx.helper.get_attribute_value(p) for p in node.attribute}
    values = {}
    for a in decl.attrs:
        v = given.get(a.name, a.default)
        if isinstance(v, bytes):
            v = v.decode()
        if a.type == "float":
            v = float(np.float32(v))  # what ORT stores; the kernel gets exactly this
        elif a.type == "list[float]":
            v = [float(np.float32(e)) for e in v]
        elif a.type == "bool":
            v = bool(v)
        values[a.name] = v
    return values


def _kernel(op):
    import torch

    decl = op.decl
    bridge = _bridge_attrs(decl)
    warned = []

    def run(*arrays, **texts):
        key = tuple(texts.get(a.name, "") for a in bridge)
        candidates = _EXACT.get(decl.id, {}).get(key, set())
        if len(candidates) == 1:
            values = dict(next(iter(candidates)))
        else:
            if len(candidates) > 1:
                raise RuntimeError(f"{decl.id}: attributes {key} match several nodes with different exact "
                                   "values; create the session with ops.onnx.ort_session")
            if not warned:  # a session made without ort_session: only the bridge's rounded text is known
                warnings.warn(f"{decl.id}: running in ORT without the model's exact attributes (use "
                              "ops.onnx.ort_session); float attributes are rounded to 6 digits", stacklevel=2)
                warned.append(True)
            values = {a.name: a.default for a in decl.attrs}
            for a in bridge:
                t = texts.get(a.name)
                if t not in (None, ""):
                    values[a.name] = {"float": float, "int": int, "bool": lambda s: bool(int(s)),
                                      "str": str}[a.type](t)
        tensors = [torch.from_numpy(x) if x.size else torch.empty(x.shape, dtype=torch.from_numpy(x).dtype)
                   for x in arrays]
        tensors += [None] * (len(decl.inputs) - len(tensors))
        try:
            with torch.inference_mode():
                out = op.torch_op(*tensors, *(values[a.name] for a in decl.attrs))
        except Exception as e:  # ORT's Python bridge aborts on any exception: say why first
            print(f"opforge: {decl.id} failed inside ONNX Runtime: {type(e).__name__}: {e}", file=sys.stderr,
                  flush=True)
            raise
        outs = out if isinstance(out, (tuple, list)) else (out,)
        results = tuple(o.contiguous().numpy() for o in outs)
        return results[0] if len(results) == 1 else results

    return run


def bind(op) -> None:
    """Register `op` with onnxruntime-extensions as 'ns::name' (the bridge puts it in domain `ns`)."""
    if op.id in _BOUND:
        return
    ext = _lazy.require("onnxruntime_extensions")
    P = ext.PyCustomOpDef
    dt = {"float32": P.dt_float, "float64": P.dt_double, "int8": P.dt_int8, "uint8": P.dt_uint8,
          "int32": P.dt_int32, "int64": P.dt_int64, "bool": P.dt_bool}
    decl = op.decl
    chosen = {}
    for i in decl.inputs:
        allowed = chosen[i.dtype_like] if i.dtype_like else next((d for d in i.dtypes if d in BRIDGE_DTYPES), None)
        if allowed is None:
            raise OpforgeError(f"{decl.id}: input '{i.name}' allows only {list(i.dtypes)}, none of which the "
                               "onnxruntime-extensions Python bridge converts. Fix: run it with a fallback "
                               "(export_onnx(..., fallback=True)) in plain ORT.")
        chosen[i.name] = allowed
    if any(i.optional for i in decl.inputs):
        raise OpforgeError(f"{decl.id}: the onnxruntime-extensions Python bridge has a fixed input count and "
                           "cannot bind optional inputs. Fix: use export_onnx(..., fallback=True) for ORT.")
    outputs = [dt[o.dtype] if o.dtype else dt[chosen[o.dtype_like]] for o in decl.outputs]
    attr_types = {"float": P.dt_float, "int": P.dt_int64, "bool": P.dt_int64, "str": P.dt_string}
    opdef = ext.Opdef.create(_kernel(op), op_type=f"{decl.namespace}::{decl.name}",
                             inputs=[dt[chosen[i.name]] for i in decl.inputs], outputs=outputs,
                             attrs={a.name: attr_types[a.type] for a in _bridge_attrs(decl)})
    opdef.cast_attributes = lambda texts: dict(texts)  # the kernel parses (and un-rounds) them itself
    _BOUND[op.id] = opdef


def _load(model):
    onnx = _lazy.onnx()
    if isinstance(model, (str, Path)):
        return onnx.load(str(model))
    if isinstance(model, bytes):
        return onnx.load_from_string(model)
    return model


def _input_dtypes(m) -> dict[str, str]:
    types = {}
    for v in list(m.graph.input) + list(m.graph.value_info) + list(m.graph.output):
        if v.type.HasField("tensor_type"):
            types[v.name] = ELEM_TO_DTYPE.get(v.type.tensor_type.elem_type, "?")
    for init in m.graph.initializer:
        types[init.name] = ELEM_TO_DTYPE.get(init.data_type, "?")
    return types


def _widen_half_precision(m, node, op, types) -> list:
    """Casts that let a float16/bfloat16 node run through the float32-only bridge: returns the nodes to
    put before `node` (its half inputs cast to float32) and after it (outputs whose dtype follows those
    inputs cast back), rewiring `node` in place."""
    onnx = _lazy.onnx()
    before, after, half_inputs = [], [], {}
    for k, name in enumerate(node.input):
        if name and types.get(name) in HALF_DTYPES:
            wide = f"{name}__opforge_f32_{node.name or id(node)}"
            before.append(onnx.helper.make_node("Cast", [name], [wide], to=onnx.TensorProto.FLOAT))
            half_inputs[op.decl.inputs[k].name] = types[name]
            node.input[k] = wide
    for k, out in enumerate(op.decl.outputs):
        if k < len(node.output) and node.output[k] and out.dtype_like in half_inputs:
            name = node.output[k]
            node.output[k] = f"{name}__opforge_f32"
            elem = onnx.TensorProto.FLOAT16 if half_inputs[out.dtype_like] == "float16" else onnx.TensorProto.BFLOAT16
            after.append(onnx.helper.make_node("Cast", [node.output[k]], [name], to=elem))
    return before, after


def prepare(model) -> tuple:
    """Bind every opforge op the model uses, record its nodes' exact attributes, and widen half-precision
    nodes for the bridge. Returns (the ModelProto to run, ops used); the caller's model is not modified."""
    from ..registry import all_ops

    onnx = _lazy.onnx()
    m = onnx.ModelProto()
    m.CopyFrom(_load(model))
    by_key = {(op.decl.namespace, op.decl.name): op for op in all_ops() if onnx_supported(op.decl)}
    types = _input_dtypes(m)
    used, nodes = {}, []
    for original in m.graph.node:
        node = onnx.NodeProto()
        node.CopyFrom(original)  # rewired below; the graph's node list is rebuilt from these copies
        op = by_key.get((node.domain, node.op_type))
        if op is None:
            nodes.append(node)
            continue
        bad = [(n, types[n]) for n in node.input
               if n and types.get(n) not in (None, *BRIDGE_DTYPES, *HALF_DTYPES)]
        if bad:
            raise OpforgeError(f"{op.id} (node '{node.name}'): input {bad[0][0]!r} is {bad[0][1]}, which the "
                               "onnxruntime-extensions Python bridge cannot convert (it supports numpy dtypes: "
                               f"{', '.join(BRIDGE_DTYPES)}, plus float16/bfloat16 widened to float32). Fix: run "
                               "that dtype through torch, or export with fallback=True and use plain ORT.")
        bind(op)
        values = _exact_values(op.decl, node)
        exact = tuple((a.name, tuple(v) if isinstance(v := values[a.name], list) else v) for a in op.decl.attrs)
        bucket = _EXACT.setdefault(op.id, {}).setdefault(_key(op.decl, values), set())
        bucket.add(exact)
        if len(bucket) > 1:
            bucket.discard(exact)
            raise OpforgeError(
                f"{op.id} (node '{node.name}'): its attributes {dict(exact)} and those of another node "
                f"{dict(next(iter(bucket)))} look the same to the onnxruntime-extensions bridge (it passes "
                "floats with 6 significant digits and no list attributes), so ORT could not tell which exact "
                "values to use. Fix: run these models in separate processes, or make the values differ within "
                "6 significant digits.")
        before, after = _widen_half_precision(m, node, op, types)
        nodes += [*before, node, *after]
        used[op.id] = op
    if len(nodes) != len(m.graph.node):
        del m.graph.node[:]
        m.graph.node.extend(nodes)
    return m, list(used.values())


def ort_session(model, providers=("CPUExecutionProvider",), session_options=None, bind_ops: bool = True):
    """An InferenceSession for `model` with every opforge op bound to its compiled kernel. With
    bind_ops=False nothing is bound (a graph exported with fallback=True then runs on its functions)."""
    ort = _lazy.require("onnxruntime")
    m, used = prepare(model) if bind_ops else (_load(model), [])
    options = session_options or ort.SessionOptions()
    if any(op.decl.kernel_dir is not None for op in used):
        # An exception inside the onnxruntime-extensions callback terminates the process, so a missing or
        # stale ops._C must surface here, as ExtensionError with the rebuild command, not at run().
        from ..extension import load
        from ..packages import package

        for name in sorted({op.decl.package for op in used if op.decl.kernel_dir is not None}):
            load(package(name), strict=True)
    if used:
        ext = _lazy.require("onnxruntime_extensions")
        options.register_custom_ops_library(ext.get_library_path())
    return ort.InferenceSession(m.SerializeToString(), options, providers=list(providers))
