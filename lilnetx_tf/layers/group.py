"""A parameter group: the decoder and the density model shared by all layers of one kernel shape.

LilNetX (Girish et al., 2023) reparameterizes every kernel as an integer latent, decoded by a
purely linear map that all layers with the same kernel shape share (a k²×k² matrix for k×k
convolutions, a scalar for dense and 1×1 layers), and prices the latents with a learned factorized
density, one channel per position of the k×k slice. `ParameterGroup` holds both for one kernel
shape, and trains its density with its own Adam step so that it learns at its own pace whatever
optimizer the user compiles the model with.

The decoder is stored in units of the group's latent step s, as the latents are, so that the
user's optimizer moves it relative to its own scale (Adam's step is ~lr per step whatever s is):

  scalar (dense, 1×1):  Ψ = s · exp(ρ),      variable `decoder` = ρ, starting at log(pace);
  matrix (k×k, k > 1):  Ψ = s · pace · D,   variable `decoder` = D, starting at I;
pace is 1 unless `convert` put the latents on a coarse grid (`set_grid`).

Stored as Ψ itself, a dense decoder of 0.0125 met Adam steps of ~0.001, crossed zero after 21
steps at lr 1e-3 (2 at 1e-2) and every dense weight went to 0 (`benchmarks/decoder_stability.py`). The scalar cannot cross zero
at all, and shrinking it tenfold takes ≥ ln(10)/lr consistent steps; weight decay pulls ρ back to
the initial scale, not to zero. Files written before (layer `config_version` 1) stored Ψ and
are converted on loading (`from_absolute_decoder`).
"""

import math
import weakref
import zlib
from typing import Optional, Sequence

import numpy as np
import tensorflow as tf

from lilnetx_tf import errors
from lilnetx_tf.layers import bits_table
from lilnetx_tf.layers import density as density_lib
from lilnetx_tf.layers import noise as noise_lib

__all__ = ["ParameterGroup", "adam_step", "decoder_scale", "latent_bound", "members_by_group"]

_LN2 = math.log(2.0)
# Written by `save_own_variables` beside the variables (`.keras`, `.weights.h5`) since the decoder
# is stored relative to the latent step; a saved state without it holds the decoder Ψ itself.
_RELATIVE_DECODER = "relative_decoder"


def _density_variable_creator(next_creator, **kwargs):
  """Makes the density's variables invisible to the user's optimizer and replica-averaged."""
  kwargs["trainable"] = False
  kwargs["aggregation"] = tf.VariableAggregation.MEAN
  return next_creator(**kwargs)


def adam_step(variables: Sequence[tf.Variable], grads: Sequence, moments: Sequence,
              step: tf.Tensor, learning_rate: float) -> None:
  """One Adam update (β = 0.9, 0.999) of `variables` in place; `step` counts from 1.

  The densities are not trained by the user's optimizer (their variables are non-trainable),
  so they get this small Adam of their own: one fused op per variable (`ResourceApplyAdam`),
  not the ~16 small ops each of the update written out, whose fixed per-op cost showed in the
  step of small models. Every replica computes the same update from the same latents and
  noise, so each updates its own copy.
  """
  beta1, beta2 = 0.9, 0.999
  step = tf.cast(step, tf.float32)
  beta1_power, beta2_power = beta1**step, beta2**step   # once, not per variable
  for variable, grad, (m, v) in zip(variables, grads, moments):
    if grad is None:
      continue
    tf.raw_ops.ResourceApplyAdam(
        var=variable.handle, m=m.handle, v=v.handle, beta1_power=beta1_power,
        beta2_power=beta2_power, lr=tf.constant(learning_rate, tf.float32), beta1=beta1,
        beta2=beta2, epsilon=1e-7, grad=grad)


def members_by_group(layers: Sequence) -> list:
  """[(group, [its members among `layers`, in order])], groups in order of their first member."""
  by_group: dict = {}
  for layer in layers:
    by_group.setdefault(id(layer.group), (layer.group, []))[1].append(layer)
  return list(by_group.values())


def _split_totals(values: tf.Tensor, sizes: Sequence[int]) -> list:
  """Sums of stacked rows `values` over consecutive blocks of `sizes` rows."""
  return [tf.reduce_sum(part) for part in tf.split(tf.reduce_sum(values, axis=-1), sizes)]


@tf.custom_gradient
def _slope_term(values: tf.Tensor, slope: tf.Tensor, scale: tf.Tensor) -> tf.Tensor:
  """Zero, with the gradient `slope` · `scale` in `values` (`slope` and `scale` are constants).

  Added to bits priced without a gradient, it gives them their first-order gradient in the
  values: one multiply in the backward pass and nothing in the forward pass, where
  `Σ slope · values` with its value subtracted again took a division, a multiply and a sum."""
  def grad(upstream):
    return slope * (upstream * scale), None, None

  return tf.zeros((), values.dtype), grad


def latent_bound(scale: float, fan: int) -> float:
  """Half-width B of the U(−B, B) latent init that gives decoded weights variance 2 / fan.

  A rounded U(−B, B) variable has variance ((2B + 1)² − 1) / 12; times the decoder scale² this
  is the Kaiming variance 2 / fan when B = (sqrt(24 / (scale² · fan) + 1) − 1) / 2.
  """
  return (math.sqrt(24.0 / (scale * scale * fan) + 1.0) - 1.0) / 2.0


def decoder_scale(boundary: float, max_fan: int) -> float:
  """The decoder scale that puts the group's largest-fan layer at latent bound `boundary`."""
  return math.sqrt(24.0 / (max_fan * ((2.0 * boundary + 1.0) ** 2 - 1.0)))


@tf.keras.utils.register_keras_serializable(package="lilnetx_tf")
class ParameterGroup(tf.keras.layers.Layer):
  """Decoder Ψ and density model shared by the LilNetX layers of one kernel shape.

  Args:
    slice_size: Number of weights in one (out, in) slice: k·k for k×k kernels, 1 for dense.
    boundary: Latent init bound of the group's largest-fan layer (the reference's 'boundary').
      Smaller values start from fewer integer levels, hence smaller files sooner.
    density_learning_rate: Learning rate of the density model's own Adam step.
    density_filters: Hidden widths of each channel's network (`density.DeepFactorized`).
  """

  def __init__(self,
               slice_size: int,
               boundary: float = 3.0,
               density_learning_rate: float = 1e-2,
               density_filters: Sequence[int] = (3, 3),
               **kwargs):
    # Decoder, density and rate stay float32 under a mixed-precision policy; the layers cast
    # only the decoded kernel to their compute dtype.
    kwargs["dtype"] = "float32"
    super().__init__(**kwargs)
    self.slice_size = int(slice_size)
    self.boundary = float(boundary)
    self.density_learning_rate = float(density_learning_rate)
    self.density_filters = tuple(int(f) for f in density_filters)
    self._member_refs: list = []
    self._max_fan = 0
    self.pace = 1.0     # units of the latent variables: latent step × pace (`set_grid`)
    self._noise_seed = zlib.crc32(self.name.encode()) & 0x7FFFFFFF

  # ---------------------------------------------------------------------------------------------
  # Variables.

  def build(self, input_shape=None):
    scalar = self.slice_size == 1
    # Ψ / s as a log-gain ρ (scalar) or a matrix D (k×k): see the module docstring.
    self.decoder = self.add_weight(
        name="decoder",
        shape=() if scalar else (self.slice_size, self.slice_size),
        initializer="zeros" if scalar else "identity",
        trainable=True)
    # The latent variable of each member holds latent · latent_step: an optimizer then moves it
    # like an ordinary weight while the integer grid of the latent itself stays fixed.
    self.latent_step = self.add_weight(
        name="latent_step", shape=(), initializer="ones", trainable=False,
        aggregation=tf.VariableAggregation.ONLY_FIRST_REPLICA)
    self.step = self.add_weight(
        name="step", shape=(), dtype=tf.int64, initializer="zeros", trainable=False,
        aggregation=tf.VariableAggregation.ONLY_FIRST_REPLICA)
    with tf.variable_creator_scope(_density_variable_creator):
      self.density = density_lib.DeepFactorized(self.slice_size, self.density_filters)
    self._density_variables = tuple(self.density.variables)
    self._adam_moments = tuple(
        (self.add_weight(name=f"density_m{i}", shape=v.shape, initializer="zeros",
                         trainable=False, aggregation=tf.VariableAggregation.MEAN),
         self.add_weight(name=f"density_v{i}", shape=v.shape, initializer="zeros",
                         trainable=False, aggregation=tf.VariableAggregation.MEAN))
        for i, v in enumerate(self._density_variables))
    super().build(input_shape)

  @property
  def density_variables(self) -> tuple:
    """The density model's parameters (updated by the group's own Adam step)."""
    return self._density_variables

  @property
  def training_state(self) -> tuple:
    """The density optimizer's state (step count, Adam moments): needed to resume training,
    not to run or decode the model."""
    return (self.step,) + tuple(v for pair in self._adam_moments for v in pair)

  def save_own_variables(self, store):
    # Keras' default only stores weights made with `add_weight`; the density's own variables
    # must travel too. The marker says the decoder is stored relative to the latent step.
    for i, variable in enumerate(self.weights):
      store[str(i)] = variable.numpy()
    store[_RELATIVE_DECODER] = np.ones((), np.int8)

  def load_own_variables(self, store):
    variables = self.weights
    keys = list(store.keys())
    relative = _RELATIVE_DECODER in keys
    if len(keys) - relative != len(variables):
      raise errors.ModelMismatchError(
          f"Parameter group {self.name!r} expects {len(variables)} variables, the saved state "
          f"has {len(keys) - relative}.")
    for i, variable in enumerate(variables):
      variable.assign(store[str(i)])
    self.upgrade_loaded(absolute_decoder=not relative)

  def upgrade_loaded(self, absolute_decoder: Optional[bool] = None) -> None:
    """After loading saved variables: a decoder saved as Ψ itself (`absolute_decoder`; by
    default, when a member was built from a version-1 config, saved by lilnetx_tf before
    version 2) is stored relative to the step, and version-1 members' penalty weights move to
    per-slice units."""
    members = self.members()
    old_config = any(m.config_version < 2 for m in members)
    if old_config if absolute_decoder is None else absolute_decoder:
      self.from_absolute_decoder(self.decoder.numpy())
    if old_config:
      for member in members:
        member.upgrade_config()

  # `trainable` is its own flag and its members': a frozen member (`trainable=False`, or in a
  # frozen model) keeps its kernel only if the decoder it shares stays put, so the decoder is a
  # trainable weight only while every member is trainable. The other members still train their
  # latents; the density, which changes no kernel, keeps its own step.
  @property
  def trainable(self) -> bool:
    return self._trainable and all(member.trainable for member in self.members())

  @trainable.setter
  def trainable(self, value: bool) -> None:
    tf.keras.layers.Layer.trainable.fset(self, value)

  # ---------------------------------------------------------------------------------------------
  # Members and initialization.

  # `members` and `leader` are methods, not properties: Keras' saver walks properties and would
  # save the member layers a second time under the group.
  def members(self) -> list:
    """The live layers that use this group, in the order they joined."""
    return [m for m in (ref() for ref in self._member_refs) if m is not None]

  def leader(self):
    """The member that runs the group's density update once per training step: the first
    member that has been called in a model (layers only built, never called, do not lead)."""
    return next((m for m in self.members() if not m._provisional_registry), None)

  def register(self, member, fan: int) -> None:
    """Adds `member` (a built LilNetX layer) with Kaiming fan `fan`, and initializes it.

    While the group is untrained, a member with a larger fan than any before rescales the
    decoder so that this member starts at latent bound `boundary`, and re-draws the latents of
    earlier members: every decoded kernel then starts with variance 2 / fan.
    """
    if not self.built:
      self.build(None)
    if not any(ref() is member for ref in self._member_refs):
      self._member_refs.append(weakref.ref(member))
    untrained = int(self.step.numpy()) == 0
    if untrained and fan > self._max_fan:
      self._max_fan = fan
      scale = decoder_scale(self.boundary, fan)
      self.latent_step.assign(scale)
      self.reset_decoder()
      for other in self.members():
        other.initialize_latent(latent_bound(scale, other.fan), scale)
    else:
      self._max_fan = max(self._max_fan, fan)
      scale = float(self.latent_step.numpy())
      member.initialize_latent(latent_bound(scale, fan), scale)

  def reset_decoder(self) -> None:
    """Sets Ψ = pace·s·I (a scalar for a scalar decoder): decoded weights are the latents times
    `pace` steps (see `set_grid`). A scalar holds the pace in its log-gain (ρ = log pace; Adam's
    steps on ρ are relative changes of Ψ either way); a matrix D stays I, with the pace a
    factor of `decoder_matrix`, so that Adam changes D as fast relative to its size as at pace
    1 (D = pace·I learnt pace times slower, and cost a BatchNorm CNN 2.5 points)."""
    if self.slice_size == 1:
      self.decoder.assign(tf.fill((), math.log(self.pace)))
    else:
      self.decoder.assign(tf.eye(self.slice_size))

  def set_grid(self, step: float, pace: float = 1.0) -> None:
    """Rounding grid `step` (weight units), with the latent variables in units of step / `pace`.

    A latent variable v then decodes to round(v·pace / step)·step at the start (Ψ = step·I),
    and an optimizer whose steps are ~lr in v whatever its gradient's scale (Adam and
    its kind) moves the latents `pace` times faster across the grid: what a coarse grid needs
    to learn as fast as the plain weights (`convert`'s warm start). The caller stores its latent
    variables divided by `pace`.
    """
    self.pace = float(pace)
    self.latent_step.assign(step / pace)
    self.reset_decoder()

  def set_pace(self, pace: float) -> None:
    """Re-expresses the members' latent variables at another `pace` (`set_grid`): variables,
    latent step and pace (and a scalar's log-gain) change together; the integer latents, Ψ, the
    decoded weights and the density (in integer units) do not. (SGD, whose step grows with the
    variable's unit too, would move paced latents pace² times faster: `monitor` keeps them at
    pace 1 there.)"""
    ratio = self.pace / pace
    for member in self.members():
      member.latent_variable.assign(member.latent_variable * ratio)
    self.latent_step.assign(self.latent_step * ratio)
    if self.slice_size == 1:
      self.decoder.assign_sub(math.log(ratio))
    self.pace = float(pace)

  def unregister(self, member) -> None:
    self._member_refs = [r for r in self._member_refs if r() is not None and r() is not member]

  # ---------------------------------------------------------------------------------------------
  # Decoding and rate.

  def decoder_matrix(self) -> tf.Tensor:
    """The linear decoder Ψ: shape () for a scalar group, (k², k²) otherwise (module doc)."""
    if self.slice_size == 1:
      return self.latent_step * tf.exp(self.decoder)
    return (self.latent_step * self.pace) * self.decoder

  def from_absolute_decoder(self, psi) -> None:
    """Sets the decoder from an absolute Ψ (the stored value of files with layer config
    version 1), given the group's latent step already loaded."""
    step = float(self.latent_step.numpy())
    relative = np.asarray(psi, np.float64) / (step if self.slice_size == 1 else step * self.pace)
    if self.slice_size == 1:
      if not relative > 0:
        raise errors.ModelMismatchError(
            f"Parameter group {self.name!r} was saved with a decoder of {float(psi):.3g} "
            "(<= 0: its weights had collapsed through zero, an issue of lilnetx_tf before "
            "config version 2); the positive decoder of this version cannot represent it.")
      relative = np.log(relative)
    self.decoder.assign(relative.astype(np.float32))

  def decode(self, latent: tf.Tensor) -> tf.Tensor:
    """Decodes integer latents of shape (..., slice_size) with the linear decoder Ψ."""
    if self.slice_size == 1:
      return latent * self.decoder_matrix()
    return tf.linalg.matmul(latent, self.decoder_matrix())

  def _cumulative_logits(self, values: tf.Tensor) -> tf.Tensor:
    """Logits of the density's CDF at `values` (n, slice_size)."""
    return self.density.cumulative_logits(values)

  def bits(self, latent: tf.Tensor) -> tf.Tensor:
    """Self-information in bits of each latent, shape (..., slice_size).

    The same function as `-self.density.log_prob(latent) / ln 2` (tfc's
    `NoisyDeepFactorized`: log(F(y + ½) − F(y − ½)) on whichever side of the median is
    stable), written directly on the density's variables: both CDF evaluations share one pass,
    and the graph of an evaluation with its gradient has half the ops of tfc's
    (`benchmarks/rate_graph_size.py`); tracing it is what makes a deep model's first training
    step and a density fit slow.
    """
    latent = tf.cast(latent, tf.float32)
    rows = tf.reshape(latent, (-1, self.slice_size))
    logits = self._cumulative_logits(tf.concat([rows + 0.5, rows - 0.5], axis=0))
    upper, lower = tf.split(logits, 2, axis=0)
    log_cdf_upper, log_sf_upper = tf.math.log_sigmoid(upper), tf.math.log_sigmoid(-upper)
    right = log_sf_upper < log_cdf_upper
    big = tf.where(right, tf.math.log_sigmoid(-lower), log_cdf_upper)
    small = tf.where(right, log_sf_upper, tf.math.log_sigmoid(lower))
    log_prob = tf.where(tf.math.is_inf(big), big, tf.math.log1p(-tf.exp(small - big)) + big)
    return tf.reshape(-log_prob / _LN2, tf.shape(latent))

  def _stack(self, latents: Sequence[tf.Tensor]) -> tuple:
    """The members' latents as one (n, slice_size) float32 tensor, and each one's row count."""
    rows = [tf.reshape(tf.cast(z, tf.float32), (-1, self.slice_size)) for z in latents]
    return tf.concat(rows, axis=0), [int(r.shape[0]) for r in rows]

  def _noise_key(self) -> tf.Tensor:
    return noise_lib.key(self._noise_seed, self.step)

  def noise(self, shape) -> tf.Tensor:
    """U(−½, ½) of `shape` for this step: seeded by the group's name and step, so every replica
    draws the same (`noise.uniform`)."""
    return noise_lib.uniform(shape, self._noise_key())

  def _exact(self, values: tf.Tensor, sizes: Sequence[int]) -> tuple:
    """The total bits of each block of `sizes` rows of `values`, each value's slope (d bits /
    d value) and the density's gradient of the total, evaluating the density at every value."""
    variables = list(self._density_variables)
    with tf.GradientTape(watch_accessed_variables=False) as tape:
      tape.watch(values)
      tape.watch(variables)
      bits = self.bits(values)
      total = tf.reduce_sum(bits)
    # Factorized: each value's bits depend on that value alone, so one backward pass of the
    # total gives every value's own slope.
    *grads, slope = tape.gradient(total, [*variables, values])
    return _split_totals(bits, sizes), slope, grads

  def _tabulated_noisy(self, rows: Sequence[tf.Tensor], latent_step: tf.Tensor) -> tuple:
    """`_exact`'s results on the noisy latents `rows` / `latent_step` (one block per member) from
    a table of the density on the noisy grid: the density is evaluated on the grid only, and
    the per-latent work (division, noise, grid indices, histograms, slopes) is compiled by XLA
    in a few loops (`bits_table.noisy_histograms`, `totals_and_slopes`)."""
    points = bits_table.noisy_grid(self.slice_size)
    variables = list(self._density_variables)
    with tf.GradientTape(watch_accessed_variables=False) as tape:
      tape.watch(points)
      tape.watch(variables)
      table = self.bits(points)
    counts, all_counts, indices = bits_table.noisy_histograms(rows, latent_step,
                                                             self._noise_key())
    # The totals are Σ table · counts: one backward pass of the table, weighted by the counts of
    # all members, gives the density's gradient (no per-latent backward pass) and, as each
    # point's bits depend on that point alone, counts · slope at every point: the slope
    # wherever a latent is, without a second backward pass for the slopes.
    *grads, weighted_slope = tape.gradient(table, [*variables, points],
                                           output_gradients=all_counts)
    totals, slopes = bits_table.totals_and_slopes(
        tf.stop_gradient(table), tf.math.divide_no_nan(weighted_slope, all_counts), counts,
        indices)
    sizes = [r.shape.num_elements() for r in rows]
    return (tf.unstack(totals),
            [tf.reshape(s, tf.shape(r)) for s, r in zip(bits_table.by_block(slopes, sizes), rows)],
            grads)

  def member_bits(self, latents: Sequence[tf.Tensor]) -> list:
    """Total bits of each latent in `latents` (one per member, integer-valued), from one
    density evaluation. Exact: a large group reads them off a table at the integers when the
    table covers them. Totals only, no slopes or density gradients: the rate controller calls
    this eagerly, where nothing unused is pruned."""
    stacked, sizes = self._stack([tf.stop_gradient(z) for z in latents])
    if not bits_table.worth_it(int(stacked.shape[0])):
      return _split_totals(self.bits(stacked), sizes)
    origin, fits = bits_table.integer_origin_and_fit(stacked)
    return tf.cond(
        fits,
        lambda: bits_table.totals(self.bits(bits_table.integer_grid(origin, self.slice_size)),
                                  bits_table.integer_indices(stacked, origin),
                                  [n * self.slice_size for n in sizes]),
        lambda: _split_totals(self.bits(stacked), sizes))

  def step_density(self, latents: Sequence[tf.Tensor], latent_step=None) -> list:
    """One Adam step of the density on the members' `latents` plus one draw of noise; returns
    each member's total bits on its noisy latent, under the density as it was before the step.
    With `latent_step`, `latents` are the members' latent variables, the latents times the step
    (the division is then part of the per-latent loop).

    The returned totals are differentiable in `latents`, so they are the members' rate terms:
    one forward and one backward pass of the density serve both the density step and the rate
    gradient (the reference steps its density and its weights on the same loss too).
    A large group prices its noisy latents from a table of the density on a grid
    (`bits_table`): every latent is still priced each step, with the slope of the bits at the
    grid point nearest its noisy value (within 0.02 near zero). The step depends only on the
    latents and the noise, which is seeded by `step`, so every replica of a distributed model
    computes the same update.
    """
    rows = [tf.reshape(tf.cast(z, tf.float32), (-1, self.slice_size)) for z in latents]
    step = tf.constant(1.0) if latent_step is None else tf.cast(latent_step, tf.float32)
    frozen = [tf.stop_gradient(r) for r in rows]
    sizes = [int(r.shape[0]) for r in rows]
    if bits_table.worth_it(sum(sizes)):
      totals, slopes, grads = self._tabulated_noisy(frozen, step)
    else:
      # Compiling this with XLA saved 30 % of its time on LeNet5's 25-channel group, but its
      # compilation took 4.5 s, more than that saves in an MNIST epoch.
      stacked = tf.concat(frozen, 0) / step
      totals, slope, grads = self._exact(stacked + self.noise(tf.shape(stacked)), sizes)
      slopes = tf.split(slope, sizes)
    adam_step(self._density_variables, grads, self._adam_moments, self.step + 1,
              self.density_learning_rate)
    self.step.assign_add(1)
    # The density is factorized, so each latent's bits depend on that latent alone and `slope`
    # is their derivative: the bits with this first-order term have the bits' value and
    # gradient without a second backward pass through the density.
    inverse_step = tf.stop_gradient(1.0 / step)
    return [bits + _slope_term(r, tf.stop_gradient(member_slope), inverse_step)
            for r, bits, member_slope in zip(rows, totals, slopes)]

  def call(self, inputs):
    raise errors.UnsupportedLayerError(
        "A ParameterGroup is not called on data; LilNetX layers use it to decode their kernels.")

  def get_config(self):
    config = super().get_config()
    config.update(slice_size=self.slice_size, boundary=self.boundary,
                  density_learning_rate=self.density_learning_rate,
                  density_filters=list(self.density_filters))
    return config
