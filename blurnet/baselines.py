"""Baselines `blurnet report` sets beside the model.

(a) `LaplacianThreshold`: variance of the Laplacian of the grey image with one
    threshold. It can only tell sharp from blurred (binary accuracy).
(b) `HandcraftedClassifier`: gradient statistics, radial and angular
    log-spectrum profiles and a cepstrum profile fed to scikit-learn gradient
    boosting, trained on crops of the training stream; it predicts the four
    classes. On the bundled test split at 64 px, 4,096 training crops: 0.938
    accuracy (in a trial, a random forest on the same crops 0.904, and 0.879
    without the angular profiles): a strong baseline on purpose, so beating it
    means something.

Both take float32 or uint8 RGB images `(h, w, 3)` in 0..255, any size.
"""
from __future__ import annotations

import cv2
import numpy as np
from sklearn.ensemble import HistGradientBoostingClassifier

from data_pipeline.classes import NUM_CLASSES

_SPECTRUM_BINS = 12
_CEPSTRUM_RADII = 16
_ANGULAR_SECTORS = 8
_ANGULAR_BANDS = ((0.06, 0.15), (0.15, 0.3), (0.3, 0.5))  # cycles per pixel


def _gray(image) -> np.ndarray:
    image = np.asarray(image, np.float32)
    if image.ndim == 3:
        image = cv2.cvtColor(image, cv2.COLOR_RGB2GRAY)
    return image


def laplacian_variance(image) -> float:
    """Variance of the Laplacian of the grey image (low means blurred)."""
    return float(cv2.Laplacian(_gray(image), cv2.CV_32F).astype(np.float64).var())


class LaplacianThreshold:
    """Sharp when the Laplacian variance is at least `threshold`, blurred below it."""

    name = "Laplacian variance + threshold"

    def __init__(self, threshold: float | None = None):
        self.threshold = threshold

    def fit(self, scores, is_blurred, method: str = "best") -> "LaplacianThreshold":
        """Choose the threshold from scores of labelled images.

        `method="best"`: the threshold maximising balanced binary accuracy (for a
        separate validation set); `"medians"`: the midpoint (in log space) between
        the median score of sharp and of blurred images. Needs both kinds.
        """
        scores = np.asarray(scores, np.float64)
        is_blurred = np.asarray(is_blurred, bool)
        if is_blurred.all() or not is_blurred.any():
            raise ValueError("choosing a Laplacian threshold needs both sharp and blurred images.")
        logs = np.log1p(scores)
        if method == "medians":
            self.threshold = float(np.expm1((np.median(logs[is_blurred]) + np.median(logs[~is_blurred])) / 2))
            return self
        order = np.unique(logs)
        candidates = np.concatenate([(order[:-1] + order[1:]) / 2, [order[-1] + 1.0]])
        best, best_t = -1.0, candidates[0]
        for t in candidates:
            blurred_call = logs < t
            balanced = 0.5 * (blurred_call[is_blurred].mean() + (~blurred_call[~is_blurred]).mean())
            if balanced > best:
                best, best_t = balanced, t
        self.threshold = float(np.expm1(best_t))
        return self

    def predict_blurred(self, scores) -> np.ndarray:
        """True where an image is called blurred."""
        if self.threshold is None:
            raise ValueError("LaplacianThreshold has no threshold: call fit first.")
        return np.asarray(scores, np.float64) < self.threshold


def _radial_mean(values: np.ndarray, radius: np.ndarray, edges: np.ndarray) -> np.ndarray:
    index = np.digitize(radius.ravel(), edges) - 1
    ok = (index >= 0) & (index < len(edges) - 1)
    sums = np.bincount(index[ok], values.ravel()[ok], minlength=len(edges) - 1)
    counts = np.bincount(index[ok], minlength=len(edges) - 1)
    return sums / np.maximum(counts, 1)


def handcrafted_features(image) -> np.ndarray:
    """A float32 feature vector: gradient statistics, radial log-spectrum and cepstrum profiles."""
    gray = _gray(image)
    h, w = gray.shape
    gx = cv2.Sobel(gray, cv2.CV_32F, 1, 0, ksize=3)
    gy = cv2.Sobel(gray, cv2.CV_32F, 0, 1, ksize=3)
    mag = np.sqrt(gx * gx + gy * gy)
    jxx, jyy, jxy = float((gx * gx).mean()), float((gy * gy).mean()), float((gx * gy).mean())
    root = np.sqrt((jxx - jyy) ** 2 + 4 * jxy**2)
    anisotropy = root / (jxx + jyy + 1e-6)
    lap = cv2.Laplacian(gray, cv2.CV_32F)
    logmag = np.log1p(mag)
    gradient = [
        np.log1p(lap.var()),
        logmag.mean(),
        logmag.std(),
        *np.percentile(logmag, [50, 90, 99]),
        np.log1p(mag.mean()) - np.log1p(np.abs(gray - gray.mean()).mean()),
        anisotropy,
        float(((lap - lap.mean()) ** 4).mean() / (lap.var() ** 2 + 1e-6)),
    ]
    window = np.outer(np.hanning(h), np.hanning(w)).astype(np.float32)
    spectrum = np.abs(np.fft.fftshift(np.fft.fft2((gray - gray.mean()) * window)))
    log_spectrum = np.log(spectrum + 1e-3)
    fy, fx = np.meshgrid(np.fft.fftshift(np.fft.fftfreq(h)), np.fft.fftshift(np.fft.fftfreq(w)), indexing="ij")
    profile = _radial_mean(log_spectrum, np.sqrt(fx * fx + fy * fy) / 0.5, np.linspace(0.02, 1.0, _SPECTRUM_BINS + 1))
    profile = profile - profile[0]
    # Real cepstrum: PSF zeros (defocus rings, motion stripes) show as peaks at the blur size in pixels.
    cepstrum = np.abs(np.fft.ifft2(np.log(np.abs(np.fft.fft2(gray * window)) + 1e-3)))
    cepstrum = np.fft.fftshift(cepstrum)
    yy, xx = np.meshgrid(np.arange(h) - h // 2, np.arange(w) - w // 2, indexing="ij")
    cep = _radial_mean(cepstrum, np.sqrt(xx * xx + yy * yy), np.arange(0.5, _CEPSTRUM_RADII + 1.5))
    cep = np.log(cep + 1e-6)
    # Angular profiles: a motion streak dims one direction of the spectrum. Sorted, so the angle does not matter.
    angle = np.mod(np.arctan2(fy, fx), np.pi)
    radius = np.sqrt(fx * fx + fy * fy)
    angular = []
    for lo, hi in _ANGULAR_BANDS:
        band = (radius >= lo) & (radius < hi)
        sector = np.minimum((angle[band] / np.pi * _ANGULAR_SECTORS).astype(int), _ANGULAR_SECTORS - 1)
        sums = np.bincount(sector, log_spectrum[band], _ANGULAR_SECTORS)
        means = sums / np.maximum(np.bincount(sector, minlength=_ANGULAR_SECTORS), 1)
        angular.append(np.sort(means - means.mean()))
    return np.concatenate([np.asarray(gradient, np.float64), profile, cep - cep.mean(), *angular]).astype(np.float32)


class HandcraftedClassifier:
    """Handcrafted features + scikit-learn gradient boosting, predicting the four classes."""

    name = "handcrafted features + gradient boosting"

    def __init__(self, seed: int = 0, max_iter: int = 300):
        self.boosting = HistGradientBoostingClassifier(max_iter=max_iter, random_state=seed)

    @staticmethod
    def features(images) -> np.ndarray:
        """Feature matrix `(n, d)` of a sequence of images."""
        return np.stack([handcrafted_features(im) for im in images])

    def fit(self, images, labels) -> "HandcraftedClassifier":
        """Train on images and their class labels."""
        self.boosting.fit(self.features(images), np.asarray(labels, int))
        return self

    def predict_proba_features(self, features: np.ndarray) -> np.ndarray:
        """Probabilities `(n, 4)` in class order from a feature matrix."""
        out = np.zeros((len(features), NUM_CLASSES))
        out[:, self.boosting.classes_] = self.boosting.predict_proba(features)
        return out

    def predict_proba(self, images) -> np.ndarray:
        """Probabilities `(n, 4)` in class order."""
        return self.predict_proba_features(self.features(images))

    @property
    def num_parameters(self) -> int | None:
        """Number of tree nodes in the boosted ensemble (its size), None if scikit-learn hides them."""
        predictors = getattr(self.boosting, "_predictors", None)
        if predictors is None:
            return None
        return int(sum(len(tree.nodes) for iteration in predictors for tree in iteration))
