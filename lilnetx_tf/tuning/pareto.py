"""Pareto front over (accuracy ↑, file bytes ↓, MACs ↓) and rule-based picking.

Pure Python: a point is anything with the attributes `accuracy`, `bytes` and `macs` (e.g. a
`TrialRecord`) or a mapping with those keys.
"""

import math
from typing import Any, Iterable, Optional, Sequence

from lilnetx_tf import errors
from lilnetx_tf.errors import NoMatchingTrialError

__all__ = ["AXES", "dominates", "pareto_front", "pick"]

# (field, direction): the three axes of the trade-off.
AXES = (("accuracy", "max"), ("bytes", "min"), ("macs", "min"))
_MINIMIZE_CHOICES = ("bytes", "macs", "error")


def value(point: Any, field: str) -> float:
  """`point.field` or `point[field]` as a float."""
  if isinstance(point, dict):
    return float(point[field])
  return float(getattr(point, field))


def _valid(point: Any) -> bool:
  try:
    return all(math.isfinite(value(point, f)) for f, _ in AXES)
  except (KeyError, AttributeError, TypeError, ValueError):
    return False


def dominates(a: Any, b: Any, axes: Sequence[tuple] = AXES) -> bool:
  """True when `a` is at least as good as `b` on every axis and strictly better on one."""
  strictly = False
  for field, direction in axes:
    va, vb = value(a, field), value(b, field)
    if direction == "max":
      va, vb = -va, -vb
    if va > vb:
      return False
    if va < vb:
      strictly = True
  return strictly


def pareto_front(points: Iterable[Any], axes: Sequence[tuple] = AXES) -> list:
  """The points no other point dominates, sorted by file size then MACs (smallest first).

  Points with a missing or non-finite figure (failed trials) are ignored. Equal points are all
  kept: neither dominates the other.
  """
  candidates = [p for p in points if _valid(p)]
  front = [p for p in candidates
           if not any(dominates(q, p, axes) for q in candidates if q is not p)]
  return sorted(front, key=lambda p: (value(p, "bytes"), value(p, "macs"),
                                      -value(p, "accuracy")))


def _check_bound(name: str, bound: Optional[float], positive: bool) -> Optional[float]:
  if bound is None:
    return None
  if isinstance(bound, bool) or not isinstance(bound, (int, float)):
    raise errors.InvalidArgumentError(f"`{name}` must be a number or None, got {bound!r}.")
  bound = float(bound)
  if not math.isfinite(bound) or (positive and bound <= 0):
    raise errors.InvalidArgumentError(
        f"`{name}` must be a finite{' positive' if positive else ''} number, got {bound!r}.")
  return bound


def pick(points: Iterable[Any], *, minimize: str = "bytes",
         min_accuracy: Optional[float] = None, max_bytes: Optional[float] = None,
         max_macs: Optional[float] = None) -> Any:
  """The point that satisfies every bound and is best under `minimize`.

  Args:
    points: trials or a Pareto front (picking from all trials and from their front gives the
      same answer: the best feasible point is never dominated by another feasible one, except
      by ties).
    minimize: "bytes" (smallest file), "macs" (least compute) or "error" (highest accuracy).
      Ties are broken by higher accuracy, then fewer bytes, then fewer MACs.
    min_accuracy, max_bytes, max_macs: inclusive constraints; None means no constraint.

  Raises:
    InvalidArgumentError: for an unknown `minimize` or a bound that is not a (positive) number.
    NoMatchingTrialError: when no point satisfies the bounds.
  """
  if minimize not in _MINIMIZE_CHOICES:
    raise errors.InvalidArgumentError(
        f"`minimize` must be one of {_MINIMIZE_CHOICES}, got {minimize!r}.")
  min_accuracy = _check_bound("min_accuracy", min_accuracy, positive=False)
  max_bytes = _check_bound("max_bytes", max_bytes, positive=True)
  max_macs = _check_bound("max_macs", max_macs, positive=True)
  points = [p for p in points if _valid(p)]
  if not points:
    raise NoMatchingTrialError("There is no completed trial to pick from.")
  feasible = [p for p in points
              if (min_accuracy is None or value(p, "accuracy") >= min_accuracy)
              and (max_bytes is None or value(p, "bytes") <= max_bytes)
              and (max_macs is None or value(p, "macs") <= max_macs)]
  if not feasible:
    rule = ", ".join(f"{k} {op} {v:g}" for k, op, v in (
        ("accuracy", ">=", min_accuracy), ("bytes", "<=", max_bytes), ("macs", "<=", max_macs))
        if v is not None)
    best_acc = max(value(p, "accuracy") for p in points)
    least_bytes = min(value(p, "bytes") for p in points)
    least_macs = min(value(p, "macs") for p in points)
    raise NoMatchingTrialError(
        f"No trial satisfies {rule} among {len(points)} trial(s); the best figures reached were "
        f"accuracy {best_acc:.4f}, {least_bytes:.0f} bytes and {least_macs:.0f} MACs (not "
        "necessarily in one trial). Relax the rule or search further (more trials, other "
        "rate_weight / slice_weight ranges).")
  primary = {"bytes": lambda p: value(p, "bytes"), "macs": lambda p: value(p, "macs"),
             "error": lambda p: -value(p, "accuracy")}[minimize]
  return min(feasible, key=lambda p: (primary(p), -value(p, "accuracy"), value(p, "bytes"),
                                      value(p, "macs")))
