"""The ARCH section: the model's Keras config, without the layer arguments it does not need.

`model.to_json()` spells out every constructor argument of every layer, defaults included
(initializers, regularizers, constraints, dtype, LilNetX hyperparameters, ...): most of the
bytes of a small model's architecture. `encode` leaves out each argument whose removal
rebuilds the layer with the same config, checked layer by layer, so Keras fills in the same
values on loading; a `dtype` other than float32 stays (a mixed-precision model read where the
global policy is float32 would otherwise compute in float32). The layers' build configs (input
shapes) are left out too when the model rebuilds to the same `to_json()` without them, as a
graph model whose layers are built by being called does. A layer's config name is left out
where it repeats its graph entry's name (format "keras-json/2"); `rebuild` puts it back, then
calls `tf.keras.models.model_from_json`.
"""

import copy
import json
from typing import Optional

import tensorflow as tf

from lilnetx_tf import errors
from lilnetx_tf._compat import serialization_lib  # load_model's safe-mode scope
from lilnetx_tf.coding import architecture_guard
from lilnetx_tf.coding import model_state
from lilnetx_tf.coding.model_state import parameter_count
from lilnetx_tf.coding import variable_budget
from lilnetx_tf.layers import lilnetx_layers
from lilnetx_tf.layers import registry as registry_lib

__all__ = ["MAX_BYTES", "encode", "rebuild", "creation_limit", "parameter_count"]

_NESTED = ("Functional", "Sequential", "Model")
_FORMAT = "keras-json/2"
_FORMATS = ("keras-json", _FORMAT)  # "keras-json": every layer config has its name.
# A layer's `dtype` left out is filled in from the global policy where the file is read: only
# Keras's own default may go, a mixed-precision (or float64) policy is kept.
_DEFAULT_DTYPE = "float32"
MAX_BYTES = 1 << 24   # 16 MiB of config JSON: far above any real model's (ResNet-50: ~0.1 MiB)


def _layer_config(entry: dict, config: dict) -> Optional[dict]:
  """The config a layer entry rebuilds to, or None if it cannot be rebuilt on its own."""
  spec = {k: entry[k] for k in ("class_name", "module", "registered_name") if k in entry}
  try:
    return tf.keras.layers.deserialize({**spec, "config": dict(config)}).get_config()
  except Exception:  # Custom layers may raise anything; such layers are kept whole.
    return None


def _lean_layer(entry: dict, cache: dict) -> None:
  """Removes, in place, the arguments of one layer entry that its class fills in anyway."""
  config = entry["config"]
  reference = _layer_config(entry, config)
  if reference is None:
    return
  lean = dict(config)
  for key, value in config.items():
    if key == "name" or (key == "dtype" and value != _DEFAULT_DTYPE):
      continue
    signature = (entry.get("class_name"), entry.get("module"), key,
                 json.dumps(value, sort_keys=True))
    if signature not in cache:
      without = {k: v for k, v in lean.items() if k != key}
      rebuilt = _layer_config(entry, without)
      cache[signature] = rebuilt is not None and rebuilt.get(key) == reference.get(key)
    if cache[signature]:
      del lean[key]
  if _layer_config(entry, lean) == reference:
    entry["config"] = lean


def _entries(model_config: dict):
  """Every layer entry with a config dict, nested models' layers included."""
  for entry in model_config.get("layers", []):
    if isinstance(entry, dict) and isinstance(entry.get("config"), dict):
      yield entry
      if entry.get("class_name") in _NESTED:
        yield from _entries(entry["config"])


def _lean_layers(model_config: dict) -> None:
  cache = {}
  for entry in _entries(model_config):
    if entry.get("class_name") not in _NESTED:
      _lean_layer(entry, cache)


def _without_build_configs(config: dict, expected_json: str) -> dict:
  """`config` without the layers' build configs if the model rebuilds the same, else as is."""
  lean = copy.deepcopy(config)
  for entry in _entries(lean.get("config", {})):
    entry.pop("build_config", None)
  try:
    same = tf.keras.models.model_from_json(json.dumps(lean)).to_json() == expected_json
  except Exception:  # E.g. custom layers that need custom_objects: keep the build configs.
    same = False
  return lean if same else config


def _drop_names(model_config: dict) -> None:
  for entry in _entries(model_config):
    if "name" in entry and entry["config"].get("name") == entry["name"]:
      del entry["config"]["name"]


def _restore_names(model_config: dict) -> None:
  """Undoes `_drop_names`."""
  for entry in _entries(model_config):
    if "name" in entry and "name" not in entry["config"]:
      entry["config"]["name"] = entry["name"]


def _check_rebuildable_lookups(model: tf.keras.Model) -> None:
  """Refuses a lookup layer whose output width is its vocabulary's size (`output_mode` other
  than "int" without `pad_to_max_tokens`, vocabulary adapted rather than given): Keras cannot
  rebuild it from its config, so neither a `.keras` file nor a `.lnx` file could restore it."""
  for layer in model._flatten_layers(include_self=False):
    if not model_state.holds_vocabularies(layer):
      continue
    config = layer.get_config()
    if (config.get("output_mode", "int") != "int" and not config.get("pad_to_max_tokens", True)
        and config.get("vocabulary") is None):
      raise errors.UnsupportedLayerError(
          f"Layer {layer.name!r} ({type(layer).__name__}, output_mode="
          f"{config['output_mode']!r}) has an output as wide as its adapted vocabulary, which "
          "Keras cannot rebuild from the layer's config: construct it with "
          "pad_to_max_tokens=True (a fixed width of max_tokens) or with vocabulary=...")


def encode(model: tf.keras.Model) -> bytes:
  """The ARCH section's bytes: {"format", "lilnetx_tf" version, "model": lean Keras config}."""
  _check_rebuildable_lookups(model)
  # The GRPS section records the groups: configs without `registry_id`s (`registry.saved_id`).
  with registry_lib.unnumbered():
    try:
      expected_json = model.to_json()
    except (NotImplementedError, TypeError, ValueError) as e:
      raise errors.UnsupportedLayerError(
          f"The model's architecture cannot be serialized ({e}). Give custom layers a "
          "get_config() and register them with tf.keras.utils.register_keras_serializable."
      ) from e
    config = json.loads(expected_json)
    _lean_layers(config.get("config", {}))
    config = _without_build_configs(config, expected_json)
  _drop_names(config.get("config", {}))
  from lilnetx_tf import __version__
  return json.dumps({"format": _FORMAT, "lilnetx_tf": __version__, "model": config},
                    separators=(",", ":")).encode()


def rebuild(data: bytes, custom_objects: Optional[dict], safe_mode: bool,
            parameters: int, exact: bool = True, one_registry: bool = False) -> tf.keras.Model:
  """The Keras model of an ARCH section, whose variables must have `parameters` elements in
  all, or at most that many if not `exact` (raises `ModelFileError`). `one_registry`: the
  LilNetX layers share one registry (`registry.unify`), as in a model `convert` made; Keras
  shares them by the graph, which keeps a registry per branch where branches meet after their
  last LilNetX layers (two towers added at the output).

  The config is checked first (`architecture_guard`: no code but Keras built-ins, this library
  and `custom_objects`, unless `safe_mode=False`; a graph Keras can rebuild), and its variables
  are counted as Keras creates them, so a file cannot make the reader allocate more than it
  declares."""
  if len(data) > MAX_BYTES:
    raise errors.ModelFileError(f"The ARCH section has {len(data):,} bytes (at most "
                                f"{MAX_BYTES:,}).")
  try:
    doc = json.loads(data.decode("utf-8"))
  except (UnicodeDecodeError, ValueError, RecursionError):
    raise errors.ModelFileError("The ARCH section is not valid JSON.") from None
  if (not isinstance(doc, dict) or doc.get("format") not in _FORMATS
      or not isinstance(doc.get("model"), dict)):
    raise errors.ModelFileError("The ARCH section does not hold a Keras model config.")
  import lilnetx_tf  # noqa: F401  (registers the LilNetX layers with Keras)
  architecture_guard.check(doc["model"], custom_objects, safe_mode)
  _restore_names(doc["model"]["config"])
  with variable_budget.budget(creation_limit(parameters)) as budget:
    try:
      with serialization_lib.SafeModeScope(safe_mode):
        model = tf.keras.models.model_from_json(json.dumps(doc["model"]),
                                                custom_objects=custom_objects)
    except Exception as e:  # Keras raises many types for configs it cannot rebuild.
      if isinstance(e, errors.ModelFileError) or budget.exceeded:
        raise errors.ModelFileError(
            f"The architecture creates far more parameters than the file declares "
            f"({parameters:,}).") from None
      raise errors.ModelFileError(
          f"Cannot rebuild the model architecture: {type(e).__name__}: {e}. If the model uses "
          "custom layers, import or pass them with custom_objects=.") from None
  if budget.exceeded:
    raise errors.ModelFileError(
        f"The architecture creates far more parameters than the file declares "
        f"({parameters:,}).")
  if not isinstance(model, tf.keras.Model):  # A config of another Keras object, e.g. a string.
    raise errors.ModelFileError(
        f"The ARCH section describes a {type(model).__name__}, not a Keras model.")
  if one_registry:
    registry_lib.unify(lilnetx_layers(model))
  actual = parameter_count(model)
  # A vocabulary's or dynamic variable's size is the WGTS section's: the reader checks the
  # count after loading it.
  if actual > parameters or (exact and actual != parameters
                             and not model_state.holds_data_sized_state(model)):
    raise errors.ModelFileError(
        f"The architecture has {actual:,} parameters, the file declares {parameters:,}.")
  return model


def creation_limit(parameters: int) -> int:
  """The variable elements rebuilding a model of `parameters` may create: more than it keeps,
  as each LilNetX layer builds a parameter group before joining its shared one and random
  layers make seed state; twice as many, plus 64 Ki, leaves room for both."""
  return 2 * parameters + (1 << 16)
