"""One definition, three builders: tests/fixtures/model_v2_definition.json (the
file form: every node kind, and a step's usage estimate and rate limits) and
its protobuf form model_v2_definition.proto.json (the RegisterWorkflowRequest,
protobuf JSON). The Python builder is checked here; the Node builder and
parseDefinition in workers/node/test/workflow.test.ts and the Go builder and
ParseDefinition in workers/go/client/workflow_test.go build the same one, so
the three cannot drift."""

from __future__ import annotations

import json

import jsonschema
from google.protobuf import json_format

from conftest import ROOT
from multiagents import Estimate, LimitKey, WorkflowBuilder, branch, case, case_equals, step
from multiagents.v1 import workflow_pb2, workflow_service_pb2
from multiagents.workflow import Condition, RetryPolicy, Sleep, Step, Workflow
from multiagents_server.convert import spec_from_proto

FIXTURES = ROOT / "tests" / "fixtures"
SCHEMA = json.loads((ROOT / "docs" / "definition.schema.json").read_text())
KINDS = ("parallel", "map", "condition", "wait_for_signal", "sleep")
FILE_FORM = json.loads((FIXTURES / "model_v2_definition.json").read_text())


def proto_form() -> workflow_pb2.WorkflowDefinition:
    request = json_format.Parse(
        (FIXTURES / "model_v2_definition.proto.json").read_text(),
        workflow_service_pb2.RegisterWorkflowRequest(),
    )
    return request.definition


def every_kind() -> Workflow:
    """The fixture, built with the Python builder."""
    return (
        WorkflowBuilder(
            "model_v2_every_kind",
            version=2,
            description="Every node kind of workflow model v2; the Python, Node and Go "
            "builders must give model_v2_definition.proto.json",
        )
        .add_step(
            "book",
            "book_slot",
            "release_slot",
            timeout=30,
            heartbeat_timeout=2.5,
            retry=RetryPolicy(
                max_attempts=5,
                initial_interval=0.25,
                backoff_coefficient=1.5,
                maximum_interval=10,
                non_retryable_error_types=("ValueError", "Rejected"),
            ),
            compensation_retry=RetryPolicy(max_attempts=2),
            estimate=Estimate(input_tokens=1500, output_tokens=500, cost_usd=0.002),
            rate_limits=["provider:openai", LimitKey(expression='"tenant:" + context.customer_id')],
        )
        .add_parallel(
            "ask",
            [
                branch("research", step("research_review", "research_agent")),
                branch(
                    "legal",
                    step("legal_review", "legal_agent", timeout=60),
                    Step("legal_sign_off", "", "unsign", workflow="sign_off", workflow_version=3),
                ),
                branch(
                    "critic",
                    step("critic_review", "critic_agent"),
                    Condition(
                        "critic_gate",
                        (case("has(context.critic_review_done)", Sleep("critic_rest", 0.25)),),
                    ),
                ),
            ],
            fail_fast=False,
        )
        .add_parallel("fan_in", [branch("only", step("collect", "collector"))])
        .add_map(
            "each",
            "context.documents",
            step("summarize_one", "summarizer", retry=RetryPolicy(max_attempts=2)),
            max_concurrency=20,
        )
        .add_map("each_child", "context.orders", Step("process_order", "", workflow="order"))
        .add_condition(
            "route",
            [
                case("context.ask.legal.score >= 0.8", step("publish", "publisher")),
                case("context.ask.legal.score >= 0.5"),
            ],
            otherwise=[step("revise", "reviser", "unrevise")],
        )
        .add_condition(
            "by_kind",
            [
                case_equals("invoice", step("bill", "biller")),
                case_equals(2, Step("pay_back", "", workflow="refund")),
                case_equals(True),
                case_equals(["a", 1.5], step("listed", "lister")),
                case_equals({"tier": "gold", "n": 3}, step("gold", "goldsmith")),
            ],
            switch="context.kind",
        )
        .add_wait_for_signal("approval", "approval", approval=True, timeout=3600)
        .add_wait_for_signal("nudge", "nudge", timeout=1.5, on_timeout=[step("remind", "reminder")])
        .add_wait_for_signal("maybe_go", "go", timeout=60, on_timeout=[])
        .add_wait_for_signal("done", "done")
        .add_sleep("cool_down", 600)
        .build()
    )


def test_the_fixture_file_is_valid_and_reads_as_the_fixture_proto() -> None:
    jsonschema.validate(FILE_FORM, SCHEMA)
    assert Workflow.from_dict(FILE_FORM).to_proto() == proto_form()


def test_the_python_builder_builds_the_fixture_proto() -> None:
    assert every_kind().to_proto() == proto_form()


def test_the_fixture_uses_every_node_kind_and_the_server_accepts_it() -> None:
    proto = proto_form()
    kinds: set[str] = set()

    def walk(steps: list[workflow_pb2.StepDefinition]) -> None:
        for s in steps:
            kinds.update(k for k in KINDS if s.HasField(k))
            kinds.update(k for k in ("worker", "workflow") if getattr(s, k))
            for b in s.parallel.branches:
                walk(list(b.steps))
            if s.HasField("map"):
                walk([s.map.step])
            for c in s.condition.cases:
                walk(list(c.steps))
            walk(list(s.condition.otherwise))
            walk(list(s.wait_for_signal.on_timeout))

    walk(list(proto.steps))
    assert kinds == {"worker", "workflow", *KINDS}
    spec = spec_from_proto(proto, default_timeout_ms=30_000)
    assert [n.name for n in spec.steps] == [s["name"] for s in FILE_FORM["steps"]]
