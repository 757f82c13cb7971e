"""Can the user's optimizer drive a group's decoder through zero? A text CNN on synthetic tokens.

    PYTHONPATH=. python benchmarks/decoder_stability.py --optimizers=adam,adamw,sgdm \
        --learning_rates=1e-4,1e-3,1e-2 --warm_start=1,0

Embedding → Conv1D (plain Keras: not converted) → GlobalMaxPool → Dense → Dense(1), a binary
task on random token sequences (label: whether any of 10 "signal" tokens occurs), converted with
`lnx.convert` and trained with `compile(optimizer)` / `fit`. For each run the table gives the
dense group's decoder scale Ψ relative to its initial value (first, smallest over the training
steps, last) and the test accuracy of the plain and the converted model.
"""

import argparse
import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import lilnetx_tf as lnx  # before TF: picks Keras 2, filters TF 2.21's start-up logs

import numpy as np
import tensorflow as tf

from lilnetx_tf.stats import lilnetx_layers

VOCAB, LENGTH, SIGNAL = 500, 40, 10


def data(n: int, seed: int):
  rng = np.random.default_rng(seed)
  tokens = rng.integers(SIGNAL, VOCAB, size=(n, LENGTH))
  labels = rng.integers(0, 2, size=n)
  where = rng.integers(0, LENGTH, size=n)
  tokens[labels == 1, where[labels == 1]] = rng.integers(0, SIGNAL, size=int(labels.sum()))
  return tokens.astype(np.int32), labels.astype(np.float32)


def text_cnn(seed: int) -> tf.keras.Model:
  tf.keras.utils.set_random_seed(seed)
  inputs = tf.keras.Input((LENGTH,), dtype="int32")
  x = tf.keras.layers.Embedding(VOCAB, 32)(inputs)
  x = tf.keras.layers.Conv1D(64, 5, activation="relu")(x)
  x = tf.keras.layers.GlobalMaxPooling1D()(x)
  x = tf.keras.layers.Dense(64, activation="relu")(x)
  return tf.keras.Model(inputs, tf.keras.layers.Dense(1, activation="sigmoid")(x))


def optimizer(name: str, lr: float):
  if name == "adam":
    return tf.keras.optimizers.Adam(lr)
  if name == "adamw":
    return tf.keras.optimizers.AdamW(lr)
  return tf.keras.optimizers.SGD(lr * 10, momentum=0.9)   # SGD at 10× the Adam rate


def dense_scale(model) -> float:
  group = lilnetx_layers(model)[0].group
  if hasattr(group, "decoder_matrix"):
    return float(group.decoder_matrix())
  return float(group.decoder.numpy())


class ScaleLog(tf.keras.callbacks.Callback):
  def __init__(self):
    super().__init__()
    self.values = []

  def on_train_batch_end(self, batch, logs=None):
    self.values.append(dense_scale(self.model))


def run(args, name, lr, warm, x, y, xt, yt):
  plain = text_cnn(args.seed)
  plain.compile(optimizer(name, lr), "binary_crossentropy", metrics=["accuracy"])
  plain_acc = None
  if args.plain:
    plain.fit(x, y, batch_size=64, epochs=args.epochs, verbose=0)
    plain_acc = plain.evaluate(xt, yt, verbose=0, return_dict=True)["accuracy"]
  model = lnx.convert(text_cnn(args.seed), warm_start=bool(warm), **args.penalties)
  model.compile(optimizer(name, lr), "binary_crossentropy", metrics=["accuracy"])
  start = dense_scale(model)
  log = ScaleLog()
  model.fit(x, y, batch_size=64, epochs=args.epochs, verbose=0, callbacks=[log])
  acc = model.evaluate(xt, yt, verbose=0, return_dict=True)["accuracy"]
  rel = np.array(log.values) / start
  first_cross = next((i + 1 for i, v in enumerate(rel) if v <= 0), None)
  print(f"{name:6s} {lr:8.0e} {warm:4d} {start:10.4g} {rel.min():8.3f} {rel[-1]:8.3f} "
        f"{str(first_cross):>10s} {'' if plain_acc is None else f'{plain_acc:.3f}':>7s} "
        f"{acc:7.3f}", flush=True)


def main():
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--optimizers", default="adam")
  parser.add_argument("--learning_rates", default="1e-3")
  parser.add_argument("--warm_start", default="1")
  parser.add_argument("--epochs", type=int, default=2)
  parser.add_argument("--examples", type=int, default=4000)
  parser.add_argument("--seed", type=int, default=0)
  parser.add_argument("--plain", type=int, default=1)
  parser.add_argument("--rate_weight", type=float, default=None)
  parser.add_argument("--slice_weight", type=float, default=None)
  parser.add_argument("--l2_weight", type=float, default=None)
  args = parser.parse_args()
  args.penalties = {k: getattr(args, k) for k in ("rate_weight", "slice_weight", "l2_weight")
                    if getattr(args, k) is not None}
  x, y = data(args.examples, args.seed)
  xt, yt = data(2000, args.seed + 1)
  print("optim        lr warm   Ψ_dense0  min Ψ/Ψ0 last Ψ/Ψ0 crosses@   plain     lnx")
  for name in args.optimizers.split(","):
    for lr in (float(v) for v in args.learning_rates.split(",")):
      for warm in (int(v) for v in args.warm_start.split(",")):
        run(args, name, lr, warm, x, y, xt, yt)


if __name__ == "__main__":
  main()
