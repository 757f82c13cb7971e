"""Channels whose values never reach a model output.

A channel is *unread* when the channel analysis would remove it and every kernel layer that
reads it has all-zero weights on it: then nothing computed from it, hence none of its own
parameters (its kernel slice or latents, bias, BatchNorm entries), changes the model's
outputs. Layers called more than once, in nested models or behind layers the analysis does not
know keep all their channels.
"""

import numpy as np
import tensorflow as tf

from lilnetx_tf.analysis import channels
from lilnetx_tf.analysis.graph import graph_ops, is_graph_model
from lilnetx_tf.analysis.kernels import kernel_weights
from lilnetx_tf.analysis.kinds import OpKind

__all__ = ["unread_channels"]


def unread_channels(model: tf.keras.Model) -> dict:
  """id(layer) → boolean mask over the output channels of its single call (True: unread), for
  the kernel and BatchNormalization layers of a graph model that have unread channels."""
  if not is_graph_model(model):
    return {}
  ops = graph_ops(model)
  weights = {id(op.layer): kernel_weights(op.layer) for op in ops if op.kind.is_kernel}
  analysis = channels.analyze(model, ops, weights, folded=set())
  read = set()
  for op in analysis.sinks:
    x = analysis.channels[id(op.inputs[0])]
    unused, _ = channels.sink_absorption(op, weights[id(op.layer)], x.const)
    read.update(analysis.uf.roots(x.ids[~unused]).tolist())
  masks = {}
  for op in ops:
    if not (op.kind.is_kernel or op.kind is OpKind.BN):
      continue
    key = id(op.outputs[0])
    roots = analysis.uf.roots(analysis.channels[key].ids)
    mask = ~analysis.keep[key] & ~np.isin(roots, list(read))
    if mask.any():
      masks[id(op.layer)] = mask
  return masks
