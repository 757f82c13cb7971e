"""The compressed `.lnx` model file: container, range coding of latents, compress/decompress."""

from lilnetx_tf.coding.model_file import compress, decompress, inspect, upgrade
from lilnetx_tf.coding.report import Report

__all__ = ["compress", "decompress", "inspect", "upgrade", "Report"]
