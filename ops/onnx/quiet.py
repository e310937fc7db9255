"""Silencing exporter noise that has nothing to do with the user's model (shared by export and fallback)."""

import contextlib

import torch


@contextlib.contextmanager
def quiet_dynamo_registration_log():
    """The dynamo exporter logs a WARNING per torchvision op it skips when torchvision is absent (four
    lines per export, unrelated to the model). Raise that one logger to ERROR for the export."""
    import logging

    logger = logging.getLogger("torch.onnx._internal.exporter._registration")
    level = logger.level
    logger.setLevel(logging.ERROR)
    try:
        yield
    finally:
        logger.setLevel(level)


@contextlib.contextmanager
def quiet_torchscript_log():
    """The TorchScript exporter's ONNX log is always on (torch checks the truthiness of the function
    `_jit_is_onnx_log_enabled` instead of calling it), so a failed export dumps the whole TorchScript graph
    to stdout before our one-line ExportError. Silence that log for the duration of the export only."""
    original = getattr(torch._C, "_jit_onnx_log", None)
    if original is None:
        yield
        return
    torch._C._jit_onnx_log = lambda *args: None
    try:
        yield
    finally:
        torch._C._jit_onnx_log = original
