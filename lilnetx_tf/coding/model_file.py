"""`compress(model, path)`, `decompress(path)` and `inspect(path)`: the `.lnx` model file.

Sections (see `container` for the byte layout around them):

  ARCH  JSON {"format": "keras-json/2", "lilnetx_tf": version, "model": Keras config}, without
        the layer arguments Keras fills in anyway, the build configs a graph model rebuilds
        without, and layer config names that repeat the graph entry's name (`architecture`;
        "keras-json" files keep the names); raw LZMA2.
  WGTS  every model variable except the LilNetX latents and the groups' training state (the
        density's Adam moments and step count, reset to zero on loading), in `model.weights` order:
        u32 manifest length | manifest JSON [[shape, dtype, stored], ...] | the tensors'
        little-endian bytes, concatenated. A tensor whose elements are all equal is stored as
        [shape, dtype, "fill", value] and no bytes. Float32 is stored losslessly, or
        (``float16=True``) as [shape, dtype, "f16c", m]: float16 with m mantissa bits, all
        such tensors coded together (`float_code`) after the other tensors' bytes ("float16"
        raw for a tensor with values float16 cannot hold), or (``float_bits=b``) as
        [shape, dtype, "int", b, scale] with b-bit codes c in [−(2**(b−1) − 1), 2**(b−1) − 1],
        value c · scale, packed big-endian; each group's latent step and density are always
        exact. Stored raw, zlib or lzma2, whichever is smallest (as are GRPS and CDFT).
  GRPS  JSON: "densities" (whether WGTS holds the groups' densities) and one entry per parameter
        group: [key, slice size, member layers, latents, table bytes, string bytes]. The members
        and their shapes come from the architecture, in the order of `model.layers`.
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

Decompressing rebuilds the model from its config (which recreates the group sharing), loads
the float weights, decodes each group's latents with its stored table and sets every latent
variable to q · latent_step, so the decoded kernels, hence predictions, are bit-identical.
"""

import json
import math
import os
import struct
from typing import Optional

import numpy as np
import tensorflow as tf

from lilnetx_tf import _compat
from lilnetx_tf.analysis import batchnorm
from lilnetx_tf import atomic
from lilnetx_tf.coding import architecture
from lilnetx_tf.coding import container
from lilnetx_tf.coding import entropy
from lilnetx_tf.coding import float_code
from lilnetx_tf.coding import latent_code
from lilnetx_tf.coding.report import GroupReport, Report, SectionReport
from lilnetx_tf.coding import unread
from lilnetx_tf import errors
from lilnetx_tf.layers import group as group_lib
from lilnetx_tf.layers import lilnetx_layers
from lilnetx_tf import validation

SUFFIX = ".lnx"
_FILL = "fill"
_QUANTIZED = "int"
_CODED_FLOAT16 = "f16c"
_REQUIRED = ("ARCH", "WGTS", "GRPS", "CDFT", "LATS")
_DTYPES = {"float32": "<f4", "float16": "<f2", "float64": "<f8", "int64": "<i8",
           "int32": "<i4", "int8": "<i1", "uint8": "u1", "bool": "?"}
_FLOAT16_MAX = 65504.0
_FLOAT32_MAX = float(np.finfo(np.float32).max)
# A reader allocates in proportion to the parameters a file declares; this default (about
# 1 GiB of float32) opens any LilNetX or common Keras model and keeps a hostile file's cost
# bounded. Pass `max_parameters=` to open larger models.
DEFAULT_MAX_PARAMETERS = 1 << 28
_MAX_JSON_BYTES = 1 << 24      # the GRPS section and the WGTS manifest (a few KB in practice)


def _groups(layers: list) -> list:
  """Distinct parameter groups in order of their first member, each with its
  (index among `layers`, layer) members."""
  index = {id(layer): i for i, layer in enumerate(layers)}
  return [(group, [(index[id(layer)], layer) for layer in members])
          for group, members in group_lib.members_by_group(layers)]


def _check_model(model) -> None:
  _compat.check_keras2_model(model, "lnx.compress")
  if not isinstance(model, tf.keras.Model):
    raise errors.InvalidArgumentError(f"Expected a tf.keras.Model, got {type(model).__name__}.")
  if not (isinstance(model, tf.keras.Sequential) or getattr(model, "_is_graph_network", False)):
    raise errors.UnsupportedLayerError(
        f"{type(model).__name__} is a subclassed Keras model: its architecture cannot be "
        "rebuilt from a config. Build the same network with the Functional API "
        "(tf.keras.Model(inputs, outputs)) or tf.keras.Sequential, copy the weights over "
        "(set_weights), and compress that model.")
  if not model.built or not model.weights:
    raise errors.InvalidArgumentError(
        "The model is not built: call it on data or build it with an input shape first.")


def _float16_ok(values: np.ndarray) -> bool:
  return values.dtype == np.float32 and bool(np.all(np.abs(values) <= _FLOAT16_MAX))


def _stored_variables(model, layers: list, densities: bool) -> list:
  """The variables WGTS holds: all but the latents, the groups' training state and, unless
  `densities`, the groups' densities."""
  skipped = {id(l.latent_variable) for l in layers}
  for group, _ in _groups(layers):
    skipped |= {id(v) for v in group.training_state}
    if not densities:
      skipped |= {id(v) for v in group.density_variables}
  return [v for v in model.weights if id(v) not in skipped]


def _fill_value(values: np.ndarray):
  """The common value of a constant tensor (bit-exact; values are finite), else None."""
  if values.size < 2 or values.dtype.kind not in "fiub":
    return None
  first = values.reshape(-1)[:1]
  if values.tobytes() != np.broadcast_to(first, values.shape).tobytes():
    return None
  return first[0].item()


def _quantize(values: np.ndarray, bits: int) -> tuple[np.float32, np.ndarray]:
  """(scale, codes): values ≈ codes · scale with integer |codes| <= 2**(bits−1) − 1."""
  top = (1 << (bits - 1)) - 1
  peak = np.max(np.abs(values))   # 0 for a zero scalar, e.g. an untrained dense decoder's ρ
  scale = np.float32(peak / np.float32(top)) if peak > 0 else np.float32(1)
  return scale, np.clip(np.round(values / scale), -top, top).astype(np.int64)


def _dequantize(codes: np.ndarray, scale: float) -> np.ndarray:
  return codes.astype(np.float32) * np.float32(scale)


def _pack(codes: np.ndarray, bits: int) -> bytes:
  """Codes in [−top, top] as `bits`-bit unsigned integers, big-endian bit order."""
  unsigned = codes.reshape(-1) + ((1 << (bits - 1)) - 1)
  planes = (unsigned[:, None] >> np.arange(bits - 1, -1, -1)) & 1
  return np.packbits(planes.astype(np.uint8).reshape(-1)).tobytes()


def _unpack(data: bytes, count: int, bits: int) -> np.ndarray:
  planes = np.unpackbits(np.frombuffer(data, np.uint8), count=count * bits).reshape(count, bits)
  unsigned = planes.astype(np.int64) @ (1 << np.arange(bits - 1, -1, -1))
  top = (1 << (bits - 1)) - 1
  if np.any(unsigned > 2 * top):
    raise errors.ModelFileError("The WGTS section holds an invalid quantized value.")
  return unsigned - top


def _owners(model, layers: list) -> dict:
  """id(variable) → what holds it: the innermost layer, or the parameter group and its
  members."""
  owners = {}
  for layer in model._flatten_layers(include_self=False):   # outer layers before inner ones
    for variable in layer.weights:
      owners[id(variable)] = f"layer {layer.name!r}"
  for group, members in group_lib.members_by_group(layers):
    for variable in group.weights:
      owners[id(variable)] = (f"the parameter group of layer(s) "
                              f"{', '.join(repr(l.name) for l in members)}")
  return owners


def _check_finite(owners: dict, variables: list, stored: Optional[dict] = None) -> None:
  """Refuses NaN and infinities in `variables` (or in the values `stored` for them, e.g.
  folded): a decoded model would compute NaN (and the reader refuses them too)."""
  for variable in variables:
    values = variable.numpy() if stored is None else stored.get(id(variable))
    if values is not None and values.dtype.kind == "f" and not np.all(np.isfinite(values)):
      bad = int(np.count_nonzero(~np.isfinite(values)))
      raise errors.InvalidArgumentError(
          f"Variable {variable.name} of {owners.get(id(variable), 'the model')}: {bad} of "
          f"{values.size} {'values' if stored is None else 'values to store'} are NaN or "
          "infinite; a model file stores finite values only (check the training for "
          "divergence).")


def _weights_section(variables: list, values_of: dict, exact_ids: set, float16: bool,
                     float_bits: Optional[int], mantissa_bits: int) -> tuple:
  manifest, blobs, coded, count = [], [], [], 0
  for variable in variables:
    values = values_of[id(variable)] if id(variable) in values_of else variable.numpy()
    dtype = variable.dtype.name
    if dtype not in _DTYPES:
      raise errors.UnsupportedLayerError(
          f"Variable {variable.name} has dtype {dtype}, which the model file cannot store.")
    count += values.size
    fill = _fill_value(values)
    if fill is not None:
      manifest.append([list(values.shape), dtype, _FILL, fill])
      continue
    lossy = id(variable) not in exact_ids and _float16_ok(values)
    if float_bits and lossy:
      scale, codes = _quantize(values, float_bits)
      manifest.append([list(values.shape), dtype, _QUANTIZED, float_bits, scale.item()])
      blobs.append(_pack(codes, float_bits))
      continue
    if float16 and lossy:
      half = float_code.round_mantissa(values.astype(np.float16), mantissa_bits)
      if np.all(np.isfinite(half)):
        manifest.append([list(values.shape), dtype, _CODED_FLOAT16, mantissa_bits])
        coded.append(half.reshape(-1))
        continue
      manifest.append([list(values.shape), dtype, "float16"])
      blobs.append(half.astype(_DTYPES["float16"]).tobytes())
      continue
    manifest.append([list(values.shape), dtype, dtype])
    blobs.append(np.ascontiguousarray(values.astype(_DTYPES[dtype])).tobytes())
  if coded:
    blobs.append(float_code.encode(np.concatenate(coded), mantissa_bits))
  head = json.dumps(manifest, separators=(",", ":")).encode()
  return struct.pack("<I", len(head)) + head + b"".join(blobs), count


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
  path = _output_path(path)
  layers = lilnetx_layers(model)
  groups = _groups(layers)
  exact_ids = {id(v) for group, _ in groups for v in (group.latent_step, *group.density_variables)}
  variables = _stored_variables(model, layers, densities=not inference_only)
  owners = _owners(model, layers)
  _check_finite(owners, variables)
  stored = unread.zero_unread(model, batchnorm.folded_variables(model)) if inference_only else {}
  _check_finite(owners, variables, stored)
  weights, weight_count = _weights_section(
      variables, stored, exact_ids, float16, float_bits,
      10 if mantissa_bits is None else mantissa_bits)

  manifest, tables, strings, group_reports = [], [], [], []
  for group, members in groups:
    latents = []
    for _, layer in members:
      q = stored.get(id(layer.latent_variable))
      q = layer.integer_latent.numpy() if q is None else q
      entropy.check_integers(q, layer.name)
      latents.append(q)
    table_bytes, string = latent_code.encode_group(latents, group.slice_size, precision)
    tables.append(table_bytes)
    strings.append(string)
    manifest.append([layer.group_key, group.slice_size, len(members),
                     sum(q.size for q in latents), len(table_bytes), len(string)])
    estimated = entropy.estimated_bits(group, latents) / 8 if estimate else None
    group_reports.append(GroupReport(layer.group_key, group.slice_size, len(members),
                                     sum(q.size for q in latents), len(string), len(table_bytes),
                                     estimated))
  groups_json = json.dumps({"densities": not inference_only, "groups": manifest},
                           separators=(",", ":")).encode()
  config = architecture.encode(model)
  if len(config) > architecture.MAX_BYTES:
    raise errors.UnsupportedLayerError(
        f"The model's architecture takes {len(config):,} bytes of JSON, more than a reader "
        f"accepts ({architecture.MAX_BYTES:,}).")
  sections = [
      container.Section("ARCH", config, architecture_codec),
      container.Section("WGTS", weights, container.SMALLEST),
      container.Section("GRPS", groups_json, container.SMALLEST),
      container.Section("CDFT", b"".join(tables), container.SMALLEST),
      container.Section("LATS", b"".join(strings), "raw"),
  ]
  blob = container.encode(sections, architecture.parameter_count(model))
  atomic.write_file(path, blob)
  stored = container.decode(blob, path).sections
  latent_count = sum(g.parameters for g in group_reports)
  return Report(path=path, total_bytes=len(blob), header_bytes=container.FILE_HEADER_SIZE,
                sections=[SectionReport(s.tag, s.codec, s.raw_bytes, s.total_bytes)
                          for s in stored],
                groups=group_reports, parameters=weight_count + latent_count,
                latent_parameters=latent_count, float16=float16, float_bits=float_bits,
                mantissa_bits=mantissa_bits, inference_only=inference_only)


# -------------------------------------------------------------------------------------------
# Reading.

def _json(data: bytes, what: str):
  try:
    return json.loads(data.decode("utf-8"))
  except (UnicodeDecodeError, ValueError, RecursionError):
    raise errors.ModelFileError(f"The {what} section is not valid JSON.") from None


def _sections(path: str, max_parameters: int) -> tuple[dict, container.Contents]:
  contents = container.read(path, max_parameters)
  by_tag = {}
  for s in contents.sections:
    if s.tag in by_tag:
      raise errors.ModelFileError(f"{path}: section {s.tag!r} appears twice.")
    by_tag[s.tag] = s
  missing = [t for t in _REQUIRED if t not in by_tag]
  if missing:
    raise errors.ModelFileError(f"{path}: missing section(s) {', '.join(missing)}.")
  return by_tag, contents


def _reader_arguments(custom_objects, safe_mode, max_parameters) -> int:
  """Checks the arguments of `decompress` and `inspect`; returns `max_parameters`."""
  validation.boolean("safe_mode", safe_mode)
  if custom_objects is not None and not (
      isinstance(custom_objects, dict) and all(isinstance(k, str) for k in custom_objects)):
    raise errors.InvalidArgumentError(
        f"`custom_objects` must be a dict of names to classes, got {custom_objects!r}.")
  return validation.positive_int("max_parameters", max_parameters)


_GROUP_FIELDS = ("key", "slice_size", "layers", "latents", "table_bytes", "string_bytes")


def _group_manifest(section: container.StoredSection) -> tuple[bool, list]:
  """(whether WGTS holds the densities, the groups' entries as dicts of `_GROUP_FIELDS`) of a
  GRPS section."""
  if section.raw_bytes > _MAX_JSON_BYTES:
    raise errors.ModelFileError(f"The GRPS section has more than {_MAX_JSON_BYTES:,} bytes.")
  doc = _json(section.data, "GRPS")
  try:
    densities, groups = doc["densities"], doc["groups"]
    ok = isinstance(densities, bool) and all(
        isinstance(g, list) and len(g) == len(_GROUP_FIELDS) and isinstance(g[0], str)
        and all(isinstance(n, int) and not isinstance(n, bool) and n >= 0 for n in g[1:])
        for g in groups)
    if not ok:
      raise TypeError
  except (KeyError, TypeError):
    raise errors.ModelFileError("The GRPS section is malformed.") from None
  return densities, [dict(zip(_GROUP_FIELDS, g)) for g in groups]


def _number_fits(value, dtype: str) -> bool:
  """Whether a JSON number is a finite value of `dtype` (no big int or inf gets through)."""
  numpy_type = np.dtype(_DTYPES[dtype])
  if numpy_type.kind == "b":
    return isinstance(value, bool)
  if isinstance(value, bool) or not isinstance(value, (int, float)):
    return False
  if numpy_type.kind in "iu":
    info = np.iinfo(numpy_type)
    return isinstance(value, int) and info.min <= value <= info.max
  return abs(value) <= float(np.finfo(numpy_type).max)   # False for NaN; exact for big ints


def _entry_ok(shape, dtype, stored, extra) -> bool:
  if not (isinstance(shape, list) and all(isinstance(d, int) and not isinstance(d, bool)
                                          and d >= 0 for d in shape)
          and isinstance(dtype, str) and dtype in _DTYPES):
    return False
  if stored in _DTYPES:
    return not extra
  if stored == _FILL:
    return len(extra) == 1 and _number_fits(extra[0], dtype)
  if dtype != "float32" or not extra or not isinstance(extra[0], int) or \
     isinstance(extra[0], bool):
    return False
  if stored == _QUANTIZED:
    return (len(extra) == 2 and 2 <= extra[0] <= 8 and _number_fits(extra[1], dtype)
            and 0 < extra[1] * ((1 << (extra[0] - 1)) - 1) <= _FLOAT32_MAX)
  return stored == _CODED_FLOAT16 and len(extra) == 1 and 1 <= extra[0] <= 10


def _manifest_bytes(section: container.StoredSection) -> bytes:
  """The start of a WGTS section up to the end of its manifest, decompressing no more."""
  head = section.prefix(4)
  length = struct.unpack("<I", head)[0] if len(head) == 4 else 0
  return section.prefix(4 + min(length, _MAX_JSON_BYTES + 1))


def _weights_manifest(data: bytes, parameters: int) -> tuple[list, int]:
  """The WGTS entries as (shape, dtype, stored, [fill value] or [bits, scale] or [mantissa
  bits] or []) and where the tensor bytes start (`data` may end there); at most `parameters`
  elements in all."""
  if len(data) < 4:
    raise errors.ModelFileError("The WGTS section is truncated.")
  (head_length,) = struct.unpack_from("<I", data, 0)
  if head_length > min(len(data) - 4, _MAX_JSON_BYTES):
    raise errors.ModelFileError("The WGTS section's manifest length is invalid.")
  manifest = _json(data[4:4 + head_length], "WGTS")
  entries, elements = [], 0
  for entry in manifest if isinstance(manifest, list) else [None]:
    if not (isinstance(entry, list) and len(entry) in (3, 4, 5)
            and isinstance(entry[2], str) and _entry_ok(*entry[:3], entry[3:])):
      raise errors.ModelFileError("The WGTS section's manifest is malformed.")
    shape, dtype, stored, *extra = entry
    elements += math.prod(shape)
    if elements > parameters:
      raise errors.ModelFileError(
          f"The WGTS section holds more than the {parameters:,} parameters the file declares.")
    entries.append((tuple(shape), dtype, stored, extra))
  return entries, 4 + head_length


def _coded_float16(entries: list, data: bytes, end: int, decoder_class: type) -> list:
  """The values of the entries stored as coded float16 (`float_code`), in order: one code
  from `end`, the end of the other tensors' bytes, to the end of the section."""
  coded = [(shape, extra[0]) for shape, _, stored, extra in entries if stored == _CODED_FLOAT16]
  if not coded:
    if end != len(data):
      raise errors.ModelFileError("The WGTS section is longer than its manifest says.")
    return []
  if len({bits for _, bits in coded}) != 1:
    raise errors.ModelFileError("The WGTS section's coded float16 tensors disagree on bits.")
  sizes = [int(np.prod(shape, dtype=np.int64)) for shape, _ in coded]
  values = float_code.decode(data[end:], sum(sizes), coded[0][1],
                             decoder_class).astype(np.float32)
  return [v.reshape(shape) for v, (shape, _) in
          zip(np.split(values, np.cumsum(sizes)[:-1]), coded)]


def _check_values(variable, values: np.ndarray, variances: set) -> np.ndarray:
  """Refuses values no writer stores: non-finite floats (a model that predicts NaN) and
  negative BatchNorm variances."""
  if values.dtype.kind == "f" and not np.all(np.isfinite(values)):
    raise errors.ModelFileError(f"The WGTS section holds non-finite values for {variable.name}.")
  if id(variable) in variances and np.any(values < 0):
    raise errors.ModelFileError(
        f"The WGTS section holds a negative BatchNorm variance for {variable.name}.")
  return values


def _load_weights(model, data: bytes, layers: list, densities: bool, parameters: int,
                  decoder_class: type) -> None:
  entries, position = _weights_manifest(data, parameters)
  variables = _stored_variables(model, layers, densities)
  if len(entries) != len(variables):
    raise errors.ModelFileError(
        f"The WGTS section holds {len(entries)} tensors, the architecture has {len(variables)}.")
  values = []
  for (shape, dtype, stored, extra), variable in zip(entries, variables):
    if shape != tuple(variable.shape) or dtype != variable.dtype.name:
      raise errors.ModelFileError(
          f"WGTS tensor for {variable.name} is {dtype}{list(shape)}, the architecture has "
          f"{variable.dtype.name}{list(variable.shape)} (a section from another model?).")
    if stored == _FILL:
      values.append(np.full(shape, extra[0], dtype=_DTYPES[dtype]))
      continue
    if stored == _CODED_FLOAT16:
      values.append(None)
      continue
    count = math.prod(shape)
    if stored == _QUANTIZED:
      bits, scale = extra
      size = (count * bits + 7) // 8
    else:
      size = count * np.dtype(_DTYPES[stored]).itemsize
    if size > len(data) - position:
      raise errors.ModelFileError("The WGTS section is shorter than its manifest says.")
    if stored == _QUANTIZED:
      codes = _unpack(data[position:position + size], count, bits)
      values.append(_dequantize(codes, scale).reshape(shape))
    else:
      values.append(np.frombuffer(data, _DTYPES[stored], count, position).reshape(shape)
                    .astype(_DTYPES[dtype]))
    position += size
  coded = iter(_coded_float16(entries, data, position, decoder_class))
  variances = {id(layer.moving_variance) for layer in model._flatten_layers(include_self=False)
               if isinstance(layer, tf.keras.layers.BatchNormalization)}
  for variable, value in zip(variables, values):
    variable.assign(_check_values(variable, next(coded) if value is None else value, variances))
  for group, _ in _groups(layers):
    group.upgrade_loaded()   # files of layer config version 1 store the decoder Ψ itself


def _load_latents(model, layers: list, manifest: list, tables: bytes, strings: bytes,
                  decoder_class: type) -> list:
  groups = _groups(layers)
  if len(manifest) != len(groups):
    raise errors.ModelFileError(
        f"The file has {len(manifest)} parameter groups, the architecture {len(groups)}.")
  if sum(g["table_bytes"] for g in manifest) != len(tables) or \
     sum(g["string_bytes"] for g in manifest) != len(strings):
    raise errors.ModelFileError("The CDFT/LATS sections do not match the group manifest.")
  table_pos = string_pos = 0
  decoded = []
  for entry, (group, members) in zip(manifest, groups):
    latents = sum(l.num_slices for _, l in members) * group.slice_size
    if (entry["key"] != members[0][1].group_key or entry["slice_size"] != group.slice_size
        or entry["layers"] != len(members) or entry["latents"] != latents):
      raise errors.ModelFileError(
          f"Group {entry['key']!r} in the file does not match the architecture's "
          f"{members[0][1].group_key!r} (a section from another model?).")
    what = f"the latents of group {entry['key']!r}"
    values = latent_code.decode_group(tables[table_pos:table_pos + entry["table_bytes"]],
                                      strings[string_pos:string_pos + entry["string_bytes"]],
                                      [tuple(l.latent_variable.shape) for _, l in members], what,
                                      decoder_class)
    table_pos += entry["table_bytes"]
    string_pos += entry["string_bytes"]
    step = np.float32(group.latent_step.numpy())
    for (_, layer), q in zip(members, values):
      layer.latent_variable.assign(q * step)
    decoded.append((entry, group, values))
  return decoded


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
  max_parameters = _reader_arguments(custom_objects, safe_mode, max_parameters)
  return _read(path, custom_objects, safe_mode, max_parameters)[0]


def _decoder_class(version: int, path: str) -> type:
  """The range decoder of a file of format `version`: tensorflow-compression's before 6."""
  if version >= 6:
    return entropy.Decoder
  try:
    from lilnetx_tf.coding import tfc_range  # pylint: disable=import-outside-toplevel
  except Exception:     # ImportError, or tfc's compiled ops failing beside another TensorFlow
    raise errors.ModelFileError(
        f"{path} has format version {version}: its latents were coded with "
        "tensorflow-compression, which installs only on the TF 2.14 configuration (Python "
        "3.11, tensorflow 2.14.1, tensorflow-compression 2.14.1). Convert it there with "
        "`lilnetx upgrade OLD.lnx NEW.lnx`; the new file reads on every stack.") from None
  return tfc_range.Decoder


def _read(path: str, custom_objects: Optional[dict], safe_mode: bool,
          max_parameters: int) -> tuple:
  by_tag, contents = _sections(path, max_parameters)
  decoder_class = _decoder_class(contents.format_version, os.fspath(path))
  if by_tag["ARCH"].raw_bytes > architecture.MAX_BYTES:
    raise errors.ModelFileError(f"{path}: the ARCH section is larger than "
                                f"{architecture.MAX_BYTES:,} bytes.")
  # The architecture first: it confirms the declared parameters that bound the other sections
  # (files of format 5 declare none: `max_parameters` bounds them).
  model = architecture.rebuild(by_tag["ARCH"].data, custom_objects, safe_mode,
                               contents.parameters, exact=contents.declares_parameters)
  densities, manifest = _group_manifest(by_tag["GRPS"])
  layers = lilnetx_layers(model)
  _load_weights(model, by_tag["WGTS"].data, layers, densities, contents.parameters,
                decoder_class)
  decoded = _load_latents(model, layers, manifest, by_tag["CDFT"].data, by_tag["LATS"].data,
                          decoder_class)
  return model, densities, decoded, contents.sections


def inspect(path: str, estimate: bool = True, custom_objects: Optional[dict] = None,
            safe_mode: bool = True, max_parameters: int = DEFAULT_MAX_PARAMETERS) -> Report:
  """Verifies a `.lnx` file and reports its bytes per section and per parameter group.

  With `estimate` and a file that holds the densities (not `inference_only`), the model is
  decompressed (`custom_objects`, `safe_mode` and `max_parameters` as in `decompress`) and
  the latents' self-information under its densities is reported next to the coded bytes.
  """
  estimate = validation.boolean("estimate", estimate)
  max_parameters = _reader_arguments(custom_objects, safe_mode, max_parameters)
  by_tag, contents = _sections(path, max_parameters)
  path = os.fspath(path)
  densities, manifest = _group_manifest(by_tag["GRPS"])
  estimates = [None] * len(manifest)
  if estimate and densities:
    _, _, decoded, _ = _read(path, custom_objects, safe_mode, max_parameters)
    estimates = [entropy.estimated_bits(g, latents) / 8 for _, g, latents in decoded]
  total = contents.header_bytes + sum(s.total_bytes for s in contents.sections)
  entries, _ = _weights_manifest(_manifest_bytes(by_tag["WGTS"]), contents.parameters)
  weight_count = sum(math.prod(shape) for shape, *_ in entries)
  float16 = any((stored == "float16" and dtype != "float16") or stored == _CODED_FLOAT16
                for _, dtype, stored, _ in entries)
  mantissa_bits = next((extra[0] for _, _, stored, extra in entries
                        if stored == _CODED_FLOAT16 and extra[0] < 10), None)
  float_bits = max((extra[0] for _, _, stored, extra in entries if stored == _QUANTIZED),
                   default=None)
  group_reports = [
      GroupReport(g["key"], g["slice_size"], g["layers"], g["latents"], g["string_bytes"],
                  g["table_bytes"], est)
      for g, est in zip(manifest, estimates)]
  latent_count = sum(g.parameters for g in group_reports)
  return Report(path=path, total_bytes=total, header_bytes=contents.header_bytes,
                sections=[SectionReport(s.tag, s.codec, s.raw_bytes, s.total_bytes)
                          for s in contents.sections],
                groups=group_reports, parameters=weight_count + latent_count,
                latent_parameters=latent_count, float16=float16, float_bits=float_bits,
                mantissa_bits=mantissa_bits, inference_only=not densities)


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
