"""Fuzz the .lnx reader with hostile files: no code, no hang, no bomb, only typed errors.

Usage: PYTHONPATH=. .venv/bin/python benchmarks/fuzz_model_file.py [--count=10000] [--seed=0]
       [--timeout=5]

Writes three small files of one Functional model (lnx.Conv2D, BatchNorm, an adapted
StringLookup's vocabulary, Embedding, lnx.Dense): lossless,
float16 with 5 mantissa bits (coded float16 weights), and inference-only with 8-bit floats.
Each mutant is made from one of them by a strategy:
  raw/*       bytes flipped, truncated, inserted, deleted, overwritten, spliced from a file of
              another model (the checksums catch these)
  reseal/TAG  a section's decompressed bytes mutated, the file re-sealed: every CRC and the
              file id recomputed, so the mutation reaches the section's parser
  codec       a section stored with another codec (same content)
  header      the declared parameter count changed (re-sealed)
  json/TAG    one value of the ARCH, GRPS or WGTS-manifest JSON replaced by a hostile one
              (2**64, 2**70, -1, NaN, inf, null, "", [], {}, deep nesting, a boolean), re-sealed
  graph/*     the functional graph edited: self loop, cycle, dangling node index, empty
              outputs, unknown layer, duplicate name
  huge/*      Dense(units=10**6 or 10**9), Conv2D(filters=10**6), an Input of 10**6 x 10**6
  inject/*    code in the architecture: a Lambda calling os.makedirs(canary), a Lambda with
              bytecode making the canary, module functions as activation or initializer,
              another package's registered class, a __typespec__ object
  bomb/*      sections that decompress to 1 GiB: declared as such, declared small, an xz
              stream asking for a 1.5 GiB dictionary

Every mutant is opened by `inspect(estimate=False)` and `decompress` in a worker process under
a time limit; the worker reports each decode's peak RSS (VmHWM, reset before it) above its
RSS before it. The table counts the outcomes:
  original         decoded, identical to the file it was made from (a no-op mutation)
  typed_error      a lilnetx_tf error
  undetectable     decoded to another model from a re-sealed mutant: a valid file of a
                   different model, which no reader can tell from a genuine one (the format
                   has checksums, not signatures), split by what differs
  foreign_error    any other exception (must be 0)
  silently_wrong   decoded to another model from a mutant that was not re-sealed (must be 0)
  hang             no answer within --timeout seconds (must be 0)
  code_executed    the canary file appeared (must be 0)
and the largest peak RSS of one decode above the worker's RSS before it (must stay under 1 GB).
"""

import collections
import json
import lzma
import multiprocessing
import os
import random
import resource
import shutil
import struct
import sys
import tempfile
import time
import zlib

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import lilnetx_tf as lnx  # before TF: picks Keras 2, filters TF 2.21's start-up logs

from absl import app, flags
import numpy as np
import tensorflow as tf

from lilnetx_tf import errors
from lilnetx_tf.coding import container, model_file

_COUNT = flags.DEFINE_integer("count", 10000, "Number of mutated files.")
_SEED = flags.DEFINE_integer("seed", 0, "Random seed.")
_TIMEOUT = flags.DEFINE_float("timeout", 5.0, "Seconds a decode may take before it is a hang.")
_MEMORY_LIMIT = 1 << 30
_BOMB = 1 << 30
_HOSTILE = [2 ** 64, 2 ** 70, -(2 ** 64), -1, 0, 10 ** 9, float("nan"), float("inf"), None, "",
            [], {}, True, "os", [[[[[[[[[[]]]]]]]]]], 0.5, -0.5, 10 ** 400]


def _model(seed: int):
  """An image branch (lnx.Conv2D, BatchNorm) and a word branch (an adapted StringLookup, whose
  vocabulary WGTS stores as strings, and an Embedding) joined into lnx.Dense."""
  tf.keras.backend.clear_session()
  tf.keras.utils.set_random_seed(seed)
  inputs = tf.keras.Input((6, 6, 2), name="image")
  h = lnx.Conv2D(4, 3, name="conv")(inputs)
  h = tf.keras.layers.BatchNormalization(name="bn")(h)
  h = tf.keras.layers.Flatten(name="flat")(h)
  words = tf.keras.Input((1,), dtype=tf.string, name="word")
  lookup = tf.keras.layers.StringLookup(name="lookup")
  lookup.adapt(["red", "green", "blue", "amber", "teal", "ünïcode"][seed:])
  w = tf.keras.layers.Embedding(8, 2, name="embed")(lookup(words))
  h = tf.keras.layers.Concatenate(name="join")([h, tf.keras.layers.Flatten(name="flat_w")(w)])
  return tf.keras.Model([inputs, words], lnx.Dense(3, name="head")(h))


_BASES = ({}, {"float16": True, "mantissa_bits": 5}, {"inference_only": True, "float_bits": 8})


# -------------------------------------------------------------------------------------------
# The worker: opens files, reports outcomes and peak memory.

def _fingerprint(model) -> tuple:
  return model.to_json(), model.get_weights()     # a vocabulary too (an object array)


def _same_weights(a: list, b: list) -> bool:
  return len(a) == len(b) and all(
      x.shape == y.shape and x.dtype == y.dtype
      and np.array_equal(x, y, equal_nan=x.dtype.kind == "f") for x, y in zip(a, b))


def _peak_rss() -> int:
  """This process's peak RSS in bytes since the last `_reset_peak` (VmHWM), or, where /proc
  does not have it, getrusage's peak (which a spawned child inherits across exec)."""
  try:
    with open("/proc/self/status") as handle:
      line = next(l for l in handle if l.startswith("VmHWM:"))
    return int(line.split()[1]) * 1024
  except (OSError, StopIteration):
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def _current_rss() -> int:
  with open("/proc/self/statm") as handle:
    return int(handle.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def _reset_peak() -> None:
  try:
    with open("/proc/self/clear_refs", "w") as handle:
      handle.write("5")              # resets VmHWM to the current RSS (Linux >= 4.0)
  except OSError:
    pass


def _worker(connection, references: list) -> None:
  originals = []
  for path in references:
    tf.keras.utils.set_random_seed(0)    # densities an inference-only file leaves out
    originals.append(_fingerprint(lnx.decompress(path)))
  tf.keras.backend.clear_session()
  connection.send(_current_rss())
  while True:
    job = connection.recv()
    if job is None:
      return
    path, base = job
    _reset_peak()
    before = _current_rss()
    outcome, detail = "original", ""
    try:
      model_file.inspect(path, estimate=False)
      tf.keras.utils.set_random_seed(0)
      json_string, weights = _fingerprint(lnx.decompress(path))
      if json_string != originals[base][0]:
        outcome = "architecture"
      elif not _same_weights(weights, originals[base][1]):
        outcome = "values"
    except errors.LilNetXError as e:
      outcome, detail = "typed_error", type(e).__name__
    except Exception as e:  # noqa: BLE001 - counting foreign errors is the point
      outcome, detail = "foreign_error", f"{type(e).__name__}: {str(e)[:300]}"
    extra = _peak_rss() - before          # before clear_session frees the model
    tf.keras.backend.clear_session()
    connection.send((outcome, detail, extra))


class _Worker:
  """A worker process, restarted after a hang."""

  def __init__(self, references: list):
    self.references = references
    self._start()

  def _start(self):
    context = multiprocessing.get_context("spawn")
    self.connection, child = context.Pipe()
    self.process = context.Process(target=_worker, args=(child, self.references), daemon=True)
    self.process.start()
    self.baseline = self.connection.recv()

  def run(self, job, timeout: float):
    """(outcome, detail, peak RSS during the decode above the RSS before it) or None after
    `timeout` seconds."""
    self.connection.send(job)
    if not self.connection.poll(timeout):
      self.process.kill()
      self.process.join()
      self._start()
      return None
    return self.connection.recv()

  def close(self):
    self.connection.send(None)
    self.process.join(30)


# -------------------------------------------------------------------------------------------
# Mutants.

def seal(records: list, parameters: int) -> bytes:
  """A container of (tag, codec, raw length, payload) records with every CRC and the file id
  recomputed: whatever the records hold, the file passes every checksum."""
  records = [(tag.encode() if isinstance(tag, str) else tag, codec, raw, payload)
             for tag, codec, raw, payload in records]
  file_id = container._file_id(records)
  head = struct.pack("<8sHHIQ16s", container.MAGIC, container.VERSION, 0, len(records),
                     parameters, file_id)
  parts = [head, struct.pack("<I", zlib.crc32(head))]
  for index, (tag, codec, raw, payload) in enumerate(records):
    fields = struct.pack("<4sB3sQQ", tag, codec, b"\0\0\0", len(payload), raw)
    parts += [fields, struct.pack("<I", container._section_crc(file_id, index, fields, payload)),
              payload]
  return b"".join(parts)


def _sections(blob: bytes) -> tuple:
  contents = container.decode(blob)
  return contents.parameters, [(s.tag, s.data, s.codec) for s in contents.sections]


def _resealed(blob: bytes, replace: dict = None, codecs: dict = None, parameters=None) -> bytes:
  declared, sections = _sections(blob)
  replace, codecs = replace or {}, codecs or {}
  records = []
  for tag, data, codec in sections:
    data = replace.get(tag, data)
    code = container.CODECS[codecs.get(tag, codec)]
    records.append((tag, code, len(data), container._compress(data, code)))
  return seal(records, declared if parameters is None else parameters)


def _raw(rng, blob: bytes, other: bytes) -> tuple:
  kind = rng.choice(["flip", "flips", "truncate", "insert", "delete", "overwrite", "splice"])
  n = len(blob)
  b = bytearray(blob)
  if kind == "flip":
    b[rng.randrange(n)] ^= 1 << rng.randrange(8)
  elif kind == "flips":
    for _ in range(rng.randint(2, 16)):
      b[rng.randrange(n)] ^= rng.randint(1, 255)
  elif kind == "truncate":
    b = b[:rng.randrange(n)]
  elif kind == "insert":
    p = rng.randrange(n + 1)
    b[p:p] = rng.randbytes(rng.randint(1, 64))
  elif kind == "delete":
    p = rng.randrange(n)
    del b[p:p + rng.randint(1, 64)]
  elif kind == "overwrite":
    p = rng.randrange(n)
    d = rng.randbytes(rng.randint(1, 32))
    b[p:p + len(d)] = d
  else:
    a, o = container.section_spans(blob), container.section_spans(other)
    i = rng.randrange(len(a))
    if rng.random() < 0.5:
      b = bytearray(blob[:a[i][0]] + other[o[i][0]:o[i][1]] + blob[a[i][1]:])
    else:
      p, q = rng.randrange(n), rng.randrange(len(other))
      b[p:p] = other[q:q + rng.randint(1, 256)]
  return "raw/" + kind, bytes(b), False


def _reseal(rng, blob: bytes) -> tuple:
  _, sections = _sections(blob)
  tag, data, _ = rng.choice(sections)
  data = bytearray(data)
  for _ in range(rng.randint(1, 4)):
    if data:
      data[rng.randrange(len(data))] ^= rng.randint(1, 255)
  if rng.random() < 0.3:
    data = data[:rng.randrange(len(data) + 1)]
  if rng.random() < 0.2:
    p = rng.randrange(len(data) + 1)
    data[p:p] = rng.randbytes(rng.randint(1, 16))
  return "reseal/" + tag, _resealed(blob, {tag: bytes(data)}), True


def _codec(rng, blob: bytes) -> tuple:
  _, sections = _sections(blob)
  tag = rng.choice(sections)[0]
  return "codec", _resealed(blob, codecs={tag: rng.choice(["raw", "zlib", "lzma", "lzma2"])}), \
      True


def _header(rng, blob: bytes) -> tuple:
  declared, _ = _sections(blob)
  parameters = rng.choice([0, 1, declared - 1, declared + 1, 2 * declared, declared // 2,
                           1 << 28, (1 << 28) + 1, (1 << 64) - 1, rng.randrange(1 << 40)])
  return "header", _resealed(blob, parameters=max(parameters, 0)), True


def _json_paths(value, path=()):
  """Every (path, value) in a JSON document."""
  yield path, value
  if isinstance(value, dict):
    for k, v in value.items():
      yield from _json_paths(v, path + (k,))
  elif isinstance(value, list):
    for i, v in enumerate(value):
      yield from _json_paths(v, path + (i,))


def _set(doc, path, value):
  for key in path[:-1]:
    doc = doc[key]
  doc[path[-1]] = value


def _arch(blob: bytes) -> dict:
  return json.loads(dict((t, d) for t, d, _ in _sections(blob)[1])["ARCH"])


def _with_arch(blob: bytes, doc) -> bytes:
  return _resealed(blob, {"ARCH": json.dumps(doc).encode()})


def _json(rng, blob: bytes) -> tuple:
  tag = rng.choice(["ARCH", "GRPS", "WGTS"])
  data = dict((t, d) for t, d, _ in _sections(blob)[1])[tag]
  if tag == "WGTS":
    (length,) = struct.unpack_from("<I", data)
    doc, rest = json.loads(data[4:4 + length]), data[4 + length:]
  else:
    doc, rest = json.loads(data), b""
  paths = [p for p, _ in _json_paths(doc) if p]
  path = rng.choice(paths)
  if rng.random() < 0.15 and isinstance(path[-1], str):
    parent = doc
    for key in path[:-1]:
      parent = parent[key]
    del parent[path[-1]]
  else:
    _set(doc, path, json.loads(json.dumps(rng.choice(_HOSTILE))))
  head = json.dumps(doc).encode()
  data = struct.pack("<I", len(head)) + head + rest if tag == "WGTS" else head
  return "json/" + tag, _resealed(blob, {tag: data}), True


def _layers(doc: dict) -> dict:
  return {entry["name"]: entry for entry in doc["model"]["config"]["layers"]}


def _graph(rng, blob: bytes) -> tuple:
  doc = _arch(blob)
  config, layers = doc["model"]["config"], _layers(doc)
  kind = rng.choice(["self_loop", "cycle", "dangling", "empty_outputs", "unknown", "duplicate",
                     "dangling_output"])
  if kind == "self_loop":
    layers["bn"]["inbound_nodes"] = [[["bn", 0, 0, {}]]]
  elif kind == "cycle":
    layers["conv"]["inbound_nodes"] = [[["bn", 0, 0, {}]]]
  elif kind == "dangling":
    layers["head"]["inbound_nodes"] = [[["flat", rng.choice([1, 2, 7, -1]), 0, {}]]]
  elif kind == "empty_outputs":
    config["output_layers"] = []
  elif kind == "unknown":
    layers["head"]["inbound_nodes"] = [[["ghost", 0, 0, {}]]]
  elif kind == "duplicate":
    layers["bn"]["name"] = "conv"
  else:
    config["output_layers"] = [["head", 1, 0]]
  return "graph/" + kind, _with_arch(blob, doc), True


def _huge(rng, blob: bytes) -> tuple:
  doc = _arch(blob)
  layers = _layers(doc)
  kind = rng.choice(["units_1e6", "units_1e9", "filters_1e6", "input_1e6x1e6"])
  if kind.startswith("units"):
    layers["head"]["config"]["units"] = 10 ** 6 if kind == "units_1e6" else 10 ** 9
  elif kind == "filters_1e6":
    layers["conv"]["config"]["filters"] = 10 ** 6
  else:
    entry = next(e for e in layers.values() if e["class_name"] == "InputLayer")
    entry["config"]["batch_input_shape"] = [None, 10 ** 6, 10 ** 6, 2]
  return "huge/" + kind, _with_arch(blob, doc), True


def _lambda_bytecode(canary: str) -> str:
  """A Lambda layer's bytecode that makes `canary` when Keras loads it."""
  from lilnetx_tf._compat import generic_utils
  return generic_utils.func_dump(
      lambda x, path=canary: (__import__("os").makedirs(path, exist_ok=True), x)[1])[0]


def _inject(rng, blob: bytes, canary: str) -> tuple:
  doc = _arch(blob)
  config, layers = doc["model"]["config"], _layers(doc)
  kind = rng.choice(["lambda_function", "lambda_bytecode", "activation", "initializer",
                     "registered", "typespec"])
  if kind.startswith("lambda"):
    function = ({"class_name": "function", "config": "makedirs", "module": "os",
                 "registered_name": None} if kind == "lambda_function"
                else _lambda_bytecode(canary))
    config["layers"].append({
        "class_name": "Lambda", "module": "keras.layers", "registered_name": None,
        "name": "evil", "inbound_nodes": [[["_CONSTANT_VALUE", -1, canary, {}]]],
        "config": {"name": "evil", "module": "os", "arguments": {}, "function": function,
                   "function_type": kind[len("lambda_"):].replace("bytecode", "lambda"),
                   "output_shape": None, "output_shape_type": "raw",
                   "output_shape_module": None}})
  elif kind == "activation":
    layers["head"]["config"]["activation"] = {"class_name": "function", "config": "makedirs",
                                              "module": "os", "registered_name": None}
  elif kind == "initializer":
    layers["head"]["config"]["kernel_initializer"] = {
        "class_name": "function", "config": "makedirs", "module": "os", "registered_name": None}
  elif kind == "registered":
    layers["bn"]["registered_name"] = "tensorflow_compression>GDN"
  else:
    layers["head"]["config"]["bias_initializer"] = {
        "class_name": "__typespec__", "spec_name": "makedirs", "module": "os",
        "registered_name": None, "config": {}}
  return "inject/" + kind, _with_arch(blob, doc), True


class _Bombs:
  """Payloads that decompress to 1 GiB, made once."""

  def __init__(self):
    chunk, z = b"\0" * (1 << 20), zlib.compressobj(9)
    lz = lzma.LZMACompressor(format=lzma.FORMAT_RAW, filters=[   # the reader's dictionary
        {"id": lzma.FILTER_LZMA2, "preset": 0, "dict_size": 1 << 23}])
    z_parts, l_parts = [], []
    for _ in range(_BOMB // len(chunk)):
      z_parts.append(z.compress(chunk))
      l_parts.append(lz.compress(chunk))
    self.zlib = b"".join(z_parts) + z.flush()
    self.lzma2 = b"".join(l_parts) + lz.flush()
    self.xz = lzma.compress(b"{}", format=lzma.FORMAT_XZ,
                            filters=[{"id": lzma.FILTER_LZMA2, "dict_size": 1536 << 20}])


def _bomb(rng, blob: bytes, bombs: _Bombs) -> tuple:
  declared, sections = _sections(blob)
  i = rng.randrange(len(sections))
  kind = rng.choice(["declared_zlib", "declared_lzma2", "small_zlib", "small_lzma2", "xz_dict"])
  records = [(t, container.CODECS[c], len(d), container._compress(d, container.CODECS[c]))
             for t, d, c in sections]
  tag, _, raw, _ = records[i]
  if kind == "xz_dict":
    records[i] = (tag, container.CODEC_LZMA, raw, bombs.xz)
  else:
    codec = container.CODEC_ZLIB if kind.endswith("zlib") else container.CODEC_LZMA2
    payload = bombs.zlib if codec == container.CODEC_ZLIB else bombs.lzma2
    records[i] = (tag, codec, _BOMB if kind.startswith("declared") else raw, payload)
  return "bomb/" + kind, seal(records, declared), True


_STRATEGIES = (("raw", 30), ("reseal", 30), ("json", 14), ("graph", 7), ("huge", 5),
               ("inject", 7), ("bomb", 3), ("codec", 2), ("header", 2))


def mutant(rng, blob: bytes, other: bytes, canary: str, bombs: _Bombs) -> tuple:
  """(strategy, bytes, whether the mutant is re-sealed)."""
  names, weights = zip(*_STRATEGIES)
  strategy = rng.choices(names, weights)[0]
  if strategy == "raw":
    return _raw(rng, blob, other)
  if strategy == "inject":
    return _inject(rng, blob, canary)
  if strategy == "bomb":
    return _bomb(rng, blob, bombs)
  return globals()["_" + strategy](rng, blob)


# -------------------------------------------------------------------------------------------

_MUST_BE_ZERO = ("foreign_error", "silently_wrong", "hang", "code_executed")


def _outcome(result, resealed: bool) -> str:
  if result is None:
    return "hang"
  outcome = result[0]
  if outcome in ("architecture", "values"):
    return ("undetectable/" if resealed else "silently_wrong/") + outcome
  return outcome


def _base_files(directory: str) -> tuple[list, list]:
  """(paths of the seed-0 file of each of `_BASES`, the bytes of every base file: seeds 0 and
  1 of each)."""
  paths, blobs = [], []
  for b, options in enumerate(_BASES):
    for seed in (0, 1):
      path = os.path.join(directory, f"base{b}_{seed}.lnx")
      lnx.compress(_model(seed), path, estimate=False, **options)
      with open(path, "rb") as handle:
        blobs.append(handle.read())
      if seed == 0:
        paths.append(path)
  return paths, blobs


def _print_tables(counts: collections.Counter, by_strategy: collections.Counter,
                  undetectable: collections.Counter) -> int:
  """Prints the outcome tables and the verdict; returns the number of failures."""
  print()
  print(f"  {'outcome':34s} {'count':>6s}")
  rows = ["original", "typed_error", "undetectable/architecture", "undetectable/values",
          "foreign_error", "silently_wrong/architecture", "silently_wrong/values", "hang",
          "over_1GB", "code_executed"]
  for outcome in rows + sorted(set(counts) - set(rows)):
    print(f"  {outcome:34s} {counts[outcome]:6d}")
  print()
  strategies = sorted({s for s, _ in by_strategy})
  outcomes = sorted({o for _, o in by_strategy})
  print("  " + f"{'strategy':10s}" + "".join(f"{o:>16s}" for o in outcomes))
  for s in strategies:
    print("  " + f"{s:10s}" + "".join(f"{by_strategy[(s, o)]:16d}" for o in outcomes))
  print()
  print("  undetectable by design (a re-sealed file is a valid file of another model):")
  for key, n in sorted(undetectable.items()):
    print(f"    {key:40s} {n:6d}")
  bad = sum(n for o, n in counts.items() if o.split("/")[0] in _MUST_BE_ZERO + ("over_1GB",))
  print("RESULT:", "PASS (0 foreign errors, hangs, silently wrong models, executed code, "
        "decodes over 1 GB)" if not bad else f"FAIL ({bad})")
  return bad


def main(argv):
  del argv
  rng = random.Random(_SEED.value)
  directory = tempfile.mkdtemp()
  canary = os.path.join(directory, "canary")
  paths, blobs = _base_files(directory)
  start = time.time()
  bombs = _Bombs()
  print(f"bomb payloads (1 GiB each): zlib {len(bombs.zlib):,} B, lzma2 {len(bombs.lzma2):,} B "
        f"({time.time() - start:.1f} s)")
  worker = _Worker(paths)
  counts, by_strategy, undetectable = (collections.Counter(), collections.Counter(),
                                       collections.Counter())
  target, peak, slowest, start = os.path.join(directory, "fuzz.lnx"), 0, 0.0, time.time()
  for i in range(_COUNT.value):
    base = rng.randrange(len(_BASES))
    strategy, data, resealed = mutant(rng, blobs[2 * base], blobs[2 * base + 1], canary, bombs)
    with open(target, "wb") as handle:
      handle.write(data)
    began = time.time()
    result = worker.run((target, base), _TIMEOUT.value)
    slowest = max(slowest, time.time() - began)
    outcome = _outcome(result, resealed)
    if result is not None:
      peak = max(peak, result[2])
      if result[2] > _MEMORY_LIMIT:
        outcome = "over_1GB"
    if os.path.exists(canary):
      outcome = "code_executed"
      shutil.rmtree(canary, ignore_errors=True) if os.path.isdir(canary) else os.remove(canary)
    counts[outcome] += 1
    if outcome.startswith("undetectable"):
      undetectable[f"{strategy} -> {outcome.split('/')[1]}"] += 1
    by_strategy[(strategy.split("/")[0], outcome.split("/")[0])] += 1
    if outcome.split("/")[0] in _MUST_BE_ZERO + ("over_1GB",):
      print(f"#{i} {strategy}: {outcome} {result and result[1]}", file=sys.stderr)
    if (i + 1) % 500 == 0:
      print(f"  after {i + 1} mutants ({time.time() - start:.0f} s, largest decode peak "
            f"{peak / 2**20:.0f} MiB): {dict(sorted(counts.items()))}", flush=True)
  worker.close()
  elapsed = time.time() - start
  print(f"{_COUNT.value} mutants of 3 files ({', '.join(str(len(blobs[2 * b])) for b in range(3))}"
        f" bytes) in {elapsed:.0f} s; slowest decode {slowest:.2f} s (limit "
        f"{_TIMEOUT.value:g} s); largest peak RSS of a decode above the worker's RSS before it "
        f"{peak / 2**20:.0f} MiB (worker RSS after loading the originals "
        f"{worker.baseline / 2**20:.0f} MiB)")
  return 1 if _print_tables(counts, by_strategy, undetectable) else 0


if __name__ == "__main__":
  app.run(main)
