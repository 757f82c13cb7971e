"""A cap on the variables a block may create, checked before each is allocated.

Rebuilding an architecture from a file creates the model's variables as Keras builds its
layers; a file that declares a few parameters but describes `Dense(units=10**9)` would
otherwise allocate gigabytes before any shape is compared. `budget(limit)` counts every
variable's elements in a `tf.variable_creator_scope` and refuses the one that goes over.
"""

import contextlib
from typing import Iterator

import numpy as np
import tensorflow as tf

from lilnetx_tf import errors

__all__ = ["Budget", "budget"]


class Budget:
  """Elements created so far (`used`) against `limit`; `exceeded` once one was refused."""

  def __init__(self, limit: int):
    self.limit, self.used, self.exceeded = limit, 0, False

  def charge(self, elements: int) -> None:
    self.used += elements
    if self.used > self.limit:
      self.exceeded = True
      raise errors.ModelFileError(
          f"The architecture creates more than {self.limit:,} parameters (at least "
          f"{self.used:,}).")


def _elements(kwargs: dict) -> int:
  """Elements of the variable a creator call will make, without making it."""
  shape = kwargs.get("shape")
  if shape is not None:
    shape = tf.TensorShape(shape)
    if shape.is_fully_defined():
      return shape.num_elements()
  value = kwargs.get("initial_value")
  if value is None or callable(value):
    return 1
  elements = tf.TensorShape(getattr(value, "shape", np.shape(value))).num_elements()
  return 1 if elements is None else elements


@contextlib.contextmanager
def budget(limit: int) -> Iterator[Budget]:
  """Within the block, creating variables of more than `limit` elements in all raises
  `ModelFileError` (and sets `exceeded`, in case a caller swallows the error)."""
  state = Budget(limit)

  def creator(next_creator, **kwargs):
    if state.exceeded:
      raise errors.ModelFileError("The architecture creates too many parameters.")
    state.charge(_elements(kwargs))
    return next_creator(**kwargs)

  with tf.variable_creator_scope(creator):
    yield state
