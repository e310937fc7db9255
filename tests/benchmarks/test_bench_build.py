"""benchmarks/bench_build.py without its builds (minutes): the packages it generates with ops.new (a 2-op one here)
have their kernels written and none pending, and the CPU kernels compile against the prototypes the build generates;
its options, its summary against issue 21's targets and its table."""

import importlib
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def bench():
    with pytest.MonkeyPatch.context() as mp:
        mp.syspath_prepend(str(ROOT / "benchmarks"))
        return importlib.import_module("bench_build")


def test_twenty_distinct_ops(bench):
    names = [f[0] for f in bench.FORMULAS]
    assert len(names) == 20 and len(set(names)) == 20
    assert len({f[1] for f in bench.FORMULAS}) == 20 and len({f[2] for f in bench.FORMULAS}) == 20


def test_a_generated_package_has_real_kernels_that_compile(bench, tmp_path):
    if shutil.which("g++") is None:
        pytest.skip("no g++")
    project = tmp_path / "proj"
    bench.scaffold(project, bench.FORMULAS[:2])
    pkg = project / bench.PACKAGE
    for name, _, c, _ in bench.FORMULAS[:2]:
        decl = (pkg / f"{name}.py").read_text()
        assert f'"{bench.NAMESPACE}::{name}"' in decl and "kernels_pending" not in decl
        assert f"from bench_formulas import {name} as _opforge_function" in decl  # ops.new --from wrote it
        cpu = (pkg / "csrc" / name / f"{name}_cpu.cpp").read_text()
        cuda = (pkg / "csrc" / name / f"{name}_cuda.cu").read_text()
        for text in (cpu, cuda):
            assert c in text and "TODO" not in text and "kernel pending" not in text
    # the glue and prototypes the build would compile against (no compiler run), then each CPU kernel through g++
    done = subprocess.run(
        [sys.executable, "-m", "ops.build", "--print", "--package", bench.PACKAGE],
        cwd=project,
        env=bench.env_for(project),
        capture_output=True,
        text=True,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    lines = done.stdout.splitlines()
    info = json.loads("\n".join(lines[next(i for i, line in enumerate(lines) if line.startswith("{")) :]))
    assert set(info["ops"]) == {f"{bench.NAMESPACE}::{f[0]}" for f in bench.FORMULAS[:2]}
    for name, *_ in bench.FORMULAS[:2]:
        src = pkg / "csrc" / name / f"{name}_cpu.cpp"
        assert str(src) in lines
        cc = subprocess.run(
            ["g++", "-std=c++17", "-fsyntax-only", "-Wall", "-Werror", *(f"-I{d}" for d in info["include_dirs"]), src],
            capture_output=True,
            text=True,
        )
        assert cc.returncode == 0, cc.stderr[-3000:]
    before = (pkg / "csrc" / "affine" / "affine_cpu.cpp").stat().st_mtime_ns
    edited = bench.edit_kernel(project, "affine", "1")
    assert edited.read_text().endswith("// edit 1\n") and edited.stat().st_mtime_ns >= before


def test_options(bench):
    args = bench.parse_args([])
    assert (args.ops, args.repeat, args.libs, args.keep, args.no_check) == (20, 3, None, None, False)
    args = bench.parse_args(["--ops", "5", "--libs", "torch, ort", "--repeat", "2"])
    assert (args.ops, args.libs, args.repeat) == (5, ["torch", "ort"], 2)
    for bad in (["--ops", "1"], ["--ops", "21"], ["--libs", "tensorflow"], ["--repeat", "0"]):
        with pytest.raises(SystemExit):
            bench.parse_args(bad)


def record(bench, noop_n: float, edit_1: float, edit_n: float) -> dict:
    rec = {
        "settings": {"ops": 20, "libs": ["torch", "trt"]},
        "machine": {"cores": 2},
        "load_before": [2.0, 1.0, 1.0],
        "load_after": [3.0, 2.0, 1.0],
        "floor": {"import torch": [1.2, 1.4, 1.3], "import ops": [1.5, 1.5, 1.6]},
        "full": {"torch/1": 40.0, "torch/N": 260.0, "trt/1": 20.0, "trt/N": 120.0},
        "noop": {"torch/1": [1.8, 1.7, 1.9], "torch/N": [noop_n] * 3, "trt/1": [1.6] * 3, "trt/N": [1.7] * 3},
        "edit": {"torch/1": [edit_1, edit_1 + 1, edit_1 - 1], "torch/N": [edit_n] * 3},
        "noop_work": {"torch": [0.2, 0.25, 0.3], "trt": [0.05] * 3},
        "noop_cpu": {"torch/1": [1.0] * 3, "torch/N": [1.4, 1.5, 1.6], "trt/1": [1.0] * 3, "trt/N": [1.2] * 3},
        "check": {"ok": True, "ops": 20, "stages_passed": 60, "stages": 60, "pending": {}},
    }
    rec["summary"] = bench.summary(rec)
    return rec


def test_summary_judges_the_targets(bench):
    met = record(bench, 1.9, 10.0, 11.5)["summary"]["rows"]
    assert [r["lib"] for r in met] == ["torch", "trt"]
    assert met[0]["noop_met"] and met[0]["edit_met"] and met[0]["edit_ratio"] == pytest.approx(1.15)
    assert "edit_ratio" not in met[1]  # no CPU kernel in the plugin library: no edit row
    missed = record(bench, 2.5, 10.0, 12.5)["summary"]["rows"][0]
    assert not missed["noop_met"] and not missed["edit_met"] and missed["edit_ratio"] == pytest.approx(1.25)


def test_table(bench):
    text = bench.table(record(bench, 2.5, 10.0, 11.0))
    lines = text.splitlines()
    assert lines[0].startswith("| library | full, 1 op | full, 20 ops | no-change, 1 op | no-change, 20 ops (<= 2 s)")
    assert "| torch | 40.0 s | 260.0 s | 1.80 s | 2.50 s NOT met | 10.00 s | 11.00 s | 1.10x met |" in lines
    assert "| trt | 20.0 s | 120.0 s | 1.60 s | 1.70 s met | - | - | - (no CPU kernel) |" in lines
    assert 'Floor (medians): `python -c "import torch"` 1.30 s, `python -c "import ops"` 1.50 s' in text
    assert "Load average 2.0 -> 3.0 on 2 cores" in text
    assert "CPU time (user + sys; about its wall time on an idle machine): torch 1.50 s, trt 1.20 s." in text
    assert "the command's own work (main(), after the imports): torch 0.25 s, trt 0.05 s." in text
    assert "60/60 stages passed over 20 ops, pending none" in text


def test_the_package_is_found_from_its_project(bench, tmp_path):
    env = bench.env_for(tmp_path)
    assert env["PYTHONPATH"].split(os.pathsep)[:2] == [str(tmp_path), str(ROOT)]
