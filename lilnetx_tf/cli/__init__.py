"""Command-line interface of lilnetx_tf (`lilnetx` / `python -m lilnetx_tf`); see `main`."""

__all__ = []   # the commands are modules that `lilnetx_tf.cli.main` runs
