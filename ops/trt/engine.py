"""Building a TensorRT engine from an exported ONNX model with the opforge plugin library loaded.

Needs TensorRT's Python package (`import tensorrt`), which is not installable on the developer/CI
machines: there this raises BackendUnavailable and the tests skip saying so.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

from ..core.errors import BackendUnavailable, OpforgeError
from .build import build, library_path

INSTALL_HINT = (
    "TensorRT's Python package is not installed. Fix: install TensorRT 10.x for your CUDA "
    "(e.g. pip install tensorrt-cu12, or the wheel/deb from NVIDIA; on Jetson it ships with JetPack), "
    "or build with trtexec: python -m ops.trt.trtexec MODEL.onnx --shapes ..."
)

Shape = Sequence[int]


def import_tensorrt():
    try:
        import tensorrt
    except ImportError as e:
        raise BackendUnavailable(f"{INSTALL_HINT} ({e})") from None
    return tensorrt


def _profiles(shapes) -> list[dict[str, tuple[Shape, Shape, Shape]]]:
    """shapes: {input: (min, opt, max)} for one profile, or a list of such dicts (one profile each)."""
    sets = [shapes] if isinstance(shapes, Mapping) else list(shapes or [])
    for s in sets:
        for name, triple in s.items():
            if len(triple) != 3 or any(len(t) != len(triple[0]) for t in triple):
                raise OpforgeError(f"shapes[{name!r}]: expected (min, opt, max) of equal rank, got {triple!r}")
            if any(not (a <= b <= c) for a, b, c in zip(*triple)):
                raise OpforgeError(f"shapes[{name!r}]: need min <= opt <= max in every dim, got {triple!r}")
    return sets


def build_engine(
    onnx_path,
    shapes=None,
    engine_path=None,
    *,
    plugin_library=None,
    workspace_bytes: int | None = None,
    verbose: bool = False,
) -> bytes:
    """Parse `onnx_path` with the opforge plugins loaded and build a strongly typed engine.

    shapes: {input name: (min, opt, max)} (one optimization profile) or a list of such dicts (one profile
    per dict). The network is created STRONGLY_TYPED: the plugin sees exactly the dtypes the ONNX graph
    feeds it (fp16 lives in the graph, not in a builder flag). Returns the serialized engine and writes
    it to engine_path when given."""
    trt = import_tensorrt()
    profiles = _profiles(shapes)
    lib = Path(plugin_library) if plugin_library else library_path()
    if not lib.exists():
        lib = build().library
    logger = trt.Logger(trt.Logger.VERBOSE if verbose else trt.Logger.WARNING)
    builder = trt.Builder(logger)
    registry = builder.get_plugin_registry()
    if registry.load_library(str(lib)) is None:
        raise OpforgeError(
            f"TensorRT refused the plugin library {lib} (see the log above). If it was already "
            f"loaded (e.g. through libopforge_trt_plugins_static.so), do not load it twice."
        )
    flags = 1 << int(trt.NetworkDefinitionCreationFlag.STRONGLY_TYPED)
    network = builder.create_network(flags)
    parser = trt.OnnxParser(network, logger)
    if not parser.parse_from_file(str(onnx_path)):
        errors = "; ".join(str(parser.get_error(i)) for i in range(parser.num_errors))
        raise OpforgeError(f"TensorRT could not parse {onnx_path}: {errors}")
    config = builder.create_builder_config()
    if workspace_bytes is not None:
        config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, workspace_bytes)
    inputs = {network.get_input(i).name: network.get_input(i) for i in range(network.num_inputs)}
    for spec in profiles:
        profile = builder.create_optimization_profile()
        for name, (lo, opt, hi) in spec.items():
            if name not in inputs:
                raise OpforgeError(f"shapes names input {name!r}, but the model's inputs are {sorted(inputs)}")
            profile.set_shape(name, tuple(lo), tuple(opt), tuple(hi))
        config.add_optimization_profile(profile)
    serialized = builder.build_serialized_network(network, config)
    if serialized is None:
        raise OpforgeError(f"TensorRT failed to build an engine for {onnx_path} (see the log above)")
    data = bytes(serialized)
    if engine_path is not None:
        Path(engine_path).write_bytes(data)
    return data
