"""blurnet: tell whether an image is sharp or has gaussian, motion or defocus blur."""
from data_pipeline.classes import CLASS_NAMES

__version__ = "0.1.0"
__all__ = ["CLASS_NAMES", "__version__", "predict"]


def predict(paths_or_arrays, model=None, scale="auto", **options):
    """Classify the blur of images (paths, folders, globs or arrays); see `blurnet.prediction.predict`.

    Imports TensorFlow on first call only, so `import blurnet` stays light.
    """
    import importlib

    return importlib.import_module("blurnet.prediction").predict(paths_or_arrays, model=model, scale=scale, **options)
