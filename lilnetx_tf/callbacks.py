"""Keras callbacks for training LilNetX models: progress figures, a guard, penalty schedules."""

import warnings
from typing import Callable, Optional

import tensorflow as tf

from lilnetx_tf import errors
from lilnetx_tf.layers import registry as registry_lib
from lilnetx_tf import monitor as monitor_lib
from lilnetx_tf import stats as stats_lib
from lilnetx_tf import validation

__all__ = ["CompressionMetrics", "PenaltyGuard", "PenaltySchedule", "PenaltyWarmup",
           "warmup_cooldown"]


class CompressionMetrics(tf.keras.callbacks.Callback):
  """Adds estimated size, sparsity and MAC figures to each epoch's logs.

  The figures then show in the progress bar, in `History` and in a `TensorBoard` callback
  listed after this one:
    lnx_kbytes            estimated latent size in KiB at the rounded latents
    lnx_slice_sparsity    fraction of all-zero (out, in) slices
    lnx_in_sparsity       fraction of dead input channels
    lnx_out_sparsity      fraction of dead output channels
    lnx_macs_ratio        dense MACs / MACs that skip zero slices
  """

  def on_epoch_end(self, epoch, logs=None):
    if logs is None:
      return
    figures = stats_lib.stats(self.model)
    logs.update(
        lnx_kbytes=figures["bytes"] / 1024,
        lnx_slice_sparsity=figures["slice_sparsity"],
        lnx_in_sparsity=figures["in_channel_sparsity"],
        lnx_out_sparsity=figures["out_channel_sparsity"],
        lnx_macs_ratio=figures["macs_ratio"],
    )


class PenaltyGuard(tf.keras.callbacks.Callback):
  """Warns when the LilNetX penalties take over training. `lnx.convert`'s models add it to `fit`.

  Reads the metrics of `lnx.monitor` at the end of each epoch (the model must be monitored) and
  warns, once per `fit` and kind, when
  - the penalties (`lnx_penalty`) exceed `factor` times the task loss's scale (the largest
    `task_loss` of an epoch so far in this `fit`): the optimizer then mostly shrinks the
    latents, and the task stalls. The scale, not the current value: a task loss near zero
    because the task is learned is no reason to warn; or
  - the predictions collapse onto one class: `lnx_pred_majority` ≥ `collapse_share` while the
    labels' `lnx_label_majority` is below `label_share`.
  The warning names the knobs (`rate_weight`, `slice_weight`, `l2_weight`). Warnings are Python
  `UserWarning`s: `warnings.filterwarnings` silences them.

  Args:
    factor: Penalty / task-loss ratio above which to warn.
    collapse_share: Share of one predicted class taken as a collapse.
    label_share: The collapse warning needs the labels' majority share below this.
  """

  def __init__(self, factor: float = 10.0, collapse_share: float = 0.98,
               label_share: float = 0.9):
    super().__init__()
    self.factor = validation.positive_float("factor", factor)
    self.collapse_share = validation.positive_float("collapse_share", collapse_share)
    self.label_share = validation.positive_float("label_share", label_share)
    self._warned: set = set()
    self._task_scale = 0.0

  def on_train_begin(self, logs=None):
    self._warned = set()
    self._task_scale = 0.0

  def on_epoch_end(self, epoch, logs=None):
    logs = logs or {}
    knobs = ("lower the size target (`compression` of lnx.convert), or `rate_weight`, "
             "`slice_weight` or `l2_weight` (the arguments of lnx.convert and of the lnx "
             "layers), or ramp them in with lnx.callbacks.PenaltyWarmup")
    penalty, task = logs.get(monitor_lib.PENALTY), logs.get(monitor_lib.TASK_LOSS)
    if task is not None:
      self._task_scale = max(self._task_scale, abs(task))
    if penalty is not None and task is not None and penalty > self.factor * self._task_scale:
      self._warn("penalty", f"Epoch {epoch + 1}: the LilNetX penalties ({penalty:.4g}) are "
                 f"{penalty / max(self._task_scale, 1e-12):.3g}× the task loss (largest epoch "
                 f"value {self._task_scale:.4g}); the model "
                 f"may stop learning its task. To fix it, {knobs}. (A loss scaled down, e.g. by "
                 "a class_weight of 1/count, makes every penalty relatively larger.)")
    predicted, labels = logs.get(monitor_lib.PRED_MAJORITY), logs.get(monitor_lib.LABEL_MAJORITY)
    if predicted is not None and labels is not None and predicted >= self.collapse_share \
       and labels < self.label_share:
      self._warn("collapse", f"Epoch {epoch + 1}: {100 * predicted:.1f} % of the predictions "
                 f"fall in one class, against {100 * labels:.1f} % of the labels: the model's "
                 f"outputs have collapsed. If the penalties are large against the task loss "
                 f"(`lnx_penalty` vs `task_loss` in the logs), {knobs}.")

  def _warn(self, kind: str, message: str) -> None:
    if kind not in self._warned:
      self._warned.add(kind)
      warnings.warn(message, UserWarning, stacklevel=2)


class PenaltySchedule(tf.keras.callbacks.Callback):
  """Scales the LilNetX penalties (rate, slice norms, L2) by `schedule(step)` during `fit`.

  `schedule` maps the optimizer's step count (0 at the first batch of a fresh run) to a factor
  >= 0 on all three penalties; it is read before every batch. Following the optimizer's step
  rather than the batch index, a run resumed from a checkpoint continues the schedule where it
  stopped. After `fit` the penalties are back at full weight. Use it to ramp the penalties in
  (`PenaltyWarmup`), to hold them off for the first epochs, or to ease them at the end.

  Args:
    schedule: Callable from the step count (int) to the penalty factor (float >= 0).
  """

  def __init__(self, schedule: Callable[[int], float]):
    super().__init__()
    if not callable(schedule):
      raise errors.InvalidArgumentError(
          f"`schedule` must be a callable from the step count to a factor, got {schedule!r}.")
    self.schedule = schedule
    self._registries: list = []
    self._value = None

  def on_train_begin(self, logs=None):
    self._registries = []
    for layer in stats_lib.lilnetx_layers(self.model):
      registry = registry_lib.registry_of(layer)
      if all(registry is not r for r in self._registries):
        self._registries.append(registry)
    if not self._registries:
      raise errors.InvalidArgumentError(
          f"{type(self).__name__} needs a model with LilNetX layers; this one has none.")
    for registry in self._registries:
      registry.start_penalty_scale()
    self.model.make_train_function(force=True)  # trace the training step with the factor
    self._value = None
    self._set(self._factor())

  def on_train_batch_begin(self, batch, logs=None):
    self._set(self._factor())

  def on_train_end(self, logs=None):
    for registry in self._registries:
      registry.stop_penalty_scale()

  def _factor(self) -> float:
    step = int(self.model.optimizer.iterations.numpy())
    return validation.non_negative_float(f"the penalty factor at step {step}",
                                         self.schedule(step))

  def _set(self, value: float) -> None:
    if value != self._value:    # one assignment per change, not per batch
      self._value = value
      for registry in self._registries:
        registry.penalty_scale.assign(value)


class PenaltyWarmup(PenaltySchedule):
  """Ramps the LilNetX penalties (rate, slice norms, L2) linearly from 0 to full weight.

  Over the first `warmup_steps` optimizer steps the penalties are scaled by step / warmup_steps,
  so the network learns its task before the rate and slice terms start zeroing latents; in a
  short training budget this trades a little size for accuracy. Like every `PenaltySchedule`
  it continues a resumed run where it stopped, and leaves the penalties at full weight.

  Args:
    warmup_steps: Number of training steps (batches) the ramp lasts.
  """

  def __init__(self, warmup_steps: int):
    self.warmup_steps = validation.positive_int("warmup_steps", warmup_steps)
    super().__init__(warmup_cooldown(warmup_steps=self.warmup_steps))


def warmup_cooldown(warmup_steps: int = 0, cooldown_steps: int = 0,
                    total_steps: Optional[int] = None,
                    final_factor: float = 0.0) -> Callable[[int], float]:
  """A `PenaltySchedule` factor: a linear ramp from 0 to 1 over the first `warmup_steps`, full
  weight, then a linear descent to `final_factor` over the last `cooldown_steps` of
  `total_steps` (the step count of the whole run, needed only with a cool-down)."""
  warmup = validation.non_negative_int("warmup_steps", warmup_steps)
  cooldown = validation.non_negative_int("cooldown_steps", cooldown_steps)
  final = validation.non_negative_float("final_factor", final_factor)
  total = 0
  if cooldown:
    if total_steps is None:
      raise errors.InvalidArgumentError("A cool-down needs `total_steps`.")
    total = validation.positive_int("total_steps", total_steps)
    if warmup + cooldown > total:
      raise errors.InvalidArgumentError(
          f"`warmup_steps` ({warmup}) and `cooldown_steps` ({cooldown}) together exceed "
          f"`total_steps` ({total}).")

  def factor(step: int) -> float:
    ramp_in = min(1.0, (step + 1) / warmup) if warmup else 1.0
    if not cooldown:
      return ramp_in
    into_cooldown = min(1.0, max(0, step + 1 - (total - cooldown)) / cooldown)
    return ramp_in * (1.0 - (1.0 - final) * into_cooldown)

  return factor
