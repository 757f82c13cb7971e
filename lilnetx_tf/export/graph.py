"""Channel dependency analysis of a Keras Functional graph: which channels can be removed.

Every channel of every tensor is an element of a union-find; elements in one class must be kept
or removed together. The walk follows the graph in topological order:

  * a kernel layer (Conv2D / Dense) starts fresh elements for its output channels; its input
    channels are *read* (it is a "sink" of them);
  * BatchNormalization, activations, pooling, ZeroPadding2D, Cropping/UpSampling, Dropout and
    friends, and Reshapes that keep the last axis pass the elements through unchanged;
  * ChannelPadding adds fresh elements, constant 0, before and after its input's;
  * Add / Subtract / Multiply / Average / Maximum / Minimum unite the classes of their inputs
    channel by channel;
  * Concatenate (last axis) concatenates the element lists (offsets map automatically);
  * DepthwiseConv2D ties output channel i·M+m to input channel i (repeat by the multiplier);
  * Flatten of (H, W, C) tiles the element list H·W times: feature h·W·C + w·C + c is channel c,
    so removing channel c removes all its features from a following Dense;
  * everything else (Reshape across the channel axis, Softmax, LayerNormalization, Lambda,
    grouped or channels_first convs, nested models, layers shared by several calls...) is a
    barrier: all its input and output channels are kept. Model inputs and outputs are kept too.

Alongside, each channel carries what is known about its value: a constant (the same at every
position, for every input) or NaN (varies). A kernel layer's output channel whose weights are all
zero is the constant act(bias) (BatchNorm folded in beforehand); constants are pushed through
BN, elementwise layers, pooling, merges and depthwise convs where that is exact.

A class is removed when no member is kept and every read of a member by a sink can be absorbed:
  * the sink's weights on that channel are all zero (the value is never used), or
  * the value is the constant 0, or
  * the value is a constant c and the sink cannot see padding: a Dense, or a Conv2D that is 1×1
    or VALID-padded — then c·Σ_{kh,kw} W[:, :, i, :] is added to the sink's bias.
A constant c ≠ 0 read by a SAME-padded k×k conv is *kept*: at the borders the conv sees the zero
padding instead of c, so no bias can replace it. The same holds for constants that pass a
SAME-padded depthwise conv or ZeroPadding2D (they stop being constant).

After absorbing, the sinks' weights on removed channels are zero, which can make further output
channels all-zero; the analysis is repeated until nothing more goes.
"""

import dataclasses
import math
from typing import Any, Optional

import numpy as np
import tensorflow as tf

from lilnetx_tf.export import fold
from lilnetx_tf.layers import channel_padding

L = tf.keras.layers
_IDENTITY_LAYERS = (L.Dropout, L.GaussianNoise, L.GaussianDropout, L.AlphaDropout,
                    L.ActivityRegularization)
_ACTIVATION_LAYERS = (L.ReLU, L.ELU, L.LeakyReLU, L.ThresholdedReLU)
_POOL_LAYERS = (L.MaxPooling2D, L.AveragePooling2D, L.GlobalAveragePooling2D,
                L.GlobalMaxPooling2D, L.MaxPooling1D, L.AveragePooling1D,
                L.GlobalAveragePooling1D, L.GlobalMaxPooling1D, L.Cropping2D, L.UpSampling2D)
_MERGE_LAYERS = (L.Add, L.Subtract, L.Multiply, L.Average, L.Maximum, L.Minimum)


class UnionFind:
  """Union-find over integer elements, grown on demand."""

  def __init__(self):
    self.parent: list[int] = []

  def make(self, n: int) -> np.ndarray:
    start = len(self.parent)
    self.parent.extend(range(start, start + n))
    return np.arange(start, start + n, dtype=np.int64)

  def find(self, x: int) -> int:
    parent = self.parent
    root = x
    while parent[root] != root:
      root = parent[root]
    while parent[x] != root:
      parent[x], x = root, parent[x]
    return root

  def union(self, a: int, b: int) -> None:
    ra, rb = self.find(a), self.find(b)
    if ra != rb:
      self.parent[max(ra, rb)] = min(ra, rb)

  def roots(self, ids: np.ndarray) -> np.ndarray:
    return np.fromiter((self.find(int(e)) for e in ids), np.int64, len(ids))


@dataclasses.dataclass
class Op:
  """One call of a layer in the graph."""
  node: Any
  layer: tf.keras.layers.Layer
  kind: str
  inputs: list        # flat KerasTensors
  outputs: list       # flat KerasTensors


@dataclasses.dataclass
class Channels:
  """Union-find elements and known constant values of the channels (last axis) of a tensor."""
  ids: np.ndarray
  const: np.ndarray   # float64, NaN = not constant


def _channels(kt) -> int:
  return int(kt.shape[-1]) if kt.shape.rank and kt.shape[-1] is not None else 0


def _channels_last(layer) -> bool:
  return getattr(layer, "data_format", "channels_last") in ("channels_last", None)


def classify(layer, inputs: list, outputs: list, calls: int) -> str:
  """The kind of a layer call (see the module docstring)."""
  if isinstance(layer, L.InputLayer):
    return "input"
  if isinstance(layer, tf.keras.Model):
    return "model"
  if len(outputs) != 1 or any(_channels(t) == 0 for t in inputs + outputs):
    return "barrier"
  rank = outputs[0].shape.rank
  kind = fold.kernel_kind(layer)
  if kind is not None:
    return kind if calls == 1 and len(inputs) == 1 else "barrier"
  if type(layer) is L.BatchNormalization:
    return "bn" if calls == 1 and fold.bn_is_last_axis(layer, rank) else "barrier"
  if isinstance(layer, _IDENTITY_LAYERS) or isinstance(layer, _ACTIVATION_LAYERS):
    return "elementwise"
  if isinstance(layer, L.SpatialDropout2D) or isinstance(layer, L.SpatialDropout1D):
    return "elementwise"
  if type(layer) is L.Activation:
    return "elementwise" if fold.activation_name(layer.activation) else "barrier"
  if type(layer) is L.Rescaling:
    scalar = np.ndim(layer.scale) == 0 and np.ndim(layer.offset) == 0
    return "elementwise" if scalar else "barrier"
  if isinstance(layer, _POOL_LAYERS):
    return "pool" if _channels_last(layer) else "barrier"
  if type(layer) is L.ZeroPadding2D:
    return "zeropad" if _channels_last(layer) else "barrier"
  if type(layer) is channel_padding.ChannelPadding:
    return "channelpad"
  if isinstance(layer, _MERGE_LAYERS):
    same = all(_channels(t) == _channels(outputs[0]) for t in inputs)
    return "merge" if same and len(inputs) > 1 else "barrier"
  if type(layer) is L.Concatenate:
    return "concat" if layer.axis in (-1, rank - 1) and len(inputs) > 1 else "barrier"
  if type(layer) is L.Flatten:
    inner = inputs[0].shape[1:-1].as_list()
    return "flatten" if _channels_last(layer) and None not in inner else "barrier"
  if type(layer) is L.Reshape:
    same_last = _channels(inputs[0]) == _channels(outputs[0])
    return "reshape" if same_last else "barrier"
  return "barrier"


def graph_ops(model: tf.keras.Model) -> list[Op]:
  """The layer calls of a Functional model in topological order."""
  nodes = []
  for depth in sorted(model._nodes_by_depth, reverse=True):
    nodes.extend(model._nodes_by_depth[depth])
  calls: dict[int, int] = {}
  for node in nodes:
    calls[id(node.layer)] = calls.get(id(node.layer), 0) + 1
  ops = []
  for node in nodes:
    inputs = list(node.keras_inputs)
    outputs = tf.nest.flatten(node.outputs)
    kind = classify(node.layer, inputs, outputs, calls[id(node.layer)])
    ops.append(Op(node, node.layer, kind, inputs, outputs))
  return ops


def apply_activation(activation, values: np.ndarray) -> np.ndarray:
  """activation(values) elementwise, NaN staying NaN."""
  known = np.isfinite(values)
  out = np.asarray(activation(tf.constant(np.where(known, values, 0.0)[None], tf.float32)))
  return np.where(known, out[0].astype(np.float64), np.nan)


def _apply_layer(layer, values: np.ndarray, rank: int) -> np.ndarray:
  known = np.isfinite(values)
  x = np.where(known, values, 0.0).astype(np.float32).reshape([1] * (rank - 1) + [-1])
  out = np.asarray(layer(tf.constant(x), training=False)).reshape(-1).astype(np.float64)
  return np.where(known, out, np.nan)


def _merge_const(layer, consts: list) -> np.ndarray:
  stack = np.stack(consts)
  if isinstance(layer, L.Add):
    return stack.sum(0)
  if isinstance(layer, L.Subtract):
    return stack[0] - stack[1]
  if isinstance(layer, L.Multiply):
    product = np.prod(stack, 0)
    return np.where(np.any(stack == 0, axis=0), 0.0, product)
  if isinstance(layer, L.Average):
    return stack.mean(0)
  if isinstance(layer, L.Maximum):
    return stack.max(0)
  return stack.min(0)


def sink_absorption(op: Op, weights: dict, const: np.ndarray):
  """For the input channels of sink `op`: (unused, absorbable) boolean arrays."""
  kernel = weights["kernel"]
  if op.kind == "conv":
    unused = ~np.any(kernel != 0, axis=(0, 1, 3))
    blind = op.layer.padding == "valid" or tuple(op.layer.kernel_size) == (1, 1)
  else:
    unused = ~np.any(kernel != 0, axis=1)
    blind = True
  absorbable = unused | (const == 0) | (np.isfinite(const) & blind)
  return unused, absorbable


@dataclasses.dataclass
class Analysis:
  """The result of one pass: per tensor, its channels and which of them to keep."""
  uf: UnionFind
  channels: dict        # id(KerasTensor) -> Channels
  keep: dict            # id(KerasTensor) -> bool array
  sinks: list           # Ops of kind conv / dense

  def removed(self) -> int:
    return int(sum((~k).sum() for k in self.keep.values()))


def analyze(model: tf.keras.Model, ops: list, weights: dict, folded: set,
            extra_keep: Optional[set] = None) -> Analysis:
  """One pass of the channel analysis with the current (folded) weights.

  `weights` maps id(layer) to {'kernel', 'bias'} for every conv / depthwise / dense op;
  `folded` holds id() of the BatchNormalization layers folded into their producer.
  `extra_keep`: union-find roots... (element ids) to keep in addition (used for safeguards).
  """
  uf = UnionFind()
  info: dict[int, Channels] = {}
  keep_elements: list = []
  sinks = []

  def fresh(kt, const=None, keep=False) -> Channels:
    ids = uf.make(_channels(kt))
    if const is None:
      const = np.full(len(ids), np.nan)
    if keep:
      keep_elements.extend(ids.tolist())
    info[id(kt)] = Channels(ids, const)
    return info[id(kt)]

  for op in ops:
    kind, layer = op.kind, op.layer
    ins = [info[id(t)] for t in op.inputs]
    out = op.outputs[0] if op.outputs else None
    if kind == "input":
      for t in op.outputs:
        fresh(t, keep=True)
    elif kind in ("conv", "dense"):
      sinks.append(op)
      w = weights[id(layer)]
      kernel = w["kernel"]
      dead = ~np.any(kernel.reshape(-1, kernel.shape[-1]) != 0, axis=0)
      if fold.activation_name(layer.activation) is None:
        fresh(out, keep=True)
      else:
        pre = np.where(dead, w["bias"].astype(np.float64), np.nan)
        fresh(out, const=apply_activation(layer.activation, pre))
    elif kind == "depthwise":
      w = weights[id(layer)]
      kernel = w["kernel"]                                    # (kh, kw, C, M)
      m = kernel.shape[-1]
      dead = (~np.any(kernel != 0, axis=(0, 1))).reshape(-1)
      c_in = np.repeat(ins[0].const, m)
      ksum = kernel.astype(np.float64).sum((0, 1)).reshape(-1)
      blind = layer.padding == "valid" or tuple(layer.kernel_size) == (1, 1)
      known = np.isfinite(c_in) & ((c_in == 0) | blind)
      pre = np.where(dead, 0.0, np.where(known, c_in * ksum, np.nan)) + w["bias"]
      if fold.activation_name(layer.activation) is None:
        keep_elements.extend(ins[0].ids.tolist())
        fresh(out, keep=True)
      else:
        info[id(out)] = Channels(np.repeat(ins[0].ids, m),
                                 apply_activation(layer.activation, pre))
    elif kind == "bn":
      if id(layer) in folded:
        info[id(out)] = Channels(ins[0].ids, ins[0].const)
      else:
        scale, shift = fold.bn_scale_shift(layer)
        info[id(out)] = Channels(ins[0].ids, ins[0].const * scale + shift)
    elif kind == "elementwise":
      info[id(out)] = Channels(ins[0].ids, _apply_layer(layer, ins[0].const, out.shape.rank))
    elif kind in ("pool", "reshape"):
      info[id(out)] = Channels(ins[0].ids, ins[0].const)
    elif kind == "zeropad":
      info[id(out)] = Channels(ins[0].ids, np.where(ins[0].const == 0, 0.0, np.nan))
    elif kind == "channelpad":
      before, after = layer.padding
      info[id(out)] = Channels(
          np.concatenate([uf.make(before), ins[0].ids, uf.make(after)]),
          np.concatenate([np.zeros(before), ins[0].const, np.zeros(after)]))
    elif kind == "merge":
      for other in ins[1:]:
        for a, b in zip(ins[0].ids.tolist(), other.ids.tolist()):
          uf.union(a, b)
      info[id(out)] = Channels(ins[0].ids, _merge_const(layer, [c.const for c in ins]))
    elif kind == "concat":
      info[id(out)] = Channels(np.concatenate([c.ids for c in ins]),
                               np.concatenate([c.const for c in ins]))
    elif kind == "flatten":
      reps = math.prod(op.inputs[0].shape[1:-1].as_list())
      info[id(out)] = Channels(np.tile(ins[0].ids, reps), np.tile(ins[0].const, reps))
    else:  # barrier, model
      for c in ins:
        keep_elements.extend(c.ids.tolist())
      for t in op.outputs:
        fresh(t, keep=True)

  for t in model.outputs:
    keep_elements.extend(info[id(t)].ids.tolist())
  bad = {uf.find(e) for e in keep_elements}
  bad.update(uf.find(e) for e in (extra_keep or ()))
  for op in sinks:
    x = info[id(op.inputs[0])]
    _, absorbable = sink_absorption(op, weights[id(op.layer)], x.const)
    bad.update(uf.find(int(e)) for e in x.ids[~absorbable])
  keep = {}
  for key, c in info.items():
    keep[key] = np.fromiter((uf.find(int(e)) in bad for e in c.ids), bool, len(c.ids))
  return Analysis(uf, info, keep, sinks)


def absorb(analysis: Analysis, weights: dict) -> None:
  """Folds removed constant channels into their sinks' biases and zeroes their weights."""
  for op in analysis.sinks:
    key = id(op.inputs[0])
    removed = ~analysis.keep[key]
    if not removed.any():
      continue
    w = weights[id(op.layer)]
    const = analysis.channels[key].const
    unused, _ = sink_absorption(op, w, const)
    kernel = w["kernel"].astype(np.float64)
    fold_in = removed & ~unused
    if fold_in.any():
      if op.kind == "conv":
        contribution = np.einsum("i,io->o", const[fold_in], kernel.sum((0, 1))[fold_in])
        kernel[:, :, removed, :] = 0
      else:
        contribution = np.einsum("i,io->o", const[fold_in], kernel[fold_in])
        kernel[removed] = 0
      w["bias"] = (w["bias"].astype(np.float64) + contribution).astype(np.float32)
    elif op.kind == "conv":
      kernel[:, :, removed, :] = 0
    else:
      kernel[removed] = 0
    w["kernel"] = kernel.astype(np.float32)


def plan(model: tf.keras.Model, ops: list, weights: dict, folded: set,
         max_passes: int = 8) -> Analysis:
  """Repeats analysis and absorption until no more channels go; never leaves a tensor empty.

  `weights` is updated in place (biases absorb removed constants, weights on removed inputs 0).
  """
  analysis = analyze(model, ops, weights, folded)
  for _ in range(max_passes):
    absorb(analysis, weights)
    again = analyze(model, ops, weights, folded)
    if again.removed() <= analysis.removed():
      analysis = again
      break
    analysis = again
  absorb(analysis, weights)
  # A tensor with every channel removed would give zero-width layers: keep its first channel
  # (its consumers' weights on it are already zero, so this stays exact).
  extra: set = set()
  while True:
    empty = [key for key, k in analysis.keep.items() if len(k) and not k.any()]
    if not empty:
      return analysis
    extra.update(int(analysis.channels[key].ids[0]) for key in empty)
    analysis = analyze(model, ops, weights, folded, extra_keep=extra)
