"""SIGKILL `compress` and `export` at random moments: the target must stay whole, debris must go.

Usage: PYTHONPATH=. .venv/bin/python benchmarks/kill_writes.py [--kills=20] [--seed=0]
       [--kind=compress|export] [--units=1024] [--write_delay=0.5]

A child process writes the same target over and over (`lnx.compress` of a model of about
`units`² float32 weights, or `lnx.export(..., overwrite=True)` to TFLite); the parent kills it
with SIGKILL after a random delay, then checks the target: it must be the file (directory) of
one complete write. Printed:
  debris after a kill            kills after which a temporary was left (the kill fell in
                                 the write window)
  target complete after a kill   kills after which the target was complete (must be all)
  debris after the next write    entries besides the target in its directory after one more
                                 (unkilled) write (must be 0)
"""

import os
import random
import signal
import subprocess
import sys
import tempfile
import textwrap
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import lilnetx_tf as lnx  # before TF: picks Keras 2, filters TF 2.21's start-up logs

from absl import app, flags

from lilnetx_tf import atomic

_KILLS = flags.DEFINE_integer("kills", 20, "Number of SIGKILLs.")
_SEED = flags.DEFINE_integer("seed", 0, "Random seed of the delays.")
_KIND = flags.DEFINE_enum("kind", "compress", ["compress", "export"], "What the child writes.")
_UNITS = flags.DEFINE_integer("units", 1024, "Width of the model's two dense layers.")
_WRITE_DELAY = flags.DEFINE_float(
    "write_delay", 0.0, "compress: seconds the child sleeps after each MiB it writes, which "
    "widens the write window so that more kills land in it.")

_CHILD = """
import os, sys, time
import lilnetx_tf as lnx  # before TF: picks Keras 2, filters TF 2.21's start-up logs
import tensorflow as tf
from lilnetx_tf import atomic

kind, target, units, once = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4] == "once"
delay = float(sys.argv[5])
if delay:
  def slow_write(handle, blob):
    for start in range(0, len(blob), 1 << 20):
      handle.write(blob[start:start + (1 << 20)])
      handle.flush()
      time.sleep(delay)
  atomic._write_chunks = slow_write
inputs = tf.keras.Input((units,))
h = tf.keras.layers.Dense(units, activation="relu")(inputs)
model = tf.keras.Model(inputs, lnx.Dense(10)(tf.keras.layers.Dense(units)(h)))
print("ready", flush=True)
while True:
  if kind == "compress":
    lnx.compress(model, target, estimate=False)
  else:
    lnx.export(model, target, formats=("tflite",), compare_dense=False, overwrite=True)
  print("written", flush=True)
  if once:
    break
"""


def _child(kind: str, target: str, units: int, once: bool = False) -> subprocess.Popen:
  env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3")
  return subprocess.Popen([sys.executable, "-c", textwrap.dedent(_CHILD), kind, target,
                           str(units), "once" if once else "loop", str(_WRITE_DELAY.value)],
                          stdout=subprocess.PIPE,
                          stderr=subprocess.DEVNULL, env=env, text=True)


def _complete(kind: str, target: str) -> bool:
  if kind == "compress":
    try:
      lnx.decompress(target)
      return True
    except lnx.errors.LilNetXError:
      return False
  return sorted(os.listdir(target)) == ["lilnetx_export.json", "model.tflite", "report.json"]


def main(argv):
  del argv
  rng = random.Random(_SEED.value)
  kind, directory = _KIND.value, tempfile.mkdtemp()
  target = os.path.join(directory, "model.lnx" if kind == "compress" else "export")
  # One timed write in a child gives the span of the random delays.
  child = _child(kind, target, _UNITS.value)
  child.stdout.readline()
  start = time.perf_counter()
  child.stdout.readline()
  span = time.perf_counter() - start
  child.kill()
  child.wait()
  debris = complete = 0
  for _ in range(_KILLS.value):
    child = _child(kind, target, _UNITS.value)
    child.stdout.readline()
    time.sleep(rng.uniform(0, 2 * span))
    child.send_signal(signal.SIGKILL)
    child.wait()
    debris += bool(atomic.stale_temporaries(target))
    complete += _complete(kind, target)
  with _child(kind, target, _UNITS.value, once=True) as child:   # the next write
    child.communicate()
  left = [name for name in os.listdir(directory) if name != os.path.basename(target)]
  print(f"kind {kind}, one write {span:.2f} s, kills {_KILLS.value} (delays uniform in "
        f"[0, {2 * span:.2f}] s after start-up)")
  print(f"  debris after a kill: {debris}   target complete after a kill: {complete}   "
        f"debris after the next write: {len(left)}")


if __name__ == "__main__":
  app.run(main)
