"""Blur data pipeline: PSFs, degradation, sharp sources and tf.data datasets.

This package knows nothing about Keras models; `blurnet` builds on it.
"""
from data_pipeline.classes import CLASS_NAMES, NUM_CLASSES, BlurRanges
from data_pipeline.psf import defocus_psf, gaussian_psf, motion_psf

__all__ = [
    "CLASS_NAMES",
    "NUM_CLASSES",
    "BlurRanges",
    "gaussian_psf",
    "motion_psf",
    "defocus_psf",
]
