"""TFLite conversion, interpreter runs and latency measurement for plain Keras models.

Models run on LiteRT's interpreter (`ai-edge-litert`) where it is installed, else on
`tf.lite.Interpreter` (deprecated since TF 2.18); both run files from either converter.

Quantization modes (TF 2.14 converter recipes):
  None       float32 weights and activations.
  "float16"  float16 weights (`optimizations=[DEFAULT]`, `supported_types=[tf.float16]`);
             computed in float32 on CPU.
  "int8"     full integer weights and activations with float32 inputs and outputs
             (`optimizations=[DEFAULT]`, `representative_dataset`, `TFLITE_BUILTINS_INT8`).
             Calibration needs representative inputs; random inputs are used (with a
             warning) when none are given, which is fine for testing, poor for accuracy.
"""

import statistics
import time
import warnings
from typing import Callable, Iterable, Optional, Sequence, Union

import numpy as np
import tensorflow as tf

from lilnetx_tf import _compat
from lilnetx_tf import errors
from lilnetx_tf.export import samples

__all__ = ["QUANTIZATIONS", "convert", "interpreter", "run", "max_difference", "Timer",
           "median_latencies"]

QUANTIZATIONS = (None, "float16", "int8")


def _input_names(model: tf.keras.Model) -> list:
  """The names of `model`'s inputs, which the converter uses for its signature's inputs."""
  return [t.name.split(":")[0] for t in model.inputs]


def _representative(model: tf.keras.Model, data) -> Callable[[], Iterable[list]]:
  """A converter `representative_dataset` from arrays, an iterable, or a callable (of arrays,
  lists in the order of `model.inputs`, or dicts by input name)."""
  if data is None:
    warnings.warn("int8 quantization without `representative_data`: calibrating on random "
                  "normal inputs; pass real samples for a usable int8 model.")
    data = [samples.sample_inputs(model, batch=1, seed=i) for i in range(16)]
  if callable(data):
    source = data
  elif isinstance(data, np.ndarray):
    source = lambda: ([x] for x in data)   # one example each; `generator` adds the batch axis
  else:
    source = lambda: iter(data)

  names = _input_names(model)

  def generator():
    # Keyed by input name: the converter pairs a list with its inputs in an order of its own
    # (a two-input model's calibration fed the vector to the convolution).
    for sample in source():
      if isinstance(sample, dict):
        sample = [sample[n] for n in names]
      sample = sample if isinstance(sample, (list, tuple)) else [sample]
      batch = {}
      for x, t, name in zip(sample, model.inputs, names):
        x = np.asarray(x, t.dtype.as_numpy_dtype)
        if x.ndim == t.shape.rank - 1:
          x = x[None]
        batch[name] = x
      yield batch
  return generator


def convert(model: tf.keras.Model, quantization: Optional[str] = None,
            representative_data=None) -> bytes:
  """The .tflite flatbuffer of a plain Keras model; `ExportCheckError` if TFLite cannot
  convert it."""
  if quantization not in QUANTIZATIONS:
    raise errors.InvalidArgumentError(
        f"`quantization` must be one of {QUANTIZATIONS}, got {quantization!r}.")
  converter = tf.lite.TFLiteConverter.from_keras_model(model)
  if quantization == "float16":
    converter.optimizations = [tf.lite.Optimize.DEFAULT]
    converter.target_spec.supported_types = [tf.float16]
  elif quantization == "int8":
    converter.optimizations = [tf.lite.Optimize.DEFAULT]
    converter.representative_dataset = _representative(model, representative_data)
    converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
  try:
    with _compat.native_logs_filtered():   # the converter's absl INFO / WARNING lines
      return converter.convert()
  except errors.LilNetXError:               # e.g. bad representative data
    raise
  except Exception as e:   # ConverterError (ops TFLite lacks, e.g. string ops), ValueError, ...
    raise errors.ExportCheckError(f"TFLite cannot convert the model: {e}") from e


def interpreter(content: bytes, num_threads: int = 1,
                input_shapes: Optional[Callable[[list], list]] = None):
  """LiteRT's interpreter of `content` where ai-edge-litert is installed, else TF's, its tensors
  allocated for `input_shapes(input details)` (see `_compat.tflite_interpreter`)."""
  return _compat.tflite_interpreter(content, num_threads, input_shapes)


def _match_inputs(details: list, model: tf.keras.Model) -> list:
  """Interpreter input details in the order of `model.inputs`, by name, else by position.

  The converter names Keras input `x` `serving_default_x:0`: a detail belongs to the input whose
  name ends its own (the longest: `x` must not take `input_x`'s tensor; a plain substring test
  gave input `a` the tensor `serving_default_b`)."""
  if len(details) == 1:
    return details
  names = _input_names(model)
  found = {}
  for detail in details:
    base = detail["name"].split(":")[0]
    fits = [n for n in names if base == n or base.endswith("_" + n)]
    if fits:
      found.setdefault(max(fits, key=len), detail)
  return [found[n] for n in names] if len(found) == len(names) else details


def run(content: bytes, model: tf.keras.Model, inputs: Sequence[np.ndarray],
        num_threads: int = 1) -> list:
  """Runs the .tflite model example by example (batch 1); returns one array per output.

  Tensors are allocated for the examples' shapes before anything runs: a dynamic dimension
  (sequence length) is checked at the size the inputs have, never at the placeholder 1.
  """
  def example_shapes(details: list) -> list:
    by_index = {d["index"]: (1,) + np.shape(x)[1:]
                for d, x in zip(_match_inputs(details, model), inputs)}
    return [by_index.get(d["index"], d["shape"]) for d in details]

  interp = interpreter(content, num_threads, example_shapes)
  in_details = _match_inputs(interp.get_input_details(), model)
  out_details = interp.get_output_details()
  batch = len(inputs[0])
  results = [[] for _ in out_details]
  for b in range(batch):
    for d, x in zip(in_details, inputs):
      example = np.asarray(x[b:b + 1], d["dtype"])
      if tuple(d["shape"]) != example.shape:
        interp.resize_tensor_input(d["index"], example.shape)
        interp.allocate_tensors()
      interp.set_tensor(d["index"], example)
    interp.invoke()
    for i, d in enumerate(out_details):
      results[i].append(interp.get_tensor(d["index"]).copy())
  return [np.concatenate(r) for r in results]


def max_difference(content: bytes, model: tf.keras.Model,
                   inputs: Sequence[np.ndarray]) -> tuple[float, float]:
  """(largest |TFLite − Keras| over outputs, largest |Keras|) on `inputs`."""
  feed = inputs[0] if len(inputs) == 1 else list(inputs)
  reference = [np.asarray(r) for r in tf.nest.flatten(model(feed, training=False))]
  got = run(content, model, inputs)
  diff = 0.0
  unused = list(range(len(got)))
  for ref in reference:   # outputs are matched by shape, in order
    i = next((i for i in unused if got[i].shape == ref.shape), None)
    if i is None:
      raise errors.LilNetXError(f"No TFLite output of shape {ref.shape}.")
    unused.remove(i)
    diff = max(diff, float(np.max(np.abs(got[i].astype(np.float64) - ref))))
  scale = max(float(np.max(np.abs(r))) for r in reference)
  return diff, scale


def _timing_shape(detail: dict, dynamic_size: int) -> list:
  """Batch 1, and `dynamic_size` for every other dynamic dimension of an input."""
  signature = detail.get("shape_signature", detail["shape"])
  return [1] + [dynamic_size if s < 0 else int(s) for s in signature[1:]]


class Timer:
  """Batch-1 latency of one .tflite model: `time(n)` returns n invoke() durations in seconds.

  Dynamic dimensions other than the batch (sequence length, image size) are timed at
  `dynamic_size` (default `samples.DEFAULT_SIZE`, what the export check uses).
  """

  def __init__(self, content: bytes, num_threads: int, seed: int = 0, warmup: int = 20,
               dynamic_size: int = samples.DEFAULT_SIZE):
    self.interp = interpreter(
        content, num_threads, lambda details: [_timing_shape(d, dynamic_size) for d in details])
    rng = np.random.default_rng(seed)
    for d in self.interp.get_input_details():
      self.interp.set_tensor(d["index"], samples.random_input(rng, d["shape"], d["dtype"]))
    for _ in range(warmup):
      self.interp.invoke()

  def time(self, runs: int = 1) -> list:
    out = []
    for _ in range(runs):
      start = time.perf_counter()
      self.interp.invoke()
      out.append(time.perf_counter() - start)
    return out


def median_latencies(contents: dict, runs: int = 200, num_threads: int = 1,
                     block: int = 10, dynamic_size: int = samples.DEFAULT_SIZE) -> dict:
  """Median batch-1 latency in ms of each named .tflite model, timed alternately in blocks.

  Interleaving the models in blocks of `block` invokes makes them share whatever else the
  machine is doing, so their ratio is meaningful even on a busy machine.
  """
  timers = {name: Timer(content, num_threads, dynamic_size=dynamic_size)
            for name, content in contents.items()}
  times = {name: [] for name in timers}
  for _ in range(max(1, runs // block)):
    for name, timer in timers.items():
      times[name] += timer.time(block)
  return {name: statistics.median(t) * 1e3 for name, t in times.items()}
