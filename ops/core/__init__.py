"""The core of opforge that every backend builds on: the declaration model and its validation, shape rules, the
batch, dtypes, errors, the registry of declared ops, op packages and where their files go, and the C++ spelling
of declarations that every backend's generated code shares (cpp.py). It imports no backend and no tool;
backends attach themselves through `registry.on_register` and `discovery.on_op_package`."""
