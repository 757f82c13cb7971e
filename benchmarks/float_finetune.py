"""Does tuning the floats with the integer latents frozen buy accuracy for free?

    TFDS_DATA_DIR=... PYTHONPATH=. .venv/bin/python benchmarks/float_finetune.py \
        --model=runs/cifar10_resnet20_e15_r007_g1_w4/trained.keras --mantissa_bits=6

Loads a trained CIFAR-10 LilNetX model, moves every latent variable to the non-trainable
weights (so the coded latents stay the same bytes), fits the remaining floats (BatchNorm,
decoders, biases) for `--epochs` with Adam and a cosine decay from `--learning_rate` on the
example's augmented training data, then prints the accuracy before and after, the `.lnx`
file (float16, `--mantissa_bits`, inference only) and its decompressed accuracy.
"""

import os
import sys
import tempfile
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "examples"))

import lilnetx_tf as lnx  # before TF: picks Keras 2, filters TF 2.21's start-up logs

from absl import app, flags
import numpy as np
import tensorflow as tf

import common
from lilnetx_tf.stats import lilnetx_layers

_MODEL = flags.DEFINE_string("model", None, "Trained Keras model (.keras).", required=True)
_EPOCHS = flags.DEFINE_float("epochs", 1.0, "Epochs of float tuning.")
_LEARNING_RATE = flags.DEFINE_float("learning_rate", 3e-4, "Initial Adam learning rate.")
_MANTISSA_BITS = flags.DEFINE_integer("mantissa_bits", 6, "Mantissa bits of the file's floats.")


def _freeze_latents(model: tf.keras.Model) -> None:
  for layer in lilnetx_layers(model):
    latent = layer.latent_variable
    layer._trainable_weights = [w for w in layer._trainable_weights if w is not latent]
    layer._non_trainable_weights.append(latent)


def main(argv):
  del argv
  model = tf.keras.models.load_model(_MODEL.value, compile=False)
  train = common.image_dataset("cifar10", "train", 128, training=True, augment=True)
  test = common.image_dataset("cifar10", "test", 500, training=False)
  before = [layer.integer_latent.numpy() for layer in lilnetx_layers(model)]
  print(f"trained model: accuracy {common.accuracy(model, test):.4f}")
  _freeze_latents(model)
  steps = int(_EPOCHS.value * int(train.cardinality()))
  model.compile(
      tf.keras.optimizers.Adam(tf.keras.optimizers.schedules.CosineDecay(
          _LEARNING_RATE.value, steps)),
      tf.keras.losses.SparseCategoricalCrossentropy(from_logits=True))
  start = time.time()
  model.fit(train.repeat(), steps_per_epoch=steps, epochs=1, verbose=2)
  tuned = sum(int(np.prod(w.shape)) for w in model.trainable_weights)
  print(f"tuned {tuned:,} floats for "
        f"{(time.time() - start) / 60:.1f} min; latents unchanged: "
        f"{all(np.array_equal(a, l.integer_latent.numpy()) for a, l in zip(before, lilnetx_layers(model)))}")
  print(f"tuned model: accuracy {common.accuracy(model, test):.4f}")
  path = os.path.join(tempfile.mkdtemp(), "model.lnx")
  report = lnx.compress(model, path, float16=True, mantissa_bits=_MANTISSA_BITS.value,
                        inference_only=True, estimate=False)
  print(f"file {report.total_bytes:,} B: decompressed accuracy "
        f"{common.accuracy(lnx.decompress(path), test):.4f}")


if __name__ == "__main__":
  app.run(main)
