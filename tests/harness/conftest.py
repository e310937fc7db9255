"""Fixtures for the plugin host harness tests: the built plugin library (release and ASan variants)
and a Host driving it. Everything here runs on a CPU-only machine; only enqueue needs a GPU.

A missing compiler, CUDA toolkit, ninja or TensorRT headers is a failure, not a skip: every machine this
suite runs on (CI included) installs them (`make setup`), so their absence means a broken setup."""

import pytest

from ops.trt.harness import host as harness


def _build(variant):
    from ops.core.errors import BackendUnavailable
    from ops.trt.build import build

    why = harness.have_compiler()
    if why:
        pytest.fail(f"the harness cannot be built: {why}. Fix: install it (make setup installs what CI has)")
    try:
        return build(variant)
    except BackendUnavailable as e:
        pytest.fail(f"cannot build the TensorRT plugin library: {e}")


@pytest.fixture(scope="session")
def plugin_build():
    return _build("release")


@pytest.fixture(scope="session")
def asan_build():
    return _build("asan")


@pytest.fixture(scope="session")
def trt_host(plugin_build):
    return harness.Host(plugin_build.library)
