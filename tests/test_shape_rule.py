"""The shape language: parsing, errors, and the same rule evaluated by every algebra."""

import pytest
import torch

from ops.core import shape_rule as sr
from ops.core.errors import ShapeRuleError


@pytest.mark.parametrize(
    "text, shapes, names, expected",
    [
        ("like(x)", {"x": (2, 3, 4)}, {}, [2, 3, 4]),
        ("[x.shape[0], x.shape[-1]]", {"x": (2, 3, 4)}, {}, [2, 4]),
        ("[ceil_div(x.shape[1], s), x.shape[1] // s]", {"x": (1, 10)}, {"s": 3}, [4, 3]),
        ("[max(x.shape[0], y.shape[0]), min(x.shape[0], y.shape[0])]", {"x": (5,), "y": (7,)}, {}, [7, 5]),
        ("[x.shape[0] * 2 + 1 - k]", {"x": (4,)}, {"k": 3}, [6]),
        ("[n, 2]", {"x": (9,)}, {"n": 5}, [5, 2]),
        ("[]", {"x": (9,)}, {}, []),
        ("[(x.shape[0] - 1) // 2]", {"x": (0,)}, {}, [-1]),  # floor, like Python and TensorRT
    ],
)
def test_int_evaluation(text, shapes, names, expected):
    rule = sr.parse_shape(text)
    assert sr.evaluate_shape(rule, sr.IntAlgebra(shapes, names), lambda n: len(shapes[n])) == expected


@pytest.mark.parametrize(
    "text",
    [
        "x.shape[0] / 2",
        "x.shape[i]",
        "x.size(0)",
        "x.shape[0] ** 2",
        "abs(x.shape[0])",
        "x.shape[0] % 3",
        "max(x.shape[0])",
        "1.5",
        "x.shape",
        "[x.shape[0]",
        "like(x, y)",
        "like(1)",
        "lambda: 1",
        "-x.shape[0]",
    ],
)
def test_rejects_what_some_backend_cannot_express(text):
    with pytest.raises(ShapeRuleError):
        sr.parse_shape(f"[{text}]" if not text.startswith(("[", "like")) else text)


def test_list_form_and_text_round_trip():
    rule = sr.parse_shape(["x.shape[0]", 3, "ceil_div(x.shape[1], 2)"])
    assert sr.to_text(rule) == "[x.shape[0], 3, ceil_div(x.shape[1], 2)]"
    assert sr.parse_shape(sr.to_text(rule)) == rule


def test_references():
    inputs, names, dims = sr.references(sr.parse_shape("[x.shape[-2], max(y.shape[0], k), n]"))
    assert inputs == {"x", "y"} and names == {"k", "n"} and [d.index for d in dims] == [-2, 0]


def test_cpp_algebra_spells_floor_semantics():
    expr = sr.parse_expr("ceil_div(x.shape[-1] - 1, k) + max(x.shape[0], 2)")
    code = sr.evaluate(expr, sr.CppAlgebra(lambda i, k: f"{i}.size({k})", lambda n: f"a_{n}", None, '"rule"'))
    assert code == (
        '(opforge::glue::ceil_div((x.size(-1) - int64_t(1)), a_k, kOp, "rule") + '
        "opforge::host::max(x.size(0), int64_t(2)))"
    )


def test_list_attribute_elements():
    """`stride[0]` is an Item; it round-trips through text and evaluates over ints and C++ text."""
    rule = sr.parse_shape("[(x.shape[2] + 2 * padding[-1] - kernel[0]) // stride[1] + 1]")
    assert sr.items(rule) == [sr.Item("padding", -1), sr.Item("kernel", 0), sr.Item("stride", 1)]
    assert sr.parse_shape(sr.to_text(rule)) == rule
    values = {"padding": (1, 2), "kernel": (3, 3), "stride": (1, 2)}
    assert sr.evaluate_shape(rule, sr.IntAlgebra({"x": (1, 1, 10)}, values), len) == [(10 + 4 - 3) // 2 + 1]
    code = sr.evaluate(rule.dims[0], sr.CppAlgebra(lambda i, k: f"d{k}", None, lambda n, k: f"{n}[{k}]"))
    assert "padding[-1]" in code and "stride[1]" in code
    absolute = sr.map_items(rule, lambda it: sr.Item(it.name, it.index % 2))
    assert sr.Item("padding", 1) in sr.items(absolute)
    with pytest.raises(ShapeRuleError, match="integer literal"):
        sr.parse_expr("stride[k]")


def test_symint_evaluation_keeps_dims_symbolic():
    """The fake kernel path: the same rule over SymInts (dynamic dims, as under torch.export) gives
    expressions in the input's symbols, not the ints of the example sizes."""
    from torch._dynamo.source import ConstantSource
    from torch._subclasses.fake_tensor import FakeTensorMode
    from torch.fx.experimental.symbolic_shapes import DimDynamic, ShapeEnv, StatelessSymbolicContext

    env = ShapeEnv()
    mode = FakeTensorMode(shape_env=env, static_shapes=False)
    dynamic = StatelessSymbolicContext(dynamic_sizes=[DimDynamic.DYNAMIC, DimDynamic.DYNAMIC])
    real = torch.empty(6, 10)  # made outside the mode: torch.empty inside it is already a (static) fake
    x = mode.from_tensor(real, source=ConstantSource("x"), symbolic_context=dynamic)
    s0, s1 = (d.node.expr for d in x.shape)
    assert s0.is_Symbol and s1.is_Symbol, x.shape
    rule = sr.parse_shape("[ceil_div(x.shape[1], 4), max(x.shape[0], 3)]")
    out = sr.evaluate_shape(rule, sr.IntAlgebra({"x": x.shape}, {}), lambda n: 2)
    assert all(isinstance(d, torch.SymInt) for d in out), out  # plain ints [3, 6] would fail here
    assert [d.node.hint for d in out] == [3, 6]  # the example sizes' values, read without guarding
    assert out[0].node.expr.free_symbols == {s1} and out[1].node.expr.free_symbols == {s0}, out
    # The same expressions give any other size's shape, max included (no guard picked a branch):
    assert [int(d.node.expr.subs({s0: 100, s1: 41})) for d in out] == [11, 100]
    assert [int(d.node.expr.subs({s0: 2, s1: 4})) for d in out] == [1, 3]
    assert not env.guards, env.guards  # evaluating the rule specialised nothing
