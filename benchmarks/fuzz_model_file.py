"""Fuzz the .lnx reader: mutated files must raise ModelFileError or decode identically.

Usage: PYTHONPATH=. .venv/bin/python benchmarks/fuzz_model_file.py [--count=10000] [--seed=0]
       [--rechecksum] [--mantissa_bits=5]

Compresses a small Functional model (lnx.Conv2D, BatchNorm, lnx.Dense), then decompresses
`count` mutated copies (bit flips, truncations, insertions, deletions, overwrites, and splices of
a section from a second file of the same architecture) and counts the outcomes:
  model_file_error     ModelFileError raised (the expected outcome)
  other_exception      any other exception (a crash: must be 0)
  identical            accepted, every weight identical to the original (mutation was a no-op)
  silently_wrong       accepted with different weights (must be 0)
"""

import collections
import os
import random
import sys
import tempfile
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

from absl import app, flags
import numpy as np
import tensorflow as tf

import lilnetx_tf as lnx
from lilnetx_tf import errors
from lilnetx_tf.coding import container

_COUNT = flags.DEFINE_integer("count", 10000, "Number of mutated files.")
_SEED = flags.DEFINE_integer("seed", 0, "Random seed.")
_MANTISSA_BITS = flags.DEFINE_integer(
    "mantissa_bits", None, "Write the files with float16=True and these mantissa bits (coded "
    "float16 weights); default: lossless float32 weights.")
_RECHECKSUM = flags.DEFINE_bool(
    "rechecksum", False, "Mutate one section's decompressed payload and re-seal the file with "
    "valid checksums, to exercise the validation behind the checksums. Such a file is "
    "well-formed by construction, so 'silently_wrong' is expected there; crashes are not.")


def reseal(rng, blob):
  """Mutates one section's raw payload and re-encodes the file with valid checksums."""
  sections = container.decode(blob)
  i = rng.randrange(len(sections))
  data = bytearray(sections[i].data)
  for _ in range(rng.randint(1, 4)):
    if data:
      data[rng.randrange(len(data))] ^= rng.randint(1, 255)
  if rng.random() < 0.3:
    data = data[:rng.randrange(len(data) + 1)]
  out = [container.Section(s.tag, s.data, s.codec) for s in sections]
  out[i] = container.Section(sections[i].tag, bytes(data), sections[i].codec)
  return "reseal/" + sections[i].tag, container.encode(out)


def _model(seed):
  tf.keras.utils.set_random_seed(seed)
  inputs = tf.keras.Input((6, 6, 2))
  h = lnx.Conv2D(4, 3)(inputs)
  h = tf.keras.layers.BatchNormalization()(h)
  h = tf.keras.layers.Flatten()(h)
  return tf.keras.Model(inputs, lnx.Dense(3)(h))


def mutate(rng, blob, other):
  kind = rng.choice(["flip", "flips", "truncate", "insert", "delete", "overwrite", "splice"])
  n = len(blob)
  if kind == "flip":
    b = bytearray(blob); b[rng.randrange(n)] ^= 1 << rng.randrange(8); return kind, bytes(b)
  if kind == "flips":
    b = bytearray(blob)
    for _ in range(rng.randint(2, 16)):
      b[rng.randrange(n)] ^= rng.randint(1, 255)
    return kind, bytes(b)
  if kind == "truncate":
    return kind, blob[:rng.randrange(n)]
  if kind == "insert":
    p = rng.randrange(n + 1); return kind, blob[:p] + os.urandom(rng.randint(1, 64)) + blob[p:]
  if kind == "delete":
    p = rng.randrange(n); return kind, blob[:p] + blob[p + rng.randint(1, 64):]
  if kind == "overwrite":
    p = rng.randrange(n); d = os.urandom(rng.randint(1, 32)); return kind, blob[:p] + d + blob[p + len(d):]
  a, b = container.section_spans(blob), container.section_spans(other)
  i = rng.randrange(len(a))
  if rng.random() < 0.5:        # a section record from the other file
    return kind, blob[:a[i][0]] + other[b[i][0]:b[i][1]] + blob[a[i][1]:]
  p, q = rng.randrange(n), rng.randrange(len(other))   # arbitrary byte splice
  return kind, blob[:p] + other[q:q + rng.randint(1, 256)] + blob[p:]


def main(argv):
  del argv
  rng = random.Random(_SEED.value)
  directory = tempfile.mkdtemp()
  blobs = []
  for seed in (0, 1):
    path = os.path.join(directory, f"m{seed}.lnx")
    lnx.compress(_model(seed), path, estimate=False, float16=_MANTISSA_BITS.value is not None,
                 mantissa_bits=_MANTISSA_BITS.value)
    blobs.append(open(path, "rb").read())
  reference = [w.numpy() for w in lnx.decompress(os.path.join(directory, "m0.lnx")).weights]
  counts, by_kind = collections.Counter(), collections.Counter()
  target, start = os.path.join(directory, "fuzz.lnx"), time.time()
  for i in range(_COUNT.value):
    if _RECHECKSUM.value:
      kind, mutated = reseal(rng, blobs[0])
    else:
      kind, mutated = mutate(rng, blobs[0], blobs[1])
    with open(target, "wb") as handle:
      handle.write(mutated)
    try:
      model = lnx.decompress(target)
    except errors.ModelFileError:
      outcome = "model_file_error"
    except Exception as e:  # noqa: BLE001 - counting crashes is the point
      outcome = "other_exception"
      print(f"#{i} {kind}: {type(e).__name__}: {e}", file=sys.stderr)
    else:
      same = len(model.weights) == len(reference) and all(
          np.array_equal(a.numpy(), b) for a, b in zip(model.weights, reference))
      outcome = "identical" if same else "silently_wrong"
      if not same:
        print(f"#{i} {kind}: silently wrong model", file=sys.stderr)
    counts[outcome] += 1
    by_kind[(kind, outcome)] += 1
  elapsed = time.time() - start
  print(f"{_COUNT.value} mutated files of {len(blobs[0])} bytes in {elapsed:.1f} s")
  for outcome in ("model_file_error", "other_exception", "identical", "silently_wrong"):
    print(f"  {outcome:18s} {counts[outcome]:6d}")
  print("by mutation:", dict(sorted((f"{k}/{o}", n) for (k, o), n in by_kind.items())))
  crashes = counts["other_exception"] + counts["silently_wrong"]
  if _RECHECKSUM.value:
    crashes = counts["other_exception"]
  print("RESULT:", ("PASS (zero crashes" + (")" if _RECHECKSUM.value else ", zero silently-wrong)"))
        if not crashes else "FAIL")
  return 1 if crashes else 0


if __name__ == "__main__":
  app.run(main)
