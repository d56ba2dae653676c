"""The SDK installed alone: it imports, runs its worker side, and says in one
line what is missing when asked to start a server. The server package is
hidden from a child interpreter (`sys.modules["multiagents_server"] = None`
makes every import of it fail, as if it were not installed)."""

from __future__ import annotations

import importlib
import subprocess
import sys
import textwrap
import tomllib

import pytest

from conftest import ROOT
from multiagents import ServerNotInstalledError
from multiagents._server import load

HIDE_THE_SERVER = "import sys; sys.modules['multiagents_server'] = None\n"


def run_without_server(code: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", HIDE_THE_SERVER + textwrap.dedent(code)],
        cwd=ROOT, capture_output=True, text=True, timeout=60,
    )  # fmt: skip


def test_every_sdk_module_imports_without_loading_the_server_redis_dspy_or_yaml() -> None:
    result = run_without_server(
        """
        import multiagents, multiagents.cli, multiagents.client, multiagents.runtime
        import multiagents.monitoring, multiagents.dspy, multiagents.wire
        import multiagents.core.factory, multiagents.core.exceptions
        import multiagents.orchestrator.workflow
        loaded = {name.partition(".")[0] for name in sys.modules if sys.modules[name]}
        print(sorted(loaded & {"multiagents_server", "redis", "dspy", "yaml"}))
        """
    )
    assert (result.returncode, result.stdout, result.stderr) == (0, "[]\n", "")


def test_serve_without_the_server_is_a_one_line_error() -> None:
    result = run_without_server("from multiagents.cli import main; sys.exit(main(['serve']))")
    assert result.returncode == 2, result.stderr
    assert result.stderr.count("\n") == 1
    assert result.stderr.startswith("error: the MultiAgents server cannot be loaded")
    assert "pip install multiagents-server" in result.stderr


def test_the_framework_without_the_server_fails_on_start_with_the_install_hint() -> None:
    result = run_without_server(
        """
        import asyncio
        from multiagents import ServerNotInstalledError, WorkflowBuilder
        from multiagents.core.factory import create_simple_framework

        async def main():
            wf = WorkflowBuilder("wf").add_step("a", "worker_a").build()
            event_bus, _, _ = await create_simple_framework(wf)
            try:
                await event_bus.start()
            except ServerNotInstalledError as exc:
                print(exc)

        asyncio.run(main())
        """
    )
    assert result.returncode == 0, result.stderr
    assert "pip install multiagents-server" in result.stdout


def test_an_entry_point_nobody_declares_is_server_not_installed() -> None:
    with pytest.raises(ServerNotInstalledError, match="is not installed"):
        load("cli", group="multiagents.no-such-group")


def test_every_declared_entry_point_names_a_callable() -> None:
    sdk = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    server = tomllib.loads((ROOT / "server" / "pyproject.toml").read_text())["project"]
    declared = {
        **sdk["scripts"],
        **server["scripts"],
        **server["entry-points"]["multiagents.server"],
    }
    assert set(server["entry-points"]["multiagents.server"]) == {"cli", "embedded"}
    for name, target in declared.items():
        module, _, attribute = target.partition(":")
        assert callable(getattr(importlib.import_module(module), attribute)), name


def test_the_sdk_and_the_server_are_two_distributions_and_only_the_server_needs_the_other() -> None:
    sdk = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    server = tomllib.loads((ROOT / "server" / "pyproject.toml").read_text())["project"]
    assert (sdk["name"], server["name"]) == ("multiagents", "multiagents-server")
    assert sdk["dependencies"] == ["grpcio>=1.85,<1.86", "protobuf>=7.36,<8"]
    assert f"multiagents=={sdk['version']}" in server["dependencies"]
    extras = " ".join(d for deps in sdk["optional-dependencies"].values() for d in deps)
    assert "server" not in extras and "redis[" not in extras.replace("celery[redis]", "")
