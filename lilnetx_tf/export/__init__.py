"""Slim export: SavedModel and TFLite files that are really smaller and faster.

    small = lnx.slim(model)                         # plain Keras, dead channels removed
    report = lnx.export(model, "out/", quantization="float16")
    print(report)                                   # sizes, parameters, MACs, TFLite check

`export` slims the model (see `lilnetx_tf.export.slimming` for what is removed and kept, and
the tolerance), then writes into `directory`:
  saved_model/   the slim model as a TF SavedModel (loadable with tf.keras.models.load_model
                 or tf.saved_model.load, no lilnetx_tf needed)
  model.tflite   the slim model converted to TFLite (float32, float16 weights or int8)
  model.keras    (format "keras") the slim model in the Keras v3 format
  report.json    the figures of the returned `ExportReport`
  lilnetx_export.json   what the export wrote (`MARKER`): what `overwrite=True` may replace
Files are written into a temporary directory next to `directory`, which then takes the place
of `directory` in one atomic swap (`lilnetx_tf.atomic`): readers see the old export or the
new one. `overwrite=True` replaces only an earlier export holding nothing but what it wrote;
any other non-empty directory, or a file, is refused (`errors.OutputPathError`).
The TFLite model is run by the
interpreter on the sample inputs and compared with the slim Keras model; in float32 a
difference beyond atol + rtol·max|output| (10× the slim tolerance) raises `ExportCheckError`,
quantized models only report it.
"""

import dataclasses
import json
import os
from typing import Callable, Optional, Sequence

import numpy as np
import tensorflow as tf

from lilnetx_tf import _compat
from lilnetx_tf.analysis.graph import check_graph_model
from lilnetx_tf import atomic
from lilnetx_tf import errors
from lilnetx_tf.errors import ExportCheckError, SlimCheckError
from lilnetx_tf.export.samples import sample_inputs
from lilnetx_tf.export.slimming import DEFAULT_ATOL, DEFAULT_RTOL, SlimInfo, slim
from lilnetx_tf.export import tflite as tflite_lib
from lilnetx_tf import macs
from lilnetx_tf import text_table
from lilnetx_tf import validation

FORMATS = ("saved_model", "tflite", "keras")
MARKER = "lilnetx_export.json"        # lists what an export wrote: what overwrite may replace
_MARKER_FORMAT = "lilnetx_tf export/1"
_MAX_MARKER_BYTES = 1 << 16


def _fmt_bytes(n: Optional[int]) -> str:
  if n is None:
    return "-"
  return f"{n / 1024:.1f} KiB" if n < 1024 ** 2 else f"{n / 1024 ** 2:.2f} MiB"


def _ratio(before, after) -> str:
  return f"{before / after:.2f}x" if before and after else "-"


@dataclasses.dataclass
class ExportReport:
  """Figures of one export; `str(report)` is a readable table."""
  directory: str
  files: dict                      # relative path -> bytes
  quantization: Optional[str]
  parameters_before: int
  parameters_after: int
  macs_before: int
  macs_after: int
  tflite_bytes_before: Optional[int]   # the dense plain twin at the same quantization
  tflite_bytes_after: Optional[int]
  saved_model_bytes: Optional[int]
  slim_max_difference: Optional[float]
  tflite_max_difference: Optional[float]
  output_scale: Optional[float]
  folded_batchnorms: int
  removed_channels: dict

  def to_dict(self) -> dict:
    return dataclasses.asdict(self)

  def table(self) -> str:
    rows = [("", "before", "after", "ratio"),
            ("parameters", f"{self.parameters_before:,}", f"{self.parameters_after:,}",
             _ratio(self.parameters_before, self.parameters_after)),
            ("MACs / example", f"{self.macs_before:,}", f"{self.macs_after:,}",
             _ratio(self.macs_before, self.macs_after)),
            (f"tflite ({self.quantization or 'float32'})",
             _fmt_bytes(self.tflite_bytes_before), _fmt_bytes(self.tflite_bytes_after),
             _ratio(self.tflite_bytes_before, self.tflite_bytes_after))]
    lines = [f"Export to {self.directory}"]
    lines += text_table.format_table(rows, rule=False, indent="  ")
    lines.append(f"  BatchNorms folded: {self.folded_batchnorms}; layers narrowed: "
                 f"{len(self.removed_channels)}")
    if self.slim_max_difference is not None:
      lines.append(f"  max |slim - original| = {self.slim_max_difference:.3g}")
    if self.tflite_max_difference is not None:
      lines.append(f"  max |tflite - keras| = {self.tflite_max_difference:.3g} "
                   f"(output scale {self.output_scale:.3g})")
    for path, size in sorted(self.files.items()):
      lines.append(f"  {path}: {_fmt_bytes(size)}")
    return "\n".join(lines)

  __str__ = table


def _tree_bytes(path: str) -> int:
  if os.path.isfile(path):
    return os.path.getsize(path)
  return sum(os.path.getsize(os.path.join(root, f))
             for root, _, files in os.walk(path) for f in files)


def _written_entries(directory: str) -> Optional[list]:
  """The entries the export in `directory` wrote, from its marker; None if it has none."""
  try:
    with open(os.path.join(directory, MARKER), "rb") as f:
      doc = json.loads(f.read(_MAX_MARKER_BYTES))
  except (OSError, ValueError):
    return None
  if not isinstance(doc, dict) or doc.get("format") != _MARKER_FORMAT:
    return None
  entries = doc.get("entries")
  ok = isinstance(entries, list) and all(isinstance(e, str) for e in entries)
  return entries if ok else None


def _replaceable(overwrite: bool) -> Callable[[str], None]:
  """The check `atomic.new_directory` runs on the target: an export replaces nothing, an
  empty directory, or (`overwrite`) an earlier export holding only what it wrote."""
  def check(target: str) -> None:
    if not os.path.lexists(target):
      return
    if not os.path.isdir(target):
      raise errors.OutputPathError(
          f"{target} exists and is not a directory; an export writes a directory.")
    entries = set(os.listdir(target))
    if not entries:
      return
    if not overwrite:
      raise errors.OutputPathError(
          f"{target} exists; pass overwrite=True (--overwrite) to replace it.")
    written = _written_entries(target)
    if written is None:
      raise errors.OutputPathError(
          f"{target} is not a lilnetx_tf export (it has no {MARKER}): overwrite replaces "
          "only an earlier export; choose another directory.")
    foreign = sorted(entries - set(written))
    if foreign:
      raise errors.OutputPathError(
          f"{target} holds files the export did not write ({', '.join(foreign[:5])}"
          f"{', ...' if len(foreign) > 5 else ''}); move them out first, overwrite would "
          "delete them.")
  return check


def _check_formats(formats: Sequence[str], quantization: Optional[str]) -> tuple:
  formats = tuple(formats)
  unknown = set(formats) - set(FORMATS)
  if unknown or not formats:
    raise errors.InvalidArgumentError(f"`formats` must be a non-empty subset of {FORMATS}, "
                                      f"got {formats!r}.")
  if quantization not in tflite_lib.QUANTIZATIONS:
    raise errors.InvalidArgumentError(
        f"`quantization` must be one of {tflite_lib.QUANTIZATIONS}, got {quantization!r}.")
  return formats


def _checked_tflite(slim_model: tf.keras.Model, sample: list, quantization: Optional[str],
                    representative_data, rtol: float, atol: float) -> tuple:
  """(TFLite bytes, max |TFLite − Keras| on `sample`, output scale) of the slim model; raises
  `ExportCheckError` if TFLite cannot convert or run it, or (float32) computes otherwise."""
  try:
    content = tflite_lib.convert(slim_model, quantization, representative_data)
    difference, scale = tflite_lib.max_difference(content, slim_model, sample)
  except (RuntimeError, ValueError) as e:   # what the TFLite converter and runtime raise
    raise ExportCheckError(f"TFLite cannot convert or run the slim model: {e}") from e
  allowed = 10 * (atol + rtol * scale)
  if quantization is None and not difference <= allowed:
    raise ExportCheckError(f"TFLite differs from the slim Keras model by {difference:.3g} "
                           f"> {allowed:.3g}.")
  return content, difference, scale


def export(model: tf.keras.Model, directory: str,
           formats: Sequence[str] = ("saved_model", "tflite"),
           quantization: Optional[str] = None, representative_data=None,
           inputs: Optional[Sequence[np.ndarray]] = None, overwrite: bool = False,
           compare_dense: bool = True, rtol: float = DEFAULT_RTOL,
           atol: float = DEFAULT_ATOL) -> ExportReport:
  """Slims `model` and writes it as SavedModel / TFLite / .keras into `directory`.

  Args:
    model: a Functional Keras model with LilNetX and/or plain layers.
    directory: created atomically; must not exist (or be empty) unless `overwrite`, which
      replaces only an earlier export holding nothing but what it wrote (a symlink to a
      directory is written through).
    formats: any of "saved_model", "tflite", "keras".
    quantization: None (float32), "float16" or "int8" (TFLite only).
    representative_data: int8 calibration inputs: an array of examples (without or with a
      batch axis of 1), an iterable of per-input lists (in the order of `model.inputs`) or
      of dicts by input name, or a callable returning one.
    inputs: sample inputs (list, one batch array per model input) for the checks; default
      random normal, batch 2.
    compare_dense: also convert the unslimmed plain twin, for the "before" file size.
  Returns an `ExportReport` (also written to report.json).
  """
  formats = _check_formats(formats, quantization)
  check_graph_model(model)
  check = _replaceable(validation.boolean("overwrite", overwrite))
  check(atomic.resolve(directory))                       # refuse before the slow work
  directory = os.path.abspath(directory)
  sample = list(inputs) if inputs is not None else sample_inputs(model)
  slim_model = slim(model, inputs=sample, rtol=rtol, atol=atol)
  info: SlimInfo = slim_model.slim_info

  with atomic.new_directory(directory, check) as tmp, _compat.uncompiled_save_quiet():
    files = {}
    tflite_after = tflite_before = tflite_diff = scale = saved_bytes = None
    if "saved_model" in formats:
      path = os.path.join(tmp, "saved_model")
      slim_model.save(path, save_format="tf", include_optimizer=False)
      saved_bytes = files["saved_model"] = _tree_bytes(path)
    if "keras" in formats:
      path = os.path.join(tmp, "model.keras")
      slim_model.save(path)
      files["model.keras"] = _tree_bytes(path)
    if "tflite" in formats:
      content, tflite_diff, scale = _checked_tflite(slim_model, sample, quantization,
                                                    representative_data, rtol, atol)
      with open(os.path.join(tmp, "model.tflite"), "wb") as f:
        f.write(content)
      tflite_after = files["model.tflite"] = len(content)
      if compare_dense:
        dense = slim(model, check=False, fold_batchnorm=False, remove_channels=False)
        tflite_before = len(tflite_lib.convert(dense, quantization, representative_data))
    report = ExportReport(
        directory=directory, files=files, quantization=quantization,
        parameters_before=macs.model_parameters(model),
        parameters_after=macs.model_parameters(slim_model),
        macs_before=macs.model_macs(model), macs_after=macs.model_macs(slim_model),
        tflite_bytes_before=tflite_before, tflite_bytes_after=tflite_after,
        saved_model_bytes=saved_bytes, slim_max_difference=info.max_difference,
        tflite_max_difference=tflite_diff, output_scale=scale,
        folded_batchnorms=info.folded_batchnorms,
        removed_channels={k: list(v) for k, v in info.removed_channels.items()})
    with open(os.path.join(tmp, "report.json"), "w") as f:
      json.dump(report.to_dict(), f, indent=1)
    entries = sorted(os.listdir(tmp) + [MARKER])
    with open(os.path.join(tmp, MARKER), "w") as f:
      json.dump({"format": _MARKER_FORMAT, "entries": entries}, f)
  return report


__all__ = ["ExportCheckError", "ExportReport", "SlimCheckError", "export", "slim"]
