"""The shape-rule language: output shapes written once, translated for every backend.

A rule is either ``like(x)`` (the shape of input ``x``) or a list of dimension expressions::

    "[x.shape[0], ceil_div(x.shape[1], stride), max(x.shape[2], 1)]"

Expressions are built from integer constants, input dims ``x.shape[i]`` (``i`` a literal, negative
counts from the end), integer attributes by name, elements of ``list[int]`` attributes with a declared
length (``stride[0]``, ``padding[-1]``), data-dependent sizes by name (outputs declared with
``Output.size``), ``+ - * //`` and the calls ``ceil_div``, ``max``, ``min``. That set is exactly what
TensorRT's ``IExprBuilder`` (kSUM, kSUB, kPROD, kFLOOR_DIV, kCEIL_DIV, kMAX, kMIN), torch SymInts and
ONNX shape inference can all express, so a rule that parses is a rule every backend can honour.

Backends translate an expression by giving `evaluate` an *algebra*: an object with one method per
construct. Python ints (tests, harness oracles), torch SymInts (fake kernels), C++ source text (the
generated glue and the TensorRT plugin) are each one small algebra; nothing else changes per backend.
"""

from __future__ import annotations

import ast
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import torch

from .errors import ShapeRuleError

BINARY_OPS = {ast.Add: "add", ast.Sub: "sub", ast.Mult: "mul", ast.FloorDiv: "floordiv"}
CALLS = ("ceil_div", "max", "min")
ALLOWED = (
    "integer constants, x.shape[i] (i a literal), integer attribute names, list[int] attribute elements "
    "(stride[0]), size-output names, "
    "+ - * //, ceil_div(a, b), max(a, b), min(a, b)"
)


# ---- expression tree -------------------------------------------------------------------------


@dataclass(frozen=True)
class Const:
    value: int


@dataclass(frozen=True)
class Dim:
    input: str
    index: int


@dataclass(frozen=True)
class Name:
    """An integer attribute or a data-dependent size; the declaration resolves which."""

    name: str


@dataclass(frozen=True)
class Item:
    """Element `index` of a list[int] attribute (``stride[0]``); the declaration makes `index` >= 0."""

    name: str
    index: int


@dataclass(frozen=True)
class BinOp:
    op: str  # add sub mul floordiv ceil_div max min
    lhs: Expr
    rhs: Expr


@dataclass(frozen=True)
class Call:
    """``numel(x)`` or ``present(x)`` of an input: launch expressions only (ops.core.triton_launch); a shape rule
    never parses one (parse_expr's `calls` is empty there)."""

    fn: str
    input: str


Expr = Const | Dim | Name | Item | BinOp | Call


@dataclass(frozen=True)
class Like:
    """Output has exactly the shape of an input, whatever its rank."""

    input: str


@dataclass(frozen=True)
class Dims:
    dims: tuple[Expr, ...]


ShapeRule = Like | Dims


# ---- parsing ---------------------------------------------------------------------------------


def _convert(node: ast.AST, text: str, calls: tuple[str, ...] = ()) -> Expr:
    if isinstance(node, ast.Constant) and type(node.value) is int:
        return Const(node.value)
    if isinstance(node, ast.Name):
        return Name(node.id)
    if isinstance(node, ast.BinOp) and type(node.op) in BINARY_OPS:
        return BinOp(BINARY_OPS[type(node.op)], _convert(node.left, text, calls), _convert(node.right, text, calls))
    if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id in calls:
        if len(node.args) != 1 or not isinstance(node.args[0], ast.Name) or node.keywords:
            raise ShapeRuleError(f"in {text!r}: {node.func.id}() takes one input name")
        return Call(node.func.id, node.args[0].id)
    if isinstance(node, ast.Subscript):  # x.shape[i] or attr[i]
        value = node.value
        is_dim = isinstance(value, ast.Attribute) and value.attr == "shape" and isinstance(value.value, ast.Name)
        if is_dim or isinstance(value, ast.Name):
            literal = node.slice
            sign = 1
            if isinstance(literal, ast.UnaryOp) and isinstance(literal.op, ast.USub):
                sign, literal = -1, literal.operand
            if isinstance(literal, ast.Constant) and type(literal.value) is int:
                return Dim(value.value.id, sign * literal.value) if is_dim else Item(value.id, sign * literal.value)
            what = ".shape[...]" if is_dim else f"{value.id}[...]"
            raise ShapeRuleError(f"in {text!r}: the index of {what} must be an integer literal")
    if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id in CALLS:
        if len(node.args) != 2 or node.keywords:
            raise ShapeRuleError(f"in {text!r}: {node.func.id}() takes exactly two arguments")
        return BinOp(node.func.id, _convert(node.args[0], text, calls), _convert(node.args[1], text, calls))
    allowed = ALLOWED + "".join(f", {c}(input)" for c in calls)
    raise ShapeRuleError(f"in {text!r}: {ast.unparse(node)!r} is not part of the shape language; allowed: {allowed}")


def parse_expr(source: str | int, calls: tuple[str, ...] = ()) -> Expr:
    """One integer expression. `calls`: the one-input functions allowed besides the shape language's own
    (a kernel launch description takes numel() and present(); a shape rule none)."""
    if type(source) is int:
        return Const(source)
    if not isinstance(source, str):
        raise ShapeRuleError(f"a dimension must be an int or an expression string, got {source!r}")
    try:
        tree = ast.parse(source.strip(), mode="eval")
    except SyntaxError as e:
        raise ShapeRuleError(f"{source!r} is not a valid expression: {e.msg}") from None
    return _convert(tree.body, source, calls)


def parse_shape(spec: str | Sequence[str | int]) -> ShapeRule:
    """Parse ``"like(x)"``, ``"[e0, e1]"`` or a list of expressions/ints into a ShapeRule."""
    if isinstance(spec, str):
        try:
            tree = ast.parse(spec.strip(), mode="eval").body
        except SyntaxError as e:
            raise ShapeRuleError(f"{spec!r} is not a valid shape rule: {e.msg}") from None
        if isinstance(tree, ast.Call) and isinstance(tree.func, ast.Name) and tree.func.id == "like":
            if len(tree.args) != 1 or not isinstance(tree.args[0], ast.Name) or tree.keywords:
                raise ShapeRuleError(f"in {spec!r}: like() takes one input name")
            return Like(tree.args[0].id)
        if isinstance(tree, (ast.List, ast.Tuple)):
            return Dims(tuple(_convert(e, spec) for e in tree.elts))
        raise ShapeRuleError(f"{spec!r}: a shape rule is 'like(input)' or a list '[dim, ...]'")
    if isinstance(spec, (list, tuple)):
        return Dims(tuple(parse_expr(e) for e in spec))
    raise ShapeRuleError(f"a shape rule is a string or a list of dims, got {spec!r}")


def to_text(node: Expr | ShapeRule) -> str:
    """Canonical source text (used in messages, hashes and generated code comments)."""
    if isinstance(node, Like):
        return f"like({node.input})"
    if isinstance(node, Dims):
        return "[" + ", ".join(to_text(d) for d in node.dims) + "]"
    if isinstance(node, Const):
        return str(node.value)
    if isinstance(node, Dim):
        return f"{node.input}.shape[{node.index}]"
    if isinstance(node, Name):
        return node.name
    if isinstance(node, Item):
        return f"{node.name}[{node.index}]"
    if isinstance(node, Call):
        return f"{node.fn}({node.input})"
    symbol = {"add": "+", "sub": "-", "mul": "*", "floordiv": "//"}.get(node.op)
    if symbol:
        return f"({to_text(node.lhs)} {symbol} {to_text(node.rhs)})"
    return f"{node.op}({to_text(node.lhs)}, {to_text(node.rhs)})"


def references(node: Expr | ShapeRule) -> tuple[set[str], set[str], list[Dim]]:
    """(input names, other names, dim nodes) that an expression or rule mentions."""
    inputs: set[str] = set()
    names: set[str] = set()
    dims: list[Dim] = []

    def visit(n):
        if isinstance(n, Like):
            inputs.add(n.input)
        elif isinstance(n, Dims):
            for d in n.dims:
                visit(d)
        elif isinstance(n, Dim):
            inputs.add(n.input)
            dims.append(n)
        elif isinstance(n, Name):
            names.add(n.name)
        elif isinstance(n, Call):
            inputs.add(n.input)
        elif isinstance(n, BinOp):
            visit(n.lhs)
            visit(n.rhs)

    visit(node)
    return inputs, names, dims


def items(node: Expr | ShapeRule | None) -> list[Item]:
    """The list-attribute elements an expression or rule mentions."""
    if isinstance(node, Item):
        return [node]
    if isinstance(node, Dims):
        return [it for d in node.dims for it in items(d)]
    if isinstance(node, BinOp):
        return items(node.lhs) + items(node.rhs)
    return []


def map_items(node, fn):
    """A copy of `node` with every Item replaced by `fn(item)` (used to make negative indices absolute)."""
    if isinstance(node, Item):
        return fn(node)
    if isinstance(node, Dims):
        return Dims(tuple(map_items(d, fn) for d in node.dims))
    if isinstance(node, BinOp):
        return BinOp(node.op, map_items(node.lhs, fn), map_items(node.rhs, fn))
    return node


# ---- evaluation through an algebra -----------------------------------------------------------


class Algebra(Protocol):
    def const(self, value: int) -> Any: ...
    def dim(self, input: str, index: int) -> Any: ...
    def name(self, name: str) -> Any: ...
    def item(self, name: str, index: int) -> Any: ...
    def binary(self, op: str, lhs: Any, rhs: Any) -> Any: ...


def evaluate(expr: Expr, algebra: Algebra) -> Any:
    if isinstance(expr, Const):
        return algebra.const(expr.value)
    if isinstance(expr, Dim):
        return algebra.dim(expr.input, expr.index)
    if isinstance(expr, Name):
        return algebra.name(expr.name)
    if isinstance(expr, Item):
        return algebra.item(expr.name, expr.index)
    if isinstance(expr, Call):
        return algebra.call(expr.fn, expr.input)
    return algebra.binary(expr.op, evaluate(expr.lhs, algebra), evaluate(expr.rhs, algebra))


def evaluate_shape(rule: ShapeRule, algebra: Algebra, rank_of) -> list[Any]:
    """Every output dim of `rule`; `rank_of(input)` gives an input's rank (for like())."""
    if isinstance(rule, Like):
        return [algebra.dim(rule.input, i) for i in range(rank_of(rule.input))]
    return [evaluate(d, algebra) for d in rule.dims]


def _ceil_div(a, b):
    return (a + b - 1) // b


class IntAlgebra:
    """Concrete evaluation over Python ints (also works unchanged for torch SymInts)."""

    def __init__(self, shapes: dict[str, Sequence[Any]], names: dict[str, Any]):
        self.shapes, self.names = shapes, names

    def const(self, value):
        return value

    def dim(self, input, index):
        shape = self.shapes[input]
        if not -len(shape) <= index < len(shape):
            raise ShapeRuleError(f"{input}.shape[{index}] is out of range for rank {len(shape)}")
        return shape[index]

    def name(self, name):
        return self.names[name]

    def item(self, name, index):
        return int(self.names[name][index])

    def binary(self, op, a, b):
        if op == "add":
            return a + b
        if op == "sub":
            return a - b
        if op == "mul":
            return a * b
        if op == "floordiv":
            return a // b
        if op == "ceil_div":
            return _ceil_div(a, b)
        return self._minmax(op, a, b)

    @staticmethod
    def _minmax(op, a, b):
        if isinstance(a, int) and isinstance(b, int):
            return max(a, b) if op == "max" else min(a, b)
        return torch.sym_max(a, b) if op == "max" else torch.sym_min(a, b)


class CppAlgebra:
    """C++ int64 expression text. `dim_code(input, index)`, `name_code(name)` and `item_code(name, index)`
    spell the leaves. `rule`, a C++ string literal naming the rule ("output 'y' = [...]"), goes with every
    division to the glue's floordiv/ceil_div (csrc/opforge/host.h), with the generated constant `kOp`, so a
    divisor the inputs make zero is reported naming the op and the rule."""

    def __init__(self, dim_code, name_code, item_code, rule: str | None = None):
        self.dim_code, self.name_code, self.item_code, self.rule = dim_code, name_code, item_code, rule

    def const(self, value):
        return f"int64_t({value})"

    def dim(self, input, index):
        return self.dim_code(input, index)

    def name(self, name):
        return self.name_code(name)

    def item(self, name, index):
        return self.item_code(name, index)

    def binary(self, op, a, b):
        symbol = {"add": "+", "sub": "-", "mul": "*"}.get(op)
        if symbol:
            return f"({a} {symbol} {b})"
        if op in ("max", "min"):
            return f"opforge::host::{op}({a}, {b})"
        context = f", kOp, {self.rule}" if self.rule is not None else ""
        return f"opforge::glue::{op}({a}, {b}{context})"
