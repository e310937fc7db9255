"""What a native build prints: ninja's output read line by line and turned into something a person can follow.

- on a terminal: one progress line per step, rewritten in place (`[3/8] rms_norm_cpu.cpp 2.1s`);
- elsewhere (CI logs, pipes): nothing per step; the caller prints one line per artefact;
- with `verbose`: ninja's own lines, full compiler commands included;
- on failure: the failing command, then the first compiler error with its file:line, then how to rebuild.

The torch extension is built by torch's BuildExtension, whose ninja writes straight to file descriptor 1, so
`capture_fd1` reads that descriptor through a pipe while the build runs."""

from __future__ import annotations

import contextlib
import os
import re
import sys
import threading
import time

_STEP = re.compile(r"^\[(\d+)/(\d+)\] (.*)$")
_ERROR = re.compile(r"^(?P<where>[^\s:][^:]*:\d+(?::\d+)?):? (?:fatal )?error\b.*|^(?P<nvcc>[^\s(]+\(\d+\)): error.*")
_SOURCE = re.compile(r"(?:^|\s)(?:-c\s+)?(\S+\.(?:cpp|cu|cc|c))(?:\s|$)")
_OUTPUT = re.compile(r"\s-o\s+(\S+)")


def step_label(command: str) -> str:
    """The file a ninja step works on, for a progress line: the compiled source, else the written output."""
    for pattern in (_SOURCE, _OUTPUT):
        m = pattern.search(command)
        if m:
            return os.path.basename(m.group(1))
    words = command.split()
    if len(words) == 2:  # a rule's description, e.g. "NVCC /path/to/rms_norm_cuda.o"
        return f"{words[0]} {os.path.basename(words[1])}"
    return command


class NinjaLog:
    """Feed it ninja's output lines; it shows progress (see the module) and keeps what a failure report needs."""

    def __init__(self, stream=None, verbose: bool = False):
        self.stream = stream or sys.stdout
        self.verbose = verbose
        self.tty = not verbose and hasattr(self.stream, "isatty") and self.stream.isatty()
        self.lines: list[str] = []
        self.steps = 0
        self._step_start = time.perf_counter()
        self._shown = False

    def feed(self, line: str) -> None:
        line = line.rstrip("\n")
        self.lines.append(line)
        if self.verbose:
            print(line, file=self.stream, flush=True)
            return
        m = _STEP.match(line)
        if m and self.tty:
            now = time.perf_counter()
            self.steps = int(m.group(1))
            text = f"  [{m.group(1)}/{m.group(2)}] {step_label(m.group(3))}"
            print(
                f"\r\033[K{text} ({now - self._step_start:.1f}s since the last step)",
                end="",
                file=self.stream,
                flush=True,
            )
            self._step_start, self._shown = now, True

    def done(self) -> None:
        """Ends the progress line (call once the build has finished, well or not)."""
        if self._shown:
            print("\r\033[K", end="", file=self.stream, flush=True)
            self._shown = False

    def failure(self, what: str, rebuild: str) -> str:
        """'<what> failed', the failing command, the first compiler error (file:line first), the rebuild hint."""
        failed = next((k for k, ln in enumerate(self.lines) if ln.startswith("FAILED:")), None)
        command = self.lines[failed + 1] if failed is not None and failed + 1 < len(self.lines) else ""
        error_at = next((k for k, ln in enumerate(self.lines) if _ERROR.match(ln)), None)
        if error_at is None:  # no compiler-style error line: show the end of the log instead
            excerpt = "\n".join(self.lines[-25:])
        else:
            excerpt = "\n".join(self.lines[error_at : error_at + 6])
        parts = [f"{what} failed"]
        if command:
            parts.append(f"command: {command[:2000]}")
        parts.append(f"first error:\n{excerpt}" if error_at is not None else f"log:\n{excerpt}")
        parts.append(f"rebuild: {rebuild} (add -v for every compiler command)")
        return "\n".join(parts)


@contextlib.contextmanager
def capture_fd1(log: NinjaLog):
    """Everything written to file descriptor 1 during the block (a child's output too) goes to `log.feed`;
    the log itself writes to the original descriptor 1."""
    sys.stdout.flush()
    saved = os.dup(1)
    read_end, write_end = os.pipe()
    os.dup2(write_end, 1)
    os.close(write_end)
    original = os.fdopen(os.dup(saved), "w", buffering=1)
    log.stream = original
    log.tty = not log.verbose and original.isatty()

    def pump():
        with os.fdopen(read_end, "r", errors="replace") as pipe:
            for line in pipe:
                log.feed(line)

    reader = threading.Thread(target=pump, daemon=True)
    reader.start()
    try:
        yield log
    finally:
        sys.stdout.flush()
        os.dup2(saved, 1)  # closes the pipe's last write end: the reader sees EOF
        os.close(saved)
        reader.join()
        log.done()
        original.close()
