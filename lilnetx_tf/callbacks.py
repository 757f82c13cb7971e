"""Keras callbacks for training LilNetX models: progress figures and a penalty warm-up."""

import tensorflow as tf

from lilnetx_tf import errors
from lilnetx_tf import stats as stats_lib
from lilnetx_tf.layers import registry as registry_lib
from lilnetx_tf.layers import validation


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


class PenaltyWarmup(tf.keras.callbacks.Callback):
  """Ramps the LilNetX penalties (rate, slice norms, L2) linearly from 0 to full weight.

  Over the first `warmup_steps` optimizer steps the penalties are scaled by step / warmup_steps,
  so the network learns its task before the rate and slice terms start zeroing latents; in a
  short training budget this trades a little size for accuracy. The ramp follows the
  optimizer's step count, so a run resumed from a checkpoint continues it where it stopped.
  After `fit` the penalties are back at full weight.

  Args:
    warmup_steps: Number of training steps (batches) the ramp lasts.
  """

  def __init__(self, warmup_steps: int):
    super().__init__()
    self.warmup_steps = validation.positive_int("warmup_steps", warmup_steps)
    self._registries: list = []
    self._value = 0.0

  def on_train_begin(self, logs=None):
    self._registries = []
    for layer in stats_lib.lilnetx_layers(self.model):
      registry = registry_lib.registry_of(layer)
      if all(registry is not r for r in self._registries):
        self._registries.append(registry)
    if not self._registries:
      raise errors.InvalidArgumentError(
          "PenaltyWarmup needs a model with LilNetX layers; this one has none.")
    for registry in self._registries:
      registry.start_penalty_scale()
    self.model.make_train_function(force=True)  # trace the training step with the factor
    self._set(self._ramp())

  def on_train_batch_begin(self, batch, logs=None):
    if self._value < 1.0:  # nothing to do per batch once the ramp is over
      self._set(self._ramp())

  def on_train_end(self, logs=None):
    for registry in self._registries:
      registry.stop_penalty_scale()

  def _ramp(self) -> float:
    step = int(self.model.optimizer.iterations.numpy()) + 1
    return min(1.0, step / self.warmup_steps)

  def _set(self, value: float) -> None:
    self._value = value
    for registry in self._registries:
      registry.penalty_scale.assign(value)
