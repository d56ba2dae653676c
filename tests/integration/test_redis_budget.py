"""DESIGN §4a's Redis budget, counted by `bench.roundtrips` (counts, not
timings: they hold on a loaded machine). A change that adds commands to the
path of every workflow — a per-bucket read in GetStatus cost 64 — fails here
before a benchmark run notices it."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
COMMANDS = r"redis commands on the workflow's path: ([\d.]+)"
TRIPS_PER_STEP = r"round trips on the workflow's path: [\d.]+ \(([\d.]+) per step\)"


@pytest.mark.timeout(300)
def test_a_three_step_workflow_stays_within_the_redis_budget() -> None:
    if os.environ.get("MULTIAGENTS_TEST_REDIS") == "cluster":
        pytest.skip("the benchmark counts on its own embedded single-node Redis")
    out = subprocess.run(
        [sys.executable, "-m", "bench.roundtrips", "--sequential", "10", "--burst", "100"],
        cwd=ROOT, capture_output=True, text=True, timeout=280, check=True,
    ).stdout  # fmt: skip
    commands = [float(x) for x in re.findall(COMMANDS, out)]
    trips = [float(x) for x in re.findall(TRIPS_PER_STEP, out)]
    assert len(commands) == len(trips) == 2, out
    # Goal: at most 20 commands per 3-step workflow, one at a time or in a burst.
    assert max(commands) <= 20, out
    # Goal: 1-2 Redis calls per step, amortised: a burst shares its pipelines.
    assert trips[1] <= 2, out
