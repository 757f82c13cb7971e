"""`python -m lilnetx_tf <command>`: the same as the `lilnetx` console script."""

from lilnetx_tf.cli.main import run

if __name__ == "__main__":
  run()
