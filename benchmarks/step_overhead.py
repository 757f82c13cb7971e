"""Training-step overhead of LilNetX layers: a model from lnx layers vs the same in plain Keras.

Builds one of `lilnetx_tf.models` (`--model`, default the CIFAR ResNet-20 with option-B
projection shortcuts) twice, once from `lilnetx_tf` layers and once from `tf.keras.layers`, and
times the compiled Keras train step of each on random batches of the model's input shape in the
same process. After a warm-up, the variants are timed in interleaved rounds of `--steps` steps
each (so load changes on a shared machine hit every variant alike); the table gives each
variant's median per-step time and the median over rounds of its ratio to plain Keras in the
same round (target for lnx: <= 1.15x).

Profiling variants isolate the cost of the loss terms: `lnx_rateonly` (slice_weight =
l2_weight = 0) keeps only the rate, `lnx_nopenalty` (all three weights 0) none; both still decode
the kernels and run each group's density step, which shares its density evaluation with the rate.

    PYTHONPATH=. .venv/bin/python benchmarks/step_overhead.py --steps=5 --rounds=5
    PYTHONPATH=. .venv/bin/python benchmarks/step_overhead.py --model=lenet300_100
"""

import functools
import os
import statistics
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from absl import app
from absl import flags
import numpy as np
import tensorflow as tf

import lilnetx_tf as lnx
from lilnetx_tf import models

FLAGS = flags.FLAGS
flags.DEFINE_enum("model", "resnet20", sorted(models.BUILDERS), "Model to time.")
flags.DEFINE_integer("batch_size", 128, "Batch size.")
flags.DEFINE_integer("steps", 5, "Train steps per timed round per variant.")
flags.DEFINE_integer("rounds", 5, "Interleaved timing rounds.")
flags.DEFINE_integer("warmup", 3, "Untimed warm-up steps per variant (after tracing).")
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
flags.DEFINE_integer("seed", 0, "Random seed.")


def build(variant: str) -> tf.keras.Model:
  if variant == "keras":
    model = models.build(FLAGS.model, layers="plain")
  else:
    penalties = PENALTIES[variant]
    model = models.build(FLAGS.model, conv_layer=functools.partial(lnx.Conv2D, **penalties),
                         dense_layer=functools.partial(lnx.Dense, **penalties))
  model.compile(tf.keras.optimizers.SGD(0.05, momentum=0.9),
                tf.keras.losses.SparseCategoricalCrossentropy(from_logits=True),
                jit_compile=FLAGS.jit_compile)
  return model


def main(argv):
  del argv
  tf.keras.utils.set_random_seed(FLAGS.seed)
  rng = np.random.default_rng(FLAGS.seed)
  built = {variant: build(variant) for variant in FLAGS.variants}
  some_model = next(iter(built.values()))
  shape = (FLAGS.batch_size, *some_model.input_shape[1:])
  x = rng.random(shape, dtype=np.float32)
  y = rng.integers(0, some_model.output_shape[-1], FLAGS.batch_size).astype("int32")
  data = tf.data.Dataset.from_tensors((x, y)).repeat().prefetch(2)

  runners = {}
  for variant, model in built.items():
    train_function = model.make_train_function()
    iterator = iter(data)
    start = time.perf_counter()
    for _ in range(1 + FLAGS.warmup):
      logs = train_function(iterator)
    float(logs["loss"])
    print(f"{variant:>14}: {model.count_params():,} parameters, trace + warm-up "
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

  keras_times = times.get("keras")
  print(f"\n{FLAGS.model}, batch {FLAGS.batch_size}, input {shape[1:]}, {FLAGS.rounds} rounds x "
        f"{FLAGS.steps} steps, jit_compile={FLAGS.jit_compile}")
  print(f"{'variant':>14} | {'median ms/step':>14} | {'min':>8} | {'max':>8} | "
        f"{'paired ratio':>12} | {'ratio range':>13}")
  paired = {}
  for variant, values in times.items():
    ratio_text = f"{'-':>12} | {'-':>13}"
    if keras_times:
      # Each round times every variant back to back: the ratio within a round cancels the
      # slow load changes of a shared machine that move the medians by ±10 %.
      ratios = [t / k for t, k in zip(values, keras_times)]
      paired[variant] = statistics.median(ratios)
      ratio_text = f"{paired[variant]:11.3f}x | {min(ratios):5.3f}–{max(ratios):5.3f}x"
    print(f"{variant:>14} | {1000 * statistics.median(values):14.1f} | "
          f"{1000 * min(values):8.1f} | {1000 * max(values):8.1f} | {ratio_text}")
  if "lnx" in paired:
    ratio = paired["lnx"]
    print(f"\nlnx / keras step-time ratio (median over rounds): {ratio:.3f}x (target <= 1.15x): "
          f"{'OK' if ratio <= 1.15 else 'ABOVE TARGET'}")


if __name__ == "__main__":
  app.run(main)
