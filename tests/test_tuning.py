"""lnx.tuning: keras-tuner search over rate_weight × slice_weight, Pareto front, picks."""

import json
import os
import socket
import subprocess
import sys
import textwrap

import numpy as np
import pytest
import tensorflow as tf

import lilnetx_tf as lnx
from lilnetx_tf import _compat
from lilnetx_tf import errors
from lilnetx_tf.tuning import pareto

kt = _compat.keras_tuner()   # on Keras 2: a plain `import keras_tuner` first may pick Keras 3

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _data(n=192):
  rng = np.random.default_rng(0)
  x = rng.random((n, 8, 8, 1), dtype=np.float32)
  y = (x[:, :4].mean((1, 2, 3)) > x[:, 4:].mean((1, 2, 3))).astype("int32")
  return (x[:128], y[:128]), (x[128:], y[128:])


BUILD_SOURCE = '''
def build(rate_weight, slice_weight):
  import tensorflow as tf
  import lilnetx_tf as lnx
  kw = dict(rate_weight=rate_weight, slice_weight=slice_weight)
  model = tf.keras.Sequential([
      tf.keras.Input((8, 8, 1)),
      lnx.Conv2D(4, 3, activation="relu", **kw),
      tf.keras.layers.MaxPooling2D(2),
      tf.keras.layers.Flatten(),
      lnx.Dense(2, **kw),
  ])
  model.compile(tf.keras.optimizers.Adam(1e-2),
                tf.keras.losses.SparseCategoricalCrossentropy(from_logits=True),
                metrics=["accuracy"], run_eagerly=True)  # eager: no tracing for 4 steps
  return model
'''
exec(BUILD_SOURCE)  # Defines `build`, shared with the distributed-mode worker script.


def _search(tmp_path, max_trials, calls=None, **kwargs):
  (x, y), val = _data()

  def counted(rate_weight, slice_weight):
    if calls is not None:
      calls.append((rate_weight, slice_weight))
    return build(rate_weight, slice_weight)

  return lnx.tuning.search(counted, x=x, y=y, validation_data=val, epochs=1, batch_size=32,
                           max_trials=max_trials, seed=1, directory=str(tmp_path),
                           project_name="p", **kwargs)


# ------------------------------------------------------------------------------------------------
# Pure Pareto / pick logic.

def _p(name, accuracy, size, macs):
  return dict(name=name, accuracy=accuracy, bytes=size, macs=macs)


POINTS = [
    _p("big_best", 0.99, 1000, 500),
    _p("small_ok", 0.97, 200, 400),
    _p("dominated", 0.96, 300, 450),         # by small_ok on every axis
    _p("cheap", 0.95, 250, 100),
    _p("tiny_bad", 0.80, 50, 300),
    _p("worse", 0.90, 400, 200),             # by cheap
    _p("nan", float("nan"), 10, 10),         # a failed trial: ignored
]


def test_pareto_front_hand_made():
  names = [p["name"] for p in pareto.pareto_front(POINTS)]
  assert names == ["tiny_bad", "small_ok", "cheap", "big_best"]     # sorted by file size
  assert pareto.dominates(POINTS[1], POINTS[2])
  assert not pareto.dominates(POINTS[0], POINTS[1]) and not pareto.dominates(POINTS[1], POINTS[0])
  twins = [_p("a", 0.9, 10, 10), _p("b", 0.9, 10, 10)]
  assert len(pareto.pareto_front(twins)) == 2          # equal points do not dominate each other
  assert pareto.pareto_front([]) == []


def test_pick_rules():
  front = pareto.pareto_front(POINTS)
  assert pareto.pick(front, min_accuracy=0.98)["name"] == "big_best"
  assert pareto.pick(front, min_accuracy=0.96)["name"] == "small_ok"
  assert pareto.pick(front)["name"] == "tiny_bad"
  assert pareto.pick(front, minimize="macs", min_accuracy=0.9)["name"] == "cheap"
  assert pareto.pick(front, minimize="macs", min_accuracy=0.96, max_bytes=300)["name"] == "small_ok"
  assert pareto.pick(front, minimize="error", max_macs=400)["name"] == "small_ok"
  # Picking from all points or from the front agrees.
  assert pareto.pick(POINTS, min_accuracy=0.96)["name"] == "small_ok"


@pytest.mark.parametrize("rule", [dict(minimize="size"), dict(min_accuracy="high"),
                                  dict(max_bytes=0), dict(max_macs=-1),
                                  dict(min_accuracy=float("nan")), dict(max_bytes=True)])
def test_pick_bad_rules(rule):
  with pytest.raises(errors.InvalidArgumentError):
    pareto.pick(POINTS, **rule)


def test_pick_nothing_matches():
  with pytest.raises(lnx.tuning.NoMatchingTrialError, match="No trial satisfies accuracy >= 0.999"):
    pareto.pick(POINTS, min_accuracy=0.999)
  with pytest.raises(lnx.tuning.NoMatchingTrialError, match="bytes <= 100"):
    pareto.pick(POINTS, min_accuracy=0.9, max_bytes=100)
  with pytest.raises(lnx.tuning.NoMatchingTrialError, match="no completed trial"):
    pareto.pick([POINTS[-1]])


@pytest.mark.parametrize("kwargs", [
    dict(rate_weight=(1.0, 1e-3)), dict(rate_weight=(0.0, 1.0)), dict(slice_weight=(-1, 1)),
    dict(slice_weight=[]), dict(rate_weight=(1e-3, 1, 0.5)), dict(rate_weight="big"),
    dict(rate_weight=[0.1, 0.1]), dict(max_trials=0), dict(epochs=0), dict(tuner="annealing"),
    dict(tuner=int), dict(objective="latency"), dict(validation_data=None)])
def test_search_rejects_bad_arguments(tmp_path, kwargs):
  (x, y), val = _data()
  args = dict(x=x, y=y, validation_data=val, directory=str(tmp_path))
  args.update(kwargs)
  with pytest.raises(errors.InvalidArgumentError):
    lnx.tuning.search(build, **args)
  with pytest.raises(errors.InvalidArgumentError, match="exactly one"):
    lnx.tuning.search(x=x, y=y, validation_data=val, directory=str(tmp_path))


@pytest.mark.parametrize("name", ["random", "bayesian", "hyperband", "grid"])
def test_every_oracle_builds(tmp_path, name):
  if name == "bayesian":
    pytest.importorskip("sklearn", reason="BayesianOptimization needs keras-tuner[bayesian]")
  from lilnetx_tf.tuning.search import _make_tuner
  hypermodel = lnx.tuning.LilNetXHyperModel(build, rate_weight=(1e-3, 1.0, 10.0))
  tuner = _make_tuner(name, hypermodel, kt.Objective("val_accuracy", "max"), 3, 0,
                                 str(tmp_path), name, False, 2, {})
  assert tuner.oracle.hyperparameters.get("rate_weight") == 1e-3
  assert set(tuner.oracle.hyperparameters.values) == {"rate_weight", "slice_weight"}


# ------------------------------------------------------------------------------------------------
# End to end.

def test_search_end_to_end_and_resume(tmp_path):
  calls = []
  result = _search(tmp_path, 2, calls)
  assert len(calls) == 3          # one build declares the search space, then one per trial
  assert len(result.trials) == 2 and len(result.completed) == 2
  for trial in result.trials:
    assert os.path.getsize(trial.path) == trial.bytes > 0       # the real compressed file
    assert 0.0 <= trial.accuracy <= 1.0
    assert trial.macs > 0
    assert 1e-3 <= trial.rate_weight <= 1.0 and 1e-4 <= trial.slice_weight <= 1.0
    assert {"val_accuracy", "bytes", "macs", "score"} <= set(trial.metrics)
    on_disk = json.load(open(os.path.join(os.path.dirname(trial.path), "trial.json")))
    assert on_disk["metrics"]["metrics"]["bytes"]["observations"][0]["value"] == [trial.bytes]
  front = result.front
  assert 1 <= len(front) <= 2
  table = result.table()
  assert "val_accuracy" in table and f"{front[0].bytes:,.0f}" in table
  png = result.plot(str(tmp_path / "front.png"), pick=result.pick(minimize="error"))
  assert open(png, "rb").read(8) == b"\x89PNG\r\n\x1a\n"
  assert result.pick().bytes == min(t.bytes for t in result.trials)
  with pytest.raises(lnx.tuning.NoMatchingTrialError):
    result.pick(min_accuracy=1.5)
  assert [t.trial_id for t in lnx.tuning.load(str(tmp_path), "p").trials] == ["0", "1"]

  # Resume: the same project with max_trials=3 runs exactly one new trial.
  tf.keras.backend.clear_session()
  built_before = len(calls)
  resumed = _search(tmp_path, 3, calls)
  assert [t.trial_id for t in resumed.trials] == ["0", "1", "2"]
  assert len(resumed.completed) == 3
  assert len(calls) - built_before == 1         # reloaded: no space build, one new trial
  assert {t.trial_id: t.bytes for t in resumed.trials if t.trial_id != "2"} == {
      t.trial_id: t.bytes for t in result.trials}


def test_search_converts_an_existing_model(tmp_path):
  (x, y), val = _data()
  plain = tf.keras.Sequential([tf.keras.Input((8, 8, 1)), tf.keras.layers.Conv2D(4, 3),
                               tf.keras.layers.Flatten(), tf.keras.layers.Dense(2)])
  plain.compile("adam", tf.keras.losses.SparseCategoricalCrossentropy(from_logits=True),
                metrics=["accuracy"], run_eagerly=True)  # re-used for the converted model
  result = lnx.tuning.search(model=plain, x=x, y=y, validation_data=val, batch_size=32,
                             max_trials=1, directory=str(tmp_path), objective="score",
                             tuner=lambda **kw: kt.RandomSearch(max_trials=1, **kw))
  (trial,) = result.completed
  assert os.path.getsize(trial.path) == trial.bytes
  assert all(not lnx.is_lilnetx_layer(layer) for layer in plain.layers)


def _plain_build(hp):
  """A keras-tuner build function with a hyperparameter of the user's own."""
  model = tf.keras.Sequential([
      tf.keras.Input((8, 8, 1)),
      tf.keras.layers.Conv2D(hp.Choice("filters", [2, 4]), 3, activation="relu"),
      tf.keras.layers.Flatten(), tf.keras.layers.Dense(2)])
  model.compile(tf.keras.optimizers.Adam(1e-2),
                tf.keras.losses.SparseCategoricalCrossentropy(from_logits=True),
                metrics=["accuracy"], run_eagerly=True)
  return model


def test_search_with_a_keras_tuner_build_function(tmp_path):
  (x, y), val = _data()
  result = lnx.tuning.search(_plain_build, x=x, y=y, validation_data=val, batch_size=32,
                             max_trials=2, seed=3, directory=str(tmp_path), verbose=0,
                             rate_weight=[0.01, 0.1], slice_weight=1e-5)
  assert len(result.completed) == 2
  for trial in result.trials:
    assert set(trial.hyperparameters) == {"filters", "rate_weight", "slice_weight"}
    assert trial.rate_weight in (0.01, 0.1) and trial.slice_weight == 1e-5
    assert os.path.getsize(trial.path) == trial.bytes > 0     # the converted model's file


def test_build_hp_with_lilnetx_layers_reads_the_trial_weights():
  def build(hp):
    weights = dict(rate_weight=hp.get("rate_weight"), slice_weight=hp.get("slice_weight"))
    return tf.keras.Sequential([tf.keras.Input((4,)), lnx.Dense(hp.Int("units", 2, 3), **weights),
                                lnx.Dense(2, **weights)])

  hypermodel = lnx.tuning.LilNetXHyperModel(build, rate_weight=0.3, slice_weight=2e-5,
                                            compile=dict(optimizer="adam", loss="mse"))
  model = hypermodel.build(kt.HyperParameters())
  assert [(l.rate_weight, l.slice_weight) for l in model.layers] == [(0.3, 2e-5)] * 2


def test_build_hp_errors():
  def ignores_hp(hp):
    return tf.keras.Sequential([tf.keras.Input((4,)), lnx.Dense(2)])

  hypermodel = lnx.tuning.LilNetXHyperModel(ignores_hp, rate_weight=0.3,
                                            compile=dict(optimizer="adam", loss="mse"))
  with pytest.raises(errors.InvalidArgumentError, match="do not use this trial's weights"):
    hypermodel.build(kt.HyperParameters())
  with pytest.raises(errors.InvalidArgumentError, match="must return a Keras model"):
    lnx.tuning.LilNetXHyperModel(lambda hp: None).build(kt.HyperParameters())
  with pytest.raises(errors.InvalidArgumentError, match="3 required positional"):
    lnx.tuning.LilNetXHyperModel(lambda a, b, c: None)


# ------------------------------------------------------------------------------------------------
# keras-tuner's distributed mode: a chief oracle and one worker on 127.0.0.1.

WORKER_SCRIPT = BUILD_SOURCE + '''
import json, sys
import numpy as np
import lilnetx_tf as lnx

rng = np.random.default_rng(0)
x = rng.random((192, 8, 8, 1), dtype=np.float32)
y = (x[:, :4].mean((1, 2, 3)) > x[:, 4:].mean((1, 2, 3))).astype("int32")
result = lnx.tuning.search(build, x=x[:128], y=y[:128], validation_data=(x[128:], y[128:]),
                           batch_size=32, max_trials=2, seed=1, directory=sys.argv[1],
                           project_name="dist")
print("RESULT " + json.dumps([[t.trial_id, t.status, t.bytes] for t in result.trials]))
'''


def _free_port() -> int:
  with socket.socket() as s:
    s.bind(("127.0.0.1", 0))
    return s.getsockname()[1]


def test_distributed_chief_and_worker(tmp_path):
  script = tmp_path / "tune.py"
  script.write_text(WORKER_SCRIPT)
  port = str(_free_port())
  env = dict(os.environ, KERASTUNER_ORACLE_IP="127.0.0.1", KERASTUNER_ORACLE_PORT=port,
             PYTHONPATH=os.pathsep.join([REPO] + [p for p in [os.environ.get("PYTHONPATH")] if p]),
             TF_CPP_MIN_LOG_LEVEL="3", CUDA_VISIBLE_DEVICES="-1")
  out = tmp_path / "out"
  processes = {}
  try:
    for role in ("chief", "tuner0"):
      log = open(tmp_path / f"{role}.log", "w")
      processes[role] = subprocess.Popen(
          [sys.executable, str(script), str(out)], env=dict(env, KERASTUNER_TUNER_ID=role),
          stdout=log, stderr=subprocess.STDOUT, cwd=str(tmp_path))
    for role in ("tuner0", "chief"):
      assert processes[role].wait(timeout=200) == 0, (tmp_path / f"{role}.log").read_text()[-3000:]
  finally:
    for process in processes.values():
      if process.poll() is None:
        process.kill()
        process.wait(timeout=30)
  logs = {role: (tmp_path / f"{role}.log").read_text() for role in processes}
  lines = {role: [l for l in text.splitlines() if l.startswith("RESULT ")]
           for role, text in logs.items()}
  chief = json.loads(lines["chief"][-1][len("RESULT "):])
  assert [(t[0], t[1]) for t in chief] == [("0", "COMPLETED"), ("1", "COMPLETED")], logs["chief"]
  for trial_id, _, size in chief:   # the worker ran the trials and wrote the files
    assert os.path.getsize(out / "dist" / f"trial_{trial_id}" / "model.lnx") == size
  assert lines["tuner0"], logs["tuner0"]
