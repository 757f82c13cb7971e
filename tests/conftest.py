"""Shared test set-up: quiet TF, deterministic seeds, small synthetic data."""

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np
import pytest

import lilnetx_tf  # noqa: F401  first, as a user would: it selects Keras 2 before TF starts
import tensorflow as tf


@pytest.fixture(autouse=True)
def _seed():
  tf.keras.backend.clear_session()
  tf.keras.utils.set_random_seed(0)
  yield


@pytest.fixture
def image_data():
  """A small learnable image task: is the mean of the image above 0.5?"""
  rng = np.random.default_rng(0)
  x = rng.random((256, 12, 12, 3), dtype=np.float32)
  y = (x[..., 0].mean((1, 2)) > x[..., 1].mean((1, 2))).astype("int32")
  return x, y
