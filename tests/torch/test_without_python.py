"""The compiled extension is usable where no Python runs: a libtorch C++ program dlopens ops/_C*.so and
calls the ops through the dispatcher (tests/torch/cpp/call_without_python.cpp). That needs the schemas
to be defined by the extension's own C++ (not only by Python), its autograd kernel to be C++, and the
library to carry no unresolved reference to Python's C API (it is bound at load with LD_BIND_NOW here).

Compiling the program against torch's headers takes ~30 s (up to a few minutes on a loaded 2-core box)."""

import os
import shutil
import subprocess
from pathlib import Path

import pytest
import torch
import torch.utils.cpp_extension as cpp_ext

import ops  # noqa: F401
from ops.core.packages import package

HERE = Path(__file__).resolve().parent


def extension_library() -> Path:
    pkg = package("ops.library")
    [path] = sorted(pkg.extension_dir.glob(f"{pkg.extension_leaf}.*.so"))
    return path


def cuda_link_flags() -> list[str]:
    """What a libtorch program of a CUDA build links besides torch_cpu and c10 (TorchConfig.cmake's
    TORCH_LIBRARIES: torch_cuda, c10_cuda), when this torch has them. The program calls nothing of them,
    but a CUDA build of the extension needs libc10_cuda.so (and libtorch_cuda.so, which brings the CUDA
    runtime with it): the extension carries no search path of its own, so they must be loaded already when
    it is dlopened, as Python's `import torch` does. --no-as-needed keeps them (as libtorch's CMake does)."""
    present = [
        name
        for name in ("torch_cuda", "c10_cuda")
        if any((Path(d) / f"lib{name}.so").is_file() for d in cpp_ext.library_paths())
    ]
    return ["-Wl,--no-as-needed", *(f"-l{name}" for name in present), "-Wl,--as-needed"] if present else []


def test_extension_has_no_undefined_python_symbols():
    """Extension modules take Python's C API from the interpreter, so any strong reference to it is an
    undefined symbol that fails dlopen(RTLD_NOW) elsewhere; the one in PyInit is weak (ops/build.py)."""
    nm = shutil.which("nm")
    if nm is None:
        pytest.skip("nm (binutils) is not installed")
    out = subprocess.run(
        [nm, "-D", "--undefined-only", str(extension_library())], capture_output=True, text=True, check=True
    ).stdout
    strong = [line for line in out.splitlines() if line.split()[-1].startswith("Py") and line.split()[0] != "w"]
    assert not strong, f"strong references to Python's C API: {strong}"


def test_a_libtorch_program_calls_the_ops_without_python(tmp_path):
    gxx = shutil.which("g++")
    if gxx is None:
        pytest.skip("g++ is not installed")
    exe = tmp_path / "call_without_python"
    includes = [f"-I{p}" for p in cpp_ext.include_paths()]
    libs = [f"-L{p}" for p in cpp_ext.library_paths()] + [f"-Wl,-rpath,{p}" for p in cpp_ext.library_paths()]
    abi = f"-D_GLIBCXX_USE_CXX11_ABI={int(torch._C._GLIBCXX_USE_CXX11_ABI)}"
    cmd = [
        gxx,
        "-std=c++20",
        "-O0",
        abi,
        *includes,
        str(HERE / "cpp" / "call_without_python.cpp"),
        "-o",
        str(exe),
        *libs,
        "-ltorch_cpu",
        "-lc10",
        *cuda_link_flags(),
        "-ldl",
    ]
    built = subprocess.run(cmd, capture_output=True, text=True)
    assert built.returncode == 0, built.stderr[-4000:]
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME")}
    env["LD_BIND_NOW"] = "1"  # every symbol of every library bound at load: an unresolved one fails here
    run = subprocess.run([str(exe), str(extension_library())], capture_output=True, text=True, env=env, timeout=300)
    out = run.stdout + run.stderr
    assert run.returncode == 0, out[-4000:]
    assert "schema opforge::rms_norm(Tensor x, Tensor weight, float eps=" in out, out  # eps printed by C++
    assert "FAIL" not in out, out
