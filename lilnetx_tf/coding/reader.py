"""Opening a `.lnx` file from anyone: its sections, in the order that keeps reading bounded.

The container is checked first (checksums, lengths against the declared parameters), then the
architecture, which confirms the declared parameters (`architecture.rebuild`), then the
weights, the group manifest and the latents, each bounded by what came before it.
"""

import dataclasses
import os
from typing import Optional

import tensorflow as tf

from lilnetx_tf import errors
from lilnetx_tf import validation
from lilnetx_tf.coding import architecture
from lilnetx_tf.coding import container
from lilnetx_tf.coding import entropy
from lilnetx_tf.coding import groups_section
from lilnetx_tf.coding import model_state
from lilnetx_tf.coding import weights_section
from lilnetx_tf.layers import lilnetx_layers

__all__ = ["DEFAULT_MAX_PARAMETERS", "Decoded", "check_arguments", "sections", "read"]

# A reader allocates in proportion to the parameters a file declares; this default (about
# 1 GiB of float32) opens any LilNetX or common Keras model and keeps a hostile file's cost
# bounded. Pass `max_parameters=` to open larger models.
DEFAULT_MAX_PARAMETERS = 1 << 28
_REQUIRED = ("ARCH", "WGTS", "GRPS", "CDFT", "LATS")


@dataclasses.dataclass
class Decoded:
  """A decompressed model, whether its file holds the densities, (entry, group, integer
  latents) per group, and the file's sections."""
  model: tf.keras.Model
  densities: bool
  groups: list
  sections: list


def check_arguments(custom_objects, safe_mode, max_parameters) -> int:
  """Checks the arguments of `decompress` and `inspect`; returns `max_parameters`."""
  validation.boolean("safe_mode", safe_mode)
  if custom_objects is not None and not (
      isinstance(custom_objects, dict) and all(isinstance(k, str) for k in custom_objects)):
    raise errors.InvalidArgumentError(
        f"`custom_objects` must be a dict of names to classes, got {custom_objects!r}.")
  return validation.positive_int("max_parameters", max_parameters)


def sections(path: str, max_parameters: int) -> tuple[dict, container.Contents]:
  """(tag → `StoredSection`, the container) of the file at `path`, each required tag once."""
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


def _load_weights(model, data: bytes, layers: list, densities: bool, parameters: int,
                  decoder_class: type) -> None:
  tensors = weights_section.stored_tensors(model, layers, densities)
  variances = {id(layer.moving_variance) for layer in model._flatten_layers(include_self=False)
               if isinstance(layer, tf.keras.layers.BatchNormalization)}
  values = weights_section.decode(data, tensors, parameters, decoder_class, variances)
  model_state.restore(model, tensors, values)
  for group, _ in groups_section.groups_of(layers):
    group.upgrade_loaded()   # files of layer config version 1 store the decoder Ψ itself


def read(path: str, custom_objects: Optional[dict], safe_mode: bool,
         max_parameters: int) -> Decoded:
  """Decodes the file at `path` (arguments checked by `check_arguments`)."""
  by_tag, contents = sections(path, max_parameters)
  decoder_class = _decoder_class(contents.format_version, os.fspath(path))
  if by_tag["ARCH"].raw_bytes > architecture.MAX_BYTES:
    raise errors.ModelFileError(f"{path}: the ARCH section is larger than "
                                f"{architecture.MAX_BYTES:,} bytes.")
  # The architecture first: it confirms the declared parameters that bound the other sections
  # (files of format 5 declare none: `max_parameters` bounds them).
  exact = contents.declares_parameters
  densities, manifest = groups_section.parse(by_tag["GRPS"])
  # One group per kernel shape (every model `convert` made): the file's groups are those of
  # one registry, whatever the graph says.
  keys = [entry["key"] for entry in manifest]
  model = architecture.rebuild(by_tag["ARCH"].data, custom_objects, safe_mode,
                               contents.parameters, exact=exact,
                               one_registry=len(set(keys)) == len(keys))
  layers = lilnetx_layers(model)
  _load_weights(model, by_tag["WGTS"].data, layers, densities, contents.parameters,
                decoder_class)
  if exact and architecture.parameter_count(model) != contents.parameters:
    raise errors.ModelFileError(   # only data-sized state, whose size the WGTS section gives
        f"The model holds {architecture.parameter_count(model):,} parameters, the file "
        f"declares {contents.parameters:,}.")
  decoded = groups_section.decode(layers, manifest, by_tag["CDFT"].data, by_tag["LATS"].data,
                                  decoder_class)
  return Decoded(model, densities, decoded, contents.sections)
