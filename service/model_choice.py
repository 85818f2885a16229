"""Which stored model the service serves: the tag it is given, or the only forecaster in the model store.

Each training config exports under a name of its own (``seqcast-lstm``, ``seqcast-taylor``), so ``latest`` of
one name never turns into a model trained on other data. Without a tag, a store holding one name serves that
name's latest version; a store holding several refuses to guess and lists them.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

import bentoml


class NoModelChosen(RuntimeError):
    """No tag was given and the store holds no forecaster, or several forecasters by different names."""


@dataclass(frozen=True)
class StoredForecaster:
    tag: str
    created: datetime
    labels: dict[str, str]
    test_metrics: dict[str, Any]

    @property
    def name(self) -> str:
        return self.tag.split(":")[0]


def stored_forecasters() -> list[StoredForecaster]:
    """Every seqcast forecaster in the model store (``$BENTOML_HOME``), newest first. A seqcast export is known
    by its metadata: the checkpoint format and features it was trained with."""
    found = []
    for model in bentoml.models.list():
        metadata = model.info.metadata
        if "format_version" in metadata and "features" in metadata:
            metrics = metadata.get("test_metrics")
            labels = dict(model.info.labels)
            test_metrics = dict(metrics) if isinstance(metrics, dict) else {}
            found.append(StoredForecaster(str(model.tag), model.info.creation_time, labels, test_metrics))
    return sorted(found, key=lambda model: model.created, reverse=True)


def chosen_tag(tag: str | None) -> str:
    """The tag to serve: ``tag`` itself when given, else ``<name>:latest`` of the one forecaster name stored."""
    if tag:
        return tag
    names = sorted({model.name for model in stored_forecasters()})
    if len(names) == 1:
        return f"{names[0]}:latest"
    if not names:
        raise NoModelChosen(
            "model_tag: the model store holds no seqcast forecaster ($BENTOML_HOME/models); train one with "
            "`seqcast-train fit --config ...`, or set SEQCAST_MODEL_TAG"
        )
    raise NoModelChosen(
        f"model_tag: the model store holds {len(names)} forecasters ({', '.join(names)}); set SEQCAST_MODEL_TAG "
        f"to the one to serve, e.g. SEQCAST_MODEL_TAG={names[0]}:latest (`seqcast-train models` compares them)"
    )
