"""Run an ONNX graph node by node with torch kernels, at exactly the dtypes the graph declares.

Why not ONNX Runtime: its CPU provider runs most float16 nodes through float32 kernels (it inserts Casts
itself), so a float16 graph measured there hides what half arithmetic does. torch has half kernels on CPU
and CUDA, and opforge nodes run through `torch.ops.<ns>.<name>`, i.e. the op's own compiled kernels on half
inputs. The same runner measures one node alone in half (ops.precision) and runs a whole mixed-precision
graph on a GPU (benchmarks/gpu_check_precision.py).

Only the standard ops listed in HANDLERS are known; any other node raises OpforgeError naming it."""

from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F

from ..core import lazy
from ..core.errors import OpforgeError
from ..core.registry import all_ops

# ONNX TensorProto element type -> torch dtype name
ONNX_TO_TORCH = {
    1: "float32",
    2: "uint8",
    3: "int8",
    5: "int16",
    6: "int32",
    7: "int64",
    9: "bool",
    10: "float16",
    11: "float64",
    16: "bfloat16",
}


def torch_dtype_of(elem_type: int):
    if elem_type not in ONNX_TO_TORCH:
        raise OpforgeError(
            f"ONNX element type {elem_type} has no torch dtype here. Fix: keep such tensors out of "
            "the graph given to ops.precision."
        )
    return getattr(torch, ONNX_TO_TORCH[elem_type])


def attributes(node) -> dict:
    onnx = lazy.onnx()

    out = {}
    for a in node.attribute:
        v = onnx.helper.get_attribute_value(a)
        if isinstance(v, bytes):
            v = v.decode()
        elif isinstance(v, list) and v and isinstance(v[0], bytes):
            v = [s.decode() for s in v]
        out[a.name] = v
    return out


def tensor_from_proto(proto, device="cpu"):
    numpy_helper = lazy.onnx().numpy_helper

    array = numpy_helper.to_array(proto)
    if proto.data_type == 16:  # bfloat16: numpy has none; ml_dtypes arrays go through their bits
        return torch.from_numpy(np.ascontiguousarray(array).view(np.int16)).view(torch.bfloat16).to(device)
    return torch.from_numpy(np.array(array, copy=True)).to(device)


# ---------------------------------------------------------------------------------------------- handlers
def _ints(t):
    return [int(v) for v in t.flatten().tolist()]


def _axes(a, inputs, index):
    """Reduce/Squeeze axes: an attribute before opset 13/18, the optional input `index` after."""
    if len(inputs) > index and inputs[index] is not None and inputs[index].numel():
        return _ints(inputs[index])
    return a.get("axes")


def _reduce(fn):
    def run(a, x, *rest):
        axes = _axes(a, (x, *rest), 1)
        keep = bool(a.get("keepdims", 1))
        if not axes:
            if a.get("noop_with_empty_axes", 0):
                return x
            axes = list(range(x.dim()))
        return fn(x, axes, keep)

    return run


def _conv(a, x, w, b=None):
    nd = x.dim() - 2
    if a.get("auto_pad", "NOTSET") not in ("NOTSET", "VALID"):
        raise OpforgeError(
            f"Conv auto_pad={a['auto_pad']} is not supported by ops.precision's torch runner. "
            "Fix: export with explicit pads (torch.onnx does)."
        )
    pads = a.get("pads", [0] * 2 * nd)
    begin, end = pads[:nd], pads[nd:]
    if begin != end:
        spec = []
        for lo, hi in zip(reversed(begin), reversed(end)):
            spec += [lo, hi]
        x, begin = F.pad(x, spec), [0] * nd
    conv = (F.conv1d, F.conv2d, F.conv3d)[nd - 1]
    return conv(
        x, w, b, stride=a.get("strides", 1), padding=begin, dilation=a.get("dilations", 1), groups=a.get("group", 1)
    )


def _pool(kind):
    def run(a, x):
        nd = x.dim() - 2
        kernel = a["kernel_shape"]
        pads = a.get("pads", [0] * 2 * nd)
        if pads[:nd] != pads[nd:]:
            raise OpforgeError(f"{kind}Pool with asymmetric pads is not supported by ops.precision's torch runner.")
        if kind == "Max":
            f = (F.max_pool1d, F.max_pool2d, F.max_pool3d)[nd - 1]
            return f(
                x,
                kernel,
                a.get("strides", kernel),
                pads[:nd],
                a.get("dilations", 1),
                ceil_mode=bool(a.get("ceil_mode", 0)),
            )
        f = (F.avg_pool1d, F.avg_pool2d, F.avg_pool3d)[nd - 1]
        return f(
            x,
            kernel,
            a.get("strides", kernel),
            pads[:nd],
            ceil_mode=bool(a.get("ceil_mode", 0)),
            count_include_pad=bool(a.get("count_include_pad", 0)),
        )

    return run


def _gemm(a, x, w, c=None):
    x = x.t() if a.get("transA", 0) else x
    w = w.t() if a.get("transB", 0) else w
    y = torch.matmul(x, w) * a.get("alpha", 1.0) if a.get("alpha", 1.0) != 1.0 else torch.matmul(x, w)
    if c is not None:
        y = y + (c * a.get("beta", 1.0) if a.get("beta", 1.0) != 1.0 else c)
    return y


def _slice(a, x, starts, ends, axes=None, steps=None):
    starts, ends = _ints(starts), _ints(ends)
    axes = _ints(axes) if axes is not None else list(range(len(starts)))
    steps = _ints(steps) if steps is not None else [1] * len(starts)
    index = [slice(None)] * x.dim()
    for s, e, ax, st in zip(starts, ends, axes, steps):
        if st < 0:
            raise OpforgeError("Slice with negative steps is not supported by ops.precision's torch runner.")
        n = x.shape[ax]
        s = max(0, min(n, s + n if s < 0 else s))
        e = max(0, min(n, e + n if e < 0 else e))
        index[ax] = slice(s, e, st)
    return x[tuple(index)]


def _split(a, x, split=None):
    axis = a.get("axis", 0)
    sizes = _ints(split) if split is not None else a.get("split")
    if sizes is None:
        parts = a.get("num_outputs")
        return torch.tensor_split(x, parts, dim=axis) if parts else None
    return torch.split(x, sizes, dim=axis)


def _reshape(a, x, shape):
    shape = _ints(shape)
    if not a.get("allowzero", 0):
        shape = [x.shape[i] if s == 0 else s for i, s in enumerate(shape)]
    return x.reshape(shape)


def _layer_norm(a, x, scale, bias=None):
    axis = a.get("axis", -1) % x.dim()
    return F.layer_norm(x, x.shape[axis:], scale, bias, a.get("epsilon", 1e-5))


def _handlers() -> dict:
    def unary(f):
        return lambda a, x: f(x)

    def binary(f):
        return lambda a, x, y: f(x, y)

    def div(a, x, y):
        return torch.div(x, y, rounding_mode="trunc") if not x.is_floating_point() else x / y

    def cast(a, x):
        return x.to(torch_dtype_of(a["to"]))

    def constant(a):
        if "value" in a:
            return tensor_from_proto(a["value"])
        for key, dtype in (
            ("value_float", torch.float32),
            ("value_int", torch.int64),
            ("value_floats", torch.float32),
            ("value_ints", torch.int64),
        ):
            if key in a:
                return torch.tensor(a[key], dtype=dtype)
        raise OpforgeError(f"Constant with attributes {sorted(a)} is not supported by ops.precision's torch runner.")

    def constant_of_shape(a, shape):
        value = tensor_from_proto(a["value"]) if "value" in a else torch.zeros(1)
        return torch.full(_ints(shape), value.item(), dtype=value.dtype, device=shape.device)

    def gather(a, x, idx):
        axis = a.get("axis", 0)
        idx = torch.where(idx < 0, idx + x.shape[axis], idx)
        return torch.index_select(x, axis, idx.flatten()).reshape(
            x.shape[: axis % x.dim()] + idx.shape + x.shape[axis % x.dim() + 1 :]
        )

    def shape(a, x):
        dims = list(x.shape)
        return torch.tensor(dims[a.get("start", 0) : a.get("end", len(dims))], dtype=torch.int64, device=x.device)

    def expand(a, x, s):
        return x * torch.ones(_ints(s), dtype=x.dtype, device=x.device)

    def softmax(f):
        return lambda a, x: f(x, dim=a.get("axis", -1))

    def clip(a, x, lo=None, hi=None):
        return torch.clamp(x, lo if lo is None else lo.item(), hi if hi is None else hi.item())

    def gelu(a, x):
        return F.gelu(x, approximate=a.get("approximate", "none"))

    def transpose(a, x):
        return x.permute(a.get("perm", list(range(x.dim() - 1, -1, -1))))

    def unsqueeze(a, x, axes=None):
        axes = sorted(d % (x.dim() + len(_axes(a, (x, axes), 1))) for d in _axes(a, (x, axes), 1))
        for d in axes:
            x = x.unsqueeze(d)
        return x

    def squeeze(a, x, axes=None):
        axes = _axes(a, (x, axes), 1)
        return x.squeeze(tuple(axes)) if axes else x.squeeze()

    def flatten(a, x):
        axis = a.get("axis", 1) % (x.dim() or 1)
        return x.reshape(int(math.prod(x.shape[:axis])), -1)

    def batch_norm(a, x, scale, bias, mean, var):
        return F.batch_norm(x, mean, var, scale, bias, False, 0.0, a.get("epsilon", 1e-5))

    def where(a, c, x, y):
        return torch.where(c, x, y)

    def range_(a, start, limit, delta):
        return torch.arange(start.item(), limit.item(), delta.item(), dtype=start.dtype, device=start.device)

    def pow_(a, x, y):
        return torch.pow(x, y.to(x.dtype) if y.is_floating_point() else y).to(x.dtype)

    return {
        "Identity": unary(lambda x: x),
        "Dropout": lambda a, x, *r: x,
        "Cast": cast,
        "Constant": constant,
        "ConstantOfShape": constant_of_shape,
        "Shape": shape,
        "Size": lambda a, x: torch.tensor(x.numel()),
        "Add": binary(torch.add),
        "Sub": binary(torch.sub),
        "Mul": binary(torch.mul),
        "Div": div,
        "Pow": pow_,
        "Max": lambda a, *xs: _fold(torch.maximum, xs),
        "Min": lambda a, *xs: _fold(torch.minimum, xs),
        "Sum": lambda a, *xs: _fold(torch.add, xs),
        "Sqrt": unary(torch.sqrt),
        "Reciprocal": unary(torch.reciprocal),
        "Exp": unary(torch.exp),
        "Log": unary(torch.log),
        "Tanh": unary(torch.tanh),
        "Sigmoid": unary(torch.sigmoid),
        "Relu": unary(torch.relu),
        "Erf": unary(torch.erf),
        "Neg": unary(torch.neg),
        "Abs": unary(torch.abs),
        "Sin": unary(torch.sin),
        "Cos": unary(torch.cos),
        "Floor": unary(torch.floor),
        "Ceil": unary(torch.ceil),
        "Not": unary(torch.logical_not),
        "Softplus": unary(F.softplus),
        "Gelu": gelu,
        "LeakyRelu": lambda a, x: F.leaky_relu(x, a.get("alpha", 0.01)),
        "HardSigmoid": lambda a, x: torch.clamp(x * a.get("alpha", 0.2) + a.get("beta", 0.5), 0, 1),
        "Equal": binary(torch.eq),
        "Less": binary(torch.lt),
        "Greater": binary(torch.gt),
        "LessOrEqual": binary(torch.le),
        "GreaterOrEqual": binary(torch.ge),
        "And": binary(torch.logical_and),
        "Or": binary(torch.logical_or),
        "Where": where,
        "Clip": clip,
        "MatMul": binary(torch.matmul),
        "Gemm": _gemm,
        "Conv": _conv,
        "MaxPool": _pool("Max"),
        "AveragePool": _pool("Average"),
        "GlobalAveragePool": lambda a, x: x.mean(tuple(range(2, x.dim())), keepdim=True),
        "GlobalMaxPool": lambda a, x: x.amax(tuple(range(2, x.dim())), keepdim=True),
        "BatchNormalization": batch_norm,
        "LayerNormalization": _layer_norm,
        "Softmax": softmax(torch.softmax),
        "LogSoftmax": softmax(torch.log_softmax),
        "ReduceMean": _reduce(lambda x, ax, k: x.mean(ax, keepdim=k)),
        "ReduceSum": _reduce(lambda x, ax, k: x.sum(ax, keepdim=k)),
        "ReduceMax": _reduce(lambda x, ax, k: x.amax(ax, keepdim=k)),
        "ReduceMin": _reduce(lambda x, ax, k: x.amin(ax, keepdim=k)),
        "ReduceSumSquare": _reduce(lambda x, ax, k: (x * x).sum(ax, keepdim=k)),
        "ReduceL2": _reduce(lambda x, ax, k: (x * x).sum(ax, keepdim=k).sqrt()),
        "Transpose": transpose,
        "Reshape": _reshape,
        "Flatten": flatten,
        "Squeeze": squeeze,
        "Unsqueeze": unsqueeze,
        "Concat": lambda a, *xs: torch.cat(xs, dim=a["axis"]),
        "Split": _split,
        "Slice": _slice,
        "Gather": gather,
        "Expand": expand,
        "Range": range_,
        "Tile": lambda a, x, r: x.repeat(_ints(r)),
        "Mod": lambda a, x, y: torch.fmod(x, y) if a.get("fmod", 0) else torch.remainder(x, y),
        "Trilu": lambda a, x, k=None: (torch.triu if a.get("upper", 1) else torch.tril)(
            x, int(k.item()) if k is not None else 0
        ),
        "CumSum": lambda a, x, ax: torch.cumsum(x, int(ax.item())),
    }


def _fold(f, xs):
    out = xs[0]
    for x in xs[1:]:
        out = f(out, x)
    return out


_HANDLERS: dict | None = None


def handlers() -> dict:
    global _HANDLERS
    if _HANDLERS is None:
        _HANDLERS = _handlers()
    return _HANDLERS


def custom_op(node):
    """The registered opforge op behind a custom-domain node, or None."""
    for op in all_ops():
        if op.decl.namespace == node.domain and op.decl.name == node.op_type:
            return op
    return None


def run_node(node, inputs: list):
    """Outputs of one node (a list, one tensor per node output) for torch `inputs` (None = absent)."""
    a = attributes(node)
    if node.domain not in ("", "ai.onnx"):
        op = custom_op(node)
        if op is None:
            raise OpforgeError(
                f"node {node.name!r} is {node.domain}::{node.op_type}, which is not a registered opforge "
                "op. Fix: import the op package that declares it before running ops.precision."
            )
        args = list(inputs) + [None] * (len(op.decl.inputs) - len(inputs))
        values = [a.get(attr.name, attr.default) for attr in op.decl.attrs]
        out = op.torch_op(*args, *values)
    else:
        fn = handlers().get(node.op_type)
        if fn is None:
            raise OpforgeError(
                f"node {node.name!r} ({node.op_type}) is not supported by ops.precision's torch runner. "
                "Fix: add a handler in ops/precision/torch_eval.py, or keep that op out of the model."
            )
        while inputs and inputs[-1] is None:  # trailing absent optionals
            inputs = inputs[:-1]
        out = fn(a, *inputs)
    outs = list(out) if isinstance(out, (list, tuple)) else [out]
    return outs[: len(node.output)]


class TorchGraphRunner:
    """Evaluates an onnx.ModelProto's main graph with torch on `device`; initializers are loaded once."""

    def __init__(self, model, device="cpu"):
        self.model, self.device = model, device
        self.weights = {t.name: tensor_from_proto(t, device) for t in model.graph.initializer}

    def run(self, feeds: dict, keep_all: bool = False) -> dict:
        """{graph output name: tensor}, or every value when keep_all (graph inputs and weights excluded)."""
        env = dict(self.weights)
        env.update({k: v.to(self.device) for k, v in feeds.items()})
        produced = {}
        with torch.inference_mode():
            for node in self.model.graph.node:
                ins = [env[n] if n else None for n in node.input]
                for name, value in zip(node.output, run_node(node, ins)):
                    if name:
                        # Constant nodes and shape arithmetic make CPU tensors: every value lives on the
                        # runner's device, so a node never mixes devices.
                        if isinstance(value, torch.Tensor) and value.device.type != torch.device(self.device).type:
                            value = value.to(self.device)
                        env[name] = value
                        produced[name] = value
        if keep_all:
            return produced
        return {o.name: env[o.name] for o in self.model.graph.output}
