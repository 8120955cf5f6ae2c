"""The parameter head: its loss, its decoding, the `estimate` endpoint and weights across head / no head."""
import json

import numpy as np
import pytest

from blurnet.export import export_model, load_export_weights, model_from_export
from blurnet.model import create_model
from blurnet.parameter_head import PARAMETER_SCALES, class_probabilities, decode_parameters, has_parameter_head, parameter_loss
from data_pipeline.classes import CLASS_NAMES, BlurRanges
from data_pipeline.parameters import angle_degrees, parameter_targets, raw_from_estimates
from conftest import run_in_plain_tensorflow

META = {"classes": list(CLASS_NAMES), "image_size": 32, "blur_ranges": BlurRanges().to_dict(), "backbone": "mobilenetv2",
        "weights": "none", "spectrum": True}


def head_per_view_by_hand(model, tiles):
    """The head's raw output `(8, n, 5)` for the 8 views of numpy `tiles`, written out by hand (as given, flipped
    left-right, up-down, turned 180 degrees, then the same of the transposed tiles), each view's angle turned back."""
    tiles = np.asarray(tiles, "float32")
    transposed = tiles.transpose(0, 2, 1, 3)
    by_hand = [tiles, tiles[:, :, ::-1], tiles[:, ::-1], tiles[:, ::-1, ::-1],
               transposed, transposed[:, :, ::-1], transposed[:, ::-1], transposed[:, ::-1, ::-1]]
    per_view = np.stack([np.asarray(model(np.ascontiguousarray(v), training=False)["parameters"]) for v in by_hand])
    angle_signs = {0: (1, 1), 1: (1, -1), 2: (1, -1), 3: (1, 1), 4: (-1, 1), 5: (-1, -1), 6: (-1, -1), 7: (-1, 1)}
    for k, (cos_sign, sin_sign) in angle_signs.items():  # a flip mirrors the angle, the transpose reflects it about 45
        per_view[k, :, 2] *= cos_sign
        per_view[k, :, 3] *= sin_sign
    return per_view


def test_loss_counts_only_the_parameters_of_each_sample_class():
    labels = np.array([0, 1, 2, 3])
    params = np.array([[0, 0, 1], [2.0, 0, 1], [10.0, 45.0, 1], [4.0, 0, 1]], np.float32)
    targets, mask = parameter_targets(labels, params)
    y_true = np.concatenate([targets, mask], axis=1)
    y_pred = targets + np.array([[9, 9, 9, 9, 9], [0.35, 9, 9, 9, 9], [9, 2.1, 0.0, -0.05, 9], [9, 9, 9, 9, 70.0]], np.float32)
    loss = np.asarray(parameter_loss(y_true, y_pred))
    scaled = lambda e, col: e / PARAMETER_SCALES[col]  # noqa: E731
    huber = lambda e: 0.5 * e * e if abs(e) <= 1 else abs(e) - 0.5  # noqa: E731
    expected = [0.0, huber(scaled(0.35, 0)), (huber(scaled(2.1, 1)) + 0 + huber(scaled(-0.05, 3))) / 3, huber(scaled(70.0, 4))]
    np.testing.assert_allclose(loss, expected, rtol=1e-5)
    assert expected[3] > 1.0  # a far-off radius is in Huber's linear part


def test_errors_at_the_aimed_accuracy_weigh_alike_in_the_loss():
    # sigma 0.12 px, length 0.8 px, angle 2.5 degrees, radius 0.2 px: no term may outweigh another more than 2x,
    # or it takes the shared layers' gradient (with an angle scale of 0.25 the length was not learned at all)
    doubled = np.deg2rad(2 * 2.5)
    on_circle = np.hypot(np.cos(doubled) - 1.0, np.sin(doubled))
    scaled = np.array([0.12, 0.8, on_circle, 0.2]) / PARAMETER_SCALES[[0, 1, 2, 4]]
    assert scaled.max() / scaled.min() < 2.0, scaled
    np.testing.assert_allclose(scaled, [0.034, 0.038, 0.044, 0.029], atol=1e-3)


def test_decoding_clips_sizes_and_reads_the_angle_back():
    raw = np.array([[-1.0, 12.0, np.cos(np.deg2rad(340.0)), np.sin(np.deg2rad(340.0)), 3.5], [2.0, -3.0, -2.0, 0.0, -0.1]], np.float32)
    got = {k: np.asarray(v) for k, v in decode_parameters(raw).items()}
    np.testing.assert_allclose(got["sigma"], [0.0, 2.0])
    np.testing.assert_allclose(got["length"], [12.0, 0.0])
    np.testing.assert_allclose(got["radius"], [3.5, 0.0])
    np.testing.assert_allclose(got["angle"], [170.0, 90.0], atol=1e-4)
    np.testing.assert_allclose(got["angle"], angle_degrees(raw[:, 2], raw[:, 3]), atol=1e-4)


@pytest.mark.slow
def test_estimate_endpoint_in_plain_tensorflow(head_export, tmp_path):
    model, target = head_export
    rng = np.random.default_rng(0)
    small = rng.uniform(0, 255, (2, 32, 32, 3)).astype("float32")
    large = rng.uniform(0, 255, (3, 64, 96, 3)).astype("float32")
    np.save(tmp_path / "small.npy", small)
    np.save(tmp_path / "large.npy", large)
    run_in_plain_tensorflow(f"""
        m = tf.saved_model.load({str(target)!r})
        for name in ("small", "large"):
            x = tf.constant(np.load(name + ".npy"))
            answer = {{k: v.numpy() for k, v in m.estimate(x).items()}}
            np.savez(name + "_out.npz", serve=m.serve(x).numpy(), **answer)
    """, cwd=tmp_path)
    for name, batch in (("small", 2), ("large", 3)):
        out = np.load(tmp_path / f"{name}_out.npz")
        assert sorted(out.files) == ["angle", "length", "probabilities", "radius", "serve", "sigma"]
        assert out["probabilities"].shape == (batch, 4)
        np.testing.assert_allclose(out["probabilities"], out["serve"], atol=1e-6)  # estimate's probabilities are serve's
        for key in ("sigma", "length", "angle", "radius"):
            assert out[key].shape == (batch,) and out[key].dtype == np.float32 and (out[key] >= 0).all()
        assert (out["angle"] < 180).all()
    # One tile: the plain network's head averaged over the export's 8 views (angles turned back), decoded.
    out = np.load(tmp_path / "small_out.npz")
    per_view = head_per_view_by_hand(model, small)
    expected = {k: np.asarray(v) for k, v in decode_parameters(per_view.mean(axis=0)).items()}
    one_view = {k: np.asarray(v) for k, v in decode_parameters(per_view[0]).items()}
    for key in ("sigma", "length", "angle", "radius"):
        np.testing.assert_allclose(out[key], expected[key], rtol=1e-4, atol=1e-3)
    # Not one view's answer: the angle, never clipped, differs between views of an untrained head (the sizes may all
    # be clipped to 0 in every view).
    assert max(np.abs(out[k] - one_view[k]).max() for k in ("sigma", "length", "angle", "radius")) > 3e-3


def test_weights_load_across_head_and_no_head(head_export, tmp_path):
    model, target = head_export
    rebuilt = model_from_export(target)
    assert has_parameter_head(rebuilt)
    x = np.random.default_rng(2).uniform(0, 255, (2, 40, 40, 3)).astype("float32")
    for key in ("probabilities", "parameters"):
        np.testing.assert_allclose(np.asarray(rebuilt(x)[key]), np.asarray(model(x)[key]), atol=1e-5)
    # An export without the head starts a model with it: everything but the head is copied.
    plain = create_model("mobilenetv2", weights=None, spectrum=True)
    plain_export = export_model(plain, tmp_path / "plain", META)
    with_head = create_model("mobilenetv2", weights=None, spectrum=True, parameter_head=True)
    load_export_weights(with_head, plain_export)
    np.testing.assert_allclose(np.asarray(class_probabilities(with_head(x))), np.asarray(plain(x)), atol=1e-5)
    # ... and the other way round: the head is left out.
    headless = create_model("mobilenetv2", weights=None, spectrum=True)
    load_export_weights(headless, target)
    np.testing.assert_allclose(np.asarray(headless(x)), np.asarray(model(x)["probabilities"]), atol=1e-5)


@pytest.mark.slow
def test_predict_records_carry_the_blur_of_the_predicted_class(head_export):
    from blurnet.classify import blur_record, rescale
    from blurnet.export import ExportedModel
    from blurnet.prediction import format_records, predict
    from conftest import textured_image

    model, target = head_export
    loaded = ExportedModel(target)
    image = textured_image(4, 64, 64)
    # at scale 2 the photograph is one 32 px tile: the blur is that tile's head answer, sizes times 2
    [record] = predict([image], model=loaded, scale=2)
    assert record["scale"] == 2 and record["tiles"] == 1
    tile = rescale(image, 2.0)[None].astype("float32")
    raw = np.asarray(model(tile)["parameters"])[0]
    label = record["label"]
    assert record["blur"]["class"] == label
    expected = {"sharp": {}, "gaussian": {"sigma_px": 2 * max(raw[0], 0)}, "defocus": {"radius_px": 2 * max(raw[4], 0)},
                "motion": {"length_px": 2 * max(raw[1], 0), "angle_deg": float(angle_degrees(raw[2], raw[3]))}}[label]
    assert set(record["blur"]) == {"class", *expected}
    for key, value in expected.items():
        assert record["blur"][key] == pytest.approx(value, abs=0.06)
    # --full: the export's own 8 views, each view's angle turned back before the mean
    [full] = predict([image], model=loaded, scale=2, full=True)
    averaged = loaded.estimate_tiles(tile, loaded.views)[0]
    assert loaded.views == 8 and np.abs(averaged - raw).max() > 1e-3
    # ExportedModel.estimate is the SavedModel's endpoint, decoded: the same 8-view answer for a one-tile image
    endpoint = loaded.estimate(tile)
    assert endpoint["probabilities"].shape == (1, 4) and endpoint["sigma"].shape == (1,)
    np.testing.assert_allclose(raw_from_estimates(endpoint["sigma"], endpoint["length"], endpoint["angle"], endpoint["radius"])[0],
                               [max(averaged[0], 0), max(averaged[1], 0), *(averaged[2:4] / np.linalg.norm(averaged[2:4])),
                                max(averaged[4], 0)], atol=1e-4)
    assert full["blur"] == blur_record(full["label"], averaged, 2.0)
    # every class's reading, and the table and CSV columns
    assert blur_record("motion", np.array([10.0, 7.0, 0.0, 1.0, 3.0]), 3.0) == {"class": "motion", "length_px": 21.0, "angle_deg": 45.0}
    assert blur_record("defocus", np.array([10.0, 7.0, 0.0, 1.0, 3.0]), 3.0) == {"class": "defocus", "radius_px": 9.0}
    assert blur_record("gaussian", np.array([-1.0, 7.0, 0.0, 1.0, 3.0]), 3.0) == {"class": "gaussian", "sigma_px": 0.0}
    assert blur_record("sharp", np.zeros(5), 3.0) == {"class": "sharp"}
    motion = {**record, "label": "motion", "blur": {"class": "motion", "length_px": 21.0, "angle_deg": 45.0}}
    table = format_records([motion], "table").splitlines()
    assert table[0].endswith("  blur") and table[2].endswith("  length 21 px at 45 deg")
    header, row = format_records([motion, {"path": "bad", "error": "broken"}], "csv").splitlines()[:2]
    assert header.endswith(",error,blur_sigma_px,blur_length_px,blur_angle_deg,blur_radius_px")
    assert row.endswith(",,21,45,")


@pytest.mark.slow
def test_report_tables_and_plots_the_parameters_beside_the_classical_estimators(head_export, tmp_path):
    from blurnet.report import write_report

    _, target = head_export
    out = write_report(target, out_dir=tmp_path / "report", num_images=32, batch_size=16, baseline_images=16, progress=False)
    metrics = json.loads((out / "metrics.json").read_text())
    assert sorted(metrics["parameters"]) == ["blurnet", "classical"]
    for method in ("blurnet", "classical"):
        m = metrics["parameters"][method]
        assert {"sigma_mae", "length_mae", "angle_mae_deg", "radius_mae", "sigma_r2", "length_p90"} <= m.keys()
        blurred_images = int(np.asarray(metrics["confusion_matrix"]).sum(axis=1)[1:].sum())  # every non-sharp image, once
        assert m["sigma_n"] + m["length_n"] + m["radius_n"] == blurred_images
    index = (out / "index.md").read_text()
    assert "## Blur parameters" in index and "| blurnet | " in index and "| classical | " in index
    assert "parameters.png" in metrics["plots"] and (out / "parameters.png").stat().st_size > 10_000
    # its images/s include the head's answers, which the table says
    assert "with the parameter head's answers" in metrics["baselines"][0]["note"]
    assert "with the parameter head's answers" in index


def test_held_out_parameters_are_averaged_over_the_views(head_export, photos):
    from blurnet.config import FitConfig
    from blurnet.metrics import parameter_metrics
    from blurnet.train import evaluate_held_out
    from data_pipeline.dataset import BlurBatchMaker, PipelineConfig

    model, _ = head_export
    maker = BlurBatchMaker(photos, PipelineConfig(image_size=32, batch_size=4, seed=3), stream="test")
    got = evaluate_held_out(model, maker, FitConfig(weights=None, batch_size=4, test_images=8, test_time_views=8))
    batches = list(maker.dataset(num_batches=2, with_params=True))
    labels = np.concatenate([y.numpy() for _, y, _ in batches])
    truths = np.concatenate([p.numpy() for _, _, p in batches])
    per_view = head_per_view_by_hand(model, np.concatenate([x.numpy() for x, _, _ in batches]))
    assert got["n_images"] == 8 and per_view.shape == (8, 8, 5)
    expected, one_view = (parameter_metrics(labels, truths, raw) for raw in (per_view.mean(axis=0), per_view[0]))
    for key, value in expected.items():
        assert got["parameters"][key] == (pytest.approx(value, rel=1e-4, abs=1e-5) if isinstance(value, float) else value)
    assert any(abs(expected[k] - one_view[k]) > 1e-4 for k in ("sigma_mae", "length_mae", "radius_mae", "angle_mae_deg")
               if expected[k] is not None)  # one view would have given other figures


@pytest.mark.slow
def test_probabilities_and_parameters_come_from_one_pass(head_export):
    from blurnet.classify import classify_levels, pyramid
    from blurnet.export import ExportedModel
    from conftest import textured_image

    model, target = head_export
    loaded = ExportedModel(target)
    tiles = np.stack([textured_image(i, 32, 32) for i in range(5)]).astype("float32")
    per_view = head_per_view_by_hand(model, tiles)
    for views in (1, 4, 8):
        probs, raw = loaded.answer_tiles(tiles, views, batch=2)
        assert probs.shape == (5, 4) and raw.shape == (5, 5)
        np.testing.assert_allclose(probs, loaded.predict_tiles(tiles, views), atol=1e-6)
        np.testing.assert_allclose(raw, per_view[:views].mean(axis=0), atol=1e-4)
        np.testing.assert_allclose(loaded.estimate_tiles(tiles, views), raw, atol=1e-6)
    assert np.abs(per_view[:8].mean(axis=0) - per_view[0]).max() > 1e-3  # the views do change the answer
    empty_probs, empty_raw = loaded.answer_tiles(tiles[:0], 1)
    assert empty_probs.shape == (0, 4) and empty_raw.shape == (0, 5)

    passes = []
    one_pass = loaded._one_pass
    loaded._one_pass = lambda t: passes.append(len(t)) or one_pass(t)
    levels = pyramid(textured_image(7, 96, 96), 32)
    fields = classify_levels(loaded, levels, views=1)
    assert "blur" in fields
    assert len(passes) == len(levels)  # one pass a level (<= 16 tiles each): the blur costs no extra pass
    # The full computation: every selected tile of every level in the export's 8 views, and nothing more.
    from blurnet.classify import select_tiles

    passes.clear()
    full = classify_levels(loaded, levels)
    assert "blur" in full
    assert sum(passes) == sum(8 * len(select_tiles(level.textures, None)[0]) for level in levels)


@pytest.mark.slow
def test_an_empty_batch_gets_empty_answers_from_every_endpoint(head_export):
    import tensorflow as tf

    _, target = head_export
    served = tf.saved_model.load(str(target))  # the spectral branch: a convolution of an empty batch broke it
    for shape in ((0, 32, 32, 3), (0, 64, 96, 3)):  # one tile; several tiles
        empty = tf.zeros(shape, tf.float32)
        assert tuple(served.serve(empty).shape) == (0, 4)
        answer = served.estimate(empty)
        assert {k: tuple(v.shape) for k, v in answer.items()} == {"probabilities": (0, 4), "sigma": (0,), "length": (0,),
                                                                 "angle": (0,), "radius": (0,)}
