"""Running aarch64 programs here under qemu user mode, and reading what an artefact was built for.

Every run names qemu-aarch64 and a sysroot explicitly (-L), so it works without binfmt_misc (a container
often has none). The sysroot (build/jetson/toolchain/sysroot) is the cross toolchain's libraries
(/usr/aarch64-linux-gnu/lib) plus a /proc/cpuinfo describing Orin's cores (Cortex-A78AE): qemu 7.2 shows
programs this machine's x86 /proc/cpuinfo, and ONNX Runtime's CPU detection (pytorch/cpuinfo), which finds
no ARM core in it, crashes at load time. qemu opens a path under -L first when the file exists there. Emulation shows that the code is correct on
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


ORIN_CORE = """processor\t: {index}
BogoMIPS\t: 62.50
Features\t: fp asimd evtstrm aes pmull sha1 sha2 crc32 atomics fphp asimdhp cpuid asimdrdm lrcpc dcpop asimddp
CPU implementer\t: 0x41
CPU architecture: 8
CPU variant\t: 0x0
CPU part\t: 0xd42
CPU revision\t: 1

"""


def _present_cpus() -> int:
    """How many CPUs /sys/devices/system/cpu/present lists (what the emulated program sees there too)."""
    try:
        text = Path("/sys/devices/system/cpu/present").read_text().strip()
    except OSError:
        return 1
    count = 0
    for part in text.split(","):
        lo, _, hi = part.partition("-")
        count += int(hi or lo) - int(lo) + 1
    return max(count, 1)


def sysroot() -> Path:
    """build/jetson/toolchain/sysroot: the cross libraries and an aarch64 /proc/cpuinfo (see above)."""
    root = toolchain.root() / "sysroot"
    (root / "proc").mkdir(parents=True, exist_ok=True)
    for sub in ("lib", "usr", "etc"):
        target = toolchain.SYSROOT / sub
        link = root / sub
        if target.exists() and not link.is_symlink():
            link.symlink_to(target)
    text = "".join(ORIN_CORE.format(index=i) for i in range(_present_cpus()))
    cpuinfo = root / "proc" / "cpuinfo"
    if not cpuinfo.is_file() or cpuinfo.read_text() != text:
        cpuinfo.write_text(text)
    return root


def unavailable() -> str | None:
    """Why aarch64 programs cannot run here, or None."""
    if qemu() is None:
        return "qemu-aarch64 not found. Fix: apt-get install qemu-user (or `make jetson`)"
    if not (toolchain.SYSROOT / "lib").is_dir():
        return f"no aarch64 sysroot at {toolchain.SYSROOT}. Fix: apt-get install g++-aarch64-linux-gnu"
    return None


def command(exe, args=(), lib_dirs=(), env: dict | None = None) -> list[str]:
    """qemu-aarch64 -L <sysroot> [-E LD_LIBRARY_PATH=...] exe args..."""
    cmd = [qemu(), "-L", str(sysroot())]
    if lib_dirs:
        cmd += ["-E", "LD_LIBRARY_PATH=" + ":".join(str(d) for d in lib_dirs)]
    for k, v in (env or {}).items():
        cmd += ["-E", f"{k}={v}"]
    return cmd + [str(exe), *map(str, args)]


def run(exe, args=(), lib_dirs=(), env: dict | None = None, timeout: float = 600, **kw) -> subprocess.CompletedProcess:
    return subprocess.run(
        command(exe, args, lib_dirs, env), capture_output=True, text=True, timeout=timeout, env={}, **kw
    )


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
