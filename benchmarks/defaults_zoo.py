"""Do the defaults hold accuracy on models the library does not ship? The zoo of issue 27.

    TFDS_DATA_DIR=/path/to/tensorflow_datasets PYTHONPATH=. python benchmarks/defaults_zoo.py \
        --models=all --seeds=0,1 --epochs=3 --train_examples=20000

For each model (built here, trained the way its kind usually is) and seed:
  plain   the Keras model, `compile` + `fit`, test accuracy; its int8 TFLite file (dynamic-range
          quantization: int8 weights, `tf.lite.Optimize.DEFAULT`), bytes;
  lnx     `lnx.convert(model)` of the same untrained model (defaults: `compression=12`, the
          automatic warm-start grid), the same `compile` + `fit`, then
          `lnx.compress(..., inference_only=True, float16=True)`: accuracy of the decompressed
          model, `.lnx` bytes;
  knob    the same with `lnx.convert(model, compression=--knob_compression)`: the one size knob.
The table gives the means over seeds: accuracy (balanced accuracy for `class_weight`, whose
test set is imbalanced), Δ = lnx − plain in points, bytes, int8-TFLite / .lnx ratio, and the
wall-time ratio of `fit` (lnx / plain); a line under each row says whether it meets issue 27's
bars (defaults: Δ ≥ −0.5 and ≥ 10× smaller; knob: Δ ≥ −1.5 and ≥ 30×) and, when more than a
fifth of the parameters sit in layers LilNetX does not convert, says so; the per-seed lines
give the rate controller's final factor (`*_scale`). For a model with BatchNormalization,
`plain_bn_acc` is the plain model's accuracy with its statistics set to its final weights
(`lnx.batchnorm.refresh_batchnorm`, what the converted model's `fit` does at its end): the
table's plain column, Δ and verdict use it (Keras's lagging moving statistics are not
compression), and the verdict line also gives the plain model as Keras leaves it. `--penalties` overrides the convert defaults for a sweep
(e.g. `--penalties=compression=none,warm_start_resolution=0.1`).
"""

import argparse
import contextlib
import os
import tempfile
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import lilnetx_tf as lnx  # before TF: picks Keras 2, filters TF 2.21's start-up logs
from lilnetx_tf import macs

import numpy as np
import tensorflow as tf
import tensorflow_datasets as tfds


L = tf.keras.layers
VOCAB, LENGTH, SIGNAL = 2000, 64, 20


# -------------------------------------------------------------------------------------------------
# Data.

def _tfds(name: str, train_examples: int, test_examples: int):
  data_dir = os.environ.get("TFDS_DATA_DIR")
  out = []
  for split, n in (("train", train_examples), ("test", test_examples)):
    ds = tfds.load(name, split=f"{split}[:{n}]", as_supervised=True, data_dir=data_dir)
    x, y = zip(*tfds.as_numpy(ds))
    out += [np.stack(x).astype(np.float32) / 255.0, np.array(y, np.int64)]
  return out


def _tokens(train_examples: int, test_examples: int):
  """Random token sequences; label: whether one of SIGNAL tokens occurs (half of them)."""
  out = []
  for seed, n in ((0, train_examples), (1, test_examples)):
    rng = np.random.default_rng(seed)
    x = rng.integers(SIGNAL, VOCAB, size=(n, LENGTH))
    y = rng.integers(0, 2, size=n)
    where = rng.integers(0, LENGTH, size=n)
    x[y == 1, where[y == 1]] = rng.integers(0, SIGNAL, size=int(y.sum()))
    out += [x.astype(np.int32), y.astype(np.int64)]
  return out


_DATA_CACHE: dict = {}


def data(name: str, args):
  key = (name, args.train_examples, args.test_examples)
  if key not in _DATA_CACHE:
    if name == "tokens":
      _DATA_CACHE[key] = _tokens(args.train_examples, args.test_examples)
    else:
      _DATA_CACHE[key] = _tfds(name, args.train_examples, args.test_examples)
  return _DATA_CACHE[key]


# -------------------------------------------------------------------------------------------------
# Models: (builder, dataset, compile/fit recipe).

def mlp(shape, classes):
  inputs = tf.keras.Input(shape)
  x = L.Flatten()(inputs)
  x = L.Dense(256, activation="relu")(x)
  x = L.Dense(128, activation="relu")(x)
  return tf.keras.Model(inputs, L.Dense(classes)(x))


def bn_cnn(shape, classes):
  inputs = tf.keras.Input(shape)
  x = inputs
  for filters in (32, 64):
    x = L.Conv2D(filters, 3, padding="same", use_bias=False)(x)
    x = L.ReLU()(L.BatchNormalization()(x))
    x = L.Conv2D(filters, 3, padding="same", use_bias=False)(x)
    x = L.ReLU()(L.BatchNormalization()(x))
    x = L.MaxPooling2D()(x)
  x = L.GlobalAveragePooling2D()(x)
  return tf.keras.Model(inputs, L.Dense(classes)(x))


def mobilenet(shape, classes):
  inputs = tf.keras.Input(shape)
  x = L.ReLU(6.0)(L.BatchNormalization()(L.Conv2D(32, 3, strides=1, padding="same",
                                                   use_bias=False)(inputs)))
  for filters, stride in ((64, 1), (128, 2), (128, 1), (256, 2), (256, 1)):
    x = L.DepthwiseConv2D(3, strides=stride, padding="same", use_bias=False)(x)
    x = L.ReLU(6.0)(L.BatchNormalization()(x))
    x = L.Conv2D(filters, 1, use_bias=False)(x)
    x = L.ReLU(6.0)(L.BatchNormalization()(x))
  x = L.GlobalAveragePooling2D()(x)
  return tf.keras.Model(inputs, L.Dense(classes)(x))


def residual(shape, classes):
  inputs = tf.keras.Input(shape)
  x = L.ReLU()(L.BatchNormalization()(L.Conv2D(32, 3, padding="same", use_bias=False)(inputs)))
  for filters, stride in ((32, 1), (64, 2), (64, 1)):
    y = L.Conv2D(filters, 3, strides=stride, padding="same", use_bias=False)(x)
    y = L.ReLU()(L.BatchNormalization()(y))
    y = L.BatchNormalization()(L.Conv2D(filters, 3, padding="same", use_bias=False)(y))
    if stride != 1 or x.shape[-1] != filters:
      x = L.BatchNormalization()(L.Conv2D(filters, 1, strides=stride, use_bias=False)(x))
    x = L.ReLU()(L.Add()([x, y]))
  x = L.GlobalAveragePooling2D()(x)
  return tf.keras.Model(inputs, L.Dense(classes)(x))


def text(shape, classes):
  del shape, classes
  inputs = tf.keras.Input((LENGTH,), dtype="int32")
  x = L.Embedding(VOCAB, 32)(inputs)
  x = L.Conv1D(64, 5, activation="relu")(x)
  x = L.GlobalMaxPooling1D()(x)
  x = L.Dense(64, activation="relu")(x)
  return tf.keras.Model(inputs, L.Dense(1, activation="sigmoid")(x))


def small_cnn(shape, classes):
  inputs = tf.keras.Input(shape)
  x = L.Conv2D(32, 3, activation="relu")(inputs)
  x = L.MaxPooling2D()(x)
  x = L.Conv2D(64, 3, activation="relu")(x)
  x = L.MaxPooling2D()(x)
  x = L.Flatten()(x)
  x = L.Dense(128, activation="relu")(x)
  return tf.keras.Model(inputs, L.Dense(classes)(x))


def mixed_cnn(shape, classes):
  """The mixed-precision row's CNN: float16 compute everywhere but the float32 output (Keras's
  mixed-precision guide). Narrow on purpose: on CPU, TF's float16 convolution gradients run
  ~100× slower than float32 (oneDNN's filter gradient of a 3×3 conv 32 → 64 on 13×13: 1.8 s
  instead of 10 ms per batch of 128), so the zoo's former CNN (convs 32 and 64) needed over an
  hour; one strided 8-filter conv and a Dense head run at ~2× their float32 step."""
  inputs = tf.keras.Input(shape)
  x = L.Conv2D(8, 3, strides=2, padding="same", activation="relu")(inputs)
  x = L.Flatten()(x)
  x = L.Dense(128, activation="relu")(x)
  return tf.keras.Model(inputs, L.Activation("linear", dtype="float32")(L.Dense(classes)(x)))


SPARSE_LOGITS = tf.keras.losses.SparseCategoricalCrossentropy(from_logits=True)
MODELS = {
    # name: (builder, dataset, optimizer factory, loss, options)
    "mlp": (mlp, "mnist", lambda: tf.keras.optimizers.Adam(1e-3), SPARSE_LOGITS, {}),
    "bn_cnn": (bn_cnn, "cifar10", lambda: tf.keras.optimizers.Adam(1e-3), SPARSE_LOGITS, {}),
    "mobilenet": (mobilenet, "cifar10", lambda: tf.keras.optimizers.Adam(1e-3), SPARSE_LOGITS,
                  {}),
    "residual": (residual, "cifar10", lambda: tf.keras.optimizers.Adam(1e-3), SPARSE_LOGITS,
                 {}),
    "text": (text, "tokens", lambda: tf.keras.optimizers.Adam(1e-3), "binary_crossentropy", {}),
    "class_weight": (mlp, "mnist", lambda: tf.keras.optimizers.Adam(1e-3), SPARSE_LOGITS,
                     {"class_weight": True}),
    "mixed_precision": (mixed_cnn, "mnist", lambda: tf.keras.optimizers.Adam(1e-3),
                        SPARSE_LOGITS, {"mixed": True}),
    "sgd_momentum": (small_cnn, "cifar10",
                     lambda: tf.keras.optimizers.SGD(0.01, momentum=0.9), SPARSE_LOGITS, {}),
}


# -------------------------------------------------------------------------------------------------
# One run.

def _accuracy(model, x, y, balanced: bool) -> float:
  p = model.predict(x, batch_size=512, verbose=0)
  predicted = (p[:, 0] > 0.5).astype(np.int64) if p.shape[-1] == 1 else np.argmax(p, -1)
  if not balanced:
    return float(np.mean(predicted == y))
  return float(np.mean([np.mean(predicted[y == c] == c) for c in np.unique(y)]))


def _tflite_int8_bytes(build, weights) -> int:
  """Int8-weight TFLite bytes of the plain model, rebuilt in float32 (TFLite cannot take the
  float16 ops of a mixed-precision model)."""
  policy = tf.keras.mixed_precision.global_policy()
  tf.keras.mixed_precision.set_global_policy("float32")
  try:
    model = build()
    model.set_weights(weights)
  finally:
    tf.keras.mixed_precision.set_global_policy(policy)
  converter = tf.lite.TFLiteConverter.from_keras_model(model)
  converter.optimizations = [tf.lite.Optimize.DEFAULT]
  return len(converter.convert())


def _unconverted_share(model) -> float:
  """Share of the model's parameters outside the LilNetX latents (plain layers, biases,
  normalization): what the file stores as floats."""
  latents = sum(int(np.prod(layer.latent_variable.shape))
                for layer in lnx.layers.lilnetx_layers(model))
  return 1 - latents / max(macs.model_parameters(model), 1)


def _reference(mean: dict) -> float:
  """The plain accuracy a row is judged against: with recomputed BatchNorm statistics if the
  model has BatchNormalization (see the module docstring)."""
  return mean.get("plain_bn_acc", mean["plain_acc"])


def _verdict(mean: dict) -> str:
  """Whether the row meets issue 27's bars, and the likeliest reason when it does not."""
  parts = []
  plain = _reference(mean)
  for variant, ratio_bar, delta_bar in (("lnx", 10, -0.5), ("knob", 30, -1.5)):
    if f"{variant}_acc" not in mean:
      continue
    ratio = mean["tflite_bytes"] / mean[f"{variant}_bytes"]
    delta = 100 * (mean[f"{variant}_acc"] - plain)
    misses = ([f"ratio {ratio:.1f} < {ratio_bar}"] if ratio < ratio_bar else []) + (
        [f"Δ {delta:+.2f} < {delta_bar}"] if delta < delta_bar else [])
    parts.append(f"{variant}: " + ("meets the bar" if not misses else "misses: " + ", ".join(misses)))
  if "plain_bn_acc" in mean:
    parts.append(f"plain judged with its BatchNorm statistics at its final weights; as Keras "
                 f"leaves it {100 * mean['plain_acc']:.2f}")
  if mean["unconverted"] > 0.2:
    parts.append(f"{100 * mean['unconverted']:.0f} % of the parameters are outside the latents "
                 "(unconverted layers, biases: stored as floats)")
  return "; ".join(parts)


def _train(model, name, args, x, y, seed):
  _, _, make_optimizer, loss, options = MODELS[name]
  model.compile(make_optimizer(), loss)
  fit_kwargs = {}
  if options.get("class_weight"):
    counts = np.bincount(y)
    fit_kwargs["class_weight"] = {c: 1.0 / n for c, n in enumerate(counts)}
  start = time.perf_counter()
  tf.keras.utils.set_random_seed(seed + 100)
  model.fit(x, y, batch_size=args.batch_size, epochs=args.epochs, verbose=0, **fit_kwargs)
  return time.perf_counter() - start


@contextlib.contextmanager
def _precision(mixed: bool):
  """The `mixed_float16` policy if `mixed`, and then without Grappler's MatMul + BiasAdd fusion,
  which has no fast float16 CPU kernel (a Dense 1,568 → 128 took 500 ms instead of 1 ms per
  batch of 128): plain and LilNetX models alike, for this row only."""
  if not mixed:
    yield
    return
  policy = tf.keras.mixed_precision.global_policy()
  remapping = tf.config.optimizer.get_experimental_options().get("remapping", True)
  tf.keras.mixed_precision.set_global_policy("mixed_float16")
  tf.config.optimizer.set_experimental_options({"remapping": False})
  try:
    yield
  finally:
    tf.keras.mixed_precision.set_global_policy(policy)
    tf.config.optimizer.set_experimental_options({"remapping": remapping})


def run(name: str, seed: int, args) -> dict:
  builder, dataset, _, _, options = MODELS[name]
  x, y, xt, yt = data(dataset, args)
  if options.get("class_weight"):   # "is it a 0?": an imbalanced binary task (~10 % positive)
    y, yt = (y == 0).astype(np.int64), (yt == 0).astype(np.int64)
  classes = 1 if dataset == "tokens" else int(max(y.max(), yt.max()) + 1)
  with _precision(bool(options.get("mixed"))):
    def build():
      tf.keras.utils.set_random_seed(seed)
      return builder(x.shape[1:], classes)
    balanced = bool(options.get("class_weight"))
    row = {}
    plain = build()
    row["plain_time"] = _train(plain, name, args, x, y, seed)
    row["plain_acc"] = _accuracy(plain, xt, yt, balanced)
    if lnx.batchnorm.refresh_batchnorm(plain, x, args.batch_size):   # what `fit` of lnx does
      row["plain_bn_acc"] = _accuracy(plain, xt, yt, balanced)
    row["tflite_bytes"] = _tflite_int8_bytes(build, plain.get_weights())
    variants = [("lnx", {**args.penalties})]
    if args.knob_compression > 0:
      variants.append(("knob", {**args.penalties, "compression": args.knob_compression}))
    for variant, kwargs in variants:
      model = lnx.convert(build(), **kwargs)
      row["unconverted"] = _unconverted_share(model)
      row[f"{variant}_time"] = _train(model, name, args, x, y, seed)
      controller = getattr(model, "_lilnetx_rate_controller", None)
      if controller is not None:
        row[f"{variant}_scale"] = controller.scale
      with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "model.lnx")
        lnx.compress(model, path, inference_only=True, float16=True, estimate=False)
        row[f"{variant}_bytes"] = os.path.getsize(path)
        row[f"{variant}_acc"] = _accuracy(lnx.decompress(path), xt, yt, balanced)
    return row


def main():
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--models", default="all", help=f"comma list of {sorted(MODELS)} or all")
  parser.add_argument("--seeds", default="0,1")
  parser.add_argument("--epochs", type=int, default=3)
  parser.add_argument("--train_examples", type=int, default=20000)
  parser.add_argument("--test_examples", type=int, default=5000)
  parser.add_argument("--batch_size", type=int, default=128)
  parser.add_argument("--knob_compression", type=float, default=32.0,
                      help="convert's `compression` in the size-knob row (0: no knob row)")
  parser.add_argument("--penalties", default="",
                      help="convert arguments for every lnx run, e.g. slice_weight=0.001")
  args = parser.parse_args()
  args.penalties = {k: None if v == "none" else float(v) for k, v in
                    (item.split("=") for item in args.penalties.split(",") if item)}
  names = sorted(MODELS) if args.models == "all" else args.models.split(",")
  unknown = [n for n in names if n not in MODELS]
  if unknown:
    parser.error(f"unknown models {unknown}; known: {sorted(MODELS)}")
  seeds = [int(s) for s in args.seeds.split(",")]
  print(f"# {vars(args)}", flush=True)
  header = (f"{'model':16s} {'plain':>6s} {'lnx':>6s} {'Δ pts':>6s} {'lnx B':>8s} "
            f"{'int8 B':>9s} {'ratio':>6s} {'time×':>6s} | {'knob':>6s} {'Δ pts':>6s} "
            f"{'knob B':>8s} {'ratio':>6s}")
  print(header, flush=True)
  for name in names:
    rows = [run(name, seed, args) for seed in seeds]
    mean = {k: float(np.mean([r[k] for r in rows])) for k in rows[0]}
    plain = _reference(mean)
    line = (f"{name:16s} {100 * plain:6.2f} {100 * mean['lnx_acc']:6.2f} "
            f"{100 * (mean['lnx_acc'] - plain):+6.2f} {mean['lnx_bytes']:8.0f} "
            f"{mean['tflite_bytes']:9.0f} {mean['tflite_bytes'] / mean['lnx_bytes']:6.1f} "
            f"{mean['lnx_time'] / mean['plain_time']:6.2f}")
    if "knob_acc" in mean:
      line += (f" | {100 * mean['knob_acc']:6.2f} "
               f"{100 * (mean['knob_acc'] - plain):+6.2f} "
               f"{mean['knob_bytes']:8.0f} {mean['tflite_bytes'] / mean['knob_bytes']:6.1f}")
    print(line, flush=True)
    print(f"#   {name}: {_verdict(mean)}", flush=True)
    for seed, r in zip(seeds, rows):
      print(f"#   seed {seed}: " + ", ".join(f"{k}={v:.4g}" for k, v in r.items()), flush=True)


if __name__ == "__main__":
  main()
