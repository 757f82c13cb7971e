"""What the examples share: TFDS input pipelines, the optimizer schedule and the closing
compress → decompress → evaluate → export summary."""

import functools
import gzip
import json
import os
import time
from typing import Callable, Optional, Sequence

from absl import app
from absl import flags
import numpy as np
import tensorflow as tf
import tensorflow_datasets as tfds

import lilnetx_tf as lnx
from lilnetx_tf.export import slimming
from lilnetx_tf.export import tflite as tflite_lib


def define_flags(epochs: int, rate_weight: float, output_dir: str) -> None:
  """The absl flags the MNIST and CIFAR-10 examples share (with per-example defaults)."""
  flags.DEFINE_enum("layers", "lnx", ["lnx", "plain"], "LilNetX layers, or the dense baseline.")
  flags.DEFINE_integer("epochs", epochs, "Training epochs.")
  flags.DEFINE_integer("batch_size", 128, "Batch size.")
  flags.DEFINE_float("learning_rate", 3e-3, "Peak Adam learning rate (cosine schedule).")
  flags.DEFINE_float("rate_weight", rate_weight, "λ_I: task-loss price of one bit per slice.")
  flags.DEFINE_float("slice_weight", lnx.layers.base.DEFAULT_SLICE_WEIGHT,
                     "λ_G: task-loss price of the mean slice L2 norm (latent units) per slice.")
  flags.DEFINE_float("l2_weight", lnx.layers.base.DEFAULT_L2_WEIGHT,
                     "Task-loss price of the mean squared slice norm (latent units) per slice.",
                     lower_bound=0.0)
  flags.DEFINE_float("boundary", 1.0, "Latent init bound of each group's largest-fan layer.")
  flags.DEFINE_float("penalty_warmup_epochs", 0.0, "Ramp the LilNetX penalties from 0 to full "
                     "weight over this many epochs (lnx.callbacks.PenaltySchedule).",
                     lower_bound=0.0)
  flags.DEFINE_float("penalty_cooldown_epochs", 0.0, "Over the last this many epochs, bring the "
                     "LilNetX penalties linearly down to --penalty_final_factor of full weight.",
                     lower_bound=0.0)
  flags.DEFINE_float("penalty_final_factor", 0.0, "The penalties' factor at the end of "
                     "--penalty_cooldown_epochs.", lower_bound=0.0)
  flags.DEFINE_float("density_learning_rate", lnx.layers.base.DEFAULT_DENSITY_LEARNING_RATE,
                     "Adam step of each parameter group's density model (its own optimizer).",
                     lower_bound=0.0)
  flags.DEFINE_float("latent_lr_multiplier", 1.0, "Adam steps on the LilNetX latents are this "
                     "many times larger than on all other variables (lnx.optimizers.Adam).",
                     lower_bound=0.0)
  flags.DEFINE_string("init_from", None, "Start the LilNetX model from a trained dense one: a "
                      ".keras model, or the weights file of the --layers=plain network "
                      "(lnx.convert with warm_start=True).")
  flags.DEFINE_float("warm_start_resolution", 0.1, "With --init_from: each group's rounding "
                     "step as a fraction of its smallest per-layer RMS weight (lnx.convert).",
                     lower_bound=0.0)
  flags.DEFINE_integer("train_examples", 0, "Use only this many training examples (0 = all).")
  flags.DEFINE_bool("float16", False, "Store the non-latent floats (decoders, biases, "
                    "BatchNorm) as float16 in the .lnx file.")
  flags.DEFINE_integer("float_bits", None, "Store them instead as FLOAT_BITS-bit integers "
                       "(2..8) and a scale per tensor.", lower_bound=2, upper_bound=8)
  flags.DEFINE_integer("mantissa_bits", None, "With --float16: round those float16 values to "
                       "MANTISSA_BITS of their 10 mantissa bits (1..10); they compress better.",
                       lower_bound=1, upper_bound=10)
  flags.DEFINE_bool("inference_only", False, "Leave the densities out of the .lnx file and "
                    "fold BatchNorm: the smallest file to deploy.")
  flags.DEFINE_bool("finish_only", False, "Skip training: compress, evaluate and export "
                    "OUTPUT_DIR/trained.keras, which a finished run saved.")
  flags.DEFINE_bool("export", True, "Export slim SavedModel and TFLite at the end.")
  flags.DEFINE_string("output_dir", output_dir, "Checkpoints, logs, .lnx file and exports.")
  flags.DEFINE_integer("seed", 0, "Random seed.")


def file_options() -> dict:
  """The `lnx.compress` options the flags ask for."""
  return dict(float16=flags.FLAGS.float16, float_bits=flags.FLAGS.float_bits,
              mantissa_bits=flags.FLAGS.mantissa_bits, inference_only=flags.FLAGS.inference_only)


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


def adam_cosine(learning_rate: float, total_steps: int, warmup_steps: int,
                latent_lr_multiplier: float = 1.0) -> tf.keras.optimizers.Optimizer:
  """Adam with linear warm-up then cosine decay to zero, as the LilNetX reference trains, and
  `latent_lr_multiplier` times larger steps on the latents (`lnx.optimizers.Adam`)."""
  warmup_steps = min(warmup_steps, max(total_steps - 1, 0))
  schedule = tf.keras.optimizers.schedules.CosineDecay(
      initial_learning_rate=learning_rate * 1e-2, decay_steps=max(total_steps - warmup_steps, 1),
      warmup_target=learning_rate, warmup_steps=warmup_steps)
  return lnx.optimizers.Adam(schedule, latent_lr_multiplier=latent_lr_multiplier)


def accuracy(model: tf.keras.Model, dataset: tf.data.Dataset) -> float:
  """Top-1 accuracy of a logits model in inference mode."""
  correct = total = 0
  for x, y in dataset:
    logits = model(x, training=False)
    correct += int(tf.reduce_sum(tf.cast(tf.argmax(logits, -1) == tf.cast(y, tf.int64), tf.int32)))
    total += int(tf.shape(y)[0])
  return correct / total


def tflite_accuracy(content: bytes, model: tf.keras.Model, dataset: tf.data.Dataset) -> float:
  """Top-1 accuracy of a .tflite model (run by the interpreter, batch 1) on `dataset`."""
  correct = total = 0
  for x, y in dataset:
    logits = tflite_lib.run(content, model, [x.numpy()])[0]
    correct += int(np.sum(np.argmax(logits, -1) == y.numpy()))
    total += len(y)
  return correct / total


def _gzipped(content: bytes) -> int:
  return len(gzip.compress(content, compresslevel=9, mtime=0))


def shipped_sizes(model: tf.keras.Model, test: tf.data.Dataset, output_dir: str,
                  representative: np.ndarray) -> dict:
  """What a user would otherwise ship for a plain Keras model: file sizes (raw and gzipped) of
  the Keras float32 weights and of float32 / float16 / int8 TFLite, and each TFLite accuracy."""
  rows = {}
  # Legacy HDF5 weights: the model variables only (".weights.h5" would add the optimizer's).
  weights_path = os.path.join(output_dir, "baseline_weights.h5")
  model.save_weights(weights_path)
  with open(weights_path, "rb") as f:
    content = f.read()
  rows["keras float32 weights"] = dict(bytes=len(content), gzip_bytes=_gzipped(content))
  for quantization in tflite_lib.QUANTIZATIONS:
    content = tflite_lib.convert(model, quantization, representative_data=representative)
    rows[f"tflite {quantization or 'float32'}"] = dict(
        bytes=len(content), gzip_bytes=_gzipped(content),
        accuracy=tflite_accuracy(content, model, test))
  return rows


def _print_rows(rows: dict) -> None:
  width = max(len(k) for k in rows)
  print("\n" + "\n".join(f"{k:<{width}}  {v}" for k, v in rows.items()), flush=True)


def _write_summary(output_dir: str, summary: dict) -> None:
  path = os.path.join(output_dir, "summary.json")
  with open(path + ".tmp", "w") as f:
    json.dump(summary, f, indent=1, default=str)
  os.replace(path + ".tmp", path)
  print(f"\nsummary written to {path}")


def finish_baseline(model: tf.keras.Model, test: tf.data.Dataset, output_dir: str,
                    config: dict) -> dict:
  """Evaluates a plain (dense) baseline and measures what shipping it would cost."""
  os.makedirs(output_dir, exist_ok=True)
  representative = np.concatenate([x.numpy() for x, _ in test.take(1)])[:128]
  summary = dict(config, test_accuracy=accuracy(model, test),
                 parameters=int(model.count_params()),
                 shipped=shipped_sizes(model, test, output_dir, representative))
  rows = {k: v for k, v in config.items()}
  rows["accuracy (Keras float32)"] = f"{summary['test_accuracy']:.4f}"
  for name, figures in summary["shipped"].items():
    accuracy_text = f", accuracy {figures['accuracy']:.4f}" if "accuracy" in figures else ""
    rows[name] = f"{figures['bytes']:,} B (gzip {figures['gzip_bytes']:,} B){accuracy_text}"
  _print_rows(rows)
  _write_summary(output_dir, summary)
  return summary


def finish(model: tf.keras.Model, test: tf.data.Dataset, output_dir: str, config: dict,
           export: bool = True, file_options: Optional[dict] = None,
           latency_runs: int = 200) -> dict:
  """Compresses `model`, decompresses the file, evaluates it, exports slim TFLite, times slim
  vs. dense TFLite, prints one table and writes `summary.json` into `output_dir`.

  `file_options` go to `lnx.compress` (e.g. float16, inference_only); the decompressed
  model's accuracy in the table is that of the file as written.
  """
  os.makedirs(output_dir, exist_ok=True)
  figures = lnx.stats(model)
  summary = dict(config, trained_accuracy=accuracy(model, test))
  path = os.path.join(output_dir, "model.lnx")
  start = time.perf_counter()
  report = lnx.compress(model, path, **(file_options or {}))
  summary["compress_seconds"] = time.perf_counter() - start
  start = time.perf_counter()
  restored = lnx.decompress(path)
  summary["decompress_seconds"] = time.perf_counter() - start
  summary.update(
      test_accuracy=accuracy(restored, test), file_bytes=os.path.getsize(path),
      parameter_bytes=report.parameter_bytes, estimated_latent_bytes=figures["bytes"],
      coded_latent_bytes=report.coded_latent_bytes,
      **{k: figures[k] for k in ("slice_sparsity", "in_channel_sparsity",
                                 "out_channel_sparsity", "macs_dense", "macs_effective",
                                 "macs_ratio", "parameters")})
  rows = {k: v for k, v in config.items()}
  rows["accuracy (trained model)"] = f"{summary['trained_accuracy']:.4f}"
  rows["accuracy (decompressed file)"] = f"{summary['test_accuracy']:.4f}"
  rows["compress / decompress time"] = (
      f"{summary['compress_seconds']:.2f} s / {summary['decompress_seconds']:.2f} s")
  rows["file size (total / parameter bytes)"] = (
      f"{summary['file_bytes']:,} B / {summary['parameter_bytes']:,} B")
  rows["coded / estimated latent bytes"] = (
      f"{summary['coded_latent_bytes']:,} B / {summary['estimated_latent_bytes']:,.0f} B")
  rows["slice sparsity"] = f"{summary['slice_sparsity']:.3f}"
  rows["in / out channel sparsity"] = (
      f"{summary['in_channel_sparsity']:.3f} / {summary['out_channel_sparsity']:.3f}")
  rows["MACs dense → effective"] = (
      f"{summary['macs_dense']:,} → {summary['macs_effective']:,} "
      f"({summary['macs_ratio']:.2f}×)")
  exported = None
  if export:
    x_sample = next(iter(test))[0][:8].numpy()
    exported = lnx.export(restored, os.path.join(output_dir, "export"), inputs=[x_sample],
                          overwrite=True)
    with open(os.path.join(exported.directory, "model.tflite"), "rb") as f:
      slim_content = f.read()
    dense = slimming.slim(restored, check=False, remove_channels=False)
    latency = tflite_lib.median_latencies(
        {"dense": tflite_lib.convert(dense), "slim": slim_content}, runs=latency_runs)
    summary.update(tflite_bytes_dense=exported.tflite_bytes_before,
                   tflite_bytes_slim=exported.tflite_bytes_after,
                   slim_parameters=exported.parameters_after, slim_macs=exported.macs_after,
                   tflite_max_difference=exported.tflite_max_difference,
                   latency_ms_dense=latency["dense"], latency_ms_slim=latency["slim"])
    rows["TFLite float32 dense → slim"] = (
        f"{exported.tflite_bytes_before:,} B → {exported.tflite_bytes_after:,} B")
    rows["slim parameters / MACs"] = (
        f"{exported.parameters_after:,} / {exported.macs_after:,} "
        f"(dense {exported.parameters_before:,} / {exported.macs_before:,})")
    rows["TFLite latency dense → slim"] = (
        f"{latency['dense']:.3f} ms → {latency['slim']:.3f} ms "
        f"({latency['dense'] / latency['slim']:.2f}×; batch 1, 1 thread, median)")
    rows["max |TFLite − Keras|"] = f"{exported.tflite_max_difference:.2e}"
  _print_rows(rows)
  if exported is not None:
    print("\n" + exported.table())
  _write_summary(output_dir, summary)
  return summary


def build_model(builder: Callable[..., tf.keras.Model]) -> tf.keras.Model:
  """`builder` (a `lilnetx_tf.models` function) as the flags ask: plain Keras layers
  (`--layers=plain`), LilNetX layers that all take the flags' rate, slice, L2, boundary and
  density learning rate arguments, or (`--init_from`, a .keras model or a weights file of
  `builder`'s plain network) that trained network converted by
  `lnx.convert(..., warm_start=True)` on a grid of `--warm_start_resolution`.
  """
  f = flags.FLAGS
  if f.layers == "plain":
    return builder(layers="plain")
  lilnetx = dict(rate_weight=f.rate_weight, slice_weight=f.slice_weight,
                 l2_weight=f.l2_weight, boundary=f.boundary,
                 density_learning_rate=f.density_learning_rate)
  if f.init_from:
    if f.init_from.endswith(".keras"):
      dense = tf.keras.models.load_model(f.init_from, compile=False)
    else:
      dense = builder(layers="plain")
      dense.load_weights(f.init_from)
    return lnx.convert(dense, warm_start=True, warm_start_resolution=f.warm_start_resolution,
                       **lilnetx)
  return builder(conv_layer=functools.partial(lnx.Conv2D, **lilnetx),
                 dense_layer=functools.partial(lnx.Dense, **lilnetx))


def run_config(**config) -> dict:
  """`config` (what the example trains) plus, for a LilNetX run, the flags that shape it."""
  f = flags.FLAGS
  config = dict(config, layers=f.layers, epochs=f.epochs)
  if f.layers == "lnx":
    config.update(rate_weight=f.rate_weight, slice_weight=f.slice_weight,
                  l2_weight=f.l2_weight, boundary=f.boundary,
                  penalty_warmup_epochs=f.penalty_warmup_epochs,
                  penalty_cooldown_epochs=f.penalty_cooldown_epochs,
                  penalty_final_factor=f.penalty_final_factor if f.penalty_cooldown_epochs else None,
                  density_learning_rate=f.density_learning_rate,
                  latent_lr_multiplier=f.latent_lr_multiplier, init_from=f.init_from,
                  warm_start_resolution=f.warm_start_resolution if f.init_from else None)
  return config


def penalty_schedule(steps_per_epoch: int) -> Optional[Callable[[int], float]]:
  """The penalty factor per optimizer step (`lnx.callbacks.warmup_cooldown`) that the penalty
  flags ask for, or None for full weight throughout."""
  f = flags.FLAGS
  if not f.penalty_warmup_epochs and not f.penalty_cooldown_epochs:
    return None
  try:
    return lnx.callbacks.warmup_cooldown(
        warmup_steps=int(steps_per_epoch * f.penalty_warmup_epochs),
        cooldown_steps=int(steps_per_epoch * f.penalty_cooldown_epochs),
        total_steps=steps_per_epoch * f.epochs, final_factor=f.penalty_final_factor)
  except lnx.errors.InvalidArgumentError as e:
    raise app.UsageError(f"Penalty schedule flags: {e}") from None


def _save_atomic(model: tf.keras.Model, path: str) -> None:
  partial = path + ".partial.keras"
  model.save(partial)
  os.replace(partial, path)


def train_and_report(model: tf.keras.Model, train: tf.data.Dataset, test: tf.data.Dataset, *,
                     epochs: int, learning_rate: float, warmup_steps: int, output_dir: str,
                     config: dict, lilnetx: bool, extra_callbacks: Sequence = (),
                     export: bool = True, file_options: Optional[dict] = None,
                     finish_only: bool = False,
                     penalty_factor: Optional[Callable[[int], float]] = None,
                     latent_lr_multiplier: float = 1.0) -> dict:
  """Compiles with `adam_cosine` (with `latent_lr_multiplier`), fits (with `CompressionMetrics`,
  and a `PenaltySchedule` of `penalty_factor` if given, for a LilNetX model), saves the trained
  model
  as OUTPUT_DIR/trained.keras and ends with `finish` (LilNetX) or `finish_baseline` (plain Keras).
  `finish_only` loads that file instead of training."""
  trained_path = os.path.join(output_dir, "trained.keras")
  start = time.perf_counter()
  if finish_only:
    if not os.path.exists(trained_path):
      raise app.UsageError(f"--finish_only needs {trained_path} from a finished run.")
    model = tf.keras.models.load_model(trained_path, compile=False)
  else:
    model.compile(
        optimizer=adam_cosine(learning_rate, int(train.cardinality()) * epochs, warmup_steps,
                              latent_lr_multiplier),
        loss=tf.keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        metrics=["accuracy"])
    callbacks = []
    if lilnetx:
      callbacks.append(lnx.callbacks.CompressionMetrics())
      if penalty_factor is not None:
        callbacks.append(lnx.callbacks.PenaltySchedule(penalty_factor))
    model.fit(train, epochs=epochs, validation_data=test, verbose=2,
              callbacks=callbacks + list(extra_callbacks))
    os.makedirs(output_dir, exist_ok=True)
    _save_atomic(model, trained_path)
  config = dict(config, train_minutes_this_run=round((time.perf_counter() - start) / 60, 1))
  if not lilnetx:
    return finish_baseline(model, test, output_dir, config)
  return finish(model, test, output_dir, dict(config, **(file_options or {})), export=export,
                file_options=file_options)


def seed_everything(seed: int) -> None:
  tf.keras.utils.set_random_seed(seed)
  np.random.seed(seed)
