"""`slim(model)`: a plain Keras model with decoded weights, BN folded and dead channels removed.

    small = lnx.slim(model)          # stock tf.keras layers; lilnetx_tf not needed to run it

Steps:
  1. Decode every kernel (LilNetX or plain Conv2D / DepthwiseConv2D / Dense).
  2. Fold each BatchNormalization into the conv/dense/depthwise layer before it when that
     layer's output feeds only the BN and the layer has a linear activation (see `fold`).
  3. Channel analysis (see `graph`): union-find over channel spaces through the whole graph;
     a channel class is removed when nothing needs its value: every conv/dense reading it has
     zero weights on it, or reads a constant it can absorb exactly into its bias.
  4. Rebuild the graph with stock layers of reduced width and check it against the original.
     Other layers are copied; a `ChannelPadding` (option-A shortcuts) is rebuilt with the
     number of padded channels still needed; a slim model saved with it as `.keras` needs
     lilnetx_tf to load, its SavedModel and TFLite files do not.

What is removed / kept:
  * an output channel with all-zero weights is a constant act(b) (b after BN folding). It is
    removed when every reader is a Dense, a 1×1 or VALID conv (constant folded into the
    reader's bias: exact), or has zero weights on it, or the constant is 0 (e.g. ReLU of a
    negative bias; with untrained BN β=0 every zeroed channel is 0).
  * a non-zero constant read by a SAME-padded k×k conv (directly or through a SAME depthwise
    conv / ZeroPadding2D) is kept: border pixels see padding zeros, not the constant, so no
    bias correction is exact. Such channels cost compute but keep outputs exact.
  * Add/Multiply/... unite the channels of their inputs: a channel goes only if nothing needs
    it in any branch (a channel dead in one branch of an Add but live in the other is kept).
  * model inputs and outputs, and everything entering or leaving an unknown layer (barrier),
    are kept. Nested models are barriers: they are slimmed on their own (their inputs and
    outputs keep all channels) and called as one layer. Layers called more than once are
    barriers.

Tolerance: the slim model is compared with the original on random inputs (or
`sample_inputs`) and `SlimCheckError` is raised unless, for every output,
max |slim − original| ≤ atol + rtol · max |original| (defaults rtol=1e-4, atol=1e-5; BN
folding changes float32 rounding only).
"""

import dataclasses
import math
from typing import Optional, Sequence

import numpy as np
import tensorflow as tf

from lilnetx_tf import errors
from lilnetx_tf import macs
from lilnetx_tf.export import fold
from lilnetx_tf.export import graph
from lilnetx_tf.layers import group as group_lib
from lilnetx_tf.layers import is_lilnetx_layer
from lilnetx_tf.layers import validation

DEFAULT_RTOL = 1e-4
DEFAULT_ATOL = 1e-5
# The stock Keras classes of kernel layers.
_STOCK = (tf.keras.layers.DepthwiseConv2D, tf.keras.layers.Conv2D, tf.keras.layers.Dense)


@dataclasses.dataclass
class SlimInfo:
  """What `slim` did; attached to the slim model as `model.slim_info`."""
  folded_batchnorms: int
  removed_channels: dict       # kernel layer name -> (output channels before, after)
  max_difference: Optional[float]
  tolerance: Optional[float]


_REDUCED_PRECISION = {"float16": 2.0 ** -10, "bfloat16": 2.0 ** -7}   # dtype -> machine epsilon


def _float32_config(layer, config: dict) -> dict:
  """`config` computing in float32 where `layer` computes in float16 / bfloat16 (mixed
  precision): the slim model is a float32 model; TFLite quantizes it if asked."""
  if layer.compute_dtype in _REDUCED_PRECISION:
    config = dict(config, dtype="float32")
  return config


def _stock_class(layer) -> type:
  """The stock Keras kernel-layer class that `layer` (stock or LilNetX) is an instance of."""
  return next(cls for cls in _STOCK if isinstance(layer, cls))


def _stock_config(layer, stock: type) -> dict:
  config = stock.get_config(layer)   # the Keras arguments only, not the LilNetX ones
  return _float32_config(layer, {k: v for k, v in config.items()
                                 if k != "groups" or stock is tf.keras.layers.Conv2D})


def _stock_kernel_layer(layer, kind: Optional[str], w: dict,
                        in_keep: Optional[np.ndarray] = None,
                        out_keep: Optional[np.ndarray] = None) -> tuple:
  """(an unbuilt stock Conv2D / DepthwiseConv2D / Dense like `layer`, its weights list) for the
  decoded (and folded) weights `w`, narrowed to the kept input and output channels of a layer
  of `kernel_kind` `kind` (all channels where a mask is None: any data format)."""
  kernel, bias = w["kernel"], w["bias"]
  stock = _stock_class(layer)
  config = _stock_config(layer, stock)
  use_bias = bool(w["had_bias"] or np.any(bias != 0))
  config["use_bias"] = use_bias
  if in_keep is not None and out_keep is not None:
    if kind == "conv":
      kernel = kernel[:, :, in_keep][..., out_keep]
      config["filters"] = int(out_keep.sum())
    elif kind == "dense":
      kernel = kernel[in_keep][:, out_keep]
      config["units"] = int(out_keep.sum())
    else:
      kernel = kernel[:, :, in_keep, :]
    bias = bias[out_keep]
  return stock.from_config(config), [kernel, bias] if use_bias else [kernel]


def _clone(layer):
  """A copy of a (weightless or barrier) layer with its weights."""
  try:
    new = layer.__class__.from_config(_float32_config(layer, layer.get_config()))
  except Exception:  # pylint: disable=broad-except
    return layer  # reuse the layer object itself
  return new


def _fold_batchnorms(model, ops) -> tuple[dict, set]:
  weights = {}
  for op in ops:
    if op.kind in ("conv", "depthwise", "dense"):
      weights[id(op.layer)] = fold.kernel_weights(op.layer)
  consumers: dict[int, list] = {}
  for op in ops:
    for t in op.inputs:
      consumers.setdefault(id(t), []).append(op)
  producer = {id(t): op for op in ops for t in op.outputs}
  outputs = {id(t) for t in model.outputs}
  folded = set()
  for op in ops:
    if op.kind != "bn":
      continue
    key = id(op.inputs[0])
    prev = producer.get(key)
    if (prev is None or prev.kind not in ("conv", "depthwise", "dense") or key in outputs
        or len(consumers.get(key, [])) != 1
        or fold.activation_name(prev.layer.activation) != "linear"):
      continue
    weights[id(prev.layer)] = fold.fold_bn(weights[id(prev.layer)], prev.kind, op.layer)
    folded.add(id(op.layer))
  return weights, folded


def _new_input(kt, layer):
  return tf.keras.Input(shape=kt.shape[1:], batch_size=kt.shape[0], dtype=kt.dtype,
                        name=layer.name)


def _rebuild(model, ops, weights, folded, keep) -> tuple[tf.keras.Model, dict]:
  new = {}            # id(old KerasTensor) -> new tensor
  widths = {}
  kt_type = type(model.outputs[0])

  def mapped(structure):
    return tf.nest.map_structure(
        lambda t: new[id(t)] if isinstance(t, kt_type) else t, structure)

  def call(op, layer):
    args, kwargs = mapped(op.node.call_args), mapped(op.node.call_kwargs)
    kwargs.pop("training", None)
    result = layer(*args, **kwargs)
    for old, y in zip(op.outputs, tf.nest.flatten(result)):
      new[id(old)] = y

  layer_cache = {}
  for op in ops:
    layer, kind = op.layer, op.kind
    if kind == "input":
      if id(op.outputs[0]) not in new:
        new[id(op.outputs[0])] = _new_input(op.outputs[0], layer)
      continue
    if kind in ("conv", "depthwise", "dense"):
      out_keep = keep[id(op.outputs[0])]
      new_layer, layer_weights = _stock_kernel_layer(layer, kind, weights[id(layer)],
                                                     keep[id(op.inputs[0])], out_keep)
      call(op, new_layer)
      new_layer.set_weights(layer_weights)
      widths[layer.name] = (len(out_keep), int(out_keep.sum()))
    elif kind == "bn":
      if id(layer) in folded:
        new[id(op.outputs[0])] = new[id(op.inputs[0])]
        continue
      mask = keep[id(op.inputs[0])]
      new_layer = tf.keras.layers.BatchNormalization.from_config(
          _float32_config(layer, layer.get_config()))
      call(op, new_layer)
      new_layer.set_weights([w[mask] for w in layer.get_weights()])
    elif kind == "reshape":
      config = _float32_config(layer, layer.get_config())
      target = list(config["target_shape"])
      if target[-1] != -1:
        target[-1] = int(keep[id(op.outputs[0])].sum())
      config["target_shape"] = tuple(target)
      call(op, tf.keras.layers.Reshape.from_config(config))
    elif kind == "channelpad":
      out_keep = keep[id(op.outputs[0])]
      before, after = layer.padding
      config = _float32_config(layer, layer.get_config())
      config["padding"] = (int(out_keep[:before].sum()),
                           int(out_keep[len(out_keep) - after:].sum()))
      call(op, type(layer).from_config(config))
    elif kind == "model":
      if id(layer) not in layer_cache:
        layer_cache[id(layer)] = slim(layer, check=False)
      call(op, layer_cache[id(layer)])
    elif kind == "barrier":
      if id(layer) in layer_cache:
        call(op, layer_cache[id(layer)])
      elif is_lilnetx_layer(layer):   # e.g. shared by several calls: decoded at full width
        new_layer, layer_weights = _stock_kernel_layer(layer, None, fold.kernel_weights(layer))
        layer_cache[id(layer)] = new_layer
        call(op, new_layer)
        new_layer.set_weights(layer_weights)
      else:
        clone = _clone(layer)
        layer_cache[id(layer)] = clone
        call(op, clone)
        if clone is not layer and layer.weights:
          clone.set_weights(layer.get_weights())
    else:  # elementwise, pool, zeropad, merge, concat, flatten: weightless or same weights
      clone = _clone(layer)
      call(op, clone)
      if clone is not layer and layer.weights:
        clone.set_weights(layer.get_weights())
  inputs = [new[id(t)] for t in model.inputs]
  outputs = [new[id(t)] for t in model.outputs]
  slim_model = tf.keras.Model(inputs[0] if len(inputs) == 1 else inputs,
                              outputs[0] if len(outputs) == 1 else outputs,
                              name=f"{model.name}_slim")
  return slim_model, widths


def random_input(rng: np.random.Generator, shape: Sequence[int], dtype) -> np.ndarray:
  """Random normal values for a float input; 0s and 1s for any other (ids, masks), which every
  embedding table and mask accepts."""
  dtype = np.dtype(tf.as_dtype(dtype).as_numpy_dtype)
  if np.issubdtype(dtype, np.floating):
    return rng.standard_normal(shape).astype(dtype)
  return rng.integers(0, 2, shape).astype(dtype)


def sample_inputs(model: tf.keras.Model, batch: int = 2, spatial: int = 32,
                  seed: int = 0) -> list:
  """Random inputs for `model` (`random_input`; unknown sizes: batch `batch`, other dims
  `spatial`)."""
  rng = np.random.default_rng(seed)
  return [random_input(rng, [batch] + [spatial if d is None else int(d) for d in t.shape[1:]],
                       t.dtype)
          for t in model.inputs]


def _as_list(x) -> list:
  return [np.asarray(v) for v in tf.nest.flatten(x)]


def compare(reference: tf.keras.Model, candidate: tf.keras.Model, inputs: list,
            rtol: float = DEFAULT_RTOL, atol: float = DEFAULT_ATOL) -> tuple[float, float]:
  """(largest |difference| over outputs, its allowed value) for `inputs`."""
  feed = inputs[0] if len(inputs) == 1 else inputs
  ref = _as_list(reference(feed, training=False))
  got = _as_list(candidate(feed, training=False))
  diff = max(float(np.max(np.abs(r.astype(np.float64) - g))) if r.size else 0.0
             for r, g in zip(ref, got))
  scale = max(float(np.max(np.abs(r))) if r.size else 0.0 for r in ref)
  return diff, atol + rtol * scale


def check_graph_model(model) -> None:
  """Raises `UnsupportedLayerError` unless `model` is a Keras model with a layer graph."""
  if isinstance(model, tf.keras.Sequential) and not getattr(model, "_is_graph_network", False):
    raise errors.UnsupportedLayerError(
        "The Sequential model has no known input shape: start it with tf.keras.Input(shape) "
        "or build it (model.build(input_shape)) first.")
  if not isinstance(model, tf.keras.Model) or not getattr(model, "_is_graph_network", False):
    raise errors.UnsupportedLayerError(
        "A Functional (or built Sequential) Keras model is needed; subclassed models have no "
        "graph to analyse. Got " + type(model).__name__ + ".")


def slim(model: tf.keras.Model, check: bool = True, rtol: float = DEFAULT_RTOL,
         atol: float = DEFAULT_ATOL, inputs: Optional[Sequence[np.ndarray]] = None,
         fold_batchnorm: bool = True, remove_channels: bool = True) -> tf.keras.Model:
  """A plain Keras copy of `model` with decoded weights, BN folded and dead channels removed.

  Args:
    model: a built Functional (or Sequential with a known input) Keras model, with LilNetX
      and/or plain layers.
    check: compare outputs with `model` and raise `SlimCheckError` beyond the tolerance
      max|Δ| ≤ atol + rtol·max|original| (per call, over all outputs). The slim model
      computes in float32; for a mixed-precision `model` both tolerances are at least 16
      units of its float16 / bfloat16 rounding.
    inputs: sample inputs for the check (list, one array per model input); default random
      normal, batch 2, unknown dimensions 32.
    fold_batchnorm, remove_channels: switch the two transformations off (both off gives the
      dense plain twin, useful as a baseline).

  Returns a new `tf.keras.Model` of stock layers; `model.slim_info` is a `SlimInfo`.
  """
  check_graph_model(model)
  rtol = validation.non_negative_float("rtol", rtol)
  atol = validation.non_negative_float("atol", atol)
  ops = graph.graph_ops(model)
  if fold_batchnorm:
    weights, folded = _fold_batchnorms(model, ops)
  else:
    weights = {id(op.layer): fold.kernel_weights(op.layer) for op in ops
               if op.kind in ("conv", "depthwise", "dense")}
    folded = set()
  if remove_channels:
    keep = graph.plan(model, ops, weights, folded).keep
  else:
    keep = {id(t): np.ones(graph._channels(t), bool) for op in ops
            for t in op.inputs + op.outputs}
  slim_model, widths = _rebuild(model, ops, weights, folded, keep)
  leftovers = [l.name for l in slim_model._flatten_layers(include_self=False)
               if is_lilnetx_layer(l)]
  if leftovers:
    raise errors.UnsupportedLayerError(f"LilNetX layers left in the slim model: {leftovers}")
  diff = tolerance = None
  if check:
    sample = list(inputs) if inputs is not None else sample_inputs(model)
    # A model computing in float16 / bfloat16 differs from its float32 slim twin by its own
    # rounding: the check then allows 16 units of that precision.
    epsilon = max((_REDUCED_PRECISION.get(l.compute_dtype, 0.0)
                   for l in model._flatten_layers(include_self=False)), default=0.0)
    diff, tolerance = compare(model, slim_model, sample, max(rtol, 16 * epsilon),
                              max(atol, 16 * epsilon))
    if not diff <= tolerance:
      raise errors.SlimCheckError(
          f"The slim model differs from the original by {diff:.3g} > {tolerance:.3g} "
          f"(atol={atol}, rtol={rtol}).")
  slim_model.slim_info = SlimInfo(
      folded_batchnorms=len(folded),
      removed_channels={k: v for k, v in widths.items() if v[0] != v[1]},
      max_difference=diff, tolerance=tolerance)
  return slim_model


def count_macs(model: tf.keras.Model) -> int:
  """Multiply-accumulates per example of the kernel layers of `model` (`lilnetx_tf.macs`)."""
  return macs.model_macs(model)


def count_parameters(model: tf.keras.Model) -> int:
  """Parameters of the layers as a plain model stores them (LilNetX layers count their decoded
  kernel and bias, not latents, decoders or densities)."""
  total = 0
  for layer in model._flatten_layers(include_self=False):
    if isinstance(layer, (tf.keras.Model, group_lib.ParameterGroup)):
      continue
    if is_lilnetx_layer(layer):   # as many kernel values as latents, and the bias
      bias = 0 if layer.bias is None else math.prod(layer.bias.shape)
      total += macs.kernel_values(layer) + bias
    else:
      total += sum(math.prod(w.shape) for w in layer.weights)
  return int(total)
