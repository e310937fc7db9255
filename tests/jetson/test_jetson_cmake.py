"""The CMake project `python -m ops.build --trt-cmake DIR` emits (for building on the device) also configures
and builds here for aarch64, with the toolchain file ops/cross/toolchain.py writes (README, "Deploying to a
Jetson"): readelf says AArch64, cuobjdump shows sm_87 SASS and PTX for every kernel."""

from __future__ import annotations

import shutil
import subprocess

import pytest
from jetson_cases import record

from ops.cross import build as cross_build
from ops.cross import emulate, toolchain
from ops.trt.build import emit_cmake, plugin_decls


@pytest.mark.slow(cpu_s=30)
@pytest.mark.parametrize("jetpack", ["6", "7"])
def test_the_emitted_cmake_project_cross_builds(tmp_path, jetpack):
    if shutil.which("cmake") is None:
        pytest.skip("cmake not found. Fix: apt-get install cmake")
    st = toolchain.status()
    cuda = f"cuda{12 if jetpack == '6' else 13}"
    gone = [f"{c}: {st.missing[c]}" for c in ("g++-aarch64-linux-gnu", cuda, "tensorrt-10.3") if c not in st.found]
    if gone:
        pytest.skip("; ".join(gone))
    src = tmp_path / "project"
    emit_cmake(src, "87")
    toolchain_file = toolchain.cmake_toolchain_file(jetpack)
    configure = subprocess.run(
        [
            "cmake",
            "-S",
            src,
            "-B",
            src / "build",
            f"-DCMAKE_TOOLCHAIN_FILE={toolchain_file}",
            f"-DTRT_INCLUDE_DIR={st.found['tensorrt-10.3']}",
        ],
        capture_output=True,
        text=True,
    )
    assert configure.returncode == 0, configure.stdout[-3000:] + configure.stderr[-3000:]
    made = subprocess.run(["cmake", "--build", src / "build", "-j2"], capture_output=True, text=True)
    assert made.returncode == 0, made.stdout[-4000:] + made.stderr[-3000:]
    lib = src / "build" / "libopforge_trt_plugins.so"
    shim = src / "build" / "libopforge_trt_plugins_static.so"
    code = emulate.cuda_code(lib, cross_build._cuobjdump())
    kernels = len(plugin_decls())
    ok = (
        emulate.machine(lib) == emulate.machine(shim) == "AArch64"
        and code.get("sass") == ["sm_87"]
        and code.get("ptx") == ["sm_87"]
        and f"libcudart.so.{12 if jetpack == '6' else 13}" in emulate.needed(lib)
    )
    record(
        f"CMake project (--trt-cmake) cross-built, JetPack {jetpack}",
        ok,
        f"{emulate.machine(lib)}; {code}; {kernels} ops; needs {emulate.needed(lib)[0]}",
    )
    assert ok, (emulate.machine(lib), code, emulate.needed(lib))
    listing = subprocess.run([str(cross_build._cuobjdump()), "--list-elf", str(lib)], capture_output=True, text=True)
    assert listing.stdout.count("sm_87.cubin") == kernels  # one cubin per op's kernel file
