"""Training-step overhead of LilNetX layers: a model from lnx layers vs the same in plain Keras.

Builds one of `lilnetx_tf.models` (`--model`, default the CIFAR ResNet-20 with option-B
projection shortcuts) twice, once from `lilnetx_tf` layers and once from `tf.keras.layers`, and
times the compiled Keras train step of each on random batches of the model's input shape in the
same process. After a warm-up, the variants are timed in interleaved rounds of `--steps` steps
each (so load changes on a shared machine hit every variant alike) and the median per-step time
is reported, with the ratio to plain Keras (target: <= 1.15x).

The profiling variant `lnx_nopenalty` (lnx layers with rate_weight = slice_weight = l2_weight =
0) isolates the cost of the loss terms: it still decodes the kernels and runs each group's
density step, which shares its density evaluation with the rate.

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
flags.DEFINE_list("variants", ["keras", "lnx"],
                  "Variants to time, from keras, lnx, lnx_nopenalty.")
flags.DEFINE_bool("jit_compile", False, "Compile the train step with XLA.")
flags.DEFINE_integer("seed", 0, "Random seed.")


def build(variant: str) -> tf.keras.Model:
  if variant == "keras":
    model = models.build(FLAGS.model, layers="plain")
  else:
    penalties = {}
    if variant == "lnx_nopenalty":
      penalties = dict(rate_weight=0.0, slice_weight=0.0, l2_weight=0.0)
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

  baseline = statistics.median(times["keras"]) if "keras" in times else None
  print(f"\n{FLAGS.model}, batch {FLAGS.batch_size}, input {shape[1:]}, {FLAGS.rounds} rounds x "
        f"{FLAGS.steps} steps, jit_compile={FLAGS.jit_compile}")
  print(f"{'variant':>14} | {'median ms/step':>14} | {'min':>8} | {'max':>8} | ratio")
  for variant, values in times.items():
    median = statistics.median(values)
    ratio = f"{median / baseline:.3f}x" if baseline else "-"
    print(f"{variant:>14} | {1000 * median:14.1f} | {1000 * min(values):8.1f} | "
          f"{1000 * max(values):8.1f} | {ratio}")
  if baseline and "lnx" in times:
    ratio = statistics.median(times["lnx"]) / baseline
    print(f"\nlnx / keras step-time ratio: {ratio:.3f}x (target <= 1.15x): "
          f"{'OK' if ratio <= 1.15 else 'ABOVE TARGET'}")


if __name__ == "__main__":
  app.run(main)
