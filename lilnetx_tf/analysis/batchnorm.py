"""BatchNormalization at inference, y = x · scale + shift, and the two ways it is folded.

  * into the kernel layer before it (`fold_into`, used by `slim`), when `foldable` says so:
    the BN normalizes the last axis and is called once, its input is the output of a kernel
    layer called once with a linear activation, and that output feeds nothing but the BN (and
    is not a model output). W'[..., o] = W[..., o]·s[o]; b' = (b − μ)·s + β with
    s = γ / √(σ² + ε): exact in real arithmetic, float32 rounding only;
  * into its own variables (`folded_variables`, used by `inference_only` model files): γ ← s,
    β ← shift, μ ← 0 and σ² ← v with fl(v + ε) = 1, so the layer computes the same function
    at inference with two of its four vectors constant.
"""

import numpy as np
import tensorflow as tf

from lilnetx_tf.analysis import activations
from lilnetx_tf.analysis.graph import Op
from lilnetx_tf.analysis.kernels import RULES, KernelWeights
from lilnetx_tf.analysis.kinds import OpKind

__all__ = ["scale_shift", "fold_into", "foldable", "folded_variables", "unit_variance"]


def scale_shift(layer: tf.keras.layers.BatchNormalization) -> tuple[np.ndarray, np.ndarray]:
  """The BN at inference as y = x·scale + shift (float64 for accuracy)."""
  mean = np.array(layer.moving_mean.numpy(), np.float32)
  gamma = (np.array(layer.gamma.numpy(), np.float32) if layer.gamma is not None
           else np.ones_like(mean))
  beta = (np.array(layer.beta.numpy(), np.float32) if layer.beta is not None
          else np.zeros_like(mean))
  variance = np.array(layer.moving_variance.numpy(), np.float32)
  scale = gamma.astype(np.float64) / np.sqrt(variance.astype(np.float64) + float(layer.epsilon))
  return scale, beta - mean.astype(np.float64) * scale


def fold_into(weights: KernelWeights, kind: OpKind, layer) -> KernelWeights:
  """`weights` of a kernel layer of `kind` with the BN `layer` applied to its output folded in."""
  scale, shift = scale_shift(layer)
  kernel = RULES[kind].scale_outputs(weights.kernel, scale)
  bias = weights.bias.astype(np.float64) * scale + shift
  return KernelWeights(kernel, bias.astype(np.float32), had_bias=True)


def foldable(ops: list, model_outputs: list) -> dict:
  """id(BN layer) → the kernel-layer `Op` it can be folded into (see the module docstring)."""
  consumers: dict[int, int] = {}
  for op in ops:
    for tensor in op.inputs:
      consumers[id(tensor)] = consumers.get(id(tensor), 0) + 1
  producer = {id(t): op for op in ops for t in op.outputs}
  outputs = {id(t) for t in model_outputs}
  pairs = {}
  for op in ops:
    if op.kind is not OpKind.BN:
      continue
    key = id(op.inputs[0])
    previous = producer.get(key)
    if (previous is not None and previous.kind.is_kernel and key not in outputs
        and consumers.get(key) == 1
        and activations.name(previous.layer.activation) == "linear"):
      pairs[id(op.layer)] = previous
  return pairs


def unit_variance(epsilon: np.float32) -> np.float32:
  """The float32 v closest to 1 − epsilon with v + epsilon == 1 exactly in float32."""
  v = np.float32(1) - epsilon
  while np.float32(v + epsilon) > 1:
    v = np.nextafter(v, np.float32(0))
  while np.float32(v + epsilon) < 1:
    v = np.nextafter(v, np.float32(2))
  return v


def _folds_in_place(layer) -> bool:
  return (isinstance(layer, tf.keras.layers.BatchNormalization) and layer.center
          and layer.scale and not layer.renorm and layer.moving_mean.dtype == tf.float32)


def folded_variables(model: tf.keras.Model) -> dict:
  """id(variable) → stored values folding each BatchNormalization of `model` (with center and
  scale, without renorm) into its own variables (see the module docstring)."""
  folded = {}
  for layer in model._flatten_layers(include_self=False):
    if not _folds_in_place(layer):
      continue
    scale, shift = scale_shift(layer)
    folded[id(layer.gamma)] = scale.astype(np.float32)
    folded[id(layer.beta)] = shift.astype(np.float32)
    folded[id(layer.moving_mean)] = np.zeros(scale.shape, np.float32)
    folded[id(layer.moving_variance)] = np.full(scale.shape,
                                                unit_variance(np.float32(layer.epsilon)))
  return folded

