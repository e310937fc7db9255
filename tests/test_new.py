"""`python -m ops.new`: the spec mini-syntax, every error, the files it writes, and three generated ops (flags
only, --like a torch operator, --from a function with an optional input and a list[int] attribute) built
together in one op package and passing `ops.check` on CPU with their pending kernels reported as REF stages."""

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from ops import new
from ops.core.declaration import FLOATING, REQUIRED, Attr, Input, Output
from ops.core.errors import DeclarationError
from ops.core.validate import build_decl

ROOT = Path(__file__).resolve().parents[1]

STRIDED = '''\
"""A function to scaffold an op from (`python -m ops.new demo::strided_pick --from newop_examples:strided_pick`)."""

from typing import Optional

import torch


def strided_pick(x: torch.Tensor, bias: Optional[torch.Tensor] = None, stride: list[int] = [2, 2]) -> torch.Tensor:
    """Every stride-th element of the last two dims, plus a per-channel bias."""
    y = x[:, :, :: stride[0], :: stride[1]]
    return y if bias is None else y + bias.view(1, -1, 1, 1)
'''

GRID = [
    "--like",
    "aten::grid_sampler_2d",
    "--shapes",
    "input=2x3x8x7 grid=2x5x6x2",
    "--shapes",
    "input=1x4x5x9 grid=1x3x4x2",
]
FLAGS = ["--input", "x", "--output", "y:like(x)", "--attr", "eps:float=1e-6", "--attr", "mode:str=fast|exact"]


# ---- the mini-syntax -------------------------------------------------------------------------


def test_parse_input():
    assert new.parse_input("x") == Input("x", dtypes=FLOATING)
    assert new.parse_input("w", first="x") == Input("w", dtypes="like(x)")
    assert new.parse_input("x:float32,float16") == Input("x", dtypes=("float32", "float16"))
    assert new.parse_input("mask:optional", first="x") == Input("mask", dtypes="like(x)", optional=True)
    assert new.parse_input("idx:int64:rank=1", first="x") == Input("idx", dtypes=("int64",), rank=1)
    assert new.parse_input("w:like(x):shape=[x.shape[-1]]", first="x") == Input(
        "w", dtypes="like(x)", shape="[x.shape[-1]]"
    )
    assert new.parse_input("x:floating:min_rank=2") == Input("x", dtypes=FLOATING, min_rank=2)


def test_parse_output():
    assert new.parse_output("y:like(x)", "x") == Output("y", shape="like(x)", dtype="like(x)")
    assert new.parse_output("y:[x.shape[0], 4]:float32", "x") == Output("y", shape="[x.shape[0], 4]", dtype="float32")
    assert new.parse_output("n:[x.shape[0]]:like(w)", "x") == Output("n", shape="[x.shape[0]]", dtype="like(w)")
    assert new.parse_output("y:like(w)", "x") == Output("y", shape="like(w)", dtype="like(w)")


def test_parse_attr():
    assert new.parse_attr("eps:float=1e-6") == Attr("eps", "float", 1e-6)
    assert new.parse_attr("k:int") == Attr("k", "int", REQUIRED)
    assert new.parse_attr("k:int=0x10") == Attr("k", "int", 16)
    assert new.parse_attr("flag:bool=true") == Attr("flag", "bool", True)
    assert new.parse_attr("mode:str=bilinear|nearest") == Attr(
        "mode", "str", "bilinear", choices=("bilinear", "nearest")
    )
    assert new.parse_attr("name:str=abc") == Attr("name", "str", "abc")
    assert new.parse_attr("stride:list[int]=1,1") == Attr("stride", "list[int]", [1, 1])
    assert new.parse_attr("stride:list[int,2]=1,2") == Attr("stride", "list[int]", [1, 2], length=2)
    assert new.parse_attr("scales:list[float]=0.5,2") == Attr("scales", "list[float]", [0.5, 2.0])


def test_parse_shapes():
    assert new.parse_shapes("input=2x3x8x8 grid=2x5x6x2") == {"input": [2, 3, 8, 8], "grid": [2, 5, 6, 2]}
    assert new.parse_shapes("x=4;s=scalar") == {"x": [4], "s": []}


@pytest.mark.parametrize(
    "parse, spec, says",
    [
        (new.parse_input, "x:float33", "--input: expected a field that is 'optional'"),
        (new.parse_input, "1x", "--input: expected NAME first"),
        (new.parse_input, "x:rank=two", "--input: expected a field"),
        (lambda s: new.parse_output(s, "x"), "y", "--output: expected NAME:SHAPE[:DTYPE], got 'y'"),
        (
            lambda s: new.parse_output(s, "x"),
            "y:x.shape",
            "--output: expected a SHAPE that is like(INPUT) or [expr, ...]",
        ),
        (lambda s: new.parse_output(s, "x"), "y:like(x):float33", "--output: expected a DTYPE"),
        (new.parse_attr, "eps", "--attr: expected NAME:TYPE[=DEFAULT]"),
        (new.parse_attr, "eps:double=1", "--attr: expected a TYPE among int, float"),
        (new.parse_attr, "eps:float=abc", "--attr: expected a DEFAULT for 'eps' that is a float"),
        (new.parse_attr, "k:int=1.5", "--attr: expected a DEFAULT for 'k' that is an int"),
        (new.parse_attr, "f:bool=yes", "that is true or false"),
        (new.parse_attr, "s:list[int,2]=1,2,3", "that is 2 values"),
        (new.parse_attr, "s:list[int]=a,b", "comma-separated ints"),
        (new.parse_shapes, "x=2,3", "--shapes: expected NAME=DxDx..."),
    ],
)
def test_spec_errors_name_the_flag_and_give_an_example(parse, spec, says):
    with pytest.raises(new.SpecError, match="Example: ") as e:
        parse(spec)
    assert says in str(e.value), str(e.value)
    assert repr(spec) in str(e.value) or spec.split(":")[-1] in str(e.value)


# ---- the command: errors ---------------------------------------------------------------------


def _main(capsys, *argv) -> tuple[int, str, str]:
    rc = new.main(list(argv))
    out = capsys.readouterr()
    return rc, out.out, out.err


@pytest.mark.parametrize(
    "op_id, says",
    [
        ("badid", "invalid declaration field 'id': expected 'namespace::name' made of identifiers"),
        ("aten::foo", "a namespace other than"),
        ("demo::class", "not C++ keywords"),
        ("demo::my-op", "made of identifiers"),
    ],
)
def test_bad_ids_use_the_declaration_rules(capsys, tmp_path, op_id, says):
    rc, _, err = _main(capsys, op_id, *FLAGS, "--dir", str(tmp_path))
    assert rc == 2 and says in err, err
    assert not list(tmp_path.iterdir())


@pytest.mark.parametrize(
    "argv, says",
    [
        (["--input", "x"], "--output: expected at least one --output when the op is given by flags"),
        ([], "--input: expected at least one --input (or --like ns::op / --from module:function)"),
        (
            ["--input", "x", "--output", "y:[x.shape[0], eps]", "--attr", "eps:float=1"],
            "invalid declaration field 'outputs.y.shape'",
        ),
        (["--input", "x", "--input", "opforge_x", "--output", "y:like(x)"], "invalid declaration field 'inputs.name'"),
        (["--input", "x", "--output", "y:like(z)"], "outputs.y"),
        (["--input", "x", "--output", "y:like(x)", "--devices", "tpu"], "--devices: expected a comma-separated list"),
        (["--like", "aten::nope_op"], "torch knows no operator aten::nope_op"),
        (["--like", "not an op"], "--like: expected a torch operator 'ns::op'"),
        (["--like", "aten::grid_sampler_2d.nope"], "has no overload 'nope'"),
        (["--like", "aten::grid_sampler_2d"], "accepted none of the guessed input shapes"),
        (
            ["--like", "aten::grid_sampler_2d", "--shapes", "input=2x3"],
            "--shapes: expected a shape for every required input",
        ),
        (["--like", "aten::grid_sampler_2d", "--shapes", "x=2x3"], "--shapes: expected names of the inputs"),
        (["--like", "aten::grid_sampler_2d", "--shapes", "input=2x3x4x4 grid=2x3x4x3"], "fails on --shapes"),
        ([*GRID, "--output", "y:like(input)"], "--output: expected a rule that reproduces aten::grid_sampler_2d"),
        ([*GRID, "--attr", "nope:int=1"], "--attr: expected names of aten::grid_sampler_2d's attrs"),
        (["--like", "aten::rms_norm", "--shapes", "input=2x3x8 weight=8"], "normalized_shape"),
        (["--like", "aten::add_.Tensor"], "is mutated in place"),
        (["--from", "nomod:f"], "cannot import module 'nomod'"),
        (["--from", "os.path"], "--from: expected module:function"),
        (["--from", "os:nope"], "module os has no function 'nope'"),
        (["--like", "aten::relu", "--from", "os:getcwd"], "either --like or --from"),
    ],
)
def test_errors(capsys, tmp_path, argv, says):
    rc, _, err = _main(capsys, "demo::thing", *argv, "--dir", str(tmp_path))
    assert rc == 2 and says in err, err
    assert not list(tmp_path.iterdir())


def test_a_none_default_argument_is_left_out_with_a_note(capsys, tmp_path):
    """aten::rms_norm's `float? eps=None`: an attribute cannot hold None, so the reference calls the operator
    without it (its own default applies) and the note says how to declare it instead."""
    (tmp_path / "__init__.py").write_text("import ops\n\nops.op_package(__name__)\n")
    rc, out, err = _main(
        capsys,
        "demo::rmsn",
        "--like",
        "aten::rms_norm",
        "--shapes",
        "input=2x3x8 weight=8",
        "--attr",
        "normalized_shape:list[int]=8",
        "--dir",
        str(tmp_path),
    )
    assert rc == 0, err
    assert "argument 'eps' (Optional[float]) defaults to None" in out and "--attr 'eps:float=VALUE'" in out, out
    declaration = (tmp_path / "rmsn.py").read_text()
    assert 'Attr("normalized_shape"' in declaration and 'Attr("eps"' not in declaration, declaration


def test_an_existing_op_id_is_refused(capsys, tmp_path):
    rc, _, err = _main(capsys, "opforge::scaled_gelu", *FLAGS, "--dir", str(tmp_path))
    assert rc == 2 and "opforge::scaled_gelu already exists (declared at ops/library/scaled_gelu.py" in err, err
    assert not list(tmp_path.iterdir())


def test_existing_files_are_never_overwritten(capsys, tmp_path):
    rc, out, err = _main(capsys, "demo::twice", *FLAGS, "--dir", str(tmp_path))
    assert rc == 0, err
    before = {p: p.read_text() for p in tmp_path.rglob("*") if p.is_file()}
    (tmp_path / "csrc" / "twice" / "twice_cuda.cu").write_text("// mine\n")
    (tmp_path / "twice.py").unlink()  # even with the declaration gone, the kernel files are not overwritten
    rc, out, err = _main(capsys, "demo::twice", *FLAGS, "--dir", str(tmp_path))
    assert rc == 2 and "refusing to overwrite" in err and "twice_cpu.cpp" in err and "twice_cuda.cu" in err, err
    assert not (tmp_path / "twice.py").exists()
    assert (tmp_path / "csrc" / "twice" / "twice_cuda.cu").read_text() == "// mine\n"
    assert (tmp_path / "csrc" / "twice" / "twice_cpu.cpp").read_text() == before[
        tmp_path / "csrc" / "twice" / "twice_cpu.cpp"
    ]


def test_outside_the_repo_it_asks_where(capsys, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    rc, _, err = _main(capsys, "demo::where", *FLAGS)
    assert rc == 2 and "pass --package PKG" in err and "--dir DIR" in err, err


def test_inside_the_repo_it_writes_ops_library_and_csrc(capsys, tmp_path, monkeypatch):
    (tmp_path / "ops" / "library").mkdir(parents=True)
    (tmp_path / "ops" / "library" / "__init__.py").write_text("")
    (tmp_path / "ops" / "registry.py").write_text("")
    monkeypatch.chdir(tmp_path)
    rc, out, err = _main(capsys, "demo::inrepo", *FLAGS)
    assert rc == 0, err
    written = sorted(str(p.relative_to(tmp_path)) for p in tmp_path.rglob("*") if p.is_file() and "inrepo" in p.name)
    assert written == ["csrc/inrepo/inrepo_cpu.cpp", "csrc/inrepo/inrepo_cuda.cu", "ops/library/inrepo.py"]
    assert "python -m ops.build\n" in out and "python -m ops.check demo::inrepo\n" in out


# ---- what it writes --------------------------------------------------------------------------


def test_derived_shape_rules(capsys, tmp_path, monkeypatch):
    (tmp_path / "newop_examples.py").write_text(STRIDED)
    monkeypatch.syspath_prepend(str(tmp_path))
    rc, out, err = _main(
        capsys, "demo::strided_dry", "--from", "newop_examples:strided_pick", "--dir", str(tmp_path), "--dry-run"
    )
    assert rc == 0, err
    assert (
        'Output("y", shape="[x.shape[0], x.shape[1], ceil_div(x.shape[2], stride[0]), '
        'ceil_div(x.shape[3], stride[1])]", dtype="like(x)")'
    ) in out
    assert 'Input("bias", dtypes="like(x)", optional=True)' in out
    assert 'Attr("stride", "list[int]", [2, 2], length=2)' in out
    assert "# bias absent" in out and "# empty" in out and "stride=[3, 2]" in out  # absent/present, empty, varied
    rc, out, err = _main(capsys, "demo::grid_dry", *GRID, "--dir", str(tmp_path), "--dry-run")
    assert rc == 0, err
    assert 'shape="[input.shape[0], input.shape[1], grid.shape[1], grid.shape[2]]"' in out
    assert "onnx_fallback=False" in out  # aten::grid_sampler_2d has no ONNX symbolic: said, not faked
    assert (
        "return torch.ops.aten.grid_sampler_2d.default(input, grid, interpolation_mode, padding_mode, "
        "align_corners)" in out
    )
    assert not [p for p in tmp_path.rglob("*") if p.is_file() and p.name != "newop_examples.py"]


def test_an_unexpressible_output_asks_for_output(capsys, tmp_path, monkeypatch):
    (tmp_path / "flatten_examples.py").write_text(
        textwrap.dedent("""\
        import torch


        def pairs(x: torch.Tensor) -> torch.Tensor:
            return x.reshape(-1)[: x.numel() // 3 * 2]
        """)
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    rc, _, err = _main(capsys, "demo::pairs", "--from", "flatten_examples:pairs", "--dir", str(tmp_path))
    assert rc == 2 and "cannot express dim 0" in err and "--output 'y:[...]'" in err, err


def test_kernels_pending_is_validated():
    def ref(x):
        return x

    kw = dict(inputs=[Input("x")], outputs=[Output("y")], samples=lambda d, t: [])
    with pytest.raises(DeclarationError, match="kernels_pending.*drawn from the declared devices"):
        build_decl("demo::p", ref, kernels=None, kernels_pending=("tpu",), **kw)
    with pytest.raises(DeclarationError, match="no kernels_pending with kernels=None"):
        build_decl("demo::p", ref, kernels=None, kernels_pending=("cpu",), **kw)


def test_check_renders_reference_stages():
    from ops.check import PASS, REFERENCE, SKIP, StageResult
    from ops.check.__main__ import render

    text = render(
        "demo::op",
        [
            StageResult("torch.cpu[float32]", REFERENCE, "ran the REFERENCE"),
            StageResult("build", PASS, "ok"),
            StageResult("ort.cpu", SKIP, "kernel pending (cpu)"),
        ],
        ("cpu", "cuda"),
    )
    assert "REF     ran the REFERENCE" in text
    assert "-> 1 passed, 1 ran the reference instead of the kernel (REF), 0 failed, 1 skipped" in text
    assert "kernels pending on cpu, cuda" in text


# ---- three generated ops, built once, checked ------------------------------------------------


@pytest.mark.slow(cpu_s=50)
def test_three_generated_ops_build_and_pass_check(tmp_path):
    """In a fresh op package (the 'Ops in your own package' layout): the three ops are generated with the
    commands a user types, the package is built once, and ops.check passes with the pending stages as REF."""
    project = tmp_path / "proj"
    (project / "newops").mkdir(parents=True)
    (project / "newops" / "__init__.py").write_text("import ops\n\nops.op_package(__name__)\n")
    (project / "pyproject.toml").write_text('[project]\nname = "newproj"\nversion = "0"\n')
    (project / "newop_examples.py").write_text(STRIDED)
    path = os.pathsep.join(p for p in (str(ROOT), str(project), os.environ.get("PYTHONPATH", "")) if p)
    env = {**os.environ, "PYTHONPATH": path, "OPFORGE_TRT": "0"}

    def run(*argv):
        return subprocess.run([sys.executable, "-m", *argv], cwd=project, env=env, capture_output=True, text=True)

    specs = {
        "demo::scale_clamp": FLAGS,
        "demo::grid_sample": GRID,
        "demo::strided_pick": ["--from", "newop_examples:strided_pick"],
    }
    for op_id, argv in specs.items():
        made = run("ops.new", op_id, *argv, "--package", "newops")
        assert made.returncode == 0, made.stderr
        assert f"python -m ops.check {op_id} --package newops" in made.stdout
    build = run("ops.build", "--package", "newops")
    assert build.returncode == 0, build.stdout[-2000:] + build.stderr[-3000:]
    check = run("ops.check", *specs, "--package", "newops", "--quick", "--json")
    report = json.loads(check.stdout)
    assert check.returncode == 0 and report["ok"], check.stdout[-3000:] + check.stderr[-2000:]
    assert report["kernels_pending"] == {op: ["cpu", "cuda"] for op in specs}
    for op_id, rows in report["ops"].items():
        by = {r["stage"]: r for r in rows}
        assert not [r for r in rows if r["status"] == "fail"], rows
        assert by["declaration"]["status"] == "pass" and by["build"]["status"] == "pass"
        refs = [r for r in rows if r["status"] == "reference"]
        assert {r["stage"] for r in refs} >= {
            "torch.cpu[float32]",
            "torch.cpu[float16]",
            "torch.cpu[bfloat16]",
            "torch.opcheck[cpu]",
        }, (op_id, rows)
        assert all("ran the REFERENCE, not the kernel (cpu kernel pending" in r["detail"] for r in refs)
        assert not [r for r in rows if r["stage"].startswith("torch.cpu") and r["status"] == "pass"]
        assert by["ort.cpu"]["status"] == "skip" and by["ort.cpu"]["detail"].startswith("kernel pending (cpu)")
        assert by["trt.plugin"]["status"] == "skip" and by["trt.plugin"]["detail"].startswith("kernel pending (cuda)")
    assert {r["stage"]: r["status"] for r in report["ops"]["demo::strided_pick"]}["ort.fallback[17]"] == "pass"
    text = run("ops.check", "demo::grid_sample", "--package", "newops", "--only", "torch.cpu")
    assert "REF " in text.stdout and "ran the reference instead of the kernel (REF)" in text.stdout, text.stdout


POOL = [
    "--input",
    "x:rank=4",
    "--input",
    "mask:optional:shape=[x.shape[0], x.shape[2], x.shape[3]]",
    "--output",
    "y:[x.shape[0], x.shape[1], ceil_div(x.shape[2], stride[0]), ceil_div(x.shape[3], stride[1])]",
    "--output",
    "idx:[x.shape[0]]:int64",
    "--attr",
    "k:int",
    "--attr",
    "stride:list[int,2]=2,2",
]


def test_flags_samples_and_placeholder_fit_the_declared_rules(capsys, tmp_path):
    """Without building: the generated declaration validates, its samples satisfy the input rules, cover the
    optional input absent and present and an empty case, and the placeholder returns the declared shapes."""
    import torch

    from ops.torch.register import output_shapes

    rc, _, err = _main(capsys, "demo::pool", *POOL, "--dir", str(tmp_path))
    assert rc == 0, err
    text = (tmp_path / "pool.py").read_text()
    captured = {}

    def register_op(op_id, **fields):
        def decorate(fn):
            captured.update(fields, id=op_id, fn=fn)
            return fn

        return decorate

    code = compile(text.replace("Sample, register_op", "Sample"), "pool.py", "exec")
    exec(code, {"register_op": register_op, "__name__": "pool"})
    assert captured["kernels_pending"] == ("cpu", "cuda")
    fields = {k: v for k, v in captured.items() if k in ("inputs", "outputs", "attrs", "samples")}
    decl = build_decl(captured["id"], captured["fn"], kernels=None, **fields)
    cases = decl.samples("cpu", torch.float32)
    assert any(len(s.inputs) == 1 for s in cases) and any(len(s.inputs) == 2 for s in cases)
    assert any(s.inputs[0].numel() == 0 for s in cases)
    for s in cases:
        inputs = dict(zip([i.name for i in decl.inputs], list(s.inputs) + [None] * (2 - len(s.inputs))))
        attrs = {a.name: s.attrs.get(a.name, a.default) for a in decl.attrs}
        if inputs["mask"] is not None:
            assert list(inputs["mask"].shape) == [inputs["x"].shape[0], *inputs["x"].shape[2:]]
        outs = captured["fn"](*inputs.values(), *attrs.values())
        for got, want in zip(outs, output_shapes(decl, inputs, attrs, {})):
            assert list(got.shape) == list(want)
        assert outs[1].dtype == torch.int64


ODD = [
    "--input",
    "self",
    "--input",
    "int64_t",
    "--input",
    "ctx:optional",
    "--output",
    "out:like(self)",
    "--attr",
    "kernel:float=2",
    "--attr",
    "status:int=1",
    "--attr",
    "opforge:int=0",
]


@pytest.mark.parametrize(
    "argv",
    [FLAGS, POOL, GRID, ODD],
    ids=["flags", "flags-optional-list-two-outputs", "like", "names-the-skeleton-also-uses"],
)
def test_cpu_skeleton_compiles_against_the_generated_prototypes(capsys, tmp_path, argv):
    """Seconds instead of a build: the CPU skeleton, with the prototypes header the build would generate,
    passes g++ -fsyntax-only -Wall -Werror (the full build is test_three_generated_ops_build_and_pass_check)."""
    import shutil

    from ops.native import prototypes

    if shutil.which("g++") is None:
        pytest.skip("no g++")
    rc, out, err = _main(capsys, "demo::skel", *argv, "--dir", str(tmp_path), "--dry-run")
    assert rc == 0, err
    plan, files = new.scaffold(_args(argv + ["--dir", str(tmp_path)]))
    decl = new.validate(plan)
    include = tmp_path / "include"
    (include / prototypes.include_path(decl)).parent.mkdir(parents=True)
    (include / prototypes.include_path(decl)).write_text(prototypes.header(decl))
    cpu = next(text for path, text in files.items() if path.name.endswith("_cpu.cpp"))
    (tmp_path / "skel_cpu.cpp").write_text(cpu)
    result = subprocess.run(
        [
            "g++",
            "-std=c++17",
            "-fsyntax-only",
            "-Wall",
            "-Werror",
            f"-I{ROOT / 'csrc'}",
            f"-I{include}",
            str(tmp_path / "skel_cpu.cpp"),
        ],
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    if shutil.which("nvcc") and argv is POOL:  # the CUDA skeleton too, where nvcc exists (compiled, not run)
        cuda = next(text for path, text in files.items() if path.name.endswith("_cuda.cu"))
        (tmp_path / "skel_cuda.cu").write_text(cuda)
        result = subprocess.run(
            [
                "nvcc",
                "-std=c++17",
                "-c",
                "-o",
                str(tmp_path / "skel_cuda.o"),
                f"-I{ROOT / 'csrc'}",
                f"-I{include}",
                "-Xcompiler",
                "-Wall,-Werror",
                str(tmp_path / "skel_cuda.cu"),
            ],
            capture_output=True,
            text=True,
        )
        assert result.returncode == 0, result.stderr[-3000:]


def _args(argv):
    args = new.parser().parse_args(["demo::skel", *argv], namespace=new.Args())
    args.attr_specs = [new.parse_attr(s) for s in args.attr]
    return args


# ---- names: never colliding, never refused where the declaration takes them ---------------------------------

SIGNATURES = """\
import torch


def axpby(x, y, alpha=2.0, beta=-0.5):
    return x * alpha + y * beta


def blend(input: torch.Tensor, other: torch.Tensor) -> torch.Tensor:
    return input - other


def halve(out: torch.Tensor) -> torch.Tensor:
    return out / 2


def scaled(x: torch.Tensor, y: torch.Tensor, *, kernel: float = 1.0, cls: int = 2) -> torch.Tensor:
    return x * kernel + y * cls


def pairs(x: torch.Tensor, y: torch.Tensor):
    return x + y, x - y


def summed(x: torch.Tensor, *rest: torch.Tensor) -> torch.Tensor:
    return x + sum(rest)


def options(x: torch.Tensor, **options) -> torch.Tensor:
    return x
"""

LIKE_OPS = '''\
"""Operators whose argument names collide with what ops.new would pick (registered on import: --import)."""
import torch

_lib = torch.library.Library("opforge_names_test", "DEF")
_lib.define("pair(Tensor self, Tensor x, float kernel=1.0) -> Tensor")
_lib.define("xy(Tensor x, Tensor y, Tensor? out=None, int cls=1) -> Tensor")
_lib.impl("pair", lambda self, x, kernel=1.0: self * kernel + x, "CPU")
_lib.impl("xy", lambda x, y, out=None, cls=1: x * cls + y + (0 if out is None else out), "CPU")
'''


@pytest.fixture
def examples(tmp_path, monkeypatch):
    (tmp_path / "names_examples.py").write_text(SIGNATURES)
    (tmp_path / "names_like_ops.py").write_text(LIKE_OPS)
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.chdir(tmp_path)
    return tmp_path


@pytest.mark.parametrize(
    "function, inputs, attrs, outputs, call",
    [
        ("axpby", ["x", "y"], ["alpha", "beta"], ["out"], "_opforge_function(x, y, alpha, beta)"),  # y is an input
        ("blend", ["input", "other"], [], ["y"], "_opforge_function(input, other)"),
        ("halve", ["out"], [], ["y"], "_opforge_function(out)"),
        ("scaled", ["x", "y"], ["kernel", "cls"], ["out"], "_opforge_function(x, y, kernel=kernel, cls=cls)"),
        ("pairs", ["x", "y"], [], ["y0", "y1"], "_opforge_function(x, y)"),  # y is taken, y0 and y1 are not
    ],
)
def test_from_picks_output_names_no_input_or_attribute_has(capsys, examples, function, inputs, attrs, outputs, call):
    rc, out, err = _main(
        capsys, f"demo::{function}", "--from", f"names_examples:{function}", "--dir", str(examples), "--dry-run"
    )
    assert rc == 0, err
    for name in inputs:
        assert f'Input("{name}"' in out, out
    for name in attrs:
        assert f'Attr("{name}"' in out, out
    assert f"return {call}" in out, out
    declared = [line for line in out.splitlines() if "outputs=" in line][0]
    assert [n for n in outputs if f'Output("{n}"' in declared] == outputs, declared


def test_output_names_skip_every_taken_name():
    assert new.output_names(1, ["x"]) == ["y"]
    assert new.output_names(1, ["x", "y"]) == ["out"]
    assert new.output_names(1, ["y", "out", "output", "result"]) == ["y1"]
    assert new.output_names(2, ["x"]) == ["y0", "y1"]
    assert new.output_names(2, ["y1"]) == ["out0", "out1"]


@pytest.mark.parametrize("function, parameter", [("summed", "*rest"), ("options", "**options")])
def test_from_refuses_variadic_parameters_naming_function_parameter_and_fix(capsys, examples, function, parameter):
    rc, _, err = _main(capsys, "demo::variadic", "--from", f"names_examples:{function}", "--dir", str(examples))
    assert rc == 2, err
    assert f"--from names_examples:{function}: function {function} takes {parameter}" in err, err
    assert "Fix: point --from at a wrapper that names them" in err and f"def {function}_op(x" in err, err
    assert not [p for p in examples.rglob("*") if p.suffix in (".cpp", ".cu")]


@pytest.mark.parametrize(
    "target, shapes, inputs, attrs, output",
    [
        ("opforge_names_test::pair", "self=2x3 x=2x3", ["self", "x"], ["kernel"], "y"),  # 'self' stays: x is taken
        ("opforge_names_test::xy", "x=2x3 y=2x3", ["x", "y", "out"], ["cls"], "output"),  # y and out are inputs
        ("aten::atan2", "x=2x3 other=2x3", ["x", "other"], [], "y"),  # aten's `self` becomes x
    ],
)
def test_like_keeps_operator_names_and_picks_a_free_output(capsys, examples, target, shapes, inputs, attrs, output):
    rc, out, err = _main(
        capsys,
        "demo::liked",
        "--like",
        target,
        "--import",
        "names_like_ops",
        "--shapes",
        shapes,
        "--dir",
        str(examples),
        "--dry-run",
    )
    assert rc == 0, err
    for name in inputs:
        assert f'Input("{name}"' in out, out
    for name in attrs:
        assert f'Attr("{name}"' in out, out
    assert f'Output("{output}"' in out, out
