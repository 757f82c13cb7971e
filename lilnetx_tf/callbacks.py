"""Keras callbacks that report LilNetX figures while a model trains."""

import tensorflow as tf

from lilnetx_tf import stats as stats_lib


class CompressionMetrics(tf.keras.callbacks.Callback):
  """Adds estimated size, sparsity and MAC figures to each epoch's logs.

  The figures then show in the progress bar, in `History` and in a `TensorBoard` callback
  listed after this one:
    lnx_kbytes            estimated latent size in KiB at the rounded latents
    lnx_slice_sparsity    fraction of all-zero (out, in) slices
    lnx_in_sparsity       fraction of dead input channels
    lnx_out_sparsity      fraction of dead output channels
    lnx_macs_ratio        dense MACs / MACs that skip zero slices
  """

  def on_epoch_end(self, epoch, logs=None):
    if logs is None:
      return
    figures = stats_lib.stats(self.model)
    logs.update(
        lnx_kbytes=figures["bytes"] / 1024,
        lnx_slice_sparsity=figures["slice_sparsity"],
        lnx_in_sparsity=figures["in_channel_sparsity"],
        lnx_out_sparsity=figures["out_channel_sparsity"],
        lnx_macs_ratio=figures["macs_ratio"],
    )
