import importlib.util
from pathlib import Path

import pytest

import ops

NEEDED = ("onnx", "onnxscript", "onnxruntime", "onnx_graphsurgeon")
missing = [m for m in NEEDED if importlib.util.find_spec(m) is None]
if missing:  # part of the test setup (make setup installs them): absent means a broken setup, not a skip
    pytest.fail(f"ONNX packages not installed: {missing}. Fix: make setup", pytrace=False)

try:
    ops.load_extension()
    EXTENSION_PROBLEM = None
except ops.ExtensionError as e:  # the ONNX tests export through the torch ops (compiled kernels)
    EXTENSION_PROBLEM = str(e)


@pytest.fixture(autouse=True)
def _needs_extension():
    if EXTENSION_PROBLEM:
        pytest.fail(EXTENSION_PROBLEM)


@pytest.fixture(scope="session")
def mixed_model():
    """examples/mixed_model.py, imported by path (examples/ is not a package on sys.path)."""
    path = Path(__file__).resolve().parents[2] / "examples" / "mixed_model.py"
    spec = importlib.util.spec_from_file_location("opforge_example_mixed_model", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module
