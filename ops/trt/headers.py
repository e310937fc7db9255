"""Finding TensorRT headers: TENSORRT_ROOT / TRT_INCLUDE_DIR, then system paths, then a local cache.

TensorRT itself cannot be installed on the developer/CI machines, but its 10.14.1 headers (Apache-2.0)
ship inside the `kernel-lens==2.0.1` wheel under `kernel_lens/include/tensorrt/`. `fetch()` downloads
that wheel with pip (no install, no dependencies) and extracts only the headers into a cache directory.
The headers are never committed or vendored: every build finds or fetches them.

    python -m ops.trt.headers            # print the include dir (fetching into the cache if needed)
    python -m ops.trt.headers --check    # print it only if already present; exit 1 otherwise
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

from .. import cli
from ..core.errors import BackendUnavailable
from ..core.paths import build_root

WHEEL = "kernel-lens==2.0.1"
WHEEL_PREFIX = "kernel_lens/include/tensorrt/"
EXPECTED_VERSION = (10, 14, 1)
SYSTEM_DIRS = (
    "/usr/include/x86_64-linux-gnu",
    "/usr/include/aarch64-linux-gnu",
    "/usr/include",
    "/usr/local/tensorrt/include",
    "/opt/tensorrt/include",
    "/usr/local/include",
)
HINT = (
    f"set TRT_INCLUDE_DIR (or TENSORRT_ROOT) to a TensorRT 10 install, or run `python -m ops.trt.headers` "
    f"to fetch the {'.'.join(map(str, EXPECTED_VERSION))} headers from the {WHEEL} wheel into {{cache}}"
)


def cache_dir() -> Path:
    """OPFORGE_TRT_HEADERS_CACHE, else trt-headers under opforge's build root (build/ of a checkout, the
    user cache for an installed opforge)."""
    return Path(os.environ.get("OPFORGE_TRT_HEADERS_CACHE") or build_root() / "trt-headers")


def _has_headers(d: Path) -> bool:
    return (d / "NvInferRuntime.h").is_file() and (d / "NvInferVersion.h").is_file()


def version(include_dir: Path) -> tuple[int, int, int]:
    text = (Path(include_dir) / "NvInferVersion.h").read_text(errors="replace")
    nums = []
    for key in ("MAJOR", "MINOR", "PATCH"):
        m = re.search(rf"#define\s+(?:NV_)?TRT_{key}_ENTERPRISE\s+(\d+)", text) or re.search(
            rf"#define\s+NV_TENSORRT_{key}\s+(\d+)", text
        )
        nums.append(int(m.group(1)) if m else -1)
    return tuple(nums)  # type: ignore[return-value]


def find() -> Path | None:
    """The include dir to build against, or None. Order: TRT_INCLUDE_DIR, TENSORRT_ROOT/include, system
    paths, the fetched cache."""
    candidates = []
    if os.environ.get("TRT_INCLUDE_DIR"):
        candidates.append(Path(os.environ["TRT_INCLUDE_DIR"]))
    if os.environ.get("TENSORRT_ROOT"):
        candidates.append(Path(os.environ["TENSORRT_ROOT"]) / "include")
    candidates += [Path(d) for d in SYSTEM_DIRS]
    candidates.append(cache_dir() / "include")
    return next((c for c in candidates if _has_headers(c)), None)


def fetch(dest: Path | None = None) -> Path:
    """Download the kernel-lens wheel with pip and extract the TensorRT headers into dest/include."""
    dest = Path(dest or cache_dir())
    include = dest / "include"
    if _has_headers(include):
        return include
    with tempfile.TemporaryDirectory(prefix="opforge-trt-headers-") as tmp:
        wheel_dir = os.environ.get("OPFORGE_TRT_HEADERS_WHEEL_DIR")  # a pre-downloaded wheel (offline CI)
        wheels = sorted(Path(wheel_dir).glob("kernel_lens-*.whl")) if wheel_dir else []
        if not wheels:
            cmd = [sys.executable, "-m", "pip", "download", "--no-deps", WHEEL, "-d", tmp, "-q"]
            done = subprocess.run(cmd, capture_output=True, text=True)
            wheels = sorted(Path(tmp).glob("kernel_lens-*.whl"))
            if done.returncode != 0 or not wheels:
                raise BackendUnavailable(
                    f"could not download {WHEEL} for the TensorRT headers "
                    f"(`{' '.join(cmd)}` said: {done.stderr.strip()[-400:]}). Fix: " + HINT.format(cache=dest)
                )
        staging = dest / "include.partial"
        shutil.rmtree(staging, ignore_errors=True)
        staging.mkdir(parents=True)
        with zipfile.ZipFile(wheels[-1]) as zf:
            for info in zf.infolist():
                if info.filename.startswith(WHEEL_PREFIX) and info.filename.endswith(".h"):
                    name = Path(info.filename).name  # flat: never trust paths inside an archive
                    (staging / name).write_bytes(zf.read(info))
        if not _has_headers(staging):
            raise BackendUnavailable(
                f"{wheels[-1].name} holds no TensorRT headers under {WHEEL_PREFIX}. Fix: " + HINT.format(cache=dest)
            )
        shutil.rmtree(include, ignore_errors=True)
        staging.rename(include)  # atomic: a half-extracted cache is never mistaken for a good one
    return include


def require(fetch_if_missing: bool = True) -> Path:
    found = find()
    if found is not None:
        return found
    if fetch_if_missing:
        return fetch()
    raise BackendUnavailable("TensorRT headers not found. Fix: " + HINT.format(cache=cache_dir()))


def main(argv=None) -> int:
    parser = cli.parser(
        "python -m ops.trt.headers",
        "Print the directory of TensorRT's headers, fetching them into the cache if they are missing. Exit "
        "status: 0 found, 1 not found (with --check) or the fetch failed, 2 a usage error.",
        json="print the path and version as JSON (path null when not found)",
    )
    parser.add_argument("--check", action="store_true", help="only look: never fetch; exit 1 if not found")
    return cli.main(parser, run, argv)


def run(args) -> cli.Report:
    try:
        path = require(fetch_if_missing=not args.check)
    except BackendUnavailable as e:
        print(f"error: {e}", file=sys.stderr)
        return cli.Report({"path": None, "error": str(e)}, cli.PROBLEMS)
    got = ".".join(map(str, version(path)))
    if not args.json:
        print(path)
    if not args.quiet:
        print(f"TensorRT headers {got}", file=sys.stderr)
    return cli.Report({"path": str(path), "version": got})


if __name__ == "__main__":
    sys.exit(main())
