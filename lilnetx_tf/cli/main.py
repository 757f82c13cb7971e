"""lilnetx: command-line tools for LilNetX models.

Usage: lilnetx <command> [flags] [args]      (or: python -m lilnetx_tf <command> ...)
       lilnetx <command> --help              flags of one command

How commands are found (the pattern for adding one, e.g. `export`):
  Every module `lilnetx_tf/cli/<name>.py` whose name does not start with "_" (and is not
  `main`) is the command `<name>`; nothing needs registering here. A command module
    - starts with a docstring: its first line is the summary `lilnetx --help` lists, the whole
      docstring heads `lilnetx <name> --help`;
    - defines its absl flags at module level (the module is imported only when its command runs,
      so two commands may define flags with the same name);
    - defines `main(argv: list[str]) -> int | None`, which absl.app.run calls with the positional
      arguments in argv[1:]; wrap it with `lilnetx_tf.cli._common.handles_errors` so library errors
      print as one line and exit with status 1 instead of a traceback.
  Shared helpers (loading models, quieting TF) live in `lilnetx_tf/cli/_common.py`.
"""

import ast
import importlib
import os
import pkgutil
import sys
from typing import Optional

__all__ = ["commands", "overview", "run"]

PROG = "lilnetx"
_NOT_COMMANDS = ("main",)


def commands() -> dict:
  """Command name -> (module name, one-line summary), read without importing the modules."""
  directory = os.path.dirname(os.path.abspath(__file__))
  found = {}
  for info in pkgutil.iter_modules([directory]):
    if info.name.startswith("_") or info.name in _NOT_COMMANDS or info.ispkg:
      continue
    try:
      with open(os.path.join(directory, info.name + ".py"), encoding="utf-8") as handle:
        doc = ast.get_docstring(ast.parse(handle.read())) or ""
    except (OSError, SyntaxError):
      doc = ""
    found[info.name] = (f"{__package__}.{info.name}", doc.strip().splitlines()[0] if doc else "")
  return dict(sorted(found.items()))


def overview() -> str:
  lines = [__doc__.split("\n\n")[0], "", "Usage: lilnetx <command> [flags] [args]", "",
           "Commands:"]
  found = commands()
  width = max((len(n) for n in found), default=0)
  for name, (_, summary) in found.items():
    lines.append(f"  {name.ljust(width)}  {summary}")
  lines += ["", "Run `lilnetx <command> --help` for the flags of a command."]
  return "\n".join(lines)


def _command_help(name: str, module) -> str:
  from absl import flags
  text = [(module.__doc__ or "").strip(), ""]
  flag_help = flags.FLAGS.module_help(module)
  if flag_help:
    text += ["Flags:", flag_help]
  return "\n".join(text)


def run(argv: Optional[list] = None) -> None:
  """Entry point of the `lilnetx` console script and of `python -m lilnetx_tf`."""
  argv = list(sys.argv if argv is None else argv)
  if len(argv) < 2 or argv[1] in ("-h", "--help", "-help", "help", "--helpshort"):
    print(overview())
    sys.exit(0 if len(argv) >= 2 else 2)
  name, rest = argv[1], argv[2:]
  found = commands()
  if name not in found:
    print(f"{PROG}: unknown command {name!r}\n\n{overview()}", file=sys.stderr)
    sys.exit(2)
  module = importlib.import_module(found[name][0])
  if any(a in ("-h", "--help", "-help", "--helpshort") for a in rest):
    print(_command_help(name, module))
    sys.exit(0)
  from absl import app
  from lilnetx_tf.cli import _common
  _common.start_runtime_quietly()
  app.run(module.main, argv=[f"{PROG} {name}"] + rest)


if __name__ == "__main__":
  run()
