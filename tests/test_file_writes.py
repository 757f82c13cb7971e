"""Writes (`lilnetx_tf.atomic`, `compress`): atomic, no debris after a kill, symlinks written
through, typed path errors, non-finite values refused before anything is written."""

import errno
import os
import signal
import subprocess
import sys
import textwrap

import numpy as np
import pytest
import tensorflow as tf

import lilnetx_tf as lnx
from lilnetx_tf import atomic
from lilnetx_tf import errors
from lilnetx_tf.coding import model_file

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _model() -> tf.keras.Model:
  inputs = tf.keras.Input((4, 4, 2))
  h = lnx.Conv2D(3, 3, name="conv")(inputs)
  h = tf.keras.layers.BatchNormalization(name="bn")(h)
  h = tf.keras.layers.Flatten()(h)
  return tf.keras.Model(inputs, lnx.Dense(2, name="head")(h))


# -------------------------------------------------------------------------------------------
# Kills: a subprocess is stopped at a point of its write, then SIGKILLed.

_BLOCK = """
import os, sys, time
import lilnetx_tf as lnx
from lilnetx_tf import atomic

def block(*args):
  print("blocked", flush=True)
  time.sleep(600)

point, target = sys.argv[1], sys.argv[2]
if point == "before_write":          # the temporary exists, nothing written yet
  atomic._write_chunks = block
elif point == "half_written":
  def half(handle, blob):
    handle.write(blob[:len(blob) // 2])
    handle.flush()
    block()
  atomic._write_chunks = half
elif point == "before_rename":       # written and synced, not yet renamed
  os.replace = block
elif point == "before_swap":         # the new directory complete, not yet swapped in
  atomic._exchange = block
elif point == "after_swap":          # swapped in; the old directory not yet removed
  atomic._remove = block
"""

_COMPRESS = _BLOCK + """
import tensorflow as tf
inputs = tf.keras.Input((4, 4, 2))
h = tf.keras.layers.Flatten()(lnx.Conv2D(3, 3)(inputs))
lnx.compress(tf.keras.Model(inputs, lnx.Dense(2)(h)), target, estimate=False)
"""

_DIRECTORY = _BLOCK + """
with atomic.new_directory(target, lambda target: None) as temp:
  with open(os.path.join(temp, "new"), "w") as f:
    f.write("new")
"""


def _kill_at(script: str, point: str, target: str) -> None:
  """Runs `script` until it reports being blocked at `point`, then SIGKILLs it."""
  env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3",
             PYTHONPATH=ROOT + os.pathsep + os.environ.get("PYTHONPATH", ""))
  process = subprocess.Popen([sys.executable, "-c", textwrap.dedent(script), point, target],
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env, text=True)
  try:
    line = process.stdout.readline()
    assert line == "blocked\n", process.stderr.read()
    process.send_signal(signal.SIGKILL)
  finally:
    process.kill()
    process.wait(timeout=60)
  assert process.returncode == -signal.SIGKILL


@pytest.mark.parametrize("point", ["before_write", "half_written", "before_rename"])
def test_killed_compress_keeps_the_old_file_and_the_next_write_cleans(tmp_path, point):
  target = tmp_path / "model.lnx"
  old = lnx.compress(_model(), str(target), estimate=False)
  old_bytes = target.read_bytes()
  _kill_at(_COMPRESS, point, str(target))
  assert target.read_bytes() == old_bytes                  # old file intact
  debris = atomic.stale_temporaries(str(target))
  assert len(debris) == 1 and sorted(os.listdir(tmp_path)) == sorted(
      ["model.lnx", os.path.basename(debris[0])])
  lnx.compress(_model(), str(target), estimate=False)
  assert os.listdir(tmp_path) == ["model.lnx"]              # the next write cleaned it
  assert old.total_bytes == len(old_bytes) and lnx.decompress(str(target)) is not None


@pytest.mark.parametrize("point, survivor", [("before_swap", "old"), ("after_swap", "new")])
def test_killed_directory_swap_keeps_one_version_and_the_next_write_cleans(tmp_path, point,
                                                                          survivor):
  target = tmp_path / "export"
  target.mkdir()
  (target / "old").write_text("old")
  _kill_at(_DIRECTORY, point, str(target))
  assert os.listdir(target) == [survivor]                   # never missing, never mixed
  assert len(atomic.stale_temporaries(str(target))) == 1
  with atomic.new_directory(str(target), lambda target: None) as temp:
    (tmp_path / temp / "again").write_text("again")
  assert os.listdir(tmp_path) == ["export"] and os.listdir(target) == ["again"]


def test_directory_swap_without_an_atomic_exchange(tmp_path, monkeypatch):
  """Where renameat2 is missing: two renames; an interrupt between them puts the old back."""
  monkeypatch.setattr(atomic, "_exchange", lambda a, b: False)
  target = tmp_path / "export"
  target.mkdir()
  (target / "old").write_text("old")
  real_rename = os.rename

  def interrupted_second_rename(source, destination):
    if str(destination) == str(target) and "old" not in os.listdir(source):
      raise KeyboardInterrupt
    real_rename(source, destination)

  monkeypatch.setattr(os, "rename", interrupted_second_rename)
  with pytest.raises(KeyboardInterrupt):
    with atomic.new_directory(str(target), lambda target: None) as temp:
      (tmp_path / temp / "new").write_text("new")
  assert os.listdir(tmp_path) == ["export"] and os.listdir(target) == ["old"]
  monkeypatch.setattr(os, "rename", real_rename)
  with atomic.new_directory(str(target), lambda target: None) as temp:
    (tmp_path / temp / "new").write_text("new")
  assert os.listdir(tmp_path) == ["export"] and os.listdir(target) == ["new"]


def test_only_temporaries_of_dead_writers_on_this_host_are_cleaned(tmp_path):
  target = str(tmp_path / "model.lnx")
  dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                        capture_output=True, text=True, check=True)
  dead_pid = int(dead.stdout)
  host = atomic._HOST
  other_host = "0" * 8 if host != "0" * 8 else "1" * 8
  names = {
      "dead": f".model.lnx.{host}.{dead_pid}.abcd1234.tmp",
      "live": f".model.lnx.{host}.{os.getpid()}.abcd1234.tmp",
      "other host": f".model.lnx.{other_host}.{dead_pid}.abcd1234.tmp",
      "other target": f".model.lnx.x.{host}.{dead_pid}.abcd1234.tmp",
      "not ours": ".model.lnx.swp",
  }
  for name in names.values():
    (tmp_path / name).write_bytes(b"partial")
  os.mkdir(tmp_path / f".model.lnx.{host}.{dead_pid}.0000ffff.tmp")   # a dead export's
  atomic.write_file(target, b"new")
  left = set(os.listdir(tmp_path))
  assert left == {"model.lnx"} | {n for k, n in names.items() if k != "dead"}


# -------------------------------------------------------------------------------------------
# Paths.

def test_compress_writes_through_a_symlink(tmp_path):
  real = tmp_path / "real"
  real.mkdir()
  (real / "model.lnx").write_bytes(b"old")
  link = tmp_path / "link.lnx"
  link.symlink_to(real / "model.lnx")
  report = lnx.compress(_model(), str(link), estimate=False)
  assert link.is_symlink() and os.readlink(link) == str(real / "model.lnx")
  assert (real / "model.lnx").stat().st_size == report.total_bytes
  assert lnx.decompress(str(link)) is not None
  dangling = tmp_path / "dangling.lnx"
  dangling.symlink_to(real / "new.lnx")
  lnx.compress(_model(), str(dangling), estimate=False)
  assert dangling.is_symlink() and (real / "new.lnx").is_file()
  assert sorted(os.listdir(real)) == ["model.lnx", "new.lnx"]


def test_symlink_loop_and_directories_are_output_path_errors(tmp_path):
  loop = tmp_path / "loop.lnx"
  loop.symlink_to(loop)
  (tmp_path / "dir.lnx").mkdir()
  (tmp_path / "plain_dir").mkdir()
  for path in (loop, tmp_path / "dir.lnx", tmp_path / "plain_dir", str(tmp_path) + os.sep):
    with pytest.raises(errors.OutputPathError):
      lnx.compress(_model(), str(path), estimate=False)
  assert sorted(os.listdir(tmp_path)) == ["dir.lnx", "loop.lnx", "plain_dir"]


def test_path_through_a_file(tmp_path):
  (tmp_path / "afile").write_text("a file")
  path = str(tmp_path / "afile" / "x.lnx")
  with pytest.raises(errors.OutputPathError, match="not a directory") as caught:
    lnx.compress(_model(), path, estimate=False)
  assert isinstance(caught.value, OSError)
  for read in (lnx.decompress, model_file.inspect):
    with pytest.raises(errors.ModelFileNotFoundError, match="not a directory"):
      read(path)


def test_unreadable_file_is_a_model_file_read_error(tmp_path):
  loop = tmp_path / "loop.lnx"
  loop.symlink_to(loop)
  with pytest.raises(errors.ModelFileReadError) as caught:
    lnx.decompress(str(loop))
  assert caught.value.errno == errno.ELOOP and isinstance(caught.value, OSError)


@pytest.mark.skipif(os.name != "posix" or os.geteuid() == 0,
                    reason="permission bits do not stop root")
def test_read_only_directory(tmp_path):
  directory = tmp_path / "ro"
  directory.mkdir()
  directory.chmod(0o555)
  try:
    with pytest.raises(errors.OutputPathError) as caught:
      lnx.compress(_model(), str(directory / "m.lnx"), estimate=False)
    assert caught.value.errno == errno.EACCES
    assert os.listdir(directory) == []
  finally:
    directory.chmod(0o755)


def test_file_system_refusal_is_an_output_path_error(tmp_path, monkeypatch):
  """What a read-only file system answers (also for root, which permission bits do not stop)."""
  def read_only(path, *args, **kwargs):
    raise OSError(errno.EROFS, os.strerror(errno.EROFS), path)

  monkeypatch.setattr(os, "mkdir", read_only)
  with pytest.raises(errors.OutputPathError, match="Read-only file system") as caught:
    lnx.compress(_model(), str(tmp_path / "m.lnx"), estimate=False)
  assert caught.value.errno == errno.EROFS and isinstance(caught.value, OSError)
  assert os.listdir(tmp_path) == []


def test_an_existing_file_keeps_its_permissions(tmp_path):
  path = tmp_path / "m.lnx"
  path.write_bytes(b"old")
  path.chmod(0o640)
  lnx.compress(_model(), str(path), estimate=False)
  assert path.stat().st_mode & 0o777 == 0o640


# -------------------------------------------------------------------------------------------
# Values.

@pytest.mark.parametrize("variable, layer", [("bias", "head"), ("moving_variance", "bn"),
                                             ("gamma", "bn")])
@pytest.mark.parametrize("value", [np.nan, np.inf, -np.inf])
def test_non_finite_values_are_refused_before_writing(tmp_path, variable, layer, value):
  model = _model()
  target = model.get_layer(layer)
  weight = getattr(target, variable)
  values = weight.numpy()
  values.reshape(-1)[-1] = value
  weight.assign(values)
  for kwargs in ({}, {"float16": True}, {"float_bits": 8}, {"inference_only": True}):
    with pytest.raises(errors.InvalidArgumentError, match=f"{variable}.* of layer '{layer}'.*NaN"):
      lnx.compress(model, str(tmp_path / "m.lnx"), estimate=False, **kwargs)
  assert os.listdir(tmp_path) == []


def test_non_finite_decoder_is_refused(tmp_path):
  model = _model()
  decoder = model.get_layer("head").group.decoder
  decoder.assign(np.full(decoder.shape, np.nan, np.float32))
  with pytest.raises(errors.InvalidArgumentError, match="decoder.* group of layer.*'head'.*NaN"):
    lnx.compress(model, str(tmp_path / "m.lnx"), estimate=False)
  assert os.listdir(tmp_path) == []
