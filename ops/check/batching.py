"""The declared batch (ops.core.batch) applied to samples: which dims of a sample's tensors to make symbolic in a
dynamic export, and the sample resized along them, so the checks run one exported model at several sizes.

The batch is the declaration's, not input 0's dim 0: RoIAlign varies its rois (`rois.shape[0]`) and keeps its
feature maps; an embedding lookup varies its indices and keeps its table. A sample whose batch input is
absent, empty, or of too small a rank has no batch to vary and is passed over; an op without a batch
(`batch=None`, or none inferred) is exported with static shapes and checked at its sample's own size."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from .oracle import samples


@dataclass(frozen=True)
class BatchPlan:
    sample: object  # the ops.Sample the model is exported from
    dims: dict[int, int]  # present input index -> the dim of it that is the batch (empty: no batch)
    name: str = "batch"  # the symbolic dim in the exported graph

    @property
    def dynamic(self) -> dict[int, dict[int, str]]:
        """export_onnx's `dynamic`: the batch dim of every batched input is the symbolic `name`."""
        return {k: {d: self.name} for k, d in self.dims.items()}

    @property
    def size(self) -> int | None:
        """The sample's own batch size, or None without a batch."""
        return next((self.sample.inputs[k].shape[d] for k, d in self.dims.items()), None)

    def sizes(self, wanted) -> tuple:
        """The batch sizes to run: `wanted` where the op has a batch, else only the sample's own (None)."""
        return tuple(wanted) if self.dims else (None,)

    def inputs(self, batch: int | None) -> tuple:
        """The sample's inputs at another batch size (entries repeated cyclically along the batch dim, the same
        entries for every batched input); the sample's own inputs for None."""
        if batch is None:
            return tuple(self.sample.inputs)
        return resized(self.sample.inputs, self.dims, batch)

    def dim_names(self, decl) -> dict[str, list]:
        """input name -> its dims, the batch dim as the symbolic name (what shape rules are evaluated over)."""
        return {
            i.name: [self.name if self.dims.get(k) == d else n for d, n in enumerate(t.shape)]
            for k, (i, t) in enumerate(zip(decl.inputs, self.sample.inputs))
            if t is not None
        }


def resized(inputs, dims: dict[int, int], batch: int) -> tuple:
    """`inputs` with every input k in `dims` resized to `batch` along dim dims[k], entries taken cyclically."""
    size = next(inputs[k].shape[d] for k, d in dims.items())
    rows = torch.arange(batch) % size
    return tuple(t.index_select(dims[k], rows.to(t.device)) if k in dims else t for k, t in enumerate(inputs))


def batched_inputs(decl, sample) -> dict[int, int] | None:
    """{input index: batch dim} over the sample's present inputs, or None when the sample has no batch to vary
    (its batch input absent, of too small a rank, or empty) or the op declares none."""
    batch = decl.batch
    if not batch.dims:
        return None
    dims = {}
    for k, (i, t) in enumerate(zip(decl.inputs, sample.inputs)):
        d = None if t is None else batch.dim_of(i.name, t.dim())
        if d is not None:
            dims[k] = d
        elif i.name == batch.input:
            return None  # the input that defines the batch is absent or of too small a rank
    k = next(k for k, i in enumerate(decl.inputs) if i.name == batch.input)
    return dims if sample.inputs[k].shape[dims[k]] > 0 else None


def batch_plan(op, dtype: str = "float32") -> BatchPlan | None:
    """The first sample (of `dtype`, on CPU) to export: with a batch to vary when the op has one; for an op
    without one, the first sample with no empty input. None when no sample qualifies."""
    all_samples = samples(op, "cpu", dtype)
    if op.decl.batch.dims:
        for s in all_samples:
            dims = batched_inputs(op.decl, s)
            if dims is not None:
                return BatchPlan(s, dims, op.decl.batch.name)
        return None
    for s in all_samples:
        if all(t is None or t.numel() > 0 for t in s.inputs):
            return BatchPlan(s, {}, op.decl.batch.name)
    return None
