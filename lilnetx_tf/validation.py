"""Argument checks shared by every package: layers, converter, coding, export and tuning."""

import math
from typing import Any

from lilnetx_tf import errors

__all__ = ["non_negative_float", "positive_float", "positive_int", "int_in_range",
           "non_negative_int", "boolean"]


def non_negative_float(name: str, value: Any) -> float:
  """Returns `value` as a float, or raises if it is not a finite number >= 0.

  Strings and booleans are refused even where `float()` would take them ("1e-3", True): they
  are almost always a mistake in a config.
  """
  if isinstance(value, (str, bytes, bool)) or type(value).__name__ == "bool_":
    raise errors.InvalidArgumentError(
        f"`{name}` must be a non-negative number, got {value!r}.")
  try:
    number = float(value)
  except (TypeError, ValueError):
    raise errors.InvalidArgumentError(
        f"`{name}` must be a non-negative number, got {value!r}.") from None
  if not math.isfinite(number) or number < 0:
    raise errors.InvalidArgumentError(
        f"`{name}` must be a finite number >= 0, got {value!r}.")
  return number


def positive_float(name: str, value: Any) -> float:
  """Returns `value` as a float, or raises if it is not a finite number > 0."""
  number = non_negative_float(name, value)
  if number == 0:
    raise errors.InvalidArgumentError(f"`{name}` must be > 0, got {value!r}.")
  return number


def positive_int(name: str, value: Any) -> int:
  """Returns `value` as an int, or raises if it is not a whole number > 0."""
  if isinstance(value, (bool, float)) or not hasattr(value, "__index__") or int(value) <= 0:
    raise errors.InvalidArgumentError(f"`{name}` must be a whole number > 0, got {value!r}.")
  return int(value)


def int_in_range(name: str, value: Any, low: int, high: int) -> int:
  """Returns `value` as an int, or raises if it is not a whole number in [low, high]."""
  if isinstance(value, (bool, float)) or not hasattr(value, "__index__") or \
     not low <= int(value) <= high:
    raise errors.InvalidArgumentError(
        f"`{name}` must be a whole number in [{low}, {high}], got {value!r}.")
  return int(value)


def non_negative_int(name: str, value: Any) -> int:
  """Returns `value` as an int, or raises if it is not a whole number >= 0."""
  if isinstance(value, (bool, float)) or not hasattr(value, "__index__") or int(value) < 0:
    raise errors.InvalidArgumentError(f"`{name}` must be a whole number >= 0, got {value!r}.")
  return int(value)


def boolean(name: str, value: Any) -> bool:
  """Returns `value` if it is a bool (numpy's too), or raises: `"no"` is truthy in Python."""
  if not isinstance(value, bool) and type(value).__name__ != "bool_":
    raise errors.InvalidArgumentError(f"`{name}` must be True or False, got {value!r}.")
  return bool(value)
