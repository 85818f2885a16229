"""``seqcast-train fit`` end to end, as a user runs it: real config, real subprocess, real model store."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
import torch
import yaml

from models import load_checkpoint
from tests.conftest import run_training as train
from tests.conftest import synthetic_frame
from training.evaluate import method_label

pytestmark = pytest.mark.process  # every test here starts a server or a subprocess


def test_fit_evaluates_the_best_checkpoint_and_exports_it(tmp_path: Path) -> None:
    done = train(tmp_path, "--trainer.max_epochs", "3", "--force_export", "true")
    run = tmp_path / "runs" / "gru" / "version_0"
    report = json.loads((run / "report.json").read_text())
    # Half-hourly data: seasonal naive a day back (the MASE's season) and a week back.
    assert set(report["metrics"]) == {"windowed", "streaming", "naive", "seasonal_naive", "seasonal_naive_336"}
    naive = {name: report["metrics"][name]["mase"] for name in ("naive", "seasonal_naive", "seasonal_naive_336")}
    assert report["strongest_naive"] == min(naive, key=naive.__getitem__)
    assert report["origins"] > 0 and report["horizon"] == 12
    for name in ("forecast.png", "hidden_state.png"):
        assert (run / name).read_bytes()[:4] == b"\x89PNG"
    assert (run / "config.yaml").exists()  # LightningCLI saved what reproduces the run
    # The run was learnt from the noisy synthetic data: it must beat always-the-last-value.
    assert report["metrics"]["streaming"]["mae"] < report["metrics"]["naive"]["mae"]

    tag = done.stdout.split("exported ")[-1].split()[0]
    name, version = tag.split(":")
    stored = load_checkpoint(tmp_path / "bentoml" / "models" / name / version / "checkpoint.pt")
    assert stored.config.cell == "gru" and stored.features.future_covariates == ("temperature",)
    best = sorted((tmp_path / "checkpoints").glob("best-*.ckpt"))
    assert len(best) == 1
    lightning_state = torch.load(best[0], map_location="cpu", weights_only=True)["state_dict"]
    torch.testing.assert_close(stored.state_dict["rnn.weight_hh_l0"], lightning_state["network.rnn.weight_hh_l0"])


def test_a_model_worse_than_seasonal_naive_is_not_exported_unless_forced(tmp_path: Path) -> None:
    refused = train(tmp_path, "--trainer.max_epochs", "1", check=False)
    assert refused.returncode != 0
    report = json.loads((tmp_path / "runs" / "gru" / "version_0" / "report.json").read_text())
    strongest = report["metrics"][report["strongest_naive"]]["mase"]
    assert f"is not better than the strongest naive's, {method_label(report['strongest_naive'], report)}" in (
        refused.stderr
    )
    assert f"not exported: windowed test MASE {report['metrics']['windowed']['mase']:.3f}" in refused.stderr
    assert report["metrics"]["windowed"]["mase"] >= strongest
    assert not list((tmp_path / "bentoml").glob("models/*/*/checkpoint.pt"))
    forced = train(tmp_path, "--trainer.max_epochs", "1", "--force_export", "true")
    assert "exported seqcast-gru:" in forced.stdout  # named after the config's run
    assert len(list((tmp_path / "bentoml").glob("models/*/*/checkpoint.pt"))) == 1


def test_a_smoothed_model_no_epoch_improves_is_kept_as_the_smoothing_alone(tmp_path: Path) -> None:
    """A learning rate that wrecks every epoch: what is evaluated and exported is the untrained forecaster, whose
    forecasts are the smoothed seasons' alone."""
    smoothed = ("--model.network.init_args.config.seasonal_lag", "48")
    smoothed += ("--model.network.init_args.config.smoothed_seasons", "[48]")
    smoothed += ("--data.input_size", "96", "--data.warmup", "96", "--data.chunk_length", "240")
    done = train(tmp_path, *smoothed, "--model.lr", "0.5", "--trainer.max_epochs", "2", "--force_export", "true")
    start = float(done.stdout.split("the smoothing alone: val_loss ")[1].split()[0])
    best = sorted((tmp_path / "checkpoints").glob("best-*.ckpt"))
    assert len(best) == 1 and float(best[0].stem.split("val_loss=")[1]) > start
    assert f"evaluated the smoothing alone (val_loss {start:.4f}" in done.stdout
    tag = done.stdout.split("exported ")[-1].split()[0]
    name, version = tag.split(":")
    folder = tmp_path / "bentoml" / "models" / name / version
    stored = load_checkpoint(folder / "checkpoint.pt")
    assert stored.metadata["global_step"] == 0
    assert yaml.safe_load((folder / "model.yaml").read_text())["metadata"]["format_version"] == 3  # seasonal
    rate = float(done.stdout.split("smoothing rates [")[1].split("]")[0])
    assert stored.state_dict["season_rates"].tolist() == pytest.approx([rate])
    last = [value for key, value in stored.state_dict.items() if key.startswith("head.")][-2:]
    assert all(not value.any() for value in last)  # the head adds nothing to the smoothed forecast


def test_a_model_of_changes_no_epoch_improves_is_kept_as_the_last_value(tmp_path: Path) -> None:
    """Without a season (init's config where none fits) the head forecasts changes from the last value and starts
    at zero: a run that no epoch improves keeps the naive forecast, scored as the naive is."""
    changes = ("--model.network.init_args.config.change_from_last", "true", "--model.lr", "0.5")
    done = train(tmp_path, *changes, "--trainer.max_epochs", "2", "--force_export", "true")
    start = float(done.stdout.split("the last value alone: val_loss ")[1].split()[0])
    assert f"evaluated the last value alone (val_loss {start:.4f}" in done.stdout
    metrics = json.loads((tmp_path / "runs" / "gru" / "version_0" / "report.json").read_text())["metrics"]
    assert metrics["streaming"]["mase"] == pytest.approx(metrics["naive"]["mase"], rel=1e-4)


def test_fit_resumes_from_the_last_checkpoint(tmp_path: Path) -> None:
    train(tmp_path, "--trainer.max_epochs", "1", "--export", "false")
    last = tmp_path / "checkpoints" / "last.ckpt"
    assert torch.load(last, map_location="cpu", weights_only=True)["epoch"] == 0
    train(tmp_path, "--trainer.max_epochs", "2", "--ckpt_path", "last", "--export", "false")
    resumed = torch.load(last, map_location="cpu", weights_only=True)
    assert resumed["epoch"] == 1
    # The second run trained one more epoch, not two from scratch.
    metrics = (tmp_path / "runs" / "gru" / "version_1" / "metrics.csv").read_text().splitlines()
    assert {line.split(",")[0] for line in metrics[1:]} == {"1"}


def test_a_run_stopped_by_its_time_limit_says_so_and_goes_on_with_a_larger_one(tmp_path: Path) -> None:
    stopped = train(tmp_path, "--trainer.max_epochs", "50", "--trainer.max_time", "00:00:00:02", "--export", "false")
    assert "stopped on its time limit after" in stopped.stdout
    assert "rerun with a larger --trainer.max_time and --ckpt_path last" in stopped.stdout
    last = tmp_path / "checkpoints" / "last.ckpt"
    epochs = torch.load(last, map_location="cpu", weights_only=True)["epoch"]
    assert epochs < 49
    # The limit counts the time already trained: the same limit again would train nothing, a larger one goes on.
    more = ("--trainer.max_epochs", str(epochs + 2), "--trainer.max_time", "00:00:05:00", "--ckpt_path", "last")
    resumed = train(tmp_path, *more, "--export", "false")
    assert torch.load(last, map_location="cpu", weights_only=True)["epoch"] > epochs
    assert f"trained to its epoch limit ({epochs + 2}" in resumed.stdout


@pytest.mark.skipif(sys.platform != "linux", reason="DDP on CPU with gloo is checked on Linux")
def test_fit_runs_distributed_on_two_cpu_processes(tmp_path: Path) -> None:
    done = train(
        tmp_path,
        "--trainer.strategy",
        "ddp",
        "--trainer.devices",
        "2",
        "--trainer.accelerator",
        "cpu",
        "--trainer.max_epochs",
        "1",
        "--export",
        "false",
        config="configs/lstm.yaml",
    )
    assert "distributed_backend=gloo" in done.stdout + done.stderr
    assert "All distributed processes registered" in done.stdout + done.stderr
    assert (tmp_path / "runs" / "lstm" / "version_0" / "report.json").exists()


def test_a_mape_loss_over_series_scaled_apart_is_refused_by_name(tmp_path: Path) -> None:
    synthetic_frame(points=1500, series=2).to_csv(tmp_path / "series.csv", index=False)
    options = ("--model.point_loss", "mape", "--data.per_series_scaling", "true", "--trainer.max_epochs", "1")
    refused = train(tmp_path, *options, check=False)
    assert refused.returncode != 0
    assert "model.point_loss 'mape' needs one scaling for all series" in refused.stderr
