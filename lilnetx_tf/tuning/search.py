"""keras-tuner search over LilNetX's `rate_weight` (λ_I) and `slice_weight` (λ_G).

Every trial builds a model, trains it, and reports three figures to the oracle as trial
metrics. The model comes from one of:

  build(hp)       a keras-tuner build function (or a `kt.HyperModel`) that declares the user's own
                  hyperparameters. The search declares `rate_weight` and `slice_weight` in `hp`
                  first (their spaces are `search`'s arguments). A plain Keras model returned
                  is converted with `lnx.convert` at those weights; a model built of LilNetX
                  layers reads them itself with `hp.get("rate_weight")`, `hp.get("slice_weight")`.
  build(rate_weight, slice_weight)   a model built for given LilNetX weights;
  model=          an existing Keras model, converted by `lnx.convert` in every trial.

The figures:

  val_<metric>   the user-named validation metric at the end of training (higher is better);
  bytes          the REAL size of the compressed file, `lnx.compress(model, <trial dir>/model.lnx)`;
  macs           effective multiply-accumulates per example, `lnx.stats(model)["macs_effective"]`;

plus `estimated_bytes`, `macs_dense`, `slice_sparsity` and `score` (see `LilNetXHyperModel`).
keras-tuner only optimizes one scalar (its multi-objective is an unweighted sum), so the
objective is a scalar and the trade-off is read afterwards from all trials: `SearchResult.front`.

Default ranges (log-uniform):
  rate_weight 1e-3 … 1: λ_I prices one bit per slice, averaged over the model, in task-loss units
    (nats). A trained classifier's cross-entropy is ~0.03–0.3 nats and a slice costs a few to a
    few tens of bits, so at 1e-3 the rate term (≲0.03) hardly moves the weights (a "no
    compression" anchor), while around 1 it is as large as the task loss: the MNIST calibration
    in shared/notes (λ = 1 shrank the file 6× at unchanged error, 1e-4…3e-3 barely changed it)
    puts the knee inside the range. Above 1 accuracy falls apart in short budgets.
  slice_weight 1e-4 … 1: λ_G prices the mean slice L2 norm (latent units: integer steps) over the
    model's slices, in task-loss units (nats), like λ_I. At 1e-4 it hardly moves the latents
    ("off"); the library default is 1e-2; around 1 it is as large as the task loss and zeroes
    most slices within a few epochs. (Before config version 2 it multiplied the plain sum:
    the old range 1e-6 … 1e-3 was 0.4 … 400 per slice on LeNet5's 406k slices.)
"""

import dataclasses
import glob
import inspect
import math
import os
import tempfile
from typing import Any, Callable, Optional, Sequence, Union

import tensorflow as tf

from lilnetx_tf import _compat
from lilnetx_tf import errors
from lilnetx_tf import text_table
from lilnetx_tf import validation
from lilnetx_tf.tuning import pareto

__all__ = ["LilNetXHyperModel", "SearchResult", "TrialRecord", "load", "search"]

kt = _compat.keras_tuner()

DEFAULT_RATE_RANGE = (1e-3, 1.0)
DEFAULT_SLICE_RANGE = (1e-4, 1.0)
COMPRESSED_FILE = "model.lnx"
_TUNERS = {"random": "RandomSearch", "bayesian": "BayesianOptimization",
           "hyperband": "Hyperband", "grid": "GridSearch"}


# -------------------------------------------------------------------------------------------------
# Search space.

def _check_space(name: str, spec: Any) -> Any:
  """Validates a search-space spec; returns it normalized.

  A spec is a pair (low, high) → log-uniform float; a triple (low, high, factor) → log grid
  low, low·factor, … ≤ high (what GridSearch enumerates); a list → a choice among those values;
  a number → fixed.
  """
  def positive(v):   # the search is on a log scale
    return validation.positive_float(name, v)

  if isinstance(spec, (int, float)) and not isinstance(spec, bool):
    return positive(spec)
  if isinstance(spec, list):
    if not spec:
      raise errors.InvalidArgumentError(f"`{name}` choices must not be empty.")
    values = [positive(v) for v in spec]
    if len(set(values)) != len(values):
      raise errors.InvalidArgumentError(f"`{name}` choices must be distinct, got {spec!r}.")
    return values
  if isinstance(spec, tuple) and len(spec) in (2, 3):
    low, high = positive(spec[0]), positive(spec[1])
    if not low < high:
      raise errors.InvalidArgumentError(
          f"`{name}` range must have low < high, got {spec!r}.")
    if len(spec) == 3:
      factor = positive(spec[2])
      if factor <= 1:
        raise errors.InvalidArgumentError(
            f"`{name}` grid factor must be > 1, got {spec[2]!r} in {spec!r}.")
      return (low, high, factor)
    return (low, high)
  raise errors.InvalidArgumentError(
      f"`{name}` must be (low, high), (low, high, factor), a list of values or a number, "
      f"got {spec!r}.")


def _declare(hp: kt.HyperParameters, name: str, spec: Any) -> float:
  if isinstance(spec, float):
    return hp.Fixed(name, spec)
  if isinstance(spec, list):
    return hp.Choice(name, spec)
  if len(spec) == 3:
    return hp.Float(name, spec[0], spec[1], step=spec[2], sampling="log")
  return hp.Float(name, spec[0], spec[1], sampling="log")


# -------------------------------------------------------------------------------------------------
# The hypermodel.

def _is_compiled(model) -> bool:
  return bool(getattr(model, "_is_compiled", False) or
              getattr(model, "compiled_loss", None) is not None)


_LILNETX_HYPERPARAMETERS = ("rate_weight", "slice_weight")


def _takes_hp(build: Callable) -> bool:
  """Whether `build` is a keras-tuner build function `build(hp)` (True) or the LilNetX form
  `build(rate_weight, slice_weight)` (False), from its required positional parameters."""
  if isinstance(build, kt.HyperModel):
    return True
  try:
    parameters = inspect.signature(build).parameters.values()
  except (TypeError, ValueError) as e:
    raise errors.InvalidArgumentError(
        f"Cannot read the signature of `build` {build!r}; pass a function `build(hp)` or "
        "`build(rate_weight, slice_weight)`, or a kt.HyperModel.") from e
  positional = [p for p in parameters
                if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)
                and p.default is p.empty]
  if len(positional) == 1:
    return True
  if len(positional) == 2:
    return False
  raise errors.InvalidArgumentError(
      f"`build` must take `hp` (a keras-tuner build function) or `rate_weight, slice_weight`; "
      f"{getattr(build, '__name__', build)!r} takes {len(positional)} required positional "
      "arguments.")


def _check_built(model, what: str) -> None:
  if not isinstance(model, tf.keras.Model):
    raise errors.InvalidArgumentError(f"{what} must return a Keras model, got {model!r}.")


def _trial_dir(callbacks: Sequence) -> str:
  """The running trial's directory, found through keras-tuner's own TunerCallback."""
  for callback in callbacks or ():
    tuner, trial = getattr(callback, "tuner", None), getattr(callback, "trial", None)
    if tuner is not None and trial is not None and hasattr(tuner, "get_trial_dir"):
      path = tuner.get_trial_dir(trial.trial_id)
      os.makedirs(path, exist_ok=True)
      return path
  return tempfile.mkdtemp(prefix="lnx_trial_")


class LilNetXHyperModel(kt.HyperModel):
  """A `kt.HyperModel` over `rate_weight` and `slice_weight` whose `fit` reports a dict.

  Args:
    build: a keras-tuner `build(hp) -> tf.keras.Model` (or a `kt.HyperModel`) declaring the
      user's own hyperparameters, or `build(rate_weight, slice_weight) -> tf.keras.Model`;
      compiled or not (see the module docstring). Exclusive with `model`.
    model: an existing Keras model; each trial converts it with
      `lnx.convert(model, rate_weight=..., slice_weight=..., warm_start=warm_start)`.
    rate_weight, slice_weight: search-space specs (see `search`).
    metric: name of a higher-is-better compiled metric, e.g. "accuracy"; reported as
      `val_<metric>`, measured on the validation data after the last epoch.
    compile: dict of `model.compile` kwargs, or a callable `compile(model)`; used when the built
      model is not compiled (and always when given on the `model` path). The `model` path
      otherwise re-compiles the converted model from the original's compile config.
    warm_start: passed to `lnx.convert`.
    size_tradeoff: the `score` metric is `val_<metric> − size_tradeoff · log10(bytes)`, a
      scalarization usable as objective for BayesianOptimization ("1 accuracy point is worth a
      10× smaller file" at the default 0.01).
    compress_kwargs: extra keyword arguments of `lnx.compress` (e.g. `float16=True`).
  """

  def __init__(self, build: Optional[Callable] = None, *, model=None,
               rate_weight: Any = DEFAULT_RATE_RANGE, slice_weight: Any = DEFAULT_SLICE_RANGE,
               metric: str = "accuracy", compile: Union[None, dict, Callable] = None,
               warm_start: bool = True, size_tradeoff: float = 0.01,
               compress_kwargs: Optional[dict] = None, name: str = "lilnetx"):
    super().__init__(name=name, tunable=True)
    if (build is None) == (model is None):
      raise errors.InvalidArgumentError("Give exactly one of `build` and `model`.")
    if build is not None and not (callable(build) or isinstance(build, kt.HyperModel)):
      raise errors.InvalidArgumentError(f"`build` must be callable, got {build!r}.")
    self.build_takes_hp = build is not None and _takes_hp(build)
    if not isinstance(metric, str) or not metric:
      raise errors.InvalidArgumentError(f"`metric` must be a metric name, got {metric!r}.")
    if metric.startswith("val_"):
      metric = metric[len("val_"):]
    if compile is not None and not (isinstance(compile, dict) or callable(compile)):
      raise errors.InvalidArgumentError("`compile` must be a dict of compile kwargs or callable.")
    self.build_fn = build
    self.source_model = model
    self.rate_space = _check_space("rate_weight", rate_weight)
    self.slice_space = _check_space("slice_weight", slice_weight)
    self.metric = metric
    self.compile_args = compile
    self.warm_start = validation.boolean("warm_start", warm_start)
    self.size_tradeoff = validation.non_negative_float("size_tradeoff", size_tradeoff)
    if compress_kwargs is not None and not isinstance(compress_kwargs, dict):
      raise errors.InvalidArgumentError("`compress_kwargs` must be a dict.")
    self.compress_kwargs = dict(compress_kwargs or {})

  @property
  def objective_name(self) -> str:
    return f"val_{self.metric}"

  def _compile(self, model) -> None:
    if callable(self.compile_args) and not isinstance(self.compile_args, dict):
      self.compile_args(model)
    else:
      model.compile(**self.compile_args)

  def build(self, hp: kt.HyperParameters):
    if self.build_fn is None:
      model = self._convert(self.source_model, hp)
    elif self.build_takes_hp:
      model = self._build_from_hp(hp)
    else:
      model = self.build_fn(_declare(hp, "rate_weight", self.rate_space),
                            _declare(hp, "slice_weight", self.slice_space))
      _check_built(model, "`build(rate_weight, slice_weight)`")
      if self.compile_args is not None and not _is_compiled(model):
        self._compile(model)
    if not _is_compiled(model):
      raise errors.InvalidArgumentError(
          "The model is not compiled: compile it in `build`, compile the source model, or pass "
          "`compile=dict(optimizer=..., loss=..., metrics=[...])`.")
    return model

  def _weights(self, hp: kt.HyperParameters) -> tuple:
    """This trial's `rate_weight` and `slice_weight`, declared in `hp` with the search space."""
    return (_declare(hp, "rate_weight", self.rate_space),
            _declare(hp, "slice_weight", self.slice_space))

  def _convert(self, source, hp: kt.HyperParameters):
    """`lnx.convert(source)` with this trial's weights, compiled like `source` (or `compile`)."""
    import lilnetx_tf as lnx  # Lazy: convert lives in its own module.
    rate, slices = self._weights(hp)
    model = lnx.convert(source, rate_weight=rate, slice_weight=slices,
                        warm_start=self.warm_start)
    if self.compile_args is not None:
      self._compile(model)
    elif _is_compiled(source):
      model.compile_from_config(source.get_compile_config())
    return model

  def _build_from_hp(self, hp: kt.HyperParameters):
    """The user's `build(hp)`: a plain model is converted; a model with LilNetX layers must read
    this trial's `hp.get("rate_weight")` / `hp.get("slice_weight")` itself."""
    from lilnetx_tf.layers import lilnetx_layers  # Lazy: keeps `import lilnetx_tf.tuning` light.
    rate, slices = self._weights(hp)  # Declared first, so that `build` can read them.
    build = self.build_fn.build if isinstance(self.build_fn, kt.HyperModel) else self.build_fn
    model = build(hp)
    _check_built(model, "`build(hp)`")
    layers = lilnetx_layers(model)
    if not layers:
      return self._convert(model, hp)
    if not any(l.rate_weight == rate and l.slice_weight == slices for l in layers):
      raise errors.InvalidArgumentError(
          "`build(hp)` returned LilNetX layers that do not use this trial's weights: pass "
          "`rate_weight=hp.get('rate_weight'), slice_weight=hp.get('slice_weight')` to them, or "
          "return a plain Keras model for the search to convert.")
    if self.compile_args is not None and not _is_compiled(model):
      self._compile(model)
    return model

  def fit(self, hp, model, *args, **kwargs) -> dict:
    import lilnetx_tf as lnx  # Lazy: compress lives in lilnetx_tf.coding.

    validation_data = kwargs.get("validation_data")
    if validation_data is None:
      raise kt.errors.FatalError("The search needs `validation_data` to measure the metric.")
    trial_dir = _trial_dir(kwargs.get("callbacks"))
    history = model.fit(*args, **kwargs)
    key = self.objective_name
    logged = (history.history.get(key) if history is not None else None)
    if logged:
      accuracy = float(logged[-1])
    else:
      if isinstance(validation_data, tuple):
        results = model.evaluate(*validation_data, batch_size=kwargs.get("batch_size"),
                                 verbose=0, return_dict=True)
      else:
        results = model.evaluate(validation_data, verbose=0, return_dict=True)
      if self.metric not in results:
        raise kt.errors.FatalError(
            f"Metric {self.metric!r} is not among the model's metrics {sorted(results)}; "
            "compile the model with it or name another `metric`.")
      accuracy = float(results[self.metric])
    figures = lnx.stats(model)
    path = os.path.join(trial_dir, COMPRESSED_FILE)
    lnx.compress(model, path, **self.compress_kwargs)
    size = os.path.getsize(path)
    return {
        key: accuracy,
        "bytes": float(size),
        "macs": float(figures["macs_effective"]),
        "macs_dense": float(figures["macs_dense"]),
        "estimated_bytes": float(figures["bytes"]),
        "slice_sparsity": float(figures["slice_sparsity"]),
        "score": accuracy - self.size_tradeoff * math.log10(max(size, 1)),
    }


# -------------------------------------------------------------------------------------------------
# Tuner construction and the search.

def _make_tuner(tuner, hypermodel: LilNetXHyperModel, objective, max_trials, seed, directory,
                project_name, overwrite, epochs, tuner_kwargs):
  common = dict(hypermodel=hypermodel, objective=objective, directory=directory,
                project_name=project_name, overwrite=overwrite)
  if isinstance(tuner, str):
    if tuner.lower() not in _TUNERS:
      raise errors.InvalidArgumentError(
          f"`tuner` must be one of {sorted(_TUNERS)}, a keras-tuner Tuner class or a factory; "
          f"got {tuner!r}.")
    tuner = getattr(kt, _TUNERS[tuner.lower()])
  if isinstance(tuner, type):
    if not issubclass(tuner, kt.engine.base_tuner.BaseTuner):
      raise errors.InvalidArgumentError(f"{tuner!r} is not a keras-tuner tuner class.")
    kwargs = dict(common, seed=seed, **tuner_kwargs)
    if issubclass(tuner, kt.Hyperband):
      kwargs.setdefault("max_epochs", epochs)
    else:
      kwargs.setdefault("max_trials", max_trials)
    return tuner(**kwargs)
  if callable(tuner):
    made = tuner(**common, **tuner_kwargs)
    if not isinstance(made, kt.engine.base_tuner.BaseTuner):
      raise errors.InvalidArgumentError(
          f"The tuner factory returned {type(made).__name__}, not a keras-tuner tuner.")
    if made.hypermodel is not hypermodel:
      raise errors.InvalidArgumentError(
          "The tuner factory must pass its `hypermodel` keyword to the tuner.")
    return made
  raise errors.InvalidArgumentError(
      f"`tuner` must be a name, a keras-tuner Tuner class or a factory, got {tuner!r}.")


def search(build: Optional[Callable] = None, *, model=None, x=None, y=None,
           validation_data=None, epochs: int = 1, batch_size: Optional[int] = None,
           metric: str = "accuracy", rate_weight: Any = DEFAULT_RATE_RANGE,
           slice_weight: Any = DEFAULT_SLICE_RANGE, tuner: Any = "random",
           max_trials: int = 10, objective: Any = None, seed: Optional[int] = None,
           directory: str = "lnx_tuning", project_name: str = "lilnetx",
           overwrite: bool = False, compile: Union[None, dict, Callable] = None,
           warm_start: bool = True, size_tradeoff: float = 0.01,
           compress_kwargs: Optional[dict] = None, callbacks: Optional[list] = None,
           verbose: int = 1,
           fit_kwargs: Optional[dict] = None, tuner_kwargs: Optional[dict] = None):
  """Searches `rate_weight` × `slice_weight` and returns a `SearchResult`.

  Args:
    build: a keras-tuner `build(hp) -> model` (or `kt.HyperModel`) with the user's own
      hyperparameters, or `build(rate_weight, slice_weight) -> model`; compiled, or pass
      `compile` (see the module docstring).
    model: an existing Keras model, converted by `lnx.convert` in every trial.
    x, y, validation_data, epochs, batch_size, callbacks, fit_kwargs: passed to
      `model.fit` in every trial (`validation_data` is required).
    verbose: progress output of keras-tuner and `fit` (1: per trial and epoch; 0: silent).
    metric: higher-is-better validation metric to report, e.g. "accuracy".
    rate_weight, slice_weight: (low, high) log-uniform ranges (defaults 1e-3…1 and 1e-6…1e-3),
      (low, high, factor) log grids, lists of values, or fixed numbers.
    tuner: "random", "bayesian", "hyperband", "grid", a keras-tuner Tuner class (gets
      hypermodel, objective, directory, project_name, overwrite, seed, max_trials — max_epochs
      =`epochs` for Hyperband — and `tuner_kwargs`), or a factory called with
      hypermodel=, objective=, directory=, project_name=, overwrite= (and `tuner_kwargs`) that
      returns a tuner, e.g. `lambda **kw: kt.BayesianOptimization(max_trials=8, **kw)`.
    max_trials: total trials of the project (a resumed project runs only the missing ones).
    objective: what the oracle optimizes: None → `val_<metric>` (max); "score" (max, see
      `size_tradeoff`), "bytes" or "macs" (min), or a `kt.Objective` on a reported metric.
    directory, project_name, overwrite: keras-tuner project; with overwrite=False an
      interrupted search resumes from `<directory>/<project_name>`.
    compile, warm_start, size_tradeoff, compress_kwargs: see `LilNetXHyperModel`.
    tuner_kwargs: extra keyword arguments of the tuner (e.g. `executions_per_trial`).

  Distributed mode: set KERASTUNER_TUNER_ID ("chief" or e.g. "tuner0"),
  KERASTUNER_ORACLE_IP and KERASTUNER_ORACLE_PORT and run the same script once per process
  (same directory). The chief serves the oracle and returns when all trials are done; a worker
  runs trials and returns what the project directory holds when it stops.
  """
  epochs = validation.positive_int("epochs", epochs)
  max_trials = validation.positive_int("max_trials", max_trials)
  if validation_data is None:
    raise errors.InvalidArgumentError("`validation_data` is required to measure the metric.")
  if x is None:
    raise errors.InvalidArgumentError("`x` (training data) is required.")
  hypermodel = LilNetXHyperModel(build, model=model, rate_weight=rate_weight,
                                 slice_weight=slice_weight, metric=metric, compile=compile,
                                 warm_start=warm_start, size_tradeoff=size_tradeoff,
                                 compress_kwargs=compress_kwargs)
  if objective is None:
    objective = kt.Objective(hypermodel.objective_name, "max")
  elif isinstance(objective, str):
    directions = {hypermodel.objective_name: "max", "score": "max", "bytes": "min",
                  "macs": "min", "estimated_bytes": "min"}
    if objective not in directions:
      raise errors.InvalidArgumentError(
          f"`objective` must be one of {sorted(directions)} or a kt.Objective, got "
          f"{objective!r}.")
    objective = kt.Objective(objective, directions[objective])
  elif not isinstance(objective, kt.Objective):
    raise errors.InvalidArgumentError(f"`objective` must be a name or kt.Objective.")
  made = _make_tuner(tuner, hypermodel, objective, max_trials, seed, directory, project_name,
                     overwrite, epochs, dict(tuner_kwargs or {}))
  fit = dict(fit_kwargs or {})
  fit.update(validation_data=validation_data, epochs=epochs, verbose=verbose)
  if batch_size is not None:
    fit["batch_size"] = batch_size
  if callbacks:
    fit["callbacks"] = list(callbacks)
  args = (x,) if y is None else (x, y)
  made.search(*args, **fit)
  return SearchResult.from_tuner(made, metric=hypermodel.metric)


# -------------------------------------------------------------------------------------------------
# Results.

@dataclasses.dataclass(frozen=True)
class TrialRecord:
  """One trial: its weights, its three figures (NaN when it did not complete) and its file."""
  trial_id: str
  status: str
  rate_weight: float
  slice_weight: float
  accuracy: float
  bytes: float
  macs: float
  path: str
  metrics: dict
  hyperparameters: dict

  @property
  def completed(self) -> bool:
    return self.status == "COMPLETED" and pareto._valid(self)


def _record(trial, project_dir: str, metric: str) -> TrialRecord:
  def last(name):
    try:
      if trial.metrics.exists(name):
        return float(trial.metrics.get_last_value(name))
    except (KeyError, ValueError, TypeError):
      pass
    return float("nan")

  names = list(trial.metrics.metrics)
  values = dict(trial.hyperparameters.values)
  return TrialRecord(
      trial_id=str(trial.trial_id), status=str(trial.status),
      rate_weight=float(values.get("rate_weight", float("nan"))),
      slice_weight=float(values.get("slice_weight", float("nan"))),
      accuracy=last(f"val_{metric}"), bytes=last("bytes"), macs=last("macs"),
      path=os.path.join(project_dir, f"trial_{trial.trial_id}", COMPRESSED_FILE),
      metrics={name: last(name) for name in names}, hyperparameters=values)


class SearchResult:
  """All trials of a search, their Pareto front over (accuracy ↑, bytes ↓, MACs ↓) and picks."""

  def __init__(self, trials: Sequence[TrialRecord], metric: str = "accuracy",
               project_dir: Optional[str] = None, tuner=None):
    self.trials = sorted(trials, key=lambda t: (len(t.trial_id), t.trial_id))
    self.metric = metric
    self.project_dir = project_dir
    self.tuner = tuner

  @classmethod
  def from_tuner(cls, tuner, metric: str = "accuracy") -> "SearchResult":
    """From a tuner's oracle; from its project directory on a distributed-mode worker."""
    trials = getattr(tuner.oracle, "trials", None)
    if not isinstance(trials, dict):  # An OracleClient proxy: read what the chief saved.
      found = load(tuner.directory, tuner.project_name, metric=metric)
      found.tuner = tuner
      return found
    return cls([_record(t, tuner.project_dir, metric) for t in trials.values()], metric,
               tuner.project_dir, tuner)

  @property
  def completed(self) -> list:
    return [t for t in self.trials if t.completed]

  @property
  def front(self) -> list:
    """Non-dominated completed trials, smallest file first."""
    return pareto.pareto_front(self.completed)

  def pick(self, minimize: str = "bytes", *, min_accuracy: Optional[float] = None,
           max_bytes: Optional[float] = None, max_macs: Optional[float] = None) -> TrialRecord:
    """The best trial under a rule, e.g. `pick(min_accuracy=0.98)` → smallest such file.

    See `lilnetx_tf.tuning.pick`: `minimize` is "bytes", "macs" or "error"; raises
    `NoMatchingTrialError` when no trial satisfies the bounds.
    """
    return pareto.pick(self.front, minimize=minimize, min_accuracy=min_accuracy,
                       max_bytes=max_bytes, max_macs=max_macs)

  def table(self, trials: Optional[Sequence[TrialRecord]] = None) -> str:
    """A text table of `trials` (default: the front), with a * on front members."""
    return format_table(self.front if trials is None else trials, self.metric,
                        front=self.front)

  def plot(self, path: str, pick: Optional[TrialRecord] = None) -> str:
    """Writes a PNG scatter of every trial with the front highlighted; returns `path`."""
    from lilnetx_tf.tuning import plot as plot_lib
    return plot_lib.plot_front(self.trials, self.front, path, metric=self.metric, pick=pick)

  def __repr__(self) -> str:
    return (f"SearchResult({len(self.completed)}/{len(self.trials)} completed trials, "
            f"front of {len(self.front)})")


def format_table(trials: Sequence[TrialRecord], metric: str = "accuracy",
                 front: Optional[Sequence[TrialRecord]] = None) -> str:
  ids = {t.trial_id for t in (front or ())}
  header = ("trial", "front", "rate_weight", "slice_weight", f"val_{metric}", "bytes",
            "MACs", "status")
  rows = [header]
  for t in trials:
    rows.append((t.trial_id, "*" if t.trial_id in ids else "", f"{t.rate_weight:.3g}",
                 f"{t.slice_weight:.3g}", f"{t.accuracy:.4f}",
                 "-" if math.isnan(t.bytes) else f"{t.bytes:,.0f}",
                 "-" if math.isnan(t.macs) else f"{t.macs:,.0f}", t.status))
  lines = text_table.format_table(rows, align="r" * len(header))
  return "\n".join(lines)


def load(directory: str, project_name: str = "lilnetx", metric: str = "accuracy"
         ) -> SearchResult:
  """Reads a search's trials from `<directory>/<project_name>/trial_*/trial.json`."""
  project_dir = os.path.join(directory, project_name)
  if not os.path.isdir(project_dir):
    raise errors.InvalidArgumentError(f"No keras-tuner project at {project_dir!r}.")
  records = []
  for fname in glob.glob(os.path.join(project_dir, "trial_*", "trial.json")):
    records.append(_record(kt.engine.trial.Trial.load(fname), project_dir, metric))
  return SearchResult(records, metric, project_dir)
