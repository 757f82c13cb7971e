"""Graph size of one rate evaluation: `ParameterGroup.bits` vs tfc's `log_prob`, with gradient.

Usage: PYTHONPATH=. .venv/bin/python benchmarks/rate_graph_size.py

Traces, for a 1-, 9- and 49-channel group, the bits of a (2048, channels) sample and their
gradient with respect to the density's variables, and prints the number of graph operations
and the time to trace and run once. Tracing cost is what made a deep model's first training
step and `lnx.convert`'s density fit slow. The tfc column needs tensorflow-compression (the TF
2.14 configuration); elsewhere it shows "-".
"""

import math
import os
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import lilnetx_tf as lnx  # before TF: picks Keras 2, filters TF 2.21's start-up logs

import tensorflow as tf


try:
  import tensorflow_compression as tfc
except ImportError:
  tfc = None


def measure(variables, channels: int, bits) -> tuple[int, float]:
  variables = list(variables)

  @tf.function
  def gradient(sample):
    with tf.GradientTape() as tape:
      tape.watch(variables)
      total = tf.reduce_sum(bits(sample))
    return tape.gradient(total, variables)

  sample = tf.random.normal((2048, channels))
  start = time.perf_counter()
  graph = gradient.get_concrete_function(sample).graph
  gradient(sample)
  return len(graph.get_operations()), time.perf_counter() - start


def main():
  print("channels  tfc ops  own ops  tfc s  own s")
  for channels in (1, 9, 49):
    group = lnx.ParameterGroup(channels)
    group.build(None)
    own_ops, own_s = measure(group.density_variables, channels, group.bits)
    tfc_ops, tfc_s = "-", "-"
    if tfc is not None:
      reference = tfc.NoisyDeepFactorized(batch_shape=(channels,))
      tfc_ops, tfc_s = measure(reference.variables, channels,
                               lambda z: -reference.log_prob(z) / math.log(2.0))
      tfc_s = f"{tfc_s:.2f}"
    print(f"{channels:8d}  {tfc_ops:>7}  {own_ops:7d}  {tfc_s:>5}  {own_s:5.2f}")


if __name__ == "__main__":
  main()
