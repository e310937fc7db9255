"""The native ONNX Runtime backend: a custom-op library per op package, generated from the declarations.

    python -m ops.ort.build [--package P]     # build lib<package>_ort_ops.so (opforge's: libopforge_ort_ops.so)
    python -m ops.ort.build --example         # also build examples/cpp (C++ deployment, no Python)
    python -m ops.ort.headers                 # find or fetch ONNX Runtime's C API headers

- headers.py: ORT_INCLUDE_DIR / system headers / Debian trixie's libonnxruntime-dev fetched into build/
- codegen.py: one translation unit per op (an OrtCustomOp per execution provider and dtype variant, calling
  the op's framework-free kernels) and the library's `RegisterCustomOps`
- build.py: compiles them with the ops' CPU kernels (and CUDA kernels when nvcc exists) into one library

ops.onnx.ort_session registers the library with `SessionOptions.register_custom_ops_library`; a C++
program does the same with `OrtApi::RegisterCustomOpsLibrary` (see examples/cpp).
"""
