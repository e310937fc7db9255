"""GPU check of `python -m ops.new` (issue 10): the three specs of tests/test_new.py, generated into a fresh op
package, built WITH CUDA (the skeleton .cu files go through nvcc), then `ops.check` on every stage, CUDA ones
included. Writes new_ops_check.json / .txt, the build log and a summary under OUT.

    python benchmarks/gpu_check_ops_new.py --out "$OUT"

Pass: exit 0; the JSON is ok, the build says CPU+CUDA kernels, and every torch.cuda / torch.opcheck[cuda] row
is REF (ran the reference: the CUDA kernels are pending), none PASS or FAIL."""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
STRIDED = """\
from typing import Optional

import torch


def strided_pick(x: torch.Tensor, bias: Optional[torch.Tensor] = None, stride: list[int] = [2, 2]) -> torch.Tensor:
    y = x[:, :, :: stride[0], :: stride[1]]
    return y if bias is None else y + bias.view(1, -1, 1, 1)
"""
SPECS = {
    "demo::scale_clamp": [
        "--input",
        "x",
        "--output",
        "y:like(x)",
        "--attr",
        "eps:float=1e-6",
        "--attr",
        "mode:str=fast|exact",
    ],
    "demo::grid_sample": [
        "--like",
        "aten::grid_sampler_2d",
        "--shapes",
        "input=2x3x8x7 grid=2x5x6x2",
        "--shapes",
        "input=1x4x5x9 grid=1x3x4x2",
    ],
    "demo::strided_pick": ["--from", "newop_examples:strided_pick"],
}


def main() -> int:
    p = argparse.ArgumentParser()
    p.add_argument("--out", default=os.environ.get("OUT", "."))
    p.add_argument("--quick", action="store_true")
    args = p.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    project = Path(tempfile.mkdtemp(prefix="opsnew-"))
    (project / "newops").mkdir()
    (project / "newops" / "__init__.py").write_text("import ops\n\nops.op_package(__name__)\n")
    (project / "pyproject.toml").write_text('[project]\nname = "newproj"\nversion = "0"\n')
    (project / "newop_examples.py").write_text(STRIDED)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), str(project), os.environ.get("PYTHONPATH", "")])}

    def run(*argv, log):
        r = subprocess.run([sys.executable, "-m", *argv], cwd=project, env=env, capture_output=True, text=True)
        (out / log).write_text(f"$ python -m {' '.join(argv)}\nrc={r.returncode}\n{r.stdout}\n{r.stderr}")
        return r

    problems = []
    for op_id, argv in SPECS.items():
        if run("ops.new", op_id, *argv, "--package", "newops", log=f"new_{op_id.split('::')[1]}.log").returncode:
            problems.append(f"ops.new {op_id} failed")
    build = run("ops.build", "--package", "newops", log="build.log")
    if build.returncode:
        problems.append("build failed (see build.log)")
    check = run(
        "ops.check",
        *SPECS,
        "--package",
        "newops",
        "--json",
        *(["--quick"] if args.quick else []),
        log="new_ops_check.log",
    )
    text = run(
        "ops.check", *SPECS, "--package", "newops", "--only", "build", "--only", "torch", log="new_ops_check.txt"
    )
    try:
        report = json.loads(check.stdout)
        (out / "new_ops_check.json").write_text(json.dumps(report, indent=2))
    except json.JSONDecodeError:
        report = {"ok": False, "ops": {}}
        problems.append("ops.check printed no JSON (see new_ops_check.log)")
    if not report.get("ok"):
        problems.append("ops.check reported failures")
    for op_id, rows in report.get("ops", {}).items():
        by = {r["stage"]: r for r in rows}
        if not by.get("build", {}).get("metrics", {}).get("cuda_kernels"):
            problems.append(f"{op_id}: the extension has no CUDA kernels")
        cuda = [r for r in rows if r["stage"].startswith(("torch.cuda", "torch.opcheck[cuda]"))]
        if not cuda or any(r["status"] != "reference" for r in cuda):
            problems.append(f"{op_id}: CUDA rows are not all REF: {[(r['stage'], r['status']) for r in cuda]}")
    summary = {"ok": not problems, "problems": problems, "project": str(project), "text": text.stdout}
    (out / "summary.json").write_text(json.dumps(summary, indent=2))
    print(text.stdout)
    print("OK" if not problems else "PROBLEMS:\n  " + "\n  ".join(problems))
    return 0 if not problems else 1


if __name__ == "__main__":
    sys.exit(main())
