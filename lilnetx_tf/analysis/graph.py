"""The layer calls of a Keras graph model, in topological order, each with its `OpKind`."""

import dataclasses
from typing import Any

import tensorflow as tf

from lilnetx_tf import errors
from lilnetx_tf.analysis.kinds import OpKind, classify

__all__ = ["Op", "graph_ops", "is_graph_model", "check_graph_model"]


@dataclasses.dataclass
class Op:
  """One call of a layer in the graph."""
  node: Any
  layer: tf.keras.layers.Layer
  kind: OpKind
  inputs: list        # flat KerasTensors
  outputs: list       # flat KerasTensors


def is_graph_model(model, need_input: bool = True) -> bool:
  """True for a Functional model or a Sequential one with a known input (a layer graph); with
  `need_input=False`, for any Sequential model too (one Keras can clone before it is built)."""
  if not need_input and isinstance(model, tf.keras.Sequential):
    return True
  return isinstance(model, tf.keras.Model) and bool(getattr(model, "_is_graph_network", False))


def check_graph_model(model, need_input: bool = True) -> None:
  """Raises `UnsupportedLayerError` unless `model` is a Keras model with a layer graph (see
  `is_graph_model`): the one check of convert, compress, slim and export."""
  if is_graph_model(model, need_input):
    return
  if isinstance(model, tf.keras.Sequential):
    raise errors.UnsupportedLayerError(
        "The Sequential model has no known input shape: start it with tf.keras.Input(shape) "
        "or build it (model.build(input_shape)) first.")
  raise errors.UnsupportedLayerError(
      f"{type(model).__name__} is a subclassed Keras model (or a layer): it has no layer graph "
      "that can be cloned, analysed or rebuilt from a config. Build the same network with the "
      "Functional API (tf.keras.Model(inputs, outputs)) or tf.keras.Sequential and copy the "
      "weights over (set_weights); or train it with lnx.Conv2D / lnx.DepthwiseConv2D / "
      "lnx.Dense in place of the Keras layers, created inside `with lnx.group_scope(): model = "
      "MyModel(...)` so that its layers share one decoder and density per kernel shape.")


def graph_ops(model: tf.keras.Model) -> list[Op]:
  """The layer calls of a graph model in topological order."""
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
