"""The PyTorch backend: schema, fake kernel, autograd and C++ glue, all generated from an OpDecl."""
