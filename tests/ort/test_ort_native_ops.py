"""Every library op through its native ORT op, for every dtype it declares (float16 and bfloat16 computed
natively, no widening) and every sample: the same kernel as the torch op, so the outputs are equal bit for
bit, and within the dtype's tolerance of the reference. The CUDA execution-provider variants run the same
samples where onnxruntime has that provider and a GPU is present (see CUDA_EP_MISSING for where it is not).
Fixture ops without kernels run in ORT only on their fallback body."""

from pathlib import Path

import numpy as np
import pytest
import torch

import ops
from ops.check.oracle import reference_outputs, samples
from ops.core.errors import OpforgeError
from ops.core.registry import library_ops
from ops.onnx import export_onnx, ort_session
from ops.onnx.models import run_session, single_op_module

CASES = [(op, dtype) for op in library_ops() if op.decl.onnx for dtype in op.decl.dtypes]  # onnx=False: no node
CUDA_CASES = [(op, dtype) for op, dtype in CASES if "cuda" in op.decl.devices]


def _cuda_ep_missing() -> str | None:
    """Why the CUDA EP variants cannot run here, or None."""
    import onnxruntime as ort

    if not torch.cuda.is_available():
        return "no CUDA device here: the ORT CUDA EP variants run only on a GPU machine"
    if "CUDAExecutionProvider" not in ort.get_available_providers():
        # The GPU machine's onnxruntime is the CPU wheel, and onnxruntime-gpu (with its CUDA/cuDNN
        # libraries) is too big to carry there: on it this test skips, and the CUDA EP variants are only
        # compiled and listed (tests/ort/test_ort_library.py), never run.
        return (
            f"onnxruntime {ort.__version__} here is CPU-only (providers: {', '.join(ort.get_available_providers())})"
            " and onnxruntime-gpu is too big to carry to this machine: the CUDA EP variants are compiled, not run"
        )
    return None


CUDA_EP_MISSING = _cuda_ep_missing()


def _exact_float_attrs(attrs: dict) -> dict:
    """ONNX FLOAT attributes are float32: the torch op gets the value the model holds."""
    return {k: float(np.float32(v)) if isinstance(v, float) else v for k, v in attrs.items()}


@pytest.mark.parametrize("op,dtype", CASES, ids=[f"{op.id}-{d}" for op, d in CASES])
def test_every_sample_matches_the_torch_op_bit_for_bit(op, dtype, tmp_path, library):
    rtol, atol = op.decl.tolerance(dtype)
    for k, sample in enumerate(samples(op, "cpu", dtype)):
        path = tmp_path / f"{k}.onnx"
        export_onnx(single_op_module(op, sample.attrs), sample.inputs, path, opset=17)
        got = run_session(ort_session(path), sample.inputs)
        with torch.inference_mode():
            same_kernel = op(*sample.inputs, **_exact_float_attrs(sample.attrs))
        want = reference_outputs(op, sample)
        for g, s, w in zip(got, (same_kernel,) if torch.is_tensor(same_kernel) else same_kernel, want):
            assert g.dtype == s.dtype and g.shape == s.shape, (k, g.dtype, g.shape)  # int outputs stay int
            assert torch.equal(g, s), f"sample {k}: ORT differs from the torch op (same kernel)"
            torch.testing.assert_close(g.float(), w.float(), rtol=rtol, atol=atol, equal_nan=True)


@pytest.mark.skipif(CUDA_EP_MISSING is not None, reason=str(CUDA_EP_MISSING))
@pytest.mark.parametrize("op,dtype", CUDA_CASES, ids=[f"{op.id}-{d}" for op, d in CUDA_CASES])
def test_every_sample_on_the_cuda_execution_provider(op, dtype, tmp_path, library):
    """The CUDA EP variants (the op's CUDA kernel, on ORT's stream): every sample within the dtype's tolerance
    of the reference, and ORT's profile shows the node ran on the CUDA provider, not on a CPU fallback."""
    import json

    import onnxruntime as ort

    assert library.with_cuda, "onnxruntime has the CUDA EP but the library was built without its CUDA variants"
    rtol, atol = op.decl.tolerance(dtype)
    for k, sample in enumerate(samples(op, "cpu", dtype)):
        path = tmp_path / f"{k}.onnx"
        export_onnx(single_op_module(op, sample.attrs), sample.inputs, path, opset=17)
        options = ort.SessionOptions()
        options.enable_profiling = True
        options.profile_file_prefix = str(tmp_path / f"profile{k}")
        session = ort_session(path, providers=("CUDAExecutionProvider",), session_options=options)
        got = run_session(session, sample.inputs)
        events = json.loads(Path(session.end_profiling()).read_text())
        ran_on = {
            e["args"].get("provider")
            for e in events
            if e.get("cat") == "Node" and e.get("args", {}).get("op_name") == op.decl.name
        }
        assert ran_on == {"CUDAExecutionProvider"}, (k, ran_on)
        for g, w in zip(got, reference_outputs(op, sample)):
            assert g.is_floating_point() == w.is_floating_point() and (g.is_floating_point() or g.dtype == w.dtype)
            assert g.shape == w.shape, (k, g.shape, w.shape)
            torch.testing.assert_close(g.float(), w.float(), rtol=rtol, atol=atol, equal_nan=True)


def test_float_attributes_arrive_exactly(tmp_path):
    """A FLOAT attribute reaches the kernel as the float32 the model holds: eps's 7th digit shows."""
    rms = ops.get_op("opforge::rms_norm")
    x, w = torch.randn(4, 16) * 1e-4, torch.ones(16)  # x^2 ~ eps
    export_onnx(single_op_module(rms, {"eps": 1.2345678e-7}), (x, w), tmp_path / "r.onnx", opset=20)
    (got,) = run_session(ort_session(tmp_path / "r.onnx"), (x, w))
    assert torch.equal(got, rms(x, w, eps=float(np.float32(1.2345678e-7))))
    assert not torch.equal(got, rms(x, w, eps=1.23457e-7))  # 6-digit rounding would show


@pytest.mark.parametrize("op_id", ["opforge_fixture::masked_scale", "opforge_fixture::row_absmax"])
def test_an_op_without_kernels_needs_its_fallback_body(op_id, tmp_path):
    op = ops.get_op(op_id)
    sample = samples(op, "cpu", "float32")[0]
    module = single_op_module(op, sample.attrs)
    export_onnx(module, sample.inputs, tmp_path / "plain.onnx", opset=17)
    with pytest.raises(OpforgeError, match=r"no compiled CPU kernel \(declared with kernels=None.*fallback=True"):
        ort_session(tmp_path / "plain.onnx")
    export_onnx(module, sample.inputs, tmp_path / "fb.onnx", opset=17, fallback=True)
    got = run_session(ort_session(tmp_path / "fb.onnx"), sample.inputs)
    torch.testing.assert_close(got[0], reference_outputs(op, sample)[0], rtol=1e-5, atol=1e-6)


def test_intra_op_threads_give_the_same_result(tmp_path, library):
    """The kernels split rows over ORT's intra-op pool (KernelContext_ParallelFor): 1 and 2 threads agree."""
    import onnxruntime as ort

    rms = ops.get_op("opforge::rms_norm")
    x, w = torch.randn(64, 256), torch.rand(256) + 0.5
    export_onnx(single_op_module(rms, {}), (x, w), tmp_path / "r.onnx", opset=17)
    outs = []
    for threads in (1, 2):
        options = ort.SessionOptions()
        options.intra_op_num_threads = threads
        outs.append(run_session(ort_session(tmp_path / "r.onnx", session_options=options), (x, w))[0])
    assert torch.equal(outs[0], outs[1]) and torch.equal(outs[0], rms(x, w))
