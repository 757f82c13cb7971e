"""LilNetX `MultiHeadAttention`: the Keras layer with LilNetX query/key/value/output projections.

Keras's `MultiHeadAttention` creates its four `EinsumDense` projections when it is first called
(or rebuilt from a config); this subclass swaps each for a `lnx.EinsumDense` of the same
configuration before any weight exists, so the projections join the model's `dense` group
like any Dense layer and the attention computation itself is Keras's, unchanged. Each head's
weights are whole output columns of the query/key/value latents and whole input rows of the
output latent, so the group lasso can kill a head as a unit (`lnx.slim` then removes it).
"""

from typing import Optional

import tensorflow as tf

from lilnetx_tf.layers import base
from lilnetx_tf.layers import einsum_dense
from lilnetx_tf.layers import registry as registry_lib
from lilnetx_tf import validation

__all__ = ["MultiHeadAttention", "PROJECTIONS"]

# The attributes of Keras's MultiHeadAttention holding its projections, in creation order.
PROJECTIONS = ("_query_dense", "_key_dense", "_value_dense", "_output_dense")


@tf.keras.utils.register_keras_serializable(package="lilnetx_tf")
class MultiHeadAttention(tf.keras.layers.MultiHeadAttention):
  """`tf.keras.layers.MultiHeadAttention` whose four projections are `lnx.EinsumDense` layers.

  Takes every Keras argument except `kernel_regularizer` and `kernel_constraint`;
  `kernel_initializer` is accepted and ignored. Adds the LilNetX arguments of `lnx.Dense`
  (`rate_weight`, `slice_weight`, `l2_weight`, `boundary`, `density_learning_rate`,
  `config_version`, `latent_pace`), given to every projection.
  """

  # The Keras kernel each of `latent_kernels()` decodes to (see `layers.kernel_latents`).
  KERNEL_NAMES = tuple(f"{name}.kernel" for name in PROJECTIONS)

  def __init__(self, num_heads, key_dim, *args,
               rate_weight: float = base.DEFAULT_RATE_WEIGHT,
               slice_weight: float = base.DEFAULT_SLICE_WEIGHT,
               l2_weight: float = base.DEFAULT_L2_WEIGHT,
               boundary: float = base.DEFAULT_BOUNDARY,
               density_learning_rate: float = base.DEFAULT_DENSITY_LEARNING_RATE,
               config_version: int = base.CONFIG_VERSION,
               latent_pace: float = 1.0,
               registry_id: Optional[int] = None,
               **kwargs):
    validation.positive_int("num_heads", num_heads)
    validation.positive_int("key_dim", key_dim)
    self._lilnetx_kwargs = base.lilnetx_arguments(rate_weight, slice_weight, l2_weight, boundary,
                                                  density_learning_rate, config_version,
                                                  latent_pace)
    super().__init__(num_heads, key_dim, *args, **kwargs)
    base.refuse_replaced_arguments(self, ("kernel_regularizer", "kernel_constraint"), prefix="_")
    registry_lib.join_initial_registry(self, base.saved_registry_id(registry_id))

  def __call__(self, *args, **kwargs):
    # The projections are created and first called inside this layer's call, where they find
    # the registry of the layer whose call is running: give it the model's first.
    if registry_lib.registry_of(self) is None:
      found = registry_lib.resolve((args, kwargs))
      if found is not None:
        registry_lib.set_registry(self, found)
    return super().__call__(*args, **kwargs)

  def _build_from_signature(self, query, value, key=None):
    super()._build_from_signature(query, value, key)
    for name in PROJECTIONS:   # still unbuilt: no weight has been made yet
      stock = getattr(self, name)
      # Named after this layer, as a separable's `LatentKernel`s: unique in the model, so that
      # `lnx.stats` and messages tell the blocks of a transformer apart.
      # Frozen with this layer (Keras's projections do not inherit `trainable`).
      config = {**stock.get_config(), **self._lilnetx_kwargs,
                "name": f"{self.name}_{stock.name}", "trainable": self.trainable}
      projection = einsum_dense.EinsumDense.from_config(config)
      # This layer's registry, before Keras builds them (its loaders build before calling).
      registry = registry_lib.registry_of(self)
      if registry is not None:
        registry_lib.set_registry(projection, registry)
      setattr(self, name, projection)

  def get_config(self) -> dict:
    projections = self.latent_kernels()
    pace = projections[0].latent_pace if projections else self._lilnetx_kwargs["latent_pace"]
    registry = registry_lib.registry_of(projections[0] if projections else self)
    return registry_lib.with_saved_id(
        {**super().get_config(), **self._lilnetx_kwargs, "latent_pace": pace}, registry)

  def latent_kernels(self) -> list:
    """The query, key, value and output `lnx.EinsumDense` layers; none before the first call
    creates them. A method: Keras' saver walks properties."""
    if not self._built_from_signature:
      return []
    return [getattr(self, name) for name in PROJECTIONS]

  def stock_weights(self) -> list:
    """The decoded weights in the order of the stock Keras layer's (what `lnx.slim` decodes it
    to): kernel and bias of the query, key, value and output projections."""
    return [w for p in self.latent_kernels() for w in p.stock_weights()]
