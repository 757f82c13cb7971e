"""Speed of compress/decompress on a ~25M-parameter lnx model, and LeNet-300-100's overhead.

Usage: PYTHONPATH=. .venv/bin/python benchmarks/coding_speed.py [--hidden=4096] [--repeats=2]

Big model: lnx.Dense 2048 -> 4096 -> 4096 -> 10 (25.2M latent parameters, untrained latents
from the LilNetX init). MB/s = 4 bytes per parameter (the float32 size of the weights) divided
by seconds, for the whole `lnx.compress` / `lnx.decompress` calls and for the latent code alone
(`latent_code.encode_group` / `decode_group`: flags, tables, range coding). The best of
`repeats` timed calls is reported after one warm-up.
LeNet-300-100 (lnx.Dense 784-300-100-10): bytes per section, i.e. the non-latent overhead.
"""

import os
import tempfile
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

from absl import app, flags
import numpy as np
import tensorflow as tf

import lilnetx_tf as lnx
from lilnetx_tf.coding import latent_code
from lilnetx_tf.stats import lilnetx_layers

_HIDDEN = flags.DEFINE_integer("hidden", 4096, "Width of the big model's hidden layers.")
_REPEATS = flags.DEFINE_integer("repeats", 2, "Timed repetitions (best is reported).")


def _best(fn, repeats):
  times, result = [], None
  for _ in range(repeats):
    start = time.perf_counter()
    result = fn()
    times.append(time.perf_counter() - start)
  return min(times), result


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
  t_compress, report = _best(lambda: lnx.compress(model, path, estimate=False), repeats)
  t_decompress, restored = _best(lambda: lnx.decompress(path), repeats)
  same = all(np.array_equal(a.integer_latent.numpy(), b.integer_latent.numpy())
             for a, b in zip(lilnetx_layers(model), lilnetx_layers(restored)))
  latents = [l.integer_latent.numpy() for l in lilnetx_layers(model)]
  t_enc, (tables, string) = _best(lambda: latent_code.encode_group(latents, 1), repeats)
  t_dec, _ = _best(lambda: latent_code.decode_group(
      tables, string, [q.shape for q in latents], "latents"), repeats)
  print(f"file: {report.total_bytes:,} bytes ({8 * report.coded_latent_bytes / params:.3f} "
        f"bits/latent); round trip bit-exact: {same}")
  print(f"lnx.compress   {t_compress:6.2f} s  {mb / t_compress:7.1f} MB/s")
  print(f"lnx.decompress {t_decompress:6.2f} s  {mb / t_decompress:7.1f} MB/s "
        "(includes rebuilding the Keras model)")
  print(f"latent encode  {t_enc:6.2f} s  {mb / t_enc:7.1f} MB/s  ({params / t_enc / 1e6:.1f} M latents/s)")
  print(f"latent decode  {t_dec:6.2f} s  {mb / t_dec:7.1f} MB/s  ({params / t_dec / 1e6:.1f} M latents/s)")


def main(argv):
  del argv
  directory = tempfile.mkdtemp()
  lenet(directory)
  big(directory, _HIDDEN.value, _REPEATS.value)


if __name__ == "__main__":
  app.run(main)
