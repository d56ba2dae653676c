"""Bad input and a hostile environment, as a user meets them: the real
`multiagents` command run as a subprocess must print exactly one line,
`error: <the problem>` (with file and line for a syntax error), no
traceback, and exit with 2."""

from __future__ import annotations

import asyncio
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from conftest import ROOT
from integration.helpers import make_config
from multiagents_server.app import Server
from multiagents_server.embedded_redis import EmbeddedRedis, free_port

# Every command here must end by itself well before this; a hang fails the test.
EXIT_TIMEOUT_S = 30


def run_cli(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """The command with no MULTIAGENTS_* setting of the caller's environment but `env`."""
    clean = {k: v for k, v in os.environ.items() if not k.startswith("MULTIAGENTS_")}
    return subprocess.run(
        [sys.executable, "-m", "multiagents.cli", *args],
        cwd=ROOT, capture_output=True, text=True, timeout=EXIT_TIMEOUT_S,
        env={**clean, **(env or {})},
    )  # fmt: skip


async def cli(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """The CLI in a thread, so a server in this event loop keeps serving it."""
    return await asyncio.to_thread(run_cli, *args, env=env)


def assert_one_line_error(result: subprocess.CompletedProcess[str], *fragments: str) -> str:
    """Exit 2 and stderr exactly one `error: ...` line holding every fragment."""
    lines = result.stderr.splitlines()
    assert result.returncode == 2, result.stderr
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    assert "Traceback" not in result.stdout
    for fragment in fragments:
        assert fragment in lines[0], (fragment, lines[0])
    return lines[0]


# -- definition files ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("filename", "text", "fragments"),
    [
        pytest.param(
            "wf.yaml",
            "name: x\nversion: 1\nsteps:\n  - {name: a, worker: b\n  - oops: [\n",
            [":5:9: invalid YAML: expected ',' or '}', but got ':'"],
            id="malformed-yaml",
        ),
        pytest.param(
            "wf.yml",
            "name: x\nsteps:\n\t- {name: a}\n",
            [":3:1: invalid YAML: found character '\\t' that cannot start any token"],
            id="yaml-tab",
        ),
        pytest.param(
            "wf.json",
            '{"name": "x",\n "version": 1,\n "steps": [}\n',
            [":3:12: invalid JSON: Expecting value"],
            id="malformed-json",
        ),
        pytest.param("wf.yaml", "", ["the file is empty"], id="empty-yaml"),
        pytest.param("wf.json", "\n  \n", ["the file is empty"], id="empty-json"),
        pytest.param("wf.yaml", "# nothing yet\n", ["the file is empty"], id="yaml-only-comments"),
        pytest.param("wf.yaml", "- a\n- b\n", ["expected a mapping", "got list"], id="yaml-list"),
        pytest.param(
            "wf.yaml",
            "name: x\nversion: 1\nsteps:\n"
            "  - {name: a, worker: b, retry: {max_attempts: 3, max_retries: 9}}\n",
            ["workflow.steps[0].retry: unknown keys ['max_retries']", "max_attempts"],
            id="unknown-retry-key",
        ),
        pytest.param(
            "wf.json",
            '{"name": "x", "steps": [{"name": "a", "worker": "b",'
            ' "compensation": "c", "compensation_retry": {"backoff": 2}}]}',
            ["workflow.steps[0].compensation_retry: unknown keys ['backoff']"],
            id="unknown-compensation-retry-key",
        ),
    ],
)
async def test_register_rejects_a_bad_definition_file_in_one_line(
    server: Server, tmp_path: Path, filename: str, text: str, fragments: list[str]
) -> None:
    path = tmp_path / filename
    path.write_text(text)
    result = await cli("register", str(path), "--server", server.address)
    line = assert_one_line_error(result, *fragments)
    assert line.startswith(f"error: {path}")  # the file is named first


async def test_a_valid_definition_file_still_registers(
    server: Server, tmp_path: Path, uid: str
) -> None:
    # The control of the cases above: the same server accepts a good file.
    path = tmp_path / "wf.yaml"
    path.write_text(
        f"name: {uid}.wf\nversion: 1\nsteps:\n"
        f"  - {{name: a, worker: {uid}.w, retry: {{max_attempts: 3, initial_interval: 0.5}}}}\n"
    )
    result = await cli("register", str(path), "--server", server.address)
    assert (result.returncode, result.stderr) == (0, "")
    assert f"registered: {uid}.wf v1" in result.stdout


# -- serve ---------------------------------------------------------------------------------


async def test_serve_rejects_an_invalid_log_level(tmp_path: Path) -> None:
    result = await cli("serve", "--log-level", "LOUD", "--port", "0", "--data-dir", str(tmp_path))
    assert_one_line_error(result, "log_level", "'LOUD'", "DEBUG, INFO, WARNING, ERROR")
    assert not (tmp_path / "redis").exists()  # nothing was started


async def test_serve_rejects_a_malformed_config_file(tmp_path: Path) -> None:
    config = tmp_path / "server.yaml"
    config.write_text("port: 0\nredis_url: [redis://x\n")
    result = await cli("serve", "--config", str(config), "--data-dir", str(tmp_path))
    assert_one_line_error(result, f"config file {config}:3:1: invalid YAML")


async def test_serve_rejects_a_sampler_arg_that_is_no_ratio(tmp_path: Path) -> None:
    """With tracing on and no OTEL_TRACES_SAMPLER, the default sampler's ratio."""
    env = {"OTEL_TRACES_EXPORTER": "console", "OTEL_TRACES_SAMPLER_ARG": "10%"}
    result = await cli("serve", "--port", "0", "--data-dir", str(tmp_path), env=env)
    assert_one_line_error(result, "OTEL_TRACES_SAMPLER_ARG", "'10%'", "between 0 and 1")
    assert not (tmp_path / "redis").exists()  # nothing was started


async def test_serve_on_a_port_in_use_fails_in_one_line(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = await cli("serve", "--port", str(port), "--data-dir", str(tmp_path / "data"))
    assert_one_line_error(result, f"127.0.0.1:{port}", "already in use")
    assert not (tmp_path / "data" / "redis").exists()  # checked before Redis starts


async def test_serve_with_an_unreachable_redis_fails_fast_in_one_line(tmp_path: Path) -> None:
    closed = free_port()  # bound a moment ago, closed now: nothing listens there
    started = time.monotonic()
    result = await cli(
        "serve", "--redis-url", f"redis://127.0.0.1:{closed}/0", "--port", "0",
        "--data-dir", str(tmp_path),
    )  # fmt: skip
    assert time.monotonic() - started < 10
    assert_one_line_error(result, "cannot reach Redis at redis://", f"127.0.0.1:{closed}")


# -- worker --------------------------------------------------------------------------------


async def test_worker_without_its_token_stops_in_one_line(
    redis_server: EmbeddedRedis, tmp_path: Path, uid: str
) -> None:
    module = tmp_path / f"{uid}_workers.py"
    module.write_text(
        "from multiagents import worker\n\n"
        f"@worker('{uid}.w')\nasync def w(ctx):\n    return {{}}\n"
    )
    config = make_config(redis_server.url, worker_tokens=("worker-secret",))
    async with Server(config) as secured:
        # The run() timeout is the bound: a worker retrying forever fails the test.
        result = await cli("worker", str(module), "--server", secured.address)
        wrong = await cli("worker", str(module), "--server", secured.address, "--token", "not-it")
    assert_one_line_error(result, secured.address, "UNAUTHENTICATED", "--token")
    assert_one_line_error(wrong, "UNAUTHENTICATED")


# -- duplicate worker names ----------------------------------------------------------------


async def test_two_workers_with_one_name_are_rejected(tmp_path: Path, uid: str) -> None:
    for stem, fn in (("first", "one"), ("second", "two")):
        (tmp_path / f"{uid}_{stem}.py").write_text(
            "from multiagents import worker\n\n"
            f"@worker('{uid}.same')\nasync def {fn}(ctx):\n    return {{}}\n"
        )
    result = await cli(
        "worker", str(tmp_path / f"{uid}_first.py"), str(tmp_path / f"{uid}_second.py"),
        "--server", "127.0.0.1:1",
    )  # fmt: skip
    assert_one_line_error(
        result, f"two @worker functions named '{uid}.same'", f"{uid}_first.one", f"{uid}_second.two"
    )
