"""Integration: the MNIST example end to end on real data (train, compress, decompress, export).

Needs MNIST prepared by TFDS where `TFDS_DATA_DIR` points (the Makefile sets it when the shared
datasets folder exists beside the checkout); without it the test is skipped, since nothing may
download here. Also checks that the installed TFDS can take its download path at all.
"""

import glob
import json
import os
import subprocess
import sys

import pytest
import tensorflow as tf
import tensorflow_datasets as tfds

import lilnetx_tf as lnx

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _mnist_prepared() -> bool:
  data_dir = os.environ.get("TFDS_DATA_DIR", "")
  return bool(data_dir) and bool(glob.glob(os.path.join(data_dir, "mnist", "*", "dataset_info.json")))


@pytest.mark.skipif(not _mnist_prepared(), reason="MNIST is not prepared under TFDS_DATA_DIR")
@pytest.mark.parametrize("layers", ["lnx", "plain"])
def test_mnist_example(tmp_path, layers):
  env = dict(os.environ, PYTHONPATH=ROOT, TF_CPP_MIN_LOG_LEVEL="3")
  run = subprocess.run(
      [sys.executable, os.path.join(ROOT, "examples", "mnist.py"), "--model=lenet5",
       f"--layers={layers}", "--epochs=1", "--train_examples=4000", "--float16",
       "--penalty_warmup_epochs=0.25", "--penalty_cooldown_epochs=0.5",
       "--penalty_final_factor=0.2", "--latent_lr_multiplier=2", "--l2_weight=2e-6",
       f"--output_dir={tmp_path}"],
      env=env, capture_output=True, text=True, timeout=900)
  assert run.returncode == 0, run.stderr[-4000:]
  with open(tmp_path / "summary.json") as f:
    summary = json.load(f)
  assert summary["test_accuracy"] > 0.5          # 32 steps of LeNet5 on real MNIST
  if layers == "plain":
    shipped = summary["shipped"]
    assert set(shipped) == {"keras float32 weights", "tflite float32", "tflite float16",
                            "tflite int8"}
    assert shipped["tflite int8"]["bytes"] < shipped["tflite float16"]["bytes"] < \
        shipped["tflite float32"]["bytes"]
    assert shipped["tflite int8"]["accuracy"] > 0.8
    # --init_from starts LilNetX training from the trained dense model (lnx.convert warm start).
    run = subprocess.run(
        [sys.executable, os.path.join(ROOT, "examples", "mnist.py"), "--model=lenet5",
         "--epochs=1", "--train_examples=1000", "--learning_rate=1e-6", "--noexport",
         "--warm_start_resolution=0.05", f"--init_from={tmp_path / 'trained.keras'}",
         f"--output_dir={tmp_path / 'lnx'}"],
        env=env, capture_output=True, text=True, timeout=900)
    assert run.returncode == 0, run.stderr[-4000:]
    with open(tmp_path / "lnx" / "summary.json") as f:
      warm = json.load(f)
    assert warm["init_from"].endswith("trained.keras")
    assert warm["warm_start_resolution"] == 0.05
    # At a negligible learning rate the converted model is the dense one (a fresh LilNetX
    # model would be near 10 %).
    assert abs(warm["test_accuracy"] - summary["test_accuracy"]) < 0.02
    return
  assert summary["penalty_warmup_epochs"] == 0.25
  assert summary["penalty_cooldown_epochs"] == 0.5 and summary["penalty_final_factor"] == 0.2
  assert summary["latent_lr_multiplier"] == 2.0
  assert summary["l2_weight"] == 2e-6
  trained = tf.keras.models.load_model(tmp_path / "trained.keras", compile=False)
  assert {l.l2_weight for l in trained.layers if lnx.is_lilnetx_layer(l)} == {2e-6}
  # The table's accuracy is that of the decompressed float16 file, close to the trained model.
  assert abs(summary["test_accuracy"] - summary["trained_accuracy"]) < 0.01
  assert os.path.getsize(tmp_path / "model.lnx") == summary["file_bytes"]
  assert summary["parameter_bytes"] < summary["file_bytes"]
  assert summary["coded_latent_bytes"] <= 1.01 * summary["estimated_latent_bytes"] + 64
  assert os.path.exists(tmp_path / "export" / "model.tflite")
  assert summary["tflite_max_difference"] < 1e-3
  assert summary["latency_ms_dense"] > 0 and summary["latency_ms_slim"] > 0
  assert "accuracy (decompressed file)" in run.stdout

  # --finish_only redoes the file from the saved trained model, here for deployment.
  run = subprocess.run(
      [sys.executable, os.path.join(ROOT, "examples", "mnist.py"), "--model=lenet5",
       "--finish_only", "--float16", "--inference_only", "--noexport",
       f"--output_dir={tmp_path}"], env=env, capture_output=True, text=True, timeout=900)
  assert run.returncode == 0, run.stderr[-4000:]
  with open(tmp_path / "summary.json") as f:
    lean = json.load(f)
  assert lean["inference_only"] and lean["trained_accuracy"] == summary["trained_accuracy"]
  assert lean["parameter_bytes"] < summary["parameter_bytes"]
  assert abs(lean["test_accuracy"] - summary["test_accuracy"]) < 0.01


def test_tfds_download_path_resolves_builder_code(tmp_path):
  # A dataset not yet prepared makes TFDS resolve its builder's source file before downloading;
  # tensorflow-datasets 4.9 needs `importlib_resources` for that (not declared for Python 3.11).
  builder = tfds.builder("mnist", data_dir=str(tmp_path))
  assert builder.code_path is not None and builder.code_path.name == "mnist.py"
