"""opforge::batched_nms: class-aware non-maximum suppression, torchvision.ops.batched_nms semantics.

keep = the indices of the boxes that survive greedy suppression, in descending score order (ties: lower
index first, as a stable sort by descending score orders them). Boxes are (x1, y1, x2, y2); the IoU of two
boxes is inter / (area_a + area_b - inter) with area = (x2 - x1) * (y2 - y1) (no +1), evaluated in float32
for every input dtype (fp16/bf16 coordinates are upcast exactly), and a box is suppressed by a kept
higher-ranked box of the same class (`idxs`) when IoU > iou_threshold (a float32 comparison, as in
torchvision's CUDA kernel). Boxes of different classes never suppress each other. `max_output` >= 0 keeps at
most that many (the highest-ranked); -1 keeps all. `count` is the number of entries in `keep`.

The reference below is plain PyTorch (no torchvision): a stable sort, a per-class greedy loop over an IoU
matrix of the class, and a merge in score order. Every kernel must reach the same float32 IoU bits, so
decisions (including IoU exactly at the threshold) are identical; the kernels therefore compute
inter = w * h, union = (area_a + area_b) - inter, iou = inter / union without fused multiply-adds."""

import torch

from ops import FLOATING, Attr, Input, Output, Sample, register_op


def random_boxes(n, *, size=100.0, spread=1.0, generator=None):
    """n boxes with realistic overlap: centres in [0, size), widths/heights in [1, size * spread / 4)."""
    g = generator
    centre = torch.rand(n, 2, generator=g) * size
    wh = 1 + torch.rand(n, 2, generator=g) * (size * spread / 4)
    return torch.cat([centre - wh / 2, centre + wh / 2], dim=1)


def samples(device, dtype):
    def put(boxes, scores, idxs, **attrs):
        return Sample(
            boxes.to(device=device, dtype=dtype), scores.to(device=device, dtype=dtype), idxs.to(device=device), **attrs
        )

    def case(n, classes, int32=False, **attrs):
        # Coordinates on a 1/8 grid so they are exact in fp16/bf16 too and IoU ties at the threshold occur;
        # scores on a 1/64 grid so equal scores (ties broken by index) occur too.
        boxes = (random_boxes(n, size=64.0) * 8).round() / 8
        idxs = torch.randint(0, classes, (n,), dtype=torch.int32 if int32 else torch.int64)
        return put(boxes, (torch.rand(n) * 64).floor() / 64, idxs, **attrs)

    # Identical boxes with equal scores: only the lowest index of each class survives.
    dup = torch.tensor([[0.0, 0.0, 4.0, 4.0]]).repeat(6, 1)
    # IoU exactly 0.5 (and exactly 1/3): kept at threshold 0.5, suppressed below it.
    exact = torch.tensor([[0.0, 0.0, 4.0, 2.0], [0.0, 0.0, 2.0, 2.0], [1.0, 0.0, 3.0, 2.0], [8.0, 8.0, 9.0, 9.0]])
    return [
        case(37, 3, iou_threshold=0.5),
        case(130, 1, iou_threshold=0.3),  # one class, several 64-box chunks and a partial one
        case(65, 65, iou_threshold=0.5),  # (nearly) every box its own class
        case(100, 5, iou_threshold=0.6, max_output=7),
        case(50, 2, iou_threshold=0.5, max_output=0),
        put(dup, torch.tensor([0.5, 0.9, 0.9, 0.2, 0.9, 0.9]), torch.tensor([0, 0, 1, 0, 0, 1]), iou_threshold=0.5),
        put(exact, torch.tensor([0.9, 0.8, 0.7, 0.1]), torch.tensor([0, 0, 0, 0]), iou_threshold=0.5),
        put(exact, torch.tensor([0.9, 0.8, 0.7, 0.1]), torch.tensor([0, 0, 0, 0]), iou_threshold=0.25),
        put(exact[:1], torch.tensor([0.3]), torch.tensor([7]), iou_threshold=0.5),  # one box
        case(20, 4, iou_threshold=0.4, int32=True),  # int32 idxs
        put(torch.zeros(0, 4), torch.zeros(0), torch.zeros(0, dtype=torch.int64), iou_threshold=0.5),  # empty
    ]


@register_op(
    "opforge::batched_nms",
    inputs=[
        Input("boxes", dtypes=FLOATING, shape="[boxes.shape[0], 4]"),  # (x1, y1, x2, y2) per box
        Input("scores", dtypes="like(boxes)", shape="[boxes.shape[0]]"),
        Input("idxs", dtypes=("int64", "int32"), shape="[boxes.shape[0]]"),
    ],
    outputs=[
        Output("keep", shape="[count]", dtype="int64"),
        Output.size("count", upper="boxes.shape[0]", opt="boxes.shape[0] // 2"),
    ],
    attrs=[Attr("iou_threshold", float), Attr("max_output", int, -1)],
    # CUDA (batched_nms_cuda.cu carves it and returns an error, never overruns, if it is short): 72 bytes a box
    # for the two radix sorts' keys/values and double buffers, float32 boxes + areas, segment ends, flags and
    # their scan; the per-class suppression bitmask (at most one 64-bit word per box per 64-box column chunk:
    # N * ceil(N / 64) words, reached when every box has one class); CUB's temporary storage (a few bytes a
    # box plus tens of KiB) fits in the remaining 24 bytes a box + 1 MiB.
    workspace="boxes.shape[0] * 96 + 8 * boxes.shape[0] * ceil_div(boxes.shape[0], 64) + 1048576",
    samples=samples,
    onnx_fallback=False,  # greedy suppression is a data-dependent loop: no standard-ONNX body (NonMaxSuppression
    # is per-class-batch with different tie and threshold rules)
)
def batched_nms(boxes, scores, idxs, iou_threshold, max_output=-1):
    """Class-aware greedy NMS (torchvision.ops.batched_nms semantics), IoU in float32; returns (keep, count)."""
    n = boxes.shape[0]
    b = boxes.float()
    s = scores.float()
    order = torch.sort(s, descending=True, stable=True).indices  # ties: lower index first
    area = (b[:, 2] - b[:, 0]) * (b[:, 3] - b[:, 1])
    suppressed = torch.zeros(n, dtype=torch.bool, device=boxes.device)
    cls = idxs.to(torch.int64)
    for c in torch.unique(cls).tolist():
        members = order[cls[order] == c]  # this class, in score order
        m = b[members]
        x1 = torch.maximum(m[:, None, 0], m[None, :, 0])
        y1 = torch.maximum(m[:, None, 1], m[None, :, 1])
        x2 = torch.minimum(m[:, None, 2], m[None, :, 2])
        y2 = torch.minimum(m[:, None, 3], m[None, :, 3])
        inter = (x2 - x1).clamp(min=0) * (y2 - y1).clamp(min=0)
        a = area[members]
        union = (a[:, None] + a[None, :]) - inter
        over = (inter / union) > iou_threshold
        sup = torch.zeros(len(members), dtype=torch.bool)
        for i in range(len(members)):  # greedy: a kept box suppresses every later overlapping one
            if not sup[i]:
                sup[i + 1 :] |= over[i, i + 1 :].cpu()
        suppressed[members] = sup.to(boxes.device)
    keep = order[~suppressed[order]]
    if max_output >= 0:
        keep = keep[:max_output]
    return keep, torch.tensor(keep.numel(), dtype=torch.int64, device=boxes.device)
