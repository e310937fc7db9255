"""The `triton=` launch description (ops/core/triton_launch.py): what a declaration may say, what it is refused
with, and the documented configuration choice the generated launcher mirrors."""

import pytest
import torch
from triton_cases import axpb, axpb_launch

from ops import FLOATING, Attr, DeclarationError, Input, Output, Sample, Scratch, Triton, TritonConfig, register_op
from ops.core import shape_rule as sr
from ops.core.errors import ShapeRuleError
from ops.core.triton_launch import bucket, default_config

KERNEL = axpb("k")


def launch(**overrides):
    spec = axpb_launch("k")
    spec.update(overrides)
    return Triton(**spec)


def declare(unique_id, tmp_path, triton, devices=("cuda",), kernel=KERNEL):
    op_id = unique_id("tri")
    name = op_id.split("::")[1]
    kdir = tmp_path / "csrc" / name
    kdir.mkdir(parents=True)
    (kdir / f"{name}_triton.py").write_text(kernel)
    if "cpu" in devices:
        (kdir / f"{name}_cpu.cpp").write_text("// never built: the test only declares the op\n")

    def ref(x, b=None, alpha=1.0, k=3, mode="a"):
        return x * alpha + (0 if b is None else b)

    return register_op(
        op_id,
        inputs=[Input("x", dtypes=FLOATING), Input("b", dtypes="like(x)", shape="like(x)", optional=True)],
        outputs=[Output("y", shape="like(x)", dtype="like(x)")],
        attrs=[Attr("alpha", float, 1.0), Attr("k", int, 3), Attr("mode", str, "a")],
        devices=devices,
        kernels=str(kdir),
        samples=lambda device, dtype: [Sample(torch.randn(2, 3).to(device=device, dtype=dtype))],
        triton=triton,
    )(ref)


def test_a_launch_resolves_every_argument_kind(unique_id, tmp_path):
    t = declare(unique_id, tmp_path, launch()).decl.triton
    kinds = {a.param: (a.kind, a.type) for a in t.args}
    assert kinds == {
        "x": ("tensor", "*"),
        "b": ("tensor", "*"),
        "y": ("tensor", "*"),
        "n": ("expr", "i64"),  # int64= asked for it
        "has_b": ("expr", "i32"),
        "alpha": ("attr", "fp32"),
    }
    assert t.meta_names == ("BLOCK",) and t.tensors == ("x", "b", "y")
    as_double = declare(unique_id, tmp_path / "2", launch(fp64=("alpha",))).decl.triton
    assert {a.param: a.type for a in as_double.args}["alpha"] == "fp64"
    assert sr.to_text(t.grid[0]) == "ceil_div(numel(x), BLOCK)" and sr.to_text(t.key) == "numel(x)"


def test_the_kernel_file_can_be_the_cuda_kernel(unique_id, tmp_path):
    decl = declare(unique_id, tmp_path, launch()).decl
    assert decl.kernel_files()["triton"].name.endswith("_triton.py") and "cuda" not in decl.kernel_files()


@pytest.mark.parametrize(
    "overrides, match",
    [
        ({"configs": []}, "configs: a non-empty list"),
        ({"configs": [TritonConfig(BLOCK=256, max_key=256)]}, "at least one config without max_key"),
        ({"configs": [TritonConfig(BLOCK=256), TritonConfig(SIZE=1)]}, "the same meta-parameters"),
        ({"configs": [TritonConfig(BLOCK=1.5)]}, "an int or a bool"),
        ({"configs": [TritonConfig(BLOCK=256, num_warps=3)]}, "num_warps a power of two"),
        ({"configs": [TritonConfig(BLOCK=256), TritonConfig(BLOCK=256)]}, "distinct configs"),
        ({"grid": []}, "grid: 1 to 3 launch expressions"),
        ({"grid": ["z.shape[0]"]}, "'z' is not one"),
        ({"grid": ["numel(x) // CHUNK"]}, "'CHUNK' is neither"),
        ({"args": {"x": "x", "n": "present(x)"}}, "'x' is not optional"),
        ({"args": {"x": "x", "m": "mode"}}, "attribute 'mode' is a str"),
        ({"args": {"x": "x", "BLOCK": "numel(x)"}}, "args without the meta-parameters"),
        ({"int64": ("x",)}, "int64: names of integer kernel parameters"),
        ({"fp64": ("n",)}, "fp64: names of kernel parameters given by float attributes"),
        ({"args": {"x": "x", "t": Scratch("numel(x)", "complex64")}}, "Scratch of a dtype in"),
        ({"key": "sum(x)"}, "not part of the shape language"),
        ({"kernel": "not a name"}, "kernel: the name of a @triton.jit function"),
    ],
)
def test_a_bad_launch_is_refused_naming_the_field(unique_id, tmp_path, overrides, match):
    with pytest.raises(DeclarationError, match="'triton'") as e:
        declare(unique_id, tmp_path, launch(**overrides))
    assert match in str(e.value)


def test_a_triton_kernel_needs_the_cuda_device(unique_id, tmp_path):
    with pytest.raises(DeclarationError, match="'cuda' in devices"):
        declare(unique_id, tmp_path, launch(), devices=("cpu",))


def test_only_launch_expressions_take_numel_and_present():
    assert sr.to_text(sr.parse_expr("numel(x) // x.shape[-1]", calls=("numel",))) == "(numel(x) // x.shape[-1])"
    with pytest.raises(ShapeRuleError, match="not part of the shape language"):
        sr.parse_expr("numel(x)")  # a shape rule: TensorRT's IExprBuilder has no numel
    with pytest.raises(ShapeRuleError, match="takes one input name"):
        sr.parse_expr("numel(x, y)", calls=("numel",))


def test_the_default_config_is_the_tightest_valid_fit():
    configs = [
        TritonConfig(BLOCK=64, max_key=64),
        TritonConfig(BLOCK=4096, max_key=4096),
        TritonConfig(BLOCK=1024, max_key=1024),
        TritonConfig(BLOCK=2048),
    ]
    assert [default_config(configs, k) for k in (1, 64, 65, 1024, 1025, 4096, 4097, None)] == [0, 0, 2, 2, 1, 1, 3, 3]
    assert [bucket(k) for k in (0, 1, 2, 3, 1000, 1024, 1025)] == [1, 1, 2, 4, 1024, 1024, 2048]
