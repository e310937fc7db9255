"""What builds print (ops/native/build_output.py): progress on a terminal, nothing per step elsewhere, every command
with -v, and on failure the failing command, the first compiler error with file:line, and the rebuild hint."""

import io
import os
import subprocess
import sys

from ops.native.build_output import NinjaLog, capture_fd1, step_label

NINJA = """[1/3] c++ -MMD -MF a.o.d -O3 -c /src/csrc/rms_norm/rms_norm_cpu.cpp -o /b/rms_norm_cpu.o
[2/3] NVCC /b/obj/rms_norm_cuda.o
FAILED: /b/obj/scale_cpu.o
c++ -MMD -MF /b/obj/scale_cpu.o.d -O3 -c /src/csrc/scale/scale_cpu.cpp -o /b/obj/scale_cpu.o
In file included from /src/csrc/scale/scale_cpu.cpp:1:
/src/csrc/scale/scale_cpu.cpp:12:5: error: 'y' was not declared in this scope
   12 |     y = 1;
      |     ^
/src/csrc/scale/scale_cpu.cpp:14:1: error: expected ';'
ninja: build stopped: subcommand failed.
""".splitlines(keepends=True)


class Terminal(io.StringIO):
    def isatty(self):
        return True


def test_a_step_is_named_by_its_source_or_output():
    assert step_label(NINJA[0][6:]) == "rms_norm_cpu.cpp"
    assert step_label("NVCC /b/obj/rms_norm_cuda.o") == "NVCC rms_norm_cuda.o"
    assert step_label("c++ a.o b.o -shared -o /b/lib/libx.so") == "libx.so"


def test_not_on_a_terminal_nothing_is_printed_per_step():
    out = io.StringIO()
    log = NinjaLog(out)
    for line in NINJA:
        log.feed(line)
    log.done()
    assert out.getvalue() == ""


def test_on_a_terminal_each_step_is_one_rewritten_line_without_commands():
    out = Terminal()
    log = NinjaLog(out)
    for line in NINJA[:2]:
        log.feed(line)
    log.done()
    text = out.getvalue()
    assert "[1/3] rms_norm_cpu.cpp" in text and "[2/3] NVCC rms_norm_cuda.o" in text
    assert "-MMD" not in text and text.count("\n") == 0  # rewritten in place, never a wall of commands


def test_verbose_shows_every_command():
    out = Terminal()
    log = NinjaLog(out, verbose=True)
    for line in NINJA:
        log.feed(line)
    assert out.getvalue() == "".join(NINJA)


def test_a_failure_names_the_command_the_first_error_and_the_rebuild():
    log = NinjaLog(io.StringIO())
    for line in NINJA:
        log.feed(line)
    text = log.failure("building x._C", "python -m ops.build --package x")
    lines = text.splitlines()
    assert lines[0] == "building x._C failed"
    assert lines[1].startswith("command: c++ -MMD -MF /b/obj/scale_cpu.o.d")
    assert lines[2] == "first error:"
    assert lines[3] == "/src/csrc/scale/scale_cpu.cpp:12:5: error: 'y' was not declared in this scope"
    assert lines[-1] == "rebuild: python -m ops.build --package x (add -v for every compiler command)"


def test_output_of_child_processes_is_captured_from_descriptor_1():
    log = NinjaLog(io.StringIO())
    with capture_fd1(log):
        subprocess.run([sys.executable, "-c", "print('[1/1] c++ -c k.cpp -o k.o')"], check=True)
        os.write(1, b"direct\n")
    assert log.lines == ["[1/1] c++ -c k.cpp -o k.o", "direct"]
