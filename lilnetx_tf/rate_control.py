"""A size target for LilNetX training: `compression`, and the controller that holds it.

`lnx.convert(model, compression=12)` asks for a `.lnx` file about 12× smaller than the model's
parameters at one byte each (what an int8 TFLite file of the plain model holds). The weights
of the penalties (`rate_weight`, `slice_weight`, `l2_weight`) then only set their proportions:
`RateController`, a callback the converted model's `fit` gets without extra code, scales all
three by one factor (the registry's `penalty_scale`), multiplicatively every `interval` steps,
toward the latent bits that leave room for the file's other contents:

  budget   = parameters / compression                          bytes of the whole file
  floats   = 2 bytes × every non-latent weight (biases, BatchNorm, layers not converted:
             `compress(float16=True)`); architecture = LZMA2 of its JSON
  target   = 8 × (budget − floats − architecture) bits for the latents, but at least
             8 × latents / compression (the latents alone at the ratio: a tiny model's
             architecture, or a model whose weights are mostly in layers LilNetX does not
             convert, cannot reach the ratio as a whole; the latter is warned about).

Control law (proportional-integral on the log of the factor, i.e. dual ascent on the constraint
bits ≤ target): every `interval` steps the exact bits of the rounded latents under the
densities (`ParameterGroup.member_bits`, one density evaluation per group) are measured, and
with e = log(bits / aim): log(factor) = I + proportional·e, I += gain·e, clipped to
[min_scale, max_scale]. Above the aim the penalties grow geometrically, below it they relax,
so the model keeps every bit the target allows for its task. The aim falls geometrically from
the bits at the start of the first `fit` to the target over its first `ramp` of steps (a
trained model warm-started on a fine grid is not crushed in a few steps). Two safeguards:
the factor starts at `initial_scale` (1: the weights as given, gentle while the task has not
started learning; measured: a text model on its ln 2 plateau died at a start of 30), and
it may not grow, and is cut (checked after every step), while the penalties exceed
`max_penalty_ratio` × the task loss (the monitor's running means; the loss taken as at
least a tenth of its first value, so that a solved task, loss -> 0, does not forbid every
penalty): a target the task cannot afford in the budget is approached slowly rather than by
collapsing the model; the `PenaltyGuard` still warns past 10×. After `fit`,
BatchNormalization statistics are set to the final weights (`refresh_batches`,
`batchnorm.refresh_batchnorm`).
Being relative to the model's own size, the same default means the same on every model.
"""

import lzma
import math
import warnings
import weakref
from typing import Callable, Optional

import numpy as np
import tensorflow as tf

from lilnetx_tf import _compat
from lilnetx_tf import callbacks
from lilnetx_tf import errors
from lilnetx_tf import monitor as monitor_lib
from lilnetx_tf.coding import architecture
from lilnetx_tf.layers import ParameterGroup, lilnetx_layers
from lilnetx_tf import validation

__all__ = ["RateController", "DEFAULT_COMPRESSION", "SizeBudget", "size_budget", "latent_bits"]

# The default target of `lnx.convert`: 12× below one byte per parameter, so that the file lands
# at least 10× below the plain model's int8 TFLite file (which also stores float32 biases and
# its own framing) with margin for the estimate (benchmarks/defaults_zoo.py).
DEFAULT_COMPRESSION = 12.0
_FLOAT_BYTES = 2   # `compress(float16=True)`
_UNKNOWN_LENGTH = 2000   # steps assumed for the ramp when `fit` does not know its length
# The penalty cap compares with the task loss, but with at least this share of its first value:
# a task the model has solved (loss -> 0, e.g. the zoo's text model at 100 %) leaves room for
# the size target (measured: its factor fell to 0.19 and the file stayed at 19× instead of 32×),
# while a loss still on its first plateau keeps the cap.
_TASK_FLOOR = 0.1


class SizeBudget:
  """The parameter count, stored bytes besides the latents, and latent-bit target of a model."""

  def __init__(self, parameters: int, latents: int, float_bytes: float, architecture_bytes: int,
               compression: float):
    self.parameters, self.latents = parameters, latents
    self.float_bytes, self.architecture_bytes = float_bytes, architecture_bytes
    self.compression = compression
    self.file_bytes = parameters / compression
    floor = 8 * latents / compression
    self.target_bits = max(8 * (self.file_bytes - float_bytes - architecture_bytes), floor)
    # The floats are the user's to act on (convert more layers, quantize them); the
    # architecture, a fixed cost that only matters for tiny models, is not.
    self.floats_dominate = float_bytes > self.file_bytes / 2


def size_budget(model: tf.keras.Model, compression: float) -> SizeBudget:
  """Counts `model`'s parameters (a converted kernel at its plain size) and stored floats."""
  layers = lilnetx_layers(model)
  latent_ids = {id(layer.latent_variable) for layer in layers}
  latents = sum(int(np.prod(layer.latent_variable.shape)) for layer in layers)
  floats = 0
  # pylint: disable=protected-access
  for layer in model._flatten_layers(include_self=False):
    if isinstance(layer, (tf.keras.Model, ParameterGroup)):
      continue      # a nested model's layers are visited; a group's decoder is counted below
    # Its own variables (not its sublayers'), at their value's size: a TF-IDF layer's idf
    # weights have a dynamic shape, and a lookup layer's vocabulary is a weight handler, no
    # variable (as `macs.model_parameters` counts them).
    own = layer._trainable_weights + layer._non_trainable_weights
    floats += sum(int(tf.size(w)) for w in own
                  if isinstance(w, tf.Variable) and id(w) not in latent_ids)
  groups = {id(layer.group): layer.group for layer in layers}
  decoders = sum(g.slice_size ** 2 + 1 for g in groups.values())
  try:
    arch = len(lzma.compress(architecture.encode(model), format=lzma.FORMAT_RAW,
                             filters=[{"id": lzma.FILTER_LZMA2}]))
  except errors.UnsupportedLayerError:
    arch = 0     # not serializable (custom layers): `compress` will say so; train anyway
  return SizeBudget(latents + floats, latents, _FLOAT_BYTES * (floats + decoders), arch,
                    compression)


def latent_bits(model: tf.keras.Model) -> float:
  """Exact bits of the model's rounded latents under their groups' densities."""
  return float(_latent_bits_tensor(_groups(model)))


def _latent_bits_tensor(groups: dict) -> tf.Tensor:
  return tf.add_n([tf.add_n(group.member_bits([m.integer_latent for m in members]))
                   for group, members in groups.items()] or [tf.constant(0.0)])


def _traced_latent_bits(model: tf.keras.Model) -> Callable[[], float]:
  """`latent_bits` of `model` as one traced function (eager if the model runs eagerly): the
  controller measures every `interval` steps, and eagerly each measurement ran its density
  evaluation op by op (an MLP of 235 k latents: 9.6 ms eager, 2.2 ms traced, 0.23 s to trace)."""
  if model.run_eagerly:
    return lambda: latent_bits(model)
  groups = _groups(model)
  traced = _compat.traced_per_call(lambda: _latent_bits_tensor(groups), autograph=False)
  return lambda: float(traced())


def _groups(model) -> dict:
  groups: dict = {}
  for layer in lilnetx_layers(model):
    groups.setdefault(layer.group, []).append(layer)
  return groups


class RateController(callbacks.PenaltySchedule):
  """Scales the LilNetX penalties during `fit` so the estimated file meets a size target.

  `lnx.convert(model, compression=...)` attaches one to the model it returns (its `fit` adds
  it unless a `PenaltySchedule` is passed); build one yourself for hand-built models. The
  factor persists across `fit` calls of one controller. Logs `lnx_rate_scale` (the factor) and
  `lnx_target_ratio` (estimated file bytes / target bytes) each epoch.

  Args:
    compression: Target: the file this many times smaller than the model's parameter count
      in bytes (int8 weights). See the module docstring for how the floats are budgeted.
    interval: Steps between two measurements of the bits that steer the factor (the penalty
      cap is checked after every step).
    gain: Change of log(factor) per update per unit of log(bits / target).
    min_scale, max_scale: Bounds of the factor.
    refresh_batches: After `fit` (of a model `lnx.convert` or `lnx.monitor` returned), the
      BatchNormalization statistics are set to the final weights' on this many batches of
      the inputs `fit` was given (arrays or a tf.data.Dataset; `batchnorm.refresh_batchnorm`):
      the factor moves the weights to the last step, beyond what the moving averages follow.
      0: keep the moving averages.
  """

  def __init__(self, compression: float = DEFAULT_COMPRESSION, interval: int = 10,
               gain: float = 0.3, proportional: float = 1.0, ramp: float = 0.25,
               initial_scale: float = 1.0, max_penalty_ratio: float = 3.0,
               min_scale: float = 1e-3, max_scale: float = 1e6, refresh_batches: int = 32):
    self.compression = validation.positive_float("compression", compression)
    if self.compression < 1:
      raise errors.InvalidArgumentError(
          f"`compression` must be >= 1 (× smaller than int8 weights), got {compression!r}.")
    self.interval = validation.positive_int("interval", interval)
    self.gain = validation.positive_float("gain", gain)
    self.proportional = validation.non_negative_float("proportional", proportional)
    self.ramp = validation.non_negative_float("ramp", ramp)
    if self.ramp > 1:
      raise errors.InvalidArgumentError(f"`ramp` must be in [0, 1], got {ramp!r}.")
    self.min_scale = validation.positive_float("min_scale", min_scale)
    self.max_scale = validation.positive_float("max_scale", max_scale)
    if self.min_scale > 1 or self.max_scale < 1:
      raise errors.InvalidArgumentError(
          f"Need min_scale <= 1 <= max_scale, got {min_scale!r} and {max_scale!r}.")
    self.initial_scale = validation.positive_float("initial_scale", initial_scale)
    self.max_penalty_ratio = validation.positive_float("max_penalty_ratio", max_penalty_ratio)
    self.refresh_batches = validation.non_negative_int("refresh_batches", refresh_batches)
    self.scale = self.initial_scale
    self._integral = math.log(self.initial_scale)    # log of the factor's slow part
    self._start = None      # (optimizer step, latent bits) when the controller first ran
    self._first_task = None     # the task loss of the first measurement (the loss's scale)
    self._ramp_steps = 0
    self.budget: Optional[SizeBudget] = None
    self.last_bits: Optional[float] = None
    self._latent_bits: Optional[Callable[[], float]] = None   # of the model `_measured` refers to
    self._measured = None
    super().__init__(lambda step: self.scale)

  def get_config(self) -> dict:
    return dict(compression=self.compression, interval=self.interval, gain=self.gain,
                proportional=self.proportional, ramp=self.ramp,
                initial_scale=self.initial_scale, max_penalty_ratio=self.max_penalty_ratio,
                min_scale=self.min_scale, max_scale=self.max_scale,
                refresh_batches=self.refresh_batches)

  @classmethod
  def from_config(cls, config: dict) -> "RateController":
    return cls(**config)

  def on_train_begin(self, logs=None):
    super().on_train_begin(logs)
    self.budget = size_budget(self.model, self.compression)
    if self._measured is None or self._measured() is not self.model:
      # Traced once per model, not once per fit (a tuner's or a loop's many short fits).
      self._latent_bits, self._measured = _traced_latent_bits(self.model), weakref.ref(self.model)
    if self._start is None:   # the first fit sets the ramp; later fits continue it
      epochs, steps = self.params.get("epochs"), self.params.get("steps")
      total = epochs * steps if epochs and steps else _UNKNOWN_LENGTH
      self._ramp_steps = int(self.ramp * total)
      self._start = (int(self.model.optimizer.iterations.numpy()), self._latent_bits())
    if self.budget.floats_dominate:
      warnings.warn(
          f"compression={self.compression:g}: the floats the file stores besides the latents "
          f"(biases, BatchNorm, layers LilNetX does not convert: ~{self.budget.float_bytes:,.0f} "
          f"bytes at float16) take more than half of the target ({self.budget.file_bytes:,.0f} "
          f"bytes); the latents are held at {self.budget.target_bits / 8:,.0f} bytes. Convert "
          "more layers, or store the floats with lnx.compress(float_bits=8).", UserWarning,
          stacklevel=2)

  def on_train_batch_end(self, batch, logs=None):
    # The cap is checked after every step (it reads the logs only); the bits, measured every
    # `interval` steps, steer the factor. Checked only with the bits, penalties far above a
    # tiny task loss (e.g. 1/count class weights) dominated the first `interval` steps and
    # shrank the latents below the target for good.
    step = int(self.model.optimizer.iterations.numpy())
    logs = logs or {}
    excess = self.excess(logs.get(monitor_lib.PENALTY), logs.get(monitor_lib.TASK_LOSS))
    if step % self.interval == 0:
      self.update(self._latent_bits(), step, excess)
    elif excess is not None and excess > 1:
      self.update(None, step, excess)

  def excess(self, penalty: Optional[float], task: Optional[float]) -> Optional[float]:
    """The penalties over their cap, `max_penalty_ratio` × the task loss (but at least
    `_TASK_FLOOR` × the first task loss measured); None without both running means."""
    if penalty is None or task is None or task <= 0:
      return None
    if self._first_task is None:
      self._first_task = task
    return penalty / (self.max_penalty_ratio * max(task, _TASK_FLOOR * self._first_task))

  def target_bits(self, step: int) -> float:
    """The latent bits aimed at after `step`: from the start down to the budget's target,
    geometrically over the first `ramp` of the first fit's steps, then the target."""
    final = self.budget.target_bits
    start_step, start_bits = self._start
    if start_bits <= final or not self._ramp_steps:
      return final
    left = max(0.0, 1.0 - (step - start_step) / self._ramp_steps)
    return final * (start_bits / final) ** left

  def update(self, bits: Optional[float], step: int, excess: Optional[float] = None) -> float:
    """One control step from the measured latent `bits` after `step` (None: the cap alone,
    between two measurements); returns the factor.

    `excess`: the penalties over `max_penalty_ratio` × the task loss (monitor's running
    means). Above 1 the factor may not grow and is cut by it: a target the task cannot
    afford in this many steps is approached more slowly instead of collapsing the model."""
    if bits is None:
      error = 0.0
    else:
      self.last_bits = bits
      error = math.log(max(bits, 1.0) / max(self.target_bits(step), 1.0))
    if excess is not None and excess > 1:
      error = min(error, 0.0) - math.log(excess)
    low, high = math.log(self.min_scale), math.log(self.max_scale)
    self._integral = float(np.clip(self._integral + self.gain * error, low, high))
    self.scale = math.exp(float(np.clip(self._integral + self.proportional * error, low, high)))
    return self.scale

  def on_epoch_end(self, epoch, logs=None):
    if logs is None or self.budget is None:
      return
    bits = self._latent_bits()
    logs["lnx_rate_scale"] = self.scale
    logs["lnx_target_ratio"] = (bits / 8 + self.budget.float_bytes) / self.budget.file_bytes
