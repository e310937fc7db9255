"""Inductor as the author of an op's CUDA kernel (`triton=ops.Inductor()`, ops/native/inductor_capture.py).
Everything here runs without a GPU: Inductor lowers for its Triton CPU backend, and the captured kernels run in
Triton's interpreter (TRITON_INTERPRET=1) at shapes and ranks the capture never saw, against the reference."""

import json
import os
import subprocess
import sys
import textwrap

import pytest
import torch

from ops import FLOATING, Attr, Inductor, Input, Output, Sample, TritonConfig, register_op
from ops.core.errors import DeclarationError
from ops.native import inductor_capture, inductor_lowering, triton_aot

triton = pytest.importorskip("triton", reason="triton is not installed (pip install 'opforge[triton]')")


def rand(device, dtype, *shape):
    return torch.randn(*shape).to(device=device, dtype=dtype)


def declare(unique_id, tmp_path, reference, inputs=None, attrs=(), samples=None, outputs=None, configs=None, **extra):
    op_id = unique_id("ind")
    kdir = tmp_path / "csrc" / op_id.split("::")[1]
    kdir.mkdir(parents=True)
    return register_op(
        op_id,
        inputs=inputs or [Input("x", dtypes=FLOATING)],
        outputs=outputs or [Output("y", shape="like(x)", dtype="like(x)")],
        attrs=list(attrs),
        devices=("cuda",),
        kernels=str(kdir),
        samples=samples or (lambda d, t: [Sample(rand(d, t, 4, 33)), Sample(rand(d, t, 2, 3, 8))]),
        triton=Inductor(configs=configs),
        **extra,
    )(reference).decl


def gated(x, gate, weight, eps=1e-6):
    h = (x * gate).float()
    return (h * torch.rsqrt(h.pow(2).mean(-1, keepdim=True) + eps) * weight.float()).to(x.dtype)


def gated_samples(d, t):
    return [
        Sample(rand(d, t, 4, 33), rand(d, t, 4, 33), rand(d, t, 33)),
        Sample(rand(d, t, 2, 3, 64), rand(d, t, 2, 3, 64), rand(d, t, 64), eps=1e-5),
    ]


GATED_INPUTS = [
    Input("x", dtypes=FLOATING),
    Input("gate", dtypes="like(x)", shape="like(x)"),
    Input("weight", dtypes="like(x)", shape=["x.shape[-1]"]),
]


@pytest.fixture
def build_dir(tmp_path, monkeypatch):
    monkeypatch.setenv("OPFORGE_BUILD_DIR", str(tmp_path / "build"))
    return tmp_path / "build"


def test_a_pointwise_reference_becomes_one_kernel_launched_over_numel(unique_id, tmp_path, build_dir):
    decl = declare(
        unique_id,
        tmp_path,
        lambda x, scale=2.0, shift=0.5: (x.float() * scale + shift).to(x.dtype),
        attrs=[Attr("scale", float, 2.0), Attr("shift", float, 0.5)],
    )
    t = inductor_capture.concrete(decl).triton
    by_param = {a.param: (a.kind, a.source, a.type) for a in t.args}
    assert by_param == {
        "in_ptr0": ("tensor", "x", "*"),
        "in_ptr1": ("attr", "scale", "fp64"),  # a run-time scalar, not a constant baked into the kernel
        "in_ptr2": ("attr", "shift", "fp64"),
        "out_ptr0": ("tensor", "y", "*"),
        "xnumel": ("expr", "numel(x)", "i32"),  # rank-generic: the samples had ranks 2 and 3
    }
    assert [str(g) for g in t.spec.grid] == ["ceil_div(numel(x), XBLOCK)"]
    assert t.meta_names == ("XBLOCK",) and t.aligned == ("xnumel",)
    # float32 loads without conversion; float16 and bfloat16 share the kernel that computes in float32
    kernels = dict(t.variant_kernels)
    assert kernels["x=float16"] == kernels["x=bfloat16"] != kernels["x=float32"]
    text = t.source.read_text()
    assert "@triton_heuristics" not in text and "set_driver_to" not in text and text.count("@triton.jit") == 2


def test_a_fused_reduction_reads_rows_and_row_length_from_the_input(unique_id, tmp_path, build_dir):
    decl = declare(
        unique_id, tmp_path, gated, inputs=GATED_INPUTS, attrs=[Attr("eps", float, 1e-6)], samples=gated_samples
    )
    t = inductor_capture.concrete(decl).triton
    exprs = {a.param: a.source for a in t.args if a.kind == "expr"}
    assert exprs == {"ks0": "x.shape[-1]", "xnumel": "(numel(x) // x.shape[-1])", "r0_numel": "x.shape[-1]"}
    assert t.meta_names == ("XBLOCK", "R0_BLOCK") and str(t.spec.key) == "x.shape[-1]"
    assert {a.param: a.type for a in t.args if a.kind == "expr"} == {"ks0": "i64", "xnumel": "i32", "r0_numel": "i32"}
    # short rows default to the config that packs rows per program (the tightest max_key)
    assert any(c.max_key == 64 and c.meta["XBLOCK"] == 16 for c in t.configs)


def test_the_capture_is_cached_and_redone_when_the_reference_changes(unique_id, tmp_path, build_dir, monkeypatch):
    decl = declare(unique_id, tmp_path, lambda x: (x.float() * 3.0).to(x.dtype))
    first = inductor_capture.concrete(decl)
    calls = []
    monkeypatch.setattr(inductor_lowering, "describe", lambda d: calls.append(d) or pytest.fail("not cached"))
    assert inductor_capture.concrete(decl).triton == first.triton and not calls
    monkeypatch.setattr(inductor_capture, "_cache_key", lambda d: "another reference")
    with pytest.raises(pytest.fail.Exception, match="not cached"):
        inductor_capture.concrete(decl)


def test_the_aot_compile_takes_each_variants_kernel(unique_id, tmp_path, build_dir):
    decl = declare(unique_id, tmp_path, lambda x: (x.float() * 3.0).to(x.dtype))
    result = triton_aot.compile_op(inductor_capture.concrete(decl))
    functions = {json.dumps(k.variant, sort_keys=True): k.function for k in result.kernels}
    assert len(set(functions.values())) == 2 and result.archs == (87, 90)
    assert len(result.kernels) == 3 * 2 * 3  # dtype variants x aligned/generic x the pointwise configs


# ---- refusals ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "reference, named",
    [
        (lambda x: x @ x.transpose(-1, -2)[..., : x.shape[-1]], "mm"),
        (lambda x: torch.sort(x, dim=-1)[0], "sort"),
    ],
    ids=["matmul", "sort"],
)
def test_a_reference_inductor_does_not_lower_to_triton_is_refused_naming_the_op(
    unique_id, tmp_path, build_dir, reference, named
):
    decl = declare(unique_id, tmp_path, reference)
    with pytest.raises(inductor_lowering.Refused) as e:
        inductor_capture.concrete(decl)
    assert named in str(e.value) and "outside Triton" in str(e.value) and decl.id in str(e.value)


def test_two_kernels_are_refused_with_their_names(unique_id, tmp_path, build_dir):
    decl = declare(
        unique_id,
        tmp_path,
        lambda x: (x - x.mean(0, keepdim=True)).softmax(-1),
        samples=lambda d, t: [Sample(rand(d, t, 6, 33))],
    )
    with pytest.raises(inductor_lowering.Refused, match=r"launches \d+ kernels .* runs one"):
        inductor_capture.concrete(decl)


def test_int_attributes_and_optional_inputs_are_refused_at_declaration(unique_id, tmp_path):
    with pytest.raises(DeclarationError, match="attribute 'k' of type int"):
        declare(unique_id, tmp_path, lambda x, k=2: x * k, attrs=[Attr("k", int, 2)])
    with pytest.raises(DeclarationError, match="optional input 'b'"):
        declare(
            unique_id,
            tmp_path,
            lambda x, b=None: x if b is None else x + b,
            inputs=[Input("x", dtypes=FLOATING), Input("b", dtypes="like(x)", shape="like(x)", optional=True)],
        )


def test_samples_with_only_size_one_dims_are_refused(unique_id, tmp_path, build_dir):
    decl = declare(unique_id, tmp_path, lambda x: x * 2, samples=lambda d, t: [Sample(rand(d, t, 1, 7))])
    with pytest.raises(inductor_lowering.Refused, match="at least 2"):
        inductor_capture.concrete(decl)


# ---- the captured kernels run (Triton's interpreter) -----------------------------------------------------------

INTERPRET = textwrap.dedent(
    """
    import importlib.util, json, sys
    import torch
    sys.path.insert(0, sys.argv[1])
    from ops.core import shape_rule as sr
    from ops.core.triton_launch import default_config

    spec = json.loads(sys.argv[2])
    module_spec = importlib.util.spec_from_file_location("captured", spec["source"])
    captured = importlib.util.module_from_spec(module_spec)
    sys.modules["captured"] = captured
    module_spec.loader.exec_module(captured)
    # The interpreter runs libdevice calls through triton.language's own math (its CUDA libdevice stubs return
    # None there); on a GPU the compiled kernel calls libdevice itself.
    import triton.language as tl
    captured.libdevice = tl.math

    class Ints(sr.IntAlgebra):
        def __init__(self, tensors, names):
            super().__init__({k: list(v.shape) for k, v in tensors.items()}, names)
            self.tensors = tensors
        def call(self, fn, input):
            return self.tensors[input].numel()

    SCRATCH = {"*fp32": torch.float32, "*fp16": torch.float16, "*bf16": torch.bfloat16}
    for number, case in enumerate(spec["cases"]):
        torch.manual_seed(0)
        tensors = {n: torch.randn(*s).to(getattr(torch, case["dtype"])) for n, s in case["inputs"].items()}
        y = torch.empty(case["out"]).to(getattr(torch, case["dtype"]))
        tensors["y"] = y
        key = sr.evaluate(sr.parse_expr(spec["key"], calls=("numel",)), Ints(tensors, {}))
        for index, config in enumerate(spec["configs"]):
            names = {k: v for k, v in config.items() if k.isupper()}
            algebra = Ints(tensors, names)
            args = []
            for param, (kind, source, type_) in spec["args"].items():
                if kind == "tensor":
                    args.append(tensors[source])
                elif kind == "attr":
                    args.append(case["attrs"][source])
                elif kind == "scratch":  # what the launcher allocates
                    count = sr.evaluate(sr.parse_expr(source, calls=("numel",)), algebra)
                    args.append(torch.full((count,), float("nan"), dtype=SCRATCH[type_]))
                else:
                    args.append(sr.evaluate(sr.parse_expr(source, calls=("numel",)), algebra))
            grid = tuple(sr.evaluate(sr.parse_expr(g, calls=("numel",)), algebra) for g in spec["grid"])
            y.zero_()
            getattr(captured, spec["kernels"][case["dtype"]])[grid](*args, **names)
            print(json.dumps({"case": number, "config": index, "y": y.float().flatten().tolist()}))
    """
)


def _interpreter_runs_inductor_kernels() -> bool:
    """Triton 3.6.0's interpreter (the GPU machine's) stops on Inductor's kernels with "InterpreterError:
    TypeError('only 0-dimensional arrays can be converted to Python scalars')"; 3.9.0's runs them."""
    major, minor = (int(p) for p in triton.__version__.split(".")[:2])
    return (major, minor) >= (3, 9)


def _interpret(decl, cases):
    """Run every config of the captured kernel on `cases` in Triton's interpreter: {(case, config): y}."""
    if not _interpreter_runs_inductor_kernels():
        pytest.skip(
            f"Triton {triton.__version__}'s interpreter cannot run Inductor's kernels (InterpreterError: only "
            "0-dimensional arrays...); Triton >= 3.9 runs them. On a GPU, ops.check runs the compiled kernels"
        )
    t = inductor_capture.concrete(decl).triton
    spec = {
        "source": str(t.source),
        "args": {a.param: (a.kind, a.source, a.type) for a in t.args},
        "grid": [str(g) for g in t.spec.grid],
        "key": str(t.spec.key),
        "configs": [dict(c.meta) for c in t.configs],
        "kernels": {label.split("=")[1]: fn for label, fn in t.variant_kernels},
        "cases": cases,
    }
    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    done = subprocess.run(
        [sys.executable, "-c", INTERPRET, root, json.dumps(spec)],
        env={**os.environ, "TRITON_INTERPRET": "1"},
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    return [json.loads(line) for line in done.stdout.splitlines() if line.startswith("{")]


def test_captured_kernels_match_the_reference_at_shapes_and_ranks_the_capture_never_saw(unique_id, tmp_path, build_dir):
    decl = declare(
        unique_id, tmp_path, gated, inputs=GATED_INPUTS, attrs=[Attr("eps", float, 1e-6)], samples=gated_samples
    )
    cases = []
    for dtype in ("float32", "float16"):
        for shape in ((3, 5, 7), (2, 2, 3, 130), (9, 1)):
            cols = shape[-1]
            cases.append(
                {
                    "dtype": dtype,
                    "inputs": {"x": shape, "gate": shape, "weight": (cols,)},
                    "out": shape,
                    "attrs": {"eps": 1e-5},
                }
            )
    rows = _interpret(decl, cases)
    assert len(rows) == len(cases) * len(inductor_lowering.REDUCTION_CONFIGS)
    for row in rows:
        case = cases[row["case"]]
        torch.manual_seed(0)
        dtype = getattr(torch, case["dtype"])
        x, gate, w = (torch.randn(*s).to(dtype) for s in case["inputs"].values())
        want = gated(x.float(), gate.float(), w.float(), 1e-5).flatten()
        tol = 1e-5 if dtype == torch.float32 else 2e-3
        assert torch.allclose(torch.tensor(row["y"]), want, rtol=tol, atol=tol), (case, row["config"])


def test_a_half_softmax_gets_its_float32_intermediates_as_scratch_and_matches_the_reference(
    unique_id, tmp_path, build_dir
):
    # Small blocks, several loop steps per row: Triton's interpreter takes ~13 s per config at the default sizes.
    small = [TritonConfig(XBLOCK=2, R0_BLOCK=16, num_warps=1, num_stages=1)]
    decl = declare(unique_id, tmp_path, lambda x: x.softmax(-1), configs=small)
    t = inductor_capture.concrete(decl).triton
    scratch = [a for a in t.args if a.kind == "scratch"]
    assert [(a.source, a.type) for a in scratch] == [("numel(x)", "*fp32")], t.args
    cases = [
        {"dtype": dtype, "inputs": {"x": shape}, "out": shape, "attrs": {}}
        for dtype in ("float16", "float32")
        for shape in ((3, 5, 7), (2, 40), (4, 1))
    ]
    rows = _interpret(decl, cases)
    assert len(rows) == len(cases) * len(t.configs)
    for row in rows:
        case = cases[row["case"]]
        torch.manual_seed(0)
        x = torch.randn(*case["inputs"]["x"]).to(getattr(torch, case["dtype"]))
        want = x.float().softmax(-1).flatten()
        tol = 1e-5 if case["dtype"] == "float32" else 2e-3
        assert torch.allclose(torch.tensor(row["y"]), want, rtol=tol, atol=tol), (case, row["config"])
