"""lilnetx_tf: Keras layers that make networks small on disk and cheap to run (LilNetX).

    import lilnetx_tf as lnx
    model = tf.keras.Sequential([lnx.Conv2D(32, 3, activation="relu"), ..., lnx.Dense(10)])
    model.compile("adam", "sparse_categorical_crossentropy"); model.fit(...)
    lnx.stats(model)
"""

from lilnetx_tf import callbacks
from lilnetx_tf import errors
from lilnetx_tf import optimizers
from lilnetx_tf.coding import compress, decompress
from lilnetx_tf.convert import convert
from lilnetx_tf.export import export, slim
from lilnetx_tf.layers import Conv2D, DepthwiseConv2D, Dense, GroupRegistry, ParameterGroup
from lilnetx_tf.layers import fit_densities, group_scope, is_lilnetx_layer
from lilnetx_tf.monitor import monitor
from lilnetx_tf.stats import stats
from lilnetx_tf import tuning

__version__ = "0.1.0"
