"""Speed of compress/decompress on a ~25M-parameter lnx model, and LeNet-300-100's overhead.

Usage: PYTHONPATH=. .venv/bin/python benchmarks/coding_speed.py [--hidden=4096] [--repeats=2]

Big model: lnx.Dense 2048 -> 4096 -> 4096 -> 10 (25.2M latent parameters, untrained latents
from the LilNetX init). MB/s = 4 bytes per parameter (the float32 size of the weights) divided
by seconds, for the whole `lnx.compress` / `lnx.decompress` calls and for the latent code alone
(`latent_code.encode_group` / `decode_group`: flags, tables, range coding). Of `repeats` timed
calls after one warm-up, the fastest and the median wall time and the least CPU time (all
threads; on a shared machine it varies less than wall time) are reported. Where
tensorflow-compression is installed (the TF 2.14 configuration), the latent code is also run
with its range coder on the same tables and calls: coded bytes and time side by side.
LeNet-300-100 (lnx.Dense 784-300-100-10): bytes per section, i.e. the non-latent overhead.
"""

import os
import statistics
import tempfile
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import lilnetx_tf as lnx  # before TF: picks Keras 2, filters TF 2.21's start-up logs

from absl import app, flags
import numpy as np
import tensorflow as tf

from lilnetx_tf.coding import entropy, latent_code
from lilnetx_tf.stats import lilnetx_layers

try:
  from lilnetx_tf.coding import tfc_range
except ImportError:
  tfc_range = None

_HIDDEN = flags.DEFINE_integer("hidden", 4096, "Width of the big model's hidden layers.")
_REPEATS = flags.DEFINE_integer("repeats", 3, "Timed repetitions.")


def _timed(fn, repeats):
  """((fastest wall s, median wall s, least CPU s), the last result) of `repeats` calls."""
  walls, cpus, result = [], [], None
  for _ in range(repeats):
    wall, cpu = time.perf_counter(), time.process_time()
    result = fn()
    walls.append(time.perf_counter() - wall)
    cpus.append(time.process_time() - cpu)
  return (min(walls), statistics.median(walls), min(cpus)), result


def _row(name, times, mb, params=None):
  fastest, median, cpu = times
  rate = f"  ({params / fastest / 1e6:.1f} M latents/s)" if params else ""
  return (f"{name:24s} {fastest:6.2f} s  median {median:6.2f} s  CPU {cpu:6.2f} s  "
          f"{mb / fastest:6.1f} MB/s{rate}")


def lenet(directory):
  model = tf.keras.Sequential([tf.keras.Input((784,)), lnx.Dense(300, activation="relu"),
                               lnx.Dense(100, activation="relu"), lnx.Dense(10)])
  report = lnx.compress(model, os.path.join(directory, "lenet.lnx"))
  print("== LeNet-300-100 (untrained, 266,200 latents) ==")
  print(report)
  overhead = report.total_bytes - report.coded_latent_bytes
  print(f"non-latent overhead: {overhead:,} bytes = "
        + ", ".join(f"{s.tag} {s.file_bytes - (s.raw_bytes if s.tag == 'LATS' else 0):,}"
                    for s in report.sections) + f", header {report.header_bytes}")
  print()


def big(directory, hidden, repeats):
  model = tf.keras.Sequential([tf.keras.Input((2048,)), lnx.Dense(hidden), lnx.Dense(hidden),
                               lnx.Dense(10)])
  params = sum(int(np.prod(l.latent_variable.shape)) for l in lilnetx_layers(model))
  mb = 4 * params / 1e6
  path = os.path.join(directory, "big.lnx")
  print(f"== {params:,} latent parameters ({mb:.1f} MB as float32) ==")
  start = time.perf_counter()
  lnx.compress(model, path, estimate=False)
  print(f"first compress: {time.perf_counter() - start:.2f} s")
  t_compress, report = _timed(lambda: lnx.compress(model, path, estimate=False), repeats)
  t_decompress, restored = _timed(lambda: lnx.decompress(path), repeats)
  same = all(np.array_equal(a.integer_latent.numpy(), b.integer_latent.numpy())
             for a, b in zip(lilnetx_layers(model), lilnetx_layers(restored)))
  latents = [l.integer_latent.numpy() for l in lilnetx_layers(model)]
  shapes = [q.shape for q in latents]
  coders = [("", entropy.Encoder, entropy.Decoder)]
  if tfc_range is not None:
    coders.append((" (tfc coder)", tfc_range.Encoder, tfc_range.Decoder))
  rows, strings = [], []
  for label, encoder_class, decoder_class in coders:
    t_enc, (tables, string) = _timed(
        lambda: latent_code.encode_group(latents, 1, encoder_class=encoder_class), repeats)
    t_dec, _ = _timed(lambda: latent_code.decode_group(tables, string, shapes, "latents",
                                                       decoder_class), repeats)
    rows += [_row("latent encode" + label, t_enc, mb, params),
             _row("latent decode" + label, t_dec, mb, params)]
    strings.append(string)
  print(f"file: {report.total_bytes:,} bytes ({8 * report.coded_latent_bytes / params:.3f} "
        f"bits/latent); round trip bit-exact: {same}")
  print(_row("lnx.compress", t_compress, mb))
  print(_row("lnx.decompress", t_decompress, mb) + "  (includes rebuilding the Keras model)")
  print("\n".join(rows))
  if len(strings) == 2:
    ours, reference = (len(s) for s in strings)
    print(f"coded latents {ours:,} B; tensorflow-compression's coder, same tables and calls: "
          f"{reference:,} B ({100 * (ours - reference) / reference:+.4f} %)")


def main(argv):
  del argv
  directory = tempfile.mkdtemp()
  lenet(directory)
  big(directory, _HIDDEN.value, _REPEATS.value)


if __name__ == "__main__":
  app.run(main)
