"""Verify a .lnx file and show its bytes per section and per parameter group.

Usage: lilnetx inspect [flags] FILE.lnx

Checks every checksum, decodes the model and compares the coded latent bytes with the
self-information of the latents under the stored densities (--noestimate: only read the
file's sections, without rebuilding the model).
"""

import json

from absl import flags

from lilnetx_tf.cli import _common

__all__ = ["main"]

_INPUT = flags.DEFINE_string("input", None, "The .lnx file.")
_ESTIMATE = flags.DEFINE_bool("estimate", True,
                              "Rebuild the model and report estimated latent bytes.")
_JSON = flags.DEFINE_bool("json", False, "Print the report as JSON.")
_SAFE_MODE = _common.define_safe_mode_flag()
_MAX_PARAMETERS = flags.DEFINE_integer(
    "max_parameters", 1 << 28, "Refuse files of models with more parameters (all variables' "
    "elements) than this.", lower_bound=1)


@_common.handles_errors
def main(argv):
  source = _common.positional(argv, 0, _INPUT.value, "input")
  from lilnetx_tf.coding import model_file
  report = model_file.inspect(source, estimate=_ESTIMATE.value,
                              safe_mode=_SAFE_MODE.value,
                              max_parameters=_MAX_PARAMETERS.value)
  print(json.dumps(report.as_dict(), indent=1) if _JSON.value else report)
  return 0
