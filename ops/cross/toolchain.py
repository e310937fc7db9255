"""The Jetson cross toolchain, installed into build/jetson/toolchain by this script (nothing global but apt).

    python -m ops.cross.toolchain            # install what is missing, print what is there
    python -m ops.cross.toolchain --check    # print what is there; exit 1 if something is missing

What it installs, and from where (the package registries this project reaches: Debian and PyPI):
- Debian (bookworm) packages, with apt-get: g++-aarch64-linux-gnu (the aarch64 host compiler and its sysroot
  /usr/aarch64-linux-gnu), qemu-user (qemu-aarch64, to run what it builds) and binfmt-support.
- CUDA 12 for JetPack 6, extracted, not installed: Debian trixie's non-free `nvidia-cuda-toolkit` (12.4: the
  nvcc driver, cicc, cudafe++, ptxas, fatbinary, nvlink, cuobjdump), fetched with a private apt configuration
  as ops/ort/headers.py does, plus PyPI's CUDA 12 wheels of the same minor version for what that package
  leaves to `nvidia-cuda-dev` (a 930 MB package of every CUDA library): `nvidia-cuda-nvcc-cu12` (the crt/
  headers nvcc's front end needs), `nvidia-cuda-cccl-cu12` (nv/target, which cuda_fp16.h includes) and the aarch64 `nvidia-cuda-runtime-cu12` (cuda_runtime.h and the aarch64
  libcudart.so.12 to link against). PyPI's nvcc wheels hold ptxas, the crt headers and libnvvm but no nvcc
  driver, cicc or fatbinary, so they cannot compile CUDA C++ alone.
- CUDA 13 for JetPack 7: the installed nvcc (13.x) cross-compiles with -ccbin aarch64-linux-gnu-g++; the
  aarch64 libcudart.so.13 comes from PyPI's `nvidia-cuda-runtime` wheel of nvcc's minor version.
- ONNX Runtime for aarch64: libonnxruntime.so from PyPI's manylinux aarch64 `onnxruntime` wheel, the version
  installed here (so the emulated run and the x86 run use the same runtime).
- TensorRT 10.3 headers (JetPack 6), Apache-2.0, from NVIDIA/TensorRT's public repository, tag v10.3.0. No
  registry this machine reaches ships them, so they are copied from a directory (OPFORGE_TRT_10_3_INCLUDE,
  else shared/tensorrt-10.3/include beside the checkout) or a git clone/mirror of that repository
  (OPFORGE_TENSORRT_GIT: `git show v10.3.0:include/...`); without them, everything but the TensorRT plugin
  library builds, and its checks skip saying so.

Wheels are downloaded with `pip download --no-deps --only-binary :all: --platform manylinux..._aarch64` and
unpacked here; nothing is pip-installed. toolchain.json records every version.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import zipfile
from dataclasses import dataclass, field
from pathlib import Path

from .. import cli
from ..core.errors import BackendUnavailable
from ..core.paths import build_root, project_root
from ..native.cuda_kernels import cuda_home
from ..ort.headers import apt_options
from ..trt.headers import version

TRIPLE = "aarch64-linux-gnu"
SYSROOT = Path("/usr") / TRIPLE  # the cross toolchain's libc, libstdc++, libgomp: what qemu-aarch64 -L is given
APT_PACKAGES = {
    f"{TRIPLE}-g++": "g++-aarch64-linux-gnu",
    "qemu-aarch64": "qemu-user",
    "update-binfmts": "binfmt-support",
}
CUDA12_DEB = "nvidia-cuda-toolkit"
CUDA12_SUITE = "trixie"  # Debian 13: nvidia-cuda-toolkit 12.4.131 in non-free
DEB_MIRROR = os.environ.get("OPFORGE_DEB_MIRROR", "http://deb.debian.org/debian")
KEYRING = "/usr/share/keyrings/debian-archive-keyring.gpg"
AARCH64_PLATFORMS = ("manylinux2014_aarch64", "manylinux_2_28_aarch64")
TRT_TAG, TRT_VERSION = "v10.3.0", (10, 3, 0)
TOOLS_FROM_DEB = ("nvcc", "cudafe++", "ptxas", "fatbinary", "nvlink", "cuobjdump", "bin2c", "nvprune", "nvdisasm")

NVCC_PROFILE = """\
# Written by ops/cross/toolchain.py: Debian's nvcc 12.4, relocated into this directory.
TOP = $(_HERE_)/..
NVVMIR_LIBRARY_DIR = $(TOP)/nvvm/libdevice
PATH += $(TOP)/nvvm/bin:$(_HERE_):
INCLUDES += "-I$(TOP)/include" $(_SPACE_)
LIBRARIES =+ $(_SPACE_) "-L$(TOP)/lib"
"""


def root() -> Path:
    """build/jetson/toolchain (OPFORGE_JETSON_TOOLCHAIN overrides)."""
    return Path(os.environ.get("OPFORGE_JETSON_TOOLCHAIN") or build_root() / "jetson" / "toolchain")


@dataclass
class Status:
    """What is installed: each component's path, or why it is missing (a sentence with the fix)."""

    found: dict[str, Path] = field(default_factory=dict)
    missing: dict[str, str] = field(default_factory=dict)
    versions: dict[str, str] = field(default_factory=dict)

    def require(self, *names: str) -> None:
        gone = [f"{n}: {self.missing[n]}" for n in names if n not in self.found]
        if gone:
            raise BackendUnavailable("the Jetson cross toolchain is incomplete: " + "; ".join(gone))


def _run(cmd, **kw) -> subprocess.CompletedProcess:
    return subprocess.run([str(c) for c in cmd], capture_output=True, text=True, **kw)


def _first_line(cmd) -> str:
    try:
        done = _run(cmd)
    except OSError:
        return ""
    return (done.stdout or done.stderr).strip().splitlines()[0] if (done.stdout or done.stderr).strip() else ""


# ---- the pieces -------------------------------------------------------------------------------------


def host_nvcc() -> Path | None:
    """The installed nvcc (CUDA 13 here): cross-compiles device code with -ccbin aarch64-linux-gnu-g++."""
    cuda = cuda_home()
    return cuda / "bin" / "nvcc" if cuda is not None and (cuda / "bin" / "nvcc").is_file() else None


def nvcc_version(nvcc: Path) -> tuple[int, int]:
    m = re.search(r"release (\d+)\.(\d+)", _run([nvcc, "--version"]).stdout)
    return (int(m.group(1)), int(m.group(2))) if m else (0, 0)


def installed_onnxruntime_version() -> str | None:
    try:
        from importlib.metadata import version

        return version("onnxruntime")
    except Exception:
        return None


def cuda12_dir() -> Path:
    return root() / "cuda12"


def cuda13_dir() -> Path:
    return root() / "cuda13"


def ort_dir() -> Path:
    return root() / "onnxruntime"


def trt_include() -> Path:
    return root() / "tensorrt-10.3" / "include"


def status() -> Status:
    st = Status()
    for tool, pkg in APT_PACKAGES.items():
        if pkg == "binfmt-support":
            continue  # optional: every run names qemu-aarch64 explicitly
        path = shutil.which(tool)
        if path:
            st.found[pkg] = Path(path)
        else:
            st.missing[pkg] = f"{tool} not found. Fix: apt-get install {pkg} (or `make jetson`)"
    if "g++-aarch64-linux-gnu" in st.found:
        st.versions["g++-aarch64-linux-gnu"] = _first_line([f"{TRIPLE}-g++", "--version"])
    if "qemu-user" in st.found:
        st.versions["qemu-user"] = _first_line(["qemu-aarch64", "--version"])
    record = read_record()
    c12 = cuda12_dir()
    if (c12 / "bin" / "nvcc").is_file() and (c12 / "lib" / "libcudart.so").exists():
        st.found["cuda12"] = c12
        st.versions["cuda12"] = record.get("cuda12", {}).get("nvcc", "")
    else:
        st.missing["cuda12"] = (
            f"no CUDA 12 cross toolkit in {c12}. Fix: python -m ops.cross.toolchain (Debian "
            f"{CUDA12_SUITE}'s {CUDA12_DEB} + PyPI's nvidia-cuda-*-cu12 wheels)"
        )
    nvcc = host_nvcc()
    c13 = cuda13_dir()
    if nvcc is not None and nvcc_version(nvcc)[0] >= 13 and (c13 / "lib" / "libcudart.so").exists():
        st.found["cuda13"] = c13
        st.versions["cuda13"] = ".".join(map(str, nvcc_version(nvcc)))
    elif nvcc is None or nvcc_version(nvcc)[0] < 13:
        st.missing["cuda13"] = "no nvcc 13 installed (CUDA_HOME or /usr/local/cuda). Fix: install the CUDA 13 toolkit"
    else:
        st.missing["cuda13"] = (
            f"no aarch64 libcudart.so.13 in {c13 / 'lib'}. Fix: python -m ops.cross.toolchain "
            "(PyPI's nvidia-cuda-runtime wheel)"
        )
    ort = ort_dir() / "lib"
    if any(ort.glob("libonnxruntime.so.1.*")):
        st.found["onnxruntime"] = ort
        st.versions["onnxruntime"] = record.get("onnxruntime", "")
    else:
        st.missing["onnxruntime"] = (
            f"no aarch64 libonnxruntime.so in {ort}. Fix: python -m ops.cross.toolchain "
            "(PyPI's onnxruntime manylinux aarch64 wheel)"
        )
    inc = trt_include()
    if (inc / "NvInferRuntime.h").is_file() and (inc / "NvInferVersion.h").is_file():
        st.found["tensorrt-10.3"] = inc
        st.versions["tensorrt-10.3"] = record.get("tensorrt_headers", "")
    else:
        st.missing["tensorrt-10.3"] = (
            f"no TensorRT 10.3 headers in {inc}: no registry this machine reaches ships them. Fix: set "
            f"OPFORGE_TRT_10_3_INCLUDE to a directory of them (or put them in shared/tensorrt-10.3/include "
            f"beside the checkout), or OPFORGE_TENSORRT_GIT to a clone of NVIDIA/TensorRT (tag {TRT_TAG}; found "
            f"without it at ../TensorRT or ../.mirror/NVIDIA+TensorRT/repo), and run python -m ops.cross.toolchain"
        )
    return st


def read_record() -> dict:
    path = root() / "toolchain.json"
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return {}


def _save_record(**entries) -> None:
    record = read_record()
    record.update(entries)
    path = root() / "toolchain.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(record, indent=2, sort_keys=True) + "\n")


# ---- installing -------------------------------------------------------------------------------------


def install_apt(log=print) -> None:
    """apt-get install the Debian packages whose tools are missing (apt-get update first, once)."""
    missing = sorted({pkg for tool, pkg in APT_PACKAGES.items() if shutil.which(tool) is None})
    if not missing:
        return
    if shutil.which("apt-get") is None:
        raise BackendUnavailable(
            f"{', '.join(missing)} missing and no apt-get here. Fix: install them with the system's package manager"
        )
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    sudo = [] if os.geteuid() == 0 else ["sudo"]
    for cmd in ([*sudo, "apt-get", "update", "-q"], [*sudo, "apt-get", "install", "-y", "-q", *missing]):
        log(f"$ {' '.join(cmd)}")
        done = _run(cmd, env=env)
        if done.returncode != 0:
            raise BackendUnavailable(f"`{' '.join(cmd)}` failed: {(done.stderr or done.stdout).strip()[-800:]}")


def pip_download(spec: str, dest: Path, platforms=AARCH64_PLATFORMS) -> Path:
    """Download one wheel (no dependencies, binary only, for `platforms`) into dest; return its path."""
    dest.mkdir(parents=True, exist_ok=True)
    name = re.split(r"[=<>!~ ]", spec, maxsplit=1)[0].replace("-", "_").lower()
    with tempfile.TemporaryDirectory(dir=dest) as tmp:
        cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary", ":all:", "-q", "-d", tmp]
        for p in platforms:
            cmd += ["--platform", p]
        done = _run([*cmd, spec])
        wheels = [w for w in Path(tmp).glob("*.whl") if w.name.lower().startswith(name + "-")]
        if done.returncode != 0 or not wheels:
            raise BackendUnavailable(f"`pip download ... {spec}` failed: {done.stderr.strip()[-600:]}")
        final = dest / wheels[0].name
        os.replace(wheels[0], final)
    return final


def _unzip(wheel: Path, prefix: str, dest: Path) -> list[Path]:
    """Extract the members of `wheel` under `prefix` into dest (paths relative to prefix)."""
    out = []
    with zipfile.ZipFile(wheel) as zf:
        for info in zf.infolist():
            if not info.filename.startswith(prefix) or info.is_dir():
                continue
            rel = Path(info.filename[len(prefix) :])
            if rel.is_absolute() or ".." in rel.parts or rel.name == "__init__.py":
                continue
            target = dest / rel
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(zf.read(info))
            out.append(target)
    return out


def _link(link: Path, target: str) -> None:
    if link.is_symlink() or link.exists():
        link.unlink()
    link.symlink_to(target)


def _wheel_version(wheel: Path) -> str:
    return wheel.name.split("-")[1]


def debian_download(
    package: str, dest: Path, suite: str = CUDA12_SUITE, components: str = "main contrib non-free"
) -> Path:
    """`apt-get download package` from Debian `suite` under a private apt configuration in dest/apt (the
    system's sources and state are neither read nor changed; the index is checked with Debian's keyring)."""
    apt = dest / "apt"
    for sub in ("lists/partial", "cache/archives/partial", "state"):
        (apt / sub).mkdir(parents=True, exist_ok=True)
    (apt / "state" / "status").touch()
    signed = f"signed-by={KEYRING}" if Path(KEYRING).is_file() else "trusted=yes"
    (apt / "sources.list").write_text(f"deb [{signed}] {DEB_MIRROR} {suite} {components}\n")
    options = apt_options(apt)
    for cmd in (["apt-get", *options, "update"], ["apt-get", *options, "download", package]):
        done = _run(cmd, cwd=dest)
        if done.returncode != 0:
            raise BackendUnavailable(
                f"`apt-get {cmd[-1]}` ({suite}, private apt configuration in {apt}) failed: "
                f"{(done.stderr or done.stdout).strip()[-600:]}"
            )
    debs = sorted(dest.glob(f"{package}_*.deb"))
    if not debs:
        raise BackendUnavailable(f"apt-get download left no {package}_*.deb in {dest}")
    return debs[-1]


def install_cuda12(log=print) -> Path:
    """Assemble build/jetson/toolchain/cuda12: Debian's CUDA 12.4 compiler binaries + PyPI's headers and
    aarch64 libcudart.so.12, laid out as a CUDA toolkit that nvcc's own profile points at."""
    out = cuda12_dir()
    if (out / "bin" / "nvcc").is_file() and (out / "lib" / "libcudart.so").exists():
        if not (out / "lib" / "libcudadevrt.a").exists():
            _empty_devrt(out / "lib" / "libcudadevrt.a")
        return out
    for tool in ("apt-get", "dpkg-deb"):
        if shutil.which(tool) is None:
            raise BackendUnavailable(f"{tool} not found: Debian's {CUDA12_DEB} cannot be fetched")
    downloads = root() / "downloads"
    downloads.mkdir(parents=True, exist_ok=True)
    deb = next(iter(sorted(downloads.glob(f"{CUDA12_DEB}_*.deb"))), None)
    if deb is None:
        log(f"downloading Debian {CUDA12_SUITE}'s {CUDA12_DEB} (non-free, ~90 MB)")
        deb = debian_download(CUDA12_DEB, downloads)
    deb_version = deb.name.split("_")[1].replace("%7e", "~")
    m = re.match(r"(\d+)\.(\d+)", deb_version)
    minor = f"{m.group(1)}.{m.group(2)}"
    staging = root() / "cuda12.partial"
    shutil.rmtree(staging, ignore_errors=True)
    tree = staging / "deb"
    tree.mkdir(parents=True)
    done = _run(["dpkg-deb", "-x", deb, tree])
    if done.returncode != 0:
        raise BackendUnavailable(f"dpkg-deb -x {deb.name} failed: {done.stderr.strip()[-300:]}")
    lib = tree / "usr" / "lib" / "nvidia-cuda-toolkit"
    (staging / "bin" / "crt").mkdir(parents=True)
    (staging / "nvvm" / "bin").mkdir(parents=True)
    (staging / "nvvm" / "libdevice").mkdir(parents=True)
    shutil.copy2(lib / "bin" / "nvcc", staging / "bin" / "nvcc")  # the real driver, not Debian's /usr/bin wrapper
    for tool in TOOLS_FROM_DEB[1:]:
        if (tree / "usr" / "bin" / tool).is_file():
            shutil.copy2(tree / "usr" / "bin" / tool, staging / "bin" / tool)
    for stub in (lib / "bin" / "crt").iterdir():
        shutil.copy2(stub, staging / "bin" / "crt" / stub.name)
    shutil.copy2(lib / "bin" / "cicc", staging / "nvvm" / "bin" / "cicc")
    shutil.copy2(lib / "libdevice" / "libdevice.10.bc", staging / "nvvm" / "libdevice" / "libdevice.10.bc")
    (staging / "bin" / "nvcc.profile").write_text(NVCC_PROFILE)
    shutil.rmtree(tree)
    wheels = root() / "wheels"
    log(f"downloading PyPI's CUDA {minor} wheels (nvcc headers; aarch64 runtime)")
    nvcc_whl = pip_download(f"nvidia-cuda-nvcc-cu12=={minor}.*", wheels)
    rt_whl = pip_download(f"nvidia-cuda-runtime-cu12=={minor}.*", wheels)
    cccl_whl = pip_download(f"nvidia-cuda-cccl-cu12=={minor}.*", wheels)  # nv/target, which cuda_fp16.h includes
    _unzip(rt_whl, "nvidia/cuda_runtime/include/", staging / "include")
    _unzip(nvcc_whl, "nvidia/cuda_nvcc/include/", staging / "include")
    _unzip(cccl_whl, "nvidia/cuda_cccl/include/", staging / "include")
    _unzip(rt_whl, "nvidia/cuda_runtime/lib/", staging / "lib")
    if (
        not (staging / "lib" / "libcudart.so.12").is_file()
        or not (staging / "include" / "crt" / "host_config.h").is_file()
    ):
        raise BackendUnavailable(f"{rt_whl.name} / {nvcc_whl.name} lack libcudart.so.12 or crt/host_config.h")
    _link(staging / "lib" / "libcudart.so", "libcudart.so.12")
    _empty_devrt(staging / "lib" / "libcudadevrt.a")
    version = _first_line([staging / "bin" / "nvcc", "--version"])
    done = _run([staging / "bin" / "nvcc", "--version"])
    m = re.search(r"release (\d+\.\d+), V([\d.]+)", done.stdout)
    if done.returncode != 0 or not m:
        raise BackendUnavailable(f"the relocated nvcc from {deb.name} does not run: {done.stderr.strip()[-300:]}")
    shutil.rmtree(out, ignore_errors=True)
    staging.rename(out)
    _save_record(
        cuda12={
            "nvcc": m.group(2),
            "deb": f"{CUDA12_DEB} {deb_version} (Debian {CUDA12_SUITE} non-free)",
            "nvcc_wheel": nvcc_whl.name,
            "runtime_wheel": rt_whl.name,
            "cccl_wheel": cccl_whl.name,
            "first_line": version,
        }
    )
    return out


def _empty_devrt(path: Path) -> None:
    """nvcc names libcudadevrt.a (the device runtime of relocatable device code, which opforge does not use)
    on every link it drives, e.g. CMake's CUDA compiler check; PyPI's cu12 runtime wheel has no aarch64
    copy, so an empty archive stands in. Nothing opforge builds links anything from it."""
    if shutil.which(f"{TRIPLE}-ar") is None:
        return
    with tempfile.TemporaryDirectory() as tmp:
        src, obj = Path(tmp) / "empty.c", Path(tmp) / "empty.o"
        src.write_text("/* stands in for libcudadevrt.a: see ops/cross/toolchain.py */\n")
        if _run([f"{TRIPLE}-gcc", "-c", src, "-o", obj]).returncode == 0:
            path.unlink(missing_ok=True)
            _run([f"{TRIPLE}-ar", "rcs", path, obj])


CMAKE_TOOLCHAIN = """\
# Written by ops/cross/toolchain.py: cross-compiling for aarch64 Linux (Jetson, JetPack {jetpack}) from this
# machine, for the CMake project `python -m ops.build --trt-cmake DIR` emits:
#   cmake -S DIR -B DIR/build -DCMAKE_TOOLCHAIN_FILE={path} -DTRT_INCLUDE_DIR=<TensorRT 10.3 headers>
set(CMAKE_SYSTEM_NAME Linux)
set(CMAKE_SYSTEM_PROCESSOR aarch64)
set(CMAKE_C_COMPILER {triple}-gcc)
set(CMAKE_CXX_COMPILER {triple}-g++)
set(CMAKE_CUDA_COMPILER {nvcc})
set(CMAKE_CUDA_HOST_COMPILER {triple}-g++)
set(CUDAToolkit_ROOT {cuda_root})
# libcudart.so.N, not the static runtime: PyPI's aarch64 CUDA 12 wheel ships only the shared one, and on a
# Jetson the shared one is JetPack's.
set(CMAKE_CUDA_FLAGS_INIT "-cudart shared {extra_flags}")
set(CMAKE_CUDA_RUNTIME_LIBRARY Shared)
set(CMAKE_FIND_ROOT_PATH /usr/{triple} {cuda_root})
set(CMAKE_FIND_ROOT_PATH_MODE_PROGRAM NEVER)
set(CMAKE_FIND_ROOT_PATH_MODE_LIBRARY ONLY)
set(CMAKE_FIND_ROOT_PATH_MODE_INCLUDE BOTH)
"""


def cmake_toolchain_file(jetpack: str = "6") -> Path:
    """build/jetson/toolchain/aarch64-jetpack<N>.cmake, for the emitted CMake project (README)."""
    path = root() / f"aarch64-jetpack{jetpack}.cmake"
    if jetpack == "6":
        cuda_root, nvcc, extra = cuda12_dir(), cuda12_dir() / "bin" / "nvcc", ""
    else:
        nvcc = host_nvcc()
        if nvcc is None or not (cuda13_dir() / "include").exists():
            raise BackendUnavailable(
                "no CUDA 13 cross toolkit (nvcc 13 + build/jetson/toolchain/cuda13). Fix: python -m ops.cross.toolchain"
            )
        # cuda13/include is the installed toolkit's (the headers are the same for both architectures),
        # cuda13/lib the aarch64 libcudart.so.13 from PyPI.
        # nvcc 13's profile looks for targets/<aarch64>/include, which an x86 install lacks: name them.
        cuda_root, extra = cuda13_dir(), f"-I{cuda13_dir() / 'include'} -L{cuda13_dir() / 'lib'}"
        if (cuda13_dir() / "include" / "cccl").is_dir():
            extra += f" -isystem {cuda13_dir() / 'include' / 'cccl'}"
    text = CMAKE_TOOLCHAIN.format(
        jetpack=jetpack, path=path, triple=TRIPLE, nvcc=nvcc, cuda_root=cuda_root, extra_flags=extra
    )
    path.parent.mkdir(parents=True, exist_ok=True)
    if not path.is_file() or path.read_text() != text:
        path.write_text(text)
    return path


def install_cuda13(log=print) -> Path | None:
    """build/jetson/toolchain/cuda13/lib: the aarch64 libcudart.so.13 of the installed nvcc's minor version."""
    out = cuda13_dir()
    nvcc = host_nvcc()
    if nvcc is None or nvcc_version(nvcc)[0] < 13:
        return None
    if (out / "lib" / "libcudart.so").exists():
        if not (out / "include").exists():
            _link(out / "include", str(nvcc.parent.parent / "include"))
        return out
    major, minor = nvcc_version(nvcc)
    log(f"downloading PyPI's aarch64 nvidia-cuda-runtime {major}.{minor}")
    whl = pip_download(f"nvidia-cuda-runtime=={major}.{minor}.*", root() / "wheels")
    staging = root() / "cuda13.partial"
    shutil.rmtree(staging, ignore_errors=True)
    _unzip(whl, f"nvidia/cu{major}/lib/", staging / "lib")
    so = staging / "lib" / f"libcudart.so.{major}"
    if not so.is_file():
        raise BackendUnavailable(f"{whl.name} holds no lib/libcudart.so.{major}")
    _link(staging / "lib" / "libcudart.so", so.name)
    _link(staging / "include", str(nvcc.parent.parent / "include"))  # the same headers for both architectures
    shutil.rmtree(out, ignore_errors=True)
    staging.rename(out)
    _save_record(cuda13={"nvcc": f"{major}.{minor}", "nvcc_path": str(nvcc), "runtime_wheel": whl.name})
    return out


def install_onnxruntime(log=print) -> Path:
    """build/jetson/toolchain/onnxruntime/lib: the aarch64 libonnxruntime.so of the installed version."""
    out = ort_dir()
    if any((out / "lib").glob("libonnxruntime.so.1.*")):
        return out
    version = installed_onnxruntime_version()
    spec = f"onnxruntime=={version}" if version else "onnxruntime"
    log(f"downloading PyPI's aarch64 {spec}")
    whl = pip_download(spec, root() / "wheels")
    staging = root() / "onnxruntime.partial"
    shutil.rmtree(staging, ignore_errors=True)
    got = [p for p in _unzip(whl, "onnxruntime/capi/", staging / "lib") if p.name.startswith("libonnxruntime")]
    for p in list((staging / "lib").iterdir()):  # keep the runtime only, not the Python bindings
        if p.is_file() and not p.name.startswith("libonnxruntime"):
            p.unlink()
    so = next((p for p in got if re.fullmatch(r"libonnxruntime\.so\.\d+\.\d+\.\d+", p.name)), None)
    if so is None:
        raise BackendUnavailable(f"{whl.name} holds no capi/libonnxruntime.so.<version>")
    _link(staging / "lib" / "libonnxruntime.so.1", so.name)  # its SONAME
    _link(staging / "lib" / "libonnxruntime.so", so.name)
    shutil.rmtree(out, ignore_errors=True)
    staging.rename(out)
    _save_record(onnxruntime=_wheel_version(whl), onnxruntime_wheel=whl.name)
    return out


def install_trt_headers(log=print) -> Path | None:
    """build/jetson/toolchain/tensorrt-10.3/include from OPFORGE_TRT_10_3_INCLUDE, or tag v10.3.0 of an
    NVIDIA/TensorRT clone (OPFORGE_TENSORRT_GIT, else one beside the checkout); None when there is neither."""
    out = trt_include()
    if (out / "NvInferRuntime.h").is_file():
        return out
    staging = out.with_name("include.partial")
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir(parents=True)
    source = None
    given = os.environ.get("OPFORGE_TRT_10_3_INCLUDE") or _beside_checkout(
        "shared/tensorrt-10.3/include", marker="NvInferRuntime.h"
    )
    git_dir = os.environ.get("OPFORGE_TENSORRT_GIT") or _beside_checkout(
        "TensorRT/.git", ".mirror/NVIDIA+TensorRT/repo", marker="HEAD"
    )
    if given and (Path(given) / "NvInferRuntime.h").is_file():
        for h in Path(given).glob("*.h"):
            shutil.copy2(h, staging / h.name)
        source = given
    elif git_dir and shutil.which("git"):
        listing = _run(["git", f"--git-dir={_git_dir(Path(git_dir))}", "ls-tree", "--name-only", TRT_TAG, "include/"])
        if listing.returncode != 0:
            raise BackendUnavailable(
                f"OPFORGE_TENSORRT_GIT={git_dir}: no tag {TRT_TAG} ({listing.stderr.strip()[-200:]})"
            )
        for name in listing.stdout.split():
            blob = subprocess.run(
                ["git", f"--git-dir={_git_dir(Path(git_dir))}", "show", f"{TRT_TAG}:{name}"], capture_output=True
            )
            if blob.returncode == 0 and name.endswith(".h"):
                (staging / Path(name).name).write_bytes(blob.stdout)
        source = f"NVIDIA/TensorRT {TRT_TAG} (git {git_dir})"
    if source is None:
        shutil.rmtree(staging.parent, ignore_errors=True)
        log("TensorRT 10.3 headers: not installed (set OPFORGE_TRT_10_3_INCLUDE or OPFORGE_TENSORRT_GIT)")
        return None
    got = version(staging)
    if got[:2] != TRT_VERSION[:2]:
        shutil.rmtree(staging, ignore_errors=True)
        raise BackendUnavailable(f"the TensorRT headers from {source} are {got}, not 10.3")
    (staging / "SOURCE").write_text(f"{source} (Apache-2.0); never committed\n")
    shutil.rmtree(out, ignore_errors=True)
    staging.rename(out)
    _save_record(tensorrt_headers=".".join(map(str, got)), tensorrt_headers_source=source)
    return out


def _beside_checkout(*candidates: str, marker: str) -> str | None:
    """The first of `candidates` (relative to the checkout's parent) that holds `marker`: the project's shared
    folder (shared/tensorrt-10.3/include) or a fetched NVIDIA/TensorRT (TensorRT/.git, or
    .mirror/NVIDIA+TensorRT/repo, the layout this project's `fetch` tool writes)."""
    project = project_root(Path(__file__).resolve())
    found = [project.parent / c for c in candidates if project is not None and (project.parent / c / marker).exists()]
    return str(found[0]) if found else None


def _git_dir(path: Path) -> Path:
    return path / ".git" if (path / ".git").is_dir() else path


def install(log=print) -> Status:
    install_apt(log)
    install_cuda12(log)
    install_cuda13(log)
    install_onnxruntime(log)
    install_trt_headers(log)
    return status()


def main(argv=None) -> int:
    parser = cli.parser(
        "python -m ops.cross.toolchain",
        "Install the Jetson cross toolchain into build/jetson/toolchain (what is missing), then print what is "
        "there. Exit status: 0 complete, 1 something is missing (--check) or an install step failed, 2 a usage "
        "error.",
        json="print what was found and what is missing as JSON",
    )
    parser.add_argument("--check", action="store_true", help="only look: install nothing; exit 1 if incomplete")
    return cli.main(parser, run, argv)


def run(args) -> cli.Report:
    try:
        st = status() if args.check else install()
    except BackendUnavailable as e:
        print(f"error: {e}", file=sys.stderr)
        return cli.Report({"error": str(e)}, cli.PROBLEMS)
    if not args.json:
        for name, path in st.found.items():
            print(f"{name:24s} {path}  {st.versions.get(name, '')}")
        for name, why in st.missing.items():
            print(f"{name:24s} MISSING: {why}")
    report = {"found": {n: str(p) for n, p in st.found.items()}, "versions": st.versions, "missing": st.missing}
    return cli.Report(report, cli.PROBLEMS if args.check and st.missing else cli.OK)


if __name__ == "__main__":
    sys.exit(main())
