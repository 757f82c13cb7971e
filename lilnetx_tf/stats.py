"""`stats(model)`: estimated size, structured sparsity and compute of a LilNetX model."""

from typing import Any

import numpy as np
import tensorflow as tf

from lilnetx_tf import errors
from lilnetx_tf import macs as macs_lib
from lilnetx_tf.layers import kernel_latents, lilnetx_layers

__all__ = ["layer_stats", "stats"]


def layer_stats(layer) -> dict[str, Any]:
  """Size, sparsity and MAC figures of one built LilNetX layer, at its rounded latents."""
  latent = layer.integer_latent
  bits = float(tf.reduce_sum(layer.group.bits(latent)))
  q = latent.numpy()
  live_slices = np.any(q != 0, axis=-1)                      # (a, b)
  slice_size = q.shape[-1]
  live_in = int(np.any(live_slices, axis=1).sum())
  live_out = int(np.any(live_slices, axis=0).sum())
  a, b = live_slices.shape
  depthwise = (isinstance(layer, (tf.keras.layers.DepthwiseConv1D,
                                  tf.keras.layers.DepthwiseConv2D))
               or getattr(layer, "channels_tied", False))
  if depthwise:  # output channel (i, m) is slice (i, m): in and out channels are tied
    live_out, channels_out = int(live_slices.sum()), a * b
    channel_macs_per_position = live_out * slice_size
  else:
    channels_out = b
    channel_macs_per_position = live_in * live_out * slice_size
  positions = layer.output_positions
  macs = lambda per_position: None if positions is None else int(positions * per_position)
  return dict(
      group=layer.group_key,
      bits=bits,
      bytes=bits / 8,
      parameters=int(q.size),
      nonzero_parameters=int(np.count_nonzero(q)),
      slices=int(a * b),
      zero_slices=int(a * b - live_slices.sum()),
      in_channels=int(a),
      dead_in_channels=int(a - live_in),
      out_channels=int(channels_out),
      dead_out_channels=int(channels_out - live_out),
      macs_dense=macs(a * b * slice_size),
      macs_effective=macs(int(live_slices.sum()) * slice_size),
      macs_channel_pruned=macs(channel_macs_per_position),
  )


def _ratio(numerator: float, denominator: float) -> float:
  return float(numerator) / denominator if denominator else 0.0


def _uncarried_macs(layer, per_layer: dict) -> int:
  """The MACs of `layer` its latents' own counts leave out: all of a plain layer's, an
  attention's products and projections (EinsumDense latents do not know their positions), the
  further calls of a layer called several times."""
  carried = sum(per_layer[latent.name]["macs_dense"] or 0 for latent, _ in kernel_latents(layer))
  return max(0, macs_lib.layer_macs(layer) - carried)


def stats(model: tf.keras.layers.Layer) -> dict[str, Any]:
  """Size, sparsity and compute figures of a built model with LilNetX layers.

  Returns a plain dict:
    bits, bytes: estimated self-information of the rounded latents under the learned
      densities (what the range coder will approach), total and per layer (`layers`).
    slice_sparsity: fraction of (out, in) slices that are all zero.
    in_channel_sparsity / out_channel_sparsity: fraction of whole input / output channels
      (summed over LilNetX layers) whose slices are all zero.
    weight_sparsity: fraction of zero latents.
    parameters, latent_parameters, nonzero_latent_parameters: counts (the first over the
      whole model).
    macs_dense: multiply-accumulates of the model's conv and dense layers per example;
      macs_effective: the same skipping zero slices; macs_channel_pruned: keeping only the
      live in × out channel blocks of each layer; macs_ratio = dense / effective. MAC figures
      need known input sizes (a built Functional model or a model that has been called).
  """
  layers = lilnetx_layers(model)
  if any(not layer.built for layer in layers):
    raise errors.InvalidArgumentError(
        "The model is not built: call it on data or build it with an input shape first.")
  per_layer = {layer.name: layer_stats(layer) for layer in layers}
  totals = {key: sum(s[key] for s in per_layer.values())
            for key in ("bits", "parameters", "nonzero_parameters", "slices", "zero_slices",
                        "in_channels", "dead_in_channels", "out_channels",
                        "dead_out_channels")}
  mac_keys = ("macs_dense", "macs_effective", "macs_channel_pruned")
  macs = {key: sum(s[key] or 0 for s in per_layer.values()) for key in mac_keys}
  plain_macs = sum(_uncarried_macs(layer, per_layer)
                   for layer in model._flatten_layers(include_self=False))
  for key in mac_keys:
    macs[key] += plain_macs
  return dict(
      bits=totals["bits"],
      bytes=totals["bits"] / 8,
      parameters=int(model.count_params()) if model.built else 0,
      latent_parameters=totals["parameters"],
      nonzero_latent_parameters=totals["nonzero_parameters"],
      weight_sparsity=_ratio(totals["parameters"] - totals["nonzero_parameters"],
                             totals["parameters"]),
      slice_sparsity=_ratio(totals["zero_slices"], totals["slices"]),
      in_channel_sparsity=_ratio(totals["dead_in_channels"], totals["in_channels"]),
      out_channel_sparsity=_ratio(totals["dead_out_channels"], totals["out_channels"]),
      **macs,
      macs_ratio=_ratio(macs["macs_dense"], macs["macs_effective"]),
      layers=per_layer,
  )
