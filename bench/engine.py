"""CPU of the pure engine and its codec for one 3-step workflow: start,
three answers, each new state encoded as a commit stores it (the cached path
of a replica); with `--decode`, also decoded at every step (a replica that
loads the state each time). Best of `--repeat` rounds, process time.

    python -m bench.engine [--workflows 3000] [--repeat 5] [--decode]

Compare two checkouts by running it with each one's server on PYTHONPATH.
"""

from __future__ import annotations

import argparse
import json
import time

from multiagents_server import engine
from multiagents_server.engine import codec


def one_workflow(spec: engine.WorkflowSpec, i: int, decode: bool) -> None:
    t = engine.start(spec, transaction_id=f"t{i}", correlation_id="", input={"x": i}, now_ms=0)
    for k in range(3):
        stored = json.dumps(codec.execution_to_json(t.execution))
        ex = codec.execution_from_json(json.loads(stored)) if decode else t.execution
        t = engine.apply(ex, engine.StepCompleted(f"t{i}:x{k}:1", {f"r{k}": k}), 1)
    assert t.execution.state is engine.State.COMPLETED


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--workflows", type=int, default=3000)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--decode", action="store_true")
    args = parser.parse_args()
    steps = tuple(engine.StepSpec(n, f"w_{n}", compensation=f"u_{n}") for n in "abc")
    spec = engine.WorkflowSpec("wf", 1, steps)
    best = float("inf")
    for _ in range(args.repeat):
        start = time.process_time()
        for i in range(args.workflows):
            one_workflow(spec, i, args.decode)
        best = min(best, time.process_time() - start)
    print(f"{best / args.workflows * 1e6:.0f} us of engine and codec per 3-step workflow")


if __name__ == "__main__":
    main()
