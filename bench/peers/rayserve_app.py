"""Ray Serve: one replica on one CPU behind Ray's HTTP proxy, ``@serve.batch`` up to seqcast's 64 requests a
pass at its default wait (10 ms). ``max_ongoing_requests`` is raised from its default (5) to 128, as Ray's docs
ask of a batching deployment: otherwise the proxy would hold back all but 5 requests and no batch would fill."""

from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import Any

import ray
from pydantic import ValidationError
from ray import serve
from starlette.requests import Request
from starlette.responses import JSONResponse

from bench.peers.model import PeerModel
from service.schemas import ForecastRequest

MAX_BATCH = 64


@serve.deployment(num_replicas=1, max_ongoing_requests=128, ray_actor_options={"num_cpus": 1})
class Forecasts:
    def __init__(self, checkpoint: str) -> None:
        self.model = PeerModel(Path(checkpoint))

    @serve.batch(max_batch_size=MAX_BATCH)
    async def forecast(self, requests: list[ForecastRequest]) -> list[dict[str, Any]]:
        return self.model.forecast(requests)

    async def __call__(self, request: Request) -> JSONResponse:
        try:
            parsed = self.model.parse(await request.body())
        except ValidationError as error:
            return JSONResponse({"error": str(error)}, status_code=400)
        answer = await self.forecast(parsed)
        return JSONResponse(answer, status_code=400 if "error" in answer else 200)


if __name__ == "__main__":
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    serve.start(http_options={"host": "127.0.0.1", "port": int(sys.argv[2])})
    serve.run(Forecasts.bind(sys.argv[1]), route_prefix="/forecast")  # type: ignore[attr-defined]
    while True:  # serve.run returns once deployed; the driver keeps the cluster up until it is stopped
        time.sleep(3600)
