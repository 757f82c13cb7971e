"""Every exception class of the library lives in `lilnetx_tf.errors`."""

import importlib
import inspect
import pkgutil

import lilnetx_tf
from lilnetx_tf import errors


def _library_modules():
  for info in pkgutil.walk_packages(lilnetx_tf.__path__, prefix="lilnetx_tf."):
    # The CLI modules define absl flags (each command its own process), no exceptions.
    if not info.name.endswith("__main__") and not info.name.startswith("lilnetx_tf.cli"):
      try:
        yield importlib.import_module(info.name)
      except ModuleNotFoundError as e:   # tfc_range: only where the `reference` extra is
        if e.name != "tensorflow_compression":
          raise


def test_every_library_exception_is_in_errors():
  defined = {obj for module in _library_modules()
             for _, obj in inspect.getmembers(module, inspect.isclass)
             if issubclass(obj, BaseException) and obj.__module__.startswith("lilnetx_tf")}
  assert defined, "no exception classes found"
  outside = sorted(f"{c.__module__}.{c.__name__}" for c in defined
                   if getattr(errors, c.__name__, None) is not c)
  assert not outside, f"exceptions defined outside lilnetx_tf.errors: {outside}"
  assert all(issubclass(c, errors.LilNetXError) for c in defined if c is not errors.LilNetXError)
