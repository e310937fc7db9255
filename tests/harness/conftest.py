"""Fixtures for the plugin host harness tests: the built plugin library (release and ASan variants)
and a Host driving it. Everything here runs on a CPU-only machine; only enqueue needs a GPU."""

import pytest

from ops.trt.harness import host as harness


def _build(variant):
    from ops.errors import BackendUnavailable
    from ops.trt.build import build

    why = harness.have_compiler()
    if why:
        pytest.skip(why)
    try:
        return build(variant)
    except BackendUnavailable as e:
        pytest.skip(f"cannot build the TensorRT plugin library here: {e}")


@pytest.fixture(scope="session")
def plugin_build():
    return _build("release")


@pytest.fixture(scope="session")
def asan_build():
    return _build("asan")


@pytest.fixture(scope="session")
def trt_host(plugin_build):
    return harness.Host(plugin_build.library)
