"""Rebuilds a graph model's calls with stock Keras layers, narrowed to the kept channels.

One rule per `OpKind`: kernel layers become their stock Keras class (Conv1D/2D/3D, depthwise,
separable and transposed convolutions, Dense) with the decoded (and folded) weights of their kept
channels; a MultiHeadAttention becomes a stock one without its dead heads, an Embedding a stock
one with its kept output dims; folded BatchNorms vanish, the others keep their kept channels; a
Reshape and a `ChannelPadding` get their new widths; nested models are slimmed on their own;
barriers are copied (a LilNetX layer there, e.g. called several times or an EinsumDense, becomes
its full-width stock class, shared by its calls); weightless layers are copied. Every layer is
rebuilt to compute in float32 (a mixed-precision model gives a float32 slim model).
"""

from typing import Callable, Optional

import numpy as np
import tensorflow as tf

from lilnetx_tf.analysis import heads
from lilnetx_tf.analysis.graph import Op
from lilnetx_tf.analysis.kernels import RULES, KernelWeights, kernel_weights
from lilnetx_tf.analysis.kinds import OpKind, kernel_family
from lilnetx_tf.layers import kernel_latents

__all__ = ["REDUCED_PRECISION", "rebuild"]

# dtype -> machine epsilon of the reduced-precision compute dtypes of mixed precision.
REDUCED_PRECISION = {"float16": 2.0 ** -10, "bfloat16": 2.0 ** -7}
_L = tf.keras.layers
# The stock Keras classes of layers with kernels, most specific first (Conv2DTranspose is a
# Conv2D); each LilNetX layer subclasses one.
_STOCK = (_L.Conv1DTranspose, _L.Conv2DTranspose, _L.Conv3DTranspose, _L.SeparableConv1D,
          _L.SeparableConv2D, _L.DepthwiseConv1D, _L.DepthwiseConv2D, _L.Conv1D, _L.Conv2D,
          _L.Conv3D, _L.Dense, _L.EinsumDense, _L.Embedding, _L.MultiHeadAttention)
# The classes whose config takes `groups`.
_GROUPED = (_L.Conv1D, _L.Conv2D, _L.Conv3D)


def _float32_config(layer, config: dict) -> dict:
  """`config` computing in float32 where `layer` computes in float16 / bfloat16."""
  if layer.compute_dtype in REDUCED_PRECISION:
    config = dict(config, dtype="float32")
  return config


def _stock_kernel_layer(layer, kind: Optional[OpKind], w: KernelWeights,
                        in_keep: Optional[np.ndarray] = None,
                        out_keep: Optional[np.ndarray] = None) -> tuple:
  """(an unbuilt stock layer like `layer`, its weights list) for the decoded weights `w`,
  narrowed to the kept channels for a kernel `kind` (all channels when `kind` is None)."""
  stock = _stock_class(layer)
  config = stock.get_config(layer)   # the Keras arguments only, not the LilNetX ones
  config = _float32_config(layer, {k: v for k, v in config.items()
                                   if k != "groups" or stock in _GROUPED})
  kernel, bias = w.kernel, w.bias
  use_bias = bool(w.had_bias or np.any(bias != 0))
  config["use_bias"] = use_bias
  rule = RULES[kernel_family(layer)]
  if kind is not None:
    kernel = rule.narrow(kernel, in_keep, out_keep)
    if rule.width_argument is not None:
      config[rule.width_argument] = int(out_keep.sum())
    bias = bias[out_keep]
  return stock.from_config(config), rule.arrays(kernel) + ([bias] if use_bias else [])


def _stock_class(layer) -> type:
  return next(cls for cls in _STOCK if isinstance(layer, cls))


def _decoded_twin(layer) -> tuple:
  """(an unbuilt stock layer computing what LilNetX `layer` computes at full width, its
  weights): a kernel layer's from its rule, another's (Embedding, EinsumDense,
  MultiHeadAttention) from its `stock_weights()`."""
  if kernel_family(layer) is not None:
    return _stock_kernel_layer(layer, None, kernel_weights(layer))
  stock = _stock_class(layer)
  config = _float32_config(layer, stock.get_config(layer))   # the Keras arguments only
  return stock.from_config(config), layer.stock_weights()


def _clone(layer):
  """A copy of a (weightless or barrier) layer, or the layer itself if it cannot be copied."""
  try:
    return layer.__class__.from_config(_float32_config(layer, layer.get_config()))
  except Exception:  # pylint: disable=broad-except
    return layer


class _Rebuilder:
  """Maps the old graph's tensors to the new one's while the calls are rebuilt in order."""

  def __init__(self, model, weights: dict, folded: set, keep: dict, slim_nested: Callable):
    self.new: dict = {}               # id(old KerasTensor) -> new tensor
    self.widths: dict = {}            # kernel layer name -> (channels before, after)
    self.cache: dict = {}             # id(old layer) -> its one new layer (shared calls)
    self.weights, self.folded, self.keep = weights, folded, keep
    self.slim_nested = slim_nested
    self._tensor_type = type(model.outputs[0])

  def _mapped(self, structure):
    return tf.nest.map_structure(
        lambda t: self.new[id(t)] if isinstance(t, self._tensor_type) else t, structure)

  def call(self, op: Op, layer, weights: Optional[list] = None) -> None:
    """Calls `layer` on the new counterparts of `op`'s arguments, then sets its `weights`."""
    kwargs = self._mapped(op.node.call_kwargs)
    kwargs.pop("training", None)
    result = layer(*self._mapped(op.node.call_args), **kwargs)
    for old, y in zip(op.outputs, tf.nest.flatten(result)):
      self.new[id(old)] = y
    if weights is not None:
      layer.set_weights(weights)

  def kept(self, tensor) -> np.ndarray:
    return self.keep[id(tensor)]


def _input(r: _Rebuilder, op: Op) -> None:
  tensor = op.outputs[0]
  if id(tensor) not in r.new:
    r.new[id(tensor)] = tf.keras.Input(shape=tensor.shape[1:], batch_size=tensor.shape[0],
                                       dtype=tensor.dtype, name=op.layer.name)


def _kernel(r: _Rebuilder, op: Op) -> None:
  out_keep = r.kept(op.outputs[0])
  layer, weights = _stock_kernel_layer(op.layer, op.kind, r.weights[id(op.layer)],
                                       r.kept(op.inputs[0]), out_keep)
  r.call(op, layer, weights)
  r.widths[op.layer.name] = (len(out_keep), int(out_keep.sum()))


def _bn(r: _Rebuilder, op: Op) -> None:
  if id(op.layer) in r.folded:
    r.new[id(op.outputs[0])] = r.new[id(op.inputs[0])]
    return
  mask = r.kept(op.inputs[0])
  layer = tf.keras.layers.BatchNormalization.from_config(
      _float32_config(op.layer, op.layer.get_config()))
  r.call(op, layer, [w[mask] for w in op.layer.get_weights()])


def _reshape(r: _Rebuilder, op: Op) -> None:
  config = _float32_config(op.layer, op.layer.get_config())
  target = list(config["target_shape"])
  if target[-1] != -1:
    target[-1] = int(r.kept(op.outputs[0]).sum())
  config["target_shape"] = tuple(target)
  r.call(op, tf.keras.layers.Reshape.from_config(config))


def _channelpad(r: _Rebuilder, op: Op) -> None:
  out_keep = r.kept(op.outputs[0])
  before, after = op.layer.padding
  config = _float32_config(op.layer, op.layer.get_config())
  config["padding"] = (int(out_keep[:before].sum()), int(out_keep[len(out_keep) - after:].sum()))
  r.call(op, type(op.layer).from_config(config))


def _model(r: _Rebuilder, op: Op) -> None:
  if id(op.layer) not in r.cache:
    r.cache[id(op.layer)] = r.slim_nested(op.layer)
  r.call(op, r.cache[id(op.layer)])


def _copy(r: _Rebuilder, op: Op) -> None:
  clone = _clone(op.layer)
  r.call(op, clone, op.layer.get_weights() if clone is not op.layer and op.layer.weights
         else None)


def _barrier(r: _Rebuilder, op: Op) -> None:
  layer = op.layer
  if id(layer) in r.cache:
    r.call(op, r.cache[id(layer)])
  elif kernel_latents(layer):   # a LilNetX layer, decoded at full width
    stock, weights = _decoded_twin(layer)
    r.cache[id(layer)] = stock
    r.call(op, stock, weights)
  else:
    clone = _clone(layer)
    r.cache[id(layer)] = clone
    r.call(op, clone, layer.get_weights() if clone is not layer and layer.weights else None)


def _attention(r: _Rebuilder, op: Op) -> None:
  """A stock MultiHeadAttention without the heads that can go (`analysis.heads`)."""
  layer = op.layer
  weights, kept = heads.remove_heads(heads.attention_weights(layer))
  stock = tf.keras.layers.MultiHeadAttention
  config = _float32_config(layer, stock.get_config(layer))
  config["num_heads"] = int(kept.sum())
  new = stock.from_config(config)
  r.call(op, new)
  for projection, values in zip(heads.projections(new), weights.projection_weights()):
    projection.set_weights(values)
  r.widths[layer.name] = (len(kept), int(kept.sum()))


def _embedding(r: _Rebuilder, op: Op) -> None:
  """A stock Embedding with the kept output dims (the vocabulary stays: ids index rows)."""
  layer, out_keep = op.layer, r.kept(op.outputs[0])
  stock = tf.keras.layers.Embedding
  config = _float32_config(layer, stock.get_config(layer))
  config["output_dim"] = int(out_keep.sum())
  r.call(op, stock.from_config(config), [np.asarray(layer.embeddings)[:, out_keep]])
  r.widths[layer.name] = (len(out_keep), int(out_keep.sum()))


_RULES: dict[OpKind, Callable[[_Rebuilder, Op], None]] = {
    OpKind.INPUT: _input, OpKind.CONV: _kernel, OpKind.DEPTHWISE: _kernel,
    OpKind.DENSE: _kernel, OpKind.BN: _bn, OpKind.RESHAPE: _reshape,
    OpKind.TRANSPOSED: _kernel, OpKind.SEPARABLE: _kernel,
    OpKind.CHANNELPAD: _channelpad, OpKind.MODEL: _model, OpKind.BARRIER: _barrier,
    OpKind.ELEMENTWISE: _copy, OpKind.POOL: _copy, OpKind.ZEROPAD: _copy, OpKind.MERGE: _copy,
    OpKind.CONCAT: _copy, OpKind.FLATTEN: _copy, OpKind.ATTENTION: _attention,
    OpKind.EMBEDDING: _embedding}


def rebuild(model: tf.keras.Model, ops: list, weights: dict, folded: set, keep: dict,
            slim_nested: Callable) -> tuple[tf.keras.Model, dict]:
  """(the rebuilt model, kernel layer name → (output channels before, after)).

  `weights`: id(layer) → `KernelWeights` of every kernel op (decoded, folded, absorbed);
  `folded`: id() of the folded BatchNorms; `keep`: id(KerasTensor) → kept-channel mask;
  `slim_nested(model)`: the slim version of a nested model.
  """
  r = _Rebuilder(model, weights, folded, keep, slim_nested)
  for op in ops:
    _RULES[op.kind](r, op)
  inputs = [r.new[id(t)] for t in model.inputs]
  outputs = [r.new[id(t)] for t in model.outputs]
  rebuilt = tf.keras.Model(inputs[0] if len(inputs) == 1 else inputs,
                           outputs[0] if len(outputs) == 1 else outputs,
                           name=f"{model.name}_slim")
  return rebuilt, r.widths
