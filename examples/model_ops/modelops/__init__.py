"""An example project whose ops come from real models (see pyproject.toml)."""
