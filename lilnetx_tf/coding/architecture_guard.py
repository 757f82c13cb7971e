"""Structural checks of an ARCH model config, before Keras sees it: no code, a sound graph.

Keras 2.14 rebuilds a model by importing the modules and calling the functions a config names
(a `Lambda` layer's function, any {"class_name": "function", "module": ...} reference, a class
looked up by module and name), whatever its `safe_mode`, and it loops forever on a functional
graph whose nodes cannot all be built (a layer fed by itself, a cycle, a node index that does
not exist). `check` refuses both in the JSON itself:

- Code (unless `safe_mode=False`, for a file the caller trusts): every serialized object must
  resolve to a Keras built-in layer, initializer, regularizer, constraint or dtype policy, a
  Keras activation function, a class this library registers, or an object the caller passes in
  `custom_objects`, exactly as Keras would look it up (registered name first, then module).
  `Lambda`-like layers, lookup layers given a vocabulary file, other packages'
  registered objects and every other module or function reference are refused.
- Graph (always): unique layer names; every inbound, input and output reference names a layer
  of the same model and one of its nodes; the nodes form no cycle; inputs and outputs exist.
"""

from typing import Optional

import tensorflow as tf

from lilnetx_tf import errors
from lilnetx_tf._compat import tf_export  # Keras's own lookup of its built-in names

__all__ = ["check"]

# Layers that run code from their config.
_UNSAFE_LAYERS = frozenset({"Lambda", "TFOpLambda", "SlicingOpLambda"})
# Lookup layers read a file their config names as `vocabulary` (or `idf_weights`); an
# in-memory vocabulary (a list in the config, or the WGTS section's) is safe.
_LOOKUP_LAYERS = frozenset({"StringLookup", "IntegerLookup", "TextVectorization"})
_FILE_KEYS = ("vocabulary", "idf_weights")
_UNSAFE_KEYS = frozenset({"function_type", "compile_config"})
_DATA_OBJECTS = frozenset({"__tensor__", "__numpy__", "__bytes__"})
_KERAS_NAMESPACES = ("keras.layers", "keras.initializers", "keras.regularizers",
                     "keras.constraints", "keras.mixed_precision", "keras")
_FUNCTIONAL_MODULES = ("keras.src.engine.functional", "keras.engine.functional",
                       "tf_keras.src.engine.functional")
_FUNCTION_MODULES = ("builtins", "keras.activations")
_MODEL_NAMES = ("Functional", "Model", "Sequential")
_CONSTANT = "_CONSTANT_VALUE"                 # Keras's marker of a constant call argument


def _fail(message: str):
  raise errors.ModelFileError(
      f"The architecture {message} Refused: decoding a model file must not run code or hang. "
      "For a file you trust, pass its classes in custom_objects= (or safe_mode=False for "
      "Lambda layers and module references).")


def _keras_bases() -> tuple:
  return (tf.keras.layers.Layer, tf.keras.initializers.Initializer,
          tf.keras.regularizers.Regularizer, tf.keras.constraints.Constraint,
          tf.keras.mixed_precision.Policy)


def _is_ours(obj) -> bool:
  return (getattr(obj, "__module__", None) or "").split(".")[0] == "lilnetx_tf"


def _registered(name, custom_objects: dict):
  """The object Keras's registry (or `custom_objects`) gives for `name`, checked to be the
  caller's or this library's; None if nothing is registered under `name`."""
  if not isinstance(name, str):
    return None
  if name in custom_objects:
    return custom_objects[name]
  obj = tf.keras.utils.get_registered_object(name)
  if obj is not None and not _is_ours(obj):
    _fail(f"names {name!r}, registered by {getattr(obj, '__module__', '?')}, not by "
          "lilnetx_tf.")
  return obj


def _keras_symbol(module: Optional[str], name: str):
  modules = _KERAS_NAMESPACES if module is None else (module,)
  for m in modules:
    if m in _KERAS_NAMESPACES or m == "keras.activations":
      obj = tf_export.get_symbol_from_name(f"{m}.{name}")
      if obj is not None:
        return obj
  return None


def _check_function(entry: dict, custom_objects: dict) -> None:
  name, module = entry.get("config"), entry.get("module")
  if _registered(name, custom_objects) is not None or \
     _registered(entry.get("registered_name"), custom_objects) is not None:
    return
  function = _keras_symbol("keras.activations", name) if isinstance(name, str) else None
  if module not in _FUNCTION_MODULES or not callable(function):
    _fail(f"references the function {name!r} of module {module!r}, not a Keras activation.")


def _check_class(entry: dict, custom_objects: dict) -> None:
  name, module = entry["class_name"], entry.get("module")
  if name in _UNSAFE_LAYERS:
    _fail(f"holds a {name} layer, which runs code named in the file.")
  config = entry.get("config")
  if name in _LOOKUP_LAYERS and (not isinstance(config, dict) or
                                 any(isinstance(config.get(k), str) for k in _FILE_KEYS)):
    _fail(f"holds a {name} layer that reads its vocabulary from a file the file names.")
  if module is not None and not isinstance(module, str):
    _fail(f"gives {name!r} the module {module!r}.")
  # Keras looks the registered name up first (the class name when there is none), then the
  # caller's and the registry's objects under the class name, then the module.
  registered_name = entry.get("registered_name", name)
  obj = _registered(registered_name, custom_objects) or _registered(name, custom_objects)
  if obj is not None:
    own = getattr(obj, "__module__", None)
    if module not in (None, own) and not module.startswith(("keras.", "lilnetx_tf.")) \
       and module != "keras":
      _fail(f"gives {name!r} the module {module!r}, not its own ({own}).")
    return
  if name in ("Functional", "Model") and (module is None or module in _FUNCTIONAL_MODULES):
    return
  obj = _keras_symbol(module, name)
  if not (isinstance(obj, type) and issubclass(obj, _keras_bases())):
    _fail(f"names {name!r} of module {module!r}: not a Keras built-in, a lilnetx_tf class or "
          "one of custom_objects.")


def _check_object(entry: dict, custom_objects: dict) -> None:
  name = entry["class_name"]
  if not isinstance(name, str):
    _fail(f"has a class name {name!r}.")
  if name == "function":
    _check_function(entry, custom_objects)
  elif name.startswith("__"):
    if name not in _DATA_OBJECTS:
      _fail(f"holds a {name} object (code or a type looked up by module).")
  else:
    _check_class(entry, custom_objects)


def _check_code(tree, custom_objects: dict) -> None:
  """Every serialized object, key and string in `tree` resolves to allowed code only."""
  stack = [tree]
  while stack:
    node = stack.pop()
    if isinstance(node, dict):
      unsafe = _UNSAFE_KEYS.intersection(node)
      if unsafe:
        _fail(f"holds {sorted(unsafe)[0]!r} (code run on loading).")
      if "class_name" in node:
        _check_object(node, custom_objects)
      stack.extend(node.values())
    elif isinstance(node, list):
      stack.extend(node)
    elif isinstance(node, str):
      _registered(node, custom_objects)


# -------------------------------------------------------------------------------------------
# The functional graph.

def _is_reference(value) -> bool:
  """A serialized tensor reference: [layer name, node index, tensor index(, call kwargs)]."""
  return isinstance(value, list) and len(value) in (3, 4) and isinstance(value[0], str)


def _is_index(value) -> bool:
  return isinstance(value, int) and not isinstance(value, bool)


class _Graph:
  """The layers of one functional model config and the nodes their entries declare."""

  def __init__(self, config: dict):
    layers = config.get("layers")
    if not isinstance(layers, list) or not layers:
      _fail("has a model without layers.")
    self.first, self.count = {}, {}      # first valid node index and node count, by layer
    for entry in layers:
      if not (isinstance(entry, dict) and isinstance(entry.get("name"), str)
              and isinstance(entry.get("config"), dict)
              and isinstance(entry.get("inbound_nodes"), list)):
        _fail("has a malformed layer entry.")
      name = entry["name"]
      if name in self.count or name == _CONSTANT:
        _fail(f"has two layers named {name!r}.")
      if entry["config"].get("name", name) != name:
        _fail(f"names layer {name!r} {entry['config'].get('name')!r} in its config.")
      if entry.get("class_name") == "InputLayer":
        if entry["inbound_nodes"]:
          _fail(f"feeds the input layer {name!r}.")
        self.first[name], self.count[name] = 0, 1
      else:
        self.first[name] = int(_skips_first_node(entry))
        self.count[name] = len(entry["inbound_nodes"])
    self.layers = layers

  def node(self, reference: list) -> Optional[tuple]:
    """The (layer, node index) a tensor reference reads; None for a constant."""
    name, index, tensor = reference[:3]
    if name == _CONSTANT and index == -1:
      return None
    if name not in self.count:
      _fail(f"refers to an unknown layer {name!r}.")
    first = self.first[name]
    if not (_is_index(index) and first <= index < first + self.count[name]
            and _is_index(tensor) and tensor >= 0):
      _fail(f"refers to node {index!r} (tensor {tensor!r}) of layer {name!r}, which does not "
            "exist.")
    if len(reference) == 4 and not isinstance(reference[3], dict):
      _fail(f"has malformed call arguments for layer {name!r}.")
    return name, index

  def inputs_of(self, node_data) -> list:
    """The nodes one inbound node reads: its tensors and any tensors in its call kwargs."""
    found, stack = [], [node_data]
    while stack:
      item = stack.pop()
      if _is_reference(item):
        found.append(self.node(item))
        if len(item) == 4:
          stack.extend(_references_in(item[3]))
      elif isinstance(item, list):
        stack.extend(item)
      elif isinstance(item, dict):
        stack.extend(item.values())
      else:
        _fail("has a malformed inbound node.")
    return [n for n in found if n is not None]


def _references_in(kwargs) -> list:
  """Tensor references inside call kwargs (Keras treats every such list as one)."""
  found, stack = [], [kwargs]
  while stack:
    item = stack.pop()
    if _is_reference(item):
      found.append(item[:3])
    elif isinstance(item, list):
      stack.extend(item)
    elif isinstance(item, dict):
      stack.extend(item.values())
  return found


def _skips_first_node(entry: dict) -> bool:
  """Whether Keras numbers this layer's nodes from 1: a nested model built on an Input, whose
  node 0 (its own inputs to outputs) is not in the outer graph."""
  layers = entry["config"].get("layers")
  return (entry.get("class_name") in _MODEL_NAMES and isinstance(layers, list) and layers
          and isinstance(layers[0], dict) and layers[0].get("class_name") == "InputLayer")


def _endpoints(graph: _Graph, value, what: str) -> None:
  # A list of tensor references, or a dict of them for a model called on / returning a dict.
  nodes = graph.inputs_of(value) if isinstance(value, (list, dict)) and value else []
  if not nodes:
    _fail(f"has a model without {what}.")


def _check_acyclic(graph: _Graph) -> None:
  """Every node's inputs can be built before it (Keras's reconstruction loop ends)."""
  needs = {}
  for entry in graph.layers:
    name, first = entry["name"], graph.first[entry["name"]]
    for k, node_data in enumerate(entry["inbound_nodes"]):
      if node_data in ([], {}):
        _fail(f"has an empty inbound node of layer {name!r}.")
      inputs = graph.inputs_of(node_data)
      # Keras builds a layer's nodes in order: node k waits for node k - 1.
      needs[(name, first + k)] = inputs + ([(name, first + k - 1)] if k else [])
  state = {}                                   # node -> 1 visiting, 2 done
  for start in needs:
    if state.get(start) == 2:
      continue
    stack = [(start, iter(needs[start]))]
    state[start] = 1
    while stack:
      node, pending = stack[-1]
      child = next(pending, None)
      if child is None:
        state[node] = 2
        stack.pop()
      elif child in needs and state.get(child) != 2:
        if state.get(child) == 1:
          _fail(f"has a cycle through layer {child[0]!r} (a layer fed by its own output).")
        state[child] = 1
        stack.append((child, iter(needs[child])))


def _check_graphs(tree) -> None:
  """Checks the graph of every functional model config in `tree` (nested models included)."""
  stack = [tree]
  while stack:
    node = stack.pop()
    if isinstance(node, list):
      stack.extend(node)
    elif isinstance(node, dict):
      config = node.get("config")
      if isinstance(config, dict) and (node.get("class_name") in ("Functional", "Model")
                                       or "output_layers" in config
                                       or "input_layers" in config):
        graph = _Graph(config)
        _endpoints(graph, config.get("input_layers"), "inputs")
        _endpoints(graph, config.get("output_layers"), "outputs")
        _check_acyclic(graph)
      elif isinstance(config, dict) and node.get("class_name") == "Sequential":
        layers = config.get("layers")
        if not isinstance(layers, list) or not all(isinstance(l, dict) for l in layers):
          _fail("has a Sequential model with malformed layers.")
      stack.extend(node.values())


def check(model: dict, custom_objects: Optional[dict], safe_mode: bool) -> None:
  """Raises `ModelFileError` unless the Keras model config `model` is safe to rebuild: no code
  but the allowed (skipped with `safe_mode=False`) and a graph Keras's loop can finish."""
  if not isinstance(model, dict) or model.get("class_name") not in _MODEL_NAMES or \
     not isinstance(model.get("config"), dict):
    _fail("is not a Functional or Sequential Keras model.")
  try:
    if safe_mode:
      _check_code(model, dict(custom_objects or {}))
    _check_graphs(model)
  except RecursionError:
    _fail("is nested too deeply.")
