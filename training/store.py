"""``seqcast-train models``: the forecasters in the model store side by side, as a user picks one to serve."""

from __future__ import annotations

import argparse

from service.model_choice import StoredForecaster, stored_forecasters

COLUMNS = ("tag", "created", "data", "series", "freq", "cell", "test MASE", "strongest naive (MASE)")


def _row(model: StoredForecaster) -> tuple[str, ...]:
    labels = model.labels
    streaming = model.test_metrics.get("streaming", {})
    mase = labels.get("test_mase") or (f"{streaming['mase']:.4f}" if "mase" in streaming else "?")
    naive = labels.get("strongest_naive")
    naive_cell = f"{naive} ({labels.get('strongest_naive_mase', '?')})" if naive else "?"
    return (
        model.tag,
        f"{model.created:%Y-%m-%d %H:%M}",
        labels.get("data", "?"),
        labels.get("series", "?"),
        labels.get("freq", "?"),
        labels.get("cell", "?"),
        mase,
        naive_cell,
    )


def table(models: list[StoredForecaster]) -> str:
    rows = [COLUMNS, *(_row(model) for model in models)]
    widths = [max(len(row[i]) for row in rows) for i in range(len(COLUMNS))]
    return "\n".join(
        "  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip() for row in rows
    )


def print_models(args: list[str]) -> None:
    parser = argparse.ArgumentParser(
        prog="seqcast-train models",
        description="List the seqcast forecasters in the BentoML model store ($BENTOML_HOME), newest first. "
        "Models exported before names were given appear as seqcast-forecaster, without data labels.",
    )
    parser.add_argument("--name", help="only the versions of this model name, e.g. seqcast-lstm")
    options = parser.parse_args(args)
    models = [m for m in stored_forecasters() if options.name is None or m.name == options.name]
    if not models:
        print("no seqcast forecaster in the model store; train one with `seqcast-train fit --config ...`")  # noqa: T201
        return
    print(table(models))  # noqa: T201
