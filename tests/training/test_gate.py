"""The export gate and the names a run exports under: pure functions, no training."""

from __future__ import annotations

import warnings

import numpy as np
import pytest

from training.evaluate import baseline_forecasts, method_label
from training.export import ExportRefused, check_beats_strongest_naive, model_name
from training.metrics import naive_seasons, point_metrics


@pytest.mark.parametrize(
    ("freq", "seasons"),
    [("h", [24, 168]), ("30min", [48, 336]), ("D", [7]), ("7D", [52]), ("MS", [12]), ("B", [5]), ("YS", [])],
)
def test_seasonal_naive_is_tried_at_each_season_the_frequency_suggests(freq: str, seasons: list[int]) -> None:
    assert naive_seasons(freq) == seasons


def test_a_season_longer_than_the_history_before_the_first_origin_is_left_out() -> None:
    y = np.arange(400.0)
    assert set(baseline_forecasts(y, np.array([100, 300]), 24, "h")) == {"naive", "seasonal_naive"}
    weekly = baseline_forecasts(y, np.array([200, 300]) + 50, 24, "h")["seasonal_naive_168"]
    np.testing.assert_array_equal(weekly[:, 0], y[[250 + 1 - 168, 350 + 1 - 168]])


def _report(**mase: float) -> dict[str, object]:
    metrics = {name: {"mase": value} for name, value in mase.items()}
    strongest = min((n for n in mase if "naive" in n), key=mase.__getitem__)
    return {"metrics": metrics, "strongest_naive": strongest, "season": 24, "freq": "h"}


def test_the_gate_compares_with_the_strongest_naive_and_names_it() -> None:
    passes = _report(windowed=0.7, streaming=0.7, naive=1.3, seasonal_naive=1.0, seasonal_naive_168=0.9)
    check_beats_strongest_naive(passes)
    weekly_wins = _report(windowed=0.95, streaming=0.8, naive=1.3, seasonal_naive=1.0, seasonal_naive_168=0.9)
    with pytest.raises(ExportRefused, match=r"windowed test MASE 0.950 is not better than the strongest naive's, "):
        check_beats_strongest_naive(weekly_wins)
    assert method_label("seasonal_naive_168", weekly_wins) == "seasonal naive, 168 steps (7 days)"
    assert method_label("seasonal_naive", weekly_wins) == "seasonal naive, 24 steps (1 day)"


def test_the_naive_itself_does_not_pass_for_better_by_float32_rounding() -> None:
    """An untrained model of changes from the last value forecasts the naive, through float32 and back."""
    rounded = float(np.float32(1.2345678)) * (1 - 1e-8)
    with pytest.raises(ExportRefused, match="is not better than the strongest naive's, naive"):
        check_beats_strongest_naive(_report(windowed=rounded, streaming=rounded, naive=1.2345678))
    check_beats_strongest_naive(_report(windowed=1.2, streaming=1.2, naive=1.2345678))  # better by 3%: passes


def test_mape_is_undefined_where_an_actual_is_zero_and_the_rest_stay_defined() -> None:
    actual = np.array([[0.0, 2.0, 1.0]])
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no division-by-zero warnings either
        scores = point_metrics(actual, np.array([[0.5, 2.0, 1.0]]), np.ones(1))
    assert scores["mape"] is None
    assert scores["mae"] == pytest.approx(0.5 / 3) and scores["smape"] == pytest.approx(200 / 3)
    assert point_metrics(actual + 1, actual + 1, np.ones(1))["mape"] == 0.0


@pytest.mark.parametrize(
    ("given", "run", "name"),
    [
        (None, "lstm", "seqcast-lstm"),
        (None, "My Data_v2", "seqcast-my-data_v2"),
        (None, None, "seqcast-forecaster"),
        (None, "lightning_logs", "seqcast-forecaster"),
        ("shop-demand", "lstm", "shop-demand"),
    ],
)
def test_a_model_is_named_for_its_run_unless_named(given: str | None, run: str | None, name: str) -> None:
    assert model_name(given, run) == name


def test_a_name_bentoml_cannot_store_is_refused_by_field() -> None:
    with pytest.raises(ValueError, match="model_name 'Shop Demand': BentoML names are lowercase"):
        model_name("Shop Demand", "lstm")
