"""What every peer serves: seqcast's forecaster behind its own engine (the same validation, scaling and pass as
the service's /forecast), so that a table of servers differs in the server only. Peers know no sessions: a
client with a new value sends its whole window again."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from models import load_checkpoint
from service.engine import Engine, Prepared
from service.schemas import ForecastRequest, RejectedRequest


class PeerModel:
    def __init__(self, checkpoint: Path) -> None:
        torch.set_num_threads(1)  # as seqcast's worker
        self.engine = Engine(load_checkpoint(checkpoint), "peer")

    def parse(self, body: bytes) -> ForecastRequest:
        return ForecastRequest.model_validate_json(body)

    def forecast(self, requests: list[ForecastRequest]) -> list[dict[str, Any]]:
        """Answers, in one pass, each request as seqcast's /forecast would; a refused one gets its error."""
        answers: list[dict[str, Any]] = [{} for _ in requests]
        ready: list[tuple[int, Prepared]] = []
        for index, request in enumerate(requests):
            try:
                checked = self.engine.check_history(
                    request.history, request.covariates, request.start, request.future_covariates, request.series
                )
                ready.append((index, self.engine.prepare(checked)))
            except RejectedRequest as rejected:
                answers[index] = {"error": rejected.rejection.error}
        if ready:
            result = self.engine.run([p for _, p in ready], [None] * len(ready))
            for k, (index, prepared) in enumerate(ready):
                answers[index] = dict(self.engine.answer(result.forecasts[k], prepared.next_time, prepared.warnings))
        return answers
