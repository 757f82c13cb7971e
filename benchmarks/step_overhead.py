"""Training-step and first-epoch overhead of LilNetX layers against the same plain Keras model.

Each model of `--models` is built twice, from `lilnetx_tf` layers and from `tf.keras.layers`,
and the compiled Keras train step of each is timed on random batches of the model's input shape
in the same process. After a warm-up, the variants are timed in interleaved rounds of `--steps`
steps each (so load changes on a shared machine hit every variant alike); the table gives each
variant's median per-step time and the median (min–max) over rounds of its ratio to plain Keras
in the same round. With `--first_epoch_steps=N`, every round also builds fresh models and times
their first `fit` of N steps, tracing included, paired the same way.

Models: those of `lilnetx_tf.models`, `mlp` (784-512-256-10 on 28×28×1) and `mobilenetv2`
(`tf.keras.applications.MobileNetV2`, weights=None, 96×96×3, 10 classes; its LilNetX twin comes
from `lnx.convert(..., warm_start=False)`). `--strategy=mirrored` splits the CPU into two logical
devices and trains under a MirroredStrategy; `--jit_compile` compiles the train step with XLA.

Profiling variants isolate the cost of the loss terms: `lnx_rateonly` (slice_weight =
l2_weight = 0) keeps only the rate, `lnx_nopenalty` (all three weights 0) none; both still decode
the kernels and run each group's density step, which shares its density evaluation with the rate.

    PYTHONPATH=. .venv/bin/python benchmarks/step_overhead.py --models=resnet20 --steps=5 --rounds=5
    PYTHONPATH=. .venv/bin/python benchmarks/step_overhead.py \\
        --models=mlp,lenet300_100,lenet5,mobilenetv2 --first_epoch_steps=50
"""

import os
import statistics
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import lilnetx_tf as lnx  # before TF: picks Keras 2, filters TF 2.21's start-up logs

from absl import app
from absl import flags
import numpy as np
import tensorflow as tf

from lilnetx_tf import models

EXTRA_MODELS = ("mlp", "mobilenetv2")
FLAGS = flags.FLAGS
flags.DEFINE_list("models", ["resnet20"], "Models to time, from "
                  f"{', '.join(sorted(models.BUILDERS) + list(EXTRA_MODELS))}.")
flags.register_validator(
    "models", lambda names: set(names) <= set(models.BUILDERS) | set(EXTRA_MODELS),
    "--models must name models of lilnetx_tf.models, mlp or mobilenetv2.")
flags.DEFINE_integer("batch_size", 128, "Batch size (global, over all replicas).")
flags.DEFINE_integer("steps", 5, "Train steps per timed round per variant.")
flags.DEFINE_integer("rounds", 5, "Interleaved timing rounds.")
flags.DEFINE_integer("warmup", 3, "Untimed warm-up steps per variant (after tracing).")
flags.DEFINE_integer("first_epoch_steps", 0,
                     "If > 0, also time the first fit of this many steps of fresh models "
                     "(tracing included), in --first_epoch_rounds paired rounds.")
flags.DEFINE_integer("first_epoch_rounds", 2, "Rounds of first-epoch timing.")
# LilNetX variants: the penalty weights they override.
PENALTIES = {
    "lnx": {},
    "lnx_rateonly": dict(slice_weight=0.0, l2_weight=0.0),
    "lnx_nopenalty": dict(rate_weight=0.0, slice_weight=0.0, l2_weight=0.0),
}
flags.DEFINE_list("variants", ["keras", "lnx"],
                  f"Variants to time, from keras, {', '.join(PENALTIES)}.")
flags.register_validator("variants", lambda names: set(names) <= {"keras", *PENALTIES},
                         f"--variants must be from keras, {', '.join(PENALTIES)}.")
flags.DEFINE_bool("jit_compile", False, "Compile the train step with XLA.")
flags.DEFINE_enum("strategy", "none", ["none", "mirrored"],
                  "mirrored: MirroredStrategy over two logical CPU devices.")
flags.DEFINE_integer("seed", 0, "Random seed.")


def _plain_model(name: str) -> tf.keras.Model:
  if name == "mlp":
    return tf.keras.Sequential([
        tf.keras.Input((28, 28, 1)), tf.keras.layers.Flatten(),
        tf.keras.layers.Dense(512, activation="relu"),
        tf.keras.layers.Dense(256, activation="relu"), tf.keras.layers.Dense(10)], name="mlp")
  if name == "mobilenetv2":
    return tf.keras.applications.MobileNetV2(
        input_shape=(96, 96, 3), weights=None, classes=10, classifier_activation=None)
  return models.build(name, layers="plain")


def build(name: str, variant: str) -> tf.keras.Model:
  """The compiled model `name` in plain Keras (`keras`) or LilNetX with `variant`'s penalties."""
  if variant == "keras":
    model = _plain_model(name)
  elif name in EXTRA_MODELS:
    model = lnx.convert(_plain_model(name), warm_start=False, **PENALTIES[variant])
  else:
    penalties = PENALTIES[variant]
    model = models.build(name, conv_layer=lambda *a, **k: lnx.Conv2D(*a, **k, **penalties),
                         dense_layer=lambda *a, **k: lnx.Dense(*a, **k, **penalties))
  model.compile(tf.keras.optimizers.SGD(0.05, momentum=0.9),
                tf.keras.losses.SparseCategoricalCrossentropy(from_logits=True),
                jit_compile=FLAGS.jit_compile)
  return model


def _dataset(model: tf.keras.Model, rng: np.random.Generator) -> tf.data.Dataset:
  x = rng.random((FLAGS.batch_size, *model.input_shape[1:]), dtype=np.float32)
  y = rng.integers(0, model.output_shape[-1], FLAGS.batch_size).astype("int32")
  return tf.data.Dataset.from_tensors((x, y)).repeat().prefetch(2)


def time_steps(name: str, strategy, rng) -> dict:
  """{variant: [seconds per step in each round]}."""
  with strategy.scope():
    built = {variant: build(name, variant) for variant in FLAGS.variants}
  data = _dataset(next(iter(built.values())), rng)
  runners = {}
  for variant, model in built.items():
    train_function = model.make_train_function()
    iterator = iter(strategy.experimental_distribute_dataset(data))
    start = time.perf_counter()
    for _ in range(1 + FLAGS.warmup):
      logs = train_function(iterator)
    float(logs["loss"])
    print(f"{name} {variant}: {model.count_params():,} parameters, trace + warm-up "
          f"{time.perf_counter() - start:.1f} s", flush=True)
    runners[variant] = (train_function, iterator)
  times = {variant: [] for variant in FLAGS.variants}
  for round_index in range(FLAGS.rounds):
    order = FLAGS.variants if round_index % 2 == 0 else FLAGS.variants[::-1]
    for variant in order:
      train_function, iterator = runners[variant]
      start = time.perf_counter()
      for _ in range(FLAGS.steps):
        logs = train_function(iterator)
      float(logs["loss"])  # wait for the last step
      times[variant].append((time.perf_counter() - start) / FLAGS.steps)
  return times


def time_first_epochs(name: str, strategy, rng) -> dict:
  """{variant: [seconds of a fresh model's first fit of --first_epoch_steps steps]}."""
  times = {variant: [] for variant in FLAGS.variants}
  for round_index in range(FLAGS.first_epoch_rounds):
    order = FLAGS.variants if round_index % 2 == 0 else FLAGS.variants[::-1]
    for variant in order:
      with strategy.scope():
        model = build(name, variant)
      data = _dataset(model, rng)
      start = time.perf_counter()
      model.fit(data, steps_per_epoch=FLAGS.first_epoch_steps, epochs=1, verbose=0)
      times[variant].append(time.perf_counter() - start)
      print(f"{name} {variant}: first epoch {times[variant][-1]:.1f} s", flush=True)
  return times


def _paired(values: list, keras_values: list) -> str:
  # Each round times every variant back to back: the ratio within a round cancels the slow load
  # changes of a shared machine that move the medians by ±10 %.
  ratios = [t / k for t, k in zip(values, keras_values)]
  return f"{statistics.median(ratios):6.3f}x ({min(ratios):5.3f}–{max(ratios):5.3f})"


def main(argv):
  del argv
  if FLAGS.strategy == "mirrored":
    cpu = tf.config.list_physical_devices("CPU")[0]
    tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
    strategy = tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"])
  else:
    strategy = tf.distribute.get_strategy()
  tf.keras.utils.set_random_seed(FLAGS.seed)
  rng = np.random.default_rng(FLAGS.seed)
  rows = []
  for name in FLAGS.models:
    steps = time_steps(name, strategy, rng)
    first = time_first_epochs(name, strategy, rng) if FLAGS.first_epoch_steps > 0 else None
    for variant in FLAGS.variants:
      row = [name, variant, f"{1000 * statistics.median(steps[variant]):8.1f}"]
      row.append(_paired(steps[variant], steps["keras"]) if "keras" in steps else "-")
      if first:
        row.append(f"{statistics.median(first[variant]):7.1f}")
        row.append(_paired(first[variant], first["keras"]) if "keras" in first else "-")
      rows.append(row)
  print(f"\nbatch {FLAGS.batch_size}, {FLAGS.rounds} rounds x {FLAGS.steps} steps, "
        f"jit_compile={FLAGS.jit_compile}, strategy={FLAGS.strategy}"
        + (f", first epoch: {FLAGS.first_epoch_steps} steps x {FLAGS.first_epoch_rounds} rounds"
           if FLAGS.first_epoch_steps > 0 else ""))
  header = ["model", "variant", "ms/step", "step ratio median (min–max)"]
  if FLAGS.first_epoch_steps > 0:
    header += ["1st epoch s", "1st epoch ratio median (min–max)"]
  print(" | ".join(header))
  for row in rows:
    print(" | ".join(row))


if __name__ == "__main__":
  app.run(main)
