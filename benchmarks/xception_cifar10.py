"""An Xception-style separable CNN on CIFAR-10, plain vs `lnx.convert`, in the same budget.

    TFDS_DATA_DIR=/path/to/tensorflow_datasets PYTHONPATH=. python \
        benchmarks/xception_cifar10.py [--epochs=15] [--compression=12] [--widths=32,64,128,256,512]

The model has the shape of keras.io's "Image classification from scratch" mini-Xception, its
widths scaled to CIFAR-10: an entry Conv2D + BatchNorm + ReLU, blocks of [ReLU,
SeparableConv2D, BatchNorm] × 2 + MaxPool added to a strided 1×1 Conv2D of the block's input,
a final SeparableConv2D + BatchNorm + ReLU, GlobalAveragePooling, Dropout and Dense
(`--widths`: entry, each block, final). Both runs train the same freshly initialized model for
the same epochs (Adam, cosine decay from `--learning_rate`, batch `--batch_size`, random flips
and pad-4 crops) on `--train` training images; the LilNetX one is `lnx.convert(model,
compression=--compression)` (convert's defaults otherwise: size target, automatic warm-start
grid, rate controller). Printed: the compress report, test accuracy of the plain model and of
the decompressed `.lnx` (float16, 5 mantissa bits), the plain model's int8 TFLite bytes
(calibrated on training images), their ratio, the channels removed by `lnx.slim`, the batch-1
float32 TFLite latency of the plain and slim models, and the wall time of each `fit`.
"""

import argparse
import os
import tempfile
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import lilnetx_tf as lnx  # before TF: picks Keras 2, filters TF 2.21's start-up logs

import numpy as np
import tensorflow as tf
import tensorflow_datasets as tfds

import twin_rows

L = tf.keras.layers


def cifar10(split: str, n: int) -> tuple:
  """(images (n, 32, 32, 3) uint8, labels (n,)) of a TFDS CIFAR-10 split."""
  ds = tfds.load("cifar10", split=f"{split}[:{n}]", as_supervised=True)
  x, y = zip(*tfds.as_numpy(ds))
  return np.stack(x), np.array(y, np.int64)


def augmented(x: np.ndarray, y: np.ndarray, batch_size: int, seed: int) -> tf.data.Dataset:
  """Shuffled batches in [0, 1] with random left-right flips and pad-4 crops."""
  def flip_crop(image, label):
    image = tf.image.resize_with_crop_or_pad(tf.cast(image, tf.float32) / 255.0, 40, 40)
    return tf.image.random_flip_left_right(tf.image.random_crop(image, (32, 32, 3))), label
  ds = tf.data.Dataset.from_tensor_slices((x, y)).shuffle(len(x), seed=seed)
  return ds.map(flip_crop, num_parallel_calls=tf.data.AUTOTUNE).batch(batch_size).prefetch(2)


def xception(widths: list, dropout: float = 0.25, classes: int = 10) -> tf.keras.Model:
  """keras.io's mini-Xception with `widths` = [entry, *blocks, final]."""
  inputs = tf.keras.Input((32, 32, 3), name="image")
  x = L.Conv2D(widths[0], 3, strides=2, padding="same", name="entry")(inputs)
  x = L.Activation("relu")(L.BatchNormalization(name="entry_bn")(x))
  previous = x
  for b, width in enumerate(widths[1:-1]):
    for i in range(2):
      x = L.Activation("relu")(x)
      x = L.SeparableConv2D(width, 3, padding="same", name=f"block{b}_sep{i}")(x)
      x = L.BatchNormalization(name=f"block{b}_bn{i}")(x)
    x = L.MaxPooling2D(3, strides=2, padding="same")(x)
    residual = L.Conv2D(width, 1, strides=2, padding="same", name=f"block{b}_residual")(previous)
    x = previous = L.Add()([x, residual])
  x = L.SeparableConv2D(widths[-1], 3, padding="same", name="final")(x)
  x = L.Activation("relu")(L.BatchNormalization(name="final_bn")(x))
  x = L.Dropout(dropout)(L.GlobalAveragePooling2D()(x))
  return tf.keras.Model(inputs, L.Dense(classes, name="classifier")(x), name="mini_xception")


def train(model, data, args, seed: int) -> float:
  """Fits `model` for `args.epochs`; returns the wall time in seconds."""
  (x, y), _ = data
  steps = args.epochs * -(-len(x) // args.batch_size)
  model.compile(lnx.optimizers.Adam(tf.keras.optimizers.schedules.CosineDecay(
                    args.learning_rate, steps)),
                tf.keras.losses.SparseCategoricalCrossentropy(from_logits=True),
                metrics=["accuracy"])
  start = time.perf_counter()
  model.fit(augmented(x, y, args.batch_size, seed), epochs=args.epochs, verbose=2)
  return time.perf_counter() - start


def accuracy(model, data) -> float:
  _, (x, y) = data
  logits = model.predict(x.astype(np.float32) / 255.0, batch_size=500, verbose=0)
  return float(np.mean(np.argmax(logits, -1) == y))


def main():
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--epochs", type=int, default=15)
  parser.add_argument("--compression", type=float, default=12.0,
                      help="lnx.convert's size target (its default: 12).")
  parser.add_argument("--widths", default="32,64,128,256,512",
                      help="Channels of the entry conv, each block and the final conv.")
  parser.add_argument("--learning_rate", type=float, default=2e-3)
  parser.add_argument("--batch_size", type=int, default=128)
  parser.add_argument("--train", type=int, default=50000)
  parser.add_argument("--seed", type=int, default=0)
  args = parser.parse_args()
  widths = [int(w) for w in args.widths.split(",")]
  data = cifar10("train", args.train), cifar10("test", 10000)
  representative = data[0][0][:200].astype(np.float32) / 255.0
  out = tempfile.mkdtemp(prefix="xception_cifar10_")
  print(f"# {vars(args)}", flush=True)

  tf.keras.utils.set_random_seed(args.seed)
  plain = xception(widths)
  plain_time = train(plain, data, args, args.seed)
  plain_accuracy = accuracy(plain, data)
  int8 = twin_rows.int8_bytes(plain, representative)

  tf.keras.utils.set_random_seed(args.seed)
  model = lnx.convert(xception(widths), compression=args.compression)
  lnx_time = train(model, data, args, args.seed)
  model_accuracy = accuracy(model, data)
  twin = twin_rows.compress_and_slim(model, out)
  file_accuracy = accuracy(lnx.decompress(twin.path), data)
  print(twin_rows.table(plain_accuracy, int8, file_accuracy, twin.lnx_bytes))
  removed = twin.small.slim_info.removed_channels
  channels = sum(l.filters for l in plain.layers if isinstance(l, (L.Conv2D, L.SeparableConv2D)))
  print(f"trained LilNetX model {model_accuracy:.4f} (the .lnx row: its decompressed file); "
        f"conv channels removed: {sum(a - b for a, b in removed.values())} of {channels}, "
        f"per layer (before, after): {removed}")
  print(twin_rows.latency_line(twin.latency, "32×32 image"))
  print(f"fit wall time: plain {plain_time:.0f} s, LilNetX {lnx_time:.0f} s "
        f"({lnx_time / plain_time:.2f}×)")


if __name__ == "__main__":
  main()
