"""Opening a hostile `.lnx` file runs no code, ends quickly, allocates what it declares at most
and fails with a `ModelFileError`. The files here are well-formed containers (`_resealed`
recomputes every checksum and the file id), so each defect reaches the parser behind them."""

import json
import lzma
import os
import stat
import struct
import subprocess
import sys

import numpy as np
import pytest
import tensorflow as tf

import lilnetx_tf as lnx
from lilnetx_tf import errors
from lilnetx_tf.coding import architecture, container, float_code, model_file, weights_section

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _model() -> tf.keras.Model:
  tf.keras.utils.set_random_seed(0)
  inputs = tf.keras.Input((4,), name="x")
  h = lnx.Dense(5, name="first")(inputs)
  h = tf.keras.layers.BatchNormalization(name="bn")(h)
  return tf.keras.Model(inputs, lnx.Dense(2, name="head")(h))


@pytest.fixture(scope="module")
def blobs(tmp_path_factory):
  """The bytes of a full file and of an inference-only file of `_model()`."""
  directory = tmp_path_factory.mktemp("untrusted")
  found = {}
  for inference_only in (False, True):
    path = str(directory / f"m{int(inference_only)}.lnx")
    lnx.compress(_model(), path, estimate=False, inference_only=inference_only)
    with open(path, "rb") as handle:
      found[inference_only] = handle.read()
  return found


def _resealed(blob: bytes, parameters=None, **replace) -> bytes:
  """`blob` with sections replaced (raw bytes by tag) and valid checksums and file id."""
  contents = container.decode(blob)
  sections = [container.Section(s.tag, replace.get(s.tag, s.data), s.codec)
              for s in contents.sections]
  return container.encode(sections, contents.parameters if parameters is None else parameters)


def _arch(blob: bytes) -> dict:
  return json.loads(next(s for s in container.decode(blob).sections if s.tag == "ARCH").data)


def _with_arch(blob: bytes, doc: dict) -> bytes:
  return _resealed(blob, ARCH=json.dumps(doc).encode())


def _layers(doc: dict) -> list:
  return doc["model"]["config"]["layers"]


def _write(tmp_path, blob: bytes, name: str = "f.lnx") -> str:
  path = str(tmp_path / name)
  with open(path, "wb") as handle:
    handle.write(blob)
  return path


def _open_all_ways(path: str, match: str) -> None:
  for read in (lnx.decompress, model_file.inspect):
    with pytest.raises(errors.ModelFileError, match=match):
      read(path)


# -------------------------------------------------------------------------------------------
# No code.

def _lambda_canary(blob: bytes, canary: str) -> bytes:
  """A file whose Lambda layer calls the standard library's os.makedirs(canary) on loading:
  the shape of the code execution Keras 2.14 allows even in its safe mode."""
  doc = _arch(blob)
  _layers(doc).append({
      "class_name": "Lambda", "module": "keras.layers", "registered_name": None, "name": "evil",
      "config": {"name": "evil", "module": "os", "function_type": "function", "arguments": {},
                 "function": {"class_name": "function", "config": "makedirs", "module": "os",
                              "registered_name": None},
                 "output_shape": None, "output_shape_type": "raw",
                 "output_shape_module": None},
      "inbound_nodes": [[["_CONSTANT_VALUE", -1, canary, {}]]]})
  return _with_arch(blob, doc)


def test_a_lambda_naming_a_library_function_never_runs(blobs, tmp_path):
  canary = str(tmp_path / "canary")
  path = _write(tmp_path, _lambda_canary(blobs[False], canary))
  _open_all_ways(path, "Lambda")
  env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3",
             PYTHONPATH=ROOT + os.pathsep + os.environ.get("PYTHONPATH", ""))
  for command in (["inspect", path], ["decompress", path, str(tmp_path / "out.keras")]):
    result = subprocess.run([sys.executable, "-m", "lilnetx_tf", *command], capture_output=True,
                            text=True, env=env, timeout=300)
    assert result.returncode == 1 and "Lambda" in result.stderr, result.stderr
  assert not os.path.exists(canary)
  # The file is a working exploit: a caller who opts out of safe mode runs its code.
  with pytest.raises(errors.ModelFileError):
    lnx.decompress(path, safe_mode=False)
  assert os.path.isdir(canary)


@pytest.mark.parametrize("where", ["activation", "initializer", "registered", "module",
                                   "typespec", "compile"])
def test_module_and_function_references_are_refused(blobs, tmp_path, where):
  doc = _arch(blobs[False])
  config = _layers(doc)[1]["config"]
  if where == "activation":
    config["activation"] = {"class_name": "function", "config": "system", "module": "os",
                            "registered_name": None}
  elif where == "initializer":
    config["kernel_initializer"] = {"class_name": "getoutput", "config": {},
                                    "module": "subprocess", "registered_name": None}
  elif where == "registered":    # another package's registered class, not passed by the caller
    _layers(doc)[1]["registered_name"] = "tensorflow_compression>GDN"
  elif where == "module":        # a built-in class name under a module Keras would import
    _layers(doc)[2]["module"] = "antigravity"
  elif where == "typespec":
    config["extra"] = {"class_name": "__typespec__", "spec_name": "x", "module": "os",
                       "registered_name": None, "config": {}}
  else:
    _layers(doc)[1]["compile_config"] = {"loss": "mse"}
  path = _write(tmp_path, _with_arch(blobs[False], doc))
  _open_all_ways(path, "Refused")


def test_the_callers_custom_objects_are_allowed_by_name_only(blobs, tmp_path):
  doc = _arch(blobs[False])
  _layers(doc)[2].update(class_name="Twice", module="elsewhere", registered_name="Twice")

  class Twice(tf.keras.layers.BatchNormalization):
    pass

  path = _write(tmp_path, _with_arch(blobs[False], doc))
  with pytest.raises(errors.ModelFileError, match="not its own"):
    lnx.decompress(path, custom_objects={"Twice": Twice})
  _layers(doc)[2]["module"] = Twice.__module__
  path = _write(tmp_path, _with_arch(blobs[False], doc))
  _open_all_ways(path, "not a Keras built-in")
  assert isinstance(lnx.decompress(path, custom_objects={"Twice": Twice}).get_layer("bn"), Twice)


@pytest.mark.parametrize("value", [None, 0, 1, "", "no", "False", 0.0])
def test_safe_mode_is_a_boolean(blobs, tmp_path, value):
  path = _write(tmp_path, blobs[False])
  for read in (lnx.decompress, model_file.inspect):
    with pytest.raises(errors.InvalidArgumentError, match="safe_mode"):
      read(path, safe_mode=value)


def test_reader_arguments_are_checked(blobs, tmp_path):
  path = _write(tmp_path, blobs[False])
  with pytest.raises(errors.InvalidArgumentError, match="custom_objects"):
    lnx.decompress(path, custom_objects=[("Twice", object)])
  for bad in (0, -1, 1.5, "10", True):
    with pytest.raises(errors.InvalidArgumentError, match="max_parameters"):
      lnx.decompress(path, max_parameters=bad)


# -------------------------------------------------------------------------------------------
# Graphs Keras would loop on forever.

def _graph_edit(doc: dict, kind: str) -> None:
  layers, config = _layers(doc), doc["model"]["config"]
  first, bn, head = layers[1], layers[2], layers[3]
  if kind == "self_loop":
    bn["inbound_nodes"] = [[[bn["name"], 0, 0, {}]]]
  elif kind == "cycle":
    first["inbound_nodes"] = [[[bn["name"], 0, 0, {}]]]
  elif kind == "missing_node":
    head["inbound_nodes"] = [[[bn["name"], 3, 0, {}]]]
  elif kind == "missing_node_in_kwargs":
    head["inbound_nodes"] = [[[bn["name"], 0, 0, {"mask": [first["name"], 5, 0]}]]]
  elif kind == "negative_node":
    head["inbound_nodes"] = [[[bn["name"], -1, 0, {}]]]
  elif kind == "unknown_layer":
    head["inbound_nodes"] = [[["nowhere", 0, 0, {}]]]
  elif kind == "empty_outputs":
    config["output_layers"] = []
  elif kind == "empty_inputs":
    config["input_layers"] = []
  elif kind == "output_of_missing_node":
    config["output_layers"] = [[head["name"], 1, 0]]
  elif kind == "duplicate_name":
    bn["name"] = first["name"]
  elif kind == "fed_input":
    layers[0]["inbound_nodes"] = [[[head["name"], 0, 0, {}]]]
  elif kind == "empty_node":
    head["inbound_nodes"] = [[]]
  elif kind == "not_a_list":
    head["inbound_nodes"] = 7


@pytest.mark.parametrize("kind", ["self_loop", "cycle", "missing_node", "missing_node_in_kwargs",
                                  "negative_node", "unknown_layer", "empty_outputs",
                                  "empty_inputs", "output_of_missing_node", "duplicate_name",
                                  "fed_input", "empty_node", "not_a_list"])
def test_malformed_graphs_are_refused_before_keras(blobs, tmp_path, kind):
  doc = _arch(blobs[False])
  _graph_edit(doc, kind)
  for safe_mode in (True, False):     # the graph is checked whatever the caller trusts
    path = _write(tmp_path, _with_arch(blobs[False], doc))
    with pytest.raises(errors.ModelFileError, match="architecture"):
      lnx.decompress(path, safe_mode=safe_mode)


def test_deeply_nested_architecture(blobs, tmp_path):
  doc = _arch(blobs[False])
  _layers(doc)[1]["config"]["bias_initializer"] = "NESTED"
  for depth in (900, 5000, 100000):       # below and above Python's recursion limit
    nested = '{"class_name": "Zeros", "config": ' * depth + "{}" + "}" * depth
    text = json.dumps(doc).replace('"NESTED"', nested)
    path = _write(tmp_path, _resealed(blobs[False], ARCH=text.encode()))
    _open_all_ways(path, "architecture|ARCH")


# -------------------------------------------------------------------------------------------
# Sizes: declared, bounded, checked before allocation.

@pytest.mark.parametrize("edit", ["units", "input"])
def test_huge_layers_are_refused_before_allocation(blobs, tmp_path, edit):
  doc = _arch(blobs[False])
  if edit == "units":
    _layers(doc)[3]["config"]["units"] = 10 ** 9
  else:
    _layers(doc)[0]["config"]["batch_input_shape"] = [None, 10 ** 6, 10 ** 6]
  path = _write(tmp_path, _with_arch(blobs[False], doc))
  with pytest.raises(errors.ModelFileError, match="parameters"):
    lnx.decompress(path)


def test_declared_parameters_must_match_the_architecture(blobs, tmp_path):
  blob = blobs[False]
  declared = container.decode(blob).parameters
  assert declared == architecture.parameter_count(_model())
  path = _write(tmp_path, _resealed(blob, parameters=declared + 1))
  with pytest.raises(errors.ModelFileError, match="declares"):
    lnx.decompress(path)
  path = _write(tmp_path, _resealed(blob, parameters=declared // 4))
  with pytest.raises(errors.ModelFileError, match="parameters"):
    lnx.decompress(path)
  path = _write(tmp_path, blob)
  with pytest.raises(errors.ModelFileError, match="max_parameters"):
    lnx.decompress(path, max_parameters=declared - 1)
  with pytest.raises(errors.ModelFileError, match="max_parameters"):
    model_file.inspect(path, estimate=False, max_parameters=declared - 1)
  assert lnx.decompress(path, max_parameters=declared).count_params() > 0


def test_decompression_bombs_stop_at_the_declared_size(blobs, tmp_path, monkeypatch):
  blob = blobs[False]
  contents = container.decode(blob)
  bomb = b"\0" * (64 << 20)
  # A section whose raw length says more than the declared parameters allow.
  monkeypatch.setattr(container, "raw_limit", lambda parameters: 1 << 40)
  honest = _resealed(blob, WGTS=bomb)
  monkeypatch.undo()
  _open_all_ways(_write(tmp_path, honest), "invalid length")
  # A section whose payload decompresses to more than its header says: stopped at the header's
  # length + 1, whatever the payload holds.
  real = container._compress
  monkeypatch.setattr(container, "_compress", lambda data, codec: real(bomb, codec))
  lying = container.encode([container.Section(s.tag, s.data, "zlib")
                            for s in contents.sections], contents.parameters)
  monkeypatch.undo()
  _open_all_ways(_write(tmp_path, lying), "decompressed to|does not end")
  # An xz stream that asks for a 1.5 GiB dictionary.
  xz = lzma.compress(b"x", format=lzma.FORMAT_XZ,
                     filters=[{"id": lzma.FILTER_LZMA2, "dict_size": 1536 << 20}])
  data = container.decode(blob).sections[0].data
  monkeypatch.setattr(container, "_compress", lambda data, codec: xz)
  greedy = container.encode([container.Section("ARCH", data, "lzma")], contents.parameters)
  monkeypatch.undo()
  with pytest.raises(errors.ModelFileError, match="corrupt"):
    container.decode(greedy).sections[0].data


def test_special_files_and_bad_paths_are_refused_without_reading(tmp_path, blobs):
  fifo = str(tmp_path / "pipe.lnx")
  os.mkfifo(fifo)
  for path, match in ((fifo, "not a regular file"), ("/dev/zero", "not a regular file"),
                      (str(tmp_path), "directory")):
    _open_all_ways(path, match)
  plain = _write(tmp_path, b"just text, and more of it")
  with pytest.raises(errors.ModelFileNotFoundError) as caught:
    lnx.decompress(os.path.join(plain, "x.lnx"))
  assert isinstance(caught.value, FileNotFoundError)
  _open_all_ways(plain, "bad magic")
  # A huge file that is not ours is refused on its first bytes (it is sparse: nothing read).
  big = str(tmp_path / "big.lnx")
  with open(big, "wb") as handle:
    handle.truncate(1 << 34)
  _open_all_ways(big, "bad magic")
  assert stat.S_ISREG(os.stat(big).st_mode)


# -------------------------------------------------------------------------------------------
# Values no writer stores.

def _wgts(blob: bytes) -> tuple[list, bytes]:
  data = next(s for s in container.decode(blob).sections if s.tag == "WGTS").data
  (length,) = struct.unpack_from("<I", data)
  return json.loads(data[4:4 + length]), data[4 + length:]


def _with_wgts(blob: bytes, manifest: list, tensors: bytes) -> bytes:
  head = json.dumps(manifest).encode()
  return _resealed(blob, WGTS=struct.pack("<I", len(head)) + head + tensors)


def _entry_of(blob: bytes, name: str) -> int:
  """The WGTS entry of the variable whose name contains `name`."""
  model = _model()
  densities = json.loads(next(s for s in container.decode(blob).sections
                              if s.tag == "GRPS").data)["densities"]
  stored = weights_section.stored_tensors(model, lnx.layers.lilnetx_layers(model), densities)
  return next(i for i, v in enumerate(stored) if name in v.name)


@pytest.mark.parametrize("edit", ["fill_2**64", "fill_int_on_float", "fill_nan", "shape_2**70",
                                  "shape_bool", "scale_2**128", "scale_inf", "bits_bool",
                                  "dtype_dict"])
def test_manifest_numbers_out_of_range(blobs, tmp_path, edit):
  blob = blobs[False]
  manifest, tensors = _wgts(blob)
  i = _entry_of(blob, "bn/gamma")        # a fill of ones
  shape = manifest[i][0]
  if edit == "fill_2**64":
    manifest[i][3] = 2 ** 64
    manifest[i][1] = manifest[i][2] = "int64"
  elif edit == "fill_int_on_float":
    manifest[i][3] = 10 ** 400
  elif edit == "fill_nan":
    manifest[i][3] = float("nan")
  elif edit == "shape_2**70":
    manifest[i][0] = [2 ** 70]
  elif edit == "shape_bool":
    manifest[i][0] = [True] * len(shape)
  elif edit == "dtype_dict":                # found by the fuzzer: a TypeError (unhashable)
    manifest[i][1] = {}
  else:
    bits = True if edit == "bits_bool" else 8
    scale = {"scale_2**128": 2 ** 128, "scale_inf": float("inf")}.get(edit, 0.5)
    manifest[i] = [shape, "float32", "int", bits, scale]
  path = _write(tmp_path, _with_wgts(blob, manifest, tensors))
  for read in (lnx.decompress, lambda p: model_file.inspect(p, estimate=False)):
    with pytest.raises(errors.ModelFileError, match="WGTS"):
      read(path)


@pytest.mark.parametrize("name", ["first/bias", "first/decoder", "bn/beta"])
@pytest.mark.parametrize("value", [np.nan, np.inf, -np.inf])
def test_non_finite_values_are_refused_on_reading(blobs, tmp_path, name, value):
  blob = blobs[False]
  manifest, tensors = _wgts(blob)
  i = _entry_of(blob, name)
  values = np.full(manifest[i][0], value, np.float32)
  if values.size > 1:
    values.reshape(-1)[0] = 0.0                        # not a fill
  # Store the edited tensor raw, after the others (which stay raw or fills).
  position = sum(int(np.prod(e[0])) * 4 for e in manifest[:i] if e[2] == "float32")
  size = int(np.prod(manifest[i][0])) * 4 if manifest[i][2] == "float32" else 0
  manifest[i] = [manifest[i][0], "float32", "float32"]
  tensors = tensors[:position] + values.tobytes() + tensors[position + size:]
  path = _write(tmp_path, _with_wgts(blob, manifest, tensors))
  with pytest.raises(errors.ModelFileError, match="non-finite"):
    lnx.decompress(path)


@pytest.mark.parametrize("inference_only", [False, True])
def test_negative_batch_norm_variance(blobs, tmp_path, inference_only):
  blob = blobs[inference_only]
  manifest, tensors = _wgts(blob)
  i = _entry_of(blob, "bn/moving_variance")
  assert manifest[i][2] == "fill"
  manifest[i][3] = -0.5
  path = _write(tmp_path, _with_wgts(blob, manifest, tensors))
  with pytest.raises(errors.ModelFileError, match="negative BatchNorm variance"):
    lnx.decompress(path)


def test_coded_float16_infinities_and_nans_are_refused():
  for special in (np.inf, -np.inf, np.nan):
    values = np.array([1.0, special, -2.0], np.float16)
    code = float_code.encode(values, 10)
    with pytest.raises(errors.ModelFileError, match="exponent"):
      float_code.decode(code, 3, 10)
  finite = np.array([1.0, 65504.0, -2.0**-24], np.float16)
  np.testing.assert_array_equal(float_code.decode(float_code.encode(finite, 10), 3, 10), finite)


def test_bulk_sections_are_decompressed_only_after_the_architecture_confirms_the_size(
    blobs, tmp_path, monkeypatch):
  """A file declaring 2**23 parameters, with a small architecture and a WGTS section of
  128 MiB (its manifest first): inspect(estimate=False) reads only the manifests, decompress
  refuses the file on the architecture; neither decompresses the bulk."""
  blob = blobs[False]
  manifest, _ = _wgts(blob)
  head = json.dumps(manifest).encode()
  wgts = struct.pack("<I", len(head)) + head + b"\0" * (128 << 20)
  hostile = _write(tmp_path, _resealed(blob, parameters=1 << 23, WGTS=wgts))
  calls, real = [], container._decompress

  def spy(payload, codec, length, tag, whole=True):
    calls.append((tag, whole))
    return real(payload, codec, length, tag, whole)

  monkeypatch.setattr(container, "_decompress", spy)
  report = model_file.inspect(hostile, estimate=False)
  assert report.sections[1].raw_bytes == len(wgts)
  with pytest.raises(errors.ModelFileError, match="declares"):
    lnx.decompress(hostile)
  assert ("WGTS", False) in calls and ("WGTS", True) not in calls
