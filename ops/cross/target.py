"""Build targets: which machine the native artefacts are for, and the compilers that build them here.

    jetson-orin      = aarch64-linux, CUDA archs 87 (Orin: Cortex-A78AE cores, an sm_87 GPU)
    aarch64-linux    any 64-bit ARM Linux; --cuda-archs picks the GPUs (default 87)

Each target is built for a JetPack generation, which fixes the CUDA major version the device has and so
the toolchain (ops/cross/toolchain.py):
    jetpack6   CUDA 12 (JetPack 6.0: 12.2, 6.1/6.2: 12.6), TensorRT 10.3: Debian's nvcc 12.4, libcudart.so.12
    jetpack7   CUDA 13, TensorRT 10.13+: the installed nvcc 13, libcudart.so.13
The plugin library is compiled against the TensorRT 10.3 headers for both: TensorRT 10.x loads plugins
built with the headers of an earlier 10.x, not the other way round.
"""

from __future__ import annotations

from dataclasses import dataclass

from ..core.errors import OpforgeError
from ..native.compilers import Compilers
from . import toolchain


@dataclass(frozen=True)
class Target:
    name: str
    arch: str  # what readelf -h says: "AArch64"
    triple: str
    cuda_archs: tuple[str, ...]


TARGETS = {
    "aarch64-linux": Target("aarch64-linux", "AArch64", toolchain.TRIPLE, ("87",)),
    "jetson-orin": Target("jetson-orin", "AArch64", toolchain.TRIPLE, ("87",)),
}
JETPACKS = {"6": 12, "7": 13}  # JetPack generation -> CUDA major version


def target(name: str, cuda_archs: str | None = None) -> Target:
    if name not in TARGETS:
        raise OpforgeError(f"unknown target {name!r}: use one of {', '.join(sorted(TARGETS))}")
    t = TARGETS[name]
    if cuda_archs:
        archs = tuple(a.strip() for a in cuda_archs.replace(";", ",").split(",") if a.strip())
        if not all(a.isdigit() for a in archs):
            raise OpforgeError(f"--cuda-archs {cuda_archs!r}: give compute capabilities as digits, e.g. 87 or 72,87")
        t = Target(t.name, t.arch, t.triple, archs)
    return t


def compilers(t: Target, jetpack: str = "6") -> Compilers:
    """The cross compilers for target `t` and JetPack generation `jetpack`; raises BackendUnavailable
    (with the fix) when the toolchain is not installed."""
    if jetpack not in JETPACKS:
        raise OpforgeError(f"unknown JetPack generation {jetpack!r}: use 6 (CUDA 12) or 7 (CUDA 13)")
    st = toolchain.status()
    cuda = f"cuda{JETPACKS[jetpack]}"
    st.require("g++-aarch64-linux-gnu", cuda)
    cxx = f"{t.triple}-g++"
    if cuda == "cuda12":
        root = st.found["cuda12"]
        return Compilers(
            name=f"{t.name} / CUDA {st.versions.get('cuda12', '12')} (JetPack 6)",
            cxx=cxx,
            ar=f"{t.triple}-ar",
            nvcc=root / "bin" / "nvcc",
            nvcc_flags=("-ccbin", cxx),
            cuda_include=root / "include",
            cuda_lib=root / "lib",
            cuda_archs=t.cuda_archs,
            cross=True,
        )
    nvcc = toolchain.host_nvcc()
    include = nvcc.parent.parent / "include"
    # nvcc's profile adds the include directories of the target's targets/<arch>/ tree, which an x86 install
    # lacks for aarch64; the headers themselves are the same for both, so the installed ones are named.
    flags = ["-ccbin", cxx, f"-I{include}"]
    if (include / "cccl").is_dir():  # CUDA 13 keeps libcu++/CUB/Thrust there
        flags += ["-isystem", str(include / "cccl")]
    return Compilers(
        name=f"{t.name} / CUDA {st.versions.get('cuda13', '13')} (JetPack 7)",
        cxx=cxx,
        ar=f"{t.triple}-ar",
        nvcc=nvcc,
        nvcc_flags=tuple(flags),
        cuda_include=include,
        cuda_lib=st.found["cuda13"] / "lib",
        cuda_archs=t.cuda_archs,
        cross=True,
    )
