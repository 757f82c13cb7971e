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

import lilnetx_tf as lnx  # before TF: picks Keras 2, filters TF 2.21's start-up logs

from absl import app
from absl import flags
import tensorflow as tf

import common
from lilnetx_tf import models
import report

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
  """The network in plain Keras layers, in LilNetX layers (all sharing the flags' arguments),
  or (--init_from) a trained plain network converted, warm-started from its weights."""
  builder = functools.partial(_BUILDERS[FLAGS.model], width=FLAGS.width)
  if FLAGS.model != "vgg16":
    builder = functools.partial(builder, shortcut=FLAGS.shortcut)
  if FLAGS.layers == "plain":
    return builder(layers="plain")
  lilnetx = common.lilnetx_arguments()
  if FLAGS.init_from:
    dense = common.dense_model(builder, FLAGS.init_from)
    return lnx.convert(dense, warm_start=True,
                       warm_start_resolution=FLAGS.warm_start_resolution, **lilnetx)
  return builder(conv_layer=functools.partial(lnx.Conv2D, **lilnetx),
                 dense_layer=functools.partial(lnx.Dense, **lilnetx))


def train(model: tf.keras.Model, data: tf.data.Dataset, test: tf.data.Dataset) -> None:
  steps = int(data.cardinality())
  schedule = common.cosine_schedule(FLAGS.learning_rate, steps * FLAGS.epochs,
                                    warmup_steps=int(steps * FLAGS.warmup_epochs))
  model.compile(  # lnx.optimizers.Adam: larger steps on the latents if asked
      optimizer=lnx.optimizers.Adam(schedule, latent_lr_multiplier=FLAGS.latent_lr_multiplier),
      loss=tf.keras.losses.SparseCategoricalCrossentropy(from_logits=True),
      metrics=["accuracy"])
  callbacks = [tf.keras.callbacks.BackupAndRestore(os.path.join(FLAGS.output_dir, "backup")),
               tf.keras.callbacks.TensorBoard(os.path.join(FLAGS.output_dir, "logs"))]
  if FLAGS.layers == "lnx":
    callbacks.append(lnx.callbacks.CompressionMetrics())   # bytes, sparsity, MACs per epoch
    penalty = common.penalty_schedule(steps)              # the penalty flags' ramp, if any
    if penalty is not None:
      callbacks.append(lnx.callbacks.PenaltySchedule(penalty))
  model.fit(data, epochs=FLAGS.epochs, validation_data=test, verbose=2, callbacks=callbacks)


def main(argv):
  del argv
  common.seed_everything(FLAGS.seed)
  data = common.image_dataset("cifar10", "train", FLAGS.batch_size, training=True,
                              augment=True, take=FLAGS.train_examples or None)
  test = common.image_dataset("cifar10", "test", 500, training=False)
  config = common.run_config(model=FLAGS.model, width=FLAGS.width, shortcut=FLAGS.shortcut,
                             train_examples=FLAGS.train_examples or 50_000)
  if FLAGS.finish_only:
    model = common.load_trained(FLAGS.output_dir)
  else:
    model = build_model()
    _, seconds = common.timed(train, model, data, test)
    config["train_minutes_this_run"] = round(seconds / 60, 1)
    common.save_trained(model, FLAGS.output_dir)
  if FLAGS.layers == "plain":
    report.baseline(model, test, FLAGS.output_dir, config)
    return

  path = os.path.join(FLAGS.output_dir, "model.lnx")
  written, compress_seconds = common.timed(lnx.compress, model, path, **common.file_options())
  restored, decompress_seconds = common.timed(lnx.decompress, path)   # bit-identical weights
  exported = None
  if FLAGS.export:   # slim SavedModel + TFLite: dead channels removed, BatchNorm folded
    exported = lnx.export(restored, os.path.join(FLAGS.output_dir, "export"),
                          inputs=[next(iter(test))[0][:8].numpy()], overwrite=True)
  report.lilnetx(model, restored, written, exported, test, FLAGS.output_dir, config,
                 (compress_seconds, decompress_seconds))


if __name__ == "__main__":
  app.run(main)
