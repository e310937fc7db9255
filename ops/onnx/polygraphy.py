"""Polygraphy's Comparator over an opforge ONNX model: its OnnxrtRunner on our session (the op package's
native custom-op library registered) vs a small runner for torch eager (the same op through the
dispatcher), compared with the op's float32 tolerance. The session comes from ops.onnx.ort_session, which
builds and registers the library."""

from __future__ import annotations

import time
import warnings

import torch

from ..core import lazy
from . import ort_session
from .models import single_op_module


def compare_with_polygraphy(op, path, plan, batches=(1, 3, 8)) -> tuple[bool, str]:
    import numpy as np

    lazy.require("polygraphy")
    from polygraphy.backend.base import BaseRunner
    from polygraphy.backend.onnxrt import OnnxrtRunner
    from polygraphy.comparator import Comparator, CompareFunc
    from polygraphy.logger import G_LOGGER

    G_LOGGER.module_severity = G_LOGGER.ERROR  # ops.check prints one row, not Polygraphy's per-run log

    """`plan`: an ops.check.batching.BatchPlan (the sample the model was exported from, rebatched)."""
    module = single_op_module(op, plan.sample.attrs)
    session = ort_session(path)
    names = [i.name for i in session.get_inputs()]
    shapes = [i.shape for i in session.get_inputs()]
    # numpy dtypes from ORT's type strings ("tensor(int64)"), so integer inputs stay integers
    dtypes = [
        np.dtype({"float": "float32", "double": "float64", "bool": "bool"}.get(t, t))
        for t in (i.type[len("tensor(") : -1] for i in session.get_inputs())
    ]
    out_names = [o.name for o in session.get_outputs()]

    class TorchRunner(BaseRunner):
        def __init__(self):
            super().__init__(name="torch-eager")

        def activate_impl(self):
            pass

        def deactivate_impl(self):
            pass

        def get_input_metadata_impl(self):
            from polygraphy.common import TensorMetadata

            # Plain data, not the session: a local class is a reference cycle, and the session should be
            # freed when the comparison ends, not whenever the cycle collector runs.
            meta = TensorMetadata()
            for name, shape, dtype in zip(names, shapes, dtypes):
                meta.add(name, dtype, shape)
            return meta

        def infer_impl(self, feed_dict):
            start = time.perf_counter()
            with torch.inference_mode():
                out = module(**{n: torch.from_numpy(feed_dict[n]) for n in names})  # graph inputs keep their names
            outs = out if isinstance(out, (tuple, list)) else (out,)
            self.inference_time = time.perf_counter() - start  # the Comparator sums these
            return {n: o.numpy() for n, o in zip(out_names, outs)}

    feeds = []
    for b in batches:
        inputs = [t for t in plan.inputs(b) if t is not None]  # b None: the sample's own size (no batch)
        feeds.append({n: t.numpy() for n, t in zip(names, inputs)})
    rtol, atol = op.decl.tolerance("float32")
    # Polygraphy's statistics take means over every output, empty ones too (numpy's "Mean of empty slice"): the
    # verdict does not depend on them, so they are not shown.
    with warnings.catch_warnings(), np.errstate(all="ignore"):
        warnings.simplefilter("ignore", RuntimeWarning)
        results = Comparator.run([OnnxrtRunner(lambda: session), TorchRunner()], data_loader=feeds)
        ok = bool(Comparator.compare_accuracy(results, compare_func=CompareFunc.simple(rtol=rtol, atol=atol)))
    return ok, (
        f"Comparator: OnnxrtRunner(native opforge ops) vs torch eager, "
        f"{'batch ' + '/'.join(map(str, batches)) if batches != (None,) else 'static shapes'}, "
        f"rtol/atol {rtol:g}/{atol:g}: {'match' if ok else 'MISMATCH'}"
    )
