"""opforge::multi_scale_deformable_attn: the core of Deformable DETR's MSDeformAttn, with the semantics of its
`ms_deform_attn_core_pytorch` (F.grid_sample per level, bilinear, zero padding, align_corners=False, grid =
2 * location - 1):

    out[n, q, m*D + d] = sum_{l, p} attention_weights[n, q, m, l, p] * sample_l(n, m, d, x, y)
    x = sampling_locations[n, q, m, l, p, 0] * W_l - 0.5,  y = sampling_locations[..., 1] * H_l - 0.5

where sample_l interpolates value[n, level_start_index[l] + row * W_l + col, m, d] bilinearly over the
H_l x W_l image of level l, corners outside the image counting as 0 (so a point with x < -1, x > W_l, y < -1
or y > H_l samples 0, infinite locations included). A NaN location samples NaN (as grid_sample does) and passes
no gradient to value or sampling_locations; attention weights always multiply the sample (NaN * 0 is NaN).

spatial_shapes [L, 2] (H, W per level) and level_start_index [L] are int64 tensors read where the op runs (no
host sync on CUDA). value's S must equal sum(H * W) and level_start_index must be the prefix sums:
- the CPU kernel checks both and fails with a message naming the input and the values;
- the CUDA kernels cannot check without a sync, so they bound every read instead: a corner counts only if it
  lies inside its level (0 <= row < H_l, 0 <= col < W_l) and its value row level_start_index[l] + row * W_l +
  col lies in [0, S); a level with H_l or W_l outside [0, S] or a start outside [0, S] samples 0 everywhere.
  With consistent tensors this is the op above; with inconsistent ones it is that formula with such corners
  read as 0, never a read (or, in the backward, a write) outside the tensors. The reference computes the same.

The backward is its own op, opforge::multi_scale_deformable_attn_backward (CPU and CUDA kernels), giving
grad_value, grad_sampling_locations and grad_attention_weights."""

import torch

from ops import FLOATING, Input, Output, Sample, register_op

_N, _LQ, _M, _D = "value.shape[0]", "sampling_locations.shape[1]", "value.shape[2]", "value.shape[3]"
_L, _P = "spatial_shapes.shape[0]", "sampling_locations.shape[4]"

INPUTS = [
    Input("value", dtypes=FLOATING, rank=4),  # [N, S, M, D]
    Input("spatial_shapes", dtypes=("int64",), shape=f"[{_L}, 2]"),  # (H, W) per level
    Input("level_start_index", dtypes=("int64",), shape=f"[{_L}]"),
    Input("sampling_locations", dtypes="like(value)", shape=f"[{_N}, {_LQ}, {_M}, {_L}, {_P}, 2]"),  # (x, y)
    Input("attention_weights", dtypes="like(value)", shape=f"[{_N}, {_LQ}, {_M}, {_L}, {_P}]"),
]
OUTPUT_SHAPE = f"[{_N}, {_LQ}, {_M} * {_D}]"

# Sample configurations: (N, levels [(H, W)], M, D, Lq, P, location range). Locations are uniform over the range,
# so a range beyond [0, 1] puts points outside (partly or wholly) the levels.
CONFIGS = [
    # first: N = 2 for the batch tests; small levels and many points, so the NaN/inf tests' poisoned value
    # elements (first, middle, last) lie under some point's corner.
    (2, [(3, 4), (2, 3)], 2, 4, 6, 3, (-0.1, 1.1)),
    (1, [(4, 6), (3, 2), (1, 1)], 3, 5, 7, 2, (0.0, 1.0)),  # odd D, a 1x1 level
    (3, [(5, 3)], 1, 8, 4, 4, (-0.6, 1.6)),  # one level, many points wholly outside
    (2, [(6, 7), (3, 4), (2, 2), (1, 1)], 2, 16, 5, 2, (-0.05, 1.05)),  # four levels, as in Deformable DETR
    (1, [(2, 5), (4, 1)], 4, 33, 3, 1, (0.0, 1.0)),  # more channels than one CUDA lane group pass
    (2, [(3, 4), (2, 3)], 2, 4, 0, 3, (0.0, 1.0)),  # no queries
    (0, [(3, 4), (2, 3)], 2, 4, 5, 2, (0.0, 1.0)),  # empty batch
]


def _levels(levels, device):
    shapes = torch.tensor(levels, dtype=torch.int64, device=device).reshape(-1, 2)
    sizes = shapes[:, 0] * shapes[:, 1]
    start = torch.cat([sizes.new_zeros(1), sizes.cumsum(0)[:-1]])
    return shapes, start


def make_sample(device, dtype, n, levels, m, d, lq, p, loc_range, grad=False, generator=None):
    """Random inputs of one configuration (value ~ N(0, 1), attention weights softmax-normalised per (q, m), as
    in MSDeformAttn); with grad=True, grad_output appended (the backward op's inputs)."""
    g = generator if generator is not None else torch.Generator().manual_seed(len(levels) * 1000 + lq * 10 + d)
    shapes, start = _levels(levels, "cpu")
    s, nl = int((shapes[:, 0] * shapes[:, 1]).sum()), len(levels)
    lo, hi = loc_range
    value = torch.randn(n, s, m, d, generator=g)
    loc = torch.rand(n, lq, m, nl, p, 2, generator=g) * (hi - lo) + lo
    attn = torch.randn(n, lq, m, nl * p, generator=g).softmax(-1).reshape(n, lq, m, nl, p)
    inputs = [
        value.to(device=device, dtype=dtype),
        shapes.to(device),
        start.to(device),
        loc.to(device=device, dtype=dtype),
        attn.to(device=device, dtype=dtype),
    ]
    if grad:
        inputs.append(torch.randn(n, lq, m * d, generator=g).to(device=device, dtype=dtype))
    return Sample(*inputs)


def samples(device, dtype):
    return [make_sample(device, dtype, *c) for c in CONFIGS]


def backward_samples(device, dtype):
    # No Lq = 0 sample: grad_value is then a full-size zero tensor, while the generated empty-input test expects
    # every output of an empty sample to be empty. tests/library covers it.
    return [make_sample(device, dtype, *c, grad=True) for c in CONFIGS if c[4] > 0]


def msda_core(value, spatial_shapes, level_start_index, sampling_locations, attention_weights):
    """The op in value's dtype (float32 for the declaration; the tests also run it in float64), by gathering the
    four corners of every point from value (no host sync: the level tensors stay tensors)."""
    n, s, m, d = value.shape
    lq, nl, p = sampling_locations.shape[1], sampling_locations.shape[3], sampling_locations.shape[4]
    hi = spatial_shapes[:, 0].reshape(1, 1, 1, nl, 1)
    wi = spatial_shapes[:, 1].reshape(1, 1, 1, nl, 1)
    start = level_start_index.reshape(1, 1, 1, nl, 1)
    hf, wf = hi.to(value.dtype), wi.to(value.dtype)
    loc = sampling_locations.permute(0, 2, 1, 3, 4, 5)  # [N, M, Lq, L, P, 2]
    x = loc[..., 0] * wf - 0.5
    y = loc[..., 1] * hf - 0.5
    nan = torch.isnan(x) | torch.isnan(y)
    # Points whose every corner lies outside their level (and NaN ones) are moved to (-2, -2), so the arithmetic
    # below stays finite for them and passes them no gradient.
    skip = nan | (x < -1) | (x > wf) | (y < -1) | (y > hf)
    x = torch.where(skip, torch.full_like(x, -2.0), x)
    y = torch.where(skip, torch.full_like(y, -2.0), y)
    x0, y0 = torch.floor(x), torch.floor(y)
    lx, ly = x - x0, y - y0
    hx, hy = 1 - lx, 1 - ly
    xi, yi = x0.long(), y0.long()
    # value as [N, M, S + 1, D]: row S is zeros, where corners outside their level (or outside value) point.
    table = torch.cat([value.permute(0, 2, 1, 3), value.new_zeros(n, m, 1, d)], 2)
    val = None
    for dy, dx, wt in ((0, 0, hy * hx), (0, 1, hy * lx), (1, 0, ly * hx), (1, 1, ly * lx)):
        r, c = yi + dy, xi + dx
        row = start + r * wi + c
        valid = (r >= 0) & (r < hi) & (c >= 0) & (c < wi) & (row >= 0) & (row < s)
        idx = torch.where(valid, row, torch.full_like(row, s)).reshape(n, m, lq * nl * p, 1)
        v = table.gather(2, idx.expand(n, m, lq * nl * p, d)).reshape(n, m, lq, nl * p, d)
        term = wt.reshape(n, m, lq, nl * p, 1) * v
        val = term if val is None else val + term
    val = torch.where(nan.reshape(n, m, lq, nl * p, 1), torch.full_like(val, float("nan")), val)
    a = attention_weights.permute(0, 2, 1, 3, 4).reshape(n, m, lq, nl * p, 1)
    out = (val * a).sum(3)  # [N, M, Lq, D]
    return out.permute(0, 2, 1, 3).reshape(n, lq, m * d)


def backward(ctx, grad):
    grad_value, grad_loc, grad_attn = torch.ops.opforge.multi_scale_deformable_attn_backward(
        ctx.value, ctx.spatial_shapes, ctx.level_start_index, ctx.sampling_locations, ctx.attention_weights, grad
    )
    return grad_value, None, None, grad_loc, grad_attn


@register_op(
    "opforge::multi_scale_deformable_attn",
    inputs=INPUTS,
    outputs=[Output("output", shape=OUTPUT_SHAPE, dtype="like(value)")],
    backward=backward,
    saves=("value", "spatial_shapes", "level_start_index", "sampling_locations", "attention_weights"),
    samples=samples,
)
def multi_scale_deformable_attn(value, spatial_shapes, level_start_index, sampling_locations, attention_weights):
    """ms_deform_attn_core_pytorch (bilinear grid_sample per level, weighted sum over levels and points), computed
    in float32 for every input dtype."""
    out = msda_core(
        value.float(), spatial_shapes, level_start_index, sampling_locations.float(), attention_weights.float()
    )
    return out.to(value.dtype)


@register_op(
    "opforge::multi_scale_deformable_attn_backward",
    inputs=INPUTS + [Input("grad_output", dtypes="like(value)", shape=OUTPUT_SHAPE)],
    outputs=[
        Output("grad_value", shape="like(value)", dtype="like(value)"),
        Output("grad_sampling_locations", shape="like(sampling_locations)", dtype="like(value)"),
        Output("grad_attention_weights", shape="like(attention_weights)", dtype="like(value)"),
    ],
    # CUDA, float16/bfloat16: grad_value is accumulated with float32 atomics here, then converted.
    workspace="4 * value.shape[0] * value.shape[1] * value.shape[2] * value.shape[3]",
    samples=backward_samples,
    onnx=False,
)
def multi_scale_deformable_attn_backward(
    value, spatial_shapes, level_start_index, sampling_locations, attention_weights, grad_output
):
    """(grad_value, grad_sampling_locations, grad_attention_weights): torch.autograd through the forward's
    reference, in float32."""
    with torch.enable_grad():
        leaves = [t.detach().float().requires_grad_() for t in (value, sampling_locations, attention_weights)]
        out = msda_core(leaves[0], spatial_shapes, level_start_index, leaves[1], leaves[2])
        grads = torch.autograd.grad(out, leaves, grad_output.float(), allow_unused=True)
    return tuple((torch.zeros_like(t) if g is None else g).to(value.dtype) for g, t in zip(grads, leaves))
