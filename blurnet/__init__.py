"""blurnet: tell whether an image is sharp or has gaussian, motion or defocus blur."""
from data_pipeline.classes import CLASS_NAMES

__version__ = "0.1.0"
__all__ = ["CLASS_NAMES", "__version__"]
