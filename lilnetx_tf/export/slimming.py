"""`slim(model)`: a plain Keras model with decoded weights, BN folded and dead channels removed.

    small = lnx.slim(model)          # stock tf.keras layers; lilnetx_tf not needed to run it

Steps:
  1. Decode every kernel (LilNetX or plain Conv2D / DepthwiseConv2D / Dense).
  2. Fold each BatchNormalization into the conv/dense/depthwise layer before it when that
     layer's output feeds only the BN and the layer has a linear activation
     (`analysis.batchnorm`).
  3. Channel analysis (`analysis.channels`): union-find over channel spaces through the whole
     graph; a channel class is removed when nothing needs its value: every conv/dense reading
     it has zero weights on it, or reads a constant it can absorb exactly into its bias.
  4. Rebuild the graph with stock layers of reduced width (`rebuild`) and check it against the
     original.
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
from typing import Optional, Sequence

import numpy as np
import tensorflow as tf

from lilnetx_tf.analysis import batchnorm
from lilnetx_tf.analysis import channels
from lilnetx_tf.analysis.graph import check_graph_model, graph_ops
from lilnetx_tf.analysis.kernels import kernel_weights
from lilnetx_tf.analysis.kinds import channels as width
from lilnetx_tf import errors
from lilnetx_tf.export import rebuild as rebuild_lib
from lilnetx_tf.export import samples
from lilnetx_tf.layers import is_lilnetx_layer
from lilnetx_tf import validation

__all__ = ["DEFAULT_ATOL", "DEFAULT_RTOL", "SlimInfo", "slim"]

DEFAULT_RTOL = 1e-4
DEFAULT_ATOL = 1e-5


@dataclasses.dataclass
class SlimInfo:
  """What `slim` did; attached to the slim model as `model.slim_info`."""
  folded_batchnorms: int
  removed_channels: dict       # kernel layer name -> (output channels before, after)
  max_difference: Optional[float]
  tolerance: Optional[float]


def _folded_weights(model, ops: list, fold_batchnorm: bool) -> tuple[dict, set]:
  """id(layer) → `KernelWeights` of every kernel op, with foldable BatchNorms folded in when
  `fold_batchnorm`; and id() of the folded BatchNorm layers."""
  weights = {id(op.layer): kernel_weights(op.layer) for op in ops if op.kind.is_kernel}
  if not fold_batchnorm:
    return weights, set()
  pairs = batchnorm.foldable(ops, model.outputs)
  bns = {id(op.layer): op.layer for op in ops}
  for bn_id, producer in pairs.items():
    key = id(producer.layer)
    weights[key] = batchnorm.fold_into(weights[key], producer.kind, bns[bn_id])
  return weights, set(pairs)


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
  ops = graph_ops(model)
  weights, folded = _folded_weights(model, ops, fold_batchnorm)
  if remove_channels:
    analysis, weights = channels.plan(model, ops, weights, folded)
    keep = analysis.keep
  else:
    keep = {id(t): np.ones(width(t), bool) for op in ops for t in op.inputs + op.outputs}
  slim_model, widths = rebuild_lib.rebuild(model, ops, weights, folded, keep,
                                           lambda nested: slim(nested, check=False))
  leftovers = [l.name for l in slim_model._flatten_layers(include_self=False)
               if is_lilnetx_layer(l)]
  if leftovers:
    raise errors.UnsupportedLayerError(f"LilNetX layers left in the slim model: {leftovers}")
  diff = tolerance = None
  if check:
    sample = list(inputs) if inputs is not None else samples.sample_inputs(model)
    # A model computing in float16 / bfloat16 differs from its float32 slim twin by its own
    # rounding: the check then allows 16 units of that precision.
    epsilon = max((rebuild_lib.REDUCED_PRECISION.get(l.compute_dtype, 0.0)
                   for l in model._flatten_layers(include_self=False)), default=0.0)
    diff, tolerance = samples.compare(model, slim_model, sample, max(rtol, 16 * epsilon),
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
