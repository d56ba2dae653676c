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


def test_the_review_demo_file_is_the_review_demos_workflow() -> None:
    from multiagents.cli import load_definition, load_demo

    load_demo()
    from multiagents_demo.review_workers import review_workflow  # type: ignore[import-not-found]

    path = ROOT / "workers" / "python" / "article_review.yaml"
    from_file = Workflow.from_dict(load_definition(str(path)))
    assert from_file.to_proto() == review_workflow().to_proto()


def test_the_schema_covers_the_workflow_model_v2_kinds() -> None:
    full = {
        "name": "wf",
        "steps": [
            {"name": "p", "parallel": {"fail_fast": False, "branches": [
                {"name": "a", "steps": [{"name": "a1", "worker": "w"}]}]}},
            {"name": "m", "map": {"items": "context.xs", "max_concurrency": 5,
                                  "step": {"name": "m1", "worker": "w"}}},
            {"name": "c", "condition": {"switch": "context.kind", "cases": [
                {"equals": "x", "steps": [{"name": "c1", "worker": "w"}]}],
                "otherwise": []}},
            {"name": "s", "wait_for_signal": {"signal": "go", "timeout": 5, "on_timeout": []}},
            {"name": "z", "sleep": 1.5},
        ],
    }  # fmt: skip
    jsonschema.validate(full, SCHEMA)
    proto = Workflow.from_dict(full).to_proto()
    assert [s.name for s in proto.steps] == list("pmcsz")
    assert proto.steps[4].sleep.duration.ToMilliseconds() == 1500
    assert proto.steps[3].wait_for_signal.continue_on_timeout
    for bad in (
        {"name": "wf", "steps": [{"name": "p", "parallel": {"branches": []}}]},
        {"name": "wf", "steps": [{"name": "z", "sleep": 1, "worker": "w"}]},
        {"name": "wf", "steps": [{"name": "a/b", "worker": "w"}]},
    ):
        with pytest.raises(jsonschema.ValidationError):
            jsonschema.validate(bad, SCHEMA)
    with pytest.raises(ValueError, match=r"steps\[0\]: set one of"):
        Workflow.from_dict({"name": "wf", "steps": [{"name": "z", "sleep": 1, "map": {}}]})
