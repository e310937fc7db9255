"""Silencing exporter noise that has nothing to do with the user's model (shared by export and fallback)."""

import contextlib


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
