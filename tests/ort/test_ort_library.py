"""The built libopforge_ort_ops.so: what it holds, and that it loads into the installed onnxruntime."""

import subprocess

import onnxruntime as ort
from onnx import TensorProto, helper

from ops.core.registry import compiled_ops_in
from ops.ort.build import cuda_wanted, library_decls, library_info, library_path
from ops.ort.codegen import variants
from ops.ort.headers import api_version


def _gelu_model() -> bytes:
    node = helper.make_node("scaled_gelu", ["x"], ["y"], domain="opforge", alpha=1.0, approximate="none")
    graph = helper.make_graph(
        [node],
        "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["n", 4])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["n", 4])],
    )
    return helper.make_model(
        graph, opset_imports=[helper.make_opsetid("", 17), helper.make_opsetid("opforge", 1)], ir_version=10
    ).SerializeToString()


def test_the_library_is_named_and_placed_per_package(library):
    assert library.library.name == "libopforge_ort_ops.so" and library.library == library_path("ops.library")
    assert library.library.parent.parent == library.build_dir and library.build_dir.name == "ort"
    assert set(library.ops) == {
        op.id for op in compiled_ops_in("ops.library") if op.decl.onnx
    }  # onnx=False ops never reach ORT


def test_it_loads_into_the_installed_onnxruntime(library):
    """Built against the 1.21 headers (API version 21), registered into the wheel's runtime (1.32)."""
    assert tuple(map(int, ort.__version__.split(".")[:2])) >= (1, 21)
    options = ort.SessionOptions()
    options.register_custom_ops_library(str(library.library))
    session = ort.InferenceSession(_gelu_model(), options, providers=["CPUExecutionProvider"])
    import numpy as np

    (y,) = session.run(None, {"x": np.zeros((2, 4), np.float32)})
    assert y.shape == (2, 4) and not y.any()


def test_variants_per_op_provider_and_dtype(library):
    lines = library_info(library.library)
    assert lines[0] == f"api {api_version(library.ort_include)}"
    two = ("opforge::rms_norm ", "opforge::scaled_gelu ")  # the ops whose variants this test spells out
    cpu = [line for line in lines[1:] if "CPUExecutionProvider" in line and line.startswith(two)]
    # rms_norm: 3 dtypes, weight follows x; scaled_gelu: 3 dtypes (ONNX element types 1 / 10 / 16)
    assert sorted(cpu) == sorted(
        [
            "opforge::rms_norm v1 CPUExecutionProvider 1 1",
            "opforge::rms_norm v1 CPUExecutionProvider 10 10",
            "opforge::rms_norm v1 CPUExecutionProvider 16 16",
            "opforge::scaled_gelu v1 CPUExecutionProvider 1",
            "opforge::scaled_gelu v1 CPUExecutionProvider 10",
            "opforge::scaled_gelu v1 CPUExecutionProvider 16",
        ]
    )


def _variants(lines: list[str], provider: str) -> set[tuple[str, ...]]:
    """(op, version, input types...) of every variant the library registers for `provider`."""
    rows = [line.split() for line in lines[1:]]
    return {(r[0], r[1], *r[3:]) for r in rows if r[2] == provider}


def test_cuda_variants_are_compiled_when_nvcc_exists(library):
    """The CUDA EP variants are those of the CPU EP (op, version and input dtypes), for every op that declares
    a CUDA kernel; none without nvcc. They run in tests/ort/test_ort_native_ops.py where onnxruntime has the
    CUDA provider (not on any machine here: see CUDA_EP_MISSING there)."""
    lines = library_info(library.library)
    cpu, cuda = _variants(lines, "CPUExecutionProvider"), _variants(lines, "CUDAExecutionProvider")
    assert {r.split()[2] for r in lines[1:]} <= {"CPUExecutionProvider", "CUDAExecutionProvider"}
    decls = library_decls("ops.library")
    # The CPU variants: every op of the library, one per dtype combination its declaration accepts.
    assert {v[0] for v in cpu} == {d.id for d in decls}
    for d in decls:
        assert len([v for v in cpu if v[0] == d.id]) == len(variants(d)), d.id
    if cuda_wanted() is None:
        assert not library.with_cuda and not cuda
    else:
        with_cuda = {d.id for d in decls if "cuda" in d.devices}
        assert library.with_cuda and with_cuda == {d.id for d in decls}  # every library op declares both devices
        assert cuda == {v for v in cpu if v[0] in with_cuda}


def test_only_the_entry_points_are_exported_and_no_onnxruntime_symbol_is_needed(library):
    dynamic = subprocess.run(
        ["nm", "-D", "--defined-only", str(library.library)], capture_output=True, text=True, check=True
    ).stdout
    exported = {line.split()[-1] for line in dynamic.splitlines() if " T " in line}
    assert exported == {"RegisterCustomOps", "OpforgeOrtLibraryInfo"}
    needed = subprocess.run(["readelf", "-d", str(library.library)], capture_output=True, text=True, check=True).stdout
    assert "onnxruntime" not in needed  # every ORT call goes through the OrtApi table


def test_a_model_without_opforge_nodes_registers_nothing(tmp_path):
    from ops.ort.session import libraries

    node = helper.make_node("Relu", ["x"], ["y"])
    graph = helper.make_graph(
        [node],
        "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [2])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [2])],
    )
    assert libraries(helper.make_model(graph)) == []
