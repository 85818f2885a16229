"""A user's own data, end to end as the README walks it: hourly event counts exported without the hours that had
none, given a config by `seqcast-train init`, checked, filled, trained against the weekly naive, backtested,
listed, and forecast over HTTP with timestamps and no negative counts, by a session as by a window."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import httpx
import numpy as np
import pandas as pd
import pytest

from bench.servers import bentoml_serve
from tests.conftest import ROOT, hourly_counts_frame
from training.cli import main

pytestmark = pytest.mark.process  # every test here starts a server or a subprocess

# The config init writes, with a smaller network so that the test trains in seconds.
QUICK = ["--model.network.init_args.config.hidden_size", "32", "--trainer.max_time", "null"]


def _seqcast_train(workdir: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "BENTOML_HOME": str(workdir / "bentoml"), "PYTHONPATH": str(ROOT)}
    command = [sys.executable, "-m", "training.cli", *args]
    return subprocess.run(command, cwd=workdir, env=env, capture_output=True, text=True, timeout=400)


def _ok(done: subprocess.CompletedProcess[str]) -> subprocess.CompletedProcess[str]:
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    return done


def test_hourly_counts_with_gaps_from_check_to_a_forecast_over_http(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    frame = hourly_counts_frame()
    frame.to_csv(tmp_path / "counts.csv", index=False)
    written = _ok(_seqcast_train(tmp_path, "init", "--data.path", "counts.csv", "--name", "hourly")).stdout
    assert "seasonal_lag: 168" in written and "fill: zero" in written
    (tmp_path / "hourly.yaml").write_text(written)
    config = ["--config", "hourly.yaml", *QUICK]

    # Refusing to fill, check and fit list the gaps of every series, with the fix, and leave no run behind. In
    # this process: they stop before anything touches the model store, and a Lightning import costs seconds.
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(sys, "argv", ["seqcast-train"])
    for command in ("check", "fit"):
        with pytest.raises(SystemExit) as refused:
            main([command, *config, "--data.fill", "error"])
        message = str(refused.value.code)
        assert message.startswith("data: 3 problems in 3 of 3 series:")
        for uid in ("site0", "site1", "site2"):
            assert f"series '{uid}': " in message
        assert "missing rows), first at" in message and "set data.fill (zero or a number" in message
        assert not (tmp_path / "runs").exists()

    capsys.readouterr()
    main(["check", *config])
    checked = capsys.readouterr().out
    assert "3 series of 'y' at frequency h" in checked and "filled with data.fill=zero" in checked
    assert "seasonal naive, 168 steps (7 days)" in checked
    assert not (tmp_path / "runs").exists()

    fit = _ok(_seqcast_train(tmp_path, "fit", *config, "--trainer.max_epochs", "8"))
    # Without a terminal: a line per epoch, its val_loss where it validated, and why the run ended.
    epochs = re.findall(r"^epoch (\d)/8 (val_loss|train_loss) ", fit.stdout, flags=re.MULTILINE)
    assert [int(epoch) for epoch, _ in epochs] == list(range(8)), fit.stdout[-2000:]
    assert any(kind == "val_loss" for _, kind in epochs) and "trained to its epoch limit (8" in fit.stdout
    report = json.loads((tmp_path / "runs" / "hourly" / "version_0" / "report.json").read_text())
    metrics = report["metrics"]
    # Weekends are quiet, so a week back beats a day back: the gate compared with the week.
    assert report["strongest_naive"] == "seasonal_naive_168"
    assert metrics["seasonal_naive_168"]["mase"] < metrics["seasonal_naive"]["mase"]
    assert metrics["streaming"]["mase"] < metrics["seasonal_naive_168"]["mase"]
    assert all(scores["mape"] is None for scores in metrics.values())  # zero counts: MAPE is undefined
    assert "MAPE    n/a" in fit.stdout and "<- strongest naive" in fit.stdout
    tag = fit.stdout.split("exported ")[-1].split()[0]
    assert tag.startswith("seqcast-hourly:")

    listed = _ok(_seqcast_train(tmp_path, "models")).stdout.splitlines()
    assert listed[0].split()[:2] == ["tag", "created"]
    row = next(line for line in listed if line.startswith(tag))
    assert " counts " in row and f"{metrics['streaming']['mase']:.4f}" in row and "seasonal_naive_168" in row

    quick = ["--trainer.max_epochs", "1", "--folds", "2", "--cells", "gru", "--seeds", "1,2", "--out", "bt"]
    backtest = _seqcast_train(tmp_path, "backtest", *config, *quick)
    _ok(backtest)
    result = json.loads((tmp_path / "bt" / "backtest.json").read_text())
    assert set(result["mase"]) >= {"seqcast GRU", "seasonal naive, 168 steps (7 days)"}
    assert all(len(scores) == 2 for scores in result["mase"].values())
    # Each fold's score is the mean over the seeds, which trained apart: two trained runs, two scores. A run
    # that kept the smoothing alone (no epoch beat it) scores what the smoothing does, whatever its seed.
    folds = zip(result["mase"]["seqcast GRU"], result["mase_by_seed"]["seqcast GRU"], strict=True)
    for number, (fold, by_seed) in enumerate(folds, start=1):
        assert len(by_seed) == 2 and fold == pytest.approx(sum(by_seed) / 2)
        untrained = [report["untrained"] for report in result["reports"] if report["fold"] == number]
        if untrained == [True, True]:
            assert by_seed[0] == by_seed[1]
        elif untrained == [False, False]:
            assert by_seed[0] != by_seed[1]
    assert all(seconds > 0 for fold in result["train_seconds"]["seqcast GRU"] for seconds in fold)
    assert "seqcast GRU: 2 seeds, MASE " in backtest.stdout
    later, earlier = (pd.Timestamp(start) for start, _ in result["windows"])
    assert later - earlier == pd.Timedelta(hours=336)  # the second window is the two weeks before the first
    assert (tmp_path / "bt" / "backtest.png").read_bytes()[:4] == b"\x89PNG"
    assert "MASE" in backtest.stdout and "best: " in backtest.stdout
    assert len(list((tmp_path / "runs" / "hourly").glob("version_*"))) == 1  # the backtest made no run of fit's

    _forecast_over_http(tmp_path, frame, tag)


def _forecast_over_http(workdir: Path, frame: pd.DataFrame, tag: str) -> None:
    site = frame[frame.unique_id == "site1"].set_index("ds").y
    grid = pd.date_range(site.index[0], site.index[-1], freq="h")
    weeks = site.reindex(grid, fill_value=0).iloc[-336:]  # the config's input_size: two seasons
    with bentoml_serve(workdir / "bentoml", workdir / "serve.log") as running, httpx.Client(timeout=30) as client:
        body = {"history": weeks.tolist(), "start": weeks.index[0].isoformat(), "series": "site1"}
        answer = client.post(running.url + "/forecast", json=body).json()
        assert answer["model"] == tag  # the store's only model name, served without naming it
        expected = pd.date_range(weeks.index[-1] + pd.Timedelta(hours=1), periods=24, freq="h")
        assert answer["timestamps"] == expected.strftime("%Y-%m-%dT%H:%M:%S").tolist()
        assert len(answer["forecast"]) == 24 and min(answer["forecast"]) >= 0
        assert answer["warnings"] is None
        # The same hours counted in thousandths: applied and flagged, not refused.
        scaled = {**body, "history": [1000.0 * v for v in weeks]}
        flagged = client.post(running.url + "/forecast", json=scaled)
        assert flagged.status_code == 200 and flagged.json()["warnings"][0].startswith("history: ")
        # A session carries the last season with its recurrent state: opened on a part, observing the rest, it
        # forecasts what a window of the whole does.
        opened = client.post(running.url + "/open", json={**body, "history": weeks.tolist()[:200]}).json()
        observed = client.post(
            running.url + "/observe",
            json={"session_id": opened["session_id"], "seq": 200, "values": weeks.tolist()[200:]},
        ).json()
        assert observed["timestamps"] == answer["timestamps"]
        np.testing.assert_allclose(observed["forecast"], answer["forecast"], rtol=1e-4, atol=1e-4)
        more = client.post(
            running.url + "/observe", json={"session_id": opened["session_id"], "seq": 336, "values": [3.0]}
        ).json()
        assert more["timestamps"][0] == answer["timestamps"][1]  # one hour on


def _monthly_panel() -> pd.DataFrame:
    """Three shops' monthly sales, 90, 150 and 400 months: levels that wander, a yearly pattern, and months
    noisy enough that the last one is a poor guide to the level."""
    rng = np.random.default_rng(7)
    frames = []
    for index, months in enumerate((90, 150, 400)):
        ds = pd.date_range("1990-01-01", periods=months, freq="MS")
        level = 100.0 * (index + 1) + np.cumsum(rng.normal(0, 0.5, months))
        y = level * (1 + 0.1 * np.sin(2 * np.pi * ds.month.to_numpy() / 12)) + rng.normal(0, 4, months)
        frames.append(pd.DataFrame({"unique_id": f"shop{index}", "ds": ds, "y": y.round(2)}))
    return pd.concat(frames[::-1])  # the longest first, as an export sorted by size would list them


def test_a_short_uneven_monthly_panel_from_init_to_a_forecast_over_http(tmp_path: Path) -> None:
    """A panel whose shortest series holds seven and a half years: it used to be refused. init keeps the year,
    holds one out each for validation and test, starts forecasts from a smoothed level, and works in logs: the
    shops' yearly swing grows with their sales."""
    frame = _monthly_panel()
    frame.to_csv(tmp_path / "shops.csv", index=False)
    written = _ok(_seqcast_train(tmp_path, "init", "--data.path", "shops.csv", "--name", "shops")).stdout
    expected = ("seasonal_lag: 12", "smoothed_level: true", "log_target: true", "val_size: 12", "test_size: 12")
    for line in (*expected, "warmup: 48"):
        assert line in written
    (tmp_path / "shops.yaml").write_text(written)
    # Seven and a half years hold one test window: a second is refused before anything trains.
    assert "backtest --config shops.yaml --folds 1" in written
    folds = _seqcast_train(tmp_path, "backtest", "--config", "shops.yaml", "--folds", "2", "--cells", "gru")
    assert folds.returncode != 0 and "shortest series has 90 points" in folds.stderr, folds.stderr[-2000:]
    assert "use --folds 1" in folds.stderr and "training gru" not in folds.stdout
    fit = _ok(_seqcast_train(tmp_path, "fit", "--config", "shops.yaml", *QUICK, "--trainer.max_epochs", "50"))
    rates = fit.stdout.split("smoothing rates [")[1].split("]")[0].split(", ")
    assert float(rates[-1]) < 1.0  # the noisy months' level is smoothed
    report = json.loads((tmp_path / "runs" / "shops" / "version_0" / "report.json").read_text())
    metrics = report["metrics"]
    assert metrics["streaming"]["mase"] < metrics[report["strongest_naive"]]["mase"]
    tag = fit.stdout.split("exported ")[-1].split()[0]

    shortest = frame[frame.unique_id == "shop0"]
    with bentoml_serve(tmp_path / "bentoml", tmp_path / "serve.log") as running, httpx.Client(timeout=30) as client:
        history = shortest.y.tolist()
        body = {"history": history, "start": shortest.ds.iloc[0].isoformat(), "series": "shop0"}
        answer = client.post(running.url + "/forecast", json=body).json()
        assert answer["model"] == tag
        assert len(answer["forecast"]) == 12 and min(answer["forecast"]) > 0
        opened = client.post(running.url + "/open", json={**body, "history": history[:50]}).json()
        observed = client.post(
            running.url + "/observe", json={"session_id": opened["session_id"], "seq": 50, "values": history[50:]}
        ).json()
        # The session carries the smoothed level with the profiles: the same forecast as the whole at once.
        np.testing.assert_allclose(observed["forecast"], answer["forecast"], rtol=1e-4, atol=1e-3)
        # Months have no fixed length; answers name the months ahead, the session's as the whole's.
        ahead = pd.date_range(shortest.ds.iloc[-1], periods=13, freq="MS")[1:].strftime("%Y-%m-%dT%H:%M:%S")
        assert answer["timestamps"] == observed["timestamps"] == ahead.tolist()
        mid_month = client.post(running.url + "/forecast", json={**body, "start": "1990-01-15T00:00:00"})
        assert mid_month.status_code == 400 and mid_month.json()["field"] == "start", mid_month.text
        # In the shop's units, not in logs: near the level of its last year.
        assert 0.7 < np.mean(answer["forecast"]) / np.mean(history[-12:]) < 1.3
        # log(1 + y) has no value below -1: a client can read that a negative sale is refused, and it is, by its
        # field and index, and the session is kept.
        assert client.post(running.url + "/info").json()["log_target"] is True
        session = opened["session_id"]
        refused = client.post(running.url + "/observe", json={"session_id": session, "seq": 90, "values": [5, -2]})
        assert refused.status_code == 400 and refused.json()["field"] == "values", refused.text
        assert "[1] is -2" in refused.json()["error"]
        again = client.post(running.url + "/observe", json={"session_id": session, "seq": 90, "values": [history[-1]]})
        assert again.status_code == 200 and again.json()["seq"] == 91, again.text


def test_yearly_random_walks_keep_the_last_value_whatever_validation_says(tmp_path: Path) -> None:
    """Yearly series with nothing to learn: a random walk's best forecast is its last value. Validation holds two
    horizons of each series, where the best of a run's epochs can lead the last value by luck; it is kept only
    where its lead is more than chance (training/significance.py), so every run scores the naive's MASE."""
    rng = np.random.default_rng(11)
    frames = []
    for index, years in enumerate((36, 50, 70, 90)):
        ds = pd.date_range("1900-01-01", periods=years, freq="YS")
        y = 200 * (index + 1) * np.exp(np.cumsum(rng.normal(0, 0.08, years)))
        frames.append(pd.DataFrame({"unique_id": f"site{index}", "ds": ds, "y": y.round(1)}))
    pd.concat(frames).to_csv(tmp_path / "yearly.csv", index=False)
    init = ("init", "--data.path", "yearly.csv", "--name", "yearly", "--data.horizon", "4")
    written = _ok(_seqcast_train(tmp_path, *init)).stdout
    assert "change_from_last: true" in written and "val_size: 8" in written
    (tmp_path / "yearly.yaml").write_text(written)
    runs = ("--folds", "2", "--cells", "gru", "--seeds", "1,2", "--out", "bt")
    backtest = _ok(_seqcast_train(tmp_path, "backtest", "--config", "yearly.yaml", *runs, *QUICK))
    result = json.loads((tmp_path / "bt" / "backtest.json").read_text())
    for report in result["reports"]:
        assert report["untrained"], report
        metrics = report["metrics"]
        assert metrics["streaming"]["mase"] == pytest.approx(metrics["naive"]["mase"], rel=1e-4)
    assert "4 of 4 runs kept their anchor alone" in backtest.stdout
