"""Which inputs of an op share its batch dim, so an export can make that dim dynamic and the checks can
run the one exported model at other batch sizes.

Input 0's dim 0 is the batch. Every other input whose shape rule says its dim 0 *is* that dim
(`like(x)`, or `[x.shape[0], ...]`) is batched with it: NMS's scores/idxs follow its boxes, a mask follows
its image. An input that uses the dim anywhere else cannot be rebatched consistently, and a sample with an
empty or rank-0 input 0 has no batch to vary; such samples are passed over."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from .. import shape_rule as sr
from .oracle import samples


@dataclass(frozen=True)
class BatchPlan:
    sample: object  # the ops.Sample the model is exported from
    batched: tuple[int, ...]  # indices of the present inputs whose dim 0 is the batch

    @property
    def dynamic(self) -> dict[int, dict[int, str]]:
        """export_onnx's `dynamic`: dim 0 of every batched input is the symbolic 'batch'."""
        return {k: {0: "batch"} for k in self.batched}

    def inputs(self, batch: int) -> tuple:
        """The sample's inputs at another batch size (rows repeated cyclically, the same rows for every
        batched input)."""
        rows = torch.arange(batch) % self.sample.inputs[0].shape[0]
        return tuple(t[rows.to(t.device)] if k in self.batched else t for k, t in enumerate(self.sample.inputs))


def _role(i, first: str, rank: int) -> str:
    """'batched' (its dim 0 is the batch), 'free' (it does not use the batch) or 'tied' (it uses the batch
    elsewhere), for input 0 of rank `rank` in a given sample."""
    if i.shape is None:
        return "free"
    if isinstance(i.shape, sr.Like):
        return "batched" if i.shape.input == first else "free"
    at = [k for k, e in enumerate(i.shape.dims) for d in sr.references(e)[2]
          if d.input == first and d.index % rank == 0]
    if not at:
        return "free"
    lead = i.shape.dims[0]
    return "batched" if at == [0] and isinstance(lead, sr.Dim) else "tied"


def batch_plan(op, dtype: str = "float32") -> BatchPlan | None:
    """The first sample (of `dtype`, on CPU) that can be exported with a dynamic batch, or None."""
    decl = op.decl
    first = decl.inputs[0].name
    for s in samples(op, "cpu", dtype):
        x = s.inputs[0]
        if x is None or x.dim() < 1 or x.shape[0] == 0:
            continue
        roles = {k: _role(i, first, x.dim()) for k, i in enumerate(decl.inputs[1:], start=1)
                 if k < len(s.inputs) and s.inputs[k] is not None}
        if "tied" in roles.values():
            continue
        return BatchPlan(s, (0,) + tuple(k for k, r in roles.items() if r == "batched"))
    return None
