"""CPU of tracing one 3-step workflow in the server, without the rest of the
server: the engine runs the workflow (start, three answers) and the server's
observability hooks see what a server's would (the submit span, each
command's `traceparent`, each commit), with no tracer provider (`off`), with
every workflow traced (`all`) and with a share of them (`sampled`). Traces
go as in `multiagents serve`: the SDK's batch span processor and the OTLP
exporter (configured from the OTEL_* variables by `configure_from_env`),
sending to a receiver process (bench/otlp_sink.py). Each setting runs in a
process of its own; its CPU (process time: the export thread's included,
the receiver's not) is measured over the workflows and the export of their
spans. The median of `--repeat` rounds, settings taken in turn.

    python -m bench.tracing [--workflows 5000] [--repeat 5] [--trace-sample 0.1]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from bench import procs
from multiagents_server.embedded_redis import free_port

SETTINGS = ("off", "all", "sampled")


def run_workflows(count: int) -> float:
    """Run `count` workflows through the engine and the hooks; the process
    CPU seconds they took, the export of their spans included."""
    from opentelemetry import trace

    from multiagents_server import engine, observability
    from multiagents_server.observability import tracing

    tracing.configure_from_env()
    steps = tuple(
        engine.StepSpec(n, f"bench_step{i}") for i, n in enumerate(("one", "two", "three"))
    )
    spec = engine.WorkflowSpec("bench3", 1, steps)

    def one(i: int) -> None:
        now = int(time.time() * 1000)
        metadata: dict[str, str] = {}
        with observability.submit_span(spec.name, metadata):
            t = engine.start(
                spec, transaction_id=f"tx{i}", correlation_id="", input={"n": i}, now_ms=now,
                metadata=metadata,
            )  # fmt: skip
            observability.committed(t, now)
        while t.execution.state is not engine.State.COMPLETED:
            (command,) = [e for e in t.effects if isinstance(e, engine.DispatchCommand)]
            tracing.command_metadata(t.execution, command.command_id)  # the command sent
            tracing.attempt_timing(command.command_id, now, now)  # its delivery, answer
            t = engine.apply(t.execution, engine.StepCompleted(command.command_id, {"ok": 1}), now)
            observability.committed(t, now)

    for i in range(min(count, 200)):  # warm up: imports, caches
        one(-i - 1)
    provider = trace.get_tracer_provider()
    flush = getattr(provider, "force_flush", lambda: True)
    flush()
    start = time.process_time()
    for i in range(count):
        one(i)
    flush()
    return time.process_time() - start


def setting_env(setting: str, sample: float, receiver_port: int) -> dict[str, str]:
    if setting == "off":
        return {"OTEL_SDK_DISABLED": "true"}
    ratio = 1.0 if setting == "all" else sample
    return {
        "OTEL_EXPORTER_OTLP_ENDPOINT": f"http://127.0.0.1:{receiver_port}",
        "OTEL_TRACES_SAMPLER": "parentbased_traceidratio",
        "OTEL_TRACES_SAMPLER_ARG": str(ratio),
    }


def measure(setting: str, args: argparse.Namespace, receiver_port: int) -> float:
    """Microseconds of CPU per workflow of one setting, in a process of its own."""
    out = subprocess.run(
        [sys.executable, "-m", "bench.tracing", "--child", "--workflows", str(args.workflows)],
        env={**os.environ, **setting_env(setting, args.trace_sample, receiver_port)},
        cwd=Path(__file__).resolve().parent.parent,
        check=True,
        capture_output=True,
        text=True,
    )
    seconds = json.loads(out.stdout.strip().splitlines()[-1])["cpu_s"]
    return float(seconds) / args.workflows * 1e6


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.tracing", description=__doc__)
    parser.add_argument("--workflows", type=int, default=5000)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--trace-sample", type=float, default=0.1)
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        print(json.dumps({"cpu_s": run_workflows(args.workflows)}), flush=True)
        return 0
    work = Path(tempfile.mkdtemp(prefix="ma-bench-tracing-"))
    port = free_port()
    receiver = procs.start(
        "otlp-receiver", [sys.executable, "-m", "bench.otlp_sink", "--port", str(port)], work
    )
    try:
        procs.wait_for_line(receiver, "listening on")
        runs: dict[str, list[float]] = {s: [] for s in SETTINGS}
        for _ in range(args.repeat):
            for setting in SETTINGS:
                runs[setting].append(measure(setting, args, port))
    finally:
        receiver.stop()
    print(receiver.log.read_text().strip().splitlines()[-1])
    shutil.rmtree(work, ignore_errors=True)
    off = statistics.median(runs["off"])
    print(f"CPU per 3-step workflow, the engine and the observability hooks ({args.workflows} "
          f"workflows, median of {args.repeat} rounds; runs in µs):")  # fmt: skip
    for setting in SETTINGS:
        mid = statistics.median(runs[setting])
        each = " ".join(f"{r:.0f}" for r in runs[setting])
        extra = "" if setting == "off" else f", tracing {mid - off:.0f} µs"
        label = f"sampled {args.trace_sample:g}" if setting == "sampled" else setting
        print(f"{label:12} {mid:6.0f} µs [{each}]{extra}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
