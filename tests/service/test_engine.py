"""The service's core called in-process: exactness over many random splits, for every cell."""

from __future__ import annotations

from datetime import datetime

import numpy as np
import pandas as pd
import pytest

from models import FeatureSpec, Scaling
from service.engine import Checked, Prepared
from service.records import NO_TIME
from service.schemas import Reason, RejectedRequest, Rejection
from tests.service.bodies import ENGINE_SPEC, SERIES_SCALING, make_engine


@pytest.mark.parametrize(
    ("cell", "lagged", "season", "smoothed", "level_free", "smoothed_level"),
    [(cell, False, 0, (), False, False) for cell in ("lstm", "gru", "rnn")]
    + [(cell, True, 0, (), False, False) for cell in ("lstm", "gru")]
    # A season shorter than a state row, and one of three rows (hidden 16): the last season travels in the state;
    # then smoothed profiles of a day and a week of 6 steps (and the count of steps read) with it, the same read
    # by a level-free network, and from a smoothed level.
    + [("lstm", False, 12, (), False, False), ("gru", True, 40, (), False, False)]
    + [("gru", True, 42, (6, 42), False, False), ("gru", True, 42, (6, 42), True, False)]
    + [("gru", True, 42, (6, 42), True, True)],
)
def test_open_then_observe_equals_one_pass_over_many_random_splits(
    cell: str, lagged: bool, season: int, smoothed: tuple[int, ...], level_free: bool, smoothed_level: bool
) -> None:
    engine = make_engine(
        cell,
        lagged_outputs=lagged,
        seasonal_lag=season,
        smoothed_seasons=smoothed,
        level_free=level_free,
        smoothed_level=smoothed_level,
    )
    rng = np.random.default_rng(1)
    start = pd.Timestamp("2024-05-03 21:00").to_pydatetime()
    for _ in range(60):
        n = int(rng.integers(2, 300))
        values = rng.normal(10, 2, n).tolist()
        covariates = rng.normal(size=(n, 2)).tolist()
        future = rng.normal(15, 5, (6, 1)).tolist()
        cuts = sorted(set(rng.integers(1, n, size=int(rng.integers(1, 4))).tolist()))
        prepared = engine.prepare(engine.check_history(values[: cuts[0]], covariates[: cuts[0]], start, future))
        result = engine.run([prepared], [None])
        next_time = prepared.next_time
        for lo, hi in zip(cuts, [*cuts[1:], n], strict=True):
            step = engine.prepare(engine.check_observe(values[lo:hi], covariates[lo:hi], next_time, future))
            result = engine.run([step], [result.states[0]])
            next_time = step.next_time
        whole = engine.run([engine.prepare(engine.check_history(values, covariates, start, future))], [None])
        np.testing.assert_allclose(result.forecasts, whole.forecasts, rtol=1e-4, atol=1e-5)
        assert next_time == pd.Timestamp(start).value + n * pd.Timedelta("30min").value


@pytest.mark.parametrize(
    ("lagged", "season", "smoothed"), [(False, 0, ()), (True, 0, ()), (False, 12, ()), (True, 12, (6, 12))]
)
def test_a_ragged_batch_answers_each_request_as_if_alone(lagged: bool, season: int, smoothed: tuple[int, ...]) -> None:
    engine = make_engine("lstm", lagged_outputs=lagged, seasonal_lag=season, smoothed_seasons=smoothed)
    rng = np.random.default_rng(2)
    start = pd.Timestamp("2024-05-03").to_pydatetime()
    requests = [
        engine.prepare(
            engine.check_history(rng.normal(size=n).tolist(), rng.normal(size=(n, 2)).tolist(), start, [[1.0]] * 6)
        )
        for n in (1, 7, 130, 40)
    ]
    together = engine.run(requests, [None] * 4)
    for i, request in enumerate(requests):
        alone = engine.run([request], [None])
        np.testing.assert_allclose(together.forecasts[i], alone.forecasts[0], rtol=1e-5, atol=1e-6)


def test_requests_encoded_together_equal_each_encoded_alone_and_are_refused_alone() -> None:
    engine = make_engine()
    rng = np.random.default_rng(3)
    start = pd.Timestamp("2024-05-03 21:30").to_pydatetime()

    def history(n: int, far: tuple[str, int] | None = None) -> Checked:
        rows = rng.normal(size=(n, 2))
        future = rng.normal(15, 5, (6, 1))
        if far is not None:
            (rows if far[0] == "covariates" else future)[far[1], 0] = 1e300
        return engine.check_history(rng.normal(10, 2, n).tolist(), rows.tolist(), start, future.tolist())

    later = engine.prepare(engine.check_history([10.0] * 5, [[3.0, 15.0]] * 5, start, [[15.0]] * 6)).next_time
    observe = engine.check_observe([11.0], [[3.0, 14.0]], later, [[15.0]] * 6)
    refused = Rejection(Reason.BAD_INPUT, "history: refused before encoding", "history")
    requests = [history(1), refused, history(7), history(130, ("covariates", 3)), observe, history(4, ("future", 5))]
    together = engine.encode(requests)
    assert together[1] is refused
    assert together[3] == Rejection(
        Reason.BAD_INPUT, "covariates: value 1e+300 at [3, 0] is far outside the training data's range", "covariates"
    )
    assert isinstance(together[5], Rejection) and together[5].error.startswith("future_covariates: value 1e+300 at [5")
    for k in (0, 2, 4):
        joined, [alone] = together[k], engine.encode([requests[k]])
        assert isinstance(joined, Prepared) and isinstance(alone, Prepared)
        np.testing.assert_array_equal(joined.inputs, alone.inputs)
        np.testing.assert_array_equal(joined.future, alone.future)
        assert joined.next_time == alone.next_time
    assert together[4].next_time == later + pd.Timedelta("30min").value  # type: ignore[union-attr]


def test_a_model_scaled_per_series_reads_each_request_by_its_series_statistics() -> None:
    engine = make_engine(per_series=True)
    rng = np.random.default_rng(4)
    start = pd.Timestamp("2024-05-03 21:30").to_pydatetime()
    z, z_covariates, z_future = rng.normal(size=20), rng.normal(size=(20, 2)), rng.normal(size=(6, 1))

    def history(series: str) -> Checked:
        """The same standardised history, in the units of ``series``."""
        mean, std = (np.asarray(v) for v in (SERIES_SCALING[series].mean, SERIES_SCALING[series].std))
        covariates, future = z_covariates * std[1:] + mean[1:], z_future * std[2] + mean[2]
        values = z * std[0] + mean[0]
        return engine.check_history(values.tolist(), covariates.tolist(), start, future.tolist(), series)

    requests = [history("small"), history("large"), history("small")]
    prepared = [p for p in engine.encode(requests) if isinstance(p, Prepared)]
    np.testing.assert_allclose(prepared[1].inputs, prepared[0].inputs, atol=1e-5)
    together = engine.run(prepared, [None] * 3)
    standardised = [
        (together.forecasts[k] - SERIES_SCALING[s].mean[0]) / SERIES_SCALING[s].std[0]
        for k, s in enumerate(("small", "large"))
    ]
    np.testing.assert_allclose(standardised[1], standardised[0], rtol=1e-4, atol=1e-4)
    assert together.forecasts[1].mean() > 10 * together.forecasts[0].mean()
    for k, request in enumerate(requests):
        alone = engine.run([engine.prepare(engine.check_history(*_raw(request), series=request.series))], [None])
        np.testing.assert_allclose(together.forecasts[k], alone.forecasts[0], rtol=1e-5, atol=1e-4)


def _raw(request: Checked) -> tuple[list[float], list[list[float]], datetime, list[list[float]]]:
    start = pd.Timestamp(request.first_time).to_pydatetime()
    return request.target.tolist(), request.past.tolist(), start, request.future.tolist()


@pytest.mark.parametrize(
    ("per_series", "series", "message"),
    [
        (True, "medium", "series: unknown series 'medium'; the model knows 2 series (e.g. 'small', 'large')"),
        (False, "small", "series: the model scales every series alike; leave the field out"),
    ],
)
def test_an_unknown_or_needless_series_is_refused_naming_the_field(
    per_series: bool, series: str | None, message: str
) -> None:
    engine = make_engine(per_series=per_series)
    start = pd.Timestamp("2024-05-03").to_pydatetime()
    with pytest.raises(RejectedRequest) as refused:
        engine.check_history([10.0], [[3.0, 15.0]], start, [[15.0]] * 6, series)
    assert refused.value.rejection.reason is Reason.BAD_INPUT and refused.value.rejection.field == "series"
    assert refused.value.rejection.error.startswith(message)


def test_quantile_answer_names_each_quantile_and_uses_the_median_as_the_point() -> None:
    engine = make_engine("gru")
    forecast = np.arange(18, dtype=np.float32).reshape(6, 3)
    answer = engine.answer(forecast, NO_TIME)
    assert answer["forecast"] == forecast[:, 1].tolist()
    assert answer["quantiles"] == {
        "0.1": forecast[:, 0].tolist(),
        "0.5": forecast[:, 1].tolist(),
        "0.9": forecast[:, 2].tolist(),
    }


def test_timestamps_past_what_pandas_can_hold_are_refused_naming_the_field() -> None:
    engine = make_engine()
    rows, future = [[0.0, 0.0]] * 3, [[1.0]] * 6
    with pytest.raises(RejectedRequest) as beyond:
        engine.prepare(engine.check_history([1.0] * 3, rows, datetime(2263, 1, 1), future))
    assert beyond.value.rejection.field == "start" and "2262" in beyond.value.rejection.error
    # A start that fits, but whose forecast steps would not: refused before any timestamp overflows.
    late = (pd.Timestamp.max - pd.Timedelta("1h")).to_pydatetime()
    with pytest.raises(RejectedRequest) as overflow:
        engine.prepare(engine.check_history([1.0] * 3, rows, late, future))
    assert overflow.value.rejection.field == "history"
    near_end = engine.prepare(engine.check_history([1.0] * 3, rows, datetime(2262, 4, 1), future))
    with pytest.raises(RejectedRequest) as session_end:
        engine.prepare(engine.check_observe([1.0] * 1000, [[0.0, 0.0]] * 1000, near_end.next_time, future))
    assert session_end.value.rejection.field == "values"


def test_a_series_the_model_did_not_train_on_is_scaled_by_its_own_history() -> None:
    """Without ``series``, a model scaled per series standardises a history by its own statistics, so the same
    history in other units (a * x + b, covariates too) gets the same forecast in those units."""
    engine = make_engine(per_series=True)
    rng = np.random.default_rng(5)
    start = pd.Timestamp("2024-05-03 21:30").to_pydatetime()
    values, covariates, future = rng.normal(5, 2, 30), rng.normal(3, 1, (30, 2)), rng.normal(3, 1, (6, 1))
    a, b = np.array([250.0, 3.0, 2.0]), np.array([-40.0, 10.0, 7.0])
    first = engine.check_history(values.tolist(), covariates.tolist(), start, future.tolist())
    other = engine.check_history(
        (a[0] * values + b[0]).tolist(), (a[1:] * covariates + b[1:]).tolist(), start, (a[2] * future + b[2]).tolist()
    )
    assert first.scaling == Scaling.fit(np.column_stack([values, covariates]))
    together = engine.run([engine.prepare(first), engine.prepare(other)], [None, None])
    np.testing.assert_allclose(together.forecasts[1], a[0] * together.forecasts[0] + b[0], rtol=1e-4)
    # Its statistics are its own: not any training series' nor the pooled ones
    assert first.scaling not in (engine.checkpoint.scaling, *SERIES_SCALING.values())


def test_a_series_the_model_did_not_train_on_needs_two_horizons_of_history() -> None:
    engine = make_engine(per_series=True)
    start = pd.Timestamp("2024-05-03").to_pydatetime()
    with pytest.raises(RejectedRequest) as refused:
        engine.check_history([10.0] * 11, [[3.0, 15.0]] * 11, start, [[15.0]] * 6)
    assert refused.value.rejection.field == "history"
    assert (
        "has 11 values; a series the model did not train on is scaled by its own history, which needs at "
        "least 12 values" in refused.value.rejection.error
    )
    assert engine.check_history([10.0] * 12, [[3.0, 15.0]] * 12, start, [[15.0]] * 6).series is None


def _history(n: int, rng: np.random.Generator, level: float = 10.0) -> tuple[list[float], list[list[float]]]:
    return (level + rng.normal(0, 2, n)).tolist(), rng.normal([3.0, 15.0], [1.0, 5.0], (n, 2)).tolist()


ISO = "%Y-%m-%dT%H:%M:%S"


def test_an_answer_carries_the_timestamp_of_each_forecast_step(monkeypatch: pytest.MonkeyPatch) -> None:
    engine = make_engine()
    values, covariates = _history(5, np.random.default_rng(0))
    start = datetime(2024, 5, 3, 22, 30)
    prepared = engine.prepare(engine.check_history(values, covariates, start, [[15.0]] * 6))
    stamps = engine.answer(np.zeros((6, 3), dtype=np.float32), prepared.next_time)["timestamps"]
    # Five values from 22:30 end at 00:30; the six steps ahead start at 01:00 of the next day, 30 minutes apart.
    expected = pd.date_range("2024-05-04 01:00", periods=6, freq="30min").strftime(ISO).tolist()
    assert stamps == expected
    # Formatted times are kept; past the bound a fresh set starts, and the answers stay the same.
    later = prepared.next_time + 3 * engine.step_ns
    assert engine.timestamps(later) == pd.date_range("2024-05-04 02:30", periods=6, freq="30min").strftime(ISO).tolist()
    monkeypatch.setattr("service.engine.FORMATTED_TIMES", 8)
    assert len(engine._formatted) == 9
    assert engine.timestamps(prepared.next_time) == expected  # all known: nothing added
    assert engine.timestamps(prepared.next_time + 9 * engine.step_ns)[0] == "2024-05-04T05:30:00"
    assert len(engine._formatted) == 6


def test_a_monthly_model_answers_month_starts_and_refuses_a_start_between_them() -> None:
    """Months have no fixed length: a session counts them, and each answer names the months ahead."""
    engine = make_engine(spec=FeatureSpec("y", ("load",), ("temperature",), freq="MS"))
    values, covariates = _history(5, np.random.default_rng(0))
    prepared = engine.prepare(engine.check_history(values, covariates, datetime(2023, 10, 1), [[15.0]] * 6))
    # Five months from October end in February; the six ahead start in March, February's 28 days and all.
    expected = pd.date_range("2024-03-01", periods=6, freq="MS").strftime(ISO).tolist()
    assert engine.answer(np.zeros((6, 3), dtype=np.float32), prepared.next_time)["timestamps"] == expected
    observed = engine.prepare(engine.check_observe(values[:2], covariates[:2], prepared.next_time, [[15.0]] * 6))
    assert engine.timestamps(observed.next_time)[:2] == ["2024-05-01T00:00:00", "2024-06-01T00:00:00"]
    for start in (datetime(2023, 10, 15), datetime(2023, 10, 1, 12)):
        with pytest.raises(RejectedRequest) as between:
            engine.check_history(values, covariates, start, [[15.0]] * 6)
        assert between.value.rejection.field == "start"
        assert (
            "is not a step of the model's frequency MS: the step before it is 2023-10-01"
            in between.value.rejection.error
        )
    # The calendar ends in 2262 for months too: refused before a timestamp overflows.
    late = engine.prepare(engine.check_history(values, covariates, datetime(2261, 1, 1), [[15.0]] * 6))
    with pytest.raises(RejectedRequest) as beyond:
        engine.prepare(engine.check_observe([1.0] * 12, [[0.0, 0.0]] * 12, late.next_time, [[15.0]] * 6))
    assert beyond.value.rejection.field == "values"


def test_values_far_outside_training_are_applied_and_flagged_not_refused() -> None:
    engine = make_engine()
    rng = np.random.default_rng(1)
    values, covariates = _history(8, rng)
    start = datetime(2024, 5, 3)
    assert engine.prepare(engine.check_history(values, covariates, start, [[15.0]] * 6)).warnings == ()
    # The same history in units a thousand times smaller (MW for GW): ~5,000 training deviations out.
    in_other_units = [1000 * v for v in values]
    prepared = engine.prepare(engine.check_history(in_other_units, covariates, start, [[15.0]] * 6))
    assert prepared.warnings == (
        f"history: 8 values lie over 10 training standard deviations from the training mean, first "
        f"{in_other_units[0]:g} at [0, 0]: are they in the units the model was trained on?",
    )
    result = engine.run([prepared], [None])
    assert result.finite[0]  # applied: its forecast is made and would be stored
    assert engine.answer(result.forecasts[0], prepared.next_time, prepared.warnings)["warnings"] == list(
        prepared.warnings
    )


def test_a_nonnegative_target_clips_the_answer_and_never_the_state() -> None:
    # Scaled around zero, a random network's forecasts fall on both sides of it.
    scaling = Scaling((0.0, 3.0, 15.0), (2.0, 1.0, 5.0))
    plain = make_engine(scaling=scaling)
    clipped = make_engine(scaling=scaling, spec=FeatureSpec(**{**ENGINE_SPEC.to_dict(), "nonnegative": True}))
    values, covariates = _history(30, np.random.default_rng(2), level=0.0)
    start = datetime(2024, 5, 3)
    runs = []
    for engine in (plain, clipped):
        prepared = engine.prepare(engine.check_history(values, covariates, start, [[15.0]] * 6))
        runs.append(engine.run([prepared], [None]))
    assert (runs[0].forecasts < 0).any()
    np.testing.assert_array_equal(runs[1].forecasts, np.maximum(runs[0].forecasts, 0))
    np.testing.assert_array_equal(runs[1].states, runs[0].states)


def test_a_history_shorter_than_the_season_is_forecast_and_flagged() -> None:
    engine = make_engine(seasonal_lag=12)
    start = pd.Timestamp("2024-05-03").to_pydatetime()

    def warnings(n: int) -> tuple[str, ...]:
        return engine.prepare(engine.check_history([10.0] * n, [[0.0, 0.0]] * n, start, [[15.0]] * 6)).warnings

    assert warnings(12) == (
        "history: 12 values, fewer than the model's season and one step (13): the forecast reads the mean for the "
        "values before them; send more history for a seasonal forecast",
    )
    assert warnings(13) == ()
    assert (
        make_engine().prepare(make_engine().check_history([10.0] * 3, [[0.0, 0.0]] * 3, start, [[1.0]] * 6)).warnings
        == ()
    )
