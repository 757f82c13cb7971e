"""`compress(model, path)`, `decompress(path)` and `inspect(path)`: the `.lnx` model file.

Sections (see `container` for the byte layout around them):

  ARCH  JSON {"format": "keras-json/2", "lilnetx_tf": version, "model": Keras config}, without
        the layer arguments Keras fills in anyway, the build configs a graph model rebuilds
        without, and layer config names that repeat the graph entry's name (`architecture`;
        "keras-json" files keep the names); raw LZMA2.
  WGTS  every tensor of the model's state (`model_state`: its variables and its lookup layers'
        vocabularies) except the LilNetX latents and the groups' training state (the density's
        Adam moments and step count, reset to zero on loading), in `model.weights` order
        (`weights_section`): u32 manifest length | manifest JSON [[shape, dtype, stored], ...] |
        the tensors' little-endian bytes, concatenated. A vocabulary of strings is stored as
        [shape, "string", "bytes"]: each string's u32 length, then the strings' bytes; one of
        integers as an int64 tensor. A tensor whose elements are all equal is stored as
        [shape, dtype, "fill", value] and no bytes. Float32 is stored losslessly, or
        (``float16=True``) as [shape, dtype, "f16c", m]: float16 with m mantissa bits, all
        such tensors coded together (`float_code`) after the other tensors' bytes ("float16"
        raw for a tensor with values float16 cannot hold), or (``float_bits=b``) as
        [shape, dtype, "int", b, scale] with b-bit codes c in [−(2**(b−1) − 1), 2**(b−1) − 1],
        value c · scale, packed big-endian; each group's latent step and density are always
        exact. Stored raw, zlib or lzma2, whichever is smallest (as are GRPS and CDFT).
  GRPS  JSON (`groups_section`): "densities" (whether WGTS holds the groups' densities) and one
        entry per parameter group: [key, slice size, member layers, latents, table bytes, string
        bytes]. The members and their shapes come from the architecture, in the order of
        `model.layers`.
  CDFT  the groups' entropy tables (`entropy.tables_to_bytes`), concatenated: the empirical
        frequencies of their channel and slice flags and of their values (`latent_code`).
  LATS  the groups' range-coded strings (`latent_code`), concatenated; raw.

Range coding (LATS and coded float16): format 6 uses `entropy`'s coder, bit-identical on every
stack. Format 5 files were coded with tensorflow-compression's; they decode where it is
installed (`tfc_range`, the TF 2.14 configuration), and `upgrade` rewrites them in format 6.

Float16 tolerance: each float16-stored value w16 satisfies |w16 − w| <= 2**-11·|w| for
|w| >= 2**-14 and |w16 − w| <= 2**-25 otherwise; a tensor with values outside float16's range
is kept as float32. With ``mantissa_bits=m`` (< 10) the float16 values are further rounded to m
mantissa bits (another relative error of at most 2**-(m+1) for normal float16 values), and only
those m bits are stored.

``inference_only=True`` writes what inference needs and nothing more: the groups' densities are
left out (the fitted tables decode the latents; a decompressed model starts its densities afresh,
so fit it further only after `lnx.fit_densities`), and each BatchNormalization layer with
center and scale is folded to scale (in gamma) and shift (in beta) over a zero mean and a unit
variance (mean and variance stored as fills), which computes the same function at inference;
and the parameters of channels that never reach an output (`unread`) are stored as zeros.

Decompressing (`reader`) rebuilds the model from its config (which recreates the group sharing),
loads the float weights and vocabularies, decodes each group's latents with its stored table and sets every latent
variable to q · latent_step, so the decoded kernels, hence predictions, are bit-identical.
"""

import math
import os
from typing import Optional

import numpy as np
import tensorflow as tf

from lilnetx_tf import _compat
from lilnetx_tf import atomic
from lilnetx_tf import errors
from lilnetx_tf import validation
from lilnetx_tf.analysis import batchnorm
from lilnetx_tf.analysis import graph
from lilnetx_tf.coding import architecture
from lilnetx_tf.coding import container
from lilnetx_tf.coding import entropy
from lilnetx_tf.coding import groups_section
from lilnetx_tf.coding import reader
from lilnetx_tf.coding import unread
from lilnetx_tf.coding import weights_section
from lilnetx_tf.coding.reader import DEFAULT_MAX_PARAMETERS
from lilnetx_tf.coding.report import GroupReport, Report, SectionReport
from lilnetx_tf.layers import lilnetx_layers

__all__ = ["SUFFIX", "DEFAULT_MAX_PARAMETERS", "compress", "decompress", "inspect", "upgrade"]

SUFFIX = ".lnx"


def _check_model(model) -> None:
  _compat.check_keras2_model(model, "lnx.compress")
  if not isinstance(model, tf.keras.Model):
    raise errors.InvalidArgumentError(f"Expected a tf.keras.Model, got {type(model).__name__}.")
  graph.check_graph_model(model, need_input=False)   # rebuilt from its config
  if not model.built or not model.weights:
    raise errors.InvalidArgumentError(
        "The model is not built: call it on data or build it with an input shape first.")


def _check_options(architecture_codec, precision, float16, float_bits, mantissa_bits,
                   inference_only) -> tuple:
  """The `compress` options, checked: (precision, float16, float_bits, mantissa_bits,
  inference_only)."""
  if architecture_codec not in container.CODECS:
    raise errors.InvalidArgumentError(f"architecture_codec must be one of "
                                      f"{list(container.CODECS)}, got {architecture_codec!r}.")
  precision = validation.int_in_range("precision", precision, 1, 16)
  float16 = validation.boolean("float16", float16)
  inference_only = validation.boolean("inference_only", inference_only)
  if float_bits is not None:
    float_bits = validation.int_in_range("float_bits", float_bits, 2, 8)
    if float16:
      raise errors.InvalidArgumentError("float_bits cannot be combined with float16=True.")
  if mantissa_bits is not None:
    mantissa_bits = validation.int_in_range("mantissa_bits", mantissa_bits, 1, 10)
    if not float16:
      raise errors.InvalidArgumentError("mantissa_bits needs float16=True.")
  return precision, float16, float_bits, mantissa_bits, inference_only


def _output_path(path) -> str:
  """`path` with the `.lnx` suffix, checked to name a file (or a link to one) in an existing
  directory."""
  if not isinstance(path, (str, os.PathLike)):
    raise errors.InvalidArgumentError(f"`path` must be a file path, got {path!r}.")
  path = os.fspath(path)
  if not os.path.basename(path) or os.path.isdir(path):
    raise errors.OutputPathError(f"Cannot write {path}: it names a directory, not a file.")
  path = path if path.endswith(SUFFIX) else path + SUFFIX
  target = atomic.resolve(path)
  if os.path.isdir(target):
    raise errors.OutputPathError(f"Cannot write {path}: it is a directory.")
  directory = os.path.dirname(target)
  if not os.path.isdir(directory):
    raise errors.OutputPathError(f"Cannot write {path}: {directory} is not a directory.")
  return path


def _check_finite(tensors: list, stored: Optional[dict] = None) -> None:
  """Refuses NaN and infinities in `tensors` (or in the values `stored` for them, e.g.
  folded): a decoded model would compute NaN (and the reader refuses them too)."""
  for tensor in tensors:
    values = tensor.value() if stored is None else stored.get(id(tensor.source))
    if values is not None and values.dtype.kind == "f" and not np.all(np.isfinite(values)):
      bad = int(np.count_nonzero(~np.isfinite(values)))
      raise errors.InvalidArgumentError(
          f"Variable {tensor.name} of {tensor.owner}: {bad} of {values.size} "
          f"{'values' if stored is None else 'values to store'} are NaN or infinite; a model "
          "file stores finite values only (check the training for divergence).")


def _architecture(model) -> bytes:
  config = architecture.encode(model)
  if len(config) > architecture.MAX_BYTES:
    raise errors.UnsupportedLayerError(
        f"The model's architecture takes {len(config):,} bytes of JSON, more than a reader "
        f"accepts ({architecture.MAX_BYTES:,}).")
  return config


def _report(path: str, total_bytes: int, header_bytes: int, stored: list, groups: list,
            weight_count: int, **options) -> Report:
  latent_count = sum(g.parameters for g in groups)
  return Report(path=path, total_bytes=total_bytes, header_bytes=header_bytes,
                sections=[SectionReport(s.tag, s.codec, s.raw_bytes, s.total_bytes)
                          for s in stored],
                groups=groups, parameters=weight_count + latent_count,
                latent_parameters=latent_count, **options)


def compress(model: tf.keras.Model, path: str, *, float16: bool = False,
             float_bits: Optional[int] = None, mantissa_bits: Optional[int] = None,
             inference_only: bool = False, architecture_codec: str = "lzma2",
             precision: int = entropy.DEFAULT_PRECISION,
             estimate: bool = True) -> Report:
  """Writes `model` (Functional or Sequential, built) to one `.lnx` file at `path`.

  Args:
    model: A built Keras model with LilNetX layers (plain Keras layers are stored too).
    path: Output path; `.lnx` is appended when missing. Written atomically (`atomic`), through
      a symlink.
    float16: Store the non-latent floats (decoders, biases, BatchNorm, plain layers) as
      float16, except each group's latent step and density (see module docstring).
    float_bits: Store those floats instead as `float_bits`-bit integers (2..8) times one
      float32 scale per tensor: smaller and lossier than float16; check the decompressed
      model's accuracy. Exclusive with `float16`.
    mantissa_bits: With `float16`: round those float16 values to this many (1..10) of their
      10 mantissa bits and store only those (5 kept a CIFAR-10 ResNet-20's accuracy; check
      the decompressed model's).
    inference_only: Leave out the groups' densities and fold BatchNorm to scale and shift:
      the smallest file for deployment (see module docstring). The decompressed model
      predicts the same, but its BatchNorm layers compute another function in training mode
      (batch statistics): train further from a full file.
    architecture_codec: "lzma2" (raw LZMA2), "lzma" (xz), "zlib" or "raw" for the Keras
      config.
    precision: Range-coder precision in bits (1..16) of the entropy tables.
    estimate: Also compute the model's estimated self-information per group for the report.

  Returns:
    A `Report` of bytes per section and per group.
  """
  _check_model(model)
  precision, float16, float_bits, mantissa_bits, inference_only = _check_options(
      architecture_codec, precision, float16, float_bits, mantissa_bits, inference_only)
  path = _output_path(path)
  layers = lilnetx_layers(model)
  exact_ids = {id(v) for group, _ in groups_section.groups_of(layers)
               for v in (group.latent_step, *group.density_variables)}
  tensors = weights_section.stored_tensors(model, layers, densities=not inference_only)
  _check_finite(tensors)
  stored = unread.zero_unread(model, batchnorm.folded_variables(model)) if inference_only else {}
  _check_finite(tensors, stored)
  weights, weight_count = weights_section.encode(
      tensors, stored, exact_ids, float16, float_bits,
      10 if mantissa_bits is None else mantissa_bits)
  groups = groups_section.encode(layers, stored, not inference_only, precision, estimate)
  sections = [
      container.Section("ARCH", _architecture(model), architecture_codec),
      container.Section("WGTS", weights, container.SMALLEST),
      container.Section("GRPS", groups.grps, container.SMALLEST),
      container.Section("CDFT", groups.cdft, container.SMALLEST),
      container.Section("LATS", groups.lats, "raw"),
  ]
  blob = container.encode(sections, architecture.parameter_count(model))
  atomic.write_file(path, blob)
  return _report(path, len(blob), container.FILE_HEADER_SIZE,
                 container.decode(blob, path).sections, groups.reports, weight_count,
                 float16=float16, float_bits=float_bits, mantissa_bits=mantissa_bits,
                 inference_only=inference_only)


def decompress(path: str, custom_objects: Optional[dict] = None, safe_mode: bool = True,
               max_parameters: int = DEFAULT_MAX_PARAMETERS) -> tf.keras.Model:
  """Reads a `.lnx` file and returns the Keras model, with bit-identical decoded weights.

  Opening a file from anyone is safe with the defaults: the architecture may only name Keras
  built-in layers, this library's and `custom_objects` (checked before Keras sees it, see
  `architecture_guard`), its graph must be one Keras can rebuild, and nothing is allocated
  beyond the parameters the file declares, which must match its architecture and be at most
  `max_parameters` (default `DEFAULT_MAX_PARAMETERS`, about 1 GiB of float32).

  Args:
    path: The `.lnx` file (a regular file).
    custom_objects: Classes (and functions) of custom layers, by name, as in
      `tf.keras.models.load_model`.
    safe_mode: `False` (a bool) lets the architecture name any module, function or `Lambda`
      layer, whose code then runs: only for files you trust.
    max_parameters: The largest model (elements of all its variables) to open.

  Raises:
    errors.ModelFileError: the file is truncated, corrupt, of another format version,
      assembled from sections of different files, names code it may not, declares more than
      `max_parameters`, or holds values no writer stores (non-finite weights, negative
      variances). `errors.ModelFileNotFoundError` if there is no file at `path`.
  """
  max_parameters = reader.check_arguments(custom_objects, safe_mode, max_parameters)
  return reader.read(path, custom_objects, safe_mode, max_parameters).model


def inspect(path: str, estimate: bool = True, custom_objects: Optional[dict] = None,
            safe_mode: bool = True, max_parameters: int = DEFAULT_MAX_PARAMETERS) -> Report:
  """Verifies a `.lnx` file and reports its bytes per section and per parameter group.

  With `estimate` and a file that holds the densities (not `inference_only`), the model is
  decompressed (`custom_objects`, `safe_mode` and `max_parameters` as in `decompress`) and
  the latents' self-information under its densities is reported next to the coded bytes.
  """
  estimate = validation.boolean("estimate", estimate)
  max_parameters = reader.check_arguments(custom_objects, safe_mode, max_parameters)
  by_tag, contents = reader.sections(path, max_parameters)
  path = os.fspath(path)
  densities, manifest = groups_section.parse(by_tag["GRPS"])
  estimates = [None] * len(manifest)
  if estimate and densities:
    decoded = reader.read(path, custom_objects, safe_mode, max_parameters).groups
    estimates = [entropy.estimated_bits(g, latents) / 8 for _, g, latents in decoded]
  entries, _ = weights_section.manifest(weights_section.manifest_bytes(by_tag["WGTS"]),
                                        contents.parameters)
  float16, mantissa_bits, float_bits = weights_section.lossy_options(entries)
  groups = [GroupReport(g["key"], g["slice_size"], g["layers"], g["latents"], g["string_bytes"],
                        g["table_bytes"], est)
            for g, est in zip(manifest, estimates)]
  total = contents.header_bytes + sum(s.total_bytes for s in contents.sections)
  return _report(path, total, contents.header_bytes, contents.sections, groups,
                 sum(math.prod(shape) for shape, *_ in entries), float16=float16,
                 float_bits=float_bits, mantissa_bits=mantissa_bits,
                 inference_only=not densities)


def upgrade(source: str, destination: str, custom_objects: Optional[dict] = None,
            safe_mode: bool = True) -> Report:
  """Rewrites the `.lnx` file `source` in the current format at `destination`.

  The model is decompressed and compressed again with the options the file was written with
  (float16 and its mantissa bits, float bits, inference only): its latents come back
  bit-identical, and so do its floats, except that a lossy float code (`mantissa_bits`,
  `float_bits`) rounds the decoders of a file written before layer config version 2 once more,
  as they are now stored relative to the latent step. Format 5 files need tensorflow-compression to be read, i.e. the
  TF 2.14 configuration; the upgraded file reads on every stack.
  """
  options = inspect(source, estimate=False)
  model = decompress(source, custom_objects, safe_mode)
  return compress(model, destination, float16=options.float16, float_bits=options.float_bits,
                  mantissa_bits=options.mantissa_bits, inference_only=options.inference_only)
