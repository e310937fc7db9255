"""Every native artefact of an op package, cross-built for a target, with a manifest.

    python -m ops.build --target jetson-orin [--package P] [--jetpack 6|7|6,7] [--ops opforge::rms_norm,...]
    python -m ops.build --target aarch64-linux --cuda-archs 87        # the same thing, spelled out

Writes build/jetson/<package>/jetpack<N>/ (README, "Deploying to a Jetson"):
    lib/lib<stem>_trt_plugins.so          TensorRT plugin library (getCreators: --dynamicPlugins, loadLibrary)
    lib/lib<stem>_trt_plugins_static.so   loading it registers every creator (--staticPlugins)
    lib/lib<stem>_trt_plugins.a           the same objects, to link into an application
    lib/lib<stem>_ort_ops.so              ONNX Runtime op library: CPU kernels and CUDA EP variants
    bin/ort_run_model                     the C++ deployment example (examples/cpp)
and build/jetson/<package>/manifest.json: per artefact its architecture (readelf), CUDA code (cuobjdump:
SASS and PTX), the libraries it needs, the newest glibc/libstdc++ symbol versions it uses, and the
toolchain that built it; the TensorRT headers version and the ORT API version. Objects stay under
jetpack<N>/work (incremental: ninja).
"""

from __future__ import annotations

import json
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path

from ..core import paths
from ..core.discovery import import_package
from ..ort import build as ort_build
from ..ort import headers as ort_headers
from ..trt import build as trt_build
from ..trt import headers as trt_headers
from . import emulate, toolchain
from . import target as targets
from .remote_harness import build_fuzzer, build_server

DEFAULT_PACKAGE = "ops.library"


@dataclass
class Artefact:
    kind: str  # trt_plugins | trt_plugins_static | trt_plugins_archive | ort_ops | example
    path: Path
    info: dict = field(default_factory=dict)


@dataclass
class TargetBuild:
    package: str
    target: targets.Target
    jetpack: str
    directory: Path
    artefacts: list[Artefact]
    skipped: dict[str, str]  # artefact kind -> why it was not built
    manifest: Path | None = None
    compilers: object = None  # ops.native.compilers.Compilers

    def artefact(self, kind: str) -> Path | None:
        return next((a.path for a in self.artefacts if a.kind == kind), None)


def package_dir(package: str = DEFAULT_PACKAGE) -> Path:
    return paths.build_root() / "jetson" / import_package(package).name


def _select(decls, ops):
    if not ops:
        return decls
    chosen = [d for d in decls if d.id in ops or d.name in ops]
    return chosen


def build(
    package: str = DEFAULT_PACKAGE,
    target_name: str = "jetson-orin",
    cuda_archs: str | None = None,
    jetpack: str = "6",
    ops: list[str] | None = None,
    verbose: bool = False,
    example: bool = True,
    directory: Path | None = None,
    log=print,
) -> TargetBuild:
    """Cross-build the package's TensorRT plugin library, ONNX Runtime op library and the C++ example for
    one JetPack generation. `ops` restricts the build to some ops (the quick CI check); `directory` replaces
    build/jetson/<package>/jetpack<N> (the manifest goes beside it)."""
    t = targets.target(target_name, cuda_archs)
    comp = targets.compilers(t, jetpack)
    pkg = import_package(package)
    out = Path(directory).resolve() if directory else package_dir(package) / f"jetpack{jetpack}"
    work, lib, bindir = out / "work", out / "lib", out / "bin"
    lib.mkdir(parents=True, exist_ok=True)
    artefacts: list[Artefact] = []
    skipped: dict[str, str] = {}
    st = toolchain.status()
    record = toolchain.read_record()
    cxx_version = st.versions.get("g++-aarch64-linux-gnu", comp.cxx)
    nvcc_version = (
        f"nvcc {record.get('cuda12', {}).get('nvcc', '')} ({record.get('cuda12', {}).get('deb', '')})"
        if jetpack == "6"
        else f"nvcc {st.versions.get('cuda13', '')} ({toolchain.host_nvcc()})"
    )

    def place(src: Path, kind: str, info: dict) -> None:
        dest = (bindir if kind == "example" else lib) / src.name
        dest.parent.mkdir(parents=True, exist_ok=True)
        tmp = dest.with_name(dest.name + ".tmp")
        shutil.copyfile(src, tmp)
        shutil.copymode(src, tmp)
        tmp.replace(dest)
        artefacts.append(Artefact(kind, dest, info))

    # TensorRT plugin library (against the TensorRT 10.3 headers)
    trt_decls = _select(trt_build.plugin_decls(pkg.name), ops)
    if "tensorrt-10.3" not in st.found:
        skipped["trt_plugins"] = st.missing["tensorrt-10.3"]
    elif not trt_decls:
        skipped["trt_plugins"] = f"no op of {pkg.name} {'among ' + ', '.join(ops) + ' ' if ops else ''}has CUDA kernels"
    else:
        started = time.monotonic()
        log(f"[{comp.name}] TensorRT plugin library ({', '.join(d.id for d in trt_decls)})")
        res = trt_build.build(
            "release",
            verbose=verbose,
            decls=trt_decls,
            build_dir=work / "trt",
            package=pkg.name,
            compilers=comp,
            trt_include=st.found["tensorrt-10.3"],
            cuda_dir=work / "cuda",
        )
        version = ".".join(map(str, trt_headers.version(res.trt_include)))
        common = {
            "toolchain": {"cxx": cxx_version, "nvcc": nvcc_version},
            "tensorrt_headers": version,
            "ops": list(res.ops),
            "build_seconds": round(time.monotonic() - started, 1),
        }
        place(res.library, "trt_plugins", dict(common))
        place(
            res.static_shim,
            "trt_plugins_static",
            {"toolchain": {"cxx": cxx_version}, "tensorrt_headers": version, "links": res.library.name},
        )
        place(res.library.with_suffix(".a"), "trt_plugins_archive", dict(common))

    # ONNX Runtime op library (CPU kernels + CUDA EP variants)
    ort_decls = _select(ort_build.library_decls(pkg.name), ops)
    if not ort_decls:
        skipped["ort_ops"] = f"no op of {pkg.name} has compiled kernels and ONNX export"
    else:
        started = time.monotonic()
        log(f"[{comp.name}] ONNX Runtime op library ({', '.join(d.id for d in ort_decls)})")
        res = ort_build.build(
            pkg.name, verbose=verbose, decls=ort_decls, build_dir=work / "ort", compilers=comp, cuda_dir=work / "cuda"
        )
        place(
            res.library,
            "ort_ops",
            {
                "toolchain": {"cxx": cxx_version, "nvcc": nvcc_version if res.with_cuda else None},
                "ort_api_version": res.api_version,
                "cuda_ep_variants": res.with_cuda,
                "ops": list(res.ops),
                "build_seconds": round(time.monotonic() - started, 1),
            },
        )

    # The C++ deployment example, linked to the aarch64 libonnxruntime.so
    if not example:
        pass
    elif "onnxruntime" not in st.found:
        skipped["example"] = st.missing["onnxruntime"]
    else:
        runtime = sorted(st.found["onnxruntime"].glob("libonnxruntime.so.1.*"))[-1]
        log(f"[{comp.name}] C++ example (examples/cpp/run_model.cpp, ONNX Runtime {st.versions.get('onnxruntime')})")
        exe = ort_build.build_example(work / "example" / "ort_run_model", compilers=comp, runtime=runtime)
        # The example finds libonnxruntime.so.1 beside itself ($ORIGIN rpath): here the wheel's, for the emulated
        # runs; on the device, the runtime installed there (README, "Deploying to a Jetson").
        soname = bindir / "libonnxruntime.so.1"
        bindir.mkdir(parents=True, exist_ok=True)
        if soname.is_symlink() or soname.exists():
            soname.unlink()
        soname.symlink_to(runtime)
        place(
            exe,
            "example",
            {
                "toolchain": {"cxx": cxx_version},
                "onnxruntime": st.versions.get("onnxruntime"),
                "ort_api_version": ort_headers.api_version(ort_headers.require()),
            },
        )

    cuobjdump = _cuobjdump()
    for a in artefacts:
        a.info.update(
            {
                "path": str(a.path.relative_to(out)),
                "architecture": emulate.machine(a.path),
                "cuda": emulate.cuda_code(a.path, cuobjdump),
                "needed": emulate.needed(a.path) if a.path.suffix != ".a" else [],
                "symbol_versions": emulate.symbol_versions(a.path) if a.path.suffix != ".a" else {},
            }
        )
    result = TargetBuild(pkg.name, t, jetpack, out, artefacts, skipped, compilers=comp)
    result.manifest = write_manifest(result, comp)
    return result


def cuda_lib_dir(result: TargetBuild) -> Path:
    """The directory of the target's libcudart.so.N (PyPI's aarch64 wheel): what the libraries load under qemu."""
    return result.compilers.cuda_lib


def harness_server(result: TargetBuild) -> Path:
    """The plugin host harness cross-compiled with its server (ops/cross/remote_harness.py)."""
    return build_server(
        result.compilers, toolchain.status().found["tensorrt-10.3"], result.directory / "work" / "harness"
    )


def fuzzer(result: TargetBuild) -> Path:
    return build_fuzzer(
        result.compilers, toolchain.status().found["tensorrt-10.3"], result.directory / "work" / "harness"
    )


def _cuobjdump() -> Path | None:
    st = toolchain.status()
    if "cuda12" in st.found and (st.found["cuda12"] / "bin" / "cuobjdump").is_file():
        return st.found["cuda12"] / "bin" / "cuobjdump"
    found = shutil.which("cuobjdump")
    return Path(found) if found else None


def write_manifest(result: TargetBuild, comp) -> Path:
    """build/jetson/<package>/manifest.json: one entry per JetPack generation built (the others kept)."""
    path = result.directory.parent / "manifest.json"
    try:
        manifest = json.loads(path.read_text())
    except (OSError, ValueError):
        manifest = {}
    record = toolchain.read_record()
    manifest.update(
        {
            "package": result.package,
            "target": result.target.name,
            "architecture": result.target.arch,
            "cuda_archs": list(result.target.cuda_archs),
            "tensorrt_headers": record.get("tensorrt_headers"),
            "tensorrt_headers_source": record.get("tensorrt_headers_source"),
        }
    )
    manifest.setdefault("jetpack", {})[result.jetpack] = {
        "cuda": targets.JETPACKS[result.jetpack],
        "compilers": comp.name,
        "directory": str(result.directory),
        "toolchain": {
            k: v
            for k, v in record.items()
            if k == f"cuda{targets.JETPACKS[result.jetpack]}" or k.startswith("onnxruntime")
        },
        "artefacts": {a.kind: a.info for a in result.artefacts},
        "skipped": result.skipped,
    }
    ort = next((a.info.get("ort_api_version") for a in result.artefacts if a.kind == "ort_ops"), None)
    if ort is not None:
        manifest["ort_api_version"] = ort
    paths.write_if_changed(path, json.dumps(manifest, indent=2) + "\n")
    return path


def check(result: TargetBuild) -> list[str]:
    """What is wrong with the artefacts: not the target's architecture, or CUDA code without SASS for every
    target arch and PTX for the last. Empty when all is well."""
    problems = []
    for a in result.artefacts:
        if a.info.get("architecture") != result.target.arch:
            problems.append(f"{a.path.name}: readelf says {a.info.get('architecture')!r}, not {result.target.arch}")
        if a.kind in ("trt_plugins", "trt_plugins_archive") or (a.kind == "ort_ops" and a.info.get("cuda_ep_variants")):
            cuda = a.info.get("cuda") or {}
            want = [f"sm_{x}" for x in result.target.cuda_archs]
            if sorted(cuda.get("sass", [])) != sorted(want) or f"sm_{result.target.cuda_archs[-1]}" not in cuda.get(
                "ptx", []
            ):
                problems.append(f"{a.path.name}: cuobjdump shows {cuda or 'no CUDA code'}, want SASS {want} + PTX")
    return problems


def main(args, names: list[str]) -> int:
    """`python -m ops.build --target ...` (ops/build.py hands its arguments here). Exit status 1 when an
    artefact is not what the target needs; errors are raised for ops.cli to report."""
    jetpacks = [j.strip() for j in (args.jetpack or "6").split(",") if j.strip()]
    ops = [o.strip() for o in (args.ops or "").split(",") if o.strip()] or None
    status = 0
    for name in names:
        for jp in jetpacks:
            res = build(name, args.target, args.cuda_archs, jp, ops, verbose=args.verbose)
            for a in res.artefacts:
                cuda = a.info.get("cuda") or {}
                code = (
                    f"SASS {','.join(cuda.get('sass', []))} PTX {','.join(cuda.get('ptx', []))}"
                    if cuda
                    else "no CUDA code"
                )
                print(f"built {paths.relative_to_project(a.path)}  [{a.info.get('architecture')}; {code}]")
            for kind, why in res.skipped.items():
                print(f"skipped {kind}: {why}")
            for problem in check(res):
                print(f"error: {problem}")
                status = 1
            print(f"manifest {paths.relative_to_project(res.manifest)}")
    return status
