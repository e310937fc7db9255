"""opforge::scaled_gelu's CPU kernel on each of its instruction-set paths, against float64.

The kernel has four forms of its loop, picked at run time (csrc/scaled_gelu/scaled_gelu_cpu.cpp): baseline
x86-64, AVX2+FMA, AVX-512 (16 lanes, reciprocal estimate plus a Newton step instead of a division,
float16/bfloat16 converted in registers, masked tails) and AVX-512 with BF16 (bfloat16 rounded by
vcvtneps2bf16, subnormal lanes by the integer rounding). A machine runs only the widest one it has, so each
path is run here in a subprocess with OPFORGE_CPU_ISA capping the choice, and that subprocess reports the
form its kernels took (ops.torch.extension.cpu_isa(): cpu_isa.h's cpu_isa() read from the loaded extension),
which must be the one asked for; a path the CPU lacks is skipped with its reason. Every path must meet the same bound against erf/tanh evaluated in float64:

- float32: |got - ref| <= 8 (ulp(ref) + ulp(1) |alpha x / 2|). The second term is the cancellation in
  1 + erf for negative x, which any float32 formula of gelu has (aten's included). The baseline and AVX2
  paths measure at most 6.4 and 4.6 of these units on this sweep.
- float16/bfloat16: within one ulp of the storage type plus the float32 bound, the same infinities and NaNs
  as the float64 result rounded to that type.

The inputs cover a dense grid over the curved part, both saturation points of each form, magnitudes from
subnormal to FLT_MAX, ±0, ±inf, NaN, and lengths that leave every possible tail of a 16-lane vector."""

import json
import math
import os
import platform
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from ops.native import cpu_isa

OP_ID = "opforge::scaled_gelu"
ALPHAS = [1.0, 1.5, -1.25]
DTYPES = {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16}
# Lengths of separate calls: every tail of a 16-lane vector and of a 512-element block, and two blocks.
LENGTHS = list(range(1, 34)) + [511, 512, 513, 1000, 1031]


def isa_param(isa):
    """A form this CPU can run, or a skip that says which CPU features it lacks."""
    if isa != "baseline" and platform.machine() not in ("x86_64", "AMD64", "i686"):
        return pytest.param(isa, marks=pytest.mark.skip(reason=f"{isa} is an x86 form; this is {platform.machine()}"))
    missing = cpu_isa.missing_features(isa)
    mark = pytest.mark.skipif(
        bool(missing), reason=f"this CPU has no {', '.join(missing)} (/proc/cpuinfo): the {isa} form cannot run here"
    )
    return pytest.param(isa, marks=mark)


def sweep() -> torch.Tensor:
    """Float32 inputs: the curved part densely, both forms' saturation points (erf: |x| = 5.4; tanh: where
    sqrt(2/pi) (x + 0.044715 x^3) = 9, |x| ~ 4.86) with their float32 neighbours, and the extremes."""
    g = torch.Generator().manual_seed(7)
    edges = torch.tensor([5.4, 4.86, 1e-3, 1.0, 65504.0, 65520.0, 70000.0])
    near = torch.cat(
        [
            edges,
            torch.nextafter(edges, torch.full_like(edges, math.inf)),
            torch.nextafter(edges, torch.zeros_like(edges)),
        ]
    )
    magnitudes = torch.logspace(-44, 38.5, 2000)  # subnormal to near FLT_MAX
    special = torch.tensor(
        [
            0.0,
            -0.0,
            math.inf,
            -math.inf,
            math.nan,
            torch.finfo(torch.float32).max,
            torch.finfo(torch.float32).tiny,
            1e-45,
        ]
    )
    positive = torch.cat([near, magnitudes])
    return torch.cat(
        [torch.linspace(-12, 12, 96001), torch.randn(20000, generator=g) * 3, positive, -positive, special]
    ).float()


def run_path(isa: str, x: torch.Tensor, tmp_path: Path) -> dict:
    """The kernel's outputs with OPFORGE_CPU_ISA=isa, computed in a fresh process (the choice is made once
    per process)."""
    torch.save(x, tmp_path / "x.pt")
    script = f"""
import torch, ops, ops.torch.extension
op = ops.get_op({OP_ID!r})
x = torch.load({str(tmp_path / "x.pt")!r})
out = {{}}
for dtype in {list(DTYPES)!r}:
    xd = x.to(getattr(torch, dtype))
    for approximate in ("none", "tanh"):
        for alpha in {ALPHAS!r}:
            key = f"{{dtype}} {{approximate}} {{alpha}}"
            out[key] = op(xd, alpha=alpha, approximate=approximate)
            out["lengths " + key] = [op(xd[5:5 + n], alpha=alpha, approximate=approximate) for n in {LENGTHS!r}]
out["cpu_isa"] = ops.torch.extension.cpu_isa()  # the form the kernels above took in this process
torch.save(out, {str(tmp_path / "out.pt")!r})
"""
    env = {**os.environ, "OPFORGE_CPU_ISA": isa}
    done = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, f"OPFORGE_CPU_ISA={isa}: the kernel run failed:\n{done.stderr[-3000:]}"
    assert "not one of" not in done.stderr, done.stderr
    return torch.load(tmp_path / "out.pt")


def reference(x: torch.Tensor, approximate: str, alpha: float) -> torch.Tensor:
    v = x.double()
    if approximate == "tanh":
        r = torch.tanh(math.sqrt(2 / math.pi) * (v + 0.044715 * v**3))
    else:
        r = torch.erf(v / math.sqrt(2))
    y = alpha * 0.5 * v * (1 + r)
    return torch.where(v == -math.inf, torch.zeros_like(y), y)  # gelu(-inf) = 0 (the formula gives NaN)


def ulp(t: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """The spacing of `dtype` at |t| (float64 tensor in, float64 out)."""
    info = torch.finfo(dtype)
    return torch.exp2(torch.floor(torch.log2(t.abs().clamp(min=info.tiny)))) * info.eps


def float32_bound(x: torch.Tensor, ref: torch.Tensor, alpha: float) -> torch.Tensor:
    cancellation = 2.0**-24 * (alpha * 0.5 * x.double()).abs()
    return 8 * (ulp(ref, torch.float32) + cancellation) + 2.0**-149


def check(x: torch.Tensor, got: torch.Tensor, dtype_name: str, approximate: str, alpha: float, label: str):
    dtype = DTYPES[dtype_name]
    xin = x.to(dtype).double()  # what the kernel saw
    ref = reference(xin, approximate, alpha)
    want = ref.to(dtype)  # rounded once, to nearest even
    assert got.dtype == dtype and got.shape == x.shape, label
    g = got.double()
    for name, test in (("NaN", torch.isnan), ("+inf", torch.isposinf), ("-inf", torch.isneginf)):
        differ = test(g) != test(want.double())
        # The float32 formula may round across the overflow threshold of the storage type: allowed only
        # where the exact result is within the bound of that threshold.
        if name != "NaN" and dtype != torch.float32:
            edge = (ref.abs() - torch.finfo(dtype).max).abs() <= ulp(ref, dtype) + float32_bound(xin, ref, alpha)
            differ &= ~edge
        assert not differ.any(), (
            f"{label}: {name} where float64 gives otherwise, at x = {xin[differ][:6].tolist()}: "
            f"got {g[differ][:6].tolist()}, want {want.double()[differ][:6].tolist()}"
        )
    finite = torch.isfinite(g) & torch.isfinite(want.double())
    bound = float32_bound(xin, ref, alpha)
    if dtype != torch.float32:
        bound = bound + ulp(ref, dtype)
    err = (g - ref).abs()
    bad = finite & (err > bound)
    assert not bad.any(), (
        f"{label}: {int(bad.sum())} elements beyond the bound, worst at x = "
        f"{xin[bad][err[bad].argmax()].item()!r}: got {g[bad][err[bad].argmax()].item()!r}, "
        f"float64 {ref[bad][err[bad].argmax()].item()!r}"
    )


@pytest.fixture(scope="module")
def x():
    return sweep()


@pytest.mark.parametrize("isa", [isa_param(i) for i in cpu_isa.LEVELS])
def test_each_cpu_path_meets_the_float64_bound(isa, x, tmp_path):
    out = run_path(isa, x, tmp_path)
    assert out["cpu_isa"] == isa, f"OPFORGE_CPU_ISA={isa}, but the kernels ran the {out['cpu_isa']} form"
    for dtype_name in DTYPES:
        for approximate in ("none", "tanh"):
            for alpha in ALPHAS:
                key = f"{dtype_name} {approximate} {alpha}"
                check(x, out[key], dtype_name, approximate, alpha, f"OPFORGE_CPU_ISA={isa} {key}")
                for n, got in zip(LENGTHS, out["lengths " + key]):
                    check(x[5 : 5 + n], got, dtype_name, approximate, alpha, f"OPFORGE_CPU_ISA={isa} {key} length {n}")


def test_an_unknown_isa_name_is_reported_not_silently_ignored(tmp_path):
    script = (
        f"import torch, ops, ops.torch.extension; print(ops.get_op({OP_ID!r})(torch.ones(3)).tolist()); "
        "print(ops.torch.extension.cpu_isa())"
    )
    env = {**os.environ, "OPFORGE_CPU_ISA": "avx9000"}
    done = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    assert "OPFORGE_CPU_ISA=avx9000 is not one of baseline, avx2, avx512, avx512bf16" in done.stderr
    values, ran = done.stdout.strip().splitlines()[-2:]
    assert json.loads(values) == pytest.approx([0.8413447] * 3, rel=1e-6)
    widest = [level for level in cpu_isa.LEVELS if not cpu_isa.missing_features(level)][-1]
    assert ran == widest, f"an ignored cap must leave the widest form this CPU has ({widest}); the kernels ran {ran}"
