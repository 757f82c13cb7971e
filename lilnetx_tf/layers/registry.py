"""Which layers share a parameter group: one `GroupRegistry` per model.

The paper shares one decoder and one density per kernel shape across a whole network. Keras
layers are created one by one with no handle on the model they will end up in, so a layer finds
its model's registry when it is first called, in this order:

1. the registry active where it was created (`group_scope`) or, in a model Keras is loading, the
   registry of its saved number (`registry_id`, below);
2. the registry of any LilNetX layer upstream of its inputs (Functional and Sequential models,
   including nested models), merging registries where branches meet;
3. the registry of the layer whose `call` is running (a subclassed model or block);
4. otherwise a registry of its own.

A layer built before it is first called (Keras' loaders build every layer from its saved build
config before connecting them) joins the current provisional registry, which all such layers
share until one of them is called and claims it; the others move when they are called. Sharing
it lets Keras' SavedModel loader bind a group saved once under several layers to one object.

Keras files record the sharing: a model's config numbers its registries in the order it meets
them (`saved_id`, each LilNetX layer's `registry_id`), and the layers of one number in one Keras
load (`.keras`, HDF5, SavedModel) get one registry (`loaded_registry`). The graph alone cannot
tell where branches meet only after their last LilNetX layers (two towers added at the output, a
nested model beside an outside branch): it would give such branches a registry each. Outside a
load (`from_config`, `clone_model`, an old file without numbers) the graph decides, as for a new
model; a `.lnx` file keeps its own record (`coding.architecture.rebuild`, `unify`).
"""

import contextlib
import threading
import weakref
from typing import Iterator, Optional

import tensorflow as tf

from lilnetx_tf import _compat
from lilnetx_tf._compat import base_layer_utils
from lilnetx_tf.layers.group import ParameterGroup

__all__ = ["GroupRegistry", "claim", "current_scope", "end_load", "group_scope",
           "join_initial_registry", "loaded_registry", "provisional_registry", "registry_of",
           "resolve", "saved_id", "set_registry", "unify", "unnumbered", "with_saved_id"]

_SCOPES = threading.local()
_REGISTRY_ATTR = "_lilnetx_group_registry"
# The key of a loaded registry among the objects of a Keras `.keras` load.
_LOADED_KEY = "lilnetx_tf.GroupRegistry"


class GroupRegistry:
  """The parameter groups of one model, one per kernel shape (e.g. 'conv3x3', 'dense')."""

  def __init__(self):
    self._groups: dict[str, ParameterGroup] = {}
    self.penalty_scale: Optional[tf.Variable] = None

  @property
  def groups(self) -> dict:
    """Group key -> `ParameterGroup`."""
    return dict(self._groups)

  def group(self, key: str, slice_size: int, **group_kwargs) -> ParameterGroup:
    """Returns the group for `key`, creating it (in the current strategy scope) if needed."""
    if key not in self._groups:
      self._groups[key] = ParameterGroup(slice_size, name=f"lilnetx_group_{key}", **group_kwargs)
    return self._groups[key]

  @property
  def num_slices(self) -> int:
    """Number of (out, in) slices over every member of every group: the rate normalizer."""
    return sum(m.num_slices for g in self._groups.values() for m in g.members())

  def start_penalty_scale(self) -> tf.Variable:
    """Puts a variable factor (starting at 1) on every penalty of the model's LilNetX layers.

    Used by `callbacks.PenaltySchedule` for the length of one `fit`; functions traced while it is
    set read the variable. It is schedule state, not a model weight, so it is never saved.
    """
    with tf.init_scope():
      self.penalty_scale = tf.Variable(1.0, trainable=False, name="lilnetx_penalty_scale")
    return self.penalty_scale

  def stop_penalty_scale(self) -> None:
    """Back to fixed penalty weights: functions traced from now on have no factor."""
    if self.penalty_scale is not None:
      self.penalty_scale.assign(1.0)
    self.penalty_scale = None

  def absorb(self, other: "GroupRegistry") -> None:
    """Moves every member of `other` into this registry (used where two branches meet)."""
    if other is self:
      return
    for group in list(other._groups.values()):
      for member in group.members():
        member.rebind(self)
    other._groups.clear()


@contextlib.contextmanager
def group_scope(registry: Optional[GroupRegistry] = None) -> Iterator[GroupRegistry]:
  """Makes LilNetX layers created (or first called) inside share `registry` (a new one if None).

  Needed only where sharing cannot be found from the graph, e.g. a subclassed model whose
  blocks are custom layers: `with lnx.group_scope(): model = MyModel()`.
  """
  registry = registry or GroupRegistry()
  stack = _scope_stack()
  stack.append(registry)
  try:
    yield registry
  finally:
    stack.pop()


def provisional_registry() -> GroupRegistry:
  """The registry that layers built before being called join until one of them claims it."""
  if getattr(_SCOPES, "provisional", None) is None:
    _SCOPES.provisional = GroupRegistry()
  return _SCOPES.provisional


def claim(registry: GroupRegistry) -> None:
  """Marks `registry` as owned by a model: later provisional builds get a new one."""
  if getattr(_SCOPES, "provisional", None) is registry:
    _SCOPES.provisional = None


def _scope_stack() -> list:
  if not hasattr(_SCOPES, "stack"):
    _SCOPES.stack = []
  return _SCOPES.stack


def current_scope() -> Optional[GroupRegistry]:
  """The registry of the innermost active `group_scope`, if any."""
  stack = _scope_stack()
  return stack[-1] if stack else None


def _upstream_registries(inputs) -> list:
  """Registries of LilNetX layers upstream of the Keras tensors in `inputs`, nearest first."""
  found, seen_layers = [], set()
  frontier = [t for t in tf.nest.flatten(inputs) if hasattr(t, "_keras_history")]
  while frontier:
    tensor = frontier.pop(0)
    layer, node_index, _ = tensor._keras_history
    if layer is None or id(layer) in seen_layers:
      continue
    seen_layers.add(id(layer))
    for sub in layer._flatten_layers(include_self=True):
      registry = getattr(sub, _REGISTRY_ATTR, None)
      if registry is not None and all(registry is not r for r in found):
        found.append(registry)
    frontier.extend(
        t for t in tf.nest.flatten(layer._inbound_nodes[node_index].keras_inputs)
        if hasattr(t, "_keras_history"))
  return found


def resolve(inputs) -> Optional[GroupRegistry]:
  """Finds the registry for a layer first called on `inputs` (steps 2 and 3 above), if any."""
  upstream = _upstream_registries(inputs)
  if upstream:
    for other in upstream[1:]:
      upstream[0].absorb(other)
    return upstream[0]
  enclosing = base_layer_utils.call_context().layer
  if enclosing is not None:
    registry = getattr(enclosing, _REGISTRY_ATTR, None)
    if registry is None:
      registry = GroupRegistry()
      object.__setattr__(enclosing, _REGISTRY_ATTR, registry)
    return registry
  return None


def registry_of(layer) -> Optional[GroupRegistry]:
  return getattr(layer, _REGISTRY_ATTR, None)


def set_registry(layer, registry: GroupRegistry) -> None:
  # Not a tracked attribute: the registry is bookkeeping, the groups it hands out are tracked
  # by each member layer.
  object.__setattr__(layer, _REGISTRY_ATTR, registry)


def unify(layers) -> None:
  """Puts the LilNetX `layers` of one model in one registry (the first one's), as `convert`'s
  `group_scope` does. The graph (`resolve`) joins branches only where a LilNetX layer reads
  both, so a model rebuilt from a config without `registry_id`s (a `.lnx` ARCH section) whose
  branches meet after their last LilNetX layers (two towers added at the output) would get a
  registry, and groups, per branch."""
  registries: list = []
  for layer in layers:
    registry = registry_of(layer)
    if registry is not None and all(registry is not r for r in registries):
      registries.append(registry)
  for other in registries[1:]:
    registries[0].absorb(other)


# -----------------------------------------------------------------------------------------------
# Keras files.

def saved_id(registry: Optional[GroupRegistry]) -> Optional[int]:
  """The number of `registry` in the model config Keras is writing (registries numbered from 0
  in the order met), or None outside one: a layer's own config, `unnumbered`."""
  # Keras's shared-object scope is open while any model config is written (a Functional
  # model's `get_config`, every save), nested models included.
  # pylint: disable-next=protected-access
  scope = _compat.legacy_serialization._shared_object_saving_scope()
  if scope is None or registry is None or getattr(_SCOPES, "unnumbered", False):
    return None
  numbers = getattr(_SCOPES, "numbers", None)
  if numbers is None or numbers[0] is not scope:
    numbers = _SCOPES.numbers = (scope, weakref.WeakKeyDictionary())
  return numbers[1].setdefault(registry, len(numbers[1]))


def with_saved_id(config: dict, registry: Optional[GroupRegistry]) -> dict:
  """A LilNetX layer's `config` with its `registry_id` (`saved_id`) when a model config is
  being written."""
  number = saved_id(registry)
  return config if number is None else {**config, "registry_id": number}


@contextlib.contextmanager
def unnumbered() -> Iterator[None]:
  """Model configs written inside carry no `registry_id` (a `.lnx` file keeps its own record)."""
  previous = getattr(_SCOPES, "unnumbered", False)
  _SCOPES.unnumbered = True
  try:
    yield
  finally:
    _SCOPES.unnumbered = previous


def loaded_registry(number: Optional[int], layer_name: str) -> Optional[GroupRegistry]:
  """The registry of the layers saved in registry `number` of the model Keras is loading, or
  None outside a Keras load."""
  if number is None:
    return None
  serialization_lib = _compat.serialization_lib
  if getattr(serialization_lib.SHARED_OBJECTS, "enabled", False):   # a `.keras` load
    key = (_LOADED_KEY, number)
    registry = serialization_lib.get_shared_object(key)
    if registry is None:
      registry = GroupRegistry()
      serialization_lib.record_object_after_deserialization(registry, key)
    return registry
  if not _compat.legacy_saved_model_utils.in_tf_saved_model_scope():   # HDF5 and SavedModel
    return None
  # Ended by `end_load`; a layer name met again means a new load (after one that failed).
  loading = getattr(_SCOPES, "loading", None)
  if loading is None or layer_name in loading[0]:
    loading = _SCOPES.loading = (set(), {})
  loading[0].add(layer_name)
  if number not in loading[1]:
    loading[1][number] = GroupRegistry()
  return loading[1][number]


def end_load() -> None:
  """Ends an HDF5 or SavedModel load's numbering (the loaders finalize every layer once the
  model is complete: `Layer.finalize_state`)."""
  _SCOPES.loading = None


def join_initial_registry(layer, number: Optional[int]) -> None:
  """Puts a LilNetX `layer`, when created, in the registry of step 1 above, if there is one:
  the active `group_scope`, else that of its saved `number` in a Keras load."""
  registry = current_scope() or loaded_registry(number, layer.name)
  if registry is not None:
    set_registry(layer, registry)
