"""The hand-written app: Starlette on uvicorn, one request per pass, the pass run on the event loop."""

from __future__ import annotations

import sys
from pathlib import Path

import uvicorn
from pydantic import ValidationError
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from bench.peers.model import PeerModel


def app(checkpoint: Path) -> Starlette:
    model = PeerModel(checkpoint)

    async def forecast(request: Request) -> JSONResponse:
        try:
            parsed = model.parse(await request.body())
        except ValidationError as error:
            return JSONResponse({"error": str(error)}, status_code=400)
        [answer] = model.forecast([parsed])
        return JSONResponse(answer, status_code=400 if "error" in answer else 200)

    return Starlette(routes=[Route("/forecast", forecast, methods=["POST"])])


if __name__ == "__main__":
    uvicorn.run(app(Path(sys.argv[1])), host="127.0.0.1", port=int(sys.argv[2]), workers=1, log_level="warning")
