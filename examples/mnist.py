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
common.define_flags(epochs=10, rate_weight=0.3, output_dir="runs/mnist")
flags.adopt_module_key_flags(common)


def build_model() -> tf.keras.Model:
  builder = models.lenet5 if FLAGS.model == "lenet5" else models.lenet300_100
  return common.build_model(builder)


def main(argv):
  del argv
  common.seed_everything(FLAGS.seed)
  train = common.image_dataset("mnist", "train", FLAGS.batch_size, training=True,
                               take=FLAGS.train_examples or None)
  test = common.image_dataset("mnist", "test", 1000, training=False)
  config = common.run_config(model=FLAGS.model,
                             train_examples=FLAGS.train_examples or 60_000)
  common.train_and_report(
      build_model(), train, test, epochs=FLAGS.epochs, learning_rate=FLAGS.learning_rate,
      warmup_steps=int(train.cardinality()) * FLAGS.epochs // 20, output_dir=FLAGS.output_dir,
      config=config, lilnetx=FLAGS.layers == "lnx", export=FLAGS.export,
      finish_only=FLAGS.finish_only, file_options=common.file_options(),
      penalty_factor=common.penalty_schedule(int(train.cardinality())),
      latent_lr_multiplier=FLAGS.latent_lr_multiplier)


if __name__ == "__main__":
  app.run(main)
