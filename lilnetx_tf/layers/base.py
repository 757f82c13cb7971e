"""What every LilNetX layer shares: a float latent kernel, decoded through its parameter group.

The latent W̃ of a layer with kernel shape (k₁, …, k_r, a, b) is kept as `a·b` slices of
`k₁·…·k_r` values, shape (a, b, k₁·…·k_r); a dense kernel (a, b) is (a, b, 1). A class whose
Keras kernel stores its channels the other way round, (k…, b, a) as transposed convolutions do,
says so with `_CHANNELS_SWAPPED`. The forward pass rounds W̃ with a
straight-through gradient and decodes each slice with the group's linear decoder, so a slice of
zeros decodes to a slice of zeros. The layer adds its share of the LilNetX objective with
`add_loss`, every term divided by S, the number of slices in the whole model, so that each
weight prices the same per-slice quantity on a small and on a large model:

  rate:   rate_weight · bits(W̃) / S: task-loss units (nats) per bit per slice. Bits are taken
          on W̃ + U(−½, ½) in training (under the density before that step's density update)
          and on round(W̃) otherwise. The group's leader (its first member called) adds the
          rate of all members as one term, with the group's density step, from one evaluation
          of the density.
  slices: slice_weight · Σ_(o,i) ‖W̃[o, i, :]‖₂ / S: nats per unit of mean slice norm, in
          latent units (integer steps); drives whole slices, then channels, to zero.
  L2:     l2_weight · Σ W̃² / S: nats per unit of mean squared slice norm (latent units).

Layers built from a config without `config_version` (saved by lilnetx_tf before version 2)
keep the old meaning of `slice_weight` and `l2_weight` (plain sums, not divided by S) and save
themselves in the new units.

While a `callbacks.PenaltySchedule` (such as `PenaltyWarmup`) runs, all three are multiplied by
the factor it sets (the registry's `penalty_scale`).
"""

import contextlib
import math
from typing import Callable, Optional

import numpy as np
import tensorflow as tf

from lilnetx_tf import errors
from lilnetx_tf import validation
from lilnetx_tf._compat import base_layer_utils, save_context
from lilnetx_tf.layers import registry as registry_lib
from lilnetx_tf.layers.rounding import round_and_decode_st

__all__ = ["CONFIG_VERSION", "DEFAULT_BOUNDARY", "DEFAULT_DENSITY_LEARNING_RATE",
           "DEFAULT_L2_WEIGHT", "DEFAULT_RATE_WEIGHT", "DEFAULT_SLICE_WEIGHT", "LATENT_WEIGHT_NAME",
           "MAX_LATENT_PACE",
           "LatentKernelMixin", "lilnetx_arguments", "refuse_replaced_arguments",
           "saved_registry_id", "without_penalties"]

DEFAULT_RATE_WEIGHT = 0.01
# Per slice (config version 2). The former plain sums, 1e-5 and 1e-6, were 4.1 and 0.41 per
# slice on LeNet5 (406k slices) and 21 and 2.1 on MobileNetV2 (2.1M): there they dominated the
# task loss. These per-slice values are well below that; benchmarks/defaults_zoo.py checks them.
DEFAULT_SLICE_WEIGHT = 0.01
DEFAULT_L2_WEIGHT = 0.001
# Version 2: `slice_weight` and `l2_weight` per slice; the decoder stored relative to the latent
# step (`group` module). A config without the key is version 1.
CONFIG_VERSION = 2
DEFAULT_BOUNDARY = 3.0
# Largest pace `convert` gives latents (a grid this many times the RMS rounds every weight to 0).
MAX_LATENT_PACE = 65536.0
# The reference trains its densities with Adam at 1e-4 over long schedules; in short budgets
# that leaves the density far wider than the latents (LeNet-300-100 on MNIST, one epoch:
# 163 KB estimated at 1e-4 vs 3.5 KB at 1e-2 with the same λ; see WORKSPACE_NOTES.md).
DEFAULT_DENSITY_LEARNING_RATE = 1e-2
# The name of every LilNetX layer's latent weight (`lilnetx_tf.optimizers` finds latents by it).
LATENT_WEIGHT_NAME = "kernel_latent"


# Set by `without_penalties`; module-wide, not per thread: a strategy traces its replicas'
# functions in threads of its own.
_PENALTIES_OFF = [False]


@contextlib.contextmanager
def without_penalties():
  """LilNetX layers called (or traced) inside add no penalties and take no density step: for a
  forward pass with another purpose, such as `batchnorm.refresh_batchnorm`'s (whose traced
  rate graph was most of its tracing, and whose density steps it undid)."""
  previous = _PENALTIES_OFF[0]
  _PENALTIES_OFF[0] = True
  try:
    yield
  finally:
    _PENALTIES_OFF[0] = previous


def _safe_norm(x: tf.Tensor) -> tf.Tensor:
  """L2 norm over the last axis with a zero (sub)gradient at zero."""
  if x.shape[-1] == 1:
    return tf.abs(tf.squeeze(x, -1))  # one op instead of six, on every weight of a Dense
  squared = tf.reduce_sum(tf.square(x), axis=-1)
  positive = squared > 0
  return tf.where(positive, tf.sqrt(tf.where(positive, squared, 1.0)), 0.0)


@tf.custom_gradient
def _penalty_sums(latent_variable: tf.Tensor, latent_step: tf.Tensor) -> tuple:
  """(Σ slice norms, Σ squares) of the latent W̃ = `latent_variable` / `latent_step`.

  With its gradient written out, the backward pass is two elementwise ops on the latents
  instead of the eight or so of automatic differentiation (division, |x| or a norm, x²): on
  LeNet-300-100's 266 k latents, forward and backward took about half the time.
  """
  inverse = 1.0 / latent_step
  norms = _safe_norm(latent_variable)
  squares = tf.reduce_sum(tf.square(latent_variable))

  def grad(norms_grad, squares_grad):
    l2_factor = 2.0 * squares_grad * inverse * inverse
    if latent_variable.shape[-1] == 1:
      norm_term = tf.sign(latent_variable) * (norms_grad * inverse)
      return norm_term + latent_variable * l2_factor, None
    # ∂‖x‖/∂x = x / ‖x‖, and 0 for a zero slice (whose entries are 0 anyway).
    per_slice = norms_grad * inverse * tf.math.divide_no_nan(1.0, norms) + l2_factor
    extra_axes = latent_variable.shape.rank - norms.shape.rank
    return latent_variable * tf.reshape(per_slice, norms.shape + (1,) * extra_axes), None

  return (tf.reduce_sum(norms) * inverse, squares * (inverse * inverse)), grad


def refuse_replaced_arguments(layer, names: tuple, prefix: str = "") -> None:
  """Raises `errors.UnsupportedLayerError` if `layer` was given one of `names` (the Keras
  regularizers and constraints of kernels that are LilNetX latents, stored as `prefix` + name)."""
  for argument in names:
    value = getattr(layer, prefix + argument)
    if value is not None:
      raise errors.UnsupportedLayerError(
          f"{type(layer).__name__} does not support `{argument}`={value!r}: its kernels are "
          "LilNetX latents, regularized by `slice_weight`, `l2_weight` and `rate_weight`.")


def lilnetx_arguments(rate_weight, slice_weight, l2_weight, boundary, density_learning_rate,
                      config_version=CONFIG_VERSION, latent_pace=1.0) -> dict:
  """The LilNetX arguments of a layer, validated: what every LilNetX layer, `convert` and the
  layers made of LilNetX sublayers (attention) take."""
  return dict(
      rate_weight=validation.non_negative_float("rate_weight", rate_weight),
      slice_weight=validation.non_negative_float("slice_weight", slice_weight),
      l2_weight=validation.non_negative_float("l2_weight", l2_weight),
      boundary=validation.positive_float("boundary", boundary),
      density_learning_rate=validation.positive_float(
          "density_learning_rate", density_learning_rate),
      config_version=validation.int_in_range("config_version", config_version, 1,
                                             CONFIG_VERSION),
      latent_pace=_latent_pace(latent_pace))


def saved_registry_id(value) -> Optional[int]:
  """`registry_id`, validated: the number of a layer's registry in a saved model (`registry`
  module), or None."""
  return None if value is None else validation.non_negative_int("registry_id", value)


def _latent_pace(value) -> float:
  """`latent_pace`, validated: `convert` sets 1 … MAX_LATENT_PACE (a file could say anything,
  and a huge pace would decode to infinite weights)."""
  pace = validation.positive_float("latent_pace", value)
  if not 1.0 <= pace <= MAX_LATENT_PACE:
    raise errors.InvalidArgumentError(
        f"`latent_pace` must be between 1 and {MAX_LATENT_PACE:g}, got {value!r}.")
  return pace


class LatentKernelMixin:
  """Turns a Keras layer's kernel into a LilNetX latent. Mixed in before the Keras class.

  Takes the LilNetX arguments `rate_weight` (λ_I), `slice_weight` (λ_G), `l2_weight`,
  `boundary` and `density_learning_rate` (and `latent_pace`, which `convert` sets and the config
  keeps: the units of the latent variable; and `registry_id`, which a saved model's config sets:
  see `registry`), and passes every other one to the Keras layer. The
  Keras arguments named in `_REPLACED_BY_LATENT` (the kernel's regularizer and constraint) must
  be left unset: the latent has its own regularizers.
  """

  _REPLACED_BY_LATENT = ("kernel_regularizer", "kernel_constraint")
  _is_dense = False
  # Kernel layout hook: False for Keras kernels (k…, in, out), True for (k…, out, in) (transposed
  # convolutions). The latent is (in, out, k₁·…·k_r) either way.
  _CHANNELS_SWAPPED = False
  # The Keras attribute holding the kernel this latent decodes to (see `kernel_latents`).
  KERNEL_NAME = "kernel"

  def __init__(self, *args,
               rate_weight: float = DEFAULT_RATE_WEIGHT,
               slice_weight: float = DEFAULT_SLICE_WEIGHT,
               l2_weight: float = DEFAULT_L2_WEIGHT,
               boundary: float = DEFAULT_BOUNDARY,
               density_learning_rate: float = DEFAULT_DENSITY_LEARNING_RATE,
               config_version: int = CONFIG_VERSION,
               latent_pace: float = 1.0,
               registry_id: Optional[int] = None,
               **kwargs):
    super().__init__(*args, **kwargs)
    refuse_replaced_arguments(self, self._REPLACED_BY_LATENT)
    arguments = lilnetx_arguments(rate_weight, slice_weight, l2_weight, boundary,
                                  density_learning_rate, config_version, latent_pace)
    self.rate_weight = arguments["rate_weight"]
    self.slice_weight = arguments["slice_weight"]
    self.l2_weight = arguments["l2_weight"]
    self.boundary = arguments["boundary"]
    self.density_learning_rate = arguments["density_learning_rate"]
    self.config_version = arguments["config_version"]
    self._latent_pace = arguments["latent_pace"]
    self._provisional_registry = False
    registry_lib.join_initial_registry(self, saved_registry_id(registry_id))

  def call(self, inputs, training=None):
    """Adds the penalties (rate, slice norms, L2), then runs the Keras layer on the decoded kernel."""
    self._add_penalties(training)
    return super().call(inputs)

  @classmethod
  def from_config(cls, config: dict):
    # A config without a version was saved before version 2 (see the module docstring).
    return super().from_config({"config_version": 1, **config})

  def get_config(self) -> dict:
    self.upgrade_config()
    config = {**super().get_config(), "rate_weight": self.rate_weight,
              "slice_weight": self.slice_weight, "l2_weight": self.l2_weight,
              "boundary": self.boundary, "density_learning_rate": self.density_learning_rate,
              "config_version": self.config_version, "latent_pace": self.latent_pace}
    return registry_lib.with_saved_id(config, registry_lib.registry_of(self))

  def finalize_state(self):
    # Keras's HDF5 and SavedModel loaders call this once the loaded model is complete.
    registry_lib.end_load()
    super().finalize_state()

  @property
  def latent_pace(self) -> float:
    """The units of the latent variable, latent step × pace (`ParameterGroup.set_grid`): the
    group's, saved with the layer so that a loaded model's `fit` knows it (`monitor`)."""
    group = getattr(self, "group", None)
    return group.pace if group is not None else self._latent_pace

  def upgrade_config(self) -> None:
    """Moves a version-1 layer to per-slice `slice_weight` and `l2_weight` with the same
    penalty, once its model's number of slices is known (it is built and in a registry)."""
    registry = registry_lib.registry_of(self)
    num_slices = registry.num_slices if registry is not None and self.built else 0
    if self.config_version < 2 and num_slices:
      self.slice_weight *= num_slices
      self.l2_weight *= num_slices
      self.config_version = CONFIG_VERSION

  # ---------------------------------------------------------------------------------------------
  # Group membership.

  def __call__(self, *args, **kwargs):
    if self.registry_unsettled:
      self.settle_registry(registry_lib.resolve((args, kwargs)))
    return super().__call__(*args, **kwargs)

  @property
  def registry_unsettled(self) -> bool:
    """Whether the layer has yet to find its model's registry (it has none, or a provisional
    one from being built before it was called)."""
    return registry_lib.registry_of(self) is None or self._provisional_registry

  def settle_registry(self, found) -> "registry_lib.GroupRegistry":
    """Joins `found` (the registry resolved from the call's inputs), or keeps the current one
    (or a new one) when nothing was found; returns the registry joined."""
    current = registry_lib.registry_of(self)
    found = found or current or registry_lib.GroupRegistry()
    if current is None:
      registry_lib.set_registry(self, found)
    elif found is not current:
      self.rebind(found)
    registry_lib.claim(found)
    self._provisional_registry = False
    return found

  @property
  def group_key(self) -> str:
    """Name of this layer's parameter group: 'dense', or 'conv' and the slice shape, e.g.
    'conv3' (1-D), 'conv3x3' (2-D), 'conv3x3x3' (3-D)."""
    return "dense" if self._is_dense else "conv" + "x".join(map(str, self._slice_shape))

  @property
  def slice_size(self) -> int:
    return math.prod(self._slice_shape)

  def _build_latent(self, slices_in: int, slices_out: int, slice_shape: tuple, fan: int,
                    output_positions: Optional[int]) -> None:
    """Creates the latent and joins the group. Called from the layer's `build`.

    `slice_shape` is the kernel's spatial shape ((kh, kw) for a 2-D conv, () for Dense);
    `output_positions` the number of positions the kernel is applied at, for MAC counts."""
    self._slice_shape = tuple(int(s) for s in slice_shape)
    self.fan = int(fan)
    self.output_positions = output_positions
    slice_size = self.slice_size
    self.latent_variable = self.add_weight(
        name=LATENT_WEIGHT_NAME, shape=(slices_in, slices_out, slice_size), initializer="zeros",
        trainable=True, dtype="float32", experimental_autocast=False)  # float32 under mixed precision
    if registry_lib.registry_of(self) is None:
      registry_lib.set_registry(self, registry_lib.provisional_registry())
      self._provisional_registry = True
    self._join(registry_lib.registry_of(self))

  def _join(self, registry) -> None:
    self.group = registry.group(
        self.group_key, self.slice_size, boundary=self.boundary,
        density_learning_rate=self.density_learning_rate)
    if self._latent_pace != 1.0:     # loaded from a config: the variables are in these units
      self.group.pace = self._latent_pace
    self.group.register(self, self.fan)

  def rebind(self, registry) -> None:
    """Moves this layer to another model's registry (before training)."""
    self.group.unregister(self)
    registry_lib.set_registry(self, registry)
    self._join(registry)

  def initialize_latent(self, bound: float, latent_step: float) -> None:
    """Draws the latent from U(−bound − ½, bound + ½) (the reference's 'boundary' init).

    The extra ½ makes round(latent) uniform on the integers −bound..bound (for integer bound),
    whose variance ((2·bound + 1)² − 1) / 12 is what `group.latent_bound` assumes.
    """
    shape = self.latent_variable.shape
    half_width = bound + 0.5
    self.latent_variable.assign(
        tf.random.uniform(shape, -half_width, half_width) * latent_step)

  # ---------------------------------------------------------------------------------------------
  # Latents and decoding.

  @property
  def num_slices(self) -> int:
    return int(self.latent_variable.shape[0] * self.latent_variable.shape[1])

  @property
  def latent(self) -> tf.Tensor:
    """The continuous latent W̃, shape (a, b, slice_size)."""
    return self.latent_variable / self.group.latent_step

  @property
  def integer_latent(self) -> tf.Tensor:
    """round(W̃): what the compressed file stores."""
    return tf.round(self.latent)

  def _kernel_permutation(self) -> tuple:
    """Axes of the latent reshaped to (a, b, k…) in the order of the Keras kernel."""
    spatial = tuple(range(2, 2 + len(self._slice_shape)))
    return spatial + ((1, 0) if self._CHANNELS_SWAPPED else (0, 1))

  def decode_kernel(self, latent: tf.Tensor) -> tf.Tensor:
    """Decodes (integer) latents of shape (a, b, slice_size) to a Keras-layout kernel."""
    return self._kernel_layout(self.group.decode(latent))

  def _kernel_layout(self, decoded: tf.Tensor) -> tf.Tensor:
    """Decoded slices (a, b, slice_size) as a Keras-layout kernel (a layer with another kernel
    layout overrides this)."""
    a, b = decoded.shape[0], decoded.shape[1]
    kernel = tf.reshape(decoded, (a, b) + self._slice_shape)
    permutation = self._kernel_permutation()
    if permutation == tuple(range(len(permutation))):   # Dense: (a, b) already
      return kernel
    return tf.transpose(kernel, permutation)

  def kernel_to_latent(self, kernel: np.ndarray) -> np.ndarray:
    """A Keras-layout kernel of this layer rearranged as latent slices (a, b, slice_size)."""
    inverse = np.argsort(self._kernel_permutation())
    slices = np.transpose(np.asarray(kernel), inverse)
    return slices.reshape(slices.shape[0], slices.shape[1], self.slice_size)

  def _decoded_kernel(self) -> tf.Tensor:
    decoded = round_and_decode_st(tf.convert_to_tensor(self.latent_variable),
                                  tf.convert_to_tensor(self.group.latent_step),
                                  self.group.decoder_matrix())
    return tf.cast(self._kernel_layout(decoded), self.compute_dtype)

  # ---------------------------------------------------------------------------------------------
  # The LilNetX objective.

  # Plain Python, called while tracing: autograph's conversion of this code and all it calls
  # (group, density, table, noise: about 25 functions) took most of a first training step's
  # tracing (3 of 3.5 s on an MLP); none of it branches on tensor values.
  @tf.autograph.experimental.do_not_convert
  def _add_penalties(self, training) -> None:
    if base_layer_utils.call_context().in_keras_graph or _PENALTIES_OFF[0]:
      return  # Functional construction (nothing to add; tracing the rate is slow) or told so.
    training = tf.get_static_value(training) if training is not None else False
    training = bool(training) if training is not None else False
    registry = registry_lib.registry_of(self)
    # A SavedModel written during a warm-up (e.g. by ModelCheckpoint) keeps fixed weights: the
    # factor is schedule state, not part of the model.
    scale = None if save_context.in_save_context() else registry.penalty_scale
    add_penalty = self.add_loss if scale is None else lambda term: self.add_loss(scale * term)
    if self.group.leader() is self:
      self._add_group_rate(training, registry.num_slices, add_penalty)
    if self.slice_weight > 0 or self.l2_weight > 0:
      norms, squares = _penalty_sums(self._lasso_units(tf.convert_to_tensor(self.latent_variable)),
                                     tf.convert_to_tensor(self.group.latent_step))
      per_slice = registry.num_slices if self.config_version >= 2 else 1
      if self.slice_weight > 0:
        add_penalty(self.slice_weight / per_slice * norms)
      if self.l2_weight > 0:
        add_penalty(self.l2_weight / per_slice * squares)

  def _lasso_units(self, latent: tf.Tensor) -> tf.Tensor:
    """`latent` (a, b, slice) seen as (…, unit): the group lasso sums one norm per unit, an
    (in, out) slice here. A layer whose structured unit is wider (an embedding row) overrides
    it with a reshape."""
    return latent

  def _add_group_rate(self, training: bool, num_slices: int,
                      add_penalty: Callable[[tf.Tensor], None]) -> None:
    """The group leader's share: the density step (in training) and the rate of every member.

    One stacked density evaluation prices all members: one per layer would add a small graph,
    and its fixed per-op cost, for every layer of a deep model.
    """
    members = self.group.members()
    if training:
      bits = self.group.step_density(   # adds the noise; divides by the step in its loop
          [tf.convert_to_tensor(m.latent_variable) for m in members],
          tf.convert_to_tensor(self.group.latent_step))
    elif any(m.rate_weight > 0 for m in members):
      bits = self.group.member_bits([tf.round(m.latent) for m in members])
    else:
      return
    if not save_context.in_save_context():   # a metric made while saving would not be saved
      self.add_metric(tf.add_n(bits), name=f"lnx_bits_{self.group_key}")
    rate = [m.rate_weight * b for m, b in zip(members, bits) if m.rate_weight > 0]
    if rate:
      add_penalty(tf.add_n(rate) / num_slices)
