"""`convert(model)`: turn any Functional or Sequential Keras model into a LilNetX model.

    model = tf.keras.applications.ResNet50(weights=None, input_shape=(32, 32, 3), classes=10)
    small = lnx.convert(model)      # size target: `compression`=12× below int8 weights
    small.compile(...); small.fit(...); lnx.stats(small)

Every Conv1D/2D/3D (ungrouped), DepthwiseConv1D/2D, SeparableConv1D/2D, Conv1D/2D/3DTranspose,
Dense, EinsumDense, Embedding and MultiHeadAttention (its four projections) becomes its LilNetX
namesake with the same configuration; every other layer is cloned with its weights. The new
model's LilNetX layers all share one `GroupRegistry` (one decoder and density per kernel shape),
whatever the nesting.

Warm start (`warm_start=True`, the default) makes the converted model start where the original
is: for each parameter group the decoder is set to s·I (a scalar s for dense and 1×1) and the
group's latent step to s, and each member's latent to its original kernel rearranged as
(in, out, k₁·…·k_r) (a separable conv's depthwise and pointwise kernels each in its group).
The forward kernel is then s·round(W / s): the original weights on a grid of step s. The step is
`warm_start_resolution` times the smallest per-layer RMS of the group's kernels, so the rounding
error of every layer is at most resolution / √12 of its RMS weight (≈ 2.9 % at 0.1, what "auto"
uses for trained layers; kernels still their initializer's draw get the coarse grid of the size
target instead, see `untrained`),
unless the group's layers differ so much in scale that this would put the largest weight beyond
±4096 steps: then the step is raised to keep it there, with a warning.
On a grid coarser than the RMS (resolution ρ > 1, the untrained start) the latent variables are
stored in units of s/ρ and the decoder, ρ·I in those units, is still s·I (`latent_pace`,
`ParameterGroup.set_grid`): the start is the same, but an optimizer that steps ~lr per variable
(Adam and its kind) then moves a latent across the grid as fast as it moves a plain weight
across its RMS. Measured on a BatchNorm CIFAR-10 CNN (benchmarks/defaults_zoo.py's, 470 Adam
steps, every penalty off): at ρ = 3 with the latents in weight units it reached 52.2 % against
54.2 % plain; at this pace 55.7 %. SGD's step grows with the variable's unit too (the pace
would be ρ²), so before a fresh SGD optimizer's first step `fit` puts the latents back at pace 1
(`monitor`, `ParameterGroup.set_pace`).
The group's density is then fitted to the new latents (`density_fit_steps`), so the rate term
and `lnx.stats` are meaningful from the first step.
"""

import warnings
from typing import Callable, Iterable, Optional, Union

import numpy as np
import tensorflow as tf

from lilnetx_tf import _compat
from lilnetx_tf import errors
from lilnetx_tf.analysis.graph import check_graph_model, is_graph_model
from lilnetx_tf.layers import attention as lnx_attention
from lilnetx_tf.layers import base
from lilnetx_tf.layers import conv as lnx_conv
from lilnetx_tf.layers import conv_transpose as lnx_conv_transpose
from lilnetx_tf.layers import dense as lnx_dense
from lilnetx_tf.layers import einsum_dense as lnx_einsum_dense
from lilnetx_tf.layers import embedding as lnx_embedding
from lilnetx_tf.layers import density_fit
from lilnetx_tf.layers import kernel_latents, layer_attribute
from lilnetx_tf.layers import registry as registry_lib
from lilnetx_tf.layers import separable as lnx_separable
from lilnetx_tf import monitor as monitor_lib
from lilnetx_tf import rate_control
from lilnetx_tf import untrained
from lilnetx_tf import validation

__all__ = ["MAX_WARM_START_INTEGER", "convert", "latent_pace", "original_kernel", "warm_start_step"]

# Exact Keras types converted (a subclass is another layer: Conv2DTranspose has its own row).
_CONVERTIBLE = {
    tf.keras.layers.Conv1D: lnx_conv.Conv1D,
    tf.keras.layers.Conv2D: lnx_conv.Conv2D,
    tf.keras.layers.Conv3D: lnx_conv.Conv3D,
    tf.keras.layers.DepthwiseConv1D: lnx_conv.DepthwiseConv1D,
    tf.keras.layers.DepthwiseConv2D: lnx_conv.DepthwiseConv2D,
    tf.keras.layers.SeparableConv1D: lnx_separable.SeparableConv1D,
    tf.keras.layers.SeparableConv2D: lnx_separable.SeparableConv2D,
    tf.keras.layers.Conv1DTranspose: lnx_conv_transpose.Conv1DTranspose,
    tf.keras.layers.Conv2DTranspose: lnx_conv_transpose.Conv2DTranspose,
    tf.keras.layers.Conv3DTranspose: lnx_conv_transpose.Conv3DTranspose,
    tf.keras.layers.Dense: lnx_dense.Dense,
    tf.keras.layers.EinsumDense: lnx_einsum_dense.EinsumDense,
    tf.keras.layers.Embedding: lnx_embedding.Embedding,
    tf.keras.layers.MultiHeadAttention: lnx_attention.MultiHeadAttention,
}
# The LilNetX classes: a LilNetX layer is converted to itself (new LilNetX arguments).
_LILNETX_CLASSES = tuple(_CONVERTIBLE.values())
# Options the LilNetX layers do not take: the latents are regularized by the LilNetX objective.
_DROPPED_OPTIONS = ("kernel_regularizer", "kernel_constraint", "depthwise_regularizer",
                    "depthwise_constraint", "pointwise_regularizer", "pointwise_constraint",
                    "embeddings_regularizer", "embeddings_constraint")
# Families of layers with a weight kernel: anything of these kinds we do not convert is reported
# (as is any other layer holding a weight of rank >= 2, once built).
_KERNEL_FAMILIES = tuple(
    cls for cls in (
        getattr(tf.keras.layers, name, None)
        for name in ("Conv1D", "Conv2D", "Conv3D", "Conv1DTranspose", "Conv2DTranspose",
                     "Conv3DTranspose", "SeparableConv1D", "SeparableConv2D",
                     "DepthwiseConv1D", "DepthwiseConv2D", "Dense", "EinsumDense",
                     "LocallyConnected1D", "LocallyConnected2D", "Embedding", "SimpleRNN",
                     "GRU", "LSTM", "ConvLSTM1D", "ConvLSTM2D", "ConvLSTM3D",
                     "MultiHeadAttention"))
    if cls is not None)

# More than `fit_densities`' default: a coarse (untrained) warm start has a peaked latent
# histogram, which 50 steps from the wide initial density do not reach (an MLP at 3× its RMS:
# 73 KB estimated after 50 steps, 25.9 KB after 300, 25.7 KB empirical entropy).
DENSITY_FIT_STEPS = 300

_CONVERTED_NAMES = (", ".join(cls.__name__ for cls in _CONVERTIBLE)
                    + " (convolutions with groups=1)")

LayerSelection = Union[None, Iterable[str], Callable[[tf.keras.layers.Layer], bool]]


def convert(model: tf.keras.Model,
            rate_weight: float = base.DEFAULT_RATE_WEIGHT,
            slice_weight: float = base.DEFAULT_SLICE_WEIGHT,
            l2_weight: float = base.DEFAULT_L2_WEIGHT,
            warm_start: bool = True,
            layers: LayerSelection = None,
            strict: bool = False,
            boundary: float = base.DEFAULT_BOUNDARY,
            density_learning_rate: float = base.DEFAULT_DENSITY_LEARNING_RATE,
            warm_start_resolution: Union[float, str] = "auto",
            density_fit_steps: int = DENSITY_FIT_STEPS,
            compression: Optional[float] = rate_control.DEFAULT_COMPRESSION) -> tf.keras.Model:
  """Returns a copy of `model` whose kernel layers (`_CONVERTIBLE`) are LilNetX layers.

  Args:
    model: A Functional or Sequential Keras model (nested models and shared layers included).
      Subclassed models cannot be cloned: build them from `lnx` layers instead.
      A Sequential model that calls one layer twice comes back as a Functional model (Keras
      cannot clone it as a Sequential without dropping the second call).
    rate_weight, slice_weight, l2_weight, boundary, density_learning_rate: LilNetX arguments
      of every converted layer (see `lnx.Conv2D`).
    warm_start: Start from the original weights (see the module docstring). If False, the
      converted layers get the usual fresh LilNetX initialization; other layers' weights, and
      the converted layers' biases, are copied either way.
    layers: Which convertible layers to convert: None for all, an iterable of layer names
      (a nested model's name selects every layer in it), or a predicate `layer -> bool`.
    strict: Raise `errors.UnsupportedLayerError` instead of warning when the model has layers
      with kernels that stay plain Keras layers (grouped convolutions, recurrent and locally
      connected layers, custom layers containing convolutions, ...).
    warm_start_resolution: Rounding step of each group as a fraction of the smallest
      per-layer RMS of its kernels. Smaller: closer start, larger integers (more bits).
      "auto": 0.1 for a group whose layers were trained; for a group whose kernels are still
      a draw of their initializers (`untrained.is_untrained`: a model converted before its
      `fit`), the finest grid at which they take no more bits than the size target allows
      (`compression`; at most 3.0, 2.0 without a target, and never so coarse that a layer
      rounds to all zeros, e.g. a one-weight head): the start then costs no bits the target
      does not allow, and keeps the initializer's scale.
    density_fit_steps: Adam steps fitting each group's density to the warm-started latents.
    compression: The size target, the one knob for size: the `.lnx` file (written with
      `compress(float16=True)`) about this many times smaller than the model's parameter count
      in bytes, i.e. than its int8 weights. The returned model's `fit` then gets a
      `rate_control.RateController` that scales `rate_weight`, `slice_weight` and `l2_weight`
      together, every few steps, toward that size (they only set the penalties' proportions).
      None: no target; the penalties keep the weights given.

  Returns:
    A new, uncompiled model, monitored (`lnx.monitor`): its `fit` and `evaluate` log
    `task_loss` and `lnx_penalty` next to `loss`, and `fit` warns when the penalties take over
    (`callbacks.PenaltyGuard`) and holds the size target (`compression`). `model` is left
    untouched.

  Raises:
    errors.UnsupportedLayerError: for a subclassed model, or (`strict`) unsupported layers.
    errors.InvalidArgumentError: for bad arguments or names in `layers` not in the model.
  """
  layer_kwargs = base.lilnetx_arguments(   # in the current units (config version)
      rate_weight, slice_weight, l2_weight, boundary, density_learning_rate)
  resolution = warm_start_resolution
  if not isinstance(resolution, str) or resolution != "auto":
    resolution = validation.positive_float("warm_start_resolution", warm_start_resolution)
  density_fit_steps = validation.non_negative_int("density_fit_steps", density_fit_steps)
  controller = None if compression is None else rate_control.RateController(compression)
  _check_cloneable(model)
  converter = _Converter(model, layer_kwargs, _Selection(model, layers))
  if converter.unsupported:
    listing = "; ".join(description for description, _ in converter.unsupported)
    message = (f"{len(converter.unsupported)} layer(s) with weights are kept as plain Keras "
               f"layers (LilNetX converts {_CONVERTED_NAMES}): {listing}."
               f"{_share(model, [l for _, l in converter.unsupported])}")
    if strict:
      raise errors.UnsupportedLayerError(message + " Pass strict=False to keep them as they are.")
    warnings.warn(message, UserWarning, stacklevel=2)
  if converter.dropped:
    warnings.warn(
        "LilNetX regularizes its latents itself (rate_weight, slice_weight, l2_weight); dropped "
        + "; ".join(converter.dropped) + ".", UserWarning, stacklevel=2)

  registry = registry_lib.GroupRegistry()
  with registry_lib.group_scope(registry):
    new_model = monitor_lib.monitor(converter.clone(model))
  monitor_lib.attach_controller(new_model, controller)
  if not model.built or not new_model.built:
    warnings.warn(f"Model {model.name!r} is not built: it has no weights to copy; the "
                  "converted model starts from a fresh initialization.", UserWarning,
                  stacklevel=2)
    return new_model
  converter.copy_weights(warm_start)
  if warm_start:
    bits = None
    if controller is not None and converter.converted:
      budget = rate_control.size_budget(new_model, controller.compression)
      bits = budget.target_bits / budget.latents
    _warm_start(registry, converter.converted, resolution, density_fit_steps, bits)
  return new_model


# -------------------------------------------------------------------------------------------------
# Cloning.


def _check_cloneable(model) -> None:
  _compat.check_keras2_model(model, "lnx.convert")
  if not isinstance(model, tf.keras.layers.Layer):
    raise errors.InvalidArgumentError(f"`model` must be a Keras model, got {type(model)}.")
  check_graph_model(model, need_input=False)   # Keras clones an unbuilt Sequential too


def _all_layers(model) -> list:
  return list(model._flatten_layers(include_self=False, recursive=True))


class _Selection:
  """Which convertible layers `layers=` selects: all, a predicate, or names (a nested model's
  name selecting everything inside it)."""

  def __init__(self, model, layers: LayerSelection):
    self.predicate, self.names = None, None
    if layers is None or callable(layers):
      self.predicate = layers
      return
    if isinstance(layers, str):
      layers = [layers]
    try:
      self.names = set(layers)
    except TypeError:
      raise errors.InvalidArgumentError(
          f"`layers` must be None, layer names or a predicate, got {layers!r}.") from None
    known = {layer.name for layer in _all_layers(model)}
    unknown = sorted(str(n) for n in self.names - known)
    if unknown:
      raise errors.InvalidArgumentError(
          f"`layers` names {unknown}, which are not layers of model {model.name!r}.")

  def selects_model(self, model) -> bool:
    return self.names is not None and model.name in self.names

  def __call__(self, layer, in_selected_model: bool) -> bool:
    if self.names is not None:
      return in_selected_model or layer.name in self.names
    return self.predicate is None or bool(self.predicate(layer))


def _describe(layer) -> str:
  return f"{layer.name!r} ({type(layer).__name__})"


def _share(model, layers: list) -> str:
  """How much of the (built) model's parameters `layers` hold, as a sentence."""
  total = model.count_params() if model.built else 0
  if not total:
    return ""
  kept = sum(layer.count_params() for layer in layers if layer.built)
  return (f" They hold {kept:,} of the model's {total:,} parameters ({kept / total:.1%}), "
          "which stay uncompressed.")


def _kernels(layer) -> list:
  """Names of the trainable weights of rank >= 2 of a built custom (not Keras) layer, its
  sublayers' included: its kernels, presumably (Keras's own such layers are in
  `_KERNEL_FAMILIES`; the rest, e.g. PReLU's alpha, are not kernels)."""
  if type(layer).__module__.split(".")[0] == _compat.KERAS_PACKAGE:
    return []
  return [w.name.split("/")[-1].split(":")[0] for w in layer.trainable_weights
          if w.shape.rank >= 2]


def _repeats_a_layer(model: tf.keras.Sequential) -> bool:
  """Whether a built Sequential model calls one layer object more than once."""
  # pylint: disable=protected-access
  if not is_graph_model(model):
    return False
  calls = sum(len(nodes) for nodes in model._nodes_by_depth.values())
  return calls > len({id(layer) for layer in model._self_tracked_trackables})


class _Converter:
  """Clones a model once, remembering which new layer came from which old one."""

  def __init__(self, model, layer_kwargs: dict, selected: "_Selection"):
    self.layer_kwargs = layer_kwargs
    self.selected = selected
    self.memo: dict[int, tf.keras.layers.Layer] = {}
    self.copied: list = []      # (old, new) plain layers whose weights are copied
    self.converted: list = []   # (old, new) converted layers
    self.unsupported: list = []   # (description, layer) of layers with kernels kept plain
    self.dropped: list = []
    self.plans: dict[int, str] = {}   # id(layer) -> "convert" or "copy"; the model is not touched
    self._survey(model, in_selected_model=False)

  # A first pass over the model decides what happens to each layer (and warns once).
  def _survey(self, model, in_selected_model: bool) -> None:
    seen = set()
    for layer in model._flatten_layers(include_self=False, recursive=False):
      if id(layer) in seen:
        continue
      seen.add(id(layer))
      if isinstance(layer, tf.keras.Model):
        _check_cloneable(layer)
        self._survey(layer, in_selected_model or self.selected.selects_model(layer))
        continue
      self._classify(layer, in_selected_model)

  def _classify(self, layer, in_selected_model: bool) -> None:
    if id(layer) in self.memo or id(layer) in self.plans:
      return
    if _is_convertible(layer):
      plan = "convert" if self.selected(layer, in_selected_model) else "copy"
      if plan == "convert" and not kernel_latents(layer):
        config = layer.get_config()
        dropped = [k for k in _DROPPED_OPTIONS if config.get(k) is not None]
        if dropped:
          self.dropped.append(f"{', '.join(dropped)} of {_describe(layer)}")
    else:
      plan = "copy"
      if isinstance(layer, _KERNEL_FAMILIES):   # (a LilNetX layer is convertible)
        reason = ""
        if type(layer) in _CONVERTIBLE and getattr(layer, "groups", 1) != 1:
          reason = f", groups={layer.groups}"
        self.unsupported.append((_describe(layer)[:-1] + reason + ")", layer))
      else:
        inner = [l for l in layer._flatten_layers(include_self=False)
                 if isinstance(l, _KERNEL_FAMILIES)]
        kernels = _kernels(layer)
        if inner:
          self.unsupported.append((
              f"{_describe(layer)} containing " + ", ".join(_describe(l) for l in inner[:3])
              + (", ..." if len(inner) > 3 else ""), layer))
        elif kernels:
          self.unsupported.append((f"{_describe(layer)} with weights {', '.join(kernels)}",
                                   layer))
    self.plans[id(layer)] = plan

  def clone(self, model):
    if isinstance(model, tf.keras.Sequential) and _repeats_a_layer(model):
      # Keras clones a Sequential from its de-duplicated `layers`, which silently drops the
      # second call of a repeated layer; the Functional view keeps every call.
      model = tf.keras.Model(model.inputs, model.outputs, name=model.name)
    return tf.keras.models.clone_model(model, clone_function=self._clone_layer)

  def _clone_layer(self, layer):
    if id(layer) in self.memo:       # a layer shared between (nested) models stays one layer
      return self.memo[id(layer)]
    if isinstance(layer, tf.keras.Model):
      new = self.clone(layer)
    elif self.plans.get(id(layer), "copy") == "convert":
      config = layer.get_config()
      for key in _DROPPED_OPTIONS:
        if key in config:
          config[key] = None
      config.update(self.layer_kwargs)
      lnx_class = _CONVERTIBLE.get(type(layer), type(layer))   # a LilNetX layer stays itself
      new = lnx_class.from_config(config)
      self.converted.append((layer, new))
    else:
      new = layer.__class__.from_config(layer.get_config())
      self.copied.append((layer, new))
    self.memo[id(layer)] = new
    return new

  def copy_weights(self, warm_start: bool) -> None:
    for old, new in self.copied:
      if _is_lilnetx(old):
        _copy_lilnetx_layer(old, new)
      elif old.weights:
        new.set_weights(old.get_weights())
    for old, new in self.converted:
      _copy_biases(old, new)


def _is_lilnetx(layer) -> bool:
  """A LilNetX layer: one holding latents, or a LilNetX class whose sublayers holding them do
  not exist yet (an unbuilt MultiHeadAttention)."""
  return bool(kernel_latents(layer)) or isinstance(layer, _LILNETX_CLASSES)


def _copy_biases(old, new) -> None:
  """Copies the bias of each (sub)layer holding one of `new`'s kernels (the layer itself, or an
  attention's projections, found from the `kernel_latents` paths) from its place in `old`."""
  for owner in dict.fromkeys(path.rpartition(".")[0] for _, path in kernel_latents(new)):
    bias = getattr(layer_attribute(old, owner), "bias", None)
    if bias is not None:
      layer_attribute(new, owner).bias.assign(bias)


def _is_convertible(layer) -> bool:
  if _is_lilnetx(layer):
    return True
  if type(layer) not in _CONVERTIBLE:
    return False
  return getattr(layer, "groups", 1) == 1


def _copy_lilnetx_layer(old, new) -> None:
  """An unselected LilNetX layer keeps its latents, decoders and steps (its groups are new)."""
  for (old_latent, _), (new_latent, _) in zip(kernel_latents(old), kernel_latents(new)):
    new_latent.latent_variable.assign(old_latent.latent_variable)
    new_latent.group.decoder.assign(old_latent.group.decoder)
    new_latent.group.latent_step.assign(old_latent.group.latent_step)
  _copy_biases(old, new)


# -------------------------------------------------------------------------------------------------
# Warm start.


def original_kernel(layer, path: str = "kernel") -> np.ndarray:
  """The kernel at `path` (a `kernel_latents` path) of a plain or LilNetX layer, Keras layout,
  float32."""
  return np.asarray(tf.convert_to_tensor(layer_attribute(layer, path)), dtype=np.float32)


# The largest integer a warm-started latent may take (`warm_start_step`).
MAX_WARM_START_INTEGER = 2 ** 12


def warm_start_step(kernels: Iterable[np.ndarray], resolution: float) -> float:
  """Group rounding step: `resolution` × the smallest nonzero per-layer RMS of `kernels`, but
  no finer than puts the largest weight at ±`MAX_WARM_START_INTEGER` (with a warning): layers
  whose scales differ by orders of magnitude share one step, and integers far beyond what a
  density can be fitted to make the rate term blow up in training."""
  kernels = [np.asarray(k, np.float64) for k in kernels]
  rms = [float(np.sqrt(np.mean(np.square(k)))) for k in kernels]
  rms = [r for r in rms if r > 0 and np.isfinite(r)]
  if not rms:
    return 1.0
  step = resolution * min(rms)
  largest = max(float(np.max(np.abs(k), initial=0)) for k in kernels)
  coarsest = largest / MAX_WARM_START_INTEGER
  if np.isfinite(coarsest) and coarsest > step:
    warnings.warn(
        f"Warm start: the kernels of one parameter group differ in scale by a factor of "
        f"{largest / min(rms):.3g}; their shared rounding step is raised from {step:.3g} to "
        f"{coarsest:.3g} so that latents stay within ±{MAX_WARM_START_INTEGER}, which rounds "
        "the smallest layers coarsely. Check the converted model's accuracy.", UserWarning,
        stacklevel=4)   # the caller of `convert`
    step = coarsest
  return step


def latent_pace(resolution: float) -> float:
  """How much faster than their variables' optimizer steps a group's latents cross a grid of
  `resolution` × their RMS (`ParameterGroup.set_grid`): `resolution` on a grid coarser than the
  RMS, so that a latent crosses grid steps at the pace a plain weight crosses its RMS; 1 on
  finer grids (a trained model's warm start keeps the user's learning rate)."""
  return min(max(1.0, float(resolution)), base.MAX_LATENT_PACE)


def _group_resolution(resolution, members: list, bits_per_value: Optional[float]) -> float:
  """`resolution`, or for "auto" the trained or untrained grid of the group (module doc)."""
  if resolution != "auto":
    return resolution
  verdicts = [verdict for verdict, _, _ in members]
  if False in verdicts or True not in verdicts:
    return untrained.TRAINED_RESOLUTION
  rms = [float(np.sqrt(np.mean(np.square(k)))) for _, _, k in members]
  smallest = min((r for r in rms if r > 0), default=0.0)
  kernels = [k for _, _, k in members]
  return min(untrained.untrained_resolution(kernels, smallest, bits_per_value),
             untrained.layer_keeping_resolution(kernels, smallest))


def _warm_start(registry, converted: list, resolution, fit_steps: int,
                bits_per_value: Optional[float]) -> None:
  by_group: dict = {}
  for old, new in converted:
    for latent, path in kernel_latents(new):
      kernel = original_kernel(old, path)
      by_group.setdefault(id(latent.group), (latent.group, []))[1].append(
          (untrained.is_untrained(old, kernel, path), latent, kernel))
  for group, members in by_group.values():
    group_resolution = _group_resolution(resolution, members, bits_per_value)
    slices = [latent.kernel_to_latent(kernel) for _, latent, kernel in members]
    pace = latent_pace(group_resolution)
    group.set_grid(warm_start_step(slices, group_resolution), pace)
    for (_, latent, _), member_slices in zip(members, slices):
      latent.latent_variable.assign(member_slices / pace)
  density_fit.fit_group_densities(
      [(group, [latent for _, latent, _ in members]) for group, members in by_group.values()],
      fit_steps)
