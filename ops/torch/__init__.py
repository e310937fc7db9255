"""The PyTorch backend: schema, fake kernel, autograd and C++ glue, all generated from an OpDecl."""

from ..registry import on_register
from .register import register

on_register(register)  # every declaration becomes a torch op when it registers
