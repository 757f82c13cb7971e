"""The state a model holds, as a model file stores it: variables and lookup vocabularies.

Keras lists a model's state in `model.weights`: its variables and, for a lookup layer whose
vocabulary was adapted or set (`TextVectorization`, `StringLookup`, `IntegerLookup`), a weight
handler whose tensors are the vocabulary of a static hash table (strings or integers, of a
length only the data knows). `state_tensors` lists both as `StateTensor`s that read and restore
that state; anything else in `model.weights` raises `UnsupportedLayerError` naming its layer.
A variable of a dynamic shape (e.g. the idf weights of a TF-IDF `TextVectorization`) is stored
at the shape of its value.
"""

import dataclasses
from typing import Any, Optional

import numpy as np
import tensorflow as tf

from lilnetx_tf import _compat
from lilnetx_tf import errors

__all__ = ["StateTensor", "state_tensors", "owners", "holds_vocabularies",
           "holds_data_sized_state", "parameter_count", "restore"]

_Handler = _compat.base_layer_utils.TrackableWeightHandler


@dataclasses.dataclass(frozen=True)
class StateTensor:
  """One tensor of a model's state: a variable, or tensor `index` of a weight handler."""
  source: Any            # a tf.Variable or a TrackableWeightHandler
  index: int             # which of a handler's tensors; 0 for a variable
  owner: str             # what holds it, for messages

  @property
  def is_variable(self) -> bool:
    return not isinstance(self.source, _Handler)

  @property
  def name(self) -> str:
    if self.is_variable:
      return self.source.name
    return f"vocabulary tensor {self.index} of {self.owner}"

  def value(self) -> np.ndarray:
    """The tensor's value (an object array of bytes for strings)."""
    if self.is_variable:
      return self.source.numpy()
    return self.source.get_tensors()[self.index].numpy()

  @property
  def dtype(self) -> str:
    if self.is_variable:
      return self.source.dtype.name
    return self.source.get_tensors()[self.index].dtype.name

  def accepts(self, shape: tuple) -> bool:
    """Whether a stored tensor of `shape` fits: the variable's (possibly dynamic) shape, or
    a handler tensor's rank (its length is the data's)."""
    if self.is_variable:
      return self.source.shape.is_compatible_with(shape)
    return len(shape) == self.source.get_tensors()[self.index].shape.rank


def owners(model: tf.keras.Model) -> dict:
  """id(weight) → "layer 'name'", for the innermost layer holding each of `model.weights`."""
  found = {}
  for layer in model._flatten_layers(include_self=False):   # outer layers before inner ones
    for weight in layer.weights:
      found[id(weight)] = f"layer {layer.name!r}"
  return found


def _tensors_of(weight, owner: str) -> list:
  if isinstance(weight, _Handler):
    return [StateTensor(weight, i, owner) for i in range(weight.num_tensors)]
  if isinstance(weight, tf.Variable):
    return [StateTensor(weight, 0, owner)]
  raise errors.UnsupportedLayerError(
      f"The model's {owner} holds state of type {type(weight).__name__}, which a model file "
      "cannot store (it stores variables and lookup vocabularies).")


def state_tensors(model: tf.keras.Model, weights: Optional[list] = None,
                  names: Optional[dict] = None) -> list:
  """The `StateTensor`s of `weights` (default: `model.weights`), in order; `names` maps
  id(weight) to its owner's description (default: `owners(model)`)."""
  names = owners(model) if names is None else names
  weights = model.weights if weights is None else weights
  return [t for w in weights for t in _tensors_of(w, names.get(id(w), "the model"))]


def holds_vocabularies(model: tf.keras.layers.Layer) -> bool:
  """Whether `model.weights` (of a model or a layer) has a weight handler (a lookup layer's
  vocabulary)."""
  return any(isinstance(w, _Handler) for w in model.weights)


def holds_data_sized_state(model: tf.keras.layers.Layer) -> bool:
  """Whether some of `model`'s state has a size only the data gives: a vocabulary, or a
  variable of a dynamic shape (a `Discretization`'s adapt summary, TF-IDF weights). A model
  rebuilt from its config holds such state at another size until its values are loaded."""
  return holds_vocabularies(model) or any(
      isinstance(w, tf.Variable) and not w.shape.is_fully_defined() for w in model.weights)


def parameter_count(model: tf.keras.Model) -> int:
  """Elements of every tensor of `model`'s state (a vocabulary's tokens included): what a file
  declares and a reader may allocate."""
  count = 0
  for weight in model.weights:
    if isinstance(weight, _Handler):
      count += sum(int(t.shape.num_elements()) for t in weight.get_tensors())
    elif weight.shape.is_fully_defined():
      count += weight.shape.num_elements()
    else:
      count += int(tf.size(weight))
  return count


def restore(model: tf.keras.Model, tensors: list, values: list) -> None:
  """Sets each of `tensors` (of `model`) to its value; a handler's tensors are set together,
  then each layer finalizes its state from them as after Keras's `set_weights` (a vocabulary
  size, a TF-IDF constant, a `Normalization`'s mean). Raises `ModelFileError` for a
  vocabulary the layer refuses."""
  by_handler = {}
  for tensor, value in zip(tensors, values):
    if tensor.is_variable:
      tensor.source.assign(value)
    else:
      by_handler.setdefault(id(tensor.source), (tensor, []))[1].append(value)
  for tensor, handler_values in by_handler.values():
    for value in handler_values:
      if value.ndim and len(np.unique(value)) != len(value):
        raise errors.ModelFileError(f"The model file repeats a token in the {tensor.name}.")
    try:
      tensor.source.set_weights(handler_values)
    except (tf.errors.OpError, ValueError, TypeError) as e:
      raise errors.ModelFileError(f"The {tensor.name} cannot be restored: {e}") from None
  for layer in model._flatten_layers(include_self=False):
    layer.finalize_state()
