"""What the benchmarks serve and send: a forecaster shaped like the elecdemand model, and requests cut from the
real elecdemand series. Speed does not depend on trained weights, so the model is randomly initialised unless
a trained one is named."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

import numpy as np
import torch

from models import Checkpoint, FeatureSpec, Forecaster, ForecasterConfig, Scaling
from training.data import read_frame

ROOT = Path(__file__).resolve().parent.parent

SPEC = FeatureSpec("y", (), ("Temperature", "WorkDay"), ("time_of_day", "day_of_week", "day_of_year"), "30min")
HORIZON = 48


@dataclass(frozen=True)
class ModelSize:
    name: str
    hidden: int
    layers: int
    history: int  # history a /forecast sends

    @property
    def label(self) -> str:
        return f"{self.name} (hidden {self.hidden}, {self.layers} layers, history {self.history})"


SMALL = ModelSize("small", 64, 2, 336)
LARGE = ModelSize("large", 256, 2, 1000)


@contextmanager
def one_torch_thread() -> Iterator[None]:
    """In-process limits run on one torch thread, as the service's worker does."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)


def random_checkpoint(size: ModelSize = SMALL, cell: str = "lstm") -> Checkpoint:
    torch.manual_seed(0)
    config = ForecasterConfig(
        input_dim=SPEC.input_dim,
        horizon=HORIZON,
        future_dim=SPEC.future_dim,
        cell=cell,  # type: ignore[arg-type]
        hidden_size=size.hidden,
        num_layers=size.layers,
        head_hidden=128,
    )
    scaling = Scaling((4.6, 17.0, 0.7), (0.9, 5.5, 0.45))  # roughly elecdemand's demand, temperature, workday
    return Checkpoint(config, SPEC, scaling, Forecaster(config).state_dict())


def publish(home: Path, size: ModelSize, cell: str = "lstm") -> str:
    """Stores a random forecaster of ``size`` in the BentoML model store at ``home``; returns its tag.

    A child process does it because BentoML fixes its home directory when it is first imported.
    """
    code = (
        "import sys; from bench.workload import ModelSize, random_checkpoint; "
        "from training.export import export_to_bentoml; "
        "size = ModelSize(sys.argv[1], *map(int, sys.argv[2:5])); "
        # With what live scoring needs, as a trained model's export has: the service scores its sessions.
        "report = {'metrics': {'streaming': {'mase': 1.0}}, 'naive_scales': {'series': 0.3}}; "
        "print(export_to_bentoml(random_checkpoint(size, sys.argv[5]), report))"
    )
    env = {**os.environ, "BENTOML_HOME": str(home)}
    args = [size.name, str(size.hidden), str(size.layers), str(size.history), cell]
    done = subprocess.run([sys.executable, "-c", code, *args], env=env, capture_output=True, text=True, check=True)
    return done.stdout.split()[-1]


def train_checkpoint(config: Path, workdir: Path, epochs: int) -> tuple[Path, dict[str, Any]]:
    """Trains ``config`` by `seqcast-train fit` for ``epochs`` in ``workdir``, without exporting; returns the run's
    checkpoint and its report."""
    run = workdir / "runs"
    command = [sys.executable, "-m", "training.cli", "fit", "--config", str(config), "--export", "false"]
    command += ["--trainer.max_epochs", str(epochs), "--trainer.max_time", "null"]
    command += ["--trainer.logger.init_args.save_dir", str(run), "--checkpoint.dirpath", str(workdir / "checkpoints")]
    subprocess.run(command, cwd=ROOT, check=True, capture_output=True, text=True)
    folder = next(run.glob("*/version_0"))
    return folder / "checkpoint.pt", json.loads((folder / "report.json").read_text())


def data_options(config: Path) -> dict[str, Any]:
    """The ``data`` section of a training config: what SeriesDataModule takes."""
    import yaml

    return dict(yaml.safe_load(config.read_text())["data"])


def publish_retrained(home: Path, seed: int = 1) -> tuple[str, str]:
    """Stores, next to the only forecaster in ``home``'s model store, a new version of it with perturbed weights:
    a model retrained on the same inputs, as an upgrade brings. Returns (old tag, new tag)."""
    code = (
        "import sys, torch, bentoml; from dataclasses import replace; "
        "from models.checkpoint import PUBLISHED_FILE, load_checkpoint; "
        "from training.export import export_to_bentoml; "
        "[old] = bentoml.models.list(); meta = old.info.metadata; "
        "checkpoint = load_checkpoint(old.path_of(PUBLISHED_FILE)); torch.manual_seed(int(sys.argv[1])); "
        "weights = {k: v + 0.05 * torch.randn_like(v) for k, v in checkpoint.state_dict.items()}; "
        "report = {'metrics': meta['test_metrics'], 'naive_scales': meta.get('naive_scales')}; "
        "new = export_to_bentoml(replace(checkpoint, state_dict=weights), report, old.tag.name); "
        "print(old.tag, new)"
    )
    env = {**os.environ, "BENTOML_HOME": str(home)}
    done = subprocess.run([sys.executable, "-c", code, str(seed)], env=env, capture_output=True, text=True, check=True)
    old, new = done.stdout.split()[-2:]
    return old, new


@dataclass(frozen=True)
class Rows:
    """The elecdemand series as plain arrays: slicing them is what a load generator does per request, and pandas'
    indexing would cost the client more than the server spends answering."""

    y: np.ndarray  # (T,)
    covariates: np.ndarray  # (T, 2): Temperature, WorkDay
    starts: tuple[str, ...]  # ISO timestamp of every row


@cache
def elecdemand() -> Rows:
    frame = read_frame("builtin:elecdemand")
    return Rows(
        frame.y.to_numpy(),
        frame[["Temperature", "WorkDay"]].to_numpy(),
        tuple(stamp.isoformat() for stamp in frame.ds),
    )


def history_body(length: int, offset: int = 0) -> dict[str, Any]:
    """A /forecast or /open body: ``length`` half-hours of demand from ``offset``, tomorrow's covariates."""
    rows = elecdemand()
    end = offset + length
    return {
        "history": rows.y[offset:end].tolist(),
        "covariates": rows.covariates[offset:end].tolist(),
        "start": rows.starts[offset],
        "future_covariates": rows.covariates[end : end + HORIZON].tolist(),
    }


def observe_body(session_id: str, seq: int, offset: int) -> dict[str, Any]:
    """One new half-hour for a session that has consumed ``seq`` values starting at ``offset``."""
    rows = elecdemand()
    at = (offset + seq) % (len(rows.y) - HORIZON - 1)
    return {
        "session_id": session_id,
        "seq": seq,
        "values": rows.y[at : at + 1].tolist(),
        "covariates": rows.covariates[at : at + 1].tolist(),
        "future_covariates": rows.covariates[at + 1 : at + 1 + HORIZON].tolist(),
    }
