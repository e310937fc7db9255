"""Finding ONNX Runtime's C API headers: ORT_INCLUDE_DIR, then the system directory, then a fetched copy.

The onnxruntime wheel ships the runtime (`capi/libonnxruntime.so.*`) but no headers. The C API is versioned
and backward compatible: a library built against the 1.21 headers asks ORT for API version 21 and loads into
every newer runtime (1.32 here). Debian trixie packages exactly those headers as `libonnxruntime-dev`
(1.21.0, ~85 KB, MIT), which `apt install libonnxruntime-dev` puts in /usr/include/onnxruntime on Debian 13
and recent Ubuntu. Elsewhere `fetch()` downloads that .deb with `apt-get download` under a *private* apt
configuration kept in the cache directory (its own sources.list with one trixie line, its own lists, cache
and state): the system's apt sources and state are never read for packages nor changed. The package index
is verified with the system's Debian archive keyring, so the .deb is checked against a signed checksum.
The headers are extracted with `dpkg-deb -x` and never committed.

    python -m ops.ort.headers            # print the include dir (fetching into build/ort-headers if needed)
    python -m ops.ort.headers --check    # print it only if already present; exit 1 otherwise
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from .. import cli
from ..core.errors import BackendUnavailable
from ..core.paths import build_root

PACKAGE = "libonnxruntime-dev"
SUITE = "trixie"  # Debian 13: libonnxruntime-dev 1.21.0
MIRROR = os.environ.get("OPFORGE_ORT_DEB_MIRROR", "http://deb.debian.org/debian")
KEYRING = "/usr/share/keyrings/debian-archive-keyring.gpg"
SYSTEM_DIRS = ("/usr/include/onnxruntime", "/usr/local/include/onnxruntime", "/usr/include/onnxruntime/core/session")
HINT = (
    "set ORT_INCLUDE_DIR to a directory holding onnxruntime_c_api.h, `apt install libonnxruntime-dev` "
    "(Debian 13 / recent Ubuntu), or run `python -m ops.ort.headers` to fetch Debian trixie's "
    f"{PACKAGE} into {{cache}} (needs apt-get, dpkg-deb and access to {MIRROR})"
)


def cache_dir() -> Path:
    """OPFORGE_ORT_HEADERS_CACHE, else ort-headers under opforge's build root (build/ of a checkout)."""
    return Path(os.environ.get("OPFORGE_ORT_HEADERS_CACHE") or build_root() / "ort-headers")


def _has_headers(d: Path) -> bool:
    return (d / "onnxruntime_c_api.h").is_file()


def api_version(include_dir: Path) -> int:
    """ORT_API_VERSION of the headers: the API version the library asks the runtime for."""
    text = (Path(include_dir) / "onnxruntime_c_api.h").read_text(errors="replace")
    m = re.search(r"#define\s+ORT_API_VERSION\s+(\d+)", text)
    return int(m.group(1)) if m else -1


def find() -> Path | None:
    candidates = []
    if os.environ.get("ORT_INCLUDE_DIR"):
        candidates.append(Path(os.environ["ORT_INCLUDE_DIR"]))
    candidates += [Path(d) for d in SYSTEM_DIRS]
    candidates.append(cache_dir() / "include")
    return next((c for c in candidates if _has_headers(c)), None)


def apt_options(root: Path) -> list[str]:
    """apt-get options that confine apt to `root`: nothing of the system's apt configuration is used."""
    # apt drops to the _apt user to download, and that user cannot write into a directory we own.
    user = "root" if os.geteuid() == 0 else os.environ.get("USER", "")
    settings = {
        "Dir::Etc::sourcelist": root / "sources.list",
        "Dir::Etc::sourceparts": "-",
        "Dir::State": root / "state",
        "Dir::State::Lists": root / "lists",
        "Dir::State::status": root / "state" / "status",
        "Dir::Cache": root / "cache",
        "Debug::NoLocking": 1,
        "APT::Sandbox::User": user,
    }
    return [arg for key, value in settings.items() for arg in ("-o", f"{key}={value}")]


def _run(cmd: list[str], cwd: Path | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(cmd, capture_output=True, text=True, cwd=cwd)


def fetch(dest: Path | None = None) -> Path:
    """Download Debian trixie's libonnxruntime-dev with a private apt configuration and extract its headers
    into dest/include."""
    dest = Path(dest or cache_dir())
    include = dest / "include"
    if _has_headers(include):
        return include
    for tool in ("apt-get", "dpkg-deb"):
        if shutil.which(tool) is None:
            raise BackendUnavailable(
                f"{tool} not found, so {PACKAGE} cannot be fetched. Fix: " + HINT.format(cache=dest)
            )
    apt = dest / "apt"
    for sub in ("lists/partial", "cache/archives/partial", "state"):
        (apt / sub).mkdir(parents=True, exist_ok=True)
    (apt / "state" / "status").touch()
    signed = f"signed-by={KEYRING}" if Path(KEYRING).is_file() else "trusted=yes"
    (apt / "sources.list").write_text(f"deb [{signed}] {MIRROR} {SUITE} main\n")
    options = apt_options(apt)
    with tempfile.TemporaryDirectory(prefix="opforge-ort-headers-", dir=dest) as tmp:
        for cmd in (["apt-get", *options, "update"], ["apt-get", *options, "download", PACKAGE]):
            done = _run(cmd, cwd=Path(tmp))
            if done.returncode != 0:
                raise BackendUnavailable(
                    f"`{' '.join(cmd[:1] + cmd[-2:])}` with a private apt configuration in "
                    f"{apt} failed: {(done.stderr or done.stdout).strip()[-600:]}. Fix: " + HINT.format(cache=dest)
                )
        debs = sorted(Path(tmp).glob(f"{PACKAGE}_*.deb"))
        if not debs:
            raise BackendUnavailable(f"apt-get download left no {PACKAGE}_*.deb. Fix: " + HINT.format(cache=dest))
        root = Path(tmp) / "root"
        done = _run(["dpkg-deb", "-x", str(debs[-1]), str(root)])
        found = root / "usr" / "include" / "onnxruntime"
        if done.returncode != 0 or not _has_headers(found):
            raise BackendUnavailable(
                f"{debs[-1].name} holds no onnxruntime_c_api.h under usr/include/onnxruntime "
                f"({done.stderr.strip()[-300:]}). Fix: " + HINT.format(cache=dest)
            )
        staging = dest / "include.partial"
        shutil.rmtree(staging, ignore_errors=True)
        shutil.copytree(found, staging)
        (staging / "SOURCE").write_text(f"{debs[-1].name} from {MIRROR} {SUITE} (MIT licence)\n")
        shutil.rmtree(include, ignore_errors=True)
        staging.rename(include)  # atomic: a half-extracted cache is never mistaken for a good one
    return include


def require(fetch_if_missing: bool = True) -> Path:
    found = find()
    if found is not None:
        return found
    if fetch_if_missing:
        return fetch()
    raise BackendUnavailable("ONNX Runtime headers not found. Fix: " + HINT.format(cache=cache_dir()))


def main(argv=None) -> int:
    parser = cli.parser(
        "python -m ops.ort.headers",
        "Print the directory of ONNX Runtime's headers, fetching them into the cache if they are missing. Exit "
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
    api = api_version(path)
    if not args.json:
        print(path)
    if not args.quiet:
        print(f"ONNX Runtime headers, ORT_API_VERSION {api}", file=sys.stderr)
    return cli.Report({"path": str(path), "api_version": api})


if __name__ == "__main__":
    sys.exit(main())
