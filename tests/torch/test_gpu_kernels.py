"""CUDA kernel paths the samples do not reach (GPU only; skipped without a CUDA device).

- Misaligned inputs: the CUDA kernels take a 16-byte vectorized path only when every pointer is 16-byte
  aligned (opforge::cuda::pack_aligned in csrc/opforge/kernel_cuda.cuh); a view at element offset 1 of a
  larger buffer is contiguous but not aligned, so it takes the scalar path.
- Past the launch caps: scaled_gelu launches at most kMaxBlocks = 4096 blocks of 256 threads and loops
  (grid-stride) beyond that, i.e. past 4096 * 256 = 1,048,576 work items (packs of 4 float32 / 8 half
  when vectorized, elements otherwise); rms_norm caps a block at kMaxThreads = 1024 threads, looping along
  a row longer than that (in packs or elements). rms_norm's grid cap (2^31 - 1 blocks of 8 rows) cannot be
  passed under 2 GB, so its tests exceed the thread cap instead."""

import pytest
import torch
from op_cases import generated_ops, is_empty, message, op_param

import ops
from ops.check.compare import compare
from ops.check.oracle import as_tuple, reference_outputs, samples

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device on this machine")
COMPILED = [op for op in generated_ops() if op.decl.kernel_dir is not None and "cuda" in op.decl.devices]
CASES = [pytest.param(op, dt, id=f"{op.id}-{dt}", marks=op_param(op).marks) for op in COMPILED for dt in op.decl.dtypes]


def misaligned(t):
    """The same values in a contiguous view at element offset 1 of a larger buffer (not 16-byte aligned)."""
    if t is None or t.numel() == 0:
        return t
    buf = torch.empty(t.numel() + 1, dtype=t.dtype, device=t.device)
    view = buf[1:].view(t.shape)
    view.copy_(t)
    assert view.is_contiguous() and view.data_ptr() % 16 != 0
    return view


def _check(op, sample, dtype, label):
    actual = as_tuple(op(*sample.inputs, **sample.attrs))
    rtol, atol = op.decl.tolerance(dtype)
    for a, e in zip(actual, reference_outputs(op, sample)):
        m = compare(a, e, rtol, atol)
        assert m["ok"], message(op, dtype, label, sample.inputs[0].shape, m)


@pytest.mark.parametrize("op, dtype", CASES)
def test_misaligned_inputs(op, dtype):
    for sample in samples(op, "cuda", dtype):
        if is_empty(sample):
            continue
        for k in range(len(sample.inputs)):  # each input misaligned alone, then all of them
            inputs = [misaligned(t) if j == k else t for j, t in enumerate(sample.inputs)]
            _check(op, ops.Sample(*inputs, **sample.attrs), dtype, f"input {k} misaligned")
        _check(op, ops.Sample(*[misaligned(t) for t in sample.inputs], **sample.attrs), dtype, "all misaligned")


def _op_or_skip(op_id):
    if op_id not in {op.id for op in COMPILED}:
        pytest.skip(f"{op_id} is not among the selected ops (--op)")
    return ops.get_op(op_id)


@pytest.mark.parametrize("dtype", ["float32", "float16", "bfloat16"])
def test_scaled_gelu_past_the_block_cap(dtype):
    op = _op_or_skip("opforge::scaled_gelu")
    n = 3 * 2**22 + 5  # > 4096 blocks * 256 threads even in packs of 8 halves; odd: a scalar tail
    assert n // 8 > 4096 * 256
    g = torch.Generator(device="cuda").manual_seed(0)
    x = (torch.randn(n, device="cuda", generator=g) * 3).to(getattr(torch, dtype))
    for inputs in ((x,), (misaligned(x),)):  # vectorized and scalar paths
        for approximate in ("none", "tanh"):
            s = ops.Sample(*inputs, alpha=1.25, approximate=approximate)
            _check(op, s, dtype, f"n={n}, {approximate}, aligned={inputs[0].data_ptr() % 16 == 0}")
            y = op(*s.inputs, **s.attrs)
            tail = reference_outputs(op, ops.Sample(inputs[0][-1000:], **s.attrs))[0]  # the last grid-stride pass
            torch.testing.assert_close(
                y[-1000:].float(), tail.float(), **dict(zip(("rtol", "atol"), op.decl.tolerance(dtype)))
            )
    del x
    torch.cuda.empty_cache()


@pytest.mark.parametrize("dtype", ["float32", "float16", "bfloat16"])
@pytest.mark.parametrize("cols", [3 * 8192 + 8, 3 * 8192 + 7])  # vectorized (cols % 8 == 0) / scalar
def test_rms_norm_rows_longer_than_a_block(dtype, cols):
    op = _op_or_skip("opforge::rms_norm")
    assert cols // 8 > 1024  # more packs than kMaxThreads threads: each thread loops along the row
    g = torch.Generator(device="cuda").manual_seed(0)
    t = getattr(torch, dtype)
    x = torch.randn(37, cols, device="cuda", generator=g).to(t)
    w = (1 + 0.1 * torch.randn(cols, device="cuda", generator=g)).to(t)
    _check(op, ops.Sample(x, w), dtype, f"cols={cols}")
    _check(op, ops.Sample(misaligned(x), misaligned(w)), dtype, f"cols={cols}, misaligned")
    rows = 300_001  # many short rows: 37,501 blocks of 8 warps, a ragged last block
    x = torch.randn(rows, 32, device="cuda", generator=g).to(t)
    _check(op, ops.Sample(x, torch.ones(32, device="cuda", dtype=t)), dtype, f"rows={rows}")
