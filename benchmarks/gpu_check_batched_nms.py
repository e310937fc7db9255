"""GPU check + benchmark for opforge::batched_nms (run on a CUDA machine, after `python -m ops.build`):

    PYTHONPATH=. python benchmarks/gpu_check_batched_nms.py --out $OUT/batched_nms.json

1. Correctness: the CUDA kernel against torchvision.ops.batched_nms (same process) and against opforge's CPU
   kernel, over random cases: clustered (detection-like, heavy overlap) and uniform boxes, 1/10/80 classes,
   N in {0, 1, 63, 64, 65, 1000, 10000, 50000, 100000}, fp32/fp16/bf16, int64/int32 idxs, max_output.
   opforge's semantics compute IoU in float32 on the (exactly) upcast coordinates, so torchvision is run on
   boxes.float()/scores.float(). Coordinates are on a 1/8 grid so torchvision's coordinate-offset trick
   (idxs * (max + 1) added to every coordinate, used below 5000 boxes on CUDA) is exact in float32 and
   cannot flip a decision. The result must equal torchvision's index list exactly; where scores tie
   (fp16/bf16 scores), torchvision's per-class path (N > 5000) orders equal scores of different classes by
   class, not by index, so its list is also compared after ordering equal-score runs by index ("tie-canon").
   Every case also compares CUDA with the CPU kernel exactly. Tie-heavy cases (coarse grid, few score
   values) compare CUDA with the CPU kernel and the plain-PyTorch reference.
2. Benchmark (80 classes, clustered boxes, IoU 0.5): opforge CUDA vs torchvision CUDA at 1k/10k/50k boxes
   (triton.testing.do_bench, both including their host sync), and opforge CPU vs torchvision CPU.
Writes a JSON with the card, date, versions, every case (PASS/FAIL) and the timings."""

import argparse
import datetime
import json
import time
import traceback

import torch

import ops

reference = ops.get_op("opforge::batched_nms").reference  # the plain-PyTorch reference (not the kernel)

CASES = []


def record(name, ok, detail=""):
    CASES.append({"case": name, "result": "PASS" if ok else "FAIL", "detail": detail})
    print(f"{'PASS' if ok else 'FAIL'}  {name}  {detail}", flush=True)


def make_boxes(n, classes, kind, gen, grid=8.0):
    """kind 'clustered': n // 8 objects, each with jittered boxes around it, mostly of the object's class
    (detector-like overlap); 'uniform': independent boxes and classes. Coordinates on a 1/grid grid in
    [0, ~1100)."""
    if kind == "clustered":
        objects = max(1, n // 8)
        centre = torch.rand(objects, 2, generator=gen) * 1000
        size = 20 + torch.rand(objects, 2, generator=gen) * 180
        which = torch.randint(0, objects, (n,), generator=gen)
        c = centre[which] + torch.randn(n, 2, generator=gen) * size[which] * 0.1
        wh = size[which] * (1 + 0.15 * torch.randn(n, 2, generator=gen)).clamp(min=0.3)
        label = torch.randint(0, classes, (objects,), generator=gen)[which]
        other = torch.rand(n, generator=gen) < 0.2
        idxs = torch.where(other, torch.randint(0, classes, (n,), generator=gen), label)
    else:
        c = torch.rand(n, 2, generator=gen) * 1000
        wh = 5 + torch.rand(n, 2, generator=gen) * 150
        idxs = torch.randint(0, classes, (n,), generator=gen)
    boxes = torch.cat([c - wh / 2, c + wh / 2], 1).clamp(min=0)
    boxes = (boxes * grid).round() / grid
    scores = torch.rand(n, generator=gen)
    return boxes, scores, idxs


def tie_canon(keep, scores):
    s = scores.float().cpu().tolist()
    return sorted(keep, key=lambda i: (-s[i], i))


def exact_nms(boxes, scores, idxs, thr):
    """Greedy per-class NMS with IoU in float64: on 1/8-grid coordinates below ~1e4, intersection and union
    are exact in float64, so this is NMS in exact arithmetic (ties in score broken by index). Slow (a
    Python loop per kept box): for settling a disagreement, not for every case."""
    keep = []
    s = scores.float()
    for c in torch.unique(idxs):
        m = (idxs == c).nonzero().flatten()
        b = boxes[m].double()
        order = sorted(range(len(m)), key=lambda j: (-float(s[m[j]]), int(m[j])))
        x1, y1, x2, y2 = b.unbind(1)
        area = (x2 - x1) * (y2 - y1)
        dead = torch.zeros(len(m), dtype=torch.bool)
        for j in order:
            if dead[j]:
                continue
            keep.append(int(m[j]))
            w = (torch.minimum(x2[j], x2) - torch.maximum(x1[j], x1)).clamp(min=0)
            h = (torch.minimum(y2[j], y2) - torch.maximum(y1[j], y1)).clamp(min=0)
            inter = w * h
            dead |= inter / (area[j] + area - inter) > thr
    return sorted(keep, key=lambda i: (-float(s[i]), i))


def check_case(n, classes, kind, dtype, thr, cap, idx_dtype=torch.int64, seed=0):
    import torchvision

    name = f"N={n} classes={classes} {kind} {str(dtype).replace('torch.', '')} idxs={str(idx_dtype).replace('torch.', '')} thr={thr} max_output={cap}"
    try:
        gen = torch.Generator().manual_seed(seed * 1000 + n + classes)
        boxes, scores, idxs = make_boxes(n, classes, kind, gen)
        b, s, i = boxes.to(dtype), scores.to(dtype), idxs.to(idx_dtype)
        keep, count = torch.ops.opforge.batched_nms(b.cuda(), s.cuda(), i.cuda(), thr, cap)
        torch.cuda.synchronize()
        got = keep.cpu().tolist()
        problems = []
        if keep.dtype != torch.int64 or count.dtype != torch.int64 or int(count) != len(got):
            problems.append(f"bad outputs: keep {keep.dtype} {tuple(keep.shape)}, count {count.dtype} {int(count)}")
        cpu = torch.ops.opforge.batched_nms(b, s, i, thr, cap)[0].tolist()
        if got != cpu:
            problems.append(f"CUDA != CPU kernel ({len(got)} vs {len(cpu)} kept)")
        tv = torchvision.ops.batched_nms(b.float().cuda(), s.float().cuda(), i.long().cuda(), thr).cpu().tolist()
        canon = tie_canon(tv, s)
        if cap >= 0:
            tv, canon = tv[:cap], canon[:cap]
        how = "exact"
        if got != tv:
            how = "tie-canon"
            if got != canon:
                # torchvision's CUDA IoU is float32 with the compiler's FMA contraction; a pair whose IoU is
                # within rounding of the threshold can go either way. Exact arithmetic settles it.
                exact = exact_nms(b.float(), s, i, thr) if n <= 50000 else None
                if exact is not None and cap >= 0:
                    exact = exact[:cap]
                if exact is not None and got == exact:
                    how = f"exact-arithmetic NMS; torchvision keeps {len(canon)}, exact {len(exact)}"
                else:
                    first = next((k for k, (a, c) in enumerate(zip(got, canon)) if a != c), min(len(got), len(canon)))
                    problems.append(
                        f"!= torchvision: {len(got)} vs {len(canon)} kept, first difference at {first}"
                        + ("" if exact is None else f"; != exact-arithmetic NMS ({len(exact)} kept)")
                    )
        if n <= 1000:
            ref = reference(b, s, i, thr, cap)[0].tolist()
            if got != ref:
                problems.append("!= plain-PyTorch reference")
        record(name, not problems, "; ".join(problems) or f"{len(got)} kept, == torchvision ({how}) and CPU kernel")
    except Exception as e:
        record(name, False, f"{type(e).__name__}: {e}"[:300])
        traceback.print_exc()


def check_ties(n, classes, dtype, thr, seed):
    """Coarse coordinates and 8 score values: IoU exactly at the threshold and equal scores everywhere."""
    name = f"ties N={n} classes={classes} {str(dtype).replace('torch.', '')} thr={thr} seed={seed}"
    try:
        gen = torch.Generator().manual_seed(seed)
        c = torch.randint(0, 40, (n, 2), generator=gen).float()
        wh = torch.randint(1, 12, (n, 2), generator=gen).float()
        b = torch.cat([c, c + wh], 1).to(dtype)
        s = (torch.randint(0, 8, (n,), generator=gen).float() / 8).to(dtype)
        i = torch.randint(0, classes, (n,), generator=gen)
        got = torch.ops.opforge.batched_nms(b.cuda(), s.cuda(), i.cuda(), thr, -1)[0].cpu().tolist()
        cpu = torch.ops.opforge.batched_nms(b, s, i, thr, -1)[0].tolist()
        ref = reference(b, s, i, thr)[0].tolist()
        record(
            name,
            got == cpu == ref,
            f"{len(got)} kept" + ("" if got == cpu == ref else f"; CUDA {len(got)} CPU {len(cpu)} ref {len(ref)}"),
        )
    except Exception as e:
        record(name, False, f"{type(e).__name__}: {e}"[:300])


def bench(args):
    import torchvision
    import triton.testing

    rows = []
    for dtype in (torch.float32, torch.float16):
        for n in (1000, 10000, 50000):
            gen = torch.Generator().manual_seed(n)
            boxes, scores, idxs = make_boxes(n, 80, "clustered", gen)
            b, s, i = boxes.to(dtype).cuda(), scores.to(dtype).cuda(), idxs.cuda()
            ours = lambda: torch.ops.opforge.batched_nms(b, s, i, 0.5, -1)  # noqa: E731 (syncs on count)
            theirs = lambda: torchvision.ops.batched_nms(b, s, i, 0.5)  # noqa: E731 (syncs on the host mask)
            try:
                t_ours = triton.testing.do_bench(ours, warmup=50, rep=300, return_mode="median") * 1e3
                t_tv = triton.testing.do_bench(theirs, warmup=50, rep=300, return_mode="median") * 1e3
                kept = int(ours()[1])
                row = {
                    "device": "cuda",
                    "dtype": str(dtype).replace("torch.", ""),
                    "boxes": n,
                    "classes": 80,
                    "kept": kept,
                    "opforge_us": round(t_ours, 1),
                    "torchvision_us": round(t_tv, 1),
                    "speedup": round(t_tv / t_ours, 2),
                }
            except Exception as e:
                row = {"device": "cuda", "dtype": str(dtype), "boxes": n, "error": f"{type(e).__name__}: {e}"[:300]}
            rows.append(row)
            print(row, flush=True)
    # CPU: median of wall times (torchvision's CPU nms is single-threaded; opforge parallelises over classes).
    for threads in (1, torch.get_num_threads()):
        torch.set_num_threads(threads)
        for n in (1000, 10000, 50000):
            gen = torch.Generator().manual_seed(n)
            b, s, i = make_boxes(n, 80, "clustered", gen)

            def med(f, reps):
                f()
                ts = []
                for _ in range(reps):
                    t = time.perf_counter()
                    f()
                    ts.append(time.perf_counter() - t)
                return sorted(ts)[len(ts) // 2] * 1e6

            try:
                reps = 30 if n < 50000 else 10
                t_ours = med(lambda: torch.ops.opforge.batched_nms(b, s, i, 0.5, -1), reps)
                t_tv = med(lambda: torchvision.ops.batched_nms(b, s, i, 0.5), reps)
                same = (
                    torch.ops.opforge.batched_nms(b, s, i, 0.5, -1)[0].tolist()
                    == torchvision.ops.batched_nms(b, s, i, 0.5).tolist()
                )
                row = {
                    "device": "cpu",
                    "threads": threads,
                    "dtype": "float32",
                    "boxes": n,
                    "classes": 80,
                    "opforge_us": round(t_ours, 1),
                    "torchvision_us": round(t_tv, 1),
                    "speedup": round(t_tv / t_ours, 2),
                    "equal_to_torchvision": same,
                }
            except Exception as e:
                row = {"device": "cpu", "threads": threads, "boxes": n, "error": f"{type(e).__name__}: {e}"[:300]}
            rows.append(row)
            print(row, flush=True)
    return rows


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--out", default="batched_nms.json")
    p.add_argument("--no-bench", action="store_true")
    args = p.parse_args()
    import torchvision

    ops.load_extension()
    assert torch.cuda.is_available(), "needs a CUDA device"
    for n in (0, 1, 63, 64, 65, 1000, 10000, 50000):
        for classes in (1, 10, 80):
            for kind in ("clustered", "uniform"):
                for dtype in (torch.float32, torch.float16):
                    if kind == "uniform" and dtype == torch.float16 and n > 1000:
                        continue
                    check_case(n, classes, kind, dtype, 0.5, -1)
    for n, classes, dtype, thr, cap, idt in (
        (1000, 80, torch.float32, 0.7, 100, torch.int64),
        (10000, 80, torch.float32, 0.3, 0, torch.int64),
        (10000, 80, torch.float32, 0.5, 37, torch.int32),
        (50000, 80, torch.float16, 0.6, 300, torch.int32),
        (65, 1, torch.float32, 0.5, 1, torch.int64),
        (1000, 10, torch.bfloat16, 0.5, -1, torch.int64),
        (10000, 80, torch.bfloat16, 0.5, -1, torch.int32),
        (100000, 80, torch.float32, 0.5, -1, torch.int64),
        (100000, 1, torch.float32, 0.5, -1, torch.int64),
        (20000, 20000, torch.float32, 0.5, -1, torch.int64),
        (3000, 1, torch.float32, 0.0, -1, torch.int64),
        (3000, 3, torch.float32, 1.0, -1, torch.int64),
    ):
        check_case(n, classes, "clustered", dtype, thr, cap, idt, seed=1)
    for seed in range(6):
        for n, classes in ((200, 3), (130, 1), (1000, 20)):
            check_ties(
                n, classes, (torch.float32, torch.float16, torch.bfloat16)[seed % 3], (0.5, 0.25, 1 / 3)[seed % 3], seed
            )
    rows = [] if args.no_bench else bench(args)
    failed = [c for c in CASES if c["result"] == "FAIL"]
    out = {
        "op": "opforge::batched_nms",
        "card": torch.cuda.get_device_name(),
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "torch": torch.__version__,
        "torchvision": torchvision.__version__,
        "cases": CASES,
        "passed": len(CASES) - len(failed),
        "failed": len(failed),
        "bench": rows,
    }
    with open(args.out, "w") as f:
        json.dump(out, f, indent=1)
    print(f"{len(CASES) - len(failed)} passed, {len(failed)} failed; wrote {args.out}")


if __name__ == "__main__":
    main()
