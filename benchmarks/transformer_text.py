"""A small transformer text classifier, plain vs `lnx.convert`, in the same training budget.

    PYTHONPATH=. python benchmarks/transformer_text.py [--epochs=8] [--rate_weight=0.3]
        [--boundary=0.5] [--compression=12]

The task is synthetic (no download): sequences of `--length` tokens drawn from the first
`--used` ids of a `--vocab`-token vocabulary (the rest never occur, as rare words in a real
vocabulary), with a few "positive" ids (1..20) and "negative" ids (21..40) inserted among
filler ids; the label says whether positives outnumber negatives. The model is token
embedding + 2 encoder blocks (MultiHeadAttention, Add, LayerNormalization, Dense FFN) +
average pooling + Dense, built from stock Keras layers. Both runs train the same freshly
initialized model for the same epochs with Adam (`--latent_lr_multiplier` times larger steps
on the LilNetX latents); the LilNetX one is `lnx.convert`ed first: by default without warm
start and without a size target, its fixed penalties ramped in over the first epoch
(`--boundary` 0.5, a coarse initial grid, gave the best size and accuracy of those settings);
with `--compression=C`, with `lnx.convert`'s defaults and the size target C instead (the rate
controller sets the penalties; the rate, slice and boundary flags are not used). Printed: test accuracy, the `.lnx` bytes, the
plain model's int8 TFLite bytes (calibrated on training sequences), their ratio, the heads and
embedding rows left, and the batch-1 TFLite latency of the plain and slim float32 models.
"""

import argparse
import tempfile

import numpy as np
import tensorflow as tf

import lilnetx_tf as lnx

import twin_rows

L = tf.keras.layers
POSITIVE, NEGATIVE, FIRST_FILLER = range(1, 21), range(21, 41), 41


def token_task(n: int, length: int, used: int, rng: np.random.Generator) -> tuple:
  """(ids (n, length) int64, labels (n,)): do the positive ids outnumber the negative ones?"""
  ids = rng.integers(FIRST_FILLER, used, (n, length))
  labels = rng.integers(0, 2, n)
  for row, label in zip(ids, labels):
    fewer = rng.integers(0, 5)
    more = fewer + rng.integers(1, 4)
    counts = (more, fewer) if label else (fewer, more)
    places = rng.permutation(length)[:more + fewer]
    words = np.concatenate([rng.choice(POSITIVE, counts[0]), rng.choice(NEGATIVE, counts[1])])
    row[places] = words
  return ids.astype(np.int64), labels.astype(np.int32)


def transformer(vocab: int, length: int, width: int, heads: int, blocks: int) -> tf.keras.Model:
  ids = tf.keras.Input((length,), dtype="int64", name="tokens")
  x = L.Embedding(vocab, width, name="embedding")(ids)
  for b in range(blocks):
    a = L.MultiHeadAttention(heads, width // heads, name=f"attention{b}")(x, x)
    x = L.LayerNormalization(name=f"norm{b}a")(L.Add()([x, a]))
    f = L.Dense(2 * width, activation="relu", name=f"ffn{b}a")(x)
    f = L.Dense(width, name=f"ffn{b}b")(f)
    x = L.LayerNormalization(name=f"norm{b}b")(L.Add()([x, f]))
  x = L.GlobalAveragePooling1D()(x)
  return tf.keras.Model(ids, L.Dense(2, name="classifier")(x), name="text_transformer")


def train(model, data, epochs: int, callbacks=(), latent_lr_multiplier: float = 1.0) -> float:
  (x, y), (x_test, y_test) = data
  model.compile(lnx.optimizers.Adam(1e-3, latent_lr_multiplier=latent_lr_multiplier),
                tf.keras.losses.SparseCategoricalCrossentropy(from_logits=True),
                metrics=["accuracy"])
  model.fit(x, y, batch_size=64, epochs=epochs, verbose=2, callbacks=list(callbacks))
  logits = model.predict(x_test, batch_size=256, verbose=0)
  return float(np.mean(np.argmax(logits, -1) == y_test))


def live_heads(model) -> list:
  """Heads of each attention layer of the slim model."""
  return [l._num_heads for l in model.layers if isinstance(l, L.MultiHeadAttention)]


def main():
  parser = argparse.ArgumentParser()
  parser.add_argument("--epochs", type=int, default=8)
  parser.add_argument("--rate_weight", type=float, default=0.3)
  parser.add_argument("--slice_weight", type=float, default=lnx.layers.base.DEFAULT_SLICE_WEIGHT)
  parser.add_argument("--boundary", type=float, default=0.5)
  parser.add_argument("--compression", type=float, default=None,
                      help="Use lnx.convert's defaults with this size target instead.")
  parser.add_argument("--latent_lr_multiplier", type=float, default=1.0,
                      help="Adam steps on the latents are this many times larger.")
  parser.add_argument("--vocab", type=int, default=2000)
  parser.add_argument("--used", type=int, default=1000)
  parser.add_argument("--length", type=int, default=48)
  parser.add_argument("--width", type=int, default=64)
  parser.add_argument("--heads", type=int, default=4)
  parser.add_argument("--train", type=int, default=6000)
  parser.add_argument("--test", type=int, default=2000)
  parser.add_argument("--seed", type=int, default=0)
  args = parser.parse_args()
  rng = np.random.default_rng(args.seed)
  data = (token_task(args.train, args.length, args.used, rng),
          token_task(args.test, args.length, args.used, rng))
  build = lambda: transformer(args.vocab, args.length, args.width, args.heads, blocks=2)
  representative = data[0][0][:200]
  out = tempfile.mkdtemp(prefix="transformer_text_")

  tf.keras.utils.set_random_seed(args.seed)
  plain = build()
  plain_accuracy = train(plain, data, args.epochs)
  int8 = twin_rows.int8_bytes(plain, representative)

  tf.keras.utils.set_random_seed(args.seed)
  if args.compression is None:
    model = lnx.convert(build(), rate_weight=args.rate_weight, slice_weight=args.slice_weight,
                        boundary=args.boundary, warm_start=False, compression=None)
    callbacks = [lnx.callbacks.PenaltyWarmup(-(-args.train // 64))]
  else:
    model, callbacks = lnx.convert(build(), compression=args.compression), []
  accuracy = train(model, data, args.epochs, callbacks, args.latent_lr_multiplier)
  twin = twin_rows.compress_and_slim(model, out)
  rows_left = int(np.any(twin.small.get_layer("embedding").get_weights()[0] != 0, axis=1).sum())
  print(twin_rows.table(plain_accuracy, int8, accuracy, twin.lnx_bytes))
  print(f"heads left per block: {live_heads(twin.small)} of {args.heads}; embedding rows left: "
        f"{rows_left} of {args.vocab} ({args.used} ids occur)")
  print(twin_rows.latency_line(twin.latency, f"length {args.length}"))


if __name__ == "__main__":
  main()
