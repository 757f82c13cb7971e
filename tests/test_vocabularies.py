"""Every tensor a model holds goes into the `.lnx` file and comes back: lookup vocabularies
(strings and integers), dynamic-shape variables and adapted preprocessing state; a hostile
vocabulary fails with a `ModelFileError`, a state the file cannot store with a typed error."""

import json
import struct

import numpy as np
import pytest
import tensorflow as tf

import lilnetx_tf as lnx
from lilnetx_tf import errors
from lilnetx_tf.coding import container

TEXTS = np.array(["the cat sat on the mat", "a dog ran fast", "the bird sang",
                  "cats and dogs", "a fast cat ran", "zebra"])


def _text_model(output_mode: str = "int") -> tf.keras.Model:
  # Keras rebuilds a counting TextVectorization from its config only at a fixed width.
  vectorize = tf.keras.layers.TextVectorization(
      max_tokens=12, output_mode=output_mode, name="vectorize",
      output_sequence_length=6 if output_mode == "int" else None,
      pad_to_max_tokens=output_mode != "int")
  vectorize.adapt(TEXTS)
  inputs = tf.keras.Input((), dtype=tf.string, name="text")
  x = vectorize(inputs)
  if output_mode == "int":
    x = tf.keras.layers.Embedding(12, 4, name="embed")(x)
    x = tf.keras.layers.GlobalAveragePooling1D()(x)
  return tf.keras.Model(inputs, lnx.Dense(3, name="head")(x))


def _round_trip(model, tmp_path, **options) -> tf.keras.Model:
  path = str(tmp_path / "m.lnx")
  report = lnx.compress(model, path, **options)
  inspected = lnx.coding.inspect(path)
  assert inspected.parameters == report.parameters > 0
  assert inspected.total_bytes == report.total_bytes
  return lnx.decompress(path)


@pytest.mark.parametrize("output_mode", ["int", "tf_idf", "multi_hot"])
def test_text_vectorization_round_trip(tmp_path, output_mode):
  model = _text_model(output_mode)
  restored = _round_trip(model, tmp_path)
  vectorize = restored.get_layer("vectorize")
  assert vectorize.get_vocabulary() == model.get_layer("vectorize").get_vocabulary()
  queries = tf.constant(["the cat ran", "unknown words only", "zebra zebra bird"])
  np.testing.assert_array_equal(vectorize(queries), model.get_layer("vectorize")(queries))
  np.testing.assert_array_equal(restored(queries), model(queries))


def test_text_model_lossy_and_inference_only(tmp_path):
  model = _text_model()
  queries = tf.constant(["a cat sat", "dogs"])
  for options in ({"float16": True}, {"float_bits": 8}, {"inference_only": True}):
    restored = _round_trip(model, tmp_path, **options)
    assert restored.get_layer("vectorize").get_vocabulary() == \
        model.get_layer("vectorize").get_vocabulary()
    np.testing.assert_allclose(restored(queries), model(queries), atol=0.05)


def _embedded(ids) -> tf.Tensor:
  """Token ids → 2 features, through Keras layers only (a file may hold no TFOpLambda)."""
  return tf.keras.layers.Flatten()(tf.keras.layers.Embedding(16, 2)(ids))


def test_string_and_integer_lookup_round_trip(tmp_path):
  strings = tf.keras.layers.StringLookup(name="strings")
  strings.adapt(["red", "green", "blue", "green", "ünïcode", ""])
  integers = tf.keras.layers.IntegerLookup(name="integers")
  integers.adapt(np.array([3, 5, 7, 7, -4, 2 ** 40]))
  given = tf.keras.layers.StringLookup(vocabulary=["x", "y"], name="given")   # in the config
  word = tf.keras.Input((1,), dtype=tf.string)
  number = tf.keras.Input((1,), dtype=tf.int64)
  x = tf.keras.layers.Concatenate()([_embedded(strings(word)), _embedded(integers(number)),
                                     _embedded(given(word))])
  model = tf.keras.Model([word, number], lnx.Dense(2, name="head")(x))
  restored = _round_trip(model, tmp_path)
  words = tf.constant([["green"], ["ünïcode"], [""], ["purple"], ["x"], ["y"]])
  numbers = tf.constant([[7], [2 ** 40], [-4], [11], [3], [0]], tf.int64)
  for name in ("strings", "integers", "given"):
    assert restored.get_layer(name).get_vocabulary() == model.get_layer(name).get_vocabulary()
  np.testing.assert_array_equal(restored([words, numbers]), model([words, numbers]))


def test_normalization_and_discretization_state_round_trip(tmp_path):
  data = np.random.default_rng(0).normal(3, 2, (64, 3)).astype(np.float32)
  normalize = tf.keras.layers.Normalization(name="normalize")
  normalize.adapt(data)
  # An adapted Discretization keeps the adapt data's summary in a variable of dynamic shape
  # (2, None): the rebuilt model holds it empty until the file's values are loaded.
  discretize = tf.keras.layers.Discretization(num_bins=4, name="discretize")
  discretize.adapt(data)
  inputs = tf.keras.Input((3,))
  bins = tf.keras.layers.CategoryEncoding(4, output_mode="multi_hot")(discretize(inputs))
  merged = tf.keras.layers.Concatenate()([normalize(inputs), bins])
  model = tf.keras.Model(inputs, lnx.Dense(2, name="head")(merged))
  restored = _round_trip(model, tmp_path)
  np.testing.assert_array_equal(restored(data), model(data))
  np.testing.assert_array_equal(restored.get_layer("discretize").summary.numpy(),
                                discretize.summary.numpy())


def test_convert_with_lookups_trains_and_round_trips(tmp_path):
  """`lnx.convert` with its size target (which counts the model's stored floats) on a model
  with a vocabulary and dynamic-shape state, as a user would write it."""
  vectorize = tf.keras.layers.TextVectorization(max_tokens=12, output_sequence_length=6,
                                                name="vectorize")
  vectorize.adapt(TEXTS)
  discretize = tf.keras.layers.Discretization(num_bins=3, name="discretize")
  lengths = np.array([[len(t)] for t in TEXTS], np.float32)
  discretize.adapt(lengths)
  text = tf.keras.Input((), dtype=tf.string)
  length = tf.keras.Input((1,))
  x = tf.keras.layers.GlobalAveragePooling1D()(tf.keras.layers.Embedding(12, 4)(vectorize(text)))
  x = tf.keras.layers.Concatenate()(
      [x, tf.keras.layers.CategoryEncoding(3, output_mode="one_hot")(discretize(length))])
  plain = tf.keras.Model([text, length], tf.keras.layers.Dense(2)(x))
  model = lnx.convert(plain)
  model.compile("adam", tf.keras.losses.SparseCategoricalCrossentropy(from_logits=True))
  model.fit([TEXTS, lengths], np.arange(len(TEXTS)) % 2, epochs=1, verbose=0)
  restored = _round_trip(model, tmp_path)
  np.testing.assert_array_equal(restored([TEXTS, lengths]), model([TEXTS, lengths]))


def test_vocabulary_file_is_refused_in_safe_mode(tmp_path):
  vocabulary = tmp_path / "vocabulary.txt"
  vocabulary.write_text("red\ngreen\n")
  inputs = tf.keras.Input((1,), dtype=tf.string)
  lookup = tf.keras.layers.StringLookup(vocabulary=str(vocabulary), name="lookup")
  model = tf.keras.Model(inputs, lnx.Dense(2, name="head")(_embedded(lookup(inputs))))
  path = str(tmp_path / "m.lnx")
  lnx.compress(model, path)
  with pytest.raises(errors.ModelFileError, match="vocabulary from a file"):
    lnx.decompress(path)
  restored = lnx.decompress(path, safe_mode=False)
  assert restored.get_layer("lookup").get_vocabulary() == ["[UNK]", "red", "green"]


def test_unsupported_state_names_its_layer(tmp_path):
  class Complex(tf.keras.layers.Layer):
    def build(self, input_shape):
      self.state = self.add_weight("state", (2,), dtype=tf.complex64, initializer="zeros",
                                   trainable=False)

    def call(self, x):
      return x

  inputs = tf.keras.Input((3,))
  model = tf.keras.Model(inputs, lnx.Dense(2)(Complex(name="odd")(inputs)))
  with pytest.raises(errors.UnsupportedLayerError, match="'odd'.*complex64"):
    lnx.compress(model, str(tmp_path / "m.lnx"))


# -------------------------------------------------------------------------------------------
# Hostile vocabularies.

def _lookup_blob(tmp_path) -> bytes:
  strings = tf.keras.layers.StringLookup(name="strings")
  strings.adapt(["red", "green", "blue"])
  inputs = tf.keras.Input((1,), dtype=tf.string)
  path = str(tmp_path / "lookup.lnx")
  lnx.compress(tf.keras.Model(inputs, lnx.Dense(2, name="head")(_embedded(strings(inputs)))),
               path)
  with open(path, "rb") as handle:
    return handle.read()


def _with_vocabulary(blob: bytes, tokens: list, lengths=None, parameters=None) -> bytes:
  """`blob` with the vocabulary (the first WGTS tensor) replaced by `tokens` (`lengths` may
  lie about them), declaring `parameters` (default: the count the new vocabulary makes)."""
  contents = container.decode(blob)
  wgts = next(s for s in contents.sections if s.tag == "WGTS").data
  (head_length,) = struct.unpack_from("<I", wgts)
  manifest = json.loads(wgts[4:4 + head_length])
  assert manifest[0][1:] == ["string", "bytes"]
  old_count = manifest[0][0][0]
  rest = wgts[4 + head_length:]
  old_bytes = 4 * old_count + sum(struct.unpack_from(f"<{old_count}I", rest))
  lengths = [len(t) for t in tokens] if lengths is None else lengths
  manifest[0][0] = [len(lengths)]
  head = json.dumps(manifest).encode()
  wgts = (struct.pack("<I", len(head)) + head + struct.pack(f"<{len(lengths)}I", *lengths)
          + b"".join(tokens) + rest[old_bytes:])
  if parameters is None:
    parameters = contents.parameters - old_count + len(lengths)
  sections = [container.Section(s.tag, wgts if s.tag == "WGTS" else s.data, s.codec)
              for s in contents.sections]
  return container.encode(sections, parameters)


def _open(tmp_path, blob: bytes, **kwargs):
  path = tmp_path / "hostile.lnx"
  path.write_bytes(blob)
  return lnx.decompress(str(path), **kwargs)


def test_rewritten_vocabulary_is_read_exactly(tmp_path):
  blob = _with_vocabulary(_lookup_blob(tmp_path), [b"a", b"b b", b"c"])
  model = _open(tmp_path, blob)
  assert model.get_layer("strings").get_vocabulary() == ["[UNK]", "a", "b b", "c"]


@pytest.mark.parametrize("case, match", [
    ("too_many_tokens", "more than the .* parameters the file declares"),
    ("length_past_end", "shorter than its manifest"),
    ("huge_length", "shorter than its manifest"),
    ("repeated_token", "repeats a token"),
    ("undeclared_tokens", "the file declares")])
def test_hostile_vocabulary(tmp_path, case, match):
  blob = _lookup_blob(tmp_path)
  declared = container.decode(blob).parameters
  if case == "too_many_tokens":      # more tokens than the declared parameters allow
    blob = _with_vocabulary(blob, [b"t%d" % i for i in range(5000)], parameters=declared)
  elif case == "length_past_end":
    blob = _with_vocabulary(blob, [b"ab", b"cd"], lengths=[2, 3])
  elif case == "huge_length":
    blob = _with_vocabulary(blob, [b"ab"], lengths=[2 ** 32 - 1])
  elif case == "repeated_token":
    blob = _with_vocabulary(blob, [b"ab", b"cd", b"ab"])
  else:                              # the declared count does not cover the vocabulary
    blob = _with_vocabulary(blob, [b"a", b"b", b"c", b"d"], parameters=declared)
  with pytest.raises(errors.ModelFileError, match=match):
    _open(tmp_path, blob)


def test_text_model_exports_or_fails_typed(tmp_path):
  model = _text_model()
  queries = [tf.constant(["the cat ran", "zebra"])]
  report = lnx.export(model, str(tmp_path / "saved"), formats=("saved_model",), inputs=queries)
  assert report.parameters_before == 12 * 4 + 4 * 3 + 3   # the vocabulary is no parameter
  restored = tf.saved_model.load(str(tmp_path / "saved" / "saved_model"))
  np.testing.assert_allclose(restored(queries[0]), model(queries[0]), atol=1e-6)
  with pytest.raises(errors.ExportCheckError, match="TFLite cannot convert"):
    lnx.export(model, str(tmp_path / "lite"), inputs=queries)   # string ops TFLite lacks
  # Without `inputs=`, the sample inputs of a string input are words.
  lnx.export(model, str(tmp_path / "sampled"), formats=("saved_model",))


@pytest.mark.parametrize("output_mode", ["count", "multi_hot", "tf_idf"])
def test_vocabulary_wide_output_is_refused_before_writing(output_mode, tmp_path):
  """A lookup whose width is its adapted vocabulary's cannot be rebuilt from its config (not
  by Keras either): compress says so, naming the layer and the fix, and writes nothing."""
  vectorize = tf.keras.layers.TextVectorization(max_tokens=12, output_mode=output_mode,
                                                name="vectorize")
  vectorize.adapt(TEXTS)
  inputs = tf.keras.Input((), dtype=tf.string)
  model = tf.keras.Model(inputs, lnx.Dense(3)(vectorize(inputs)))
  with pytest.raises(errors.UnsupportedLayerError, match="'vectorize'.*pad_to_max_tokens"):
    lnx.compress(model, str(tmp_path / "m.lnx"))
  assert not list(tmp_path.iterdir())
