"""Declared names are the user's: an input `self`, `input` or `ctx`, an output `out`, attributes `kernel`, `cls`
or `g` work in every backend, and what is still refused is what Python, C++ or TensorRT's ONNX parser forbid,
plus the `opforge_` prefix that generated code keeps for its own identifiers (messages say op, field, expected,
got and the fix).

Fast here: the declaration rules, the torch schema spelling and what a user calls, both exporters' node
attributes, and the generated kernel prototypes compiled with g++ -fsyntax-only, on the reference-only fixture
opforge_fixture::odd_names (tests/fixture_ops.py; the generated per-op suites run it everywhere too). One slow
test builds a compiled twin in an op package of its own and runs it through torch (CPU), opcheck,
torch.compile/export, both exporters, the native ONNX Runtime library and the TensorRT plugin host harness."""

import json
import keyword
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch

import ops
from ops import Attr, Input, Output
from ops.core.errors import DeclarationError
from ops.core.validate import build_decl
from ops.native.prototypes import include_path, write_headers
from ops.torch.schema import backward_schema, schema, schema_names

ROOT = Path(__file__).resolve().parents[1]
FIXTURE = "opforge_fixture::odd_names"


def _build(inputs, outputs, attrs=(), op_id="names::probe"):
    import inspect

    def reference(*args):
        return args[0]

    names = [i.name for i in inputs] + [a.name for a in attrs]
    if all(n.isidentifier() and not keyword.iskeyword(n) for n in names):  # else the name check fails first
        reference.__signature__ = inspect.Signature(
            [inspect.Parameter(n, inspect.Parameter.POSITIONAL_OR_KEYWORD) for n in names]
        )
    return build_decl(
        op_id, reference, inputs=inputs, outputs=outputs, attrs=attrs, kernels=None, samples=lambda device, dtype: []
    )


# ---- the declaration: what is accepted, what is refused and how it says so --------------------------------


def test_names_torch_cpp_and_generated_code_use_are_accepted():
    decl = _build(
        [
            Input("self"),
            Input("input"),
            Input("std"),
            Input("opforge"),
            Input("plugin_version"),  # TensorRT reads that name from attributes only
            Input("ctx", optional=True),
        ],
        [Output("out", shape="like(self)", dtype="like(self)")],
        [
            Attr("kernel", float, 1.0),
            Attr("cls", int, 1),
            Attr("g", bool, True),
            Attr("int64_t", int, 0),
            Attr("status", int, 0),
            Attr("saved", int, 0),
            Attr("grads", int, 0),
            Attr("_", int, 0),
        ],
    )
    assert [i.name for i in decl.inputs][-1] == "ctx" and decl.outputs[0].name == "out"


@pytest.mark.parametrize(
    "where, name, expected, fix",
    [
        ("input", "class", "not a Python keyword", "rename it, e.g. class_"),
        ("attr", "lambda", "not a Python keyword", "lambda_"),
        ("input", "new", "not a C++ keyword", "new_"),
        ("output", "a__b", "C++ does not reserve", "'a_b'"),
        ("attr", "_Scale", "C++ does not reserve", "'Scale'"),
        ("input", "errno", "not a macro of the C/C++ standard headers", "errno_value"),
        ("attr", "NAN", "not a macro of the C/C++ standard headers", "nan_value"),
        ("input", "opforge_ctx", "without the prefix 'opforge_'", "'ctx'"),
        ("attr", "_opforge_decl", "without the prefix 'opforge_'", "'decl'"),
        ("output", "OPFORGE_OUT", "without the prefix 'opforge_'", "'OUT'"),
        ("attr", "plugin_version", "TensorRT's ONNX parser reads those node attributes itself", "version"),
        ("attr", "plugin_namespace", "TensorRT's ONNX parser", "namespace"),
    ],
)
def test_a_refused_name_says_op_field_expected_got_and_fix(where, name, expected, fix):
    inputs, outputs, attrs = [Input("x")], [Output("y")], []
    if where == "input":
        inputs.append(Input(name))
    elif where == "output":
        outputs.append(Output(name))
    else:
        attrs.append(Attr(name, int, 1))
    with pytest.raises(DeclarationError) as e:
        _build(inputs, outputs, attrs, op_id="names::refused")
    text = str(e.value)
    assert text.startswith("names::refused: invalid declaration field '"), text
    assert e.value.field.startswith({"input": "inputs", "output": "outputs", "attr": "attrs"}[where]), text
    assert "expected a name" in text or "expected an attribute name" in text, text
    assert expected in text and f"got {name!r}" in text and "Fix: rename it" in text and fix in text, text


# ---- torch: the schema spells what torch treats specially, everything else is the user's ------------------


def test_the_schema_renames_only_what_torch_treats_specially():
    op = ops.get_op(FIXTURE)
    # self: torch.fx renames it `input` (here also a declared name); kernel, cls: inductor's FallbackKernel.create
    assert schema(op.decl) == (
        "odd_names(Tensor self_, Tensor input, Tensor? ctx=None, float kernel__=2.0, "
        "float kernel_=0.5, int cls_=3, bool g=True) -> Tensor"
    )
    assert schema_names(op.decl)["kernel"] == "kernel__"  # `kernel_` is declared itself: one more '_'
    assert str(op.torch_op._schema).startswith("opforge_fixture::odd_names(Tensor self_, Tensor input")


def test_the_backward_helper_schema_names_its_own_arguments_with_the_prefix():
    decl = _build([Input("x")], [Output("y")], [Attr("saved", int, 0), Attr("grads", int, 0), Attr("kernel", int, 0)])
    text = backward_schema(decl)
    assert text == (
        "probe_opforge_backward(Tensor?[] opforge_saved, Tensor?[] opforge_grads, int saved, int grads, "
        "int kernel_) -> Tensor?[]"
    )
    torch._C.parse_schema(f"names::{text}")  # valid: no duplicate argument names


def test_what_a_user_calls():
    """The op object takes the declared names as keywords (and positions); torch.ops takes the schema's."""
    op = ops.get_op(FIXTURE)
    x, y, c = (torch.randn(3, 4) for _ in range(3))
    want = op.reference(x, y, c, kernel=3.0, cls=2, g=False)
    torch.testing.assert_close(op(x, y, c, kernel=3.0, cls=2, g=False), want)
    torch.testing.assert_close(op(x, y, c, 3.0, 0.5, 2, False), want)
    torch.testing.assert_close(
        torch.ops.opforge_fixture.odd_names(self_=x, input=y, ctx=c, kernel__=3.0, cls_=2, g=False), want
    )
    with pytest.raises(RuntimeError, match="Unknown keyword argument 'kernel'"):  # torch's own message
        torch.ops.opforge_fixture.odd_names(x, y, kernel=3.0)


def test_backward_ctx_reads_declared_names_even_ctx_itself():
    op = ops.get_op(FIXTURE)
    x, y, c = (torch.randn(3, 4, requires_grad=True) for _ in range(3))
    op(x, y, c, kernel=3.0, cls=2).sum().backward()
    torch.testing.assert_close(x.grad, torch.full_like(x, 3.0))
    torch.testing.assert_close(y.grad, torch.full_like(y, 1.0))  # cls * kernel_ = 2 * 0.5
    torch.testing.assert_close(c.grad, torch.ones_like(c))


def test_compile_and_export_with_defaulted_special_names():
    """The failures the schema spelling avoids: inductor normalises defaulted arguments into keywords
    (`kernel`, `cls` collided with FallbackKernel.create; `self` became `input`, a duplicate here)."""
    op = ops.get_op(FIXTURE)
    x, y = torch.randn(4, 5), torch.randn(4, 5)
    torch._dynamo.reset()
    torch.testing.assert_close(torch.compile(lambda a, b: op(a, b), fullgraph=True)(x, y), op.reference(x, y))

    class M(torch.nn.Module):
        def forward(self, a, b):
            return op(a, b, kernel=-1.0)

    program = torch.export.export(M(), (x, y))
    torch.testing.assert_close(program.module()(x, y), op.reference(x, y, kernel=-1.0))
    assert torch.library.opcheck(op.torch_op, (x, y), op.schema_kwargs({"kernel": 2.5, "cls": 4}))


@pytest.mark.parametrize("opset", [17, 18])
def test_both_exporters_write_the_declared_attribute_names(opset):
    import onnx

    from ops.onnx.export import export_onnx

    op = ops.get_op(FIXTURE)

    class M(torch.nn.Module):
        def forward(self, a, b):
            return op(a, b, kernel=-1.0, cls=7)

    m = export_onnx(M(), (torch.randn(2, 3), torch.randn(2, 3)), opset=opset)
    m = onnx.load_from_string(m) if isinstance(m, bytes) else m
    (node,) = [n for n in m.graph.node if n.domain == "opforge_fixture"]
    got = {a.name: onnx.helper.get_attribute_value(a) for a in node.attribute}
    assert got["kernel"] == -1.0 and got["cls"] == 7 and got["kernel_"] == 0.5 and got["g"] == 1, got


def test_attributes_named_like_the_exporters_own_parameters(unique_id):
    """onnxscript's Op.__call__(self, ...), onnx.helper.make_node(name=, domain=, ...), a symbolic's `g`: none
    of them takes a declared attribute for its own parameter."""
    import onnx

    from ops.onnx.export import export_onnx
    from ops.trt.harness import host as harness

    def reference(x, self=1.5, name=2, domain="a", g=0.5):
        return x * self + name * g

    op = ops.register_op(
        unique_id("attrs"),
        inputs=[Input("x")],
        outputs=[Output("y")],
        kernels=None,
        attrs=[Attr("self", float, 1.5), Attr("name", int, 2), Attr("domain", str, "a"), Attr("g", float, 0.5)],
    )(reference)

    class M(torch.nn.Module):
        def forward(self, a):
            return op(a, self=-1.0, name=3)

    x = torch.randn(2, 3)
    torch.testing.assert_close(M()(x), reference(x, -1.0, 3))
    want = {
        "self": -1.0,
        "name": 3,
        "domain": b"a",
        "g": 0.5,
        "plugin_version": b"1",
        "plugin_namespace": b"opforge_test",
    }
    for opset in (17, 18):
        m = export_onnx(M(), (x,), opset=opset)
        m = onnx.load_from_string(m) if isinstance(m, bytes) else m
        (node,) = [n for n in m.graph.node if n.domain == "opforge_test"]
        assert {a.name: onnx.helper.get_attribute_value(a) for a in node.attribute} == want, opset
    node = harness.synthetic_onnx_node(op, {"self": -1.0})
    assert node.domain == "opforge_test" and node.name == ""
    assert {a.name: onnx.helper.get_attribute_value(a) for a in node.attribute} == {**want, "name": 2}


# ---- C++: the generated prototypes with such names compile ------------------------------------------------


BODY = """#include "%s"
OPFORGE_CPU_KERNEL(names, %s) {
  const ::std::int64_t n = out.numel() + self.numel() + input.numel() + (%s != nullptr ? 1 : 0);
  %s.parallel_for(n, 1, [](::std::int64_t, ::std::int64_t) {});
  return n + kernel + int64_t + status + std + opforge >= 0 ? ::opforge::Status::ok()
      : ::opforge::Status::error(::opforge::Status::kInvalidArgument, "negative");
}
"""


def _compile(tmp_path, decl, context: str):
    root = write_headers([decl], tmp_path / "gen")
    src = tmp_path / f"k_{context}.cpp"  # outside the kernel directory: write_headers checks what is in there
    optional = decl.inputs[2].name
    src.write_text(BODY % (include_path(decl), decl.name, optional, context))
    return subprocess.run(
        [
            "c++",
            "-std=c++17",
            "-Wall",
            "-Wextra",
            "-Werror",
            "-fsyntax-only",
            f"-I{ROOT / 'csrc'}",
            f"-I{root}",
            str(src),
        ],
        capture_output=True,
        text=True,
    )


@pytest.mark.skipif(shutil.which("c++") is None, reason="no C++ compiler")
@pytest.mark.parametrize("context_field", [True, False], ids=["field-ctx", "no-field-ctx"])
def test_kernel_bodies_see_declared_names_and_the_context(tmp_path, context_field):
    """Parameters named `int64_t`, `std`, `opforge`, `status` hide nothing the generated code needs. A field `ctx`
    is the user's: the DeviceContext is then `opforge_ctx` only; otherwise `ctx` names it too."""
    optional = "ctx" if context_field else "mask"
    decl = _build(
        [Input("self"), Input("input"), Input(optional, optional=True)],
        [Output("out", shape="like(self)", dtype="like(self)")],
        [
            Attr("kernel", float, 1.0),
            Attr("int64_t", int, 0),
            Attr("status", int, 0),
            Attr("std", int, 0),
            Attr("opforge", int, 0),
        ],
        op_id=f"names::odd_{optional}",
    )
    (tmp_path / "kernels").mkdir()
    object.__setattr__(decl, "kernel_dir", tmp_path / "kernels")  # write_headers writes the ops that have kernels
    done = _compile(tmp_path, decl, "opforge_ctx")
    assert done.returncode == 0, done.stderr[-3000:]
    done = _compile(tmp_path, decl, "ctx")
    if context_field:  # `ctx` is the optional input (a TensorView pointer), not the context
        assert done.returncode != 0 and "parallel_for" in done.stderr, done.stderr[-2000:]
    else:
        assert done.returncode == 0, done.stderr[-3000:]


# ---- the compiled twin, end to end ------------------------------------------------------------------------

PACKAGE = "namespkg"
OP = "namespkg::odd_names_compiled"
DECLARATION = '''
"""A compiled twin of tests/fixture_ops.py's opforge_fixture::odd_names (other name: one op name per process)."""
import torch

from ops import FLOATING, Attr, Input, Output, Sample, register_op


def samples(device, dtype):
    def rand(*shape):
        return torch.randn(*shape).to(device=device, dtype=dtype)

    return [Sample(rand(4, 6), rand(4, 6), rand(4, 6)), Sample(rand(3, 5), rand(3, 5), kernel=-1.5, cls=2),
            Sample(rand(2, 3, 4), rand(2, 3, 4), None, kernel_=0.25, g=False), Sample(rand(0, 4), rand(0, 4))]


def backward(ctx, grad):
    grad_ctx = None if ctx.ctx is None else (grad if ctx.g else torch.zeros_like(grad))
    return grad * ctx.kernel, grad * (ctx.cls * ctx.kernel_), grad_ctx


@register_op(
    "namespkg::odd_names_compiled",
    inputs=[Input("self", dtypes=FLOATING), Input("input", dtypes="like(self)", shape="like(self)"),
            Input("ctx", dtypes="like(self)", optional=True, shape="like(self)")],
    outputs=[Output("out", shape="like(self)", dtype="like(self)")],
    attrs=[Attr("kernel", float, 2.0), Attr("kernel_", float, 0.5), Attr("cls", int, 3), Attr("g", bool, True)],
    backward=backward,
    saves=("ctx",),
    samples=samples,
)
def odd_names_compiled(self, input, ctx=None, kernel=2.0, kernel_=0.5, cls=3, g=True):
    out = self.float() * kernel + input.float() * cls * kernel_
    if ctx is not None and g:
        out = out + ctx.float()
    return out.to(self.dtype)
'''
CPU = """#include "opforge_kernels/namespkg/odd_names_compiled.h"

// The op declares an input `ctx`, so the DeviceContext is `opforge_ctx` here.
OPFORGE_CPU_KERNEL(namespkg, odd_names_compiled) {
  const int64_t n = out.numel();
  const float k = static_cast<float>(kernel), c1 = static_cast<float>(cls), c2 = static_cast<float>(kernel_);
  return OPFORGE_DISPATCH_FLOATING_CPU(self.dtype, T, [&] {
    const T* a = self.ptr<const T>();
    const T* b = input.ptr<const T>();
    const T* c = ctx != nullptr && g ? ctx->ptr<const T>() : nullptr;
    T* y = out.ptr<T>();
    opforge_ctx.parallel_for(n, 4096, [&](int64_t begin, int64_t end) {
      for (int64_t i = begin; i < end; ++i) {
        float v = ::opforge::load(a, i) * k + ::opforge::load(b, i) * c1 * c2;
        if (c != nullptr) v += ::opforge::load(c, i);
        ::opforge::store(y, i, v);
      }
    });
    return ::opforge::Status::ok();
  });
}
"""
CUDA = """#include "opforge_kernels/namespkg/odd_names_compiled.h"

#include "opforge/kernel_cuda.cuh"

namespace {

template <typename T>
__global__ void odd(const T* a, const T* b, const T* c, T* y, int64_t n, float k, float c1, float c2) {
  const int64_t stride = static_cast<int64_t>(gridDim.x) * blockDim.x;
  for (int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; i < n; i += stride) {
    float v = ::opforge::cuda::to_float(a[i]) * k + ::opforge::cuda::to_float(b[i]) * c1 * c2;
    if (c != nullptr) v += ::opforge::cuda::to_float(c[i]);
    y[i] = ::opforge::cuda::from_float<T>(v);
  }
}

}  // namespace

OPFORGE_CUDA_KERNEL(namespkg, odd_names_compiled) {
  const int64_t n = out.numel();
  if (n == 0) return ::opforge::Status::ok();
  const int64_t blocks = (n + 255) / 256 < 4096 ? (n + 255) / 256 : 4096;
  const float k = static_cast<float>(kernel), c1 = static_cast<float>(cls), c2 = static_cast<float>(kernel_);
  return OPFORGE_DISPATCH_FLOATING_CUDA(self.dtype, T, [&] {
    odd<T><<<static_cast<unsigned>(blocks), 256, 0, ::opforge::cuda::stream(opforge_ctx)>>>(
        self.ptr<const T>(), input.ptr<const T>(), ctx != nullptr && g ? ctx->ptr<const T>() : nullptr,
        out.ptr<T>(), n, k, c1, c2);
    return ::opforge::cuda::launch_status("odd_names_compiled: CUDA launch failed");
  });
}
"""


@pytest.mark.slow(cpu_s=55)
def test_a_compiled_op_with_such_names_passes_every_backend(tmp_path):
    """Built like a user's op package (README 'Ops in your own package'): ops.check walks torch CPU, opcheck,
    both exporters, the native ONNX Runtime library and the TensorRT plugin harness; the generated torch suite
    adds torch.compile, torch.export, the C++ autograd node and bad inputs."""
    from ops.trt import headers

    project = tmp_path / "project"
    files = {
        f"{PACKAGE}/__init__.py": "import ops\n\nops.op_package(__name__)\n",
        f"{PACKAGE}/odd_names_compiled.py": DECLARATION,
        f"{PACKAGE}/csrc/odd_names_compiled/odd_names_compiled_cpu.cpp": CPU,
        f"{PACKAGE}/csrc/odd_names_compiled/odd_names_compiled_cuda.cu": CUDA,
    }
    for path, text in files.items():
        (project / path).parent.mkdir(parents=True, exist_ok=True)
        (project / path).write_text(text)
    path = os.pathsep.join(p for p in (str(project), str(ROOT), os.environ.get("PYTHONPATH", "")) if p)
    env = {**os.environ, "PYTHONPATH": path, "XDG_CACHE_HOME": str(tmp_path / "cache")}

    def run(*argv, cwd=project):
        return subprocess.run([sys.executable, "-m", *argv], cwd=cwd, env=env, capture_output=True, text=True)

    trt = headers.find() is not None
    for argv in (["ops.build", "--package", PACKAGE], ["ops.build", "--trt", "--package", PACKAGE])[: 2 if trt else 1]:
        done = run(*argv)
        assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-3000:]
    check = run("ops.check", OP, "--package", PACKAGE, "--quick", "--json")
    rows = json.loads(check.stdout)["ops"][OP]
    failed = [f"{r['stage']}: {r['detail']}" for r in rows if r["status"] == "fail"]
    assert check.returncode == 0 and not failed, "\n".join(failed) or check.stderr[-3000:]
    passed = {r["stage"].split("[")[0] for r in rows if r["status"] == "pass"}
    assert {"build", "torch.cpu", "torch.opcheck", "onnx.export", "ort.cpu"} <= passed, rows
    assert not trt or {"trt.plugin", "trt.harness"} <= passed, rows
    suite = run(
        "pytest",
        "-q",
        "-p",
        "no:cacheprovider",
        "--package",
        PACKAGE,
        "--op",
        OP,
        "-k",
        OP,
        "tests/torch/test_library_ops.py",
        "tests/torch/test_bad_inputs.py",
        cwd=ROOT,
    )
    tail = suite.stdout[-3000:] + suite.stderr[-2000:]
    assert suite.returncode == 0 and " passed" in tail and " failed" not in tail, tail
