"""The Dockerfile and docker-compose.yml cannot be run here (no Docker on the
development machine); this checks what can be checked without it: the files
they copy and run exist, and the settings they pass are server settings."""

from __future__ import annotations

import dataclasses
import re

import yaml

from conftest import ROOT
from multiagents_server.config import ServerConfig

SETTINGS = {f.name for f in dataclasses.fields(ServerConfig)}


def _setting_names(env: dict[str, str]) -> set[str]:
    return {k.removeprefix("MULTIAGENTS_").lower() for k in env if k != "MULTIAGENTS_SERVER"}


def test_the_dockerfile_copies_files_of_the_repository_and_sets_server_settings() -> None:
    text = (ROOT / "Dockerfile").read_text()
    for sources in re.findall(r"^COPY (.+) \S+$", text, re.M):
        for source in sources.split():
            assert (ROOT / source).exists(), source
    env = dict(re.findall(r"(MULTIAGENTS_\w+)=(\S+)", text))
    assert env["MULTIAGENTS_HOST"] == "0.0.0.0"
    assert _setting_names(env) <= SETTINGS


def test_compose_runs_server_redis_and_the_demo_worker() -> None:
    compose = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    services = compose["services"]
    assert set(services) == {"redis", "server", "worker"}
    server_env = services["server"]["environment"]
    assert server_env["MULTIAGENTS_REDIS_URL"].startswith("redis://redis:")
    assert _setting_names(server_env) <= SETTINGS
    worker = services["worker"]
    assert worker["command"][:2] == ["multiagents", "worker"]
    assert (ROOT / worker["command"][2]).is_file()
    assert worker["environment"]["MULTIAGENTS_SERVER"] == "server:50051"
    assert (ROOT / "workers/python/order_processing.yaml").is_file()  # registered in the README
