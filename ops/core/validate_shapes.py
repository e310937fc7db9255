"""The shape half of declaration validation: output shape rules, the expressions they are written in, the
input ranks they imply, and the batch (ops.core.batch). A mixin of ops.core.validate.Validator, whose `fail`
raises the DeclarationError naming op, field, expected, got and the fix."""

from __future__ import annotations

from . import shape_rule as sr
from .batch import DEFAULT_NAME, Batch, ResolvedBatch, inferred_dim, parse_dim, tied_dims
from .declaration import MAX_RANK, NAME_PATTERN, Output, ResolvedInput, ResolvedOutput
from .dtypes import DTYPES
from .errors import ShapeRuleError


class ShapeValidation:
    def rank_value(self, field, value):
        if value is None:
            return None
        if type(value) is not int or not 0 <= value <= MAX_RANK:
            self.fail(field, f"an int in [0, {MAX_RANK}]", value, "kernels see at most 8 dims (opforge::kMaxRank)")
        return value

    def shape(self, field, spec, inputs, attrs, size_names) -> sr.ShapeRule:
        try:
            rule = sr.parse_shape(spec)
        except ShapeRuleError as e:
            self.fail(field, f"a shape rule ({sr.ALLOWED}, or like(input))", spec, str(e))
        self.check_refs(field, spec, rule, inputs, attrs, size_names)
        return self.absolute_items(rule, attrs)

    def expression(self, field, spec, inputs, attrs, size_names, example) -> sr.Expr:
        try:
            expr = sr.parse_expr(spec)
        except ShapeRuleError as e:
            self.fail(field, f"an integer expression ({example})", spec, str(e))
        self.check_refs(field, spec, expr, inputs, attrs, size_names)
        return self.absolute_items(expr, attrs)

    @staticmethod
    def absolute_items(node, attrs):
        """`padding[-1]` -> `padding[1]` for a length-2 list: every backend then indexes from the front."""
        length = {a.name: a.length for a in attrs}
        return sr.map_items(node, lambda it: sr.Item(it.name, it.index % length[it.name]))

    def check_refs(self, field, spec, node, inputs, attrs, size_names):
        used_inputs, names, dims = sr.references(node)
        known = {i.name: i for i in inputs}
        for name in sorted(used_inputs):
            if name not in known:
                self.fail(
                    field, f"references to declared inputs {sorted(known)}", spec, f"'{name}' is not a declared input"
                )
            if known[name].optional:
                self.fail(
                    field,
                    "references to required inputs only",
                    spec,
                    f"'{name}' is optional and may be absent; compute the shape from required inputs",
                )
        int_attrs = {a.name for a in attrs if a.type == "int"}
        for it in sr.items(node):
            a = next((a for a in attrs if a.name == it.name), None)
            if a is None or a.type != "list[int]":
                kind = f"a {a.type} attribute" if a else "not declared"
                self.fail(
                    field,
                    "elements of list[int] attributes",
                    spec,
                    f"'{it.name}' is {kind}; index only list[int] attributes, e.g. stride[0]",
                )
            if a.length is None:
                self.fail(
                    f"attrs.{a.name}.length",
                    "a declared length (the shape rule indexes it)",
                    None,
                    f"declare Attr('{a.name}', 'list[int]', ..., length=N)",
                )
            if not -a.length <= it.index < a.length:
                self.fail(field, f"an index valid for {a.name} of length {a.length}", spec, "fix the index")
        for name in sorted(names):
            if name not in int_attrs and name not in size_names:
                kind = next((a.type for a in attrs if a.name == name), None)
                detail = f"'{name}' is a {kind} attribute" if kind else f"'{name}' is not declared"
                self.fail(
                    field,
                    f"names of int attributes {sorted(int_attrs)} or size outputs {sorted(size_names)}",
                    spec,
                    f"{detail}; shapes are integer arithmetic over dims and int attributes",
                )
        for d in dims:
            rank = known[d.input].rank
            if rank is not None and not -rank <= d.index < rank:
                self.fail(field, f"an index valid for {d.input} of rank {rank}", spec, "fix the index")

    def outputs(self, outputs: list[Output], inputs, attrs) -> tuple[ResolvedOutput, ...]:
        if not outputs:
            self.fail("outputs", "at least one Output", [], "declare what the op returns")
        if all(o.is_size for o in outputs):
            self.fail("outputs", "at least one tensor output besides size outputs", outputs, "add the data output")
        size_names = {o.name for o in outputs if o.is_size}
        out = []
        for o in outputs:
            name = self.identifier("outputs.name", o.name)
            field = f"outputs.{name}"
            if o.is_size:
                upper = self.expression(f"{field}.upper", o.upper, inputs, attrs, set(), "e.g. 'x.shape[0]'")
                opt = self.expression(f"{field}.opt", o.opt, inputs, attrs, set(), "e.g. 'x.shape[0] // 2'")
                if o.dtype != "int64" or o.shape not in ([], (), "[]"):
                    self.fail(
                        field, "a 0-d int64 tensor", (o.shape, o.dtype), "make it with Output.size(name, upper=...)"
                    )
                out.append(ResolvedOutput(name, sr.Dims(()), "int64", None, upper, opt))
                continue
            if o.opt is not None:
                self.fail(
                    f"{field}.opt", "opt only on size outputs", o.opt, "use Output.size(...) for a data-dependent size"
                )
            shape = self.shape(f"{field}.shape", o.shape, inputs, attrs, size_names)
            if isinstance(shape, sr.Dims) and len(shape.dims) > MAX_RANK:
                self.fail(f"{field}.shape", f"at most {MAX_RANK} dims", o.shape, "reduce the rank")
            if not isinstance(o.dtype, str):
                self.fail(f"{field}.dtype", "'like(input)' or a dtype name", o.dtype, "e.g. dtype='like(x)'")
            if o.dtype in DTYPES:
                out.append(ResolvedOutput(name, shape, o.dtype, None))
            else:
                like = self.like_name(f"{field}.dtype", o.dtype, inputs, "an input, or a dtype name")
                out.append(ResolvedOutput(name, shape, None, like))
        return tuple(out)

    def implied_ranks(self, inputs, outputs) -> tuple[ResolvedInput, ...]:
        """An input indexed as x.shape[3] or x.shape[-4] anywhere must have rank >= 4: check it at run time."""
        need: dict[str, int] = {}
        rules = [o.shape for o in outputs] + [o.upper for o in outputs if o.upper is not None]
        rules += [i.shape for i in inputs if i.shape is not None]
        for rule in rules:
            for d in sr.references(rule)[2]:
                need[d.input] = max(need.get(d.input, 0), d.index + 1 if d.index >= 0 else -d.index)
        out = []
        for i in inputs:
            min_rank = max(i.min_rank, need.get(i.name, 0))
            if i.rank is not None and min_rank > i.rank:
                self.fail(
                    f"inputs.{i.name}.rank",
                    f"at least {min_rank} (a shape rule indexes that far)",
                    i.rank,
                    "fix the rank or the shape rule",
                )
            out.append(
                ResolvedInput(i.name, i.dtypes, i.dtype_like, i.optional, i.rank, min_rank, i.shape, i.batch_dim)
            )
        return tuple(out)

    def batch_dim(self, field, value, rank):
        if value is None:
            return None
        if type(value) is not int or not (-rank <= value < rank if rank is not None else -MAX_RANK <= value < MAX_RANK):
            self.fail(
                field,
                f"a dim index of the input (rank {rank if rank is not None else 'any'})",
                value,
                "give the index of the dim that is the op's batch, e.g. batch_dim=0",
            )
        return value % rank if rank is not None else value

    def batch(self, spec, inputs, outputs) -> ResolvedBatch:
        """The op's varying dim (ops.core.batch): inferred ('auto'), declared (a dim reference or ops.Batch), or
        None (the op has none)."""
        if spec is None:
            return ResolvedBatch(DEFAULT_NAME, (), "declared batch=None: no dim varies between calls")
        declared = spec != "auto"
        if declared:
            batch = spec if isinstance(spec, Batch) else Batch(spec) if isinstance(spec, str) else None
            dim = parse_dim(batch.dim) if batch is not None and isinstance(batch.dim, str) else None
            required = {i.name: i for i in inputs if not i.optional}
            if dim is None or dim.input not in required:
                self.fail(
                    "batch",
                    f"'auto', None, or a dim of a required input such as '{inputs[0].name}.shape[0]' "
                    f"(inputs {sorted(required)}), or ops.Batch(dim, name=...)",
                    spec,
                    "name the input dim that varies between calls (the rois of RoIAlign, the indices of a "
                    "gather), or batch=None when none does",
                )
            rank = required[dim.input].rank
            if rank is not None and not -rank <= dim.index < rank:
                self.fail("batch", f"a dim of {dim.input} (rank {rank})", batch.dim, "fix the dim index")
            if not isinstance(batch.name, str) or not NAME_PATTERN.match(batch.name):
                self.fail(
                    "batch.name",
                    "an identifier (the symbolic dim of exported graphs)",
                    batch.name,
                    "e.g. Batch('rois.shape[0]', name='num_rois')",
                )
            name, how = batch.name, "declared"
        else:
            dim, how = inferred_dim(inputs, outputs)
            name = DEFAULT_NAME
            rank = self.input_rank(inputs, dim.input)
            if rank == 0:
                return ResolvedBatch(name, (), f"{how}, which is a rank-0 input: no dim varies")
        ties = {i.name: i.batch_dim for i in inputs if i.batch_dim is not None}
        tied, compound = tied_dims(dim, inputs, ties)
        if compound:
            why = (
                f"input(s) {compound} use the batch dim {dim.input}.shape[{dim.index}] inside arithmetic in their "
                "shape rule, so resizing the batch cannot keep the rule"
            )
            if declared:
                self.fail(
                    "batch",
                    "a dim that input shape rules use only as a whole dim",
                    spec,
                    f"{why}; declare another batch dim, or batch=None",
                )
            return ResolvedBatch(name, (), f"{how}; {why}: no dim varies")
        ranks = {i.name: i.rank for i in inputs}
        dims = tuple(dict.fromkeys((n, k % ranks[n] if ranks[n] else k) for n, k in tied))
        return ResolvedBatch(name, dims, how)

    @staticmethod
    def input_rank(inputs, name):
        return next(i.rank for i in inputs if i.name == name)


def earlier_input(earlier, name):
    return next(e for e in earlier if e.name == name)
