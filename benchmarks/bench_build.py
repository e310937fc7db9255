"""Build times at scale (issue 21, item 6): an op package of 20 ops generated with `python -m ops.new`, its kernels
then written (CPU and CUDA bodies that compute the op, `kernels_pending` removed, as a user finishes an op), beside
the same package with its first op only. For each native library the package builds (the torch extension,
`python -m ops.build`; the TensorRT plugin library, `--trt`, where TensorRT headers and nvcc are found; the ONNX
Runtime library, `python -m ops.ort.build`) it times, as the user's command line (a fresh Python each time):

- the full build (a fresh build directory);
- a no-change rebuild (target: at most 2 s), the median of --repeat runs;
- a one-kernel edit: the first op's CPU kernel changed (a comment line appended), then rebuilt; in the 20-op and the
  1-op package back to back, --repeat times (target: 20-op median at most 1.2x the 1-op median).

Between the no-change rebuilds it times `python -c "import torch"` and `import ops` (ended as the build commands end,
ops.cli.end_process): the floor under every command above, taken under the same load. For the no-change rebuilds
it also records their CPU time (user + sys: close to the wall time the same command takes on an idle machine) and
the command's own work (its main(), timed in-process after the imports). Before timing, the 20-op package's kernels
are run against their references (`ops.check --only torch.cpu`).

    python benchmarks/bench_build.py [--ops 20] [--repeat 3] [--libs torch,trt,ort] [--keep DIR] [--json PATH]

Writes results/build-<host>-<date>.json (machine, load averages through the run, cores, commit, every timing) and
prints a table. The machine's load is recorded because these are wall-clock times of compiler runs.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import re
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = "benchops"
NAMESPACE = "bench"
TARGET_NOOP_S = 2.0
TARGET_EDIT_RATIO = 1.2
LIBS = ("torch", "trt", "ort")

# (name, reference in PyTorch over v = x.float() and the float attribute alpha, the same in C over floats v and a,
# alpha's default). Every expression uses only float functions that exist on the host and in CUDA device code.
FORMULAS = [
    ("affine", "v * alpha + 0.5", "v * a + 0.5f", 0.5),
    ("clip", "torch.clamp(v, -alpha, alpha)", "fminf(fmaxf(v, -a), a)", 1.5),
    ("softsign", "v / (1 + v.abs() * alpha)", "v / (1.0f + fabsf(v) * a)", 1.0),
    ("sigmoid", "torch.sigmoid(v * alpha)", "1.0f / (1.0f + expf(-v * a))", 1.0),
    ("silu", "v * torch.sigmoid(v * alpha)", "v / (1.0f + expf(-v * a))", 1.0),
    ("tanh", "torch.tanh(v * alpha)", "tanhf(v * a)", 0.75),
    (
        "softplus",
        "alpha * (torch.relu(v) + torch.log1p(torch.exp(-v.abs())))",
        "a * (fmaxf(v, 0.0f) + log1pf(expf(-fabsf(v))))",
        1.0,
    ),
    (
        "gelu_tanh",
        "0.5 * v * (1 + torch.tanh(0.7978845608 * (v + 0.044715 * v * v * v))) * alpha",
        "0.5f * v * (1.0f + tanhf(0.7978845608f * (v + 0.044715f * v * v * v))) * a",
        1.0,
    ),
    ("square", "alpha * v * v", "a * v * v", 0.5),
    ("cube", "alpha * v * v * v", "a * v * v * v", 0.25),
    ("sqrt_abs", "alpha * torch.sqrt(v.abs())", "a * sqrtf(fabsf(v))", 2.0),
    ("gaussian", "torch.exp(-alpha * v * v)", "expf(-a * v * v)", 0.5),
    ("sine", "torch.sin(alpha * v)", "sinf(a * v)", 2.0),
    ("cosine", "torch.cos(alpha * v)", "cosf(a * v)", 2.0),
    ("hard_sigmoid", "torch.clamp(v * alpha + 0.5, 0, 1)", "fminf(fmaxf(v * a + 0.5f, 0.0f), 1.0f)", 0.2),
    ("elu", "torch.where(v > 0, v, alpha * torch.expm1(v))", "v > 0.0f ? v : a * expm1f(v)", 1.0),
    ("leaky_relu", "torch.where(v > 0, v, alpha * v)", "v > 0.0f ? v : a * v", 0.1),
    (
        "mish",
        "v * torch.tanh(alpha * (torch.relu(v) + torch.log1p(torch.exp(-v.abs()))))",
        "v * tanhf(a * (fmaxf(v, 0.0f) + log1pf(expf(-fabsf(v)))))",
        1.0,
    ),
    ("signed_log", "torch.sign(v) * torch.log1p(v.abs() * alpha)", "copysignf(log1pf(fabsf(v) * a), v)", 1.0),
    ("isru", "v / torch.sqrt(1 + alpha * v * v)", "v / sqrtf(1.0f + a * v * v)", 1.0),
]

FORMULAS_MODULE = '''"""The references of the benchmark's ops (benchmarks/bench_build.py): `python -m ops.new --from` reads each
function's signature and calls it from the op's declaration."""

import torch
'''

CPU_KERNEL = """// {ns}::{name}: y = {c} (v = x, a = alpha, in float). Written over the ops.new skeleton by
// benchmarks/bench_build.py.
#include "opforge_kernels/{ns}/{name}.h"

#include <cmath>

namespace {{

inline float bench_{name}(float v, float a) {{ return {c}; }}

}}  // namespace

OPFORGE_CPU_KERNEL({ns}, {name}) {{
  const int64_t n = x.numel();
  const float a = static_cast<float>(alpha);
  return OPFORGE_DISPATCH_FLOATING_CPU(x.dtype, T, [&] {{
    const T* in = x.ptr<const T>();
    T* out = y.ptr<T>();
    ctx.parallel_for(n, 32768, [&](int64_t begin, int64_t end) {{
      for (int64_t i = begin; i < end; ++i) ::opforge::store(out, i, bench_{name}(::opforge::load(in, i), a));
    }});
    return ::opforge::Status::ok();
  }});
}}
"""

CUDA_KERNEL = """// {ns}::{name}: y = {c} (v = x, a = alpha, in float). Written over the ops.new skeleton by
// benchmarks/bench_build.py.
#include "opforge_kernels/{ns}/{name}.h"

#include "opforge/kernel_cuda.cuh"

namespace {{

__device__ __forceinline__ float bench_{name}(float v, float a) {{ return {c}; }}

template <typename T>
__global__ void bench_{name}_kernel(const T* x, T* y, int64_t n, float a) {{
  const int64_t stride = static_cast<int64_t>(gridDim.x) * blockDim.x;
  for (int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; i < n; i += stride)
    y[i] = ::opforge::cuda::from_float<T>(bench_{name}(::opforge::cuda::to_float(x[i]), a));
}}

}}  // namespace

OPFORGE_CUDA_KERNEL({ns}, {name}) {{
  const int64_t n = x.numel();
  if (n == 0) return ::opforge::Status::ok();
  const int64_t blocks = (n + 255) / 256 < 4096 ? (n + 255) / 256 : 4096;
  return OPFORGE_DISPATCH_FLOATING_CUDA(x.dtype, T, [&] {{
    bench_{name}_kernel<T><<<static_cast<unsigned>(blocks), 256, 0, ::opforge::cuda::stream(ctx)>>>(
        x.ptr<const T>(), y.ptr<T>(), n, static_cast<float>(alpha));
    return ::opforge::cuda::launch_status("{ns}::{name}: CUDA launch failed");
  }});
}}
"""

# What ops.new writes to keep an op pending (the comment above the flag, then the flag).
PENDING = re.compile(r"(    # The kernels in csrc/.*\n)(    # .*\n)*    kernels_pending=.*\n")


def python() -> list[str]:
    return [sys.executable]


def env_for(project: Path) -> dict:
    path = os.pathsep.join(p for p in (str(project), str(ROOT), os.environ.get("PYTHONPATH", "")) if p)
    return {**os.environ, "PYTHONPATH": path}


def formulas_module(formulas) -> str:
    parts = [FORMULAS_MODULE]
    for name, ref, _, default in formulas:
        parts.append(
            f"\n\ndef {name}(x: torch.Tensor, alpha: float = {default!r}) -> torch.Tensor:\n"
            f"    v = x.float()\n    return ({ref}).to(x.dtype)\n"
        )
    return "".join(parts)


def scaffold(project: Path, formulas, devices: str = "cpu,cuda") -> None:
    """An op package in `project` (the README's layout) with one op per formula, generated by `python -m ops.new`
    (in one process: the 20 commands a user would type), then its kernels written and kernels_pending removed."""
    pkg = project / PACKAGE
    pkg.mkdir(parents=True)
    (pkg / "__init__.py").write_text("import ops\n\nops.op_package(__name__)\n")
    (project / "pyproject.toml").write_text('[project]\nname = "bench-build"\nversion = "0"\n')
    (project / "bench_formulas.py").write_text(formulas_module(formulas))
    argvs = [
        [f"{NAMESPACE}::{name}", "--from", f"bench_formulas:{name}", "--package", PACKAGE, "--devices", devices, "-q"]
        for name, *_ in formulas
    ]
    code = (
        "import sys\nfrom ops.new import main\n"
        f"for argv in {argvs!r}:\n"
        "    rc = main(argv)\n"
        "    if rc:\n        sys.exit(f'ops.new {argv} exited with {rc}')\n"
    )
    done = subprocess.run(python() + ["-c", code], cwd=project, env=env_for(project), capture_output=True, text=True)
    if done.returncode != 0:
        raise RuntimeError(f"ops.new failed:\n{done.stdout[-2000:]}\n{done.stderr[-3000:]}")
    write_kernels(project, formulas, devices)


def write_kernels(project: Path, formulas, devices: str = "cpu,cuda") -> None:
    """Replace each ops.new skeleton with a kernel that computes the op, and drop kernels_pending."""
    pkg = project / PACKAGE
    for name, _, c, _ in formulas:
        decl = pkg / f"{name}.py"
        text, n = PENDING.subn("", decl.read_text())
        if n != 1:
            raise RuntimeError(f"{decl}: no kernels_pending block as ops.new writes it")
        decl.write_text(text.replace("Describe what it computes here.", "Kernels: benchmarks/bench_build.py."))
        kdir = pkg / "csrc" / name
        (kdir / f"{name}_cpu.cpp").write_text(CPU_KERNEL.format(ns=NAMESPACE, name=name, c=c))
        if "cuda" in devices:
            (kdir / f"{name}_cuda.cu").write_text(CUDA_KERNEL.format(ns=NAMESPACE, name=name, c=c))


def edit_kernel(project: Path, name: str, stamp: str) -> Path:
    """A one-kernel edit: a comment line appended to the op's CPU kernel (new content, new mtime)."""
    path = project / PACKAGE / "csrc" / name / f"{name}_cpu.cpp"
    path.write_text(path.read_text() + f"// edit {stamp}\n")
    return path


def command(lib: str) -> list[str]:
    return {
        "torch": ["-m", "ops.build", "--package", PACKAGE],
        "trt": ["-m", "ops.build", "--trt", "--package", PACKAGE],
        "ort": ["-m", "ops.ort.build", "--package", PACKAGE],
    }[lib]


def timed(argv: list[str], project: Path, cpu: list | None = None) -> float:
    """Wall-clock seconds of `python argv` in `project`; its CPU seconds (user + sys) appended to `cpu`."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    done = subprocess.run(python() + argv, cwd=project, env=env_for(project), capture_output=True, text=True)
    elapsed = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if cpu is not None:
        cpu.append(after.ru_utime - before.ru_utime + after.ru_stime - before.ru_stime)
    if done.returncode != 0:
        raise RuntimeError(
            f"`python {' '.join(argv)}` failed in {project}:\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}"
        )
    return elapsed


def work(lib: str, project: Path) -> float:
    """The command's own work, in-process: its main() timed after the imports, without Python's start and exit."""
    module, *argv = command(lib)[1:]
    code = (
        f"import time\nfrom {module} import main\nt = time.perf_counter()\nrc = main({argv!r})\n"
        "print(f'\\n{time.perf_counter() - t}')\nraise SystemExit(rc)\n"
    )
    done = subprocess.run(python() + ["-c", code], cwd=project, env=env_for(project), capture_output=True, text=True)
    if done.returncode != 0:
        raise RuntimeError(f"{lib} build failed in {project}:\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}")
    return float(done.stdout.strip().splitlines()[-1])


def available_libs() -> list[str]:
    """torch always; trt where TensorRT headers and nvcc are found; ort where ORT's headers are."""
    code = (
        "import json\nfrom ops.native.cuda_kernels import cuda_home\nfrom ops.trt import headers as t\n"
        "from ops.ort import headers as o\nout = {'torch': True}\n"
        "out['trt'] = t.find() is not None and cuda_home() is not None and (cuda_home() / 'bin' / 'nvcc').is_file()\n"
        "try:\n    o.require(); out['ort'] = True\nexcept Exception:\n    out['ort'] = False\n"
        "print(json.dumps(out))\n"
    )
    done = subprocess.run(python() + ["-c", code], cwd=ROOT, env=env_for(ROOT), capture_output=True, text=True)
    found = json.loads(done.stdout.strip().splitlines()[-1]) if done.returncode == 0 else {"torch": True}
    return [lib for lib in LIBS if found.get(lib)]


def check_kernels(project: Path) -> dict:
    """Every op's CPU kernel against its reference (ops.check's torch.cpu stages): the kernels are real."""
    ids = [f"{NAMESPACE}::{p.stem}" for p in sorted((project / PACKAGE).glob("*.py")) if p.stem != "__init__"]
    argv = ["-m", "ops.check", *ids, "--package", PACKAGE, "--only", "torch.cpu", "--json"]
    done = subprocess.run(python() + argv, cwd=project, env=env_for(project), capture_output=True, text=True)
    report = json.loads(done.stdout) if done.stdout.strip().startswith("{") else {}
    rows = [r for op, rs in report.get("ops", {}).items() if op.startswith(f"{NAMESPACE}::") for r in rs]
    statuses = [r["status"] for r in rows if r["stage"].startswith("torch.cpu")]
    return {
        "ok": done.returncode == 0 and bool(report.get("ok")),
        "ops": len([op for op in report.get("ops", {}) if op.startswith(f"{NAMESPACE}::")]),
        "stages_passed": statuses.count("pass"),
        "stages": len(statuses),
        "pending": report.get("kernels_pending", {}),
    }


def machine() -> dict:
    cpu = platform.processor()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    torch_version = subprocess.run(
        python() + ["-c", "import torch; print(torch.__version__)"], capture_output=True, text=True
    ).stdout.strip()
    commit = subprocess.run(["git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"], capture_output=True, text=True)
    dirty = subprocess.run(
        ["git", "-C", str(ROOT), "status", "--porcelain", "--", "ops", "csrc", "benchmarks/bench_build.py"],
        capture_output=True,
        text=True,
    )
    nvcc = shutil.which("nvcc")
    nvcc_version = ""
    if nvcc:
        out = subprocess.run([nvcc, "--version"], capture_output=True, text=True).stdout
        m = re.search(r"release ([\d.]+)", out)
        nvcc_version = m.group(1) if m else ""
    return {
        "host": platform.node(),
        "cpu": cpu,
        "cores": os.cpu_count(),
        "python": platform.python_version(),
        "torch": torch_version,
        "nvcc": nvcc_version,
        "commit": commit.stdout.strip() + ("+changes" if dirty.stdout.strip() else ""),
    }


def median(xs: list[float]) -> float:
    return statistics.median(xs) if xs else float("nan")


def run(ops: int = 20, repeat: int = 3, libs: list[str] | None = None, workdir: Path | None = None, check=True) -> dict:
    """Generate the two packages under `workdir` (a fresh temp dir by default), time them and return the record."""
    libs = available_libs() if libs is None else list(libs)
    if ops < 2 or ops > len(FORMULAS):
        raise ValueError(f"--ops must be 2..{len(FORMULAS)}")
    own = workdir is None
    workdir = Path(tempfile.mkdtemp(prefix="opforge-bench-build-")) if own else Path(workdir)
    record = {
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "machine": machine(),
        "settings": {"ops": ops, "repeat": repeat, "libs": libs, "workdir": str(workdir)},
        "load_before": list(os.getloadavg()),
        "load": {},
        "targets": {"noop_s": TARGET_NOOP_S, "edit_ratio": TARGET_EDIT_RATIO},
    }
    try:
        sizes = {"1": 1, "N": ops}
        projects = {k: workdir / f"ops{n}" for k, n in sizes.items()}
        t = time.perf_counter()
        for k, n in sizes.items():
            scaffold(projects[k], FORMULAS[:n])
        record["scaffold_s"] = time.perf_counter() - t
        full, noop = {}, {f"{lib}/{k}": [] for lib in libs for k in sizes}
        floor = {"import torch": [], "import ops": []}
        noop_cpu = {f"{lib}/{k}": [] for lib in libs for k in sizes}
        for k in ("N", "1"):
            for lib in libs:
                full[f"{lib}/{k}"] = timed(command(lib), projects[k])
        record["load"]["after full builds"] = list(os.getloadavg())
        if check:
            record["check"] = check_kernels(projects["N"])
        work_s = {lib: [] for lib in libs}
        for _ in range(repeat):  # the floor between the rebuilds: both see the same neighbours' load
            for what in floor:
                floor[what].append(timed(["-c", f"{what}, gc; gc.freeze()"], ROOT))  # ends as the builds do
            for k in ("N", "1"):
                for lib in libs:
                    noop[f"{lib}/{k}"].append(timed(command(lib), projects[k], noop_cpu[f"{lib}/{k}"]))
            for lib in libs:
                work_s[lib].append(work(lib, projects["N"]))
        record["floor"] = floor
        record["noop_work"] = work_s
        record["noop_cpu"] = noop_cpu
        record["load"]["after no-change rebuilds"] = list(os.getloadavg())
        edit = {f"{lib}/{k}": [] for lib in libs if lib != "trt" for k in sizes}
        first = FORMULAS[0][0]
        for r in range(repeat):
            for k in ("N", "1"):  # back to back, so both see the same neighbours' load
                edit_kernel(projects[k], first, str(r))
                for lib in libs:
                    if lib != "trt":  # the plugin library holds no CPU kernel: nothing of it changes
                        edit[f"{lib}/{k}"].append(timed(command(lib), projects[k]))
        record.update(full=full, noop=noop, edit=edit)
    finally:
        record["load_after"] = list(os.getloadavg())
        if own:
            shutil.rmtree(workdir, ignore_errors=True)
    record["summary"] = summary(record)
    return record


def summary(record: dict) -> dict:
    ops = record["settings"]["ops"]
    rows = []
    for lib in record["settings"]["libs"]:
        row = {"lib": lib, "full_1": record["full"][f"{lib}/1"], "full_N": record["full"][f"{lib}/N"]}
        row["noop_1"] = median(record["noop"][f"{lib}/1"])
        row["noop_N"] = median(record["noop"][f"{lib}/N"])
        row["noop_met"] = row["noop_N"] <= TARGET_NOOP_S
        if f"{lib}/N" in record["edit"]:
            row["edit_1"] = median(record["edit"][f"{lib}/1"])
            row["edit_N"] = median(record["edit"][f"{lib}/N"])
            row["edit_ratio"] = row["edit_N"] / row["edit_1"]
            row["edit_met"] = row["edit_ratio"] <= TARGET_EDIT_RATIO
        rows.append(row)
    return {
        "ops": ops,
        "rows": rows,
        "floor": {k: median(v) for k, v in record.get("floor", {}).items()},
        "noop_work": {k: median(v) for k, v in record.get("noop_work", {}).items()},
        "noop_cpu": {k: median(v) for k, v in record.get("noop_cpu", {}).items() if k.endswith("/N")},
    }


def table(record: dict) -> str:
    s = record["summary"]
    n = s["ops"]
    head = (
        f"| library | full, 1 op | full, {n} ops | no-change, 1 op | no-change, {n} ops (<= {TARGET_NOOP_S:g} s) "
        f"| edit, 1 op | edit, {n} ops | edit ratio (<= {TARGET_EDIT_RATIO:g}x) |"
    )
    lines = [head, "|" + "---|" * 8]

    def mark(value: str, met) -> str:
        return value if met is None else f"{value} {'met' if met else 'NOT met'}"

    for r in s["rows"]:
        edit = (
            (f"{r['edit_1']:.2f} s", f"{r['edit_N']:.2f} s", mark(f"{r['edit_ratio']:.2f}x", r["edit_met"]))
            if "edit_ratio" in r
            else ("-", "-", "- (no CPU kernel)")
        )
        noop = mark(f"{r['noop_N']:.2f} s", r["noop_met"])
        lines.append(
            f"| {r['lib']} | {r['full_1']:.1f} s | {r['full_N']:.1f} s | {r['noop_1']:.2f} s "
            f"| {noop} | {edit[0]} | {edit[1]} | {edit[2]} |"
        )
    floor = ", ".join(f'`python -c "{k}"` {v:.2f} s' for k, v in s["floor"].items())
    lines.append("")
    lines.append(
        f"Floor (medians): {floor}. Load average {record['load_before'][0]:.1f} -> {record['load_after'][0]:.1f} "
        f"on {record['machine']['cores']} cores."
    )
    if s.get("noop_cpu"):
        cpu = ", ".join(f"{k[:-2]} {v:.2f} s" for k, v in s["noop_cpu"].items())
        lines.append(
            f"No-change rebuild of the {n}-op package, CPU time (user + sys; about its wall time on an idle "
            f"machine): {cpu}."
        )
    if s.get("noop_work"):
        own = ", ".join(f"{lib} {v:.2f} s" for lib, v in s["noop_work"].items())
        lines.append(
            f"No-change rebuild of the {n}-op package, the command's own work (main(), after the imports): {own}."
        )
    if "check" in record:
        c = record["check"]
        lines.append(
            f"Kernels: ops.check --only torch.cpu on the {n}-op package: {c['stages_passed']}/{c['stages']} stages "
            f"passed over {c['ops']} ops, pending {c['pending'] or 'none'}."
        )
    return "\n".join(lines)


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python benchmarks/bench_build.py", description=__doc__.splitlines()[0])
    p.add_argument("--ops", type=int, default=20, help=f"ops in the large package (2..{len(FORMULAS)}, default 20)")
    p.add_argument("--repeat", type=int, default=3, help="runs of each no-change rebuild and edit (default 3)")
    p.add_argument("--libs", help=f"comma-separated subset of {','.join(LIBS)} (default: those this machine builds)")
    p.add_argument("--keep", metavar="DIR", help="generate the packages in DIR (must not exist) and keep them")
    p.add_argument("--no-check", action="store_true", help="skip running the kernels against their references")
    p.add_argument(
        "--json", metavar="PATH", help="where to write the record (default results/build-<host>-<date>.json)"
    )
    args = p.parse_args(argv)
    if args.libs:
        args.libs = [x.strip() for x in args.libs.split(",") if x.strip()]
        unknown = [x for x in args.libs if x not in LIBS]
        if unknown or not args.libs:
            p.error(f"--libs: unknown {unknown}; choose from {','.join(LIBS)}")
    if not 2 <= args.ops <= len(FORMULAS):
        p.error(f"--ops must be 2..{len(FORMULAS)}")
    if args.repeat < 1:
        p.error("--repeat must be at least 1")
    return args


def main(argv=None) -> int:
    args = parse_args(argv)
    workdir = None
    if args.keep:
        workdir = Path(args.keep)
        if workdir.exists():
            raise SystemExit(f"--keep {workdir}: exists; give a new directory")
        workdir.mkdir(parents=True)
    record = run(args.ops, args.repeat, args.libs, workdir, check=not args.no_check)
    record["command"] = "python benchmarks/bench_build.py " + " ".join(argv if argv is not None else sys.argv[1:])
    out = (
        Path(args.json)
        if args.json
        else (ROOT / "benchmarks" / "results" / f"build-{platform.node()}-{datetime.date.today().isoformat()}.json")
    )
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(record, indent=2) + "\n")
    print(table(record))
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
