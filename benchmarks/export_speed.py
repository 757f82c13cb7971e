"""TFLite latency of dense vs slim ResNet-20 at several channel sparsities, next to MAC ratios.

    PYTHONPATH=. .venv/bin/python benchmarks/export_speed.py [--sparsities=0.25,0.5,0.75]
        [--runs=200] [--threads=1,2] [--width=1]

For each sparsity p, a fraction p of the output channels of every conv of a LilNetX ResNet-20
(models.resnet20) is zeroed (latents set to 0; the same channels on both sides of each residual
Add, so the residual stream shrinks too), the model is slimmed with `lnx.slim`, and both the
dense plain twin and the slim model are converted to float32 TFLite. Batch-1 latencies are the
median of `runs` invoke()s per model, dense and slim interleaved in blocks of 10 in the same
process. Target: speedup ≥ 0.8 × MAC ratio wherever the MAC ratio is ≥ 1.5.
"""

import argparse

import lilnetx_tf as lnx  # before TF: picks Keras 2, filters TF 2.21's start-up logs

import numpy as np
import tensorflow as tf

from lilnetx_tf import macs
from lilnetx_tf import models
from lilnetx_tf.export import slimming
from lilnetx_tf.export import tflite as tflite_lib


def zeroed_resnet20(sparsity: float, width: float, seed: int = 0) -> tf.keras.Model:
  rng = np.random.default_rng(seed)
  model = models.resnet20(width=width)
  stream = {}   # residual stream width -> dead channels shared by every conv writing to it
  for layer in model.layers:
    if not lnx.is_lilnetx_layer(layer) or isinstance(layer, tf.keras.layers.Dense):
      continue
    latent = layer.latent_variable.numpy()
    n = latent.shape[1]
    on_stream = layer.name.endswith(("_2_conv", "shortcut_conv")) or layer.name == "stem_conv"
    if on_stream:
      dead = stream.setdefault(n, rng.permutation(n)[:int(round(sparsity * n))])
    else:
      dead = rng.permutation(n)[:int(round(sparsity * n))]
    latent[:, dead] = 0
    layer.latent_variable.assign(latent)
  return model


def main():
  parser = argparse.ArgumentParser()
  parser.add_argument("--sparsities", default="0.25,0.5,0.75")
  parser.add_argument("--runs", type=int, default=200)
  parser.add_argument("--threads", default="1,2")
  parser.add_argument("--width", type=float, default=1)
  args = parser.parse_args()
  rows = []
  for p in [float(s) for s in args.sparsities.split(",")]:
    model = zeroed_resnet20(p, args.width)
    dense = slimming.slim(model, check=False, fold_batchnorm=False, remove_channels=False)
    slim = lnx.slim(model)
    mac_ratio = macs.model_macs(dense) / macs.model_macs(slim)
    contents = {"dense": tflite_lib.convert(dense), "slim": tflite_lib.convert(slim)}
    for threads in [int(t) for t in args.threads.split(",")]:
      med = tflite_lib.median_latencies(contents, args.runs, threads)
      speedup = med["dense"] / med["slim"]
      rows.append((p, threads, mac_ratio, med["dense"], med["slim"], speedup,
                   speedup / mac_ratio, len(contents["dense"]), len(contents["slim"])))
      print(rows[-1], flush=True)
  print()
  print("| sparsity | threads | MAC ratio | dense ms | slim ms | speedup | speedup/MAC ratio "
        "| dense KiB | slim KiB |")
  print("|---|---|---|---|---|---|---|---|---|")
  for p, t, mr, d, s, sp, eff, db, sb in rows:
    flag = "" if mr < 1.5 else (" ✓" if eff >= 0.8 else " ✗")
    print(f"| {p:.2f} | {t} | {mr:.2f} | {d:.3f} | {s:.3f} | {sp:.2f} | {eff:.2f}{flag} "
          f"| {db / 1024:.0f} | {sb / 1024:.0f} |")


if __name__ == "__main__":
  main()
