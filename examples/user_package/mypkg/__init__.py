"""An example project that uses opforge for its custom ops."""
