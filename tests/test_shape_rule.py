"""The shape language: parsing, errors, and the same rule evaluated by every algebra."""

import pytest
import torch

from ops import shape_rule as sr
from ops.errors import ShapeRuleError


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
    ["x.shape[0] / 2", "x.shape[i]", "x.size(0)", "x.shape[0] ** 2", "abs(x.shape[0])", "x.shape[0] % 3",
     "max(x.shape[0])", "1.5", "x.shape", "[x.shape[0]", "like(x, y)", "like(1)", "lambda: 1", "-x.shape[0]"],
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
    code = sr.evaluate(expr, sr.CppAlgebra(lambda i, k: f"{i}.size({k})", lambda n: f"a_{n}"))
    assert code == ("(opforge::glue::ceil_div((x.size(-1) - int64_t(1)), a_k) + "
                    "opforge::glue::max(x.size(0), int64_t(2)))")


def test_symint_evaluation_keeps_dims_symbolic():
    """The fake kernel path: the same rule over SymInts, under torch.export with a dynamic dim."""
    from torch.fx.experimental.symbolic_shapes import ShapeEnv
    from torch._subclasses.fake_tensor import FakeTensorMode

    mode = FakeTensorMode(shape_env=ShapeEnv())
    with mode:
        x = mode.from_tensor(torch.empty(6, 10), symbolic_context=None)
    rule = sr.parse_shape("[ceil_div(x.shape[1], 4), max(x.shape[0], 3)]")
    assert sr.evaluate_shape(rule, sr.IntAlgebra({"x": x.shape}, {}), lambda n: 2) == [3, 6]
