"""lilnetx_tf: Keras layers that make networks small on disk and cheap to run (LilNetX).

    import lilnetx_tf as lnx
    model = tf.keras.Sequential([lnx.Conv2D(32, 3, activation="relu"), ..., lnx.Dense(10)])
    model.compile("adam", "sparse_categorical_crossentropy"); model.fit(...)
    lnx.stats(model)

Importing lilnetx_tf selects Keras 2 for `tf.keras` where TensorFlow defaults to Keras 3 (see
`lilnetx_tf._compat`); `lnx.tuning` (extra `tuning`) is imported on first use.
"""

import importlib

from lilnetx_tf import _compat  # first: it must run before anything touches tf.keras
from lilnetx_tf import batchnorm
from lilnetx_tf import callbacks
from lilnetx_tf import errors
from lilnetx_tf import keras_files
from lilnetx_tf import optimizers
from lilnetx_tf import rate_control
from lilnetx_tf.coding import compress, decompress
from lilnetx_tf.convert import convert
from lilnetx_tf.export import export, slim
from lilnetx_tf.layers import Conv2D, DepthwiseConv2D, Dense, GroupRegistry, ParameterGroup
from lilnetx_tf.layers import Conv1D, Conv3D, DepthwiseConv1D, SeparableConv1D, SeparableConv2D
from lilnetx_tf.layers import Conv1DTranspose, Conv2DTranspose, Conv3DTranspose
from lilnetx_tf.layers import fit_densities, group_scope, is_lilnetx_layer
from lilnetx_tf.layers import EinsumDense, Embedding, MultiHeadAttention
from lilnetx_tf.monitor import monitor
from lilnetx_tf.stats import stats

__version__ = "0.1.0"

__all__ = ["Conv1D", "Conv1DTranspose", "Conv2D", "Conv2DTranspose", "Conv3D",
           "Conv3DTranspose", "DepthwiseConv1D", "DepthwiseConv2D", "Dense", "EinsumDense",
           "Embedding", "GroupRegistry", "MultiHeadAttention", "ParameterGroup",
           "SeparableConv1D", "SeparableConv2D",
           "batchnorm", "callbacks", "compress", "convert", "decompress", "errors", "export",
           "fit_densities", "group_scope", "is_lilnetx_layer", "keras_files", "optimizers",
           "rate_control", "slim", "stats", "tuning"]


def __getattr__(name: str):
  if name == "tuning":   # keras-tuner is an extra and slow to import: load on first use
    return importlib.import_module("lilnetx_tf.tuning")
  raise AttributeError(f"module 'lilnetx_tf' has no attribute {name!r}")
