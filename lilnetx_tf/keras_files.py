"""Moves the weights of `.keras` / `.weights.h5` files written by Keras 2.14 to today's layout.

Keras' saving library stores each object's variables under the path of attribute names by which
it first reaches the object from the model. Keras 2.14 walks attributes in ascending order and
so reaches layers through `_layer_checkpoint_dependencies/<name>`; tf_keras (TF ≥ 2.16) skips
that attribute and walks in descending order (`layers/<name>`). Such files then fail to load
(`expected N variables, but received 0`); SavedModels are not affected.

`migrate` rebuilds the model from the file's config, walks it both ways, and copies each
object's variables from its Keras 2.14 path to the path the running Keras reads. On Keras 2.14
both walks agree and the weights are copied unchanged.

    lnx.keras_files.migrate("old.keras", "new.keras")                 # or: lilnetx migrate
    lnx.keras_files.migrate("old.weights.h5", "new.weights.h5", model=model)
"""

import json
import os
import tempfile
import zipfile
from typing import Callable, Iterator, Optional

import h5py
import tensorflow as tf

from lilnetx_tf import _compat
from lilnetx_tf import errors

__all__ = ["migrate", "is_keras_214_layout"]

_WEIGHTS = "model.weights.h5"
_CONFIG = "config.json"
_LEGACY_ROOT = "_layer_checkpoint_dependencies"
_KERAS_214_SKIP = _compat.saving_lib.ATTR_SKIPLIST - {_LEGACY_ROOT}


def _keras_214_children(trackable) -> Iterator[tuple[str, object]]:
  """Keras 2.14's `saving_lib._walk_trackable`: `dir()` (ascending) order, its skip list."""
  for name in dir(trackable):
    if name.startswith("__") or name in _KERAS_214_SKIP:
      continue
    try:
      child = getattr(trackable, name)
    except Exception:  # pylint: disable=broad-except  (as Keras: a property may raise)
      continue
    yield name, child


def _paths(model: tf.keras.Model, children: Callable) -> dict:
  """id(object) -> the path its variables are stored under (Keras' `_save_state` walk)."""
  found = {}
  is_trackable = _compat.saving_lib._is_keras_trackable  # pylint: disable=protected-access

  def join(path, name):
    return f"{path}/{name}" if path else name

  def visit(trackable, path):
    if id(trackable) in found:
      return
    found[id(trackable)] = path
    for name, child in children(trackable):
      if is_trackable(child):
        visit(child, join(path, name))
      elif isinstance(child, (list, dict, tuple, set)):
        visit_container(child, join(path, name))

  def visit_container(container, path):
    used = {}
    for trackable in (list(container.values()) if isinstance(container, dict) else container):
      if not is_trackable(trackable) or id(trackable) in found:
        continue
      name = _compat.generic_utils.to_snake_case(type(trackable).__name__)
      used[name] = used.get(name, -1) + 1
      visit(trackable, join(path, f"{name}_{used[name]}" if used[name] else name))

  visit(model, "")
  return found


def _path_map(model: tf.keras.Model) -> dict:
  """Keras 2.14 path -> the running Keras' path, for every object of `model`."""
  old = _paths(model, _keras_214_children)
  new = _paths(model, _compat.saving_lib._walk_trackable)  # pylint: disable=protected-access
  return {old[key]: new[key] for key in old if key in new}


def _rewrite_weights(source: h5py.File, target: h5py.File, model: tf.keras.Model) -> None:
  moves = _path_map(model)
  for old, new in moves.items():
    group = f"{old}/vars" if old else "vars"
    if group in source:
      source.copy(source[group], target.require_group(new or "/"), name="vars")
  for key in ("optimizer", "metrics"):   # reached the same way by both walks when not built
    if key in source and key not in target:
      source.copy(source[key], target, name=key)


def is_keras_214_layout(weights: h5py.File) -> bool:
  """Whether a weights file stores its layers under Keras 2.14's `_layer_checkpoint_dependencies`."""
  return _LEGACY_ROOT in weights


def _open_h5(data_or_path, mode="r") -> h5py.File:
  try:
    return h5py.File(data_or_path, mode)
  except OSError as e:
    raise errors.InvalidArgumentError(f"Not a Keras weights file: {e}") from None


def migrate(source: str, target: str, *, model: Optional[tf.keras.Model] = None,
            custom_objects: Optional[dict] = None, safe_mode: bool = True) -> str:
  """Writes `target`, a copy of the Keras 2.14 file `source` that the running Keras loads.

  Args:
    source: A `.keras` file, or a `.weights.h5` file (then `model` is required).
    target: The path to write (same kind as `source`); it must not exist.
    model: For a `.weights.h5` file, the model whose weights it holds (any weights).
    custom_objects, safe_mode: As `tf.keras.models.load_model`, to rebuild a `.keras` model.

  Returns:
    `target`.
  """
  if not os.path.isfile(source):
    raise errors.ModelFileNotFoundError(f"{source} is not a file.")
  if os.path.exists(target):
    raise errors.InvalidArgumentError(f"{target} exists.")
  if source.endswith(".weights.h5"):
    if not isinstance(model, tf.keras.Model):
      raise errors.InvalidArgumentError("Migrating a .weights.h5 file needs `model`.")
    with _open_h5(source) as old, _open_h5(target, "w") as new:
      _rewrite_weights(old, new, model)
    return target
  if not zipfile.is_zipfile(source):
    raise errors.InvalidArgumentError(f"{source} is neither a .keras file nor a .weights.h5 file.")
  with zipfile.ZipFile(source) as archive:
    names = archive.namelist()
    if _CONFIG not in names or _WEIGHTS not in names:
      raise errors.InvalidArgumentError(f"{source} has no {_CONFIG} or {_WEIGHTS}.")
    config = json.loads(archive.read(_CONFIG))
    config["compile_config"] = None   # only the object graph is needed, not the optimizer's
    with _compat.serialization_lib.SafeModeScope(bool(safe_mode)):
      model = _compat.serialization_lib.deserialize_keras_object(
          config, custom_objects=custom_objects, safe_mode=bool(safe_mode))
    with tempfile.TemporaryDirectory() as tmp:
      old_path, new_path = os.path.join(tmp, "old.h5"), os.path.join(tmp, "new.h5")
      with open(old_path, "wb") as handle:
        handle.write(archive.read(_WEIGHTS))
      with _open_h5(old_path) as old, _open_h5(new_path, "w") as new:
        _rewrite_weights(old, new, model)
      with zipfile.ZipFile(target, "w", zipfile.ZIP_DEFLATED) as out:
        for name in names:
          if name == _WEIGHTS:
            out.write(new_path, _WEIGHTS)
          else:
            out.writestr(archive.getinfo(name), archive.read(name))
  return target
