"""Time of `lnx.convert` on Keras applications, split into cloning and density fit.

Usage: PYTHONPATH=. .venv/bin/python benchmarks/convert_speed.py [--models=ResNet50,...]

Each application is built with `weights=None` at 32×32×3 and 10 classes (building is not
timed). Per model: the whole `lnx.convert(model)` call with its defaults (clone, copy weights,
warm start, density fit), the same with `density_fit_steps=0`, and the model's estimated
latent bytes under the unfitted and fitted densities next to the latents' empirical entropy
(per slice position, i.i.d.): the ideal a factorized density can reach.
"""

import os
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import lilnetx_tf as lnx  # before TF: picks Keras 2, filters TF 2.21's start-up logs

from absl import app, flags
import numpy as np
import tensorflow as tf

from lilnetx_tf.layers.group import members_by_group
from lilnetx_tf.stats import lilnetx_layers

_MODELS = flags.DEFINE_list("models", ["ResNet50", "MobileNetV2", "EfficientNetB0",
                                       "DenseNet121"], "tf.keras.applications to convert.")


def empirical_bytes(model: tf.keras.Model) -> float:
  """Σ over groups and slice positions of the integer latents' empirical entropy, in bytes."""
  bits = 0.0
  for group, members in members_by_group(lilnetx_layers(model)):
    rows = np.concatenate([l.integer_latent.numpy().reshape(-1, group.slice_size)
                           for l in members])
    for column in rows.T:
      _, counts = np.unique(column, return_counts=True)
      bits -= float(np.sum(counts * np.log2(counts / counts.sum())))
  return bits / 8


def timed_convert(model: tf.keras.Model, **kwargs) -> tuple:
  start = time.perf_counter()
  converted = lnx.convert(model, **kwargs)
  return time.perf_counter() - start, converted


def main(argv):
  del argv
  rows = [("model", "parameters", "convert s", "no fit s", "bytes unfitted", "bytes fitted",
           "empirical")]
  for name in _MODELS.value:
    tf.keras.backend.clear_session()
    model = getattr(tf.keras.applications, name)(weights=None, input_shape=(32, 32, 3),
                                                  classes=10)
    no_fit_seconds, unfitted = timed_convert(model, density_fit_steps=0)
    seconds, converted = timed_convert(model)
    rows.append((name, f"{model.count_params():,}", f"{seconds:.1f}", f"{no_fit_seconds:.1f}",
                 f"{lnx.stats(unfitted)['bytes']:,.0f}", f"{lnx.stats(converted)['bytes']:,.0f}",
                 f"{empirical_bytes(converted):,.0f}"))
    print(rows[-1], flush=True)
  widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
  print()
  for r in rows:
    print("  ".join(c.rjust(w) for c, w in zip(r, widths)))


if __name__ == "__main__":
  app.run(main)
