"""What the plain-twin benchmarks share: the int8 TFLite bytes of the plain model, the `.lnx`
of the LilNetX twin (float16 floats, 5 mantissa bits), its slim model, the batch-1 latency of
the plain and slim float32 TFLite files and the table rows that set them side by side.

Used by `transformer_text.py` and `xception_cifar10.py` (import it from `benchmarks/`).
"""

import dataclasses
import os

import tensorflow as tf

import lilnetx_tf as lnx
from lilnetx_tf import text_table
from lilnetx_tf.export import slimming
from lilnetx_tf.export import tflite as tflite_lib

__all__ = ["Twin", "int8_bytes", "compress_and_slim", "table", "latency_line"]


@dataclasses.dataclass
class Twin:
  """The LilNetX twin after training: its file, slim model and TFLite latencies (ms)."""
  path: str
  lnx_bytes: int
  small: tf.keras.Model
  latency: dict


def int8_bytes(plain: tf.keras.Model, representative) -> int:
  """Bytes of the plain model's int8 TFLite file, calibrated on `representative` inputs."""
  return len(tflite_lib.convert(plain, "int8", representative))


def compress_and_slim(model: tf.keras.Model, out: str, runs: int = 200) -> Twin:
  """Writes `out`/model.lnx (printing the compress report), slims `model` and times the plain
  (decoded, nothing removed) and slim float32 TFLite files at batch 1."""
  path = os.path.join(out, "model.lnx")
  print(lnx.compress(model, path, float16=True, mantissa_bits=5))
  small = lnx.slim(model)
  dense = slimming.slim(model, check=False, fold_batchnorm=False, remove_channels=False)
  latency = tflite_lib.median_latencies(
      {"plain": tflite_lib.convert(dense), "slim": tflite_lib.convert(small)}, runs=runs)
  return Twin(path, os.path.getsize(path), small, latency)


def table(plain_accuracy: float, int8: int, accuracy: float, lnx_bytes: int) -> str:
  """The plain int8 TFLite row and the `.lnx` row: accuracy, bytes, how many times smaller."""
  rows = [("", "accuracy", "bytes", "int8 tflite / bytes"),
          ("plain int8 TFLite", f"{plain_accuracy:.4f}", f"{int8:,}", "1.0"),
          (".lnx (lnx.convert)", f"{accuracy:.4f}", f"{lnx_bytes:,}", f"{int8 / lnx_bytes:.1f}")]
  return "\n".join(text_table.format_table(rows))


def latency_line(latency: dict, what: str) -> str:
  """The plain and slim latencies with the load average they were measured under."""
  return (f"batch-1 float32 TFLite latency (ms, {what}): plain {latency['plain']:.3f}, "
          f"slim {latency['slim']:.3f}; load average {os.getloadavg()[0]:.2f}")
