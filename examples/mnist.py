"""LilNetX on MNIST: LeNet-300-100 and LeNet5-Caffe, trained, compressed, decoded and exported.

  python examples/mnist.py --model=lenet5 --epochs=20
  python examples/mnist.py --model=lenet300_100 --epochs=30 --rate_weight=1.0

The data comes from `tfds.load("mnist")` (set TFDS_DATA_DIR to use a local copy). The run ends
with one table: accuracy of the trained and of the decompressed model, file size, sparsity,
MACs, and the slim TFLite export.
"""

import functools

from absl import app
from absl import flags

import tensorflow as tf

import common
import lilnetx_tf as lnx
from lilnetx_tf import models

FLAGS = flags.FLAGS
flags.DEFINE_enum("model", "lenet5", ["lenet5", "lenet300_100"], "Architecture.")
flags.DEFINE_integer("epochs", 10, "Training epochs.")
flags.DEFINE_integer("batch_size", 128, "Batch size.")
flags.DEFINE_float("learning_rate", 3e-3, "Peak Adam learning rate (cosine schedule).")
flags.DEFINE_float("rate_weight", 0.3, "λ_I: task-loss price of one bit per slice.")
flags.DEFINE_float("slice_weight", 1e-4, "λ_G: weight of the sum of slice L2 norms.")
flags.DEFINE_float("boundary", 1.0, "Latent init bound of each group's largest-fan layer.")
flags.DEFINE_integer("train_examples", 0, "Use only this many training examples (0 = all).")
flags.DEFINE_bool("export", True, "Export slim SavedModel and TFLite at the end.")
flags.DEFINE_string("output_dir", "runs/mnist", "Where the .lnx file and exports go.")
flags.DEFINE_integer("seed", 0, "Random seed.")


def build_model() -> tf.keras.Model:
  lilnetx = dict(rate_weight=FLAGS.rate_weight, slice_weight=FLAGS.slice_weight,
                 boundary=FLAGS.boundary)
  builder = models.lenet5 if FLAGS.model == "lenet5" else models.lenet300_100
  return builder(conv_layer=functools.partial(lnx.Conv2D, **lilnetx),
                 dense_layer=functools.partial(lnx.Dense, **lilnetx))


def main(argv):
  del argv
  common.seed_everything(FLAGS.seed)
  train = common.image_dataset("mnist", "train", FLAGS.batch_size, training=True,
                               take=FLAGS.train_examples or None)
  test = common.image_dataset("mnist", "test", 1000, training=False)
  steps = int(train.cardinality()) * FLAGS.epochs
  model = build_model()
  model.compile(optimizer=common.adam_cosine(FLAGS.learning_rate, steps, steps // 20),
                loss=tf.keras.losses.SparseCategoricalCrossentropy(from_logits=True),
                metrics=["accuracy"])
  model.fit(train, epochs=FLAGS.epochs, validation_data=test, verbose=2,
            callbacks=[lnx.callbacks.CompressionMetrics()])
  common.finish(model, test, FLAGS.output_dir, export=FLAGS.export,
                extra_rows={"model": FLAGS.model, "epochs": FLAGS.epochs,
                            "rate_weight / slice_weight":
                                f"{FLAGS.rate_weight:g} / {FLAGS.slice_weight:g}"})


if __name__ == "__main__":
  app.run(main)
