"""One definition file format: docs/definition.schema.json describes what
`multiagents register` reads, and every example definition of the repository
(files, and the YAML in README.md) is valid against it and registers."""

from __future__ import annotations

import json
import re
import subprocess
from typing import Any

import jsonschema
import pytest
import yaml

from conftest import ROOT
from multiagents.workflow import Workflow

SCHEMA = json.loads((ROOT / "docs" / "definition.schema.json").read_text())


def example_definitions() -> list[tuple[str, Any]]:
    """Every definition file tracked in the repository, and README's YAML blocks
    that hold a definition."""
    tracked = subprocess.run(
        ["git", "ls-files", "*.json", "*.yaml", "*.yml"],
        cwd=ROOT, capture_output=True, text=True, check=True,
    ).stdout.split()  # fmt: skip
    found: list[tuple[str, Any]] = []
    for name in tracked:
        path = ROOT / name
        if "node_modules" in name or not path.is_file():
            continue
        text = path.read_text()
        data = json.loads(text) if name.endswith(".json") else yaml.safe_load(text)
        if isinstance(data, dict) and "steps" in data:
            found.append((name, data))
    readme = (ROOT / "README.md").read_text()
    for i, block in enumerate(re.findall(r"```yaml\n(.*?)```", readme, re.S)):
        data = yaml.safe_load(block)
        if isinstance(data, dict) and "steps" in data:
            found.append((f"README.md yaml block {i}", data))
    return found


EXAMPLES = example_definitions()


def test_the_repository_has_example_definitions() -> None:
    names = [name for name, _ in EXAMPLES]
    assert "workers/go/cmd/submit/example-workflow.json" in names
    assert any(name.startswith("README.md") for name in names)


@pytest.mark.parametrize(("name", "data"), EXAMPLES, ids=[n for n, _ in EXAMPLES])
def test_every_example_definition_is_valid_and_registers(name: str, data: Any) -> None:
    jsonschema.validate(data, SCHEMA)
    Workflow.from_dict(data).to_proto()  # what `multiagents register` does with it


def test_the_schema_covers_every_key_register_accepts_and_refuses_others() -> None:
    retry = {"max_attempts": 5, "initial_interval": 0.5, "backoff_coefficient": 3,
             "maximum_interval": 10, "non_retryable_error_types": ["ValueError"]}  # fmt: skip
    full = {
        "name": "wf", "version": 2, "description": "d",
        "steps": [
            {"name": "a", "worker": "w", "compensation": "c", "retry": retry,
             "compensation_retry": retry, "timeout": 30, "heartbeat_timeout": 5},
            {"name": "b", "workflow": "child", "workflow_version": 1},
        ],
    }  # fmt: skip
    jsonschema.validate(full, SCHEMA)
    Workflow.from_dict(full)
    old_go_form = {
        "name": "wf",
        "steps": [
            {"name": "a", "worker": "w", "retryPolicy": {"maximumAttempts": 3}, "timeout": "30s"}
        ],
    }
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(old_go_form, SCHEMA)
    with pytest.raises(ValueError, match="retryPolicy"):
        Workflow.from_dict(old_go_form)
    for bad in ({"name": "wf", "steps": [{"name": "a"}]},
                {"name": "wf", "steps": [{"name": "a", "worker": "w", "workflow": "x"}]},
                {"name": "wf", "steps": []}):  # fmt: skip
        with pytest.raises(jsonschema.ValidationError):
            jsonschema.validate(bad, SCHEMA)


def test_the_demo_definition_file_is_the_demos_workflow() -> None:
    from multiagents.cli import load_definition, load_demo

    load_demo()  # loads the package multiagents_demo from workers/python
    from multiagents_demo.order_workers import order_workflow  # type: ignore[import-not-found]

    path = ROOT / "workers" / "python" / "order_processing.yaml"
    from_file = Workflow.from_dict(load_definition(str(path)))
    assert from_file.to_proto() == order_workflow().to_proto()
