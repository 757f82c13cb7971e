"""Compress a saved Keras model with LilNetX layers into one .lnx file.

Usage: lilnetx compress [flags] MODEL [OUTPUT.lnx]

MODEL is a saved Keras model: a .keras or .h5 file or a SavedModel directory. The integer
latents are range-coded (channel and slice flags, then values, with tables fitted to them);
everything else (architecture, decoders, densities, BatchNorm statistics, biases, plain layers)
is stored losslessly, or with --float16 as coded float16 (--mantissa_bits=5 keeps 5 of its 10
mantissa bits) or with --float_bits=8 as 8-bit integers and a scale per tensor.
--inference_only leaves out the densities and folds BatchNorm (the smallest file to deploy).
Prints bytes per section and per parameter group.
"""

from absl import flags

from lilnetx_tf.cli import _common

__all__ = ["main"]

_INPUT = flags.DEFINE_string("input", None, "Saved Keras model (.keras, .h5 or SavedModel dir).")
_OUTPUT = flags.DEFINE_string("output", None, "Output .lnx file (default: MODEL with .lnx).")
_FLOAT16 = flags.DEFINE_bool(
    "float16", False, "Store non-latent floats (biases, BatchNorm, plain layers) as float16 "
    "(relative error <= 2**-11), decoders included; latent steps and densities stay exact.")
_FLOAT_BITS = flags.DEFINE_integer(
    "float_bits", None, "Store those floats instead as FLOAT_BITS-bit integers (2..8) times a "
    "float32 scale per tensor: smaller, lossier; check the decompressed model's accuracy.",
    lower_bound=2, upper_bound=8)
_MANTISSA_BITS = flags.DEFINE_integer(
    "mantissa_bits", None, "With --float16: round those float16 values to MANTISSA_BITS of "
    "their 10 mantissa bits (1..10), which compresses them better.", lower_bound=1,
    upper_bound=10)
_INFERENCE_ONLY = flags.DEFINE_bool(
    "inference_only", False, "Leave out the groups' densities (only needed to train further) "
    "and fold BatchNorm to scale and shift.")
_ARCH_CODEC = flags.DEFINE_enum("architecture_codec", "lzma2", ["lzma2", "lzma", "zlib"],
                                "Compression of the Keras architecture JSON.")
_PRECISION = flags.DEFINE_integer("precision", 16, "Largest range-coder table precision in bits "
                                  "(1..16).", lower_bound=1, upper_bound=16)
_ESTIMATE = flags.DEFINE_bool("estimate", True, "Report the model's estimated latent bytes.")


@_common.handles_errors
def main(argv):
  source = _common.positional(argv, 0, _INPUT.value, "input")
  output = _OUTPUT.value or (argv[2] if len(argv) > 2 else None)
  if not output:
    output = source.rstrip("/\\")
    for suffix in (".keras", ".h5"):
      if output.endswith(suffix):
        output = output[:-len(suffix)]
    output += ".lnx"
  import lilnetx_tf as lnx
  model = _common.load_keras_model(source)
  report = lnx.compress(model, output, float16=_FLOAT16.value, float_bits=_FLOAT_BITS.value,
                        mantissa_bits=_MANTISSA_BITS.value, inference_only=_INFERENCE_ONLY.value,
                        architecture_codec=_ARCH_CODEC.value, precision=_PRECISION.value,
                        estimate=_ESTIMATE.value)
  print(report)
  return 0
