"""The image that deploy/Dockerfile describes, built without a Docker engine: its COPY set copied into an empty
folder, its install steps run there in a fresh virtual environment, its commands run from that folder.

The fresh environment sees the test environment's packages as the image's earlier layers (torch, and what pip
would download), through a plain path in a ``.pth`` file: the editable install of this clone is not active
there, so nothing is imported from the repository. Installs run offline (``PIP_NO_INDEX``): a dependency the
project does not declare, or one not present, fails them.
"""

from __future__ import annotations

import json
import os
import shlex
import shutil
import subprocess
import sys
import sysconfig
from dataclasses import dataclass
from pathlib import Path

from tests.conftest import ROOT


@dataclass(frozen=True)
class Instructions:
    copies: list[tuple[list[str], str]]  # (sources in the build context, destination)
    workdir: str
    runs: list[str]  # RUN commands, shell form
    env: dict[str, str]
    cmd: list[str]
    healthcheck: list[str]


def _logical_lines(text: str) -> list[str]:
    """Instructions with their continuation lines joined, comments dropped."""
    lines, pending = [], ""
    for raw in text.splitlines():
        line = raw.strip()
        if not pending and (not line or line.startswith("#")):
            continue
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        lines.append(pending + line)
        pending = ""
    return lines


def read_dockerfile(path: Path) -> Instructions:
    copies: list[tuple[list[str], str]] = []
    runs: list[str] = []
    env: dict[str, str] = {}
    workdir, cmd, healthcheck = "/", [], []
    for line in _logical_lines(path.read_text()):
        keyword, _, rest = line.partition(" ")
        keyword = keyword.upper()
        if keyword == "COPY":
            *sources, destination = shlex.split(rest)
            copies.append((sources, destination))
        elif keyword == "WORKDIR":
            workdir = rest.strip()
        elif keyword == "RUN":
            runs.append(rest.strip())
        elif keyword == "ENV":
            for pair in shlex.split(rest):
                key, _, value = pair.partition("=")
                env[key] = value
        elif keyword == "CMD":
            cmd = json.loads(rest)
        elif keyword == "HEALTHCHECK":
            healthcheck = shlex.split(rest.split(" CMD ", 1)[1])
    return Instructions(copies, workdir, runs, env, cmd, healthcheck)


@dataclass(frozen=True)
class Image:
    app: Path  # the image's WORKDIR
    venv: Path
    instructions: Instructions

    def command(self, argv: list[str]) -> list[str]:
        """``argv`` as the image would run it: a program from the image's environment, or a module of it (what
        the earlier layers installed has its console scripts in the test environment, not in this one)."""
        program = self.venv / "bin" / argv[0]
        if program.exists():
            return [str(program), *argv[1:]]
        return [str(self.venv / "bin" / "python"), "-m", argv[0], *argv[1:]]

    def env(self, **extra: str) -> dict[str, str]:
        path = f"{self.venv / 'bin'}{os.pathsep}{os.environ['PATH']}"
        base = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
        return {**base, **self.instructions.env, "PATH": path, "VIRTUAL_ENV": str(self.venv), **extra}


def _copy(sources: list[str], target: Path, into_folder: bool) -> None:
    """Docker's COPY: a folder's contents go to the target; a file goes into it when it names a folder."""
    for source in sources:
        found = ROOT / source
        if found.is_dir():
            shutil.copytree(found, target, dirs_exist_ok=True)
        elif into_folder:
            target.mkdir(parents=True, exist_ok=True)
            shutil.copy2(found, target / found.name)
        else:
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(found, target)


def build(dockerfile: Path, into: Path) -> Image:
    """Copies the COPY set into ``into/app``, runs every RUN but the torch layer there, and returns the image."""
    instructions = read_dockerfile(dockerfile)
    app = into / "app"
    app.mkdir(parents=True)
    for sources, destination in instructions.copies:
        _copy(sources, app / destination, into_folder=destination.endswith("/") or len(sources) > 1)
    venv = into / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True, timeout=120)
    site = next((venv / "lib").glob("python*/site-packages"))
    (site / "earlier_layers.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    # Without a pip of its own (a venv's bundled setuptools would shadow the earlier layers' newer one), the
    # image's `pip` is the earlier layers' pip run by this environment's python, installing here.
    pip = venv / "bin" / "pip"
    pip.write_text('#!/bin/sh\nexec "$(dirname "$0")/python" -m pip "$@"\n')
    pip.chmod(0o755)
    image = Image(app, venv, instructions)
    for run in instructions.runs:
        if "torch==" in run:
            continue  # the first layer: torch is among the earlier layers' packages
        # pip reads its environment variables as options: offline, building with the setuptools present.
        env = image.env(PIP_NO_INDEX="1", PIP_NO_BUILD_ISOLATION="0", PIP_DISABLE_PIP_VERSION_CHECK="1")
        done = subprocess.run(run, shell=True, cwd=app, env=env, capture_output=True, text=True, timeout=600)
        if done.returncode != 0:
            raise BuildFailed(f"RUN {run}\n{done.stdout[-3000:]}{done.stderr[-3000:]}")
    return image


class BuildFailed(Exception):
    """A RUN step of the Dockerfile failed."""
