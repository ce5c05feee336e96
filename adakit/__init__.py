"""adakit: active and unsupervised domain adaptation for classification."""

from adakit.errors import AdakitError, ConfigError, DataError

__version__ = "0.1.0"
__all__ = ["AdakitError", "ConfigError", "DataError", "__version__"]
