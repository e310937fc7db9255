"""Torch registration of declarations that have no compiled kernels (the reference is the
implementation), data-dependent outputs with unbacked sizes, and the generated C++ glue for every kind
of argument."""

import subprocess
import sysconfig
from pathlib import Path

import pytest
import torch

from ops import Attr, Input, Output, Sample, register_op
from ops.core.validate import build_decl
from ops.native.prototypes import write_headers
from ops.torch.glue import generate
from ops.torch.schema import schema


def _positive_rows(op_id):
    def ref(x, limit=-1):
        rows = torch.nonzero(x.sum(-1) > 0).flatten()
        return rows, torch.tensor(rows.numel(), dtype=torch.int64)

    return register_op(
        op_id,
        inputs=[Input("x", rank=2)],
        outputs=[
            Output("rows", shape="[count]", dtype="int64"),
            Output.size("count", upper="x.shape[0]", opt="x.shape[0] // 2"),
        ],
        attrs=[Attr("limit", int, -1)],
        kernels=None,
    )(ref)


def test_reference_only_op_runs_and_checks_inputs(unique_id):
    op = _positive_rows(unique_id("rows"))
    x = torch.tensor([[1.0, 2.0], [-5.0, 1.0], [0.5, 0.0]])
    rows, count = op(x)
    assert rows.tolist() == [0, 2] and int(count) == 2
    with pytest.raises(ValueError, match="must have rank 2, got rank 1"):
        op(torch.ones(3))


def test_data_dependent_output_is_unbacked_under_export(unique_id):
    op = _positive_rows(unique_id("rows"))

    class M(torch.nn.Module):
        def forward(self, x):
            return op(x)

    ep = torch.export.export(M(), (torch.randn(6, 4),))
    node = next(n for n in ep.graph.nodes if n.op == "call_function" and "rows" in str(n.target))
    rows_val, count_val = node.meta["val"]
    assert isinstance(rows_val.shape[0], torch.SymInt) and not rows_val.shape[0].node.has_hint()
    assert count_val.shape == () and count_val.dtype == torch.int64
    x = torch.tensor([[1.0], [-1.0], [2.0], [-3.0], [0.0], [4.0]]).expand(6, 4).contiguous()
    rows, count = ep.module()(x)
    assert rows.tolist() == [0, 2, 5] and int(count) == 3


def test_schema_text_covers_every_attribute_type():
    decl = _everything_decl()
    assert schema(decl) == (
        'everything(Tensor x, Tensor? bias=None, int k=3, float f=0.5, bool flag=True, str mode="a", '
        "int[] ks=[1, 2], float[] fs=[0.25]) -> (Tensor, Tensor, Tensor)"
    )


def _everything_decl():
    def ref(x, bias=None, k=3, f=0.5, flag=True, mode="a", ks=(1, 2), fs=(0.25,)):
        return x

    return build_decl(
        "opforge_glue_test::everything",
        ref,
        inputs=[Input("x", min_rank=2), Input("bias", optional=True, dtypes="like(x)", shape="[x.shape[-1]]")],
        outputs=[
            Output("y", shape="[ceil_div(x.shape[0], k), max(x.shape[-1], 1)]"),
            Output("idx", shape="[n, 2]", dtype="int64"),
            Output.size("n", upper="x.shape[0] * k"),
        ],
        attrs=[
            Attr("k", int, 3),
            Attr("f", float, 0.5),
            Attr("flag", bool, True),
            Attr("mode", str, "a", choices=("a", "b")),
            Attr("ks", "list[int]", [1, 2]),
            Attr("fs", "list[float]", [0.25]),
        ],
        kernels=None,
        workspace="x.shape[0] * 4",
    )


def test_generated_glue_compiles_for_every_argument_kind(tmp_path):
    """Optional inputs, all six attribute types, choices, shape constraints, a workspace and a
    data-dependent output: the generated translation unit must compile against torch's headers."""
    import torch.utils.cpp_extension as ext

    decl = _everything_decl()
    object.__setattr__(decl, "kernel_dir", tmp_path / "everything")  # no kernels: the prototypes are enough
    prototypes = write_headers([decl], tmp_path)
    source = tmp_path / "glue.cpp"
    source.write_text(generate(decl))
    root = Path(__file__).resolve().parents[2]
    includes = [f"-I{p}" for p in ext.include_paths()] + [
        f"-I{root / 'csrc'}",
        f"-I{prototypes}",
        f"-I{sysconfig.get_paths()['include']}",
    ]
    cmd = ["g++", "-std=c++20", "-fsyntax-only", "-Wall", "-Werror", *includes, str(source)]
    result = subprocess.run(cmd, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr[-3000:]
    text = source.read_text()
    assert "narrow(0, 0, value_n)" in text and "upper_n" in text and "call.context(" in text


def test_check_catches_a_shape_rule_that_disagrees_with_the_reference(unique_id):
    from ops.check import check_op

    def samples(device, dtype):
        return [Sample(torch.ones(2, 3, dtype=dtype, device=device))]

    good = register_op(unique_id("double"), inputs=[Input("x")], outputs=[Output("y")], kernels=None, samples=samples)(
        lambda x: x * 2
    )
    rows = {r.stage: r.status for r in check_op(good, only=("declaration", "build", "torch.cpu"))}
    assert rows == {
        "declaration": "pass",
        "build": "skip",
        "torch.cpu[float32]": "pass",
        "torch.cpu[float16]": "pass",
        "torch.cpu[bfloat16]": "pass",
    }
    wrong = register_op(
        unique_id("wrong"),
        inputs=[Input("x")],
        outputs=[Output("y", shape="[x.shape[1]]")],
        kernels=None,
        samples=samples,
    )(lambda x: x.sum(1))
    [row] = check_op(wrong, only=("declaration",))
    assert row.status == "fail" and "gives [3] but the reference returns [2]" in row.detail
