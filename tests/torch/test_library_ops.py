"""Every compiled op, generated over the registry × device × dtype: numerics against the reference,
non-contiguous and empty inputs, opcheck, export with dynamic dims, and bad inputs."""

import pytest
import torch

import ops
from ops.check.compare import compare
from ops.check.oracle import as_tuple, reference_outputs, samples
from ops.extension import status
from ops.registry import library_ops

OPS = library_ops()
IDS = [op.id for op in OPS]
DEVICES = ["cpu", pytest.param("cuda", marks=pytest.mark.skipif(not torch.cuda.is_available(),
                                                                  reason="no CUDA device on this machine"))]
pytestmark = pytest.mark.skipif(not status()["loaded"], reason=f"ops._C not loaded: {status()['error']}")


def cases(op):
    return [(op, dt) for dt in op.decl.dtypes]


ALL = [pytest.param(op, dt, id=f"{op.decl.name}-{dt}") for op in OPS for dt in op.decl.dtypes]


def assert_matches_reference(op, sample, dtype_name, make_input=lambda t: t):
    inputs = tuple(make_input(t) for t in sample.inputs)
    actual = as_tuple(op(*inputs, **sample.attrs))
    expected = reference_outputs(op, sample)
    rtol, atol = op.decl.tolerance(dtype_name)
    for a, e in zip(actual, expected):
        assert a.dtype == sample.inputs[0].dtype
        m = compare(a, e, rtol, atol)
        assert m["ok"], (op.id, dtype_name, list(a.shape), m)


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("op, dtype", ALL)
def test_matches_reference(op, dtype, device):
    for sample in samples(op, device, dtype):
        assert_matches_reference(op, sample, dtype)


def _non_contiguous(t):
    """Same values, every stride doubled: a strided view into a buffer twice the size."""
    if t.dim() == 0 or t.numel() == 0:
        return t
    big = torch.zeros(*t.shape[:-1], t.shape[-1] * 2, dtype=t.dtype, device=t.device)
    view = big[..., ::2]
    view.copy_(t)
    assert not view.is_contiguous() or t.shape[-1] == 1  # size-1 dims make any stride contiguous
    return view


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("op, dtype", ALL)
def test_non_contiguous_inputs(op, dtype, device):
    for sample in samples(op, device, dtype):
        assert_matches_reference(op, sample, dtype, make_input=_non_contiguous)
    x = samples(op, device, dtype)[0]
    if x.inputs[0].dim() >= 2:  # a transposed input, too
        t = x.inputs[0].transpose(0, 1).contiguous().transpose(0, 1)
        assert not t.is_contiguous() or t.shape[0] == 1
        assert_matches_reference(op, ops.Sample(t, *x.inputs[1:], **x.attrs), dtype)


@pytest.mark.parametrize("op", OPS, ids=IDS)
def test_empty_inputs_give_empty_outputs(op):
    empties = [s for s in samples(op, "cpu", "float32") if s.inputs[0].numel() == 0]
    assert empties, f"{op.id} declares no empty sample"
    for s in empties:
        out = as_tuple(op(*s.inputs, **s.attrs))
        assert all(o.numel() == 0 for o in out)


@pytest.mark.parametrize("op", OPS, ids=IDS)
def test_opcheck(op):
    for dtype in op.decl.dtypes:
        for sample in samples(op, "cpu", dtype):
            args = tuple(t.requires_grad_() if t.is_floating_point() else t for t in sample.inputs)
            torch.library.opcheck(op.torch_op, args, sample.attrs)


@pytest.mark.parametrize("op", OPS, ids=IDS)
def test_backward_matches_autograd_through_the_reference(op):
    sample = samples(op, "cpu", "float32")[0]
    a = [t.clone().double().requires_grad_() for t in sample.inputs]
    b = [t.clone().requires_grad_() for t in sample.inputs]
    ref = op.reference(*a, **sample.attrs)
    out = op(*b, **sample.attrs)
    g = torch.randn_like(out)
    grads_ref = torch.autograd.grad(ref, a, g.double())
    grads = torch.autograd.grad(out, b, g)
    for x, y in zip(grads, grads_ref):
        torch.testing.assert_close(x.double(), y, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("op", OPS, ids=IDS)
def test_torch_export_keeps_dynamic_dims(op):
    sample = samples(op, "cpu", "float32")[1]
    n = len(sample.inputs)

    class M(torch.nn.Module):
        def forward(self, *inputs):
            return op(*inputs, **sample.attrs)

    batch = torch.export.Dim("batch", min=1, max=1024)
    shapes = tuple({0: batch} if i == 0 else None for i in range(n))
    ep = torch.export.export(M(), sample.inputs, dynamic_shapes=(shapes,))  # one varargs entry
    node = next(nd for nd in ep.graph.nodes if nd.op == "call_function" and op.decl.name in str(nd.target))
    out_shape = node.meta["val"].shape
    assert isinstance(out_shape[0], torch.SymInt), out_shape
    bigger = tuple(torch.cat([t] * 3) if i == 0 else t for i, t in enumerate(sample.inputs))
    torch.testing.assert_close(ep.module()(*bigger), op(*bigger, **sample.attrs))


@pytest.mark.parametrize("op", OPS, ids=IDS)
def test_torch_compile(op):
    sample = samples(op, "cpu", "float32")[0]
    compiled = torch.compile(lambda *t: op(*t, **sample.attrs), backend="aot_eager", fullgraph=True)
    torch.testing.assert_close(compiled(*sample.inputs), op(*sample.inputs, **sample.attrs))
