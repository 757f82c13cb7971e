"""What the MNIST and CIFAR-10 examples share that is not the library's API: flags, TFDS input
pipelines, the learning-rate schedule and saving the trained model (`report.py` prints the
closing table)."""

import os
import time
from typing import Callable, Optional

import lilnetx_tf as lnx  # before TF: picks Keras 2, filters TF 2.21's start-up logs

from absl import app
from absl import flags
from absl import logging
import numpy as np
import tensorflow as tf
import tensorflow_datasets as tfds


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


def lilnetx_arguments() -> dict:
  """The LilNetX layer arguments the flags ask for."""
  f = flags.FLAGS
  return dict(rate_weight=f.rate_weight, slice_weight=f.slice_weight, l2_weight=f.l2_weight,
              boundary=f.boundary, density_learning_rate=f.density_learning_rate)


def file_options() -> dict:
  """The `lnx.compress` options the flags ask for."""
  f = flags.FLAGS
  return dict(float16=f.float16, float_bits=f.float_bits, mantissa_bits=f.mantissa_bits,
              inference_only=f.inference_only)


def run_config(**config) -> dict:
  """`config` (what the example trains) plus the flags that shape the run and its file."""
  f = flags.FLAGS
  config = dict(config, layers=f.layers, epochs=f.epochs)
  if f.layers == "lnx":
    config.update(lilnetx_arguments(), penalty_warmup_epochs=f.penalty_warmup_epochs,
                  penalty_cooldown_epochs=f.penalty_cooldown_epochs,
                  penalty_final_factor=f.penalty_final_factor if f.penalty_cooldown_epochs else None,
                  latent_lr_multiplier=f.latent_lr_multiplier, init_from=f.init_from,
                  warm_start_resolution=f.warm_start_resolution if f.init_from else None,
                  **file_options())
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


def cosine_schedule(learning_rate: float, total_steps: int,
                    warmup_steps: int) -> tf.keras.optimizers.schedules.LearningRateSchedule:
  """Linear warm-up to `learning_rate`, then cosine decay to zero (as LilNetX trains)."""
  warmup_steps = min(warmup_steps, max(total_steps - 1, 0))
  return tf.keras.optimizers.schedules.CosineDecay(
      initial_learning_rate=learning_rate * 1e-2, decay_steps=max(total_steps - warmup_steps, 1),
      warmup_target=learning_rate, warmup_steps=warmup_steps)


def accuracy(model: tf.keras.Model, dataset: tf.data.Dataset) -> float:
  """Top-1 accuracy of a logits model in inference mode."""
  correct = total = 0
  for x, y in dataset:
    logits = model(x, training=False)
    correct += int(tf.reduce_sum(tf.cast(tf.argmax(logits, -1) == tf.cast(y, tf.int64), tf.int32)))
    total += int(tf.shape(y)[0])
  return correct / total


def dense_model(builder: Callable[..., tf.keras.Model], path: str) -> tf.keras.Model:
  """The trained dense network of `--init_from`: a .keras model, or weights of `builder`'s
  plain network."""
  if path.endswith(".keras"):
    return tf.keras.models.load_model(path, compile=False)
  model = builder(layers="plain")
  model.load_weights(path)
  return model


def save_trained(model: tf.keras.Model, output_dir: str) -> None:
  """Saves OUTPUT_DIR/trained.keras (atomically), which `--finish_only` reads."""
  os.makedirs(output_dir, exist_ok=True)
  path = os.path.join(output_dir, "trained.keras")
  model.save(path + ".partial.keras")
  os.replace(path + ".partial.keras", path)


def load_trained(output_dir: str) -> tf.keras.Model:
  path = os.path.join(output_dir, "trained.keras")
  if not os.path.exists(path):
    raise app.UsageError(f"--finish_only needs {path} from a finished run.")
  return tf.keras.models.load_model(path, compile=False)


def timed(function: Callable, *args, **kwargs) -> tuple:
  """(`function(*args, **kwargs)`, seconds it took)."""
  start = time.perf_counter()
  result = function(*args, **kwargs)
  return result, time.perf_counter() - start


def seed_everything(seed: int) -> None:
  """Seeds every generator; keeps absl's INFO lines (TFDS, SavedModel writing), which `app.run`
  turns on, out of the output unless --verbosity is given."""
  if not flags.FLAGS["verbosity"].present:
    logging.set_verbosity(logging.WARNING)
  tf.keras.utils.set_random_seed(seed)
  np.random.seed(seed)
