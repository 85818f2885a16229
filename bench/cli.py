"""``seqcast-bench``: each subcommand measures one thing, prints a table, and writes JSON and a PNG to --out."""

from __future__ import annotations

import argparse
import importlib.util
from pathlib import Path

# The packages some subcommands need beyond the runtime install, and the extra that brings them.
NEEDS = {
    "accuracy": {"statsforecast": "bench"},
    "field": {"statsforecast": "bench"},
    "smoothing": {"statsforecast": "bench"},
    "darts-rnn": {"darts": "peers"},
    "darts-blockrnn": {"darts": "peers"},
    "nf-lstm": {"neuralforecast": "peers"},
    "nf-gru": {"neuralforecast": "peers"},
    "litserve": {"litserve": "peers"},
    "rayserve": {"ray": "peers", "grpc": "peers"},  # grpc comes with ray[serve] only
}
SERVE_PEERS = ("starlette", "litserve", "rayserve")  # bench/peers/


def _require(parser: argparse.ArgumentParser, *needs: str) -> None:
    """Stops with the install command when a package that ``needs`` name is missing."""
    missing = {
        module: extra
        for need in needs
        for module, extra in NEEDS.get(need, {}).items()
        if importlib.util.find_spec(module) is None
    }
    if missing:
        extras = ",".join(sorted(set(missing.values())))
        parser.error(f"needs {', '.join(sorted(missing))}: pip install -e '.[{extras}]' (torch==2.13.0 first)")


def _datasets(parser: argparse.ArgumentParser, text: str, known: list[str]) -> list[str]:
    """The comma-separated data sets of ``--datasets``; stops on one not ``known``."""
    datasets = text.split(",")
    if set(datasets) - set(known):
        parser.error(f"--datasets: unknown {sorted(set(datasets) - set(known))}; choose from {', '.join(known)}")
    return datasets


def _ints(text: str) -> list[int]:
    return [int(part) for part in text.split(",")]


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="seqcast-bench", description=__doc__)
    parser.add_argument("--out", type=Path, default=Path("bench/results"), help="where JSON and plots go")
    commands = parser.add_subparsers(dest="command", required=True)
    streaming = commands.add_parser("streaming", help="/observe with a kept session vs /forecast of the history")
    streaming.add_argument("--lengths", type=_ints, default=[100, 1_000, 10_000])
    streaming.add_argument("--repeats", type=int, default=50, help="in-process calls per measurement")
    streaming.add_argument("--seconds", type=float, default=3.0, help="HTTP: wrk's time per measurement")
    memory = commands.add_parser("memory", help="memory per open session, in-process store and Redis")
    memory.add_argument("--sessions", type=_ints, default=[0, 10_000, 100_000])
    memory.add_argument("--history", type=int, default=48, help="values each session is opened with")
    serve = commands.add_parser("serve", help="req/s and latency of /forecast and /observe vs /noop and in-process")
    serve.add_argument("--sizes", default="small,large", help="comma-separated: small, large")
    serve.add_argument("--clients", type=_ints, default=[1, 8, 64])
    # A large model's batch of 64 forecasts takes about a second: fewer seconds would count a handful of batches.
    serve.add_argument("--seconds", type=float, default=10.0, help="per measurement")
    serve.add_argument(
        "--peers",
        nargs="?",
        const=",".join(SERVE_PEERS),
        help=f"instead: seqcast next to other servers of the same model (default all: {','.join(SERVE_PEERS)})",
    )
    serve.add_argument("--lists", type=_ints, default=[16, 64], help="with --peers: items per list request")
    serve.add_argument("--list-clients", type=int, default=8, help="with --peers: clients sending lists")
    scoring = commands.add_parser("scoring", help="/observe req/s with live scoring off and on, in one run")
    scoring.add_argument("--clients", type=int, default=64)
    scoring.add_argument("--seconds", type=float, default=10.0, help="per measurement")
    scoring.add_argument("--rounds", type=int, default=3, help="off/on pairs")
    shadow = commands.add_parser("shadow", help="/observe req/s without and with a model in shadow, in one run")
    shadow.add_argument("--clients", type=int, default=64)
    shadow.add_argument("--seconds", type=float, default=10.0, help="per measurement")
    shadow.add_argument("--rounds", type=int, default=2, help="off/on pairs")
    drift = commands.add_parser("drift", help="live MASE per day around a level shift, taylor LSTM")
    drift.add_argument("--epochs", type=int, default=15)
    drift.add_argument("--shift", type=float, default=0.15, help="relative level shift halfway through the test part")
    migration = commands.add_parser("migration", help="sessions rebuilt from a tail of N vs the whole history, cost")
    migration.add_argument("--epochs", type=int, default=10)
    migration.add_argument("--tails", type=_ints, default=[24, 48, 96, 168, 336])
    migration.add_argument("--wave", type=int, default=10_000, help="sessions migrated in one wave")
    probes = commands.add_parser("probes", help="/readyz latency while clients keep the worker busy")
    probes.add_argument("--clients", type=int, default=64)
    probes.add_argument("--seconds", type=float, default=10.0, help="probing time per load")
    soak = commands.add_parser("soak", help="many clients observing for minutes: errors and memory over time")
    soak.add_argument("--clients", type=int, default=200)
    soak.add_argument("--seconds", type=float, default=600.0)
    soak.add_argument("--workers", type=int, default=2)
    soak.add_argument(
        "--interval", type=float, default=2.0, help="seconds between one client's observes; 0: as fast as answered"
    )
    accuracy = commands.add_parser("accuracy", help="test MASE/sMAPE of LSTM and GRU vs naive, seasonal naive, ETS")
    accuracy.add_argument(
        "--datasets",
        default="elecdemand,taylor,us_employment",
        help="comma-separated built-in sets, each with its shipped config: elecdemand, taylor, us_employment",
    )
    field = commands.add_parser(
        "field", help="accuracy on data no config was tuned on, with the config `seqcast-train init` writes"
    )
    field.add_argument(
        "--datasets",
        default="counts,departures,temperature,daily-departures,monthly,yearly,taylor,elecdemand",
        help="comma-separated: counts (simulated hourly counts with zeros), departures, temperature and "
        "daily-departures (hourly and daily, New York's airports in 2013), monthly (six series of 84 to 204 "
        "months), yearly (four R series of 24 to 114 years), and the built-in taylor and elecdemand, each "
        "with init's config",
    )
    # field: GRU, the cell init writes, and 4 minutes a run, for sets of up to a year of half-hours
    for parser_of, cells, minutes in [(accuracy, "lstm,gru", 8.0), (field, "gru", 4.0)]:
        parser_of.add_argument("--cells", default=cells)
        parser_of.add_argument("--seeds", default="1,2,3", help="comma-separated seeds, one training run each")
        parser_of.add_argument("--max-minutes", type=float, default=minutes, help="training time limit per run")
    commands.add_parser("smoothing", help="taylor: variants of the smoothed forecast, no network, vs MSTL-ETS")
    level = commands.add_parser("level", help="the smoothing alone from the last value, a level and a level in logs")
    level.add_argument(
        "--datasets", default=f"{field.get_default('datasets')},us_employment", help="field sets and us_employment"
    )
    unseen = commands.add_parser("unseen", help="test MASE on series held out of training, scaled by their history")
    unseen.add_argument("--config", type=Path, default=Path("configs/us_employment.yaml"))
    unseen.add_argument("--max-minutes", type=float, default=12.0, help="training time limit")
    train = commands.add_parser("train", help="s/epoch, origins/s and time to accuracy vs Darts and NeuralForecast")
    train.add_argument("--config", type=Path, default=Path("configs/lstm.yaml"), help="data split and sizes")
    train.add_argument("--cells", default="lstm,gru")
    train.add_argument("--peers", default="darts-rnn,darts-blockrnn,nf-lstm,nf-gru", help="comma-separated")
    train.add_argument("--epochs", type=int, default=10)
    train.add_argument("--seed", type=int, default=42, help="the peers' seed; seqcast's is in its config")
    commands.add_parser("report", help="writes docs/benchmarks.md from the results in --out")
    args = parser.parse_args(argv)

    if args.command == "report":
        from bench import page

        print(f"wrote {page.write(args.out)}")  # noqa: T201
    elif args.command == "streaming":
        from bench import streaming as streaming_bench

        streaming_bench.run(args.lengths, args.repeats, args.seconds, args.out).show(args.out)
    elif args.command == "memory":
        from bench import memory as memory_bench

        memory_bench.run(args.sessions, args.history, args.out).show(args.out)
    elif args.command == "serve" and args.peers is not None:
        peers = [peer for peer in args.peers.split(",") if peer]
        unknown = set(peers) - set(SERVE_PEERS)
        if unknown:
            parser.error(f"--peers: unknown {sorted(unknown)}; choose from {', '.join(SERVE_PEERS)}")
        _require(parser, *peers)
        from bench import serve_peers

        serve_peers.run(args.clients, args.lists, args.list_clients, args.seconds, peers, args.out).show(args.out)
    elif args.command == "serve":
        from bench import serve as serve_bench

        sizes = [serve_bench.SIZES[name] for name in args.sizes.split(",")]
        serve_bench.run(sizes, args.clients, args.seconds, args.out).show(args.out)
    elif args.command == "scoring":
        from bench import scoring as scoring_bench

        scoring_bench.run(args.clients, args.seconds, args.rounds, args.out).show(args.out)
    elif args.command == "shadow":
        from bench import scoring as scoring_bench

        scoring_bench.run_shadow(args.clients, args.seconds, args.rounds, args.out).show(args.out)
    elif args.command == "drift":
        from bench import drift as drift_bench

        drift_bench.run(args.epochs, args.shift, args.out).show(args.out)
    elif args.command == "migration":
        from bench import migration as migration_bench

        migration_bench.run(args.epochs, args.tails, args.wave, args.out).show(args.out)
    elif args.command == "probes":
        from bench import probes as probes_bench

        probes_bench.run(args.clients, args.seconds).show(args.out)
    elif args.command == "soak":
        from bench import soak as soak_bench

        soak_bench.run(args.clients, args.seconds, args.workers, args.interval, args.out).show(args.out)
    elif args.command in ("accuracy", "field"):
        _require(parser, args.command)
        from bench import accuracy as accuracy_bench

        known = accuracy_bench.CONFIGS if args.command == "accuracy" else accuracy_bench.FIELD
        datasets, cells = _datasets(parser, args.datasets, list(known)), args.cells.split(",")
        seeds = [int(seed) for seed in args.seeds.split(",")]
        accuracy_bench.run(datasets, cells, seeds, args.max_minutes, args.out, args.command).show(args.out)
    elif args.command == "smoothing":
        _require(parser, "smoothing")
        from bench import smoothing as smoothing_bench

        smoothing_bench.run(args.out).show(args.out)
    elif args.command == "level":
        from bench import accuracy as accuracy_bench
        from bench import level as level_bench

        known = [*accuracy_bench.FIELD, "us_employment"]
        level_bench.run(_datasets(parser, args.datasets, known)).show(args.out)
    elif args.command == "unseen":
        from bench import unseen as unseen_bench

        unseen_bench.run(args.config, args.max_minutes, args.out).show(args.out)
    elif args.command == "train":
        from bench import train as train_bench

        peers = [peer for peer in args.peers.split(",") if peer]
        unknown = set(peers) - set(train_bench.PEERS)
        if unknown:
            parser.error(f"--peers: unknown {sorted(unknown)}; choose from {', '.join(train_bench.PEERS)}")
        _require(parser, *peers)
        train_bench.run(args.config, args.cells.split(","), peers, args.epochs, args.seed, args.out).show(args.out)


if __name__ == "__main__":
    main()
