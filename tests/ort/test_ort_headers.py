"""Finding and fetching ONNX Runtime's C API headers (ops/ort/headers.py)."""

import shutil
import socket
import subprocess

import pytest

from ops.ort import headers


def test_the_headers_in_use_are_api_version_21_or_newer():
    include = headers.require()
    assert (include / "onnxruntime_c_api.h").is_file()
    assert headers.api_version(include) >= 21  # Debian trixie's 1.21; the wheel here is 1.32


def test_ort_include_dir_comes_first(tmp_path, monkeypatch):
    (tmp_path / "onnxruntime_c_api.h").write_text("#define ORT_API_VERSION 99\n")
    monkeypatch.setenv("ORT_INCLUDE_DIR", str(tmp_path))
    assert headers.find() == tmp_path and headers.api_version(tmp_path) == 99


def test_apt_is_confined_to_the_private_directory(tmp_path):
    options = headers.apt_options(tmp_path)
    values = dict(o.split("=", 1) for o in options[1::2])
    assert options[::2] == ["-o"] * len(values)
    assert values["Dir::Etc::sourceparts"] == "-"  # the system's sources.list.d is not read
    for key in ("Dir::Etc::sourcelist", "Dir::State", "Dir::State::Lists", "Dir::State::status", "Dir::Cache"):
        assert values[key].startswith(str(tmp_path)), key


def _mirror_reachable() -> bool:
    try:
        socket.create_connection(("deb.debian.org", 80), timeout=5).close()
        return True
    except OSError:
        return False


@pytest.mark.skipif(
    shutil.which("apt-get") is None or shutil.which("dpkg-deb") is None,
    reason="needs apt-get and dpkg-deb (Debian/Ubuntu)",
)
def test_fetch_downloads_trixies_headers_without_touching_the_system_apt(tmp_path):
    if not _mirror_reachable():
        pytest.skip("deb.debian.org is not reachable from this machine (set ORT_INCLUDE_DIR instead)")
    before = subprocess.run(
        ["ls", "-l", "--time-style=+%s", "/var/lib/apt/lists"], capture_output=True, text=True
    ).stdout
    include = headers.fetch(tmp_path / "cache")
    assert headers.api_version(include) == 21
    assert (include / "onnxruntime_lite_custom_op.h").is_file() and "libonnxruntime-dev_1.21" in (
        include / "SOURCE"
    ).read_text()
    sources = (tmp_path / "cache" / "apt" / "sources.list").read_text()
    assert " trixie main" in sources
    after = subprocess.run(
        ["ls", "-l", "--time-style=+%s", "/var/lib/apt/lists"], capture_output=True, text=True
    ).stdout
    assert before == after  # the system's package lists were not updated
