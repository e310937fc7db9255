"""Which compilers build the native libraries, and for which machine.

The TensorRT plugin library, the ONNX Runtime op library, their CUDA kernel objects and the C++ example
are built by this machine's compilers for this machine unless a `Compilers` is passed to their build
functions; ops/cross/target.py makes one per target (Jetson: aarch64-linux-gnu-g++, nvcc with
-ccbin aarch64-linux-gnu-g++, the target's CUDA headers and libcudart, sm_87). `None` everywhere means
the host build, unchanged.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path


@dataclass(frozen=True)
class Compilers:
    name: str  # e.g. "aarch64-linux / CUDA 12.4"
    cxx: str = "c++"
    ar: str = "ar"
    nvcc: Path | None = None  # None: no CUDA code for this target
    nvcc_flags: tuple[str, ...] = ()  # e.g. -ccbin aarch64-linux-gnu-g++, -isystem <cccl>
    cuda_include: Path | None = None  # cuda_runtime_api.h for the C++ sources
    cuda_lib: Path | None = None  # the directory of the target's libcudart.so
    cuda_archs: tuple[str, ...] = ()  # SASS for each, PTX of the last
    cross: bool = False  # no rpath into this machine's directories
    cxxflags: tuple[str, ...] = field(default=())

    def gencode(self) -> list[str]:
        flags = []
        for a in self.cuda_archs:
            flags += ["-gencode", f"arch=compute_{a},code=sm_{a}"]
        if self.cuda_archs:
            top = self.cuda_archs[-1]
            flags += ["-gencode", f"arch=compute_{top},code=compute_{top}"]
        return flags

    def cudart_ldflags(self) -> list[str]:
        flags = [f"-L{self.cuda_lib}", "-lcudart"]
        return flags if self.cross else flags + [f"-Wl,-rpath,{self.cuda_lib}"]
