"""`python -m lilnetx_tf compress|inspect|decompress` on a tiny saved model (subprocesses)."""

import importlib.util
import os
import subprocess
import sys

import numpy as np
import pytest
import tensorflow as tf

import lilnetx_tf as lnx

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _cli(*args):
  env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3",
             PYTHONPATH=ROOT + os.pathsep + os.environ.get("PYTHONPATH", ""))
  return subprocess.run([sys.executable, "-m", "lilnetx_tf", *args], capture_output=True,
                        text=True, env=env, timeout=300)


def test_upgrade_format5(tmp_path):
  """Where tensorflow-compression imports, `upgrade` rewrites a format 5 file; elsewhere it
  fails with the one-line error that says where to run it."""
  out = str(tmp_path / "upgraded.lnx")
  result = _cli("upgrade", os.path.join(ROOT, "tests", "fixtures", "format5.lnx"), out)
  if importlib.util.find_spec("tensorflow_compression") is not None:
    assert result.returncode == 0, result.stderr
    assert lnx.decompress(out) is not None
  else:
    assert result.returncode == 1 and not os.path.exists(out)
    assert "TF 2.14 configuration" in result.stderr and "Traceback" not in result.stderr


@pytest.fixture(scope="module")
def saved(tmp_path_factory):
  directory = tmp_path_factory.mktemp("cli")
  model = tf.keras.Sequential([tf.keras.Input((5,)), lnx.Dense(6, activation="relu"),
                               tf.keras.layers.BatchNormalization(), lnx.Dense(3)])
  path = str(directory / "tiny.keras")
  model.save(path)
  x = np.random.default_rng(0).normal(size=(4, 5)).astype(np.float32)
  return directory, path, model(x).numpy(), x


def test_compress_inspect_decompress(saved):
  directory, path, expected, x = saved
  lnx_path = str(directory / "tiny.lnx")
  result = _cli("compress", path, lnx_path)
  assert result.returncode == 0, result.stderr
  assert "LATS" in result.stdout and "dense" in result.stdout and os.path.exists(lnx_path)

  result = _cli("inspect", lnx_path)
  assert result.returncode == 0, result.stderr
  assert "coded/est" in result.stdout and "parameter bytes" in result.stdout

  out = str(directory / "restored.keras")
  result = _cli("decompress", "--input", lnx_path, "--output", out)
  assert result.returncode == 0, result.stderr
  restored = tf.keras.models.load_model(out, compile=False)
  np.testing.assert_array_equal(restored(x).numpy(), expected)

  corrupt = str(directory / "corrupt.lnx")
  with open(lnx_path, "rb") as src, open(corrupt, "wb") as dst:
    data = bytearray(src.read())
    data[len(data) // 2] ^= 0xFF
    dst.write(bytes(data))
  result = _cli("inspect", "--noestimate", corrupt)
  assert result.returncode == 1
  assert "error:" in result.stderr and "checksum" in result.stderr
  assert "Traceback" not in result.stderr


def _run_in_process(capsys, *args):
  from lilnetx_tf.cli import main
  with pytest.raises(SystemExit) as exit_info:
    main.run(["lilnetx", *args])
  captured = capsys.readouterr()
  return exit_info.value.code, captured.out, captured.err


def test_help_lists_commands(capsys):
  code, out, _ = _run_in_process(capsys, "--help")
  assert code == 0
  for command in ("compress", "decompress", "inspect"):
    assert command in out


def test_command_help_and_unknown_command(capsys):
  code, out, _ = _run_in_process(capsys, "compress", "--help")
  assert code == 0 and "--float16" in out and "Usage: lilnetx compress" in out
  code, _, err = _run_in_process(capsys, "frobnicate")
  assert code == 2 and "unknown command" in err


def test_compress_for_inference(saved, capsys):
  directory, path, expected, x = saved
  lean = str(directory / "lean.lnx")
  code, out, _ = _run_in_process(capsys, "compress", "--float16", "--inference_only", path, lean)
  assert code == 0 and "inference only" in out
  report = lnx.coding.model_file.inspect(lean)
  assert report.inference_only and report.float16
  np.testing.assert_allclose(lnx.decompress(lean)(x).numpy(), expected, rtol=1e-2, atol=1e-2)


def test_output_path_through_a_file_is_a_one_line_error(saved):
  directory, path, _, _ = saved
  blocker = directory / "a_file"
  blocker.write_text("not a directory")
  lnx_path = str(directory / "for_paths.lnx")
  lnx.compress(tf.keras.models.load_model(path), lnx_path)
  for args in (("compress", path, str(blocker / "out.lnx")),
               ("decompress", lnx_path, str(blocker / "out.keras")),
               ("export", path, str(blocker / "out"))):
    result = _cli(*args)
    assert result.returncode == 1, (args, result.stderr)
    assert result.stderr.startswith("error:") and "Traceback" not in result.stderr, args


def test_compress_onto_an_existing_directory_is_an_error(saved, capsys):
  directory, path, _, _ = saved
  existing = directory / "existing_dir"
  existing.mkdir()
  code, _, err = _run_in_process(capsys, "compress", path, str(existing))
  assert code == 1 and err.startswith("error:") and len(err.strip().splitlines()) == 1
  assert "directory" in err
  assert not os.path.exists(str(existing) + ".lnx") and os.listdir(existing) == []


def test_decompress_overwrites_only_its_own_kind_of_output(saved):
  directory, path, expected, x = saved
  lnx_path = str(directory / "for_overwrite.lnx")
  lnx.compress(tf.keras.models.load_model(path), lnx_path)
  out = directory / "restored_dir"
  for _ in range(2):                       # creates, then replaces, a SavedModel directory
    result = _cli("decompress", "--overwrite", lnx_path, str(out))
    assert result.returncode == 0, result.stderr
  assert "saved_model.pb" in os.listdir(out)
  np.testing.assert_array_equal(tf.keras.models.load_model(out)(x).numpy(), expected)
  foreign = directory / "my_files"
  foreign.mkdir()
  (foreign / "keep.txt").write_text("mine")
  result = _cli("decompress", "--overwrite", lnx_path, str(foreign))
  assert result.returncode == 1 and result.stderr.startswith("error:")
  assert "not a SavedModel" in result.stderr and os.listdir(foreign) == ["keep.txt"]
  keras_file = directory / "link_target.keras"
  keras_file.write_bytes(b"old")
  link = directory / "link.keras"
  link.symlink_to(keras_file)
  result = _cli("decompress", "--overwrite", lnx_path, str(link))
  assert result.returncode == 0, result.stderr
  assert link.is_symlink() and keras_file.stat().st_size > 3
  assert not [f for f in os.listdir(directory) if f.startswith(".")]
