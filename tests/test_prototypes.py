"""Generated kernel prototypes (ops/native/prototypes.py): the header every host and kernel file includes, the
OPFORGE_*_KERNEL bodies it enables, and the check of hand-written signatures against the declaration."""

import shutil
import subprocess

import pytest
import torch

import ops
from ops import Attr, Input, Output, Sample, register_op
from ops.core.paths import csrc_dir
from ops.core.registry import compiled_ops_in
from ops.native.prototypes import (
    KernelSignatureError,
    canonical_type,
    check_kernel_sources,
    header,
    include_path,
    write_headers,
)

DCN = "opforge::modulated_deform_conv2d"


def _declare_with_kernels(unique_id, tmp_path, cpu_source: str):
    """An op with x, an optional mask, y and one attribute of each scalar kind, its CPU kernel `cpu_source`."""
    op_id = unique_id("proto")
    name = op_id.split("::")[1]
    kdir = tmp_path / "csrc" / name
    kdir.mkdir(parents=True)
    (kdir / f"{name}_cpu.cpp").write_text(cpu_source.replace("NAME", name).replace("NS", op_id.split("::")[0]))

    def ref(x, mask=None, k=2, scale=1.0, mode="a", dims=(1, 1)):
        return x * scale

    return register_op(
        op_id,
        inputs=[Input("x"), Input("mask", dtypes="like(x)", shape="like(x)", optional=True)],
        outputs=[Output("y", shape="like(x)", dtype="like(x)")],
        attrs=[Attr("k", int, 2), Attr("scale", float, 1.0), Attr("mode", str, "a"), Attr("dims", list[int], (1, 1))],
        devices=("cpu",),
        kernels=str(kdir),
        samples=lambda device, dtype: [Sample(torch.randn(2, 3).to(device=device, dtype=dtype))],
    )(ref)


SPELLED_OUT = """#include "opforge/kernel_api.h"
namespace opforge_kernels { namespace NS { namespace NAME {
// a comment mentioning ::opforge::Status cpu(int) is not a declaration
::opforge::Status cpu(const ::opforge::TensorView& x, const ::opforge::TensorView* mask,
                      const ::opforge::TensorView& y, %s k, double scale, ::opforge::StringView mode,
                      ::opforge::Span<int64_t> dims, const ::opforge::DeviceContext& /*ctx*/) {
  return ::opforge::Status::ok();
}
}}}
"""


def test_the_header_declares_the_calling_convention_in_declaration_order():
    decl = ops.get_op(DCN).decl
    text = header(decl)
    assert include_path(decl) == "opforge_kernels/opforge/modulated_deform_conv2d.h"
    assert (
        "::opforge::Status cpu(const ::opforge::TensorView& x, const ::opforge::TensorView& offset, "
        "const ::opforge::TensorView& weight, const ::opforge::TensorView* mask, const ::opforge::TensorView* "
        "bias, const ::opforge::TensorView& y, ::opforge::Span<::std::int64_t> stride, "
        "::opforge::Span<::std::int64_t> padding, ::opforge::Span<::std::int64_t> dilation, ::std::int64_t groups, "
        "::std::int64_t deformable_groups, const ::opforge::DeviceContext& opforge_ctx);"
    ) in text
    assert "#define OPFORGE_KERNEL_PARAMS_opforge__modulated_deform_conv2d" in text


@pytest.mark.skipif(shutil.which("c++") is None, reason="no C++ compiler")
def test_a_body_written_with_the_macro_compiles_against_the_generated_header(tmp_path):
    decl = ops.get_op(DCN).decl
    root = write_headers([decl], tmp_path)
    src = tmp_path / "k.cpp"
    src.write_text(
        f'#include "{include_path(decl)}"\n'
        "OPFORGE_CPU_KERNEL(opforge, modulated_deform_conv2d) {\n"
        "  const int64_t g = groups + deformable_groups + stride[0] + (mask ? 1 : 0) + x.rank + y.rank;\n"
        "  return g >= 0 ? ::opforge::Status::ok() : ::opforge::Status::error(\n"
        '      ::opforge::Status::kInvalidArgument, "negative");\n}\n'
    )
    done = subprocess.run(
        ["c++", "-std=c++17", "-Wall", "-Wextra", "-Werror", "-fsyntax-only", f"-I{csrc_dir()}", f"-I{root}", str(src)],
        capture_output=True,
        text=True,
    )
    assert done.returncode == 0, done.stderr


@pytest.mark.parametrize(
    "spelled, canonical",
    [
        ("const ::opforge::TensorView& x", "const TensorView&"),
        ("opforge::TensorView const &x", "const TensorView&"),
        ("const opforge::TensorView* mask", "const TensorView*"),
        ("::opforge::Span<int64_t> stride", "Span<int64_t>"),
        ("opforge::Span< std::int64_t > stride", "Span<int64_t>"),
        ("const double eps", "double"),
        ("long groups", "int64_t"),
        ("const ::opforge::DeviceContext& /*ctx*/".replace("/*ctx*/", ""), "const DeviceContext&"),
        ("[[maybe_unused]] bool flag", "bool"),
        ("float eps", "float"),
    ],
)
def test_spellings_of_one_type_compare_equal(spelled, canonical):
    assert canonical_type(spelled) == canonical


def test_a_matching_spelled_out_signature_passes(unique_id, tmp_path):
    op = _declare_with_kernels(unique_id, tmp_path, SPELLED_OUT % "int64_t")
    check_kernel_sources(op.decl)


@pytest.mark.parametrize(
    "k_type, fragment",
    [
        ("int", r"takes `int` as argument 4, where the declaration has attribute 'k' \(int\), which is `int64_t`"),
        (
            "double",
            r"takes `double` as argument 4, where the declaration has attribute 'k' \(int\), which is `int64_t`",
        ),
    ],
)
def test_a_mismatched_signature_names_the_op_the_argument_and_both_types(unique_id, tmp_path, k_type, fragment):
    op = _declare_with_kernels(unique_id, tmp_path, SPELLED_OUT % k_type)
    with pytest.raises(KernelSignatureError, match=fragment) as e:
        check_kernel_sources(op.decl)
    msg = str(e.value)
    assert msg.startswith(op.id + ": the cpu kernel at ") and "_cpu.cpp:4" in msg
    assert f"OPFORGE_CPU_KERNEL({op.decl.namespace}, {op.decl.name})" in msg  # the fix


def test_a_missing_argument_is_named(unique_id, tmp_path):
    source = SPELLED_OUT.replace("::opforge::Span<int64_t> dims, ", "") % "int64_t"
    op = _declare_with_kernels(unique_id, tmp_path, source)
    with pytest.raises(
        KernelSignatureError,
        match="takes `const DeviceContext&` as argument 7, where the declaration has attribute 'dims'",
    ):
        check_kernel_sources(op.decl)
    short = SPELLED_OUT.replace(", const ::opforge::DeviceContext& /*ctx*/", "") % "int64_t"
    op = _declare_with_kernels(unique_id, tmp_path / "b", short)
    with pytest.raises(KernelSignatureError, match="has 7 arguments, the declaration 8: missing the DeviceContext"):
        check_kernel_sources(op.decl)


def test_the_build_refuses_a_mismatch_before_compiling(unique_id, tmp_path):
    op = _declare_with_kernels(unique_id, tmp_path, SPELLED_OUT % "float")
    with pytest.raises(KernelSignatureError, match=op.id):
        write_headers([op.decl], tmp_path / "build")
    assert not (tmp_path / "build" / "gen" / "include" / include_path(op.decl)).exists()


def test_every_library_kernel_is_written_against_the_generated_prototypes():
    for op in compiled_ops_in("ops.library"):
        check_kernel_sources(op.decl)  # nothing spelled out differently
        for device, path in op.decl.kernel_files().items():
            if device in ("cpu", "cuda"):  # not the header, nor a Triton kernel (Python, tests/native/test_triton_*)
                text = path.read_text()
                assert f"OPFORGE_{device.upper()}_KERNEL(opforge, {op.decl.name})" in text, path
