"""Size and accuracy of one trained model's .lnx file under several `lnx.compress` options.

    TFDS_DATA_DIR=... PYTHONPATH=. .venv/bin/python benchmarks/file_options.py \
        --model=runs/rate_accuracy/rate_1/trained.keras --dataset=mnist \
        --options="float16=True;float_bits=8;float_bits=6" --inference_only

For each option set (`;`-separated, each a `,`-separated list of key=value), the model is
compressed, decompressed and evaluated on the test split: the table gives file bytes,
parameter bytes, the WGTS section and the decompressed model's accuracy, next to the trained
model's own accuracy.
"""

import ast
import os
import tempfile

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import lilnetx_tf as lnx  # before TF: picks Keras 2, filters TF 2.21's start-up logs

from absl import app, flags
import numpy as np
import tensorflow as tf
import tensorflow_datasets as tfds


_MODEL = flags.DEFINE_string("model", None, "Trained Keras model (.keras).", required=True)
_DATASET = flags.DEFINE_enum("dataset", "mnist", ["mnist", "cifar10"], "TFDS test split.")
_OPTIONS = flags.DEFINE_string("options", "float16=True;float_bits=8",
                               "Option sets, ';'-separated; each 'key=value,...'.")
_INFERENCE_ONLY = flags.DEFINE_bool("inference_only", True, "Add inference_only=True.")


def _parse(text: str) -> dict:
  pairs = [item.split("=", 1) for item in text.split(",") if item.strip()]
  return {key.strip(): ast.literal_eval(value.strip()) for key, value in pairs}


def _accuracy(model: tf.keras.Model, dataset: tf.data.Dataset) -> float:
  correct = total = 0
  for x, y in dataset:
    predicted = np.argmax(model(x, training=False).numpy(), axis=-1)
    correct += int(np.sum(predicted == y.numpy()))
    total += len(predicted)
  return correct / total


def main(argv):
  del argv
  test = tfds.load(_DATASET.value, split="test", as_supervised=True)
  test = test.map(lambda x, y: (tf.cast(x, tf.float32) / 255.0, y)).batch(500)
  model = tf.keras.models.load_model(_MODEL.value)
  print(f"trained model: accuracy {_accuracy(model, test):.4f}")
  path = os.path.join(tempfile.mkdtemp(), "model.lnx")
  print("| options | file bytes | parameter bytes | WGTS bytes | accuracy (decompressed) |")
  print("|---|---|---|---|---|")
  for text in _OPTIONS.value.split(";"):
    options = {**_parse(text), "inference_only": _INFERENCE_ONLY.value}
    report = lnx.compress(model, path, estimate=False, **options)
    accuracy = _accuracy(lnx.decompress(path), test)
    print(f"| {text} | {report.total_bytes:,} | {report.parameter_bytes:,} | "
          f"{report.section('WGTS').file_bytes:,} | {accuracy:.4f} |")


if __name__ == "__main__":
  app.run(main)
