"""The plugin host harness for a plugin library of another architecture: harness.cpp is cross-compiled
with a small server (harness_server.cpp) that runs under qemu user mode, and `RemoteHarness` stands in for
the ctypes library object that ops/trt/harness/host.py's Host drives. So the checks that run against the
x86 library (ops/trt/harness/checks.py: creator fields from the exported ONNX node, output shapes, format
combinations, configure, the serialization round trip, clone) run unchanged against the aarch64 one.

    from ops.cross.remote_harness import RemoteHarness, build_server
    from ops.trt.harness.host import Host
    h = Host(aarch64_library, lib=RemoteHarness(build_server(compilers, trt_include), lib_dirs=[cudart_dir]))

Also here: the createPlugin fuzzer (fuzz.cpp) cross-compiled. It runs without AddressSanitizer, whose
shadow memory qemu user mode does not support: under emulation the fuzz catches crashes, aborts and silent
rejections, not reads past a field that stay inside mapped memory (the x86 run with ASan does that).
"""

from __future__ import annotations

import ctypes
import struct
import subprocess
from pathlib import Path

from ..core.errors import OpforgeError
from ..trt.harness import host
from . import emulate

HERE = Path(__file__).resolve().parent

# nvinfer1::PluginFieldType -> bytes per element (kDIMS: a Dims64, 8 + 8 * 8 bytes)
FIELD_WIDTH = {0: 2, 1: 4, 2: 8, 3: 1, 4: 2, 5: 4, 6: 1, 7: 72, 8: 1, 9: 2, 10: 8}


def _harness_sources() -> list[Path]:
    return [host.HERE / "harness.cpp", HERE / "harness_server.cpp"]


def _compile(out: Path, sources: list[Path], cmd_head: list[str], flags: list[str]) -> Path:
    deps = [*sources, *sorted((sources[0].parent).glob("*.h"))]
    if out.exists() and all(out.stat().st_mtime >= p.stat().st_mtime for p in deps):
        return out
    out.parent.mkdir(parents=True, exist_ok=True)
    cmd = [*cmd_head, *map(str, sources), "-o", str(out), *flags]
    done = subprocess.run(cmd, capture_output=True, text=True)
    if done.returncode != 0:
        raise OpforgeError(f"building {out.name} failed:\n{' '.join(cmd)}\n{done.stderr[-4000:]}")
    return out


def _target_command(compilers, trt_include: Path) -> list[str]:
    """The target compiler and flags the harness programs are built with (TensorRT and CUDA headers)."""
    return [compilers.cxx, "-std=c++17", "-O1", "-g", "-Wall", "-Wno-deprecated-declarations",
            f"-I{trt_include}", f"-I{compilers.cuda_include}"]  # fmt: skip


def build_server(compilers, trt_include: Path, out_dir: Path) -> Path:
    """harness.cpp + harness_server.cpp, compiled by the target's compiler into one executable."""
    head = _target_command(compilers, trt_include)
    return _compile(Path(out_dir) / "opforge_trt_harness_server", _harness_sources(), head, ["-ldl"])


def build_fuzzer(compilers, trt_include: Path, out_dir: Path) -> Path:
    """fuzz.cpp (the createPlugin fuzzer), compiled by the target's compiler."""
    head = _target_command(compilers, trt_include)
    return _compile(Path(out_dir) / "opforge_trt_fuzz", [host.HERE / "fuzz.cpp"], head, ["-ldl"])


class RemoteFunction:
    """One harness function; Host sets restype and argtypes on it as on a ctypes function."""

    def __init__(self, owner: RemoteHarness, name: str):
        self.owner, self.name = owner, name
        self.restype = ctypes.c_int
        self.argtypes: list = []

    def __call__(self, *args):
        return self.owner.call(self, args)


class RemoteHarness:
    """A ctypes-library look-alike whose functions run in the aarch64 harness server under qemu."""

    def __init__(self, server: Path, lib_dirs=(), timeout: float = 600):
        self.timeout = timeout
        self.proc = subprocess.Popen(
            emulate.command(server, (), lib_dirs),
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            env={},
        )
        self._functions: dict[str, RemoteFunction] = {}

    def __getattr__(self, name: str) -> RemoteFunction:
        if not name.startswith("hx_"):
            raise AttributeError(name)
        fn = self._functions.get(name)
        if fn is None:
            fn = self._functions[name] = RemoteFunction(self, name)
        return fn

    def close(self) -> str:
        """Stop the server; return what it wrote to stderr."""
        if self.proc.poll() is None:
            self.proc.stdin.close()
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        return self.proc.stderr.read().decode(errors="replace")

    def __del__(self):
        try:
            self.close()
        except Exception:
            pass

    # ---- marshalling ----

    def _encode(self, argtype, value) -> tuple[bytes, object]:
        """(encoding, the ctypes object to copy the reply into or None)."""
        if value is None:
            return b"n", None
        if argtype is ctypes.c_void_p:
            v = value.value if isinstance(value, ctypes.c_void_p) else value
            return (b"p" + struct.pack("<Q", v)) if v else b"n", None
        if argtype is ctypes.c_int32:
            return b"i" + struct.pack("<i", int(value)), None
        if argtype is ctypes.c_int64:
            return b"l" + struct.pack("<q", int(value)), None
        if argtype is ctypes.c_char_p:
            if isinstance(value, bytes):
                return b"s" + struct.pack("<I", len(value)) + value, None
            if isinstance(value, ctypes.Array):  # create_string_buffer: an output buffer
                return b"o" + struct.pack("<I", ctypes.sizeof(value)), value
        if isinstance(value, ctypes.Array) and getattr(value, "_type_", None).__name__ == "PluginField":
            return self._fields(value), None
        if isinstance(value, ctypes.Array):
            raw = bytes(memoryview(value).cast("B"))
            return b"b" + struct.pack("<I", len(raw)) + raw, value
        raise OpforgeError(f"the remote harness cannot pass {type(value).__name__} as {argtype}")

    def _fields(self, arr) -> bytes:
        out = [b"f", struct.pack("<I", len(arr))]
        for f in arr:
            name = f.name or b""
            out += [struct.pack("<I", len(name)), name, struct.pack("<ii", f.type, f.length)]
            if not f.data:
                out.append(struct.pack("<I", 0xFFFFFFFF))
            else:
                size = FIELD_WIDTH.get(f.type, 1) * max(f.length, 0)
                out += [struct.pack("<I", size), ctypes.string_at(f.data, size)]
        return b"".join(out)

    def call(self, fn: RemoteFunction, args) -> object:
        if len(args) != len(fn.argtypes):
            raise OpforgeError(f"{fn.name}: {len(args)} arguments for {len(fn.argtypes)} parameters")
        parts, outs = [], []
        for argtype, value in zip(fn.argtypes, args):
            enc, target = self._encode(argtype, value)
            parts.append(enc)
            if enc[:1] in (b"o", b"b"):
                outs.append(target)
        name = fn.name.encode()
        body = bytes([len(name)]) + name + bytes([len(args)]) + b"".join(parts)
        reply = self._exchange(body)
        tag, pos = reply[:1], 1
        if tag == b"E":
            raise OpforgeError(f"harness server: {fn.name}: {reply[1:].decode(errors='replace')}")
        if tag == b"p":
            (v,) = struct.unpack_from("<Q", reply, pos)
            pos += 8
            result = v or None
        elif tag == b"i":
            (result,) = struct.unpack_from("<i", reply, pos)
            pos += 4
        elif tag == b"l":
            (result,) = struct.unpack_from("<q", reply, pos)
            pos += 8
        elif tag == b"s":
            (n,) = struct.unpack_from("<i", reply, pos)
            pos += 4
            result = None if n < 0 else reply[pos : pos + n]
            pos += max(n, 0)
        else:
            result = None
        for target in outs:
            (n,) = struct.unpack_from("<I", reply, pos)
            pos += 4
            data = reply[pos : pos + n]
            pos += n
            if target is not None:
                ctypes.memmove(target, data, min(n, ctypes.sizeof(target)))
        return result

    def _exchange(self, body: bytes) -> bytes:
        if self.proc.poll() is not None:
            raise OpforgeError(
                f"the harness server exited ({self.proc.returncode}): "
                f"{self.proc.stderr.read().decode(errors='replace')[-2000:]}"
            )
        try:
            self.proc.stdin.write(struct.pack("<I", len(body)) + body)
            self.proc.stdin.flush()
            head = self.proc.stdout.read(4)
            if len(head) < 4:
                raise OSError("no reply")
            (n,) = struct.unpack("<I", head)
            return self.proc.stdout.read(n)
        except OSError as e:
            self.proc.wait(timeout=10)
            raise OpforgeError(
                f"the harness server died ({self.proc.returncode}): {e}; "
                f"{self.proc.stderr.read().decode(errors='replace')[-2000:]}"
            ) from None
