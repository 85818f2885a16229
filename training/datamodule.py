"""Chronological split, train-only scaling and the chunks the forecaster trains on.

Training reads long chunks and puts a loss on every step after a short warm-up, each step forecasting its
next ``horizon`` values ("forking sequences", MQ-RNN). The recurrence then runs about once over each point
per pass instead of ``input_size`` times as overlapping windows would, and every step trains the path the
service runs: a state carried forward, read out at the latest observation.

No look-ahead: scaling statistics come from the training part alone, inputs at step t hold values up to t,
and a target is used only where it lies inside the part the chunk belongs to.
"""

from __future__ import annotations

from dataclasses import dataclass

import lightning as L
import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

from models.features import FeatureSpec, Scaling, encode_inputs
from training.data import CheckedData, DataError, FillPolicy, Series, check_series, read_frame
from training.metrics import season_length, seasonal_naive_scale
from training.sampling import EpochShuffle


@dataclass(frozen=True)
class Part:
    """Index range [start, end) of one series that belongs to a split."""

    start: int
    end: int


@dataclass(frozen=True)
class Span:
    """One chunk: where it is read from, which of its steps count, and where its targets may lie."""

    series: int  # index into the data module's series
    start: int
    length: int
    first_counted: int  # absolute index of the first step whose forecast enters the loss
    part: Part  # targets outside it are masked, so no split sees another's values


Item = tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]


class ChunkDataset(Dataset[Item]):
    """Items (inputs (L, D), known-ahead features (L, H, F), targets (L, H), mask (L, H)).

    Row t of the known-ahead features and of the targets covers steps t+1 .. t+H; the mask weighs each target
    in the loss, 0 where a loss may not use it, else its series' weight.
    """

    def __init__(
        self,
        inputs: list[np.ndarray],
        known_ahead: list[int],
        targets: list[np.ndarray],
        spans: list[Span],
        horizon: int,
        weights: list[float] | None = None,
    ) -> None:
        self.inputs = [torch.from_numpy(x) for x in inputs]
        self.known_ahead = [x[:, known_ahead] for x in self.inputs]
        self.targets = [torch.from_numpy(z.astype(np.float32)) for z in targets]
        self.spans = spans
        self.horizon = horizon
        self.weights = weights or [1.0] * len(inputs)

    def __len__(self) -> int:
        return len(self.spans)

    def __getitem__(self, index: int) -> Item:
        span = self.spans[index]
        x = self.inputs[span.series][span.start : span.start + span.length]  # (L, D)
        if len(x) < span.length:
            # A series that ends inside the span (a short one batched with longer ones) is padded at the end:
            # the recurrence is causal, so padding changes no earlier step, and no padded row is counted below.
            x = torch.cat([x, x.new_zeros(span.length - len(x), x.shape[1])])
        origins = torch.arange(span.start, span.start + span.length)
        steps = origins.unsqueeze(1) + torch.arange(1, self.horizon + 1)  # (L, H) absolute target indices
        # A row counts only when its whole horizon lies in the part: the head mixes all horizon steps, so
        # one known-ahead value from the next part would leak into the forecasts of this one.
        counted = (origins >= span.first_counted) & (steps[:, -1] < span.part.end) & (steps[:, 0] >= span.part.start)
        counted_steps = counted.unsqueeze(1).expand(-1, self.horizon)  # (L, H)
        z = self.targets[span.series]
        inside = steps.clamp(max=len(z) - 1)  # keeps the lookup in range; those rows are not counted
        targets = z[inside] * counted_steps  # (L, H)
        future = self.known_ahead[span.series][inside] * counted_steps.unsqueeze(-1)  # (L, H, F)
        return x, future, targets, counted_steps * self.weights[span.series]


def chunk_starts(train_end: int, chunk_length: int, stride: int) -> range | list[int]:
    """Where a series' training chunks start: every ``stride`` steps, or one padded chunk at 0 where the
    training part is shorter than a chunk."""
    return range(0, train_end - chunk_length, stride) or [0]


class SeriesDataModule(L.LightningDataModule):
    def __init__(
        self,
        path: str = "builtin:elecdemand",
        target: str = "y",
        past_covariates: list[str] | None = None,
        future_covariates: list[str] | None = None,
        calendar: list[str] | None = None,
        fill: FillPolicy = "error",
        fill_covariates: FillPolicy | None = None,
        nonnegative: bool = False,
        log_target: bool = False,
        per_series_scaling: bool = False,
        mase_weights: bool = False,
        input_size: int = 336,
        horizon: int = 48,
        val_size: int = 1344,
        test_size: int = 1344,
        chunk_length: int = 720,
        chunk_stride: int = 24,
        warmup: int = 48,
        batch_size: int = 32,
        num_workers: int = 0,
        drop_last: int = 0,
    ) -> None:
        """
        Args:
            path: ``builtin:elecdemand``, or a CSV / Parquet file in long format.
            target: the column to forecast.
            past_covariates: numeric columns read as inputs next to the target, unknown ahead.
            future_covariates: numeric columns read as inputs and also known over the horizon (weather
                forecasts, holiday flags); the head reads their horizon values.
            calendar: features derived from ``ds`` (time_of_day, day_of_week, day_of_year); known ahead.
            fill: what to do with missing values, NaN or rows the series' grid lacks: ``error`` lists them;
                ``zero`` or a number fills them with it (counts); ``ffill`` or ``interpolate`` (levels). Any
                fill puts each series on its full grid from its first to its last timestamp.
            fill_covariates: the same for covariates, where they need another fill than the target (counts
                filled with zero, a temperature beside them interpolated); default: as ``fill``, except that a
                constant fill of the target leaves missing covariates listed as errors.
            nonnegative: the target is never negative (counts, demand, sales): forecasts are clipped at zero,
                in the report as in the service.
            log_target: the model reads and forecasts log(1 + target), mapped back for every answer: for a
                target of zero or more whose seasonal swings grow with its level (sales, revenue, passengers).
            per_series_scaling: standardise each series by its own training part rather than all series by
                the pooled one: for series of very different levels (products, regions, industries). The
                service then asks each request which series it continues.
            mase_weights: weigh each series' errors in the loss by the inverse of its seasonal-naive error on
                the training part, so the loss is the MASE the evaluation reports. Without, a smooth series
                (small seasonal-naive error for its spread) counts for less in training than in MASE.
            input_size: history a windowed forecast reads; validation and test origins get this much.
            horizon: steps forecast from every origin.
            val_size: last steps before the test part, per series, for validation.
            test_size: last steps of each series, for the final evaluation.
            chunk_length: steps per training chunk.
            chunk_stride: steps between the starts of consecutive training chunks.
            warmup: first steps of a chunk that carry no loss, while the state forms from zero.
            batch_size: chunks per training batch.
            num_workers: DataLoader worker processes.
            drop_last: steps left out at the end of every series before it is split, as if the data ended
                earlier: ``seqcast-train backtest`` moves the test window back by this.
        """
        super().__init__()
        self.save_hyperparameters()
        self.path = path
        self.target = target
        self.past_covariates = tuple(past_covariates or ())
        self.future_covariates = tuple(future_covariates or ())
        self.calendar = tuple(calendar or ())
        self.fill = fill
        self.fill_covariates = fill_covariates
        self.nonnegative = nonnegative
        self.log_target = log_target
        self.per_series_scaling = per_series_scaling
        self.mase_weights = mase_weights
        self.input_size = input_size
        self.horizon = horizon
        self.val_size = val_size
        self.test_size = test_size
        self.chunk_length = chunk_length
        self.chunk_stride = chunk_stride
        self.warmup = warmup
        self.batch_size = batch_size
        self.num_workers = num_workers
        self.drop_last = drop_last
        self.series: list[Series] = []
        self.inputs: list[np.ndarray] = []
        self.scaled_targets: list[np.ndarray] = []
        self.checked: CheckedData | None = None

    def setup(self, stage: str | None = None) -> None:
        if self.series:
            return
        covariates = self.past_covariates + self.future_covariates
        self.checked = check_series(
            read_frame(self.path),
            self.target,
            covariates,
            self.fill,
            self.min_length + self.drop_last,
            self.fill_covariates,
        )
        freq = self.checked.freq
        series = [s.until(len(s) - self.drop_last) for s in self.checked.series]
        if self.log_target:
            _check_log_target(series, self.target)
        self.series = series
        self.features = FeatureSpec(
            self.target,
            self.past_covariates,
            self.future_covariates,
            self.calendar,
            freq,
            self.nonnegative,
            self.log_target,
        )
        self.scaling = Scaling.fit(np.concatenate([self.train_rows(s) for s in series]))
        self.series_scaling = (
            {s.uid: Scaling.fit(self.train_rows(s)) for s in series} if self.per_series_scaling else {}
        )
        self.inputs = [self.encode(s) for s in series]
        self.scaled_targets = [self.scaling_of(s).scale_target(self.features.model_target(s.target)) for s in series]
        self.weights = [
            self.mase_weight(s, z) if self.mase_weights else 1.0
            for s, z in zip(series, self.scaled_targets, strict=True)
        ]

    @property
    def min_length(self) -> int:
        """Points a series needs: a training part with one origin past the warmup and its horizon, then
        validation and test. A series shorter than a chunk is trained on as one chunk, padded at its end; one
        shorter than a window is forecast from all it has."""
        return self.val_size + self.test_size + self.warmup + self.horizon + 1

    def train_rows(self, series: Series) -> np.ndarray:
        """(T, 1 + covariates) values of the series' training part as the model reads them, before scaling."""
        end = self.train_part(series).end
        return np.column_stack([self.features.model_target(series.target[:end]), series.covariates[:end]])

    def mase_weight(self, series: Series, scaled_target: np.ndarray) -> float:
        """1 / the series' seasonal-naive error on its training part, in the scaled units the loss sees."""
        season = season_length(str(self.features.freq))
        train = scaled_target[: self.train_part(series).end]
        return 1.0 / max(seasonal_naive_scale(train, season), 1e-8)  # a constant series would divide by zero

    def scaling_of(self, series: Series) -> Scaling:
        return self.series_scaling.get(series.uid, self.scaling)

    def encode(self, series: Series) -> np.ndarray:
        return encode_inputs(
            self.features, self.scaling_of(series), series.target, series.covariates, series.timestamps.asi8
        )

    def train_part(self, series: Series) -> Part:
        return Part(0, len(series) - self.val_size - self.test_size)

    def val_part(self, series: Series) -> Part:
        end = len(series) - self.test_size
        return Part(end - self.val_size, end)

    def test_part(self, series: Series) -> Part:
        return Part(len(series) - self.test_size, len(series))

    def train_dataset(self) -> ChunkDataset:
        spans: list[Span] = []
        for index, s in enumerate(self.series):
            part = self.train_part(s)
            starts = chunk_starts(part.end, self.chunk_length, self.chunk_stride)
            spans.extend(Span(index, start, self.chunk_length, start + self.warmup, part) for start in starts)
        return ChunkDataset(
            self.inputs, self.features.known_ahead_columns, self.scaled_targets, spans, self.horizon, self.weights
        )

    def held_out_dataset(self, part_of: str) -> ChunkDataset:
        """One chunk per series: ``input_size`` steps of history (or all there is), then the part's origins. The
        chunks share one length, so a series with less history reads past its part: those rows are not
        counted, and a series' end is padded."""
        parts = [self.val_part(s) if part_of == "val" else self.test_part(s) for s in self.series]
        starts = [max(0, part.start - self.input_size) for part in parts]
        length = max(part.end - 1 - start for part, start in zip(parts, starts, strict=True))
        # The first origin is the step before the part, so the first target is the part's first value.
        spans = [
            Span(index, start, length, part.start - 1, part)
            for index, (part, start) in enumerate(zip(parts, starts, strict=True))
        ]
        return ChunkDataset(
            self.inputs, self.features.known_ahead_columns, self.scaled_targets, spans, self.horizon, self.weights
        )

    def _epoch(self) -> int:
        return self.trainer.current_epoch if self.trainer is not None else 0

    def train_dataloader(self) -> DataLoader[Item]:
        # initial_seed is the run's seed (seed_everything), the same when a run resumes.
        dataset = self.train_dataset()
        return DataLoader(
            dataset,
            batch_size=self.batch_size,
            sampler=EpochShuffle(len(dataset), torch.initial_seed(), self._epoch),
            drop_last=False,
            num_workers=self.num_workers,
            persistent_workers=self.num_workers > 0,
        )

    def val_dataloader(self) -> DataLoader[Item]:
        return DataLoader(self.held_out_dataset("val"), batch_size=self.batch_size, num_workers=self.num_workers)


def _check_log_target(series: list[Series], target: str) -> None:
    """log(1 + y) is defined for y >= 0 only: a negative value would turn into NaN and poison training."""
    for s in series:
        below = np.flatnonzero(s.target < 0)
        if len(below):
            raise DataError(
                f"data.log_target: series {s.uid!r} has {len(below)} value{'s' if len(below) > 1 else ''} of "
                f"{target!r} below zero, the first {s.target[below[0]]:g} at {s.timestamps[below[0]]}; log_target "
                "needs a target of zero or more"
            )
