"""LilNetX on MNIST: LeNet-300-100 and LeNet5-Caffe, trained, compressed, decoded and exported.

  python examples/mnist.py --model=lenet5 --epochs=20
  python examples/mnist.py --model=lenet300_100 --epochs=30 --rate_weight=1.0
  python examples/mnist.py --model=lenet5 --layers=plain    # the dense baseline, same budget

The data comes from `tfds.load("mnist")` (set TFDS_DATA_DIR to use a local copy). The run ends
with one table (also written to OUTPUT_DIR/summary.json): accuracy of the trained and of the
decompressed model, file size, sparsity, MACs, and the slim TFLite export with its latency.
With --layers=plain the same network in stock Keras layers is trained with the same budget and
the table gives what a user would otherwise ship: Keras weights and float32 / float16 / int8
TFLite sizes (also gzipped) with their accuracies.
"""


from absl import app
from absl import flags

import tensorflow as tf

import common
from lilnetx_tf import models

FLAGS = flags.FLAGS
flags.DEFINE_enum("model", "lenet5", ["lenet5", "lenet300_100"], "Architecture.")
flags.DEFINE_enum("layers", "lnx", ["lnx", "plain"], "LilNetX layers, or the dense baseline.")
flags.DEFINE_integer("epochs", 10, "Training epochs.")
flags.DEFINE_integer("batch_size", 128, "Batch size.")
flags.DEFINE_float("learning_rate", 3e-3, "Peak Adam learning rate (cosine schedule).")
flags.DEFINE_float("rate_weight", 0.3, "λ_I: task-loss price of one bit per slice.")
flags.DEFINE_float("slice_weight", 1e-5, "λ_G: weight of the sum of slice L2 norms.")
flags.DEFINE_float("boundary", 1.0, "Latent init bound of each group's largest-fan layer.")
flags.DEFINE_integer("train_examples", 0, "Use only this many training examples (0 = all).")
flags.DEFINE_bool("float16", False, "Store biases and BatchNorm as float16 in the .lnx file.")
flags.DEFINE_bool("export", True, "Export slim SavedModel and TFLite at the end.")
flags.DEFINE_string("output_dir", "runs/mnist", "Where the .lnx file and exports go.")
flags.DEFINE_integer("seed", 0, "Random seed.")


def build_model() -> tf.keras.Model:
  builder = models.lenet5 if FLAGS.model == "lenet5" else models.lenet300_100
  return common.build_model(builder, FLAGS.layers, rate_weight=FLAGS.rate_weight,
                            slice_weight=FLAGS.slice_weight, boundary=FLAGS.boundary)


def main(argv):
  del argv
  common.seed_everything(FLAGS.seed)
  train = common.image_dataset("mnist", "train", FLAGS.batch_size, training=True,
                               take=FLAGS.train_examples or None)
  test = common.image_dataset("mnist", "test", 1000, training=False)
  config = dict(model=FLAGS.model, layers=FLAGS.layers, epochs=FLAGS.epochs,
                train_examples=FLAGS.train_examples or 60_000)
  if FLAGS.layers == "lnx":
    config.update(rate_weight=FLAGS.rate_weight, slice_weight=FLAGS.slice_weight,
                  boundary=FLAGS.boundary)
  common.train_and_report(
      build_model(), train, test, epochs=FLAGS.epochs, learning_rate=FLAGS.learning_rate,
      warmup_steps=int(train.cardinality()) * FLAGS.epochs // 20, output_dir=FLAGS.output_dir,
      config=config, lilnetx=FLAGS.layers == "lnx", export=FLAGS.export, float16=FLAGS.float16)


if __name__ == "__main__":
  app.run(main)
