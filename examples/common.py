"""What the examples share: TFDS input pipelines, the optimizer schedule and the closing
compress → decompress → evaluate → export summary."""

import os
import time
from typing import Optional

import numpy as np
import tensorflow as tf
import tensorflow_datasets as tfds

import lilnetx_tf as lnx


def image_dataset(name: str, split: str, batch_size: int, training: bool,
                  augment: bool = False, take: Optional[int] = None) -> tf.data.Dataset:
  """A batched (image in [0, 1], label) dataset from TFDS (`TFDS_DATA_DIR` picks the data)."""
  ds = tfds.load(name, split=split, as_supervised=True)
  if take:
    ds = ds.take(take)
  ds = ds.map(lambda x, y: (tf.cast(x, tf.float32) / 255.0, y),
              num_parallel_calls=tf.data.AUTOTUNE).cache()
  if training:
    ds = ds.shuffle(10_000, seed=0, reshuffle_each_iteration=True)
  if augment:
    def pad_crop_flip(x, y):
      shape = tf.shape(x)
      x = tf.image.resize_with_crop_or_pad(x, shape[0] + 8, shape[1] + 8)
      x = tf.image.random_crop(x, shape)
      return tf.image.random_flip_left_right(x), y
    ds = ds.map(pad_crop_flip, num_parallel_calls=tf.data.AUTOTUNE)
  return ds.batch(batch_size).prefetch(tf.data.AUTOTUNE)


def adam_cosine(learning_rate: float, total_steps: int, warmup_steps: int) -> tf.keras.optimizers.Optimizer:
  """Adam with linear warm-up then cosine decay to zero, as the LilNetX reference trains."""
  warmup_steps = min(warmup_steps, max(total_steps - 1, 0))
  schedule = tf.keras.optimizers.schedules.CosineDecay(
      initial_learning_rate=learning_rate * 1e-2, decay_steps=max(total_steps - warmup_steps, 1),
      warmup_target=learning_rate, warmup_steps=warmup_steps)
  return tf.keras.optimizers.Adam(schedule)


def accuracy(model: tf.keras.Model, dataset: tf.data.Dataset) -> float:
  """Top-1 accuracy of a logits model in inference mode."""
  correct = total = 0
  for x, y in dataset:
    logits = model(x, training=False)
    correct += int(tf.reduce_sum(tf.cast(tf.argmax(logits, -1) == tf.cast(y, tf.int64), tf.int32)))
    total += int(tf.shape(y)[0])
  return correct / total


def finish(model: tf.keras.Model, test: tf.data.Dataset, output_dir: str,
           extra_rows: Optional[dict] = None, export: bool = True) -> dict:
  """Compresses `model`, decompresses the file, evaluates it, exports slim TFLite, prints a table."""
  os.makedirs(output_dir, exist_ok=True)
  rows = dict(extra_rows or {})
  figures = lnx.stats(model)
  rows["accuracy (trained model)"] = f"{accuracy(model, test):.4f}"
  path = os.path.join(output_dir, "model.lnx")
  start = time.perf_counter()
  report = lnx.compress(model, path)
  rows["compress time"] = f"{time.perf_counter() - start:.2f} s"
  start = time.perf_counter()
  restored = lnx.decompress(path)
  rows["decompress time"] = f"{time.perf_counter() - start:.2f} s"
  test_acc = accuracy(restored, test)
  rows["accuracy (decompressed file)"] = f"{test_acc:.4f}"
  rows["file size (total)"] = f"{os.path.getsize(path)} B"
  rows["file size (parameter bytes)"] = f"{report.parameter_bytes} B"
  rows["estimated latent bytes"] = f"{figures['bytes']:.0f} B"
  rows["slice sparsity"] = f"{figures['slice_sparsity']:.3f}"
  rows["in / out channel sparsity"] = (
      f"{figures['in_channel_sparsity']:.3f} / {figures['out_channel_sparsity']:.3f}")
  rows["MACs dense → effective"] = (
      f"{figures['macs_dense']:,} → {figures['macs_effective']:,} ({figures['macs_ratio']:.2f}×)")
  exported = None
  if export:
    x_sample = next(iter(test))[0][:8].numpy()
    exported = lnx.export(restored, os.path.join(output_dir, "export"), inputs=[x_sample],
                          overwrite=True)
    rows["TFLite float32 dense → slim"] = (
        f"{exported.tflite_bytes_before:,} B → {exported.tflite_bytes_after:,} B")
    rows["slim parameters / MACs"] = (
        f"{exported.parameters_after:,} / {exported.macs_after:,} "
        f"(dense {exported.parameters_before:,} / {exported.macs_before:,})")
    rows["max |TFLite − Keras|"] = f"{exported.tflite_max_difference:.2e}"
  width = max(len(k) for k in rows)
  print("\n" + "\n".join(f"{k:<{width}}  {v}" for k, v in rows.items()))
  if exported is not None:
    print("\n" + exported.table())
  return dict(rows, test_accuracy=test_acc, file_bytes=os.path.getsize(path))


def seed_everything(seed: int) -> None:
  tf.keras.utils.set_random_seed(seed)
  np.random.seed(seed)
