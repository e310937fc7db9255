"""Exception types. User mistakes and internal failures are kept apart, so the CLIs can print a clean
message for the former and a traceback only for the latter."""

from __future__ import annotations


class OpforgeError(Exception):
    """Base class of every error opforge raises on purpose for a user to read."""


class DeclarationError(OpforgeError, ValueError):
    """A `@register_op` declaration is invalid. Raised when the decorator runs, never later."""

    def __init__(self, op: str, field: str, expected: str, got: object, fix: str):
        self.op, self.field, self.expected, self.got, self.fix = op, field, expected, got, fix
        super().__init__(f"{op}: invalid declaration field '{field}': expected {expected}, got {got!r}. Fix: {fix}")


class ShapeRuleError(OpforgeError, ValueError):
    """A shape-rule expression is malformed. Re-raised as DeclarationError with the op named."""


class ExtensionError(OpforgeError, ImportError):
    """The compiled extension `ops._C` is missing, stale, or built for another torch."""


class ExportError(OpforgeError, RuntimeError):
    """An op or model cannot be exported to ONNX as requested."""


class BuildError(OpforgeError, RuntimeError):
    """A compiler or linker failed while building: the tool ran and the build is what failed (exit status 1 of
    the CLIs, where a user's mistake is 2). The message holds the failing command and its first error."""


class BackwardNotDeclared(OpforgeError, RuntimeError):
    """A gradient was requested through an op whose declaration has no `backward` (raised by backward)."""


class BackendUnavailable(OpforgeError, ImportError):
    """An optional backend package (onnxruntime, tensorrt, ...) is not installed."""
