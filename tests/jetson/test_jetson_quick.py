"""The quick Jetson check (CI): one op (scaled_gelu) cross-built for aarch64 + sm_87 (JetPack 6: CUDA 12.4,
TensorRT 10.3 headers), its artefacts inspected, and run under qemu user mode: the C++ example with the
aarch64 ORT library and libonnxruntime.so against the x86 run, both forms of the CPU loop (asimd and the
portable baseline), and the plugin harness's CPU-side checks against the aarch64 plugin library."""

from __future__ import annotations

import pytest
import torch
from jetson_cases import QUICK_OP, record, x86_library

import ops
from ops.cross import build as cross_build
from ops.cross import verify


class GeluModel(torch.nn.Module):
    def forward(self, x):
        return ops.get_op(QUICK_OP)(x, alpha=1.702, approximate="tanh")


def test_every_artefact_is_aarch64_and_carries_sm87(quick_build):
    problems = cross_build.check(quick_build)
    kinds = {a.kind for a in quick_build.artefacts}
    record(
        "quick: readelf AArch64 / cuobjdump sm_87 (JetPack 6, 1 op)",
        not problems and "ort_ops" in kinds,
        "; ".join(problems) or f"{len(kinds)} artefacts: {', '.join(sorted(kinds))}",
    )
    assert not problems, problems
    assert {"ort_ops", "example"} <= kinds, quick_build.skipped
    for a in quick_build.artefacts:
        assert a.info["architecture"] == "AArch64", a
    import json

    manifest = json.loads(quick_build.manifest.read_text())
    assert manifest["architecture"] == "AArch64" and manifest["cuda_archs"] == ["87"]
    assert manifest["ort_api_version"] >= 1
    entry = manifest["jetpack"]["6"]
    assert entry["cuda"] == 12 and "12.4" in entry["compilers"]
    ort = entry["artefacts"]["ort_ops"]
    assert "libcudart.so.12" in ort["needed"] and ort["cuda"]["sass"] == ["sm_87"]
    assert "aarch64-linux-gnu-g++" in ort["toolchain"]["cxx"] and "12.4" in ort["toolchain"]["nvcc"]


def test_the_plugin_library_is_built_against_tensorrt_10_3(quick_build):
    if "trt_plugins" in quick_build.skipped:
        pytest.skip(quick_build.skipped["trt_plugins"])
    info = next(a.info for a in quick_build.artefacts if a.kind == "trt_plugins")
    assert info["tensorrt_headers"].startswith("10.3.")
    assert info["cuda"] == {"sass": ["sm_87"], "ptx": ["sm_87"]}
    assert "libcudart.so.12" in info["needed"]


@pytest.mark.parametrize("dtype", [torch.float32, torch.float16])
def test_the_cpp_example_under_qemu_matches_x86(quick_build, tmp_path, dtype):
    torch.manual_seed(0)
    x = (3 * torch.randn(4, 1029)).to(dtype)  # 1029: a tail after the 8-wide NEON blocks
    model = GeluModel().eval()
    onnx_path, inputs, expected = verify.export_case(model, [x], tmp_path)
    from ops.ort.build import build_example

    x86_exe = build_example(tmp_path / "x86" / "ort_run_model")
    x86_lib = x86_library({QUICK_OP}, "quick")
    tol = 1e-5 if dtype == torch.float32 else 2e-3
    lib_dirs = [quick_build.directory / "bin", cross_build.cuda_lib_dir(quick_build)]
    for isa in ("asimd", "baseline"):  # the ASIMD form and the portable loop, both checked on aarch64
        r = verify.run_example_pair(
            onnx_path,
            inputs,
            expected,
            x86_exe,
            x86_lib,
            quick_build.artefact("example"),
            quick_build.artefact("ort_ops"),
            lib_dirs,
            tol,
            tol,
            env={"OPFORGE_CPU_ISA": isa} if isa == "baseline" else None,
        )
        record(
            f"quick: C++ example {QUICK_OP} {str(dtype)[6:]} OPFORGE_CPU_ISA={isa}, qemu vs x86",
            r["ok"],
            f"max |x86 - aarch64| {r.get('max_abs_x86_vs_aarch64')}; aarch64 {r['aarch64_seconds']} s",
        )
        assert r["x86_rc"] == 0, r["x86_stdout"]
        assert r["aarch64_rc"] == 0 and "MATCH" in r["aarch64_stdout"], r["aarch64_stdout"]
        assert r["x86_vs_aarch64_close"], r


def test_the_plugin_harness_cpu_checks_pass_on_the_aarch64_library(quick_build):
    if "trt_plugins" in quick_build.skipped:
        pytest.skip(quick_build.skipped["trt_plugins"])
    server = cross_build.harness_server(quick_build)
    results = verify.harness_checks(
        server, quick_build.artefact("trt_plugins"), [cross_build.cuda_lib_dir(quick_build)], {QUICK_OP}
    )
    assert set(results) == {QUICK_OP}
    ok, detail = results[QUICK_OP]
    record(f"quick: plugin harness CPU checks {QUICK_OP} (aarch64 library, qemu)", ok, detail)
    assert ok, detail


def test_the_createplugin_fuzz_passes_on_the_aarch64_library(quick_build):
    if "trt_plugins" in quick_build.skipped:
        pytest.skip(quick_build.skipped["trt_plugins"])
    rc, out = verify.fuzz(
        cross_build.fuzzer(quick_build),
        quick_build.artefact("trt_plugins"),
        [cross_build.cuda_lib_dir(quick_build)],
        cases=1000,
    )
    record(
        f"quick: createPlugin fuzz {QUICK_OP} (aarch64 library, qemu, no ASan)",
        rc == 0,
        out.strip().splitlines()[-1] if out.strip() else f"exit {rc}",
    )
    assert rc == 0, out[-3000:]
    assert '"rejected_silently": 0' in out and '"roundtrip_failures": 0' in out, out
