"""Warm-start evidence for `lnx.convert`: a plain Keras LeNet5 on MNIST, converted and fine-tuned.

    TFDS_DATA_DIR=/path/to/tensorflow_datasets PYTHONPATH=. .venv/bin/python \
        benchmarks/warm_start_mnist.py

1. trains a plain Keras LeNet5 for one epoch and reports its test accuracy;
2. converts it with `lnx.convert(warm_start=True)` at several `warm_start_resolution`s and
   reports, for each, the test accuracy (the initial gap to the original), the estimated size
   (`lnx.stats` bytes) and the largest integer latent;
3. fine-tunes the default-resolution conversion for one epoch with rate_weight > 0 and reports
   accuracy and size again (plus a fresh `warm_start=False` conversion trained the same way).

TFDS reads its data from $TFDS_DATA_DIR (the usual TFDS variable); nothing is downloaded if the
data is there.
"""

import argparse
import os
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import lilnetx_tf as lnx  # before TF: picks Keras 2, filters TF 2.21's start-up logs

import numpy as np
import tensorflow as tf
import tensorflow_datasets as tfds

from lilnetx_tf.stats import lilnetx_layers


def load(split: str, batch_size: int, limit: int, shuffle: bool):
  data_dir = os.environ.get("TFDS_DATA_DIR")  # None: TFDS' default directory
  ds = tfds.load("mnist", split=split, as_supervised=True, data_dir=data_dir)
  if limit > 0:
    ds = ds.take(limit)
  ds = ds.map(lambda x, y: (tf.cast(x, tf.float32) / 255.0, y)).cache()
  if shuffle:
    ds = ds.shuffle(10000, seed=0)
  return ds.batch(batch_size).prefetch(tf.data.AUTOTUNE)


def lenet5() -> tf.keras.Model:
  layers = tf.keras.layers
  inputs = tf.keras.Input((28, 28, 1))
  x = layers.Conv2D(6, 5, padding="same", activation="relu")(inputs)
  x = layers.AveragePooling2D()(x)
  x = layers.Conv2D(16, 5, activation="relu")(x)
  x = layers.AveragePooling2D()(x)
  x = layers.Flatten()(x)
  x = layers.Dense(120, activation="relu")(x)
  x = layers.Dense(84, activation="relu")(x)
  outputs = layers.Dense(10)(x)
  return tf.keras.Model(inputs, outputs, name="lenet5")


def compile_model(model, learning_rate):
  model.compile(tf.keras.optimizers.Adam(learning_rate),
                tf.keras.losses.SparseCategoricalCrossentropy(from_logits=True),
                metrics=["accuracy"])


def accuracy(model, test) -> float:
  return float(model.evaluate(test, verbose=0)[1])


def lilnetx_figures(model) -> dict:
  stats = lnx.stats(model)
  max_latent = max(float(tf.reduce_max(tf.abs(layer.integer_latent)))
                   for layer in lilnetx_layers(model))
  return dict(bytes=stats["bytes"], bits_per_weight=stats["bits"] / stats["latent_parameters"],
              max_latent=max_latent, slice_sparsity=stats["slice_sparsity"])


def _converted(original, resolutions: list, test, rows: list, learning_rate: float,
               lnx_kwargs: dict) -> dict:
  """resolution → `original` converted with a warm start at that resolution (compiled); adds a
  row per resolution to `rows`."""
  converted_at = {}
  for resolution in resolutions:
    start = time.time()
    converted = lnx.convert(original, warm_start=True, warm_start_resolution=resolution,
                            **lnx_kwargs)
    seconds = time.time() - start
    compile_model(converted, learning_rate)
    figures = lilnetx_figures(converted)
    rows.append((f"converted, warm start, res={resolution:g}", accuracy(converted, test),
                 figures["bytes"], figures["bits_per_weight"], figures["max_latent"], None))
    print(f"converted at resolution {resolution:g} in {seconds:.1f}s", flush=True)
    converted_at[resolution] = converted
  return converted_at


def _print_table(rows: list, original_accuracy: float) -> None:
  fmt = lambda v, spec: "-" if v is None else format(v, spec)
  print()
  print(f"| model | test acc | gap to original | size (bytes) | bits/weight | max |latent| "
        f"| slice sparsity |")
  print("|---|---|---|---|---|---|---|")
  for name, acc, size, bits, max_latent, sparsity in rows:
    print(f"| {name} | {acc:.4f} | {acc - original_accuracy:+.4f} | {size:,.0f} | "
          f"{fmt(bits, '.2f')} | {fmt(max_latent, '.0f')} | {fmt(sparsity, '.3f')} |")


def main():
  parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  parser.add_argument("--train_examples", type=int, default=0, help="0: all 60000")
  parser.add_argument("--batch_size", type=int, default=128)
  parser.add_argument("--rate_weight", type=float, default=0.01)
  parser.add_argument("--slice_weight", type=float, default=1e-4)
  parser.add_argument("--finetune_learning_rate", type=float, default=5e-4)
  parser.add_argument("--resolutions", default="0.05,0.1,0.2,0.5,1.0")
  parser.add_argument("--resolution", type=float, default=0.1, help="used for fine-tuning")
  args = parser.parse_args()
  tf.keras.utils.set_random_seed(0)

  train = load("train", args.batch_size, args.train_examples, shuffle=True)
  test = load("test", 1000, 0, shuffle=False)
  rows = []

  original = lenet5()
  compile_model(original, 1e-3)
  start = time.time()
  original.fit(train, epochs=1, verbose=0)
  print(f"trained original in {time.time() - start:.1f}s", flush=True)
  original_accuracy = accuracy(original, test)
  float_bytes = 4 * original.count_params()
  rows.append(("original (float32, 1 epoch)", original_accuracy, float_bytes, 32.0, None, None))

  lnx_kwargs = dict(rate_weight=args.rate_weight, slice_weight=args.slice_weight)
  converted_at = _converted(original, [float(r) for r in args.resolutions.split(",")], test,
                            rows, args.finetune_learning_rate, lnx_kwargs)

  tuned = converted_at.get(args.resolution) or lnx.convert(
      original, warm_start=True, warm_start_resolution=args.resolution, **lnx_kwargs)
  compile_model(tuned, args.finetune_learning_rate)
  start = time.time()
  tuned.fit(train, epochs=1, verbose=0)
  print(f"fine-tuned in {time.time() - start:.1f}s", flush=True)
  figures = lilnetx_figures(tuned)
  rows.append((f"warm start res={args.resolution:g} + 1 epoch, rate={args.rate_weight:g}",
               accuracy(tuned, test), figures["bytes"], figures["bits_per_weight"],
               figures["max_latent"], figures["slice_sparsity"]))

  fresh = lnx.convert(original, warm_start=False, **lnx_kwargs)
  compile_model(fresh, args.finetune_learning_rate)
  rows.append(("fresh init (warm_start=False), before training", accuracy(fresh, test),
               lilnetx_figures(fresh)["bytes"], None, None, None))
  fresh.fit(train, epochs=1, verbose=0)
  figures = lilnetx_figures(fresh)
  rows.append((f"fresh init + 1 epoch, rate={args.rate_weight:g}", accuracy(fresh, test),
               figures["bytes"], figures["bits_per_weight"], figures["max_latent"],
               figures["slice_sparsity"]))

  _print_table(rows, original_accuracy)


if __name__ == "__main__":
  main()
