"""The generated ORT glue, read as text: variants per dtype combination, optional inputs, attribute readers
with their defaults, data-dependent outputs through upper-bound buffers, and what cannot be generated."""

import pytest

from ops import Attr, Input, Output
from ops.core.errors import OpforgeError
from ops.core.validate import build_decl
from ops.ort import codegen


def _decl(kernels="dir", **overrides):
    def ref(x, bias=None, k=3, f=0.5, flag=True, mode="a", ks=(1, 2), fs=(0.25,)):
        return x

    fields = dict(
        inputs=[Input("x", min_rank=2), Input("bias", optional=True, dtypes="like(x)", shape="[x.shape[-1]]")],
        outputs=[
            Output("y", shape="[ceil_div(x.shape[0], k), ks[1]]"),
            Output("idx", shape="[n, 2]", dtype="int64"),
            Output.size("n", upper="x.shape[0] * k"),
        ],
        attrs=[
            Attr("k", int, 3),
            Attr("f", float, 0.5),
            Attr("flag", bool, True),
            Attr("mode", str, "a", choices=("a", "b")),
            Attr("ks", "list[int]", [1, 2], length=2),
            Attr("fs", "list[float]", [0.25]),
        ],
        kernels=None,
        workspace="x.shape[0] * 4",
    )
    fields.update(overrides)
    decl = build_decl("opforge_codegen_test::everything", ref, **fields)
    if kernels:
        object.__setattr__(decl, "kernel_dir", __import__("pathlib").Path("/nowhere/everything"))
    return decl


def test_one_variant_per_free_input_dtype():
    decl = _decl()
    assert [v["x"] for v in codegen.variants(decl)] == ["float32", "float16", "bfloat16"]
    assert all(v["bias"] == v["x"] == v["y"] and v["idx"] == v["n"] == "int64" for v in codegen.variants(decl))


def test_generated_glue_covers_every_argument_kind():
    text = codegen.generate(_decl())
    assert 'ort::attr_float(kOp, info, "f", true, 0.5)' in text
    assert 'ort::attr_int(kOp, info, "flag", true, 1) != 0' in text
    assert 'ort::attr_ints(kOp, info, "ks", true, {int64_t(1), int64_t(2)})' in text
    assert 'ort::expect_length(kOp, "ks", a_ks.size(), 2);' in text
    assert 'ort::expect_choice(kOp, "mode", a_mode, {"a", "b"});' in text
    assert 'const bool has_bias = call.input(1, "bias"' in text and "has_bias ? &i_bias : nullptr" in text
    assert "a_ks[1]" in text  # a list element in the shape rule
    assert 'call.temp("idx", std::initializer_list<int64_t>{upper_n, int64_t(2)}' in text
    assert 'call.size_value("n", o_n, upper_n)' in text and "call.narrow_into(r_idx, o_idx);" in text
    assert "call.write_size(r_n, value_n);" in text
    assert "call.context((i_x.size(0) * int64_t(4)))" in text
    assert (
        text.count("ONNX_TENSOR_ELEMENT_DATA_TYPE_BFLOAT16, ONNX_TENSOR_ELEMENT_DATA_TYPE_BFLOAT16}, {false, true}")
        == 2
    )


def test_an_op_without_kernels_is_refused():
    with pytest.raises(OpforgeError, match="needs compiled kernels and onnx=True"):
        codegen.generate(_decl(kernels=None))


def test_too_many_dtype_combinations_are_refused():
    from ops.core.dtypes import DTYPES

    inputs = [Input(n, dtypes=tuple(DTYPES)) for n in ("a", "b", "c")]  # 9^3 combinations

    def ref(a, b, c):
        return a

    decl = build_decl(
        "opforge_codegen_test::wide",
        ref,
        inputs=inputs,
        outputs=[Output("y", shape="like(a)", dtype="like(a)")],
        kernels=None,
    )
    with pytest.raises(OpforgeError, match="729 dtype combinations.*at most 256"):
        codegen.variants(decl)
