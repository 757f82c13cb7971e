"""Attention heads a MultiHeadAttention can lose without changing what it computes.

Keras's MultiHeadAttention projects query, key and value with kernels (C, H, D) and biases
(H, D), and its output with a kernel (H, Dv, *out) and a bias (*out). Head h adds
Σ_d A_h[d] · W_o[h, d] to the output, A_h the attention-weighted average of its values. It can go
  * when W_o[h] is all zero: it adds nothing, whatever its query, key and value; or
  * when its value kernel W_v[:, h, :] is all zero: its values are the constant b_v[h] at every
    position, the attention weights sum to 1, so it adds the constant b_v[h] · W_o[h], which
    moves into the output bias (zero without a value bias).
A head whose query or key alone is dead still attends (uniformly) and stays. At least one head
is kept, so a fully dead layer keeps its first head (exact: it is dead or its constant stays).
"""

import dataclasses

import numpy as np

from lilnetx_tf.layers.attention import PROJECTIONS

__all__ = ["AttentionWeights", "attention_weights", "projections", "remove_heads"]

@dataclasses.dataclass
class AttentionWeights:
  """Decoded kernels and biases (None without bias) of the query, key, value and output
  projections, float32 numpy."""
  kernels: list
  biases: list

  @property
  def num_heads(self) -> int:
    return int(self.kernels[3].shape[0])

  def projection_weights(self) -> list:
    """[kernel, bias] (or [kernel]) of each projection: what each Keras sublayer holds."""
    return [[k] if b is None else [k, b] for k, b in zip(self.kernels, self.biases)]


def projections(layer) -> list:
  """The query, key, value and output EinsumDense sublayers of a MultiHeadAttention."""
  return [getattr(layer, name) for name in PROJECTIONS]


def attention_weights(layer) -> AttentionWeights:
  """The `AttentionWeights` of a built stock or LilNetX MultiHeadAttention."""
  def numpy(x):
    return None if x is None else np.array(x, dtype=np.float32)
  parts = projections(layer)
  return AttentionWeights([numpy(p.kernel) for p in parts], [numpy(p.bias) for p in parts])


def _removable(w: AttentionWeights) -> np.ndarray:
  """(dead output, dead value) per head, boolean arrays (H,)."""
  output = w.kernels[3]
  dead_output = ~np.any(output.reshape(output.shape[0], -1) != 0, axis=1)
  dead_value = ~np.any(w.kernels[2] != 0, axis=(0, 2))
  return dead_output, dead_value


def remove_heads(w: AttentionWeights) -> tuple:
  """(the weights without the heads that can go, boolean mask of the kept heads)."""
  dead_output, dead_value = _removable(w)
  keep = ~(dead_output | dead_value)
  if not keep.any():
    keep[0] = True
  kernels = [k[:, keep] for k in w.kernels[:3]] + [w.kernels[3][keep]]
  biases = [None if b is None else b[keep] for b in w.biases[:3]]
  output_bias = w.biases[3]
  constant = ~keep & dead_value & ~dead_output    # heads that add b_v[h] · W_o[h]
  if w.biases[2] is not None and constant.any():
    added = np.tensordot(w.biases[2][constant].astype(np.float64),
                         w.kernels[3][constant].astype(np.float64), axes=([0, 1], [0, 1]))
    output_bias = (output_bias.astype(np.float64) + added).astype(np.float32)  # use_bias: all
  return AttentionWeights(kernels, biases + [output_bias]), keep
