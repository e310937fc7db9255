"""Triton kernels ahead of time (ops/native/triton_aot.py), the generated launcher (triton_launcher.py) and the
per-build choice of an op's CUDA kernel (kernel_sources.py). Everything here runs without a GPU: Triton compiles
for a named target, nvcc compiles the launcher. Running the kernels is tests/harness (enqueue) on a GPU."""

import ctypes
import json
import shutil
import subprocess

import pytest
import torch
from triton_cases import axpb, axpb_launch

import ops
from ops import FLOATING, Attr, Input, Output, Sample, Triton, register_op
from ops.core.errors import OpforgeError
from ops.native import kernel_sources, triton_aot, triton_launcher
from ops.native.cuda_kernels import cuda_home
from ops.native.prototypes import kernel_include_dirs

triton = pytest.importorskip("triton", reason="triton is not installed (pip install 'opforge[triton]')")

KERNEL = axpb()
LAUNCH = axpb_launch()


def declare(unique_id, tmp_path, kernel=KERNEL, **launch):
    op_id = unique_id("aot")
    name = op_id.split("::")[1]
    kdir = tmp_path / "csrc" / name
    kdir.mkdir(parents=True)
    (kdir / f"{name}_triton.py").write_text(kernel)

    def ref(x, b=None, alpha=1.0):
        return x * alpha + (0 if b is None else b)

    return register_op(
        op_id,
        inputs=[Input("x", dtypes=FLOATING), Input("b", dtypes="like(x)", shape="like(x)", optional=True)],
        outputs=[Output("y", shape="like(x)", dtype="like(x)")],
        attrs=[Attr("alpha", float, 1.0)],
        devices=("cuda",),
        kernels=str(kdir),
        samples=lambda device, dtype: [Sample(torch.randn(2, 3).to(device=device, dtype=dtype))],
        triton=Triton(**{**LAUNCH, **launch}),
    )(ref).decl


def test_every_variant_alignment_and_config_is_compiled_for_sm87_and_sm90(unique_id, tmp_path, monkeypatch):
    monkeypatch.setenv("OPFORGE_BUILD_DIR", str(tmp_path / "build"))  # an empty cache
    decl = declare(unique_id, tmp_path)
    result = triton_aot.compile_op(decl)
    assert result.archs == (87, 90)
    assert len(result.kernels) == 3 * 2 * 2  # float32/16/bf16 x aligned/generic x 2 configs
    assert result.compiled == len(result.kernels) * 2  # each for both archs, nothing cached yet
    for k in result.kernels:
        assert [im.arch for im in k.images] == [87, 90]
        for im in k.images:
            assert im.cubin[:4] == b"\x7fELF"
            assert f".entry {k.function}(" in im.ptx.replace("\n", "")
            assert im.param_count >= len(decl.triton.args)  # plus Triton's trailing scratch pointers
            assert im.portable == (im.arch == 87)  # Hopper's PTX targets sm_90a, which no other GPU takes
    aligned = [k for k in result.kernels if k.aligned][0]
    generic = [k for k in result.kernels if not k.aligned][0]
    assert aligned.images[1].ptx != generic.images[1].ptx  # the 16-byte alignment hint changes the code
    again = triton_aot.compile_op(decl)
    assert again.compiled == 0 and [k.images for k in again.kernels] == [k.images for k in result.kernels]


def test_a_kernel_that_does_not_match_its_launch_is_refused(unique_id, tmp_path):
    decl = declare(
        unique_id, tmp_path, kernel=KERNEL.replace("has_b, alpha", "has_bias, alpha").replace("if has_b", "if has_bias")
    )
    with pytest.raises(OpforgeError, match=r"not declared \['has_bias'\], not in the kernel \['has_b'\]"):
        triton_aot.compile_op(decl)
    decl = declare(unique_id, tmp_path / "2", kernel=KERNEL.replace("BLOCK: tl.constexpr", "BLOCK"))
    with pytest.raises(OpforgeError, match="tl.constexpr parameters"):
        triton_aot.compile_op(decl)
    decl = declare(unique_id, tmp_path / "3", kernel=KERNEL.replace("def axpb", "def other"))
    with pytest.raises(OpforgeError, match="has no @triton.jit function 'axpb'"):
        triton_aot.compile_op(decl)
    # The launcher passes args= in its order: listed otherwise, every launch would swap two arguments.
    swapped = {"b": "b", "x": "x", **LAUNCH["args"]}
    decl = declare(unique_id, tmp_path / "4", args=swapped)
    with pytest.raises(OpforgeError, match=r"list args= in the kernel's parameter order"):
        triton_aot.compile_op(decl)


def test_the_launcher_embeds_the_images_and_mirrors_the_launch(unique_id, tmp_path):
    decl = declare(unique_id, tmp_path)
    aot = triton_aot.compile_op(decl)
    data, offsets = triton_launcher.blob(aot)
    for k, per_image in zip(aot.kernels, offsets):
        for im, (cubin_at, ptx_at) in zip(k.images, per_image):
            assert cubin_at % 16 == 0 and data[cubin_at : cubin_at + len(im.cubin)] == im.cubin
            end = data.index(b"\0", ptx_at)
            assert data[ptx_at:end].decode() == (im.ptx if im.portable else "")
    text = triton_launcher.generate(decl, aot, "blob.bin")
    name = f"{decl.namespace}, {decl.name}"
    assert f"OPFORGE_CUDA_KERNEL({name})" in text and '.incbin \\"blob.bin\\"' in text
    assert "opforge_p_has_b = static_cast<int32_t>" in text and "b != nullptr ? 1 : 0" in text
    assert "opforge_p_n = static_cast<int64_t>" in text  # int64= skips the int32 range check
    assert "kMaxKeys[kConfigs] = {256, -1}" in text


def test_a_tuned_table_is_embedded_and_a_stale_one_refused(unique_id, tmp_path):
    decl = declare(unique_id, tmp_path)
    path = triton_launcher.tuned_table_path(decl)
    label = decl.triton.configs[1].label()
    path.write_text(json.dumps({"entries": [{"variant": "x=float16", "bucket": 128, "config": label}]}))
    assert triton_launcher.tuned_table(decl) == {"x=float16": {128: 1}}
    text = triton_launcher.generate(decl, triton_aot.compile_op(decl), "blob.bin")
    assert "kTunedBuckets1[] = {128}" in text and "kTunedConfigs1[] = {1}" in text  # float16 is variant 1
    path.write_text(json.dumps({"entries": [{"variant": "x=float16", "bucket": 128, "config": "BLOCK=7,w4,s3"}]}))
    with pytest.raises(OpforgeError, match="no longer lists"):
        triton_launcher.tuned_table(decl)


def test_a_build_chooses_the_cuda_kernel_per_op(monkeypatch):
    decl = ops.get_op("opforge::rms_norm").decl  # both a C++ and a Triton CUDA kernel
    monkeypatch.delenv(kernel_sources.ENV, raising=False)
    assert kernel_sources.cuda_language(decl) == "cuda"
    for choice, language in (("triton", "triton"), ("opforge::rms_norm", "triton"), ("opforge::other", "cuda")):
        monkeypatch.setenv(kernel_sources.ENV, choice)
        assert kernel_sources.cuda_language(decl) == language
    monkeypatch.setenv(kernel_sources.ENV, "fast")
    with pytest.raises(OpforgeError, match="expected 'cuda', 'triton' or comma-separated op ids"):
        kernel_sources.cuda_language(decl)


@pytest.mark.skipif(cuda_home() is None, reason="nvcc is not installed: the launcher cannot be compiled here")
def test_the_launcher_compiles_and_reports_its_kernels_without_a_gpu(unique_id, tmp_path):
    """The launcher in a shared library that loads here, with no GPU driver (libcuda is dlopen'ed at the first
    launch, not linked): its manifest says what it holds, and ops.tune's config override is range-checked."""
    decl = declare(unique_id, tmp_path)
    src = kernel_sources.cuda_source(decl, tmp_path / "build")
    assert src.with_suffix(".bin").is_file()
    includes = [ops.core.paths.csrc_dir(), *kernel_include_dirs([decl], tmp_path / "build")]
    lib = tmp_path / "liblauncher.so"
    nvcc = cuda_home() / "bin" / "nvcc"
    cmd = [
        str(nvcc),
        "-std=c++17",
        "-shared",
        "-Xcompiler",
        "-fPIC",
        *(f"-I{p}" for p in includes),
        str(src),
        "-o",
        str(lib),
    ]
    done = subprocess.run(cmd, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-2000:]
    so = ctypes.CDLL(str(lib))
    manifest = getattr(so, f"opforge_triton_manifest_{decl.namespace}__{decl.name}")
    manifest.restype = ctypes.c_char_p
    held = json.loads(manifest())
    assert held["archs"] == [87, 90] and held["kernels"] == 12 and held["kernel"] == "axpb"
    force = getattr(so, f"opforge_triton_force_config_{decl.namespace}__{decl.name}")
    assert force(1) == 0 and force(2) == -1 and force(-1) == 0
    shutil.rmtree(tmp_path / "build")


SCRATCH_KERNEL = """import triton
import triton.language as tl


@triton.jit
def axpb(x, tmp, y, n, BLOCK: tl.constexpr):  # the launch's kernel name; y = 2 x through a float32 buffer
    offs = tl.program_id(0).to(tl.int64) * BLOCK + tl.arange(0, BLOCK)
    m = offs < n
    tl.store(tmp + offs, tl.load(x + offs, mask=m).to(tl.float32) * 2, mask=m)
    tl.store(y + offs, tl.load(tmp + offs, mask=m).to(y.dtype.element_ty), mask=m)
"""


def test_a_scratch_argument_is_allocated_for_the_launch_and_freed_after_it(unique_id, tmp_path):
    """ops.Scratch: the launcher sizes the buffer from its launch expression, allocates it stream-ordered after
    every check (a refused input allocates nothing) and frees it whatever the launch returns; compiled by nvcc."""
    decl = declare(
        unique_id,
        tmp_path,
        kernel=SCRATCH_KERNEL,
        args={"x": "x", "tmp": ops.Scratch("numel(x)", "float32"), "y": "y", "n": "numel(x)"},
        int64=("n",),
    )
    assert [(a.kind, a.source, a.type) for a in decl.triton.args][1] == ("scratch", "numel(x)", "*fp32")
    src = kernel_sources.cuda_source(decl, tmp_path / "build")
    text = src.read_text()
    alloc, launch, free = (
        text.index(s) for s in ("scratch_alloc(&opforge_p_tmp", "::launch(", "scratch_free(opforge_p_tmp")
    )
    assert text.index("divides by zero") < alloc < launch < free
    assert "opforge_n_tmp * 4" in text
    includes = [ops.core.paths.csrc_dir(), *kernel_include_dirs([decl], tmp_path / "build")]
    cmd = [str(cuda_home() / "bin" / "nvcc"), "-std=c++17", "-shared", "-Xcompiler", "-fPIC"]
    cmd += [*(f"-I{p}" for p in includes), str(src), "-o", str(tmp_path / "libscratch.so")]
    done = subprocess.run(cmd, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-2000:]
    ctypes.CDLL(str(tmp_path / "libscratch.so"))  # loads without a GPU driver
