"""Honest training logs for LilNetX models, and a guard against penalties that take over.

Keras logs `loss` = the compiled loss plus every `add_loss` term, so with LilNetX layers it
follows the penalties as much as the task. `monitor(model)` (which `lnx.convert` calls on the
model it returns) adds, to every `fit` and `evaluate` of `model`, the metrics

  task_loss            the compiled loss alone (plus any non-LilNetX regularizer): what
                       `EarlyStopping(monitor="val_task_loss")` or `ModelCheckpoint` should watch
  lnx_penalty          the LilNetX penalties (rate + slice norms + L2), in task-loss units;
                       `loss` = `task_loss` + `lnx_penalty`
  lnx_pred_majority    share of the predictions in the batch's most frequent predicted class
  lnx_label_majority   share of the labels in the batch's most frequent class

(the last two for a single classification output: softmax/logits over ≥ 2 classes, or one
sigmoid unit; not under Keras's regression losses, nor a binary loss on several units, a
multi-label output), while the LilNetX layers add `lnx_bits_<group>` (each group's estimated bits,
noisy in training, at the rounded latents in evaluation). `fit` also gets a
`callbacks.PenaltyGuard` unless one is passed, which warns when the penalties dominate the task
loss or the predictions collapse onto one class. Before a fresh SGD optimizer's first step,
`fit` puts latents `convert` paced on a coarse grid back at pace 1 (`_match_pace`).

Hand-built models (`lnx.Dense`, ... without `convert`) get the same with `lnx.monitor(model)`.
The overrides are instance attributes (`compute_loss`, `fit`): they are not saved with the
model; call `monitor` again on a loaded model.
"""

import functools
import warnings

import tensorflow as tf

from lilnetx_tf import errors
from lilnetx_tf.layers import lilnetx_layers

__all__ = ["monitor", "attach_controller", "TASK_LOSS", "PENALTY", "PRED_MAJORITY", "LABEL_MAJORITY"]

TASK_LOSS = "task_loss"
PENALTY = "lnx_penalty"
PRED_MAJORITY = "lnx_pred_majority"
LABEL_MAJORITY = "lnx_label_majority"
_ATTACHED = "_lilnetx_monitor"
_CONTROLLER = "_lilnetx_rate_controller"
# Optimizers whose step is lr × the gradient (no per-variable normalization).
_GRADIENT_STEP = (tf.keras.optimizers.SGD, tf.keras.optimizers.legacy.SGD)


def _majority_share(classes: tf.Tensor, num_classes: int) -> tf.Tensor:
  """Share of the most frequent value in the int vector `classes` (values in [0, num_classes)).

  A segment sum of static length, not `tf.math.bincount`, whose output length is computed from
  the data: XLA (`compile(jit_compile=True)`) cannot compile that."""
  counts = tf.math.unsorted_segment_sum(tf.ones_like(classes, tf.float32), classes, num_classes)
  return tf.reduce_max(counts) / tf.maximum(tf.reduce_sum(counts), 1.0)


# Keras losses of outputs that are no classes (a count's Poisson loss on a softplus unit took
# every prediction for "class 1" and warned of a collapse), and the binary ones, which on several
# units are a multi-label output. Other losses, custom ones included, are judged by the shape.
_REGRESSION_LOSSES = frozenset({
    "mean_squared_error", "mean_absolute_error", "mean_absolute_percentage_error",
    "mean_squared_logarithmic_error", "huber", "log_cosh", "poisson", "cosine_similarity"})
_BINARY_LOSSES = frozenset({"binary_crossentropy", "binary_focal_crossentropy"})


def _loss_name(loss) -> str:
  """The function name of a compiled (single-output) Keras loss, "" if unknown."""
  if isinstance(loss, (list, tuple)) and len(loss) == 1:
    loss = loss[0]
  if isinstance(loss, dict) and len(loss) == 1:
    loss = next(iter(loss.values()))
  try:
    loss = tf.keras.losses.get(loss)
  except (ValueError, TypeError):
    return ""
  return str(getattr(getattr(loss, "fn", loss), "__name__", ""))


def _classes(y_pred: tf.Tensor, y: tf.Tensor, loss=None):
  """(predicted, true) class ids and the number of classes, or None if not a classifier
  (judged from the output's shape and the compiled `loss`)."""
  if not isinstance(y_pred, tf.Tensor) or y_pred.shape.rank is None or y_pred.shape.rank < 2:
    return None
  width = y_pred.shape[-1]
  name = _loss_name(loss)
  if width is None or name in _REGRESSION_LOSSES or (width > 1 and name in _BINARY_LOSSES):
    return None
  y = tf.convert_to_tensor(y)
  if width == 1:        # one sigmoid unit (or logit): the class is which side of 0.5 (or 0)
    # Keras marks the outputs of its sigmoid with their logits; anything else is taken as a logit.
    threshold = 0.0 if getattr(y_pred, "_keras_logits", None) is None else 0.5
    predicted = tf.cast(tf.reshape(y_pred, [-1]) > threshold, tf.int32)
    true = tf.cast(tf.cast(tf.reshape(y, [-1]), tf.float32) > 0.5, tf.int32)
    return predicted, true, 2
  predicted = tf.reshape(tf.argmax(y_pred, axis=-1, output_type=tf.int32), [-1])
  if y.shape.rank == y_pred.shape.rank and y.shape[-1] == width:   # one-hot labels
    true = tf.argmax(y, axis=-1, output_type=tf.int32)
  else:
    true = tf.cast(y, tf.int32)
  true = tf.clip_by_value(tf.reshape(true, [-1]), 0, width - 1)
  return predicted, true, int(width)


def attach_controller(model: tf.keras.Model, controller) -> None:
  """Makes `controller` (a `rate_control.RateController`, or None) part of every `fit` of the
  monitored `model` unless that `fit` is passed a `PenaltySchedule` of its own."""
  object.__setattr__(model, _CONTROLLER, controller)


def _add_controller(model, callbacks: list) -> None:
  from lilnetx_tf.callbacks import PenaltySchedule   # callbacks imports this module's names
  controller = getattr(model, _CONTROLLER, None)
  if controller is None or any(c is controller for c in callbacks):
    return
  if any(isinstance(c, PenaltySchedule) for c in callbacks):
    warnings.warn(
        "A PenaltySchedule passed to fit sets the penalty factor: the size target of "
        f"lnx.convert(compression={controller.compression:g}) is not held during this fit.",
        UserWarning, stacklevel=3)
    return
  callbacks.append(controller)


def _refresh_batchnorm(model, callbacks: list, args: tuple, kwargs: dict) -> None:
  """After a `fit` with a `RateController`, which moves the weights to the last step, sets the
  BatchNormalization statistics to the final weights' (`batchnorm.refresh_batchnorm`) on the
  inputs `fit` was given, when they can be read again."""
  from lilnetx_tf import batchnorm, rate_control   # rate_control imports this module's names
  batches = max((c.refresh_batches for c in callbacks
                 if isinstance(c, rate_control.RateController)), default=0)
  inputs, batch_size = batchnorm.fit_inputs(args, kwargs) if batches else (None, 0)
  if inputs is not None:
    batchnorm.refresh_batchnorm(model, inputs, batch_size, batches)


def _match_pace(model) -> None:
  """Before a fresh SGD optimizer's first step, puts paced latents (`ParameterGroup.set_grid`,
  `convert`'s coarse warm start) back at pace 1: the pace matches the plain weights' speed for
  optimizers whose step is ~lr whatever the gradient's scale (Adam and its kind), but SGD's step
  grows with the unit of the variable too, so it would move them pace² times faster."""
  optimizer = getattr(model, "optimizer", None)
  inner = getattr(optimizer, "inner_optimizer", optimizer)     # LossScaleOptimizer
  if not isinstance(inner, _GRADIENT_STEP) or int(optimizer.iterations.numpy()):
    return
  for group in {id(l.group): l.group for l in lilnetx_layers(model)}.values():
    if group.pace != 1.0:
      group.set_pace(1.0)


def monitor(model: tf.keras.Model) -> tf.keras.Model:
  """Adds the task-loss, penalty and class-share metrics and the guard to `model` (in place).

  Returns `model`. Calling it twice is harmless.
  """
  if not isinstance(model, tf.keras.Model):
    raise errors.InvalidArgumentError(f"`model` must be a Keras model, got {type(model)}.")
  if getattr(model, _ATTACHED, False):
    return model
  with tf.init_scope():
    trackers = {name: tf.keras.metrics.Mean(name) for name in
                (TASK_LOSS, PENALTY, PRED_MAJORITY, LABEL_MAJORITY)}
  model._metrics.extend(trackers.values())   # logged, and reset each epoch, by Keras
  keras_compute_loss = model.compute_loss
  keras_fit = model.fit

  def compute_loss(x=None, y=None, y_pred=None, sample_weight=None):
    total = keras_compute_loss(x, y, y_pred, sample_weight)
    if total is None:
      return total
    terms = [t for layer in lilnetx_layers(model) for t in layer.losses]
    penalty = tf.add_n(terms) if terms else tf.zeros(())
    penalty = tf.cast(penalty, total.dtype)
    # Under a strategy of n replicas Keras returns each replica's share, (task + penalty) / n
    # (`scale_loss_for_distribution`), and logs the unscaled loss: so do these metrics.
    replicas = tf.distribute.get_strategy().num_replicas_in_sync
    trackers[PENALTY].update_state(penalty)
    trackers[TASK_LOSS].update_state(total * replicas - penalty)
    classes = _classes(y_pred, y, getattr(model, "loss", None)) if y is not None else None
    if classes is not None:
      predicted, true, width = classes
      trackers[PRED_MAJORITY].update_state(_majority_share(predicted, width))
      trackers[LABEL_MAJORITY].update_state(_majority_share(true, width))
    return total

  @functools.wraps(keras_fit)
  def fit(*args, callbacks=None, **kwargs):
    from lilnetx_tf.callbacks import PenaltyGuard   # callbacks imports this module's names
    callbacks = list(callbacks or [])
    if not any(isinstance(c, PenaltyGuard) for c in callbacks):
      callbacks.append(PenaltyGuard())
    _add_controller(model, callbacks)
    _match_pace(model)
    history = keras_fit(*args, callbacks=callbacks, **kwargs)
    _refresh_batchnorm(model, callbacks, args, kwargs)
    return history

  object.__setattr__(model, "compute_loss", compute_loss)
  object.__setattr__(model, "fit", fit)
  object.__setattr__(model, _ATTACHED, True)
  return model
