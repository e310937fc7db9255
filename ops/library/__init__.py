"""The built-in ops, one declaration module each. Every module here is imported by `ops` on import;
adding an op means adding a module here and its kernels under csrc/<name>/ — nothing else."""
