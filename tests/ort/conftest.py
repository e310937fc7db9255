import importlib.util

import pytest

NEEDED = ("onnx", "onnxruntime")
missing = [m for m in NEEDED if importlib.util.find_spec(m) is None]
if missing:  # part of the test setup (make setup installs them): absent means a broken setup, not a skip
    pytest.fail(f"packages not installed: {missing}. Fix: make setup", pytrace=False)


@pytest.fixture(scope="session")
def library():
    """opforge's own native library, built (incrementally) once per test session."""
    from ops.ort.build import build

    return build("ops.library")
