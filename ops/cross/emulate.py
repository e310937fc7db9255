"""Running aarch64 programs here under qemu user mode, and reading what an artefact was built for.

Every run names qemu-aarch64 and the cross toolchain's sysroot explicitly (-L /usr/aarch64-linux-gnu), so
it works without binfmt_misc (a container often has none). Emulation shows that the code is correct on
aarch64 (instruction set, ABI, alignment, the loader finding every library); its timings say nothing about
a Jetson.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

from . import toolchain


def qemu() -> str | None:
    return shutil.which("qemu-aarch64")


def unavailable() -> str | None:
    """Why aarch64 programs cannot run here, or None."""
    if qemu() is None:
        return "qemu-aarch64 not found. Fix: apt-get install qemu-user (or `make jetson`)"
    if not (toolchain.SYSROOT / "lib").is_dir():
        return f"no aarch64 sysroot at {toolchain.SYSROOT}. Fix: apt-get install g++-aarch64-linux-gnu"
    return None


def command(exe, args=(), lib_dirs=(), env: dict | None = None) -> list[str]:
    """qemu-aarch64 -L <sysroot> [-E LD_LIBRARY_PATH=...] exe args..."""
    cmd = [qemu(), "-L", str(toolchain.SYSROOT)]
    if lib_dirs:
        cmd += ["-E", "LD_LIBRARY_PATH=" + ":".join(str(d) for d in lib_dirs)]
    for k, v in (env or {}).items():
        cmd += ["-E", f"{k}={v}"]
    return cmd + [str(exe), *map(str, args)]


def run(exe, args=(), lib_dirs=(), env: dict | None = None, timeout: float = 600, **kw) -> subprocess.CompletedProcess:
    return subprocess.run(command(exe, args, lib_dirs, env), capture_output=True, text=True, timeout=timeout,
                          env={}, **kw)


# ---- what an artefact is -------------------------------------------------------------------------------

def machine(path: Path) -> str:
    """readelf -h's Machine line ("AArch64", "Advanced Micro Devices X86-64"), or "" if not ELF."""
    done = subprocess.run(["readelf", "-h", str(path)], capture_output=True, text=True)
    machines = set(re.findall(r"Machine:\s+(.+)", done.stdout))
    return ", ".join(sorted(m.strip() for m in machines))


def needed(path: Path) -> list[str]:
    done = subprocess.run(["readelf", "-d", str(path)], capture_output=True, text=True)
    return re.findall(r"\(NEEDED\)\s+Shared library: \[([^\]]+)\]", done.stdout)


def symbol_versions(path: Path) -> dict[str, str]:
    """The newest GLIBC_ and GLIBCXX_ symbol versions the artefact needs (what the device's libc and
    libstdc++ must provide)."""
    done = subprocess.run(["readelf", "-V", "--wide", str(path)], capture_output=True, text=True)
    out = {}
    for prefix in ("GLIBC", "GLIBCXX", "CXXABI"):
        found = re.findall(rf"Name: {prefix}_([\d.]+)", done.stdout)
        if found:
            out[prefix] = max(found, key=lambda v: tuple(int(x) for x in v.split(".")))
    return out


def cuda_code(path: Path, cuobjdump: Path | None) -> dict:
    """{"sass": ["sm_87", ...], "ptx": ["compute_87"|"sm_87", ...]} from cuobjdump --list-elf --list-ptx,
    or {} when the artefact carries no CUDA code (or no cuobjdump)."""
    if cuobjdump is None:
        return {}
    done = subprocess.run([str(cuobjdump), "--list-elf", "--list-ptx", str(path)], capture_output=True, text=True)
    sass = sorted(set(re.findall(r"ELF file\s+\d+:.*\.(sm_\d+[a-z]?)\.cubin", done.stdout)))
    ptx = sorted(set(re.findall(r"PTX file\s+\d+:.*\.(sm_\d+[a-z]?)\.ptx", done.stdout)))
    return {"sass": sass, "ptx": ptx} if sass or ptx else {}
