"""opforge::batched_nms against a slow, independent pure-Python NMS (loops over numpy float32 scalars, so
every IoU is rounded exactly as the kernels round it), plus the properties NMS must have, over seeded
random cases: few boxes on a coarse grid (so IoU ties at the threshold and equal scores occur), 1-6
classes, thresholds including 0 and 1, max_output caps. Also larger cases against the PyTorch reference."""

import random

import numpy as np
import pytest
import torch

import ops
from ops.library.batched_nms import random_boxes

reference = ops.get_op("opforge::batched_nms").reference  # the plain-PyTorch reference, not the kernel

f32 = np.float32


def nms_op(boxes, scores, idxs, thr, max_output=-1):
    keep, count = torch.ops.opforge.batched_nms(boxes, scores, idxs, thr, max_output)
    assert keep.dtype == torch.int64 and count.dtype == torch.int64 and count.dim() == 0
    assert keep.numel() == int(count)
    return keep.tolist()


def iou32(a, b):
    """IoU in float32, each step rounded (the kernels' arithmetic); a, b are 4-tuples of np.float32."""
    w = max(min(a[2], b[2]) - max(a[0], b[0]), f32(0))
    h = max(min(a[3], b[3]) - max(a[1], b[1]), f32(0))
    inter = f32(w * h)
    area_a = f32((a[2] - a[0]) * (a[3] - a[1]))
    area_b = f32((b[2] - b[0]) * (b[3] - b[1]))
    with np.errstate(invalid="ignore", divide="ignore"):
        return f32(inter / f32(f32(area_a + area_b) - inter))


def slow_nms(boxes, scores, idxs, thr, max_output=-1):
    """Textbook greedy NMS, one Python loop, no sorting library beyond sorted()'s stability."""
    box = [tuple(f32(v) for v in row) for row in boxes.float().tolist()]
    sc = scores.float().tolist()
    cls = idxs.tolist()
    order = sorted(range(len(box)), key=lambda i: -sc[i])  # stable: equal scores keep index order
    kept = []
    for i in order:
        if all(cls[k] != cls[i] or not iou32(box[k], box[i]) > f32(thr) for k in kept):
            kept.append(i)
    return kept if max_output < 0 else kept[:max_output]


def random_case(rng, n, classes, dtype=torch.float32):
    g = torch.Generator().manual_seed(rng.randrange(2**31))
    grid = rng.choice([1.0, 2.0, 8.0])  # coarse coordinates: exact IoU ties happen
    boxes = (random_boxes(n, size=rng.choice([8.0, 32.0]), generator=g) * grid).round() / grid
    scores = (torch.rand(n, generator=g) * rng.choice([4, 16, 1000])).floor() / 16  # many equal scores
    idxs = torch.randint(0, classes, (n,), generator=g)
    return boxes.to(dtype), scores.to(dtype), idxs


def test_matches_slow_python_nms_on_random_cases():
    rng = random.Random(1234)
    checked = 0
    for trial in range(300):
        n = rng.choice([0, 1, 2, 3, 5, 17, 40, 63, 64, 65, 90])
        boxes, scores, idxs = random_case(rng, n, rng.randint(1, 6))
        thr = rng.choice([0.0, 0.25, 0.3, 0.5, 0.7, 1.0])
        cap = rng.choice([-1, -1, 0, 1, 5])
        want = slow_nms(boxes, scores, idxs, thr, cap)
        assert nms_op(boxes, scores, idxs, thr, cap) == want, (trial, n, thr, cap)
        keep, count = reference(boxes, scores, idxs, thr, cap)
        assert keep.tolist() == want and int(count) == len(want), (trial, n, thr, cap)
        checked += len(want)
    assert checked > 1000  # the cases were not all trivially empty


@pytest.mark.parametrize("seed", range(8))
def test_nms_properties(seed):
    rng = random.Random(seed)
    boxes, scores, idxs = random_case(rng, 120, rng.randint(1, 4))
    thr = rng.choice([0.3, 0.5, 0.6])
    keep = nms_op(boxes, scores, idxs, thr)
    box = [tuple(f32(v) for v in row) for row in boxes.tolist()]
    sc, cls = scores.tolist(), idxs.tolist()
    kept = set(keep)
    assert len(kept) == len(keep) and 0 < len(keep) < len(box)  # something was suppressed
    # descending score, equal scores by ascending index
    assert all((-sc[a], a) < (-sc[b], b) for a, b in zip(keep, keep[1:]))
    # no two kept boxes of one class overlap above the threshold
    for x in keep:
        for y in keep:
            assert x == y or cls[x] != cls[y] or not iou32(box[x], box[y]) > f32(thr)
    # every dropped box overlaps a kept, higher-ranked box of its class above the threshold
    rank = {i: (-sc[i], i) for i in range(len(box))}
    for d in set(range(len(box))) - kept:
        assert any(cls[k] == cls[d] and rank[k] < rank[d] and iou32(box[k], box[d]) > f32(thr) for k in keep), d
    # max_output keeps a prefix
    for cap in (0, 1, 3, len(keep), len(keep) + 5):
        assert nms_op(boxes, scores, idxs, thr, cap) == keep[:cap]


def test_ties_identical_boxes_and_classes():
    boxes = torch.tensor([[0.0, 0.0, 2.0, 2.0]]).repeat(5, 1)
    scores = torch.tensor([0.5, 0.7, 0.7, 0.7, 0.1])
    # the first of the equal top scores of each class survives
    assert nms_op(boxes, scores, torch.tensor([0, 0, 0, 0, 0]), 0.5) == [1]
    assert nms_op(boxes, scores, torch.tensor([3, 1, 0, 1, 3]), 0.5) == [1, 2, 0]
    assert nms_op(boxes, scores, torch.arange(5), 0.5) == [1, 2, 3, 0, 4]  # every box its own class
    # IoU exactly at the threshold is not suppressed ("> threshold")
    half = torch.tensor([[0.0, 0.0, 2.0, 1.0], [0.0, 0.0, 1.0, 1.0]])
    assert nms_op(half, torch.tensor([0.9, 0.8]), torch.zeros(2, dtype=torch.int64), 0.5) == [0, 1]
    assert nms_op(half, torch.tensor([0.9, 0.8]), torch.zeros(2, dtype=torch.int64), 0.4999) == [0]


def test_class_ids_negative_huge_and_int32():
    rng = random.Random(7)
    boxes, scores, idxs = random_case(rng, 300, 4)
    ids = torch.tensor([-(2**62), -1, 5, 2**40])[idxs]
    want = slow_nms(boxes, scores, ids, 0.5)
    assert nms_op(boxes, scores, ids, 0.5) == want
    assert nms_op(boxes, scores, torch.tensor([-7, 0, 2**30, -(2**31)], dtype=torch.int32)[idxs], 0.5) == want


@pytest.mark.parametrize("dtype", [torch.float32, torch.float16, torch.bfloat16])
def test_large_random_against_reference(dtype):
    g = torch.Generator().manual_seed(5)
    n = 3000
    boxes = random_boxes(n, size=200.0, generator=g).to(dtype)
    scores = torch.rand(n, generator=g).to(dtype)
    idxs = torch.randint(0, 20, (n,), generator=g)
    for thr, cap in ((0.5, -1), (0.7, 100), (0.2, -1)):
        keep, count = reference(boxes, scores, idxs, thr, cap)
        assert nms_op(boxes, scores, idxs, thr, cap) == keep.tolist()


def test_nan_scores_sort_first_like_torch():
    boxes = torch.tensor([[0.0, 0.0, 1.0, 1.0], [5.0, 5.0, 6.0, 6.0], [0.0, 0.0, 1.0, 1.0], [9.0, 9.0, 9.5, 9.5]])
    scores = torch.tensor([0.2, float("nan"), float("nan"), -0.0])
    idxs = torch.zeros(4, dtype=torch.int64)
    keep, _ = reference(boxes, scores, idxs, 0.5)
    assert nms_op(boxes, scores, idxs, 0.5) == keep.tolist() == [1, 2, 3]


def test_bad_boxes_shape_is_an_error_not_a_crash():
    with pytest.raises(ValueError, match=r"input 'boxes' must have shape \[boxes.shape\[0\], 4\]"):
        torch.ops.opforge.batched_nms(torch.zeros(3, 5), torch.zeros(3), torch.zeros(3, dtype=torch.int64), 0.5, -1)
    with pytest.raises(Exception, match="idxs"):
        torch.ops.opforge.batched_nms(torch.zeros(3, 4), torch.zeros(3), torch.zeros(3), 0.5, -1)
