"""The full Jetson check (`make jetson`; OPFORGE_JETSON_FULL=1): every op of opforge's library cross-built for
JetPack 6 and 7, the segmentation example (examples/segmentation.py, small size) run under qemu with the
aarch64 ORT library and libonnxruntime.so against the x86 run, the plugin harness's CPU-side checks and the
createPlugin fuzz on every op of the aarch64 plugin library, and the aarch64 forms of the CPU loops timed
against the portable loop under qemu (a ratio; not a Jetson speed)."""

from __future__ import annotations

import importlib.util
import re
from pathlib import Path

import pytest
import torch
from jetson_cases import record, x86_library

import ops
from ops.cross import build as cross_build
from ops.cross import toolchain, verify

pytestmark = pytest.mark.jetson_full
ROOT = Path(__file__).resolve().parents[2]
SEGMENTATION_OPS = {"opforge::modulated_deform_conv2d", "opforge::rms_norm", "opforge::scaled_gelu"}


def _segmentation():
    spec = importlib.util.spec_from_file_location("opforge_example_segmentation", ROOT / "examples" / "segmentation.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize("jetpack", ["6", "7"])
def test_every_artefact_of_every_op(toolchain_status, jetpack):
    if f"cuda{12 if jetpack == '6' else 13}" not in toolchain.status().found:
        pytest.skip(toolchain.status().missing[f"cuda{12 if jetpack == '6' else 13}"])
    res = cross_build.build("ops.library", "jetson-orin", None, jetpack, None, log=lambda *a: None)
    problems = cross_build.check(res)
    ops_built = next((a.info["ops"] for a in res.artefacts if a.kind == "ort_ops"), [])
    record(
        f"full: readelf AArch64 / cuobjdump sm_87, JetPack {jetpack}, every op",
        not problems and not res.skipped,
        "; ".join(problems)
        or f"{len(res.artefacts)} artefacts, {len(ops_built)} ops; skipped: {res.skipped or 'none'}",
    )
    assert not problems, problems
    assert not res.skipped, res.skipped


@pytest.mark.parametrize("isa", ["asimd", "baseline"])
def test_the_segmentation_example_under_qemu_matches_x86(full_build, tmp_path, isa):
    seg = _segmentation()
    model, inputs = seg.make(small=True)
    onnx_path, inputs_bin, expected = verify.export_case(model, list(inputs(2)), tmp_path, "segmentation")
    from ops.ort.build import build_example

    x86_exe = build_example(tmp_path / "x86" / "ort_run_model")
    x86_lib = x86_library(SEGMENTATION_OPS, "segmentation")
    lib_dirs = [full_build.directory / "bin", cross_build.cuda_lib_dir(full_build)]
    r = verify.run_example_pair(
        onnx_path,
        inputs_bin,
        expected,
        x86_exe,
        x86_lib,
        full_build.artefact("example"),
        full_build.artefact("ort_ops"),
        lib_dirs,
        1e-3,
        1e-3,
        env={"OPFORGE_CPU_ISA": isa} if isa == "baseline" else None,
    )
    record(
        f"full: segmentation --small (batch 2) C++ example, OPFORGE_CPU_ISA={isa}, qemu vs x86",
        r["ok"],
        f"torch match on aarch64: {'MATCH' in r['aarch64_stdout']}; max |x86 - aarch64| "
        f"{r.get('max_abs_x86_vs_aarch64')}; qemu {r['aarch64_seconds']} s, x86 {r['x86_seconds']} s",
    )
    assert r["x86_rc"] == 0 and "MATCH" in r["x86_stdout"], r["x86_stdout"]
    assert r["aarch64_rc"] == 0 and "MATCH" in r["aarch64_stdout"], r["aarch64_stdout"]
    assert r["x86_vs_aarch64_close"], r


def test_the_plugin_harness_cpu_checks_pass_for_every_op(full_build):
    if "trt_plugins" in full_build.skipped:
        pytest.skip(full_build.skipped["trt_plugins"])
    results = verify.harness_checks(
        cross_build.harness_server(full_build),
        full_build.artefact("trt_plugins"),
        [cross_build.cuda_lib_dir(full_build)],
    )
    for op_id, (ok, detail) in results.items():
        record(f"full: plugin harness CPU checks {op_id} (aarch64, qemu)", ok, detail)
    bad = {k: v for k, v in results.items() if not v[0]}
    assert results and not bad, bad


def test_the_createplugin_fuzz_passes_for_every_op(full_build):
    if "trt_plugins" in full_build.skipped:
        pytest.skip(full_build.skipped["trt_plugins"])
    rc, out = verify.fuzz(
        cross_build.fuzzer(full_build),
        full_build.artefact("trt_plugins"),
        [cross_build.cuda_lib_dir(full_build)],
        cases=3000,
    )
    record(
        "full: createPlugin fuzz, every creator (aarch64, qemu, no ASan)",
        rc == 0,
        out.strip().splitlines()[-1] if out.strip() else f"exit {rc}",
    )
    assert rc == 0 and '"rejected_silently": 0' in out, out[-3000:]


class Gelu(torch.nn.Module):
    def forward(self, x):
        return ops.get_op("opforge::scaled_gelu")(x, alpha=1.0, approximate="tanh")


class RmsNorm(torch.nn.Module):
    def __init__(self, cols):
        super().__init__()
        self.weight = torch.nn.Parameter(1 + 0.1 * torch.randn(cols))

    def forward(self, x):
        return ops.get_op("opforge::rms_norm")(x, self.weight.to(x.dtype), eps=1e-6)


class DeformConv(torch.nn.Module):
    def __init__(self, channels):
        super().__init__()
        self.weight = torch.nn.Parameter(torch.randn(channels, channels, 3, 3) / (9 * channels) ** 0.5)
        self.bias = torch.nn.Parameter(torch.zeros(channels))

    def forward(self, x, offset, mask):
        return torch.ops.opforge.modulated_deform_conv2d(
            x, offset, self.weight, mask, self.bias, [1, 1], [1, 1], [1, 1], 1, 1
        )


def _dcn_inputs():
    x = torch.randn(1, 32, 24, 40)
    return [x, 2 * torch.randn(1, 18, 24, 40), torch.rand(1, 9, 24, 40)]


def _median_ms(text: str) -> float:
    m = re.search(r"median run ([\d.]+) ms", text)
    assert m, text
    return float(m.group(1))


LOOPS = {
    "scaled_gelu float32 (262144)": (Gelu, lambda: [torch.randn(256, 1024)]),
    "scaled_gelu float16 (262144)": (Gelu, lambda: [torch.randn(256, 1024).half()]),
    "rms_norm float32 (1024x256)": (lambda: RmsNorm(256), lambda: [torch.randn(1024, 256)]),
    "rms_norm float16 (1024x256)": (lambda: RmsNorm(256), lambda: [torch.randn(1024, 256).half()]),
    "modulated_deform_conv2d GEMM float32 (32ch 24x40)": (lambda: DeformConv(32), _dcn_inputs),
}


@pytest.mark.parametrize("name", list(LOOPS))
def test_the_aarch64_loop_against_the_portable_loop_under_qemu(full_build, tmp_path, name):
    """The ASIMD form's time over the portable loop's, both under qemu: 3 processes each, interleaved, each the
    median of 5 runs (OPFORGE_RUN_REPEAT); the ratio of the middle values. qemu emulates each instruction, so
    this says the aarch64 form is correct and not slower to emulate, not how fast it is on an Orin; the outputs
    of both forms match torch."""
    make_model, make_x = LOOPS[name]
    torch.manual_seed(0)
    model = make_model().eval()
    xs = make_x()
    if xs[0].dtype == torch.float16:
        model = model.half()
    onnx_path, inputs_bin, expected = verify.export_case(model, xs, tmp_path)
    tol = 1e-4 if xs[0].dtype == torch.float32 else 2e-3
    from ops.cross import emulate

    times = {"baseline": [], "asimd": []}
    for _ in range(3):  # interleaved, against the drift of a shared machine
        for isa in ("baseline", "asimd"):
            done = emulate.run(
                full_build.artefact("example"),
                [onnx_path, full_build.artefact("ort_ops"), inputs_bin, expected, tol, tol],
                lib_dirs=[full_build.directory / "bin", cross_build.cuda_lib_dir(full_build)],
                env={"OPFORGE_CPU_ISA": isa, "OPFORGE_RUN_REPEAT": "5"},
            )
            assert done.returncode == 0 and "MATCH" in done.stdout, done.stdout + done.stderr
            times[isa].append(_median_ms(done.stdout))
    asimd, base = sorted(times["asimd"])[1], sorted(times["baseline"])[1]
    ratio = asimd / base
    record(
        f"ratio under qemu: {name}, asimd / portable loop",
        True,
        f"{ratio:.2f} ({asimd:.1f} ms / {base:.1f} ms, median of 3 x 5 runs; qemu, not a Jetson)",
        ratio=ratio,
    )
