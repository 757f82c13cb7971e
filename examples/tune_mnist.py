"""Trade-off search on MNIST LeNet5: accuracy vs compressed file size vs compute.

keras-tuner samples LilNetX's `rate_weight` (λ_I) and `slice_weight` (λ_G) on a log scale; every
trial trains LeNet5 briefly, writes the real `.lnx` file into its trial directory and reports
validation accuracy, file bytes and effective MACs. The run ends with the Pareto front, the trial
picked by `--min_accuracy` (smallest file) re-checked from its decompressed file on the test
split, and a PNG scatter plot.

  python examples/tune_mnist.py                      # ~15 min on 2 CPU cores (8 trials)
  python examples/tune_mnist.py --max_trials=3 --train_examples=2000 --val_examples=1000
  python examples/tune_mnist.py --max_trials=12      # resumes the project: 4 more trials

Data: `tfds.load("mnist")` (set TFDS_DATA_DIR to use a local copy). Validation is the last 10k
training images; the test split is only used for the final check of the pick.
Parallel trials: run the same command in several shells with KERASTUNER_TUNER_ID=chief /
tuner0 / tuner1 …, KERASTUNER_ORACLE_IP=127.0.0.1 and KERASTUNER_ORACLE_PORT=<port>.
"""

import functools
import os

import lilnetx_tf as lnx  # before TF: picks Keras 2, filters TF 2.21's start-up logs

from absl import app
from absl import flags

import tensorflow as tf

import common
from lilnetx_tf import models

FLAGS = flags.FLAGS
flags.DEFINE_integer("max_trials", 8, "Total trials of the project (resuming runs the rest).")
flags.DEFINE_enum("tuner", "random", ["random", "bayesian", "grid", "hyperband"],
                  "keras-tuner oracle.")
flags.DEFINE_integer("epochs", 1, "Training epochs per trial.")
flags.DEFINE_integer("batch_size", 128, "Batch size.")
flags.DEFINE_float("learning_rate", 3e-3, "Peak Adam learning rate (cosine schedule).")
flags.DEFINE_integer("train_examples", 20000, "Training images per trial (0 = all 50k).")
flags.DEFINE_integer("val_examples", 5000, "Validation images (0 = all 10k held out).")
flags.DEFINE_float("rate_min", 1e-3, "Smallest rate_weight (λ_I).")
flags.DEFINE_float("rate_max", 1.0, "Largest rate_weight (λ_I).")
flags.DEFINE_float("slice_min", 1e-4, "Smallest slice_weight (λ_G, per slice).")
flags.DEFINE_float("slice_max", 1.0, "Largest slice_weight (λ_G, per slice).")
flags.DEFINE_float("min_accuracy", 0.97, "Pick: smallest file with at least this val accuracy.")
flags.DEFINE_string("directory", "runs/tune_mnist", "keras-tuner directory (trial files, plot).")
flags.DEFINE_string("project_name", "lenet5", "keras-tuner project inside --directory.")
flags.DEFINE_bool("overwrite", False, "Start afresh instead of resuming the project.")
flags.DEFINE_integer("seed", 0, "Random seed (data order, tuner).")


def main(argv):
  del argv
  common.seed_everything(FLAGS.seed)
  train = common.image_dataset("mnist", "train[:50000]", FLAGS.batch_size, training=True,
                               take=FLAGS.train_examples or None)
  val = common.image_dataset("mnist", "train[50000:]", 1000, training=False,
                             take=FLAGS.val_examples or None)
  steps = int(train.cardinality()) * FLAGS.epochs

  def build(rate_weight, slice_weight):
    weights = dict(rate_weight=rate_weight, slice_weight=slice_weight)
    model = models.lenet5(conv_layer=functools.partial(lnx.Conv2D, **weights),
                          dense_layer=functools.partial(lnx.Dense, **weights))
    model.compile(optimizer=lnx.optimizers.Adam(
                      common.cosine_schedule(FLAGS.learning_rate, steps, steps // 20)),
                  loss=tf.keras.losses.SparseCategoricalCrossentropy(from_logits=True),
                  metrics=["accuracy"])
    return model

  result = lnx.tuning.search(
      build, x=train, validation_data=val, epochs=FLAGS.epochs, metric="accuracy",
      rate_weight=(FLAGS.rate_min, FLAGS.rate_max),
      slice_weight=(FLAGS.slice_min, FLAGS.slice_max), tuner=FLAGS.tuner,
      max_trials=FLAGS.max_trials, seed=FLAGS.seed, directory=FLAGS.directory,
      project_name=FLAGS.project_name, overwrite=FLAGS.overwrite, verbose=0)
  if not result.completed:  # A distributed-mode worker before the chief saved anything.
    print(result)
    return
  print(f"\n{result}\nAll trials:\n{result.table(result.trials)}")
  print(f"\nPareto front (val accuracy ↑, file bytes ↓, MACs ↓):\n{result.table()}")
  rule = f"smallest file with val accuracy ≥ {FLAGS.min_accuracy:g}"
  try:
    picked = result.pick(min_accuracy=FLAGS.min_accuracy)
  except lnx.tuning.NoMatchingTrialError as error:
    print(f"\n{error}")
    picked, rule = result.pick(minimize="error"), "most accurate trial (rule not met)"
  restored = lnx.decompress(picked.path)
  test = common.image_dataset("mnist", "test", 1000, training=False)
  print(f"\nPick ({rule}): trial "
        f"{picked.trial_id}, rate_weight {picked.rate_weight:.3g}, slice_weight "
        f"{picked.slice_weight:.3g}, {picked.bytes:,.0f} B, {picked.macs:,.0f} MACs, val "
        f"accuracy {picked.accuracy:.4f}, test accuracy of the decompressed file "
        f"{common.accuracy(restored, test):.4f}  ({picked.path})")
  path = result.plot(os.path.join(FLAGS.directory, f"{FLAGS.project_name}_front.png"),
                     pick=picked)
  print(f"Plot: {path}")


if __name__ == "__main__":
  app.run(main)
