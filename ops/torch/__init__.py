"""The PyTorch backend: schema, fake kernel, autograd and C++ glue, all generated from an OpDecl."""

from ..core.discovery import on_op_package
from ..core.registry import on_register
from . import extension
from .register import register

on_register(register)  # every declaration becomes a torch op when it registers
on_op_package(lambda package: extension.load(package, strict=False))  # and an op package loads its kernels
