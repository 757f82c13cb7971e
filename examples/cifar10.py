"""LilNetX on CIFAR-10: ResNet-20 / ResNet-56 / VGG-16, trained, compressed, decoded, exported.

  python examples/cifar10.py --model=resnet20                 # 6 epochs, under 1 h on 2 CPU cores
  python examples/cifar10.py --model=resnet20 --layers=plain  # dense baseline, same budget
  python examples/cifar10.py --model=resnet20 --width=4 --epochs=200     # on an accelerator

The data comes from `tfds.load("cifar10")` (set TFDS_DATA_DIR to use a local copy), with the
standard augmentation (4-pixel pad, random 32×32 crop, horizontal flip). Adam with a linear
warm-up and cosine decay; LilNetX figures (estimated bytes, sparsity, MACs) are added to every
epoch's logs, so they show in the progress bar and in TensorBoard (OUTPUT_DIR/logs). Training
resumes from OUTPUT_DIR/backup at the last finished epoch when the same command is run again
(`tf.keras.callbacks.BackupAndRestore`). The run ends with one table (and
OUTPUT_DIR/summary.json): see examples/mnist.py.
"""

import functools
import os

from absl import app
from absl import flags

import tensorflow as tf

import common
from lilnetx_tf import models

FLAGS = flags.FLAGS
flags.DEFINE_enum("model", "resnet20", ["resnet20", "resnet56", "vgg16"], "Architecture.")
flags.DEFINE_float("width", 1.0, "Channel width multiplier.")
flags.DEFINE_enum("shortcut", "projection", ["projection", "zero_pad"],
                  "ResNet shortcuts where the width changes: 1x1 conv + BN (option B) or "
                  "parameter-free subsampling and zero channel padding (option A).")
flags.DEFINE_float("warmup_epochs", 1.0, "Linear warm-up before the cosine decay.")
common.define_flags(epochs=6, rate_weight=0.05, output_dir="runs/cifar10")
flags.adopt_module_key_flags(common)

_BUILDERS = dict(resnet20=models.resnet20, resnet56=models.resnet56,
                 vgg16=models.vgg16_cifar)


def build_model() -> tf.keras.Model:
  builder = functools.partial(_BUILDERS[FLAGS.model], width=FLAGS.width)
  if FLAGS.model != "vgg16":
    builder = functools.partial(builder, shortcut=FLAGS.shortcut)
  return common.build_model(builder)


def main(argv):
  del argv
  common.seed_everything(FLAGS.seed)
  train = common.image_dataset("cifar10", "train", FLAGS.batch_size, training=True,
                               augment=True, take=FLAGS.train_examples or None)
  test = common.image_dataset("cifar10", "test", 500, training=False)
  config = common.run_config(model=FLAGS.model, width=FLAGS.width, shortcut=FLAGS.shortcut,
                             train_examples=FLAGS.train_examples or 50_000)
  common.train_and_report(
      build_model(), train, test, epochs=FLAGS.epochs, learning_rate=FLAGS.learning_rate,
      warmup_steps=int(int(train.cardinality()) * FLAGS.warmup_epochs),
      output_dir=FLAGS.output_dir, config=config, lilnetx=FLAGS.layers == "lnx",
      extra_callbacks=[
          tf.keras.callbacks.BackupAndRestore(os.path.join(FLAGS.output_dir, "backup")),
          tf.keras.callbacks.TensorBoard(os.path.join(FLAGS.output_dir, "logs"))],
      export=FLAGS.export, finish_only=FLAGS.finish_only,
      file_options=common.file_options(),
      penalty_factor=common.penalty_schedule(int(train.cardinality())),
      latent_lr_multiplier=FLAGS.latent_lr_multiplier)


if __name__ == "__main__":
  app.run(main)
