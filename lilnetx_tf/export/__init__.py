"""Slim export: plain Keras / SavedModel / TFLite models with dead channels removed."""

from lilnetx_tf.export.slimming import SlimCheckError, slim
