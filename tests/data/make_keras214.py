"""Writes keras214.keras and keras214.npz, the Keras 2.14 file test_keras_files.py migrates.

Run once on the TF 2.14 configuration (`make venv STACK=tf214`):
    .venv-tf214/bin/python tests/data/make_keras214.py
Two LilNetX layers share one parameter group (as in every real model) and the optimizer has
state, so the file holds every kind of path the migration moves.
"""

import os

import numpy as np
import tensorflow as tf

import lilnetx_tf as lnx

HERE = os.path.dirname(os.path.abspath(__file__))


def main():
  tf.keras.utils.set_random_seed(0)
  model = tf.keras.Sequential([tf.keras.Input((5,)), lnx.Dense(4, activation="relu"),
                               tf.keras.layers.BatchNormalization(), lnx.Dense(3)])
  model.compile("adam", tf.keras.losses.SparseCategoricalCrossentropy(from_logits=True))
  x = np.random.default_rng(0).normal(size=(8, 5)).astype(np.float32)
  model.fit(x, np.arange(8) % 3, epochs=1, verbose=0)
  model.save(os.path.join(HERE, "keras214.keras"))
  np.savez(os.path.join(HERE, "keras214.npz"), x=x, y=model(x, training=False).numpy())


if __name__ == "__main__":
  main()
