import cv2
import numpy as np
import pytest

from blurnet.baselines import HandcraftedClassifier, LaplacianThreshold, handcrafted_features, laplacian_variance
from data_pipeline.degrade import BlurParams, convolve, make_psf
from tests.conftest import textured_image


def crops(label: int, n: int, size: int = 48) -> list[np.ndarray]:
    """`n` crops of class `label` from textured images, with mid-range blur."""
    out = []
    for i in range(n):
        image = textured_image(100 + i, 96, 96).astype(np.float32)
        params = [None, BlurParams(1, 2.0), BlurParams(2, 11.0, angle=15.0 * i), BlurParams(3, 4.0)][label]
        if params is not None:
            image = convolve(image, make_psf(params))
        out.append(image[24 : 24 + size, 24 : 24 + size])
    return out


def test_laplacian_baseline_separates_sharp_from_blur():
    sharp, blur = crops(0, 4), crops(1, 4)
    scores = [laplacian_variance(im) for im in sharp + blur]
    assert min(scores[:4]) > max(scores[4:])
    lap = LaplacianThreshold().fit(scores, [False] * 4 + [True] * 4)
    assert lap.predict_blurred(scores).tolist() == [False] * 4 + [True] * 4
    mid = LaplacianThreshold().fit(scores, [False] * 4 + [True] * 4, method="medians")
    assert max(scores[4:]) < mid.threshold < min(scores[:4])
    with pytest.raises(ValueError, match="both"):
        LaplacianThreshold().fit(scores[:4], [False] * 4)
    with pytest.raises(ValueError, match="fit first"):
        LaplacianThreshold().predict_blurred(scores)


def test_features_are_finite_and_the_same_length_for_any_size():
    a, b = handcrafted_features(crops(0, 1)[0]), handcrafted_features(crops(2, 1, size=40)[0][:, :36])
    assert a.ndim == 1 and a.shape == b.shape and np.isfinite(a).all() and np.isfinite(b).all()


def test_angular_profile_sees_a_motion_streak():
    # The last 24 features are the sorted angular profiles (3 bands x 8 sectors): their spread
    # is much larger for a streak (one direction dimmed) than for an isotropic Gaussian.
    # Noise, not rectangles: its spectrum is isotropic before the blur.
    noise = [np.random.default_rng(i).uniform(0, 255, (96, 96)).astype(np.float32) for i in range(6)]
    spread = lambda im: np.ptp(handcrafted_features(im[24:72, 24:72])[-24:].reshape(3, 8), axis=1).mean()
    motion = np.mean([spread(convolve(im, make_psf(BlurParams(2, 11.0, angle=30.0 * i)))) for i, im in enumerate(noise)])
    gaussian = np.mean([spread(convolve(im, make_psf(BlurParams(1, 2.0)))) for im in noise])
    assert motion > 1.5 * gaussian  # measured: 1.97 against 1.09


def test_classifier_learns_the_four_classes():
    train = [(im, c) for c in range(4) for im in crops(c, 12)]
    clf = HandcraftedClassifier(seed=0, max_iter=50).fit([im for im, _ in train], [c for _, c in train])
    test_images = [cv2.flip(im, 1) for c in range(4) for im in crops(c, 3)]  # unseen orientation
    labels = np.repeat(np.arange(4), 3)
    probabilities = clf.predict_proba(test_images)
    assert probabilities.shape == (12, 4)
    np.testing.assert_allclose(probabilities.sum(axis=1), 1.0, atol=1e-6)
    assert (probabilities.argmax(axis=1) == labels).mean() >= 0.75
    assert clf.num_parameters > 4
