"""The TensorRT backend: an IPluginV3 plugin per op, generated from its declaration, in one library.

    python -m ops.build --trt                          # build build/opforge/ops.library/trt/lib/libopforge_trt_plugins.so
    python -m ops.build --trt-cmake DIR                # standalone CMake project (Jetson: CUDA + TensorRT only)
    ops.build_engine("model.onnx", shapes={"x": ((1, 8), (4, 8), (16, 8))})   # needs `import tensorrt`
    python -m ops.trt.trtexec model.onnx --shapes x:1x8,4x8,16x8               # the trtexec command

- codegen.py: the per-op OpSpec (fields, dtype rules, IExprBuilder shape code, kernel call)
- build.py: the in-tree ninja build and the CMake project emitter
- headers.py: finding or fetching the TensorRT headers
- engine.py / trtexec.py: engine building with TensorRT's Python API / the trtexec command line
The generic adapter is plugins/opforge_trt_plugin.cpp; ops/trt/harness/ drives it without TensorRT.
"""

from .engine import build_engine

__all__ = ["build_engine"]
