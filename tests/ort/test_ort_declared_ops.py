"""Declaration features the built-in ops do not use, through a native library built here from ops declared
in the test with inline kernel sources: optional inputs (omitted as an empty name in the middle, or left
off at the end), every attribute type read exactly (and defaults when absent), integer and bool tensors,
several outputs, data-dependent output sizes (narrowed on a leading and a trailing dim), a declared
workspace and the intra-op pool. Bad inputs and bad nodes give ORT errors that name the op, never a crash.

The models are written with onnx.helper (no torch op is registered for these declarations)."""

import textwrap

import numpy as np
import onnxruntime as ort
import pytest
import torch
from onnx import TensorProto, helper

from ops import Attr, Input, Output, Sample
from ops.core.validate import build_decl
from ops.ort.build import build

NS = "opforge_ort_test"

AXPY_H = """
#pragma once
#include "opforge/kernel_api.h"
namespace opforge_kernels { namespace opforge_ort_test { namespace axpy {
::opforge::Status cpu(const ::opforge::TensorView& x, const ::opforge::TensorView* mask,
    const ::opforge::TensorView* bias, const ::opforge::TensorView& y, const ::opforge::TensorView& rowsum,
    double alpha, int64_t shift, bool negate, ::opforge::StringView mode, ::opforge::Span<double> coeffs,
    ::opforge::Span<int64_t> pick, const ::opforge::DeviceContext& ctx);
}}}
"""

AXPY_CPU = """
#include "axpy.h"
namespace opforge_kernels { namespace opforge_ort_test { namespace axpy {
// y = (negate ? -1 : 1) * (alpha * sum(coeffs) * x (+|-) bias + shift + sum(pick)) where mask, x elsewhere;
// rowsum = sum of each row of y as stored. bias is staged as float in the workspace.
::opforge::Status cpu(const ::opforge::TensorView& x, const ::opforge::TensorView* mask,
    const ::opforge::TensorView* bias, const ::opforge::TensorView& y, const ::opforge::TensorView& rowsum,
    double alpha, int64_t shift, bool negate, ::opforge::StringView mode, ::opforge::Span<double> coeffs,
    ::opforge::Span<int64_t> pick, const ::opforge::DeviceContext& ctx) {
  const int64_t rows = x.size(0), cols = x.size(1);
  if (ctx.workspace_bytes < static_cast<size_t>(cols) * 4) return ::opforge::Status::error(
      ::opforge::Status::kInvalidArgument, "workspace too small");
  float* staged = static_cast<float*>(ctx.workspace);
  double scale = 0;
  for (double c : coeffs) scale += c;
  int64_t offset = shift;
  for (int64_t p : pick) offset += p;
  const float sign = mode.equals("sub") ? -1.0f : 1.0f;
  return OPFORGE_DISPATCH_FLOATING_CPU(x.dtype, T, [&] {
    for (int64_t c = 0; c < cols; ++c) staged[c] = bias ? ::opforge::load(bias->ptr<const T>(), c) : 0.0f;
    ctx.parallel_for(rows, 1, [&](int64_t begin, int64_t end) {
      for (int64_t r = begin; r < end; ++r) {
        float total = 0;
        for (int64_t c = 0; c < cols; ++c) {
          const int64_t i = r * cols + c;
          const float xv = ::opforge::load(x.ptr<const T>(), i);
          float v = static_cast<float>(alpha * scale) * xv + sign * staged[c] + static_cast<float>(offset);
          if (negate) v = -v;
          if (mask && !mask->ptr<const bool>()[i]) v = xv;
          ::opforge::store(y.ptr<T>(), i, v);
          total += ::opforge::load(y.ptr<const T>(), i);
        }
        rowsum.ptr<float>()[r] = total;
      }
    });
    return ::opforge::Status::ok();
  });
}
}}}
"""

ROWS_H = """
#pragma once
#include "opforge/kernel_api.h"
namespace opforge_kernels { namespace opforge_ort_test { namespace positive_rows {
::opforge::Status cpu(const ::opforge::TensorView& x, const ::opforge::TensorView& rows,
    const ::opforge::TensorView& picked, const ::opforge::TensorView& picked_t, const ::opforge::TensorView& count,
    const ::opforge::DeviceContext& ctx);
}}}
"""

ROWS_CPU = """
#include "positive_rows.h"
namespace opforge_kernels { namespace opforge_ort_test { namespace positive_rows {
namespace {
template <typename T>
void run(const ::opforge::TensorView& x, const ::opforge::TensorView& rows, const ::opforge::TensorView& picked,
         const ::opforge::TensorView& picked_t, const ::opforge::TensorView& count) {
  const int64_t n = x.size(0), m = x.size(1);
  const T* xs = x.ptr<const T>();
  int64_t k = 0;
  for (int64_t r = 0; r < n; ++r) {
    double sum = 0;
    for (int64_t c = 0; c < m; ++c) sum += static_cast<double>(xs[r * m + c]);
    if (sum <= 0) continue;
    rows.ptr<int64_t>()[k] = r;
    for (int64_t c = 0; c < m; ++c) {
      picked.ptr<T>()[k * picked.strides[0] + c] = xs[r * m + c];
      picked_t.ptr<T>()[c * picked_t.strides[0] + k] = xs[r * m + c];  // a buffer of upper-bound width
    }
    ++k;
  }
  *count.ptr<int64_t>() = k;
}
}  // namespace
::opforge::Status cpu(const ::opforge::TensorView& x, const ::opforge::TensorView& rows,
    const ::opforge::TensorView& picked, const ::opforge::TensorView& picked_t, const ::opforge::TensorView& count,
    const ::opforge::DeviceContext&) {
  switch (x.dtype) {
    case ::opforge::DType::kFloat32: run<float>(x, rows, picked, picked_t, count); break;
    case ::opforge::DType::kInt32: run<int32_t>(x, rows, picked, picked_t, count); break;
    case ::opforge::DType::kInt64: run<int64_t>(x, rows, picked, picked_t, count); break;
    default: return ::opforge::Status::error(::opforge::Status::kUnsupportedDType, "unsupported dtype");
  }
  return ::opforge::Status::ok();
}
}}}
"""


PAD_H = """
#pragma once
#include "opforge/kernel_api.h"
namespace opforge_kernels { namespace opforge_ort_test { namespace pad_rows {
::opforge::Status cpu(const ::opforge::TensorView& x, const ::opforge::TensorView& y, ::opforge::Span<int64_t> pads,
    const ::opforge::DeviceContext&);
}}}
"""

PAD_CPU = """
#include "pad_rows.h"
#include <cstring>
namespace opforge_kernels { namespace opforge_ort_test { namespace pad_rows {
// y = x with pads[0] zero rows above and pads[1] below.
::opforge::Status cpu(const ::opforge::TensorView& x, const ::opforge::TensorView& y, ::opforge::Span<int64_t> pads,
    const ::opforge::DeviceContext&) {
  const size_t row = static_cast<size_t>(x.size(1)) * ::opforge::dtype_size(x.dtype);
  std::memset(y.data, 0, static_cast<size_t>(y.numel()) * ::opforge::dtype_size(y.dtype));
  if (x.numel() > 0) std::memcpy(static_cast<char*>(y.data) + pads[0] * row, x.data, x.size(0) * row);
  return ::opforge::Status::ok();
}
}}}
"""


def pad_rows_reference(x, pads=(1, 2)):
    return torch.nn.functional.pad(x, (0, 0, pads[0], pads[1]))


def axpy_reference(x, mask=None, bias=None, alpha=2.0, shift=0, negate=False, mode="add", coeffs=(1.0,), pick=(0,)):
    xf = x.float()
    scale = np.float32(alpha * sum(coeffs))
    v = float(scale) * xf + (0 if bias is None else (1 if mode == "add" else -1) * bias.float())
    v = v + float(shift + sum(pick))
    v = -v if negate else v
    y = (v if mask is None else torch.where(mask, v, xf)).to(x.dtype)
    return y, y.float().sum(-1)


def rows_reference(x):
    keep = torch.nonzero(x.double().sum(-1) > 0).flatten()
    return keep, x[keep], x[keep].t().contiguous(), torch.tensor(keep.numel(), dtype=torch.int64)


def _samples(device, dtype):
    return [Sample(torch.ones(2, 3, dtype=dtype))]


def _declare(tmp_path):
    for name, files in (
        ("axpy", {"axpy.h": AXPY_H, "axpy_cpu.cpp": AXPY_CPU}),
        ("pad_rows", {"pad_rows.h": PAD_H, "pad_rows_cpu.cpp": PAD_CPU}),
        ("positive_rows", {"positive_rows.h": ROWS_H, "positive_rows_cpu.cpp": ROWS_CPU}),
    ):
        (tmp_path / "csrc" / name).mkdir(parents=True)
        for file, text in files.items():
            (tmp_path / "csrc" / name / file).write_text(textwrap.dedent(text))
    axpy = build_decl(
        f"{NS}::axpy",
        axpy_reference,
        inputs=[
            Input("x", rank=2),
            Input("mask", dtypes=("bool",), optional=True, shape="like(x)"),
            Input("bias", dtypes="like(x)", optional=True, shape="[x.shape[1]]"),
        ],
        outputs=[Output("y"), Output("rowsum", shape="[x.shape[0]]", dtype="float32")],
        attrs=[
            Attr("alpha", float, 2.0),
            Attr("shift", int, 0),
            Attr("negate", bool, False),
            Attr("mode", str, "add", choices=("add", "sub")),
            Attr("coeffs", "list[float]", [1.0]),
            Attr("pick", "list[int]", [0]),
        ],
        devices=("cpu",),
        kernels=str(tmp_path / "csrc" / "axpy"),
        workspace="x.shape[1] * 4",
        samples=_samples,
    )
    rows = build_decl(
        f"{NS}::positive_rows",
        rows_reference,
        inputs=[Input("x", dtypes=("float32", "int32", "int64"), rank=2)],
        outputs=[
            Output("rows", shape="[count]", dtype="int64"),
            Output("picked", shape="[count, x.shape[1]]"),
            Output("picked_t", shape="[x.shape[1], count]"),
            Output.size("count", upper="x.shape[0]"),
        ],
        devices=("cpu",),
        kernels=str(tmp_path / "csrc" / "positive_rows"),
        samples=_samples,
    )
    pad = build_decl(
        f"{NS}::pad_rows",
        pad_rows_reference,
        inputs=[Input("x", dtypes=("float32", "int64"), rank=2)],
        outputs=[Output("y", shape="[x.shape[0] + pads[0] + pads[-1], x.shape[1]]")],
        attrs=[Attr("pads", "list[int]", (1, 2), length=2)],
        devices=("cpu",),
        kernels=str(tmp_path / "csrc" / "pad_rows"),
        samples=_samples,
    )
    return axpy, rows, pad


@pytest.fixture(scope="module")
def declared(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("declared")
    result = build("opforge_ort_test_pkg", decls=list(_declare(tmp)), build_dir=tmp / "ort", cuda=False)
    assert result.library.name == "libopforge_ort_test_pkg_ort_ops.so"
    return result.library


ELEM = {
    torch.float32: TensorProto.FLOAT,
    torch.float16: TensorProto.FLOAT16,
    torch.bfloat16: TensorProto.BFLOAT16,
    torch.int32: TensorProto.INT32,
    torch.int64: TensorProto.INT64,
    torch.bool: TensorProto.BOOL,
}


def _model(op_type, inputs, outputs, attrs, elem):
    """inputs: names in node order ('' for an omitted optional input); graph inputs are the non-empty ones."""
    node = helper.make_node(op_type, inputs, [name for name, _ in outputs], domain=NS, **attrs)
    graph_inputs = [
        helper.make_tensor_value_info(n, TensorProto.BOOL if n == "mask" else elem, None) for n in inputs if n
    ]
    graph_outputs = [helper.make_tensor_value_info(n, e, None) for n, e in outputs]
    graph = helper.make_graph([node], "g", graph_inputs, graph_outputs)
    return helper.make_model(
        graph, opset_imports=[helper.make_opsetid("", 17), helper.make_opsetid(NS, 1)], ir_version=10
    ).SerializeToString()


def _session(library, model, threads=2):
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.register_custom_ops_library(str(library))
    return ort.InferenceSession(model, options, providers=["CPUExecutionProvider"])


def _run(session, feeds):
    from ops.onnx.models import run_session

    names = [i.name for i in session.get_inputs()]
    return run_session(session, [feeds[n] for n in names])


ATTRS = {"alpha": 0.30000001192092896, "shift": 3, "negate": 1, "mode": "sub", "coeffs": [0.5, 0.25], "pick": [2, -7]}


@pytest.mark.parametrize("dtype", [torch.float32, torch.float16, torch.bfloat16], ids=str)
@pytest.mark.parametrize("form", ["all", "mask_omitted_empty_name", "bias_omitted_trailing", "both_omitted"])
def test_optional_inputs_and_every_attribute_type(declared, dtype, form):
    x = torch.randn(37, 19).to(dtype)
    mask = torch.rand(37, 19) > 0.4
    bias = torch.randn(19).to(dtype)
    use_mask = form in ("all", "bias_omitted_trailing")
    use_bias = form in ("all", "mask_omitted_empty_name")
    names = ["x", "mask" if use_mask else "", "bias" if use_bias else ""]
    while names and names[-1] == "":
        names.pop()  # trailing absent inputs are left off; one in the middle stays as ''
    model = _model("axpy", names, [("y", ELEM[dtype]), ("rowsum", TensorProto.FLOAT)], ATTRS, ELEM[dtype])
    y, rowsum = _run(_session(declared, model), {"x": x, "mask": mask, "bias": bias})
    want_y, want_sum = axpy_reference(
        x,
        mask if use_mask else None,
        bias if use_bias else None,
        alpha=float(np.float32(ATTRS["alpha"])),
        shift=3,
        negate=True,
        mode="sub",
        coeffs=(0.5, 0.25),
        pick=(2, -7),
    )
    assert y.dtype == dtype and rowsum.dtype == torch.float32
    torch.testing.assert_close(y.float(), want_y.float(), rtol=1e-5 if dtype == torch.float32 else 1e-2, atol=1e-5)
    torch.testing.assert_close(rowsum, want_sum, rtol=1e-4, atol=1e-4)


def test_absent_attributes_take_the_declared_defaults(declared):
    x = torch.randn(5, 4)
    model = _model("axpy", ["x"], [("y", TensorProto.FLOAT), ("rowsum", TensorProto.FLOAT)], {}, TensorProto.FLOAT)
    y, _ = _run(_session(declared, model), {"x": x})
    assert torch.equal(y, axpy_reference(x)[0])  # alpha 2.0, coeffs [1.0]: y = 2x


@pytest.mark.parametrize("dtype", [torch.float32, torch.int32, torch.int64], ids=str)
def test_data_dependent_outputs_are_narrowed_to_the_reported_size(declared, dtype):
    x = (torch.randn(9, 5) * 10).to(dtype)
    elem = ELEM[dtype]
    outputs = [("rows", TensorProto.INT64), ("picked", elem), ("picked_t", elem), ("count", TensorProto.INT64)]
    session = _session(declared, _model("positive_rows", ["x"], outputs, {}, elem))
    got = _run(session, {"x": x})
    want = rows_reference(x)
    for g, w in zip(got, want):
        assert g.dtype == w.dtype and torch.equal(g, w), (g, w)
    assert got[3].shape == () and 0 < int(got[3]) < 9  # a 0-d size output; some rows kept, some not
    (none,) = _run(session, {"x": -torch.ones(3, 5, dtype=dtype)})[3:]
    assert int(none) == 0


@pytest.mark.parametrize("dtype", [torch.float32, torch.int64], ids=str)
def test_list_attribute_elements_in_a_shape_rule(declared, dtype):
    """[x.shape[0] + pads[0] + pads[-1], x.shape[1]]: list[int] elements evaluated in the C++ glue."""
    x = torch.arange(12).reshape(3, 4).to(dtype)
    for pads in ([0, 0], [2, 1]):
        model = _model("pad_rows", ["x"], [("y", ELEM[dtype])], {"pads": pads}, ELEM[dtype])
        (y,) = _run(_session(declared, model), {"x": x})
        assert torch.equal(y, pad_rows_reference(x, pads)), (pads, y)
    (y,) = _run(_session(declared, _model("pad_rows", ["x"], [("y", ELEM[dtype])], {}, ELEM[dtype])), {"x": x})
    assert y.shape == (6, 4)  # the declared default (1, 2)
    model = _model("pad_rows", ["x"], [("y", ELEM[dtype])], {"pads": [1, 2, 3]}, ELEM[dtype])
    with pytest.raises(Exception, match="opforge_ort_test::pad_rows: attribute 'pads' must have 2 elements, got 3"):
        _session(declared, model)


def _error(session, feeds) -> str:
    with pytest.raises(Exception) as info:
        _run(session, feeds)
    return str(info.value)


def test_bad_inputs_are_clean_ort_errors(declared):
    model = _model(
        "axpy", ["x", "mask", "bias"], [("y", TensorProto.FLOAT), ("rowsum", TensorProto.FLOAT)], {}, TensorProto.FLOAT
    )
    session = _session(declared, model)
    x = torch.randn(4, 6)
    message = _error(session, {"x": x, "mask": torch.ones(4, 6, dtype=torch.bool), "bias": torch.randn(5)})
    assert "opforge_ort_test::axpy: input 'bias' must have shape [x.shape[1]] = [6], got [5]" in message
    message = _error(
        session, {"x": torch.randn(4, 6, 1), "mask": torch.ones(4, 6, 1, dtype=torch.bool), "bias": torch.randn(6)}
    )
    assert "input 'x' must have rank 2, got rank 3 (shape [4, 6, 1])" in message
    message = _error(session, {"x": x, "mask": torch.ones(4, 5, dtype=torch.bool), "bias": torch.randn(6)})
    assert "input 'mask' must have shape like(x) = [4, 6], got [4, 5]" in message
    y, _ = _run(session, {"x": x, "mask": torch.ones(4, 6, dtype=torch.bool), "bias": torch.zeros(6)})
    assert torch.equal(y, 2 * x)  # the session is still usable after the errors


@pytest.mark.parametrize(
    "attrs,fragment",
    [
        ({"alpha": 2}, "attribute 'alpha' must be FLOAT, got INT"),
        ({"mode": "mul"}, "attribute 'mode' must be one of 'add' 'sub', got 'mul'"),
        ({"pick": [1.5]}, "attribute 'pick' must be INTS, got FLOATS"),
        ({"coeffs": [1, 2]}, "attribute 'coeffs' must be FLOATS, got INTS"),
    ],
)
def test_bad_attributes_fail_at_session_creation_naming_the_op(declared, attrs, fragment):
    model = _model("axpy", ["x"], [("y", TensorProto.FLOAT), ("rowsum", TensorProto.FLOAT)], attrs, TensorProto.FLOAT)
    with pytest.raises(Exception, match=f"opforge_ort_test::axpy: {fragment}"):
        _session(declared, model)


def test_a_dtype_the_op_does_not_declare_is_refused_by_ort_type_checking(declared):
    model = _model("axpy", ["x"], [("y", TensorProto.DOUBLE), ("rowsum", TensorProto.FLOAT)], {}, TensorProto.DOUBLE)
    with pytest.raises(Exception, match=r"tensor\(double\).*axpy"):
        _session(declared, model)


def test_a_required_attribute_missing_from_the_node_is_named(tmp_path):
    def ref(x, k):
        return x

    (tmp_path / "need_k").mkdir()
    (tmp_path / "need_k" / "need_k.h").write_text(
        '#pragma once\n#include "opforge/kernel_api.h"\nnamespace opforge_kernels { namespace opforge_ort_test2 {'
        " namespace need_k {\n::opforge::Status cpu(const ::opforge::TensorView& x, const ::opforge::TensorView& y,"
        " int64_t k, const ::opforge::DeviceContext&);\n}}}\n"
    )
    (tmp_path / "need_k" / "need_k_cpu.cpp").write_text(
        '#include "need_k.h"\nnamespace opforge_kernels { namespace opforge_ort_test2 { namespace need_k {\n'
        "::opforge::Status cpu(const ::opforge::TensorView& x, const ::opforge::TensorView& y, int64_t k,"
        " const ::opforge::DeviceContext&) {\n  for (int64_t i = 0; i < x.numel(); ++i) y.ptr<float>()[i] ="
        " x.ptr<const float>()[i] * k;\n  return ::opforge::Status::ok();\n}\n}}}\n"
    )
    decl = build_decl(
        "opforge_ort_test2::need_k",
        ref,
        inputs=[Input("x", dtypes=("float32",))],
        outputs=[Output("y")],
        attrs=[Attr("k", int)],
        devices=("cpu",),
        kernels=str(tmp_path / "need_k"),
        samples=_samples,
    )
    library = build("opforge_ort_test2_pkg", decls=[decl], build_dir=tmp_path / "ort", cuda=False).library
    node = helper.make_node("need_k", ["x"], ["y"], domain="opforge_ort_test2")
    graph = helper.make_graph(
        [node],
        "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [2])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [2])],
    )
    model = helper.make_model(
        graph, opset_imports=[helper.make_opsetid("", 17), helper.make_opsetid("opforge_ort_test2", 1)], ir_version=10
    )
    with pytest.raises(Exception, match=r"opforge_ort_test2::need_k: required attribute 'k' \(INT\) is missing"):
        _session(library, model.SerializeToString())
    model.graph.node[0].attribute.append(helper.make_attribute("k", 3))  # make_graph copied the node
    (y,) = _run(_session(library, model.SerializeToString()), {"x": torch.tensor([1.0, -2.0])})
    assert y.tolist() == [3.0, -6.0]
