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
flags.DEFINE_enum("model", "lenet5", ["lenet5", "lenet300_100"], "Architecture.")
common.define_flags(epochs=10, rate_weight=0.3, output_dir="runs/mnist")
flags.adopt_module_key_flags(common)


def build_model() -> tf.keras.Model:
  """The network in plain Keras layers, in LilNetX layers, or (--init_from) a trained plain
  network converted to LilNetX layers with its weights as the starting point."""
  builder = models.lenet5 if FLAGS.model == "lenet5" else models.lenet300_100
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
                                    warmup_steps=steps * FLAGS.epochs // 20)
  model.compile(  # lnx.optimizers.Adam: larger steps on the latents if asked
      optimizer=lnx.optimizers.Adam(schedule, latent_lr_multiplier=FLAGS.latent_lr_multiplier),
      loss=tf.keras.losses.SparseCategoricalCrossentropy(from_logits=True),
      metrics=["accuracy"])
  callbacks = []
  if FLAGS.layers == "lnx":
    callbacks.append(lnx.callbacks.CompressionMetrics())   # bytes, sparsity, MACs per epoch
    penalty = common.penalty_schedule(steps)              # the penalty flags' ramp, if any
    if penalty is not None:
      callbacks.append(lnx.callbacks.PenaltySchedule(penalty))
  model.fit(data, epochs=FLAGS.epochs, validation_data=test, verbose=2, callbacks=callbacks)


def main(argv):
  del argv
  common.seed_everything(FLAGS.seed)
  data = common.image_dataset("mnist", "train", FLAGS.batch_size, training=True,
                              take=FLAGS.train_examples or None)
  test = common.image_dataset("mnist", "test", 1000, training=False)
  config = common.run_config(model=FLAGS.model, train_examples=FLAGS.train_examples or 60_000)
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
