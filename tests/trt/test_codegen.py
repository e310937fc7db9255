"""The generated OpSpec for shape rules the library ops do not use (explicit dims, negative indices,
int attributes, ceil_div/max/min, a size output, an input shape constraint), compiled into a plugin
library without kernels and driven through the harness's IExprBuilder."""

import pytest

from ops import Attr, Input, Output
from ops.core import shape_rule as sr
from ops.core.validate import build_decl
from ops.trt.harness import host as harness


def reference(x, w, stride, keep):  # never run: the harness checks interfaces, not values
    raise NotImplementedError


@pytest.fixture(scope="module")
def decl(tmp_path_factory):
    kdir = tmp_path_factory.mktemp("kernels") / "pooled"
    kdir.mkdir()
    for name in ("pooled.h", "pooled_cpu.cpp", "pooled_cuda.cu"):
        (kdir / name).write_text("// stub\n")
    return build_decl(
        "opforge_test::pooled",
        reference,
        inputs=[
            Input("x", dtypes=("float32", "float16"), min_rank=2),
            Input("w", dtypes="like(x)", shape="[x.shape[-1] * 2]"),
        ],
        outputs=[
            Output(
                "y",
                shape="[x.shape[0], ceil_div(x.shape[-1], stride), max(x.shape[1] - 1, keep), min(count, x.shape[0])]",
                dtype="like(x)",
            ),
            Output.size("count", upper="x.shape[0] * x.shape[1]", opt="x.shape[0]"),
        ],
        attrs=[Attr("stride", int, 2), Attr("keep", int, 1)],
        kernels=str(kdir),
        samples=lambda device, dtype: [],
        workspace="x.shape[0] * 4",
    )


@pytest.fixture(scope="module")
def plugin_host(decl, tmp_path_factory):
    from ops.core.errors import BackendUnavailable
    from ops.trt.build import build

    try:
        result = build("host", decls=[decl], build_dir=tmp_path_factory.mktemp("trt"))
    except BackendUnavailable as e:  # the toolchain is part of the test machine's setup
        pytest.fail(f"cannot build the plugin library: {e}")
    return harness.Host(result.library)


def _create(h, attrs):
    c = h.creator("pooled", "1", "opforge_test")
    fields = harness.Fields()
    for name, value in attrs.items():
        fields.add(name, harness.FIELD_TYPE["kINT32"], int(value).to_bytes(4, "little", signed=True), 1)
    p = h.create(c, fields)
    assert p is not None, h.log()
    return p


@pytest.mark.parametrize("shape", [[4, 7, 5], [1, 1, 1], [9, 3, 16], [2, 5]])
@pytest.mark.parametrize("attrs", [{}, {"stride": 3, "keep": 6}])
def test_explicit_dims_fold_and_stay_symbolic(decl, plugin_host, shape, attrs):
    p = _create(plugin_host, attrs)
    values = {"stride": 2, "keep": 1, **attrs}
    ins = [harness.tensor(shape), harness.tensor([shape[-1] * 2])]
    st, got, text = p.output_shapes(ins, 2)
    assert st == 0, (text, plugin_host.log())
    alg = sr.IntAlgebra({"x": shape, "w": [shape[-1] * 2]}, values)
    want = [sr.evaluate(d, alg) for d in decl.outputs[0].shape.dims[:3]]
    assert got[0][:3] == want
    assert got[0][3] == f"min(size1, {shape[0]})"  # a size tensor never folds
    assert got[1] == []
    assert f"size1\t{shape[0]}\t{shape[0] * shape[1]}" in text  # declareSizeTensor(1, opt, upper)
    # symbolic inputs: the expressions evaluate to the same numbers
    st, sym, text = p.output_shapes([harness.tensor([-1] * len(shape)), harness.tensor([-1])], 2)
    assert st == 0, text
    env = {f"in0_{i}": v for i, v in enumerate(shape)} | {"in1_0": shape[-1] * 2, "size1": 3}
    env |= {"max": max, "min": min, "ceil_div": lambda a, b: -(-a // b)}
    alg = sr.IntAlgebra({"x": shape, "w": [shape[-1] * 2]}, {**values, "count": 3})
    assert [eval(str(e), {"__builtins__": {}}, env) for e in sym[0]] == sr.evaluate_shape(
        decl.outputs[0].shape, alg, len
    )


def test_size_output_is_int32_and_workspace_follows_the_rule(plugin_host):
    p = _create(plugin_host, {})
    st, types = p.output_types([0, 0], 2)
    assert st == 0 and types == [0, harness.TRT_DTYPE["int32"]]
    ins = [harness.tensor([4, 7, 5]), harness.tensor([10])]
    outs = [harness.tensor([4, 3, 6, 4]), harness.tensor([])]
    assert p.workspace(ins, outs) == 4 * 4 + 8  # declared bytes + int64 scratch for the size output


def test_declared_input_shape_is_enforced(plugin_host):
    p = _create(plugin_host, {})
    outs = [harness.tensor([4, 3, 6, -1]), harness.tensor([])]
    assert p.configure([harness.tensor([4, 7, 5]), harness.tensor([10])], outs) == 0, plugin_host.log()
    assert p.configure([harness.tensor([4, 7, 5]), harness.tensor([11])], outs) != 0
    assert "input 'w' must have shape [(x.shape[-1] * 2)] = [10], got [11]" in plugin_host.log()
    # unknown dims cannot be contradicted: accepted in configurePlugin
    dyn = harness.tensor([-1, -1, -1], mins=[1, 1, 1], maxs=[8, 8, 8])
    assert p.configure([dyn, harness.tensor([-1], mins=[2], maxs=[16])], outs) == 0, plugin_host.log()
    st, _, _ = p.output_shapes([harness.tensor([4]), harness.tensor([2])], 2)
    assert st != 0 and "rank" in plugin_host.log()  # x needs rank >= 2


def test_int_fields_narrowed_like_the_parser(plugin_host, decl):
    from onnx import helper

    node = helper.make_node(
        "pooled",
        ["x", "w"],
        ["y", "count"],
        domain="opforge_test",
        stride=2**32 + 3,
        keep=4,
        plugin_version="1",
        plugin_namespace="opforge_test",
    )
    c = plugin_host.creator("pooled", "1", "opforge_test")
    fields = harness.fields_from_onnx_node(node, c.fields)
    assert fields.as_dict() == {"stride": [3], "keep": [4]}  # int64 2**32 + 3 narrowed to int32 3
    p = plugin_host.create(c, fields)
    assert p.serialized_fields()["stride"] == (harness.FIELD_TYPE["kINT64"], [3])
