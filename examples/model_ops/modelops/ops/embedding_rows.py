"""modelops::embedding_rows: rows of a table picked by indices, optionally scaled per row, and their L2 norms.

Input 0 is the table [V, D]; the batch is the number of indices N (inferred: output 'rows' has dim 0
idx.shape[0], and weight's shape rule ties its dim 0 to it). An index outside [-V, V) is an error on the CPU
and gives a zero row on CUDA (no out-of-bounds read; the device cannot raise without a sync)."""

import torch

from ops import FLOATING, Input, Output, Sample, register_op


def samples(device, dtype):
    def table(v, d):
        return torch.randn(v, d).to(device=device, dtype=dtype)

    def idx(n, v, index_dtype=torch.int64):
        return torch.randint(-v, v, (n,), dtype=index_dtype, device=device)

    def weight(n):
        return torch.rand(n).to(device=device, dtype=dtype) + 0.5

    return [
        Sample(table(7, 5), idx(4, 7), weight(4)),  # V=7, N=4: resizing the table would break the indices
        Sample(table(9, 33), idx(6, 9, torch.int32)),
        Sample(table(3, 2), idx(10, 3), None),
        Sample(table(5, 4), idx(0, 5)),  # no indices
    ]


@register_op(
    "modelops::embedding_rows",
    inputs=[
        Input("table", dtypes=FLOATING, rank=2),
        Input("idx", dtypes=("int64", "int32"), rank=1),
        Input("weight", dtypes="like(table)", optional=True, shape="[idx.shape[0]]"),
    ],
    outputs=[
        Output("rows", shape="[idx.shape[0], table.shape[1]]", dtype="like(table)"),
        Output("norms", shape="[idx.shape[0]]", dtype="float32"),
    ],
    samples=samples,
    onnx_fallback=False,  # the index range check has no standard-ONNX form that fails like the kernels
)
def embedding_rows(table, idx, weight=None):
    """(table[idx] * weight[:, None], ||row||_2 in float32), computed in float32."""
    v = table.shape[0]
    if idx.numel() and (int(idx.min()) < -v or int(idx.max()) >= v):
        raise IndexError(f"modelops::embedding_rows: an index is outside [-{v}, {v})")
    rows = table.float()[idx.long()]
    if weight is not None:
        rows = rows * weight.float().unsqueeze(1)
    return rows.to(table.dtype), rows.norm(dim=1)
