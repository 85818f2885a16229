"""LitServe: one inference worker on the CPU, its dynamic batching up to seqcast's 64 requests a pass, with a
5 ms batch timeout. At its default (0) the worker polls its queue without pause: idle, it kept about 1.1 of
this machine's 2 cores busy."""

# No `from __future__ import annotations`: LitServe reads decode_request's annotation as a class.
import sys
from pathlib import Path
from typing import Any

import litserve as ls

from bench.peers.model import PeerModel
from service.schemas import ForecastRequest

MAX_BATCH = 64


class Forecasts(ls.LitAPI):  # type: ignore[misc]
    def __init__(self, checkpoint: Path) -> None:
        super().__init__(max_batch_size=MAX_BATCH, batch_timeout=0.005, api_path="/forecast")
        self.checkpoint = checkpoint

    def setup(self, device: str) -> None:
        self.model = PeerModel(self.checkpoint)

    # The annotation is what LitServe parses the body as (FastAPI, by pydantic): the request arrives checked.
    def decode_request(self, request: ForecastRequest) -> ForecastRequest:
        return request

    def batch(self, inputs: list[ForecastRequest]) -> list[ForecastRequest]:
        return inputs

    def predict(self, inputs: list[ForecastRequest]) -> list[dict[str, Any]]:
        return self.model.forecast(inputs)

    def unbatch(self, output: list[dict[str, Any]]) -> list[dict[str, Any]]:
        return output

    def encode_response(self, output: dict[str, Any]) -> dict[str, Any]:
        return output


if __name__ == "__main__":
    server = ls.LitServer(Forecasts(Path(sys.argv[1])), accelerator="cpu", workers_per_device=1)
    server.run(host="127.0.0.1", port=int(sys.argv[2]), num_api_servers=1, generate_client_file=False)
