"""The emulated checks of a Jetson build (tests/jetson runs them; `make jetson` prints their table).

    python -m ops.cross.verify --table      # the artefacts of build/jetson/*/manifest.json and the results the
                                            # last test run recorded (build/jetson/results.json)

- the C++ example with the aarch64 ORT library and libonnxruntime.so under qemu, against the same example
  built for x86 with the x86 library, on the same exported model and inputs: both compared with torch's
  values, and with each other;
- the plugin host harness's CPU-side checks (ops/trt/harness/checks.py) against the aarch64 plugin library
  (ops/cross/remote_harness.py), and the createPlugin fuzz;
- readelf / cuobjdump on every artefact (ops/cross/build.py: check()).
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import torch

from .. import cli
from ..core import paths
from ..core.registry import ops_in
from ..onnx import export_onnx
from ..trt.harness import checks
from ..trt.harness.host import Host
from . import emulate
from .remote_harness import RemoteHarness

ELEM = {1: np.float32, 10: np.float16, 7: np.int64, 6: np.int32, 11: np.float64, 9: np.bool_}


def results_path() -> Path:
    return paths.build_root() / "jetson" / "results.json"


def record(check: str, ok: bool, detail: str, **extra) -> None:
    """One row of the table (the latest result of each check is kept)."""
    path = results_path()
    try:
        rows = json.loads(path.read_text())
    except (OSError, ValueError):
        rows = {}
    rows[check] = {"ok": bool(ok), "detail": detail, "when": time.strftime("%Y-%m-%d %H:%M:%S"), **extra}
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(rows, indent=2) + "\n")


def write_tensors(path: Path, tensors) -> None:
    """The C++ example's .bin format (examples/cpp/run_model.cpp)."""
    codes = {torch.float32: 1, torch.float16: 10, torch.bfloat16: 16, torch.int64: 7}
    with open(path, "wb") as f:
        for t in tensors:
            t = t.detach().contiguous()
            f.write(np.array([codes[t.dtype], t.dim()], np.int32).tobytes())
            f.write(np.array(t.shape, np.int64).tobytes())
            f.write((t.view(torch.int16) if t.dtype == torch.bfloat16 else t).numpy().tobytes())


def read_tensors(path: Path) -> list[np.ndarray]:
    data = Path(path).read_bytes()
    out, pos = [], 0
    while pos < len(data):
        etype, rank = np.frombuffer(data, np.int32, 2, pos)
        pos += 8
        dims = np.frombuffer(data, np.int64, rank, pos)
        pos += 8 * rank
        dtype = ELEM[int(etype)]
        n = int(np.prod(dims)) if rank else 1
        out.append(np.frombuffer(data, dtype, n, pos).reshape(dims))
        pos += n * np.dtype(dtype).itemsize
    return out


def export_case(model, inputs, workdir: Path, name: str = "model") -> tuple[Path, Path, Path]:
    """Export `model` (opset 17) and write inputs.bin / expected.bin (torch's outputs) into workdir."""
    workdir.mkdir(parents=True, exist_ok=True)
    onnx_path = workdir / f"{name}.onnx"
    export_onnx(model, tuple(inputs), onnx_path, opset=17)
    with torch.inference_mode():
        want = model(*inputs)
    want = [want] if isinstance(want, torch.Tensor) else list(want)
    write_tensors(workdir / "inputs.bin", inputs)
    write_tensors(workdir / "expected.bin", want)
    return onnx_path, workdir / "inputs.bin", workdir / "expected.bin"


def run_example_pair(
    onnx_path: Path,
    inputs: Path,
    expected: Path,
    x86_exe: Path,
    x86_lib: Path,
    arm_exe: Path,
    arm_lib: Path,
    lib_dirs,
    rtol: float,
    atol: float,
    env: dict | None = None,
    timeout: float = 900,
) -> dict:
    """Run the model with the x86 example + library here and the aarch64 ones under qemu; each compares
    with torch's values itself (MATCH / MISMATCH); the two output files are compared here as well."""
    work = onnx_path.parent
    tag = "_".join(f"{k}-{v}" for k, v in sorted((env or {}).items())) or "default"
    x86_out, arm_out = work / f"x86_{tag}.bin", work / f"aarch64_{tag}.bin"
    args = [onnx_path, None, inputs, expected, str(rtol), str(atol)]
    t0 = time.monotonic()
    x86 = subprocess.run(
        [str(x86_exe), *map(str, [args[0], x86_lib, *args[2:]])],
        capture_output=True,
        text=True,
        timeout=timeout,
        env={"OPFORGE_RUN_OUTPUTS": str(x86_out), **(env or {})},
    )
    t1 = time.monotonic()
    arm = emulate.run(
        arm_exe,
        [args[0], arm_lib, *args[2:]],
        lib_dirs=lib_dirs,
        env={"OPFORGE_RUN_OUTPUTS": str(arm_out), **(env or {})},
        timeout=timeout,
    )
    t2 = time.monotonic()
    result = {
        "x86_rc": x86.returncode,
        "aarch64_rc": arm.returncode,
        "x86_stdout": x86.stdout + x86.stderr,
        "aarch64_stdout": arm.stdout + arm.stderr,
        "x86_seconds": round(t1 - t0, 2),
        "aarch64_seconds": round(t2 - t1, 2),
    }
    if x86.returncode == 0 and arm.returncode == 0:
        a, b = read_tensors(x86_out), read_tensors(arm_out)
        diffs = [
            float(np.max(np.abs(x.astype(np.float64) - y.astype(np.float64)))) if x.size else 0.0 for x, y in zip(a, b)
        ]
        close = len(a) == len(b) and all(
            x.shape == y.shape and np.allclose(x.astype(np.float64), y.astype(np.float64), rtol=rtol, atol=atol)
            for x, y in zip(a, b)
        )
        result.update({"max_abs_x86_vs_aarch64": max(diffs) if diffs else 0.0, "x86_vs_aarch64_close": close})
    result["ok"] = (
        x86.returncode == 0
        and arm.returncode == 0
        and "MATCH" in arm.stdout
        and result.get("x86_vs_aarch64_close", False)
    )
    return result


def harness_checks(server: Path, library: Path, lib_dirs, op_ids=None) -> dict[str, tuple[bool, str]]:
    """ops/trt/harness/checks.cpu_checks for each op of the aarch64 plugin library, run through the
    aarch64 harness under qemu."""
    remote = RemoteHarness(server, lib_dirs=lib_dirs)
    out = {}
    try:
        host = Host(library, lib=remote)
        names = {c.name for c in host.creators}
        for op in ops_in("ops.library"):
            if op.decl.name in names and (op_ids is None or op.decl.id in op_ids):
                ok, detail, _ = checks.cpu_checks(host, op)
                out[op.decl.id] = (ok, detail)
    finally:
        remote.close()
    return out


def fuzz(fuzzer: Path, library: Path, lib_dirs, cases: int = 500, seed: int = 1) -> tuple[int, str]:
    done = emulate.run(fuzzer, [library, cases, seed], lib_dirs=lib_dirs, timeout=900)
    return done.returncode, done.stdout + done.stderr


# ---- the table -------------------------------------------------------------------------------------------


def table() -> tuple[str, bool]:
    """The artefacts of every manifest under build/jetson and the recorded check results, as text."""
    root = paths.build_root() / "jetson"
    lines, ok = [], True
    rows = [("artefact", "JetPack", "architecture", "CUDA SASS / PTX", "needs")]
    for manifest in sorted(root.glob("*/manifest.json")):
        m = json.loads(manifest.read_text())
        for jp, entry in sorted(m.get("jetpack", {}).items()):
            for info in entry.get("artefacts", {}).values():
                cuda = info.get("cuda") or {}
                code = f"{','.join(cuda.get('sass', []))} / {','.join(cuda.get('ptx', []))}" if cuda else "-"
                rows.append(
                    (
                        f"{m['package']}:{info.get('path')}",
                        jp,
                        info.get("architecture", "?"),
                        code,
                        ", ".join(
                            n for n in info.get("needed", []) if "cudart" in n or "onnxruntime" in n or "trt" in n
                        )
                        or "-",
                    )
                )
                if info.get("architecture") != m.get("architecture"):
                    ok = False
            for kind, why in entry.get("skipped", {}).items():
                rows.append((f"{m['package']}:{kind}", jp, "NOT BUILT", why[:60], ""))
    widths = [max(len(str(r[i])) for r in rows) for i in range(5)]
    lines += ["  ".join(str(c).ljust(w) for c, w in zip(r, widths)) for r in rows]
    try:
        results = json.loads(results_path().read_text())
    except (OSError, ValueError):
        results = {}
    if results:
        lines.append("")
        checks = [("emulated check", "result", "detail")]
        for name, r in sorted(results.items()):
            checks.append((name, "PASS" if r["ok"] else "FAIL", r["detail"][:110]))
            ok = ok and r["ok"]
        w = [max(len(c[i]) for c in checks) for i in range(2)]
        lines += [f"{c[0].ljust(w[0])}  {c[1].ljust(w[1])}  {c[2]}" for c in checks]
    return "\n".join(lines), ok


def main(argv=None) -> int:
    parser = cli.parser(
        "python -m ops.cross.verify",
        __doc__.split("\n\n")[0] + " Exit status: 0 every artefact and check is right, 1 one is not, 2 a usage error.",
    )
    parser.add_argument(
        "--table",
        action="store_true",
        required=True,
        help="print the artefacts of build/jetson/*/manifest.json and the results the last test run recorded",
    )
    return cli.main(parser, run, argv)


def run(args) -> int:
    text, ok = table()
    print(text)
    return cli.OK if ok else cli.PROBLEMS


if __name__ == "__main__":
    sys.exit(main())
