"""`DataConfig`: every choice one input pipeline makes (defined with the experiment tree, whose
field checks it shares; see `efficientnet.config.schema`)."""

from efficientnet.config.schema import AUGMENT_NAMES, DTYPES, RESIZE_METHODS, DataConfig

__all__ = ["AUGMENT_NAMES", "DTYPES", "RESIZE_METHODS", "DataConfig"]
