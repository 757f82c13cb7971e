"""Command-line interface of lilnetx_tf (`lilnetx` / `python -m lilnetx_tf`); see `main`."""
