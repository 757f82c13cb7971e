"""Channel dependency analysis of a Keras graph model: which channels can be removed.

Every channel of every tensor is an element of a union-find; elements in one class must be kept
or removed together. The walk follows the graph in topological order, one rule per `OpKind`:

  * a kernel layer (CONV / DENSE / TRANSPOSED / SEPARABLE) starts fresh elements for its output channels; its input
    channels are *read* (it is a "sink" of them);
  * EMBEDDING starts fresh elements for its output dims, constant 0 where the table's column is
    all zero (its ids input has no channels);
  * BN, ELEMENTWISE, POOL, ZEROPAD and RESHAPE pass the elements through unchanged;
  * CHANNELPAD adds fresh elements, constant 0, before and after its input's;
  * MERGE unites the classes of its inputs channel by channel;
  * CONCAT concatenates the element lists (offsets map automatically);
  * DEPTHWISE ties output channel i·M+m to input channel i (repeat by the multiplier);
  * FLATTEN of (H, W, C) tiles the element list H·W times: feature h·W·C + w·C + c is channel
    c, so removing channel c removes all its features from a following Dense;
  * everything else (BARRIER, MODEL, ATTENTION) keeps all its input and output channels. Model
    inputs and outputs are kept too.

Alongside, each channel carries what is known about its value: a constant (the same at every
position, for every input) or NaN (varies). A kernel layer's output channel whose weights are all
zero is the constant act(bias) (BatchNorm folded in beforehand); constants are pushed through
BN, elementwise layers, pooling, merges and depthwise convs where that is exact.

A class is removed when no member is kept and every read of a member by a sink can be absorbed:
  * the sink's weights on that channel are all zero (the value is never used), or
  * the value is the constant 0, or
  * the value is a constant c and the sink cannot see padding (a Dense, or a 1×1 or
    VALID-padded conv): then c·Σ_spatial W[..., i, :] is added to the sink's bias.
A constant c ≠ 0 read by a SAME-padded k×k conv is *kept*: at the borders the conv sees the zero
padding instead of c, so no bias can replace it. The same holds for constants that pass a
SAME-padded depthwise conv or ZeroPadding2D (they stop being constant).

After absorbing, the sinks' weights on removed channels are zero, which can make further output
channels all-zero; `plan` repeats the analysis until nothing more goes.
"""

import dataclasses
import math
from typing import Callable, Optional

import numpy as np
import tensorflow as tf

from lilnetx_tf.analysis import activations
from lilnetx_tf.analysis import batchnorm
from lilnetx_tf.analysis.graph import Op
from lilnetx_tf.analysis.kernels import RULES, KernelWeights
from lilnetx_tf.analysis.kinds import OpKind, channels

__all__ = ["UnionFind", "Channels", "Analysis", "analyze", "absorb", "plan", "sink_absorption"]

L = tf.keras.layers


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
class Channels:
  """Union-find elements and known constant values of the channels (last axis) of a tensor."""
  ids: np.ndarray
  const: np.ndarray   # float64, NaN = not constant


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
    return np.where(np.any(stack == 0, axis=0), 0.0, np.prod(stack, 0))
  if isinstance(layer, L.Average):
    return stack.mean(0)
  if isinstance(layer, L.Maximum):
    return stack.max(0)
  return stack.min(0)


def sink_absorption(op: Op, weights: KernelWeights, const: np.ndarray) -> tuple:
  """For the input channels of sink `op` (CONV / DENSE): (unused, absorbable) boolean arrays."""
  rule = RULES[op.kind]
  unused = rule.unused_inputs(weights.kernel)
  blind = not rule.reads_padding(op.layer)
  absorbable = unused | (const == 0) | (np.isfinite(const) & blind)
  return unused, absorbable


@dataclasses.dataclass
class Analysis:
  """The result of one pass: per tensor, its channels and which of them to keep."""
  uf: UnionFind
  channels: dict        # id(KerasTensor) -> Channels
  keep: dict            # id(KerasTensor) -> bool array
  sinks: list           # Ops of kind CONV / DENSE

  def removed(self) -> int:
    return int(sum((~k).sum() for k in self.keep.values()))


class _Walk:
  """The state of one pass: elements, channel info per tensor, what must be kept, the sinks."""

  def __init__(self, weights: dict, folded: set):
    self.uf = UnionFind()
    self.info: dict[int, Channels] = {}
    self.keep_elements: list = []
    self.sinks: list = []
    self.weights = weights
    self.folded = folded

  def fresh(self, tensor, const: Optional[np.ndarray] = None, keep: bool = False) -> None:
    ids = self.uf.make(channels(tensor))
    if keep:
      self.keep_elements.extend(ids.tolist())
    self.info[id(tensor)] = Channels(ids, np.full(len(ids), np.nan) if const is None else const)

  def set(self, tensor, ids: np.ndarray, const: np.ndarray) -> None:
    self.info[id(tensor)] = Channels(ids, const)


def _input(walk: _Walk, op: Op, ins: list) -> None:
  for tensor in op.outputs:
    walk.fresh(tensor, keep=True)


def _sink(walk: _Walk, op: Op, ins: list) -> None:
  walk.sinks.append(op)
  w = walk.weights[id(op.layer)]
  if activations.name(op.layer.activation) is None:
    walk.fresh(op.outputs[0], keep=True)
    return
  dead = RULES[op.kind].dead_outputs(w.kernel)
  pre = np.where(dead, w.bias.astype(np.float64), np.nan)
  walk.fresh(op.outputs[0], const=activations.apply(op.layer.activation, pre))


def _embedding(walk: _Walk, op: Op, ins: list) -> None:
  table = np.asarray(op.layer.embeddings)
  dead = ~np.any(table != 0, axis=0)
  walk.fresh(op.outputs[0], const=np.where(dead, 0.0, np.nan))


def _depthwise(walk: _Walk, op: Op, ins: list) -> None:
  layer, w, rule = op.layer, walk.weights[id(op.layer)], RULES[OpKind.DEPTHWISE]
  multiplier = w.kernel.shape[-1]
  dead = rule.dead_outputs(w.kernel)
  c_in = np.repeat(ins[0].const, multiplier)
  known = np.isfinite(c_in) & ((c_in == 0) | (not rule.reads_padding(layer)))
  pre = np.where(dead, 0.0, np.where(known, c_in * rule.input_sums(w.kernel), np.nan)) + w.bias
  if activations.name(layer.activation) is None:
    walk.keep_elements.extend(ins[0].ids.tolist())
    walk.fresh(op.outputs[0], keep=True)
  else:
    walk.set(op.outputs[0], np.repeat(ins[0].ids, multiplier),
             activations.apply(layer.activation, pre))


def _bn(walk: _Walk, op: Op, ins: list) -> None:
  if id(op.layer) in walk.folded:
    walk.set(op.outputs[0], ins[0].ids, ins[0].const)
  else:
    scale, shift = batchnorm.scale_shift(op.layer)
    walk.set(op.outputs[0], ins[0].ids, ins[0].const * scale + shift)


def _elementwise(walk: _Walk, op: Op, ins: list) -> None:
  out = op.outputs[0]
  walk.set(out, ins[0].ids, _apply_layer(op.layer, ins[0].const, out.shape.rank))


def _pass_through(walk: _Walk, op: Op, ins: list) -> None:
  walk.set(op.outputs[0], ins[0].ids, ins[0].const)


def _zeropad(walk: _Walk, op: Op, ins: list) -> None:
  walk.set(op.outputs[0], ins[0].ids, np.where(ins[0].const == 0, 0.0, np.nan))


def _channelpad(walk: _Walk, op: Op, ins: list) -> None:
  before, after = op.layer.padding
  walk.set(op.outputs[0],
           np.concatenate([walk.uf.make(before), ins[0].ids, walk.uf.make(after)]),
           np.concatenate([np.zeros(before), ins[0].const, np.zeros(after)]))


def _merge(walk: _Walk, op: Op, ins: list) -> None:
  for other in ins[1:]:
    for a, b in zip(ins[0].ids.tolist(), other.ids.tolist()):
      walk.uf.union(a, b)
  walk.set(op.outputs[0], ins[0].ids, _merge_const(op.layer, [c.const for c in ins]))


def _concat(walk: _Walk, op: Op, ins: list) -> None:
  walk.set(op.outputs[0], np.concatenate([c.ids for c in ins]),
           np.concatenate([c.const for c in ins]))


def _flatten(walk: _Walk, op: Op, ins: list) -> None:
  reps = math.prod(op.inputs[0].shape[1:-1].as_list())
  walk.set(op.outputs[0], np.tile(ins[0].ids, reps), np.tile(ins[0].const, reps))


def _barrier(walk: _Walk, op: Op, ins: list) -> None:
  for c in ins:
    walk.keep_elements.extend(c.ids.tolist())
  for tensor in op.outputs:
    walk.fresh(tensor, keep=True)


_RULES: dict[OpKind, Callable[[_Walk, Op, list], None]] = {
    OpKind.INPUT: _input, OpKind.CONV: _sink, OpKind.DENSE: _sink, OpKind.TRANSPOSED: _sink,
    OpKind.SEPARABLE: _sink,
    OpKind.DEPTHWISE: _depthwise, OpKind.BN: _bn, OpKind.ELEMENTWISE: _elementwise,
    OpKind.POOL: _pass_through, OpKind.RESHAPE: _pass_through, OpKind.ZEROPAD: _zeropad,
    OpKind.CHANNELPAD: _channelpad, OpKind.MERGE: _merge, OpKind.CONCAT: _concat,
    OpKind.FLATTEN: _flatten, OpKind.BARRIER: _barrier, OpKind.MODEL: _barrier,
    OpKind.ATTENTION: _barrier, OpKind.EMBEDDING: _embedding}


def analyze(model: tf.keras.Model, ops: list, weights: dict, folded: set,
            extra_keep: Optional[set] = None) -> Analysis:
  """One pass of the channel analysis with the current (folded) weights.

  `weights` maps id(layer) to the `KernelWeights` of every kernel op; `folded` holds id() of
  the BatchNormalization layers folded into their producer; `extra_keep` holds elements to
  keep in addition (so that no tensor loses every channel).
  """
  walk = _Walk(weights, folded)
  for op in ops:
    _RULES[op.kind](walk, op, [walk.info[id(t)] for t in op.inputs])
  uf = walk.uf
  for tensor in model.outputs:
    walk.keep_elements.extend(walk.info[id(tensor)].ids.tolist())
  bad = {uf.find(e) for e in walk.keep_elements}
  bad.update(uf.find(e) for e in (extra_keep or ()))
  for op in walk.sinks:
    x = walk.info[id(op.inputs[0])]
    _, absorbable = sink_absorption(op, weights[id(op.layer)], x.const)
    bad.update(uf.find(int(e)) for e in x.ids[~absorbable])
  keep = {key: np.fromiter((uf.find(int(e)) in bad for e in c.ids), bool, len(c.ids))
          for key, c in walk.info.items()}
  return Analysis(uf, walk.info, keep, walk.sinks)


def absorb(analysis: Analysis, weights: dict) -> dict:
  """`weights` with removed constant channels folded into their sinks' biases and the sinks'
  weights on removed channels zeroed."""
  absorbed = dict(weights)
  for op in analysis.sinks:
    key = id(op.inputs[0])
    removed = ~analysis.keep[key]
    if not removed.any():
      continue
    w = weights[id(op.layer)]
    rule = RULES[op.kind]
    const = analysis.channels[key].const
    unused, _ = sink_absorption(op, w, const)
    fold_in = removed & ~unused
    bias = w.bias
    if fold_in.any():
      contribution = np.einsum("i,io->o", const[fold_in], rule.input_sums(w.kernel)[fold_in])
      bias = (bias.astype(np.float64) + contribution).astype(np.float32)
    absorbed[id(op.layer)] = KernelWeights(rule.zero_inputs(w.kernel, removed), bias, w.had_bias)
  return absorbed


def plan(model: tf.keras.Model, ops: list, weights: dict, folded: set,
         max_passes: int = 8) -> tuple[Analysis, dict]:
  """Repeats analysis and absorption until no more channels go; never leaves a tensor empty.

  Returns the final analysis and the weights after absorption (biases absorb removed
  constants, weights on removed inputs are zero).
  """
  analysis = analyze(model, ops, weights, folded)
  for _ in range(max_passes):
    weights = absorb(analysis, weights)
    again = analyze(model, ops, weights, folded)
    if again.removed() <= analysis.removed():
      analysis = again
      break
    analysis = again
  weights = absorb(analysis, weights)
  # A tensor with every channel removed would give zero-width layers: keep its first channel
  # (its consumers' weights on it are already zero, so this stays exact).
  extra: set = set()
  while True:
    empty = [key for key, k in analysis.keep.items() if len(k) and not k.any()]
    if not empty:
      return analysis, weights
    extra.update(int(analysis.channels[key].ids[0]) for key in empty)
    analysis = analyze(model, ops, weights, folded, extra_keep=extra)
