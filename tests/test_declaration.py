"""Declaration validation: every bad declaration fails at decoration time with a DeclarationError that
names the op, the field, what was expected, what was given and the fix."""

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import ops
from ops import Attr, DeclarationError, Input, Output, Sample, register_op
from ops.core.paths import csrc_dir


def declare(op_id, reference=None, **overrides):
    fields = dict(
        inputs=[Input("x"), Input("w", dtypes="like(x)", shape="[x.shape[-1]]")],
        outputs=[Output("y", shape="like(x)", dtype="like(x)")],
        attrs=[Attr("k", int, 2), Attr("scale", float, 1.0), Attr("mode", str, "a", choices=("a", "b"))],
        kernels=None,
    )
    fields.update(overrides)

    def ref(x, w, k=2, scale=1.0, mode="a"):
        return x * w * scale

    return register_op(op_id, **fields)(reference or ref)


def test_valid_declaration_registers_a_working_torch_op(unique_id):
    op_id = unique_id("ok")
    op = declare(op_id)
    assert ops.get_op(op_id) is op
    x, w = torch.randn(3, 4), torch.randn(4)
    torch.testing.assert_close(op(x, w, 2, 3.0), x * w * 3.0)
    ns, name = op_id.split("::")
    assert getattr(getattr(torch.ops, ns), name).default is op.torch_op


def test_redeclaring_an_id_names_both_declarations(unique_id):
    op_id = unique_id("dup")
    declare(op_id)
    with pytest.raises(
        DeclarationError, match="declared at .*test_declaration.py:\\d+ and again at .*test_declaration.py:\\d+"
    ) as e:
        declare(op_id)
    assert op_id in str(e.value)


def test_a_misspelt_register_op_option_raises_with_the_closest_name(unique_id):
    with pytest.raises(DeclarationError, match="'tolerance'.*did you mean 'tolerances'"):
        register_op(unique_id(), inputs=[Input("x")], outputs=[Output("y")], tolerance={"float32": (1e-5, 1e-6)})
    with pytest.raises(DeclarationError, match="'frobnicate'.*remove it"):
        register_op(unique_id(), inputs=[Input("x")], outputs=[Output("y")], frobnicate=1)


@pytest.mark.parametrize(
    "overrides, field, fragment",
    [
        (dict(inputs=[]), "inputs", "at least one Input"),
        (dict(inputs=[Input("x", dtypes=("float32", "complex64")), Input("w")]), "inputs.x.dtypes", "non-empty list"),
        (dict(inputs=[Input("x"), Input("w", dtypes="like(z)")]), "inputs.w.dtypes", "like(<name>)"),
        (dict(inputs=[Input("x", rank=9), Input("w")]), "inputs.x.rank", "[0, 8]"),
        (dict(inputs=[Input("x"), Input("w", shape="[x.shape[-1] / 2]")]), "inputs.w.shape", "shape rule"),
        (dict(outputs=[Output("y", shape="[x.shape[0], scale]")]), "outputs.y.shape", "float attribute"),
        (dict(outputs=[Output("y", shape="[q.shape[0]]")]), "outputs.y.shape", "not a declared input"),
        (dict(outputs=[Output("y", dtype="float8")]), "outputs.y.dtype", "like(<name>)"),
        (dict(outputs=[Output("x")]), "outputs.x", "unique across"),
        (dict(attrs=[Attr("k", int, 2.5), Attr("scale", float), Attr("mode", str)]), "attrs.k.default", "a int"),
        (dict(attrs=[Attr("k", int, True), Attr("scale", float), Attr("mode", str)]), "attrs.k.default", "a int"),
        (
            dict(attrs=[Attr("k", int, 2), Attr("scale", float), Attr("mode", str)]),
            "attrs.scale.default",
            "earlier attribute has one",
        ),
        (
            dict(attrs=[Attr("k", int, 2), Attr("scale", float, 1.0), Attr("mode", str, "c", choices=("a", "b"))]),
            "attrs.mode.default",
            "one of",
        ),
        (
            dict(attrs=[Attr("k", complex, 2), Attr("scale", float, 1.0), Attr("mode", str, "a")]),
            "attrs.k.type",
            "one of int, float",
        ),
        (dict(devices=("cpu", "tpu")), "devices", "non-empty list"),
        (dict(inputs=[Input("x"), Input("new", dtypes="like(x)")]), "inputs.name", "not a C++ keyword"),
        (
            dict(attrs=[Attr("k", int, 2), Attr("scale", float, 1.0), Attr("opforge_ctx", str, "a")]),
            "attrs[2].name",
            "without the prefix 'opforge_'",
        ),
        (
            dict(attrs=[Attr("k", int, 2), Attr("scale", float, 1.0), Attr("plugin_version", str, "a")]),
            "attrs[2].name",
            "TensorRT's ONNX parser",
        ),
        (dict(kernels="csrc/does_not_exist"), "kernels", "cpu kernel file"),
        (dict(version=0), "version", "int >= 1"),
        (dict(tolerances={"float16": (2, 0)}), "tolerances.float16", "(rtol, atol)"),
    ],
)
def test_bad_field_is_named_with_expected_got_and_fix(unique_id, overrides, field, fragment):
    op_id = unique_id("bad")
    with pytest.raises(DeclarationError) as e:
        declare(op_id, **overrides)
    message = str(e.value)
    assert e.value.op == op_id and e.value.field == field, message
    assert fragment in message and "Fix:" in message and op_id in message


def _declare_windowed(op_id, shape, attrs):
    def ref(x, window=(3, 3), stride=(1, 1)):
        return x

    return register_op(
        op_id, inputs=[Input("x", rank=4)], outputs=[Output("y", shape=shape)], attrs=attrs, kernels=None
    )(ref)


@pytest.mark.parametrize(
    "shape, attrs, field, fragment",
    [
        (
            "[x.shape[0], window[0]]",
            [Attr("window", "list[int]", (3, 3)), Attr("stride", "list[int]", (1, 1))],
            "attrs.window.length",
            "declare Attr('window', 'list[int]', ..., length=N)",
        ),
        (
            "[x.shape[0], window[2]]",
            [Attr("window", "list[int]", (3, 3), length=2), Attr("stride", "list[int]", (1, 1), length=2)],
            "outputs.y.shape",
            "length 2",
        ),
        (
            "[x.shape[0], window[0]]",
            [Attr("window", "list[int]", (3, 3, 3), length=2), Attr("stride", "list[int]", (1, 1))],
            "attrs.window.default",
            "length 2",
        ),
        (
            "[x.shape[0], window[0]]",
            [Attr("window", "list[float]", (3.0, 3.0), length=2), Attr("stride", "list[int]", (1, 1))],
            "outputs.y.shape",
            "list[float] attribute",
        ),
        (
            "[x.shape[0]]",
            [Attr("window", int, 3, length=2), Attr("stride", "list[int]", (1, 1))],
            "attrs.window.length",
            "on a list attribute",
        ),
    ],
)
def test_list_attribute_indexing_is_validated(unique_id, shape, attrs, field, fragment):
    op_id = unique_id("win")
    with pytest.raises(DeclarationError) as e:
        _declare_windowed(op_id, shape, attrs)
    assert e.value.field == field and fragment in str(e.value), str(e.value)


def test_kernel_is_an_ordinary_attribute_name(unique_id):
    """`kernel` used to be refused (inductor's FallbackKernel.create keyword); the torch schema now spells it
    `kernel_` (ops/torch/schema.py) and everything else keeps the declared name (tests/test_names.py)."""

    def ref(x, kernel=(3, 3), stride=(1, 1)):
        return x

    op = register_op(
        unique_id("win"),
        inputs=[Input("x", rank=4)],
        outputs=[Output("y")],
        attrs=[Attr("kernel", "list[int]", (3, 3)), Attr("stride", "list[int]", (1, 1))],
        kernels=None,
    )(ref)
    assert [a.name for a in op.decl.attrs] == ["kernel", "stride"]


def test_list_attribute_elements_drive_the_output_shape(unique_id):
    """Negative indices count from the end of the declared length; torch checks the length it gets."""
    op = _declare_windowed(
        unique_id("win"),
        "[x.shape[0], x.shape[1], (x.shape[2] - window[0]) // stride[0] + 1, "
        "(x.shape[3] - window[-1]) // stride[-1] + 1]",
        [Attr("window", "list[int]", (3, 3), length=2), Attr("stride", "list[int]", (1, 1), length=2)],
    )
    assert [str(d) for d in op.decl.outputs[0].shape.dims[2:]] == [
        str(d)
        for d in ops.core.shape_rule.parse_shape(
            "[(x.shape[2] - window[0]) // stride[0] + 1, (x.shape[3] - window[1]) // stride[1] + 1]"
        ).dims
    ]
    from torch._subclasses.fake_tensor import FakeTensorMode

    with FakeTensorMode():
        y = op.torch_op(torch.empty(2, 3, 10, 12), [3, 5], [1, 2])
    assert list(y.shape) == [2, 3, 8, 4]
    with pytest.raises(ValueError, match="attribute 'stride' must have 2 elements, got 3 elements"):
        op(torch.randn(2, 3, 10, 12), [3, 5], [1, 2, 3])


def test_reference_signature_must_match(unique_id):
    with pytest.raises(DeclarationError, match=r"parameters \['x', 'w', 'k', 'scale', 'mode'\]"):
        declare(unique_id(), reference=lambda x, w, scale=1.0: x)


def test_kernels_require_samples(unique_id):
    with pytest.raises(DeclarationError, match="samples"):
        declare(
            unique_id().replace("::", "_ns::").split("::")[0] + "::rms_norm",
            kernels=str(csrc_dir() / "rms_norm"),
            inputs=[Input("x"), Input("w")],
            outputs=[Output("y")],
            attrs=[],
            reference=lambda x, w: x,
        )


def test_a_failed_declaration_registers_nothing(unique_id):
    op_id = unique_id("nothing")
    with pytest.raises(DeclarationError):
        declare(op_id, version=0)
    with pytest.raises(ops.OpforgeError):
        ops.get_op(op_id)
    declare(op_id)  # the id is still free


# ---- property test: generated invalid declarations ---------------------------------------------

NAMES = st.from_regex(r"[a-z][a-z0-9_]{0,6}", fullmatch=True).filter(
    lambda s: s not in ("if", "in", "is", "or", "as", "def")
)


def _mutations():
    bad_ids = st.sampled_from(
        ["noseparator", "a::", "::b", "a::b::c", "1a::b", "a b::c", "aten::relu", "prim::x", "a::b-c", "", "a:b"]
    )
    bad_dtypes = st.one_of(
        st.just(()),
        st.just(("float32", "float32")),
        st.lists(st.sampled_from(["float8", "complex64", "half", "int4"]), min_size=1, max_size=3).map(tuple),
        st.just("float32"),
        st.just("like(nope)"),
    )
    bad_rank = st.one_of(st.integers(max_value=-1), st.integers(min_value=9), st.just(2.0), st.just("2"))
    bad_expr = st.sampled_from(
        [
            "x.shape[0] / 2",
            "x.shape[i]",
            "x.size(0)",
            "2 ** x.shape[0]",
            "scale",
            "mode",
            "nope.shape[0]",
            "x.shape[0] +",
            "abs(x.shape[0])",
            "-x.shape[0]",
            "x.shape[0] if 1 else 2",
            "x.shape[0] % 2",
            "max(x.shape[0])",
            "1.5",
        ]
    )
    bad_attr_default = st.sampled_from(
        [
            (int, 1.5),
            (int, True),
            (int, "3"),
            (float, "1"),
            (float, float("nan")),
            (bool, 1),
            (str, 3),
            ("list[int]", [1, 2.5]),
            ("list[float]", ["a"]),
            (int, 2**70),
            ("list[int]", 5),
        ]
    )
    return st.one_of(
        bad_ids.map(lambda v: ("id", v)),
        bad_dtypes.map(lambda v: ("input_dtypes", v)),
        bad_rank.map(lambda v: ("input_rank", v)),
        bad_expr.map(lambda v: ("output_dim", v)),
        bad_expr.map(lambda v: ("input_shape", v)),
        bad_attr_default.map(lambda v: ("attr_default", v)),
        st.sampled_from([complex, list, "double", None, "list[str]"]).map(lambda v: ("attr_type", v)),
        st.sampled_from([(), "cpu", ("gpu",), ("cpu", "cpu"), None]).map(lambda v: ("devices", v)),
        st.sampled_from([0, -1, "1", 1.0, None]).map(lambda v: ("version", v)),
        st.sampled_from(["x", "y", "k"]).map(lambda v: ("name_clash", v)),
        st.sampled_from(["class", "1x", "a-b", "", "a__b", "_X", "opforge_x", "errno", 3]).map(
            lambda v: ("input_name", v)
        ),
        st.just(("signature", None)),
        st.just(("required_after_optional_input", None)),
        st.just(("no_outputs", None)),
        st.sampled_from(["csrc/nope", 42]).map(lambda v: ("kernels", v)),
        st.sampled_from([{"float17": (1e-3, 1e-3)}, {"float16": (1e-3,)}, {"float16": (-1, 0)}, [1]]).map(
            lambda v: ("tolerances", v)
        ),
        st.just(("choices_on_int", None)),
        st.just(("like_optional_shape", None)),
    )


@settings(max_examples=600, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(ns=NAMES, name=NAMES, mutation=_mutations())
def test_generated_invalid_declarations_raise_declaration_error_naming_the_op(ns, name, mutation):
    kind, value = mutation
    op_id = f"fuzz_{ns}::{name}"
    inputs = [Input("x"), Input("w", optional=True)]
    outputs = [Output("y", shape="[x.shape[0], 2]", dtype="like(x)")]
    attrs = [Attr("k", int, 1), Attr("scale", float, 1.0), Attr("mode", str, "a")]
    extra = {}

    def ref(x, w=None, k=1, scale=1.0, mode="a"):
        return x

    if kind == "id":
        op_id = value
    elif kind == "input_dtypes":
        inputs[0] = Input("x", dtypes=value)
    elif kind == "input_rank":
        inputs[0] = Input("x", rank=value)
    elif kind == "output_dim":
        outputs = [Output("y", shape=["x.shape[0]", value])]
    elif kind == "input_shape":
        inputs = [Input("x"), Input("w", shape=[value])]
    elif kind == "attr_default":
        attrs[0] = Attr("k", value[0], value[1])
    elif kind == "attr_type":
        attrs[0] = Attr("k", value, 1)
    elif kind == "devices":
        extra["devices"] = value
    elif kind == "version":
        extra["version"] = value
    elif kind == "name_clash":
        attrs.append(Attr(value, int, 0))
    elif kind == "input_name":
        inputs[0] = Input(value)
    elif kind == "signature":
        ref = lambda x, k=1, scale=1.0, mode="a": x  # noqa: E731  (missing w)
    elif kind == "required_after_optional_input":
        inputs = [Input("x", optional=True), Input("w")]
    elif kind == "no_outputs":
        outputs = []
    elif kind == "kernels":
        extra["kernels"] = value
    elif kind == "tolerances":
        extra["tolerances"] = value
    elif kind == "choices_on_int":
        attrs[0] = Attr("k", int, 1, choices=("1",))
    elif kind == "like_optional_shape":
        outputs = [Output("y", shape="like(w)")]
    with pytest.raises(DeclarationError) as e:
        register_op(
            op_id,
            inputs=inputs,
            outputs=outputs,
            attrs=attrs,
            kernels=extra.pop("kernels", None),
            samples=lambda d, t: [Sample(torch.zeros(1))],
            **extra,
        )(ref)
    assert (op_id if isinstance(op_id, str) and op_id else repr(op_id)) in str(e.value)
    assert "Fix:" in str(e.value)
