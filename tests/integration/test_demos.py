"""The demos run as a user runs them: `multiagents demo --scenario ...` in a
child process, each on its own embedded server."""

from __future__ import annotations

import asyncio
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import ROOT

pytestmark = pytest.mark.single_node  # each demo starts its own embedded Redis


async def demo(scenario: str, data_dir: Path) -> subprocess.CompletedProcess[str]:
    def call() -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "multiagents.cli", "demo", "--scenario", scenario,
             "--data-dir", str(data_dir)],
            cwd=ROOT, capture_output=True, text=True, timeout=120,
        )  # fmt: skip

    return await asyncio.to_thread(call)


async def test_the_dspy_demo_streams_tokens_into_watch_and_prints_usage_and_cost(
    tmp_path: Path,
) -> None:
    result = await demo("dspy", tmp_path / "dspy")
    assert result.returncode == 0, result.stderr[-2000:]
    out = result.stdout
    assert "$ multiagents watch " in out
    assert "output       explain" in out  # the live text, as `watch` prints it
    assert "because the Moon's gravity pulls" in out
    # 142 in, 48 out at $2.50 / $10.00 per million: $0.000835.
    assert "usage        in=142 out=48 tokens $0.000835 [offline/demo-writer]" in out


async def test_the_review_demo_fans_out_branches_and_answers_approvals(tmp_path: Path) -> None:
    result = await demo("review", tmp_path / "review")
    assert result.returncode == 0, result.stderr[-2000:]
    out = result.stdout
    assert out.count("inbox: ") == 2  # two drafts scored well enough to need an approval
    assert "route otherwise" in out and "route case 1" in out
    assert "COMPENSATED (Rejected: route/approval: rejected: demo reject)" in out
    assert out.count("COMPLETED") == 2
