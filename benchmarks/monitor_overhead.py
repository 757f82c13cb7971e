"""Step time of a LilNetX model with and without `lnx.monitor` (the task-loss, penalty and
class-share metrics and the guard that `lnx.convert` attaches).

    PYTHONPATH=. python benchmarks/monitor_overhead.py --rounds=3 --steps=50

Two identical hand-built LilNetX MLPs on random MNIST-shaped data, one monitored; each round
times `fit` over `--steps` batches of 128 for both, in alternating order; prints the median
milliseconds per step of each and their ratio.
"""

import argparse
import os
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import lilnetx_tf as lnx  # before TF: picks Keras 2, filters TF 2.21's start-up logs

import numpy as np
import tensorflow as tf


def model(monitored: bool):
  tf.keras.utils.set_random_seed(0)
  m = tf.keras.Sequential([tf.keras.Input((784,)), lnx.Dense(300, activation="relu"),
                           lnx.Dense(100, activation="relu"), lnx.Dense(10)])
  if monitored:
    lnx.monitor(m)
  m.compile("adam", tf.keras.losses.SparseCategoricalCrossentropy(from_logits=True),
            metrics=["accuracy"])
  return m


def main():
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--rounds", type=int, default=3)
  parser.add_argument("--steps", type=int, default=50)
  args = parser.parse_args()
  rng = np.random.default_rng(0)
  x = rng.random((128 * args.steps, 784), dtype=np.float32)
  y = rng.integers(0, 10, len(x))
  models = {"plain_lnx": model(False), "monitored": model(True)}
  for m in models.values():
    m.fit(x[:256], y[:256], batch_size=128, epochs=1, verbose=0)   # trace
  times = {k: [] for k in models}
  for r in range(args.rounds):
    for name in (list(models) if r % 2 == 0 else list(models)[::-1]):
      start = time.perf_counter()
      models[name].fit(x, y, batch_size=128, epochs=1, verbose=0)
      times[name].append(1000 * (time.perf_counter() - start) / args.steps)
  median = {k: float(np.median(v)) for k, v in times.items()}
  for k, v in times.items():
    print(f"{k:10s} median {median[k]:7.2f} ms/step  rounds {[round(t, 2) for t in v]}")
  print(f"ratio monitored / unmonitored: {median['monitored'] / median['plain_lnx']:.3f}")


if __name__ == "__main__":
  main()
