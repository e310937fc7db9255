"""ops/torch/build.py's link_when_changed: torch's BuildExtension forces setuptools to relink an extension on every
build (ninja decides what compiles), about a second of a no-change rebuild. With it, a link runs only when an
object is newer than the library or the link itself changed; driven here through setuptools' own compiler on a
one-function C file (milliseconds), the way build_ext calls it."""

import functools
import os
import shutil
import sys

import pytest
from setuptools._distutils.ccompiler import new_compiler
from setuptools._distutils.errors import LinkError
from setuptools._distutils.sysconfig import customize_compiler

from ops.torch.build import extension, link_when_changed

pytestmark = pytest.mark.skipif(shutil.which("cc") is None and shutil.which("gcc") is None, reason="no C compiler")


@pytest.fixture
def setup(tmp_path):
    compiler = new_compiler(force=True)  # as torch's BuildExtension leaves it: force on
    customize_compiler(compiler)
    calls = []
    real = compiler.link

    @functools.wraps(real)  # keeps link's signature, which link_when_changed binds the call to
    def counted(*args, **kwargs):
        calls.append(args[2])
        return real(*args, **kwargs)

    compiler.link = counted
    link_when_changed(compiler)
    (tmp_path / "a.c").write_text("int opforge_a(void) { return 1; }\n")
    (tmp_path / "b.c").write_text("int opforge_b(void) { return 2; }\n")
    temp = tmp_path / "temp"
    objects = compiler.compile([str(tmp_path / "a.c"), str(tmp_path / "b.c")], output_dir=str(temp))
    out = tmp_path / "lib" / "libx.so"

    def link(objs=objects, **kwargs):  # what build_ext.build_extension passes
        kwargs.setdefault("build_temp", str(temp))
        compiler.link_shared_object(objs, str(out), **kwargs)
        return out.stat().st_mtime_ns

    return compiler, calls, link, objects, out, temp


def test_an_unchanged_link_is_skipped(setup):
    _, calls, link, _, out, temp = setup
    first = link()
    assert len(calls) == 1 and out.is_file()
    assert link() == first and len(calls) == 1  # nothing new: the library is left as it is
    assert sorted(p.name for p in temp.glob("*.link")) == ["libx.so.link"]
    assert not list(out.parent.glob("*.json"))  # nothing beside the library (build_lib is what an install ships)


def test_a_newer_object_relinks(setup):
    _, calls, link, objects, out, _ = setup
    first = link()
    earlier = first - 10 * 10**9
    os.utime(out, ns=(earlier, earlier))  # ninja recompiled an object after the last link
    assert os.stat(objects[1]).st_mtime_ns > earlier
    link()
    assert len(calls) == 2
    link()
    assert len(calls) == 2


@pytest.mark.parametrize(
    "change",
    [
        {"objs": "first only"},  # an op removed: fewer objects, all of them older than the library
        {"extra_postargs": ["-lm"]},
        {"libraries": ["m"]},
        {"runtime_library_dirs": ["/opt/x"]},
    ],
    ids=["objects", "extra_postargs", "libraries", "rpath"],
)
def test_a_changed_link_relinks(setup, change):
    _, calls, link, objects, _, _ = setup
    link()
    if change.get("objs") == "first only":
        change = {"objs": objects[:1]}
    link(**change)
    assert len(calls) == 2
    link(**change)
    assert len(calls) == 2
    link()  # and back
    assert len(calls) == 3


def test_a_missing_library_or_object_relinks(setup):
    _, calls, link, _, out, _ = setup
    link()
    out.unlink()
    link()
    assert len(calls) == 2 and out.is_file()


def test_a_library_another_link_wrote_is_relinked(setup):
    """Same objects, same options, but the file is not the one this link made (an older opforge linked it)."""
    _, calls, link, _, out, _ = setup
    first = link()
    out.write_bytes(out.read_bytes() + b"\0")
    os.utime(out, ns=(first, first))
    link()
    assert len(calls) == 2


def test_a_failed_link_is_retried(setup):
    compiler, calls, link, objects, out, temp = setup
    link()
    broken = compiler.linker_so
    compiler.linker_so = ["false"]
    with pytest.raises(LinkError):
        link(extra_postargs=["-lm"])
    assert not (temp / "libx.so.link").exists()
    compiler.linker_so = broken
    link()  # the same link as before the failure, but its record is gone: it runs again
    assert len(calls) == 3


def test_without_build_temp_every_link_runs(setup):
    _, calls, link, _, _, _ = setup
    link(build_temp=None)
    link(build_temp=None)
    assert len(calls) == 2


def test_the_extension_links_without_debug_info():
    """Python's CFLAGS carry -g: without these flags a 20-op extension was 36 MB, 34 of them DWARF, and its link three
    times the 1-op package's. -g0 (after Python's -g, so it wins) keeps DWARF out of the objects too, which also
    cut make demo's compile CPU time (62 -> 46 s); --strip-debug covers objects compiled before it. The ONNX
    Runtime and TensorRT libraries have none either."""
    ext = extension("ops.library", with_cuda=False)
    assert ext.extra_link_args[-1:] == (["-Wl,--strip-debug"] if sys.platform.startswith("linux") else [])
    assert [a for a in ext.extra_compile_args if a.startswith("-g")] == ["-g0"]
