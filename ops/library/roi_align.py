"""opforge::roi_align: RoIAlign (Mask R-CNN) with the semantics of torchvision.ops.roi_align(features, rois,
(pooled_height, pooled_width), spatial_scale, sampling_ratio, aligned), rois in torchvision's Tensor[K, 5] form
(batch_index, x1, y1, x2, y2). Everything is computed in float32 (fp16/bf16 inputs are upcast exactly), with
torchvision's arithmetic in torchvision's order, so float32 results are bitwise those of its CPU kernel:

    offset      = 0.5 if aligned else 0
    x_start     = x1 * spatial_scale - offset                 (y_start, x_end, y_end likewise)
    roi_w       = x_end - x_start, at least 1 when not aligned (roi_h likewise)
    bin_w       = roi_w / pooled_width
    grid_w      = sampling_ratio if sampling_ratio > 0 else ceil(roi_w / pooled_width)   (0 and -1: adaptive)
    x(pw, ix)   = (x_start + pw * bin_w) + ((ix + 0.5) * bin_w) / grid_w,  ix < grid_w   (y likewise)
    y[k, c, ph, pw] = sum over the grid_h x grid_w samples of bilinear(features[b, c], y, x) / max(grid_h * grid_w, 1)

bilinear(): a sample with y < -1, y > H, x < -1 or x > W (or a NaN coordinate) is 0; otherwise y (x) is
clamped up to 0, y_low = int(y), and where y_low >= H - 1 both rows are H - 1 with y = H - 1; the value is
hy*hx*v(y_low, x_low) + hy*lx*v(y_low, x_high) + ly*hx*v(y_high, x_low) + ly*lx*v(y_high, x_high), all four
terms summed in that order (a zero weight times an inf feature is NaN, as in torchvision).

Choices where torchvision is undefined or reads out of bounds (every host does the same):
- The batch index must be an integer in [0, N): anything else (2.5, -1, N, NaN, inf) is an error naming the
  op, the roi row and the value (the reference raises ValueError, the CPU kernel returns an error Status). The
  CUDA kernels cannot return an error from the device: they write zeros for such a roi (forward) and take no
  gradient from it (backward); they never read outside the features.
- A roi whose start or size is not finite (after scaling: inf/NaN coordinates, or an overflowing size) gives
  zeros and passes no gradient.
- The adaptive grid is at most 65536 samples per axis (torchvision's int conversion overflows past 2^31);
  a roi that needs more gets 65536, i.e. its bin is averaged over 65536 evenly spaced samples per axis.
- A feature map with H == 0 or W == 0 has no valid sample: zeros (torchvision would read index -1).

pooled_height and pooled_width are two int attributes, not one list[int] output_size: they are
torchvision's own operator schema (torch.ops.torchvision.roi_align(input, rois, spatial_scale, pooled_height,
pooled_width, sampling_ratio, aligned)), ONNX RoiAlign's output_height/output_width and the fields of
TensorRT's ROIAlign_TRT plugin, and scalar INT fields reach a TensorRT plugin without a length to check.

The backward is its own op, opforge::roi_align_backward(grad_out, rois, features, ...) -> grad_features (CPU
and CUDA kernels, no ONNX); features is read for its shape only. rois are constants of the sampling, as in
torchvision (whose backward gives them None): their gradient is zeros, so that autograd.grad over every floating
input works as for any other op."""

import torch

from ops import FLOATING, Attr, Input, Output, Sample, register_op

MAX_GRID = 65536  # per axis; kMaxGrid in csrc/roi_align/roi_align.h

ATTRS = [
    Attr("pooled_height", int),
    Attr("pooled_width", int),
    Attr("spatial_scale", float, 1.0),
    Attr("sampling_ratio", int, -1),
    Attr("aligned", bool, False),
]


def random_rois(k, n, height, width, *, spatial_scale=1.0, spread=True, outside=0.0, degenerate=0, generator=None):
    """k rois [k, 5] in input coordinates (feature map size / spatial_scale): batch indices spread over n images
    (all 0 if not spread), boxes within the image, `outside` times the image size of overhang allowed, and the
    last `degenerate` boxes with x2 < x1 / y2 < y1 or zero size."""
    g = generator
    ih, iw = height / spatial_scale, width / spatial_scale
    lo = torch.tensor([-outside * iw, -outside * ih])
    span = torch.tensor([iw * (1 + 2 * outside), ih * (1 + 2 * outside)])
    a = lo + torch.rand(k, 2, generator=g) * span
    b = lo + torch.rand(k, 2, generator=g) * span
    p1, p2 = torch.minimum(a, b), torch.maximum(a, b)
    if degenerate:
        p1[-degenerate:], p2[-degenerate:] = p2[-degenerate:].clone(), p1[-degenerate:].clone()
        p2[-1] = p1[-1]  # zero size
    idx = torch.randint(0, n, (k, 1), generator=g).float() if spread else torch.zeros(k, 1)
    return torch.cat([idx, p1, p2], dim=1)


def _case(device, dtype, n, c, h, w, k, *, grad=False, spread=True, outside=0.0, degenerate=0, **attrs):
    g = torch.Generator().manual_seed(n * 1000 + c * 100 + h * 10 + w + k)
    feats = torch.randn(n, c, h, w, generator=g)
    rois = random_rois(
        k,
        n,
        h,
        w,
        spatial_scale=attrs.get("spatial_scale", 1.0),
        spread=spread,
        outside=outside,
        degenerate=degenerate,
        generator=g,
    )
    put = lambda t: t.to(device=device, dtype=dtype)  # noqa: E731
    if grad:
        go = torch.randn(k, c, attrs["pooled_height"], attrs["pooled_width"], generator=g)
        return Sample(put(go), put(rois), put(feats), **attrs)
    return Sample(put(feats), put(rois), **attrs)


# (N, C, H, W, K), options. The first has one image (every batch index 0), so the batch checks may resize the
# features to any N; the second (N = 2, rois spread) is the one torch.export/compile rebatch to larger N.
CASES = [
    ((1, 3, 7, 9, 7), dict(pooled_height=2, pooled_width=3, sampling_ratio=2, aligned=True, spread=False, outside=0.1)),
    ((2, 4, 8, 6, 9), dict(pooled_height=3, pooled_width=3, spatial_scale=0.5, outside=0.2)),
    ((3, 2, 5, 7, 6), dict(pooled_height=2, pooled_width=2, sampling_ratio=0, aligned=True, outside=0.5, degenerate=2)),
    ((2, 5, 6, 6, 5), dict(pooled_height=1, pooled_width=4, spatial_scale=0.25, sampling_ratio=3, degenerate=2)),
    # more channels than one CUDA chunk (64 fp32 / 128 half), not a multiple of the 16-byte pack
    ((1, 70, 4, 5, 3), dict(pooled_height=2, pooled_width=2, sampling_ratio=1, aligned=True, outside=0.3)),
]


def samples(device, dtype):
    out = [_case(device, dtype, *shape, **opts) for shape, opts in CASES]
    out.append(_case(device, dtype, 2, 3, 4, 4, 0, pooled_height=2, pooled_width=2))  # no rois
    return out


def backward_samples(device, dtype):
    # No empty sample: with K = 0 grad_features is zeros of the features' full shape, where the generated
    # empty-input test expects empty outputs. tests/library/test_roi_align.py covers K = 0.
    # First a sample with N = 2: grad_features' dim 0 is N, which torch.export must keep symbolic.
    return [_case(device, dtype, *shape, grad=True, **opts) for shape, opts in CASES[1:] + CASES[:1]]


def check_attrs(op, pooled_height, pooled_width, sampling_ratio):
    if pooled_height < 1 or pooled_width < 1:
        raise ValueError(f"{op}: pooled_height and pooled_width must be >= 1, got {pooled_height} x {pooled_width}")
    if sampling_ratio > MAX_GRID:
        raise ValueError(f"{op}: sampling_ratio must be <= {MAX_GRID} (<= 0: adaptive), got {sampling_ratio}")


def check_batch_index(op, rois, n):
    """ValueError naming the first roi whose batch index is not an integer in [0, n)."""
    b = rois[:, 0].double()
    bad = ~((b == torch.floor(b)) & (b >= 0) & (b < n))  # NaN fails every comparison
    if bool(bad.any()):
        row = int(torch.nonzero(bad)[0, 0])
        raise ValueError(
            f"{op}: rois[{row}, 0] (the batch index) is {float(b[row])!r}; it must be an integer in "
            f"[0, N) where features' N is {n}"
        )


def _samples_of(rois, height, width, pooled_height, pooled_width, spatial_scale, sampling_ratio, aligned):
    """Every sampling point of every bin, flattened in (roi, ph, pw, iy, ix) order, as float32 tensors:
    (bin index, batch index, y, x, valid) and the per-roi count = max(grid_h * grid_w, 1)."""
    dev = rois.device
    f32 = dict(dtype=torch.float32, device=dev)
    scale = torch.tensor(spatial_scale, **f32)
    offset = torch.tensor(0.5 if aligned else 0.0, **f32)
    x0, y0, x1, y1 = (rois[:, i] * scale - offset for i in range(1, 5))
    roi_w, roi_h = x1 - x0, y1 - y0
    if not aligned:
        roi_w, roi_h = roi_w.clamp(min=1.0), roi_h.clamp(min=1.0)
    bin_h, bin_w = roi_h / pooled_height, roi_w / pooled_width
    finite = torch.isfinite(y0) & torch.isfinite(x0) & torch.isfinite(roi_h) & torch.isfinite(roi_w)
    if sampling_ratio > 0:
        grid_h = torch.full_like(roi_h, float(sampling_ratio))
        grid_w = torch.full_like(roi_w, float(sampling_ratio))
    else:
        grid_h = torch.ceil(roi_h / pooled_height).clamp(0, MAX_GRID)  # <= 0 (aligned, x2 < x1): no samples
        grid_w = torch.ceil(roi_w / pooled_width).clamp(0, MAX_GRID)
    zero = torch.zeros_like(grid_h)
    grid_h = torch.where(finite, grid_h, zero).long()
    grid_w = torch.where(finite, grid_w, zero).long()
    count = (grid_h * grid_w).clamp(min=1).float()

    k = rois.shape[0]
    bins = pooled_height * pooled_width
    per_bin = (grid_h * grid_w).repeat_interleave(bins)  # [K * bins]
    bin_id = torch.repeat_interleave(torch.arange(k * bins, device=dev), per_bin)  # [S]
    starts = torch.cumsum(per_bin, 0) - per_bin
    j = torch.arange(bin_id.numel(), device=dev) - starts[bin_id]  # position inside the bin's grid
    r = bin_id // bins
    gw = grid_w[r]
    iy, ix = j // gw.clamp(min=1), j % gw.clamp(min=1)
    ph = ((bin_id % bins) // pooled_width).float()
    pw = ((bin_id % bins) % pooled_width).float()
    gh_f, gw_f = grid_h[r].float(), gw.float()
    y = (y0[r] + ph * bin_h[r]) + ((iy.float() + 0.5) * bin_h[r]) / gh_f
    x = (x0[r] + pw * bin_w[r]) + ((ix.float() + 0.5) * bin_w[r]) / gw_f
    valid = (y >= -1) & (y <= height) & (x >= -1) & (x <= width) & (height > 0) & (width > 0)
    return bin_id, r, y, x, valid, count


def roi_align_float(features, rois, pooled_height, pooled_width, spatial_scale, sampling_ratio, aligned):
    """[K, C, ph, pw] in float32 (features and rois float32): every sample gathered from a channels-last copy
    and summed into its bin in sample order (index_add_), then divided by the roi's count."""
    check_attrs("opforge::roi_align", pooled_height, pooled_width, sampling_ratio)
    n, c, h, w = features.shape
    check_batch_index("opforge::roi_align", rois, n)
    k = rois.shape[0]
    bins = pooled_height * pooled_width
    bin_id, r, y, x, valid, count = _samples_of(
        rois, h, w, pooled_height, pooled_width, spatial_scale, sampling_ratio, aligned
    )
    zero = torch.zeros_like(y)
    # Samples that are not taken are moved to (0, 0) first, so nothing below overflows or reads outside.
    y = torch.where(valid, y, zero).clamp(min=0)
    x = torch.where(valid, x, zero).clamp(min=0)
    y_low, x_low = y.long(), x.long()
    top_y, top_x = y_low >= h - 1, x_low >= w - 1
    y_low = torch.where(top_y, torch.full_like(y_low, max(h - 1, 0)), y_low)
    x_low = torch.where(top_x, torch.full_like(x_low, max(w - 1, 0)), x_low)
    y_high = torch.where(top_y, y_low, y_low + 1)
    x_high = torch.where(top_x, x_low, x_low + 1)
    y = torch.where(top_y, y_low.float(), y)
    x = torch.where(top_x, x_low.float(), x)
    ly, lx = y - y_low.float(), x - x_low.float()
    hy, hx = 1.0 - ly, 1.0 - lx
    flat = features.permute(0, 2, 3, 1).reshape(n * h * w, c)
    if flat.shape[0] == 0:  # no pixel (N, H or W is 0): no sample is taken, but the gathers need a row
        flat = features.new_zeros(1, c)
    base = rois[:, 0].long()[r] * (h * w)

    def v(yy, xx):
        return flat.index_select(0, torch.where(valid, base + yy * w + xx, torch.zeros_like(base)))

    val = (
        ((hy * hx)[:, None] * v(y_low, x_low) + (hy * lx)[:, None] * v(y_low, x_high))
        + (ly * hx)[:, None] * v(y_high, x_low)
    ) + (ly * lx)[:, None] * v(y_high, x_high)
    val = torch.where(valid[:, None], val, torch.zeros_like(val))
    out = torch.zeros(k * bins, c, dtype=torch.float32, device=features.device).index_add(0, bin_id, val)
    out = out / count.repeat_interleave(bins)[:, None]
    return out.reshape(k, pooled_height, pooled_width, c).permute(0, 3, 1, 2).contiguous()


def backward(ctx, grad):
    grad_features = torch.ops.opforge.roi_align_backward(
        grad,
        ctx.rois,
        ctx.features,
        ctx.pooled_height,
        ctx.pooled_width,
        ctx.spatial_scale,
        ctx.sampling_ratio,
        ctx.aligned,
    )
    # rois are constants of the sampling (torchvision's backward gives them none): a zero gradient, so that
    # autograd.grad over every floating input works as for any op.
    return grad_features, torch.zeros_like(ctx.rois)


@register_op(
    "opforge::roi_align",
    inputs=[
        Input("features", dtypes=FLOATING, rank=4),
        Input("rois", dtypes="like(features)", shape="[rois.shape[0], 5]"),  # (batch_index, x1, y1, x2, y2)
    ],
    outputs=[
        Output("y", shape="[rois.shape[0], features.shape[1], pooled_height, pooled_width]", dtype="like(features)")
    ],
    attrs=ATTRS,
    # CUDA: a channels-last copy of features (channels padded to a multiple of 8, so every pixel's channels
    # start 16-byte aligned), 4 bytes an element (half types use half of it), + 16 for alignment.
    workspace="features.shape[0] * features.shape[2] * features.shape[3] * ceil_div(features.shape[1], 8) * 32 + 16",
    backward=backward,
    saves=("features", "rois"),
    samples=samples,
    # The number of samples of a bin depends on the data (adaptive grid): no standard-ONNX body (ONNX's own
    # RoiAlign has no roi-size clamp, no batch-index column and another sample/boundary rule).
    onnx_fallback=False,
)
def roi_align(features, rois, pooled_height, pooled_width, spatial_scale=1.0, sampling_ratio=-1, aligned=False):
    """torchvision.ops.roi_align(features, rois, (pooled_height, pooled_width), ...) in float32."""
    out = roi_align_float(
        features.float(), rois.detach().float(), pooled_height, pooled_width, spatial_scale, sampling_ratio, aligned
    )
    # A zero gradient for rois (see backward): 0.0 that depends on rois, without NaN * 0 for non-finite rois.
    zero = torch.where(torch.zeros_like(rois, dtype=torch.bool), rois.float(), 0.0).sum()
    return (out + zero).to(features.dtype)


@register_op(
    "opforge::roi_align_backward",
    inputs=[
        Input("grad_out", dtypes=FLOATING, shape="[grad_out.shape[0], grad_out.shape[1], pooled_height, pooled_width]"),
        Input("rois", dtypes="like(grad_out)", shape="[grad_out.shape[0], 5]"),
        # read for its shape (grad_features is like it) and dtype only
        Input(
            "features",
            dtypes="like(grad_out)",
            shape="[features.shape[0], grad_out.shape[1], features.shape[2], features.shape[3]]",
        ),
    ],
    outputs=[Output("grad_features", shape="like(features)", dtype="like(features)")],
    attrs=ATTRS,
    # CUDA: grad_features accumulated channels-last in float32 with atomics (channels padded to a multiple of
    # 8), then transposed (and converted) into grad_features; + 16 for alignment.
    workspace="features.shape[0] * features.shape[2] * features.shape[3] * ceil_div(features.shape[1], 8) * 32 + 16",
    samples=backward_samples,
    onnx=False,
    # float32: a pixel's gradient sums the weighted grads of every sample near it, in another order (atomics
    # on CUDA) than autograd's.
    tolerances={"float32": (2e-5, 2e-6)},
)
def roi_align_backward(
    grad_out, rois, features, pooled_height, pooled_width, spatial_scale=1.0, sampling_ratio=-1, aligned=False
):
    """grad_features of opforge::roi_align: autograd through its float32 reference (it is linear in features)."""
    with torch.enable_grad():
        f = torch.zeros(features.shape, dtype=torch.float32, device=features.device, requires_grad=True)
        out = roi_align_float(f, rois.float(), pooled_height, pooled_width, spatial_scale, sampling_ratio, aligned)
        (grad,) = torch.autograd.grad(out, (f,), grad_out.float(), allow_unused=True)
    return (torch.zeros_like(f) if grad is None else grad).to(features.dtype)
