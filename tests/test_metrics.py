"""`blurnet.metrics.classification_metrics` against hand-computed numbers."""
import numpy as np
import pytest
from sklearn.metrics import f1_score

from blurnet.metrics import classification_metrics

# 12 images, 3 per class; predictions chosen by hand.
Y_TRUE = [0, 0, 0, 1, 1, 1, 2, 2, 2, 3, 3, 3]
Y_PRED = [0, 0, 1, 1, 1, 3, 2, 2, 2, 3, 0, 3]
# Rows true, columns predicted, counted by hand from the lists above.
EXPECTED_CM = [
    [2, 1, 0, 0],
    [0, 2, 0, 1],
    [0, 0, 3, 0],
    [1, 0, 0, 2],
]


def one_hot(pred, n=4, confidence=0.7):
    p = np.full((len(pred), n), (1 - confidence) / (n - 1))
    p[np.arange(len(pred)), pred] = confidence
    return p


def test_confusion_matrix_accuracy_and_per_class():
    m = classification_metrics(Y_TRUE, one_hot(Y_PRED))
    assert m["confusion_matrix"] == EXPECTED_CM
    assert m["n_images"] == 12
    assert m["accuracy"] == pytest.approx(9 / 12)
    assert m["classes"] == ["sharp", "gaussian", "motion", "defocus"]
    # sharp: predicted 0 three times (two right) -> precision 2/3, recall 2/3.
    assert m["per_class"]["sharp"]["precision"] == pytest.approx(2 / 3)
    assert m["per_class"]["sharp"]["recall"] == pytest.approx(2 / 3)
    # motion: all three right, nothing else predicted motion.
    assert m["per_class"]["motion"] == {"precision": 1.0, "recall": 1.0, "f1": 1.0, "support": 3}
    # defocus: predicted 3 three times (two right), recall 2/3.
    assert m["per_class"]["defocus"]["f1"] == pytest.approx(2 / 3)
    assert [m["per_class"][c]["support"] for c in m["classes"]] == [3, 3, 3, 3]
    assert m["macro_f1"] == pytest.approx(f1_score(Y_TRUE, Y_PRED, average="macro"))
    assert m["macro_f1"] == pytest.approx((2 / 3 + 2 / 3 + 1 + 2 / 3) / 4)
    np.testing.assert_allclose(m["confusion_matrix_normalized"][0], [2 / 3, 1 / 3, 0, 0], atol=1e-4)


def test_present_leaves_missing_class_out():
    y_true = [t for t in Y_TRUE if t != 2]
    y_pred = [p for t, p in zip(Y_TRUE, Y_PRED) if t != 2]
    m = classification_metrics(y_true, one_hot(y_pred), present=[0, 1, 3])
    assert set(m["per_class"]) == {"sharp", "gaussian", "defocus"}
    assert m["n_images"] == 9
    assert m["macro_f1"] == pytest.approx(f1_score(y_true, y_pred, labels=[0, 1, 3], average="macro"))
    # The confusion matrix keeps all four rows; the motion row is empty.
    assert m["confusion_matrix"][2] == [0, 0, 0, 0]
    assert m["confusion_matrix_normalized"][2] == [0.0, 0.0, 0.0, 0.0]
    # Without `present`, a class never seen is left out too (default: classes in y_true).
    assert set(classification_metrics(y_true, one_hot(y_pred))["per_class"]) == {"sharp", "gaussian", "defocus"}


def test_bad_shape_is_a_clear_error():
    with pytest.raises(ValueError, match="shape"):
        classification_metrics([0, 1], np.zeros((3, 4)))


def test_parameter_metrics_against_hand_computed_numbers():
    from blurnet.metrics import parameter_metrics

    # sharp, 2 gaussian, 2 motion, 3 defocus; raw columns: sigma, length, cos 2θ, sin 2θ, radius
    labels = [0, 1, 1, 2, 2, 3, 3, 3]
    params = [[0, 0, 0], [1.0, 0, 0], [3.0, 0, 0], [10.0, 179.0, 0], [20.0, 90.0, 0], [2.0, 0, 0], [4.0, 0, 0], [6.0, 0, 0]]
    doubled = np.deg2rad(2 * np.array([1.0, 80.0]))  # 2 deg from 179 across the 0/180 wrap; 10 deg from 90
    raw = np.zeros((8, 5))
    raw[1:3, 0] = [1.5, 2.5]  # sigma errors +0.5, -0.5
    raw[3:5, 1] = [11.0, 17.0]  # length errors +1, -3
    raw[3:5, 2], raw[3:5, 3] = np.cos(doubled), np.sin(doubled)
    raw[5:8, 4] = [2.3, 4.3, 6.9]  # radius errors +0.3, +0.3, +0.9
    got = parameter_metrics(labels, np.array(params), raw)
    assert got["sigma_n"] == 2 and got["length_n"] == 2 and got["radius_n"] == 3
    assert got["sigma_mae"] == pytest.approx(0.5) and got["sigma_bias"] == pytest.approx(0.0)
    assert got["sigma_r2"] == pytest.approx(1 - 0.5 / 2.0)  # residuals 0.25 + 0.25 over spread 1 + 1
    assert got["length_mae"] == pytest.approx(2.0) and got["length_bias"] == pytest.approx(-1.0)
    assert got["length_r2"] == pytest.approx(1 - 10.0 / 50.0)
    assert got["length_p90"] == pytest.approx(np.percentile([1.0, 3.0], 90))
    assert got["angle_mae_deg"] == pytest.approx(6.0, abs=1e-6) and got["angle_p90_deg"] == pytest.approx(9.2, abs=1e-6)
    assert got["radius_mae"] == pytest.approx(0.5) and got["radius_bias"] == pytest.approx(0.5)
    assert got["radius_r2"] == pytest.approx(1 - (0.09 + 0.09 + 0.81) / 8.0)
    # A class without samples leaves its parameter out; unknown (NaN) parameters do not count.
    assert "sigma_mae" not in parameter_metrics([2, 3], np.array([[10.0, 0, 0], [np.nan, 0, 0]]), raw[:2])
    assert "radius_mae" not in parameter_metrics([2, 3], np.array([[10.0, 0, 0], [np.nan, 0, 0]]), raw[:2])
