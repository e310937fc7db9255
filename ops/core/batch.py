"""The batch of an op: the one input dim that varies from call to call, and every input dim tied to it.

A model exported with a dynamic batch, and the checks that run that one export at several sizes, must know
which dims to make symbolic and to resize together. That is part of the declaration, not a convention:

- **Declared**: `register_op(..., batch="rois.shape[0]")` names the varying dim (RoIAlign varies its rois, not
  its feature maps); `batch=None` says the op has none (every dim is fixed by the model); `Batch(dim, name=...)`
  also names the symbolic dim in exported graphs (default 'batch').
- **Inferred** (`batch="auto"`, the default): the dim that the first data output's dim 0 is equal to
  (`like(x)` or `[x.shape[0], ...]` gives x's dim 0, `[idx.shape[0], table.shape[1]]` gives idx's), else
  input 0's dim 0 (a data-dependent or computed first dim, e.g. NMS's kept count).

The dims tied to it follow from the inputs' shape rules: an element that *is* a batch dim (`like(x)`,
`[x.shape[0], ...]`, `[rois.shape[0]]`) ties that input dim too, and `Input(batch_dim=k)` declares a tie where no
shape rule states it. An input shape rule that uses a batch dim inside arithmetic (`2 * x.shape[0]`) cannot be
kept equal when the batch is resized: such an op gets no inferred batch, and declaring one is an error.
Nothing here knows torch; ops.check.batching applies the result to sample tensors."""

from __future__ import annotations

from dataclasses import dataclass

from . import shape_rule as sr
from .errors import ShapeRuleError

DEFAULT_NAME = "batch"


@dataclass(frozen=True)
class Batch:
    """The varying dim of an op, as declared: `dim` is a dim reference in the shape language
    ('rois.shape[0]'), `name` the symbolic dim that exported graphs call it."""

    dim: str
    name: str = DEFAULT_NAME


@dataclass(frozen=True)
class ResolvedBatch:
    name: str  # the symbolic dim in exported graphs
    dims: tuple[tuple[str, int], ...]  # (input name, dim index; negative counts from the end): the batch first
    how: str  # "declared" or what the inference read, for ops.check's report

    @property
    def input(self) -> str:
        """The input whose dim defines the batch."""
        return self.dims[0][0]

    def dim_of(self, input_name: str, rank: int) -> int | None:
        """The dim of `input_name` (of rank `rank`) that is the batch, or None."""
        for name, index in self.dims:
            if name == input_name and -rank <= index < rank:
                return index % rank
        return None


def parse_dim(text: str) -> sr.Dim | None:
    """`x.shape[i]` -> Dim(x, i); anything else -> None."""
    try:
        node = sr.parse_expr(text)
    except ShapeRuleError:
        return None
    return node if isinstance(node, sr.Dim) else None


def inferred_dim(inputs, outputs) -> tuple[sr.Dim, str]:
    """The dim the first data output's dim 0 equals, else input 0's dim 0; with what was read."""
    first = next(o for o in outputs if not o.is_size)
    rule = first.shape
    if isinstance(rule, sr.Like):
        return sr.Dim(rule.input, 0), f"output {first.name!r} is like({rule.input})"
    if isinstance(rule, sr.Dims) and rule.dims and isinstance(rule.dims[0], sr.Dim):
        d = rule.dims[0]
        return d, f"output {first.name!r} dim 0 is {d.input}.shape[{d.index}]"
    return sr.Dim(inputs[0].name, 0), f"output {first.name!r} dim 0 is computed; input 0's dim 0"


def tied_dims(start: sr.Dim, inputs, declared_ties: dict[str, int]) -> tuple[list[tuple[str, int]], list[str]]:
    """Every (input, dim) equal to `start` through the inputs' shape rules and declared ties, `start` first;
    and the inputs whose shape rule uses one of them inside arithmetic (the batch cannot be resized then)."""
    tied = [(start.input, start.index)]

    def known(name, index):
        return (name, index) in tied

    changed = True
    while changed:
        changed = False
        for i in inputs:
            pairs = []
            if i.name in declared_ties:
                pairs.append(((i.name, declared_ties[i.name]), None))
            if isinstance(i.shape, sr.Like):
                pairs += [((i.name, k), (i.shape.input, k)) for _, k in list(tied) if _ == i.shape.input]
                pairs += [((i.shape.input, k), (i.name, k)) for _, k in list(tied) if _ == i.name]
            elif isinstance(i.shape, sr.Dims):
                for k, e in enumerate(i.shape.dims):
                    if isinstance(e, sr.Dim):
                        pairs += [((i.name, k), (e.input, e.index)), ((e.input, e.index), (i.name, k))]
            for new, via in pairs:
                if (via is None or known(*via)) and not known(*new):
                    tied.append(new)
                    changed = True
    compound = []
    for i in inputs:
        if isinstance(i.shape, sr.Dims):
            for e in i.shape.dims:
                if not isinstance(e, sr.Dim) and any(known(d.input, d.index) for d in sr.references(e)[2]):
                    compound.append(i.name)
    return tied, sorted(set(compound))
