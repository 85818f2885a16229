from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from models import Forecaster, ForecasterConfig
from tests.conftest import synthetic_frame
from training.datamodule import SeriesDataModule
from training.metrics import point_metrics
from training.task import ForecastTask


def _batch(length: int = 30, horizon: int = 4) -> tuple[torch.Tensor, ...]:
    torch.manual_seed(3)
    mask = torch.ones(2, length, horizon)
    mask[:, :5] = 0  # warm-up steps carry no loss
    return torch.randn(2, length, 3), torch.randn(2, length, horizon, 2), torch.randn(2, length, horizon), mask


def _task(origin_stride: int) -> ForecastTask:
    config = ForecasterConfig(input_dim=3, horizon=4, future_dim=2, hidden_size=8, context_size=4, head_hidden=6)
    torch.manual_seed(0)
    return ForecastTask(Forecaster(config), origin_stride=origin_stride)


def test_strided_loss_reads_only_every_nth_origin() -> None:
    x, future, targets, mask = _batch()
    task = _task(origin_stride=3)
    full = task.masked_loss((x, future, targets, mask))
    torch.manual_seed(7)
    strided = task.masked_loss((x, future, targets, mask), origin_stride=3)
    torch.manual_seed(7)
    first = int(torch.randint(3, ()))
    # Targets of the origins the stride skips do not move the loss; those it reads do.
    skipped = targets.clone()
    skipped[:, first + 1 :: 3] += 100.0
    torch.manual_seed(7)
    assert task.masked_loss((x, future, skipped, mask), origin_stride=3) == strided
    read = targets.clone()
    read[:, first + 6] += 100.0
    torch.manual_seed(7)
    assert task.masked_loss((x, future, read, mask), origin_stride=3) > strided + 1.0
    assert not torch.equal(full, strided)


def test_origin_stride_must_be_positive() -> None:
    with pytest.raises(ValueError, match="origin_stride must be >= 1, got 0"):
        _task(origin_stride=0)


def test_mape_loss_is_the_reported_mape_in_the_targets_units(monkeypatch: pytest.MonkeyPatch) -> None:
    mean, std = 50.0, 4.0
    monkeypatch.setattr(ForecastTask, "target_scaling", lambda self, data=None: (mean, std))
    x, future, targets, _ = _batch()
    task = _task(origin_stride=1)
    task.hparams["point_loss"] = "mape"
    loss = task.masked_loss((x, future, targets, torch.ones_like(targets)))
    forecast = task.network.decode(task.network.encode(x)[0], future)
    actual = (targets * std + mean).reshape(-1, 4).numpy()
    predicted = (forecast.squeeze(-1) * std + mean).reshape(-1, 4).detach().numpy()
    reported = point_metrics(actual, predicted, np.ones(len(actual)))["mape"]
    assert loss.item() * 100 == pytest.approx(reported, rel=1e-5)


def _validated(tmp_path: Path) -> tuple[SeriesDataModule, ForecastTask]:
    """Four series' validation parts, three to a batch, and an untrained task."""
    from models.features import future_width, input_width

    synthetic_frame(points=1000, series=4).to_csv(tmp_path / "series.csv", index=False)
    calendar = ["time_of_day"]
    data = SeriesDataModule(
        path=str(tmp_path / "series.csv"),
        future_covariates=["temperature"],
        calendar=calendar,  # type: ignore[arg-type]
        input_size=96,
        horizon=12,
        val_size=200,
        test_size=200,
        chunk_length=144,
        chunk_stride=24,
        warmup=12,
        batch_size=3,
    )
    data.setup("fit")
    config = ForecasterConfig(
        input_dim=input_width((), ("temperature",), tuple(calendar)),
        future_dim=future_width(("temperature",), tuple(calendar)),
        horizon=12,
        hidden_size=8,
        dropout=0.5,
        num_layers=2,
    )
    torch.manual_seed(0)
    return data, ForecastTask(Forecaster(config))


def test_the_loss_measured_outside_a_trainer_is_lightnings_val_loss(tmp_path: Path) -> None:
    """What a smoothed model's untrained loss is compared with: Lightning's epoch mean of val_loss, over batches
    of unequal size (four series' validation parts, three to a batch) weighted as Lightning weighs them."""
    import lightning as L

    data, task = _validated(tmp_path)
    assert len({len(batch[0]) for batch in data.val_dataloader()}) > 1
    mine = task.validation_loss(data)
    trainer = L.Trainer(accelerator="cpu", logger=False, enable_checkpointing=False, enable_progress_bar=False)
    [theirs] = trainer.validate(task, datamodule=data, verbose=False)
    assert task.network.training  # left as it was found
    assert mine == pytest.approx(theirs["val_loss"], rel=1e-5)


def test_validation_blocks_hold_every_value_scored_once(tmp_path: Path) -> None:
    """The blocks the significance test pairs: a horizon of origins of one series each, in order, the rest of a
    part joining its last block. Their errors add up to the validation loss: every weight is 1 here and each
    series' part scores as many values, so the pooled mean is Lightning's batch-weighted one."""
    data, task = _validated(tmp_path)
    blocks = task.validation_blocks(data)
    origins = [int(n) for batch in data.val_dataloader() for n in (batch[3].sum(-1) > 0).sum(-1)]
    assert len(origins) == 4 and len(set(origins)) == 1 and origins[0] % 12  # a rest of a block
    for row in range(4):
        mine = blocks[blocks[:, 2] == row]
        assert len(mine) == origins[0] // 12
        assert (mine[:-1, 1] == 12 * 12).all() and mine[-1, 1] > 12 * 12  # whole blocks, then one with the rest
    assert blocks[:, 1].sum() == sum(int((batch[3] > 0).sum()) for batch in data.val_dataloader())
    assert blocks[:, 0].sum() / blocks[:, 1].sum() == pytest.approx(task.validation_loss(data), rel=1e-5)
    torch.manual_seed(1)
    other = task.with_network(Forecaster(task.network.config)).validation_blocks(data)
    assert np.array_equal(other[:, 1:], blocks[:, 1:]) and not np.allclose(other[:, 0], blocks[:, 0])


def test_a_mape_loss_refuses_a_target_in_logs(tmp_path: Path) -> None:
    """A share of log(1 + y) is not a percentage error, and near zero it divides by nearly nothing."""
    frame = synthetic_frame(points=1000)
    frame.to_csv(tmp_path / "series.csv", index=False)
    sizes = dict(input_size=96, horizon=24, val_size=200, test_size=200, chunk_length=240, warmup=12)
    data = SeriesDataModule(path=str(tmp_path / "series.csv"), log_target=True, **sizes)  # type: ignore[arg-type]
    data.setup()
    with pytest.raises(ValueError, match="point_loss 'mape' reads the target in its units: set data.log_target false"):
        _task(origin_stride=1).target_scaling(data)
