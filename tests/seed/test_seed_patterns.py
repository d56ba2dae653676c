"""Every code pattern of the seed (the framework overview, not in this repository), run as
written on the real stack, with only the seed's placeholders filled in
(`perform_work`, `external_service_call`, `release_resource`, ...).

Each test says which section it runs and asserts what the seed says happens.
"""

from __future__ import annotations

import asyncio
import logging
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest

from multiagents import worker
from multiagents.core.exceptions import WorkerExecutionError
from multiagents.core.factory import create_simple_framework
from multiagents.monitoring import EventMonitor, MonitoringConfig, WorkerMonitor
from multiagents.orchestrator.workflow import WorkflowBuilder

logger = logging.getLogger("seed-tests")

# -- the seed's placeholders, filled in --------------------------------------------------------

released: list[str] = []
service_calls: list[dict[str, Any]] = []


def perform_work(value: Any) -> str:
    return f"processed:{value}"


def release_resource(resource_id: str) -> None:
    if resource_id == "stuck":
        raise RuntimeError("resource is locked")
    released.append(resource_id)


class ServiceUnavailableError(Exception):
    pass


async def external_service_call(context: dict[str, Any]) -> str:
    service_calls.append(context)
    behaviour = context.get("service")
    if behaviour == "timeout" and len(service_calls) < 2:
        raise TimeoutError
    if behaviour == "unavailable":
        raise ServiceUnavailableError
    if behaviour == "crash":
        raise KeyError("boom")
    return "service-ok"


# -- 1. Basic Worker Pattern -------------------------------------------------------------------


@worker("worker_name")
async def worker_function(context: dict[str, Any]) -> dict[str, Any]:
    required_field = context.get("required_field")
    if not required_field:
        raise ValueError("Missing required field")
    result = perform_work(required_field)
    return {"output_field": result, "status": "success", "timestamp": datetime.utcnow().isoformat()}


# -- 2. DSPy Worker Pattern (the LM is DSPy's own DummyLM: no network) ---------------------


def validate_output(dspy_result: dict[str, Any]) -> dict[str, Any]:
    if not dspy_result.get("output_field"):
        raise ValueError("empty LLM output")
    return dict(dspy_result)


def dspy_pattern_workers() -> Any:
    import dspy

    from multiagents import dspy_worker

    class WorkerSignature(dspy.Signature):
        """Define structured input/output for LLM."""

        input_field = dspy.InputField(desc="Input description")
        output_field = dspy.OutputField(desc="Output description")

    @dspy_worker("llm_worker", signature=WorkerSignature)
    async def llm_worker(context: dict[str, Any]) -> dict[str, Any]:
        return {"input_field": context.get("input"), "processing_type": "llm_analysis"}

    @llm_worker.post_process
    async def validate_llm_output(
        dspy_result: dict[str, Any], original_context: dict[str, Any]
    ) -> dict[str, Any]:
        validated_output = validate_output(dspy_result)
        validated_output["validation_timestamp"] = datetime.utcnow().isoformat()
        return validated_output

    return llm_worker


async def test_pattern_2_dspy_worker_runs_the_signature_and_post_process() -> None:
    import dspy
    from dspy.utils import DummyLM

    llm_worker = dspy_pattern_workers()
    workflow = WorkflowBuilder("llm_flow").add_step("analyse", "llm_worker").build()
    previous = dspy.settings.lm
    dspy.configure(lm=DummyLM([{"output_field": "a thoughtful analysis"}] * 3))
    parts = await setup_framework(workflow, [llm_worker])
    try:
        status = await execute_workflow(parts[2], "llm_flow", {"input": "quarterly report"})
    finally:
        await shutdown_framework(*parts)
        dspy.configure(lm=previous)
    assert status["state"] == "completed"
    result = status["step_results"]["analyse"]
    assert result["output_field"] == "a thoughtful analysis"
    assert result["processing_type"] == "llm_analysis"
    assert "validation_timestamp" in result


# -- 3./4. Workflow Definition and Compensation Worker Patterns --------------------------------


@worker("worker1")
async def worker1(context: dict[str, Any]) -> dict[str, Any]:
    return {"resource_id": f"res-{context['order']}", "step1": "done"}


@worker("worker2")
async def worker2(context: dict[str, Any]) -> dict[str, Any]:
    return {"payment_id": f"pay-{context['order']}", "step2": "done"}


@worker("worker3")
async def worker3(context: dict[str, Any]) -> dict[str, Any]:
    if context.get("fail_at_step3"):
        raise ValueError("step 3 rejects this order")
    return {"step3": "done", "saw": [context["resource_id"], context["payment_id"]]}


@worker("compensation_worker2")
async def compensation_worker2(context: dict[str, Any]) -> dict[str, Any]:
    released.append(context["payment_id"])
    return {"status": "success", "refunded": context["payment_id"]}


@worker("compensation_worker3")
async def compensation_worker3(context: dict[str, Any]) -> dict[str, Any]:
    released.append(f"step3:{context.get('step3')}")
    return {"status": "success"}


@worker("compensation_worker")
async def compensation_worker(context: dict[str, Any]) -> dict[str, Any]:
    resource_id = context.get("resource_id")
    if not resource_id:
        return {"status": "no_action_needed"}
    try:
        release_resource(resource_id)
        return {
            "status": "success",
            "resource_released": resource_id,
            "timestamp": datetime.utcnow().isoformat(),
        }
    except Exception as e:
        return {"status": "failed", "error": str(e), "requires_manual_intervention": True}


def create_workflow() -> Any:
    return (
        WorkflowBuilder("workflow_name")
        .add_step("step1", "worker1")
        .add_step("step2", "worker2", compensation="compensation_worker2")
        .add_step("step3", "worker3", compensation="compensation_worker3")
        .build()
    )


# -- 5. Framework Setup Pattern (verbatim) -----------------------------------------------------


async def setup_framework(workflow: Any, workers: list[Any]) -> Any:
    event_bus, worker_manager, orchestrator = await create_simple_framework(workflow)
    await event_bus.start()
    for worker_func in workers:
        worker_manager.register(worker_func)
    await worker_manager.start()
    await orchestrator.start()
    return event_bus, worker_manager, orchestrator


async def shutdown_framework(event_bus: Any, worker_manager: Any, orchestrator: Any) -> None:
    await worker_manager.stop()
    await orchestrator.stop()
    await event_bus.stop()


# -- 6. Workflow Execution Pattern (verbatim, with a 0.05 s poll) ------------------------------


async def execute_workflow(
    orchestrator: Any, workflow_name: str, input_data: dict[str, Any]
) -> Any:
    transaction_id = await orchestrator.execute_workflow(workflow_name, input_data)
    completed_states = {"completed", "failed", "compensated", "cancelled"}
    async with asyncio.timeout(30):
        while True:
            status = await orchestrator.get_status(transaction_id)
            if status["state"] in completed_states:
                return status
            await asyncio.sleep(0.05)  # Poll interval


@pytest.fixture
async def framework() -> Any:
    released.clear()
    service_calls.clear()
    workers = [
        worker1, worker2, worker3, compensation_worker2, compensation_worker3,
        worker_function, compensation_worker, error_handling_worker,
    ]  # fmt: skip
    parts = await setup_framework(create_workflow(), workers)
    yield parts
    await shutdown_framework(*parts)


async def test_pattern_1_and_6_basic_worker_runs_and_validation_is_not_retried(
    framework: Any,
) -> None:
    _, _, orchestrator = framework
    await orchestrator.register_workflow(
        WorkflowBuilder("basic").add_step("only", "worker_name").build()
    )
    ok = await execute_workflow(orchestrator, "basic", {"required_field": "abc"})
    assert ok["state"] == "completed"
    assert ok["step_results"]["only"]["output_field"] == "processed:abc"
    assert ok["current_step"] is None
    bad = await execute_workflow(orchestrator, "basic", {})
    assert bad["state"] == "failed"
    assert bad["error"] == "Missing required field"
    assert bad["steps"][0]["attempts"] == 1  # a validation error is never retried


async def test_pattern_3_and_5_context_flows_through_the_three_steps(framework: Any) -> None:
    _, _, orchestrator = framework
    status = await execute_workflow(orchestrator, "workflow_name", {"order": 1})
    assert status["state"] == "completed"
    assert status["step_results"]["step3"]["saw"] == ["res-1", "pay-1"]
    assert list(status["step_results"]) == ["step1", "step2", "step3"]


async def test_pattern_3_failure_compensates_completed_steps_in_reverse(framework: Any) -> None:
    _, _, orchestrator = framework
    status = await execute_workflow(
        orchestrator, "workflow_name", {"order": 2, "fail_at_step3": True}
    )
    assert status["state"] == "compensated"
    # step3 failed (not completed): only step2 has a completed step to undo;
    # step1 has no compensation.
    assert released == ["pay-2"]
    assert [s["status"] for s in status["steps"]] == ["completed", "compensated", "failed"]


async def test_pattern_4_compensation_worker_releases_or_flags_manual_intervention(
    framework: Any,
) -> None:
    _, _, orchestrator = framework
    wf = (
        WorkflowBuilder("allocate")
        .add_step("allocate", "worker1", compensation="compensation_worker")
        .add_step("reject", "worker_name")  # fails: no required_field
        .build()
    )
    await orchestrator.register_workflow(wf)
    status = await execute_workflow(orchestrator, "allocate", {"order": "x"})
    assert status["state"] == "compensated"
    assert released == ["res-x"]

    stuck = WorkflowBuilder("allocate_stuck")
    stuck.add_step("allocate", "worker3", compensation="compensation_worker")
    stuck.add_step("reject", "worker_name")
    await orchestrator.register_workflow(stuck.build())
    flagged = await execute_workflow(
        orchestrator, "allocate_stuck", {"resource_id": "stuck", "payment_id": "p"}
    )
    assert flagged["state"] == "failed"
    assert flagged["requires_manual_intervention"] is True


# -- Error Handling Pattern --------------------------------------------------------------------


@worker("error_handling_worker")
async def error_handling_worker(context: dict[str, Any]) -> dict[str, Any]:
    if not context.get("required_field"):
        raise ValueError("Missing required field")
    try:
        result = await external_service_call(context)
        return {"result": result, "status": "success"}
    except TimeoutError:
        raise WorkerExecutionError("Service timeout - retryable") from None
    except ServiceUnavailableError:
        return {
            "status": "service_unavailable",
            "error": "Service temporarily unavailable",
            "retry_later": True,
        }
    except Exception as e:
        raise WorkerExecutionError(f"Unexpected error: {e!s}") from None


@pytest.mark.parametrize(
    ("service", "state", "attempts", "expected"),
    [
        ("ok", "completed", 1, {"result": "service-ok", "status": "success"}),
        ("timeout", "completed", 2, {"result": "service-ok", "status": "success"}),
        ("unavailable", "completed", 1, {"status": "service_unavailable"}),
        ("crash", "failed", 3, None),
    ],
)
async def test_error_handling_pattern(
    framework: Any, service: str, state: str, attempts: int, expected: dict[str, Any] | None
) -> None:
    from multiagents.workflow import RetryPolicy

    _, _, orchestrator = framework
    wf = WorkflowBuilder(f"errors_{service}").add_step(
        "call", "error_handling_worker", retry=RetryPolicy(max_attempts=3, initial_interval=0.05)
    )
    await orchestrator.register_workflow(wf.build())
    status = await execute_workflow(
        orchestrator, f"errors_{service}", {"required_field": 1, "service": service}
    )
    assert status["state"] == state
    assert status["steps"][0]["attempts"] == attempts
    if expected is not None:
        assert expected.items() <= status["step_results"]["call"].items()
    else:
        assert status["error"] == "Unexpected error: 'boom'"


# -- Monitoring Integration --------------------------------------------------------------------


async def test_event_monitor_shows_the_full_lifecycle_with_latencies(framework: Any) -> None:
    _, _, orchestrator = framework
    event_monitor = EventMonitor(logger=logger)
    tx = await orchestrator.execute_workflow("workflow_name", {"order": 3})
    await orchestrator.wait(tx, timeout=20)
    lifecycle = await event_monitor.lifecycle(tx)
    await event_monitor.close()
    assert [t.step for t in lifecycle] == ["step1", "step2", "step3"]
    for t in lifecycle:
        assert t.success and t.error is None
        assert (
            t.dispatched_at is not None
            and t.picked_up_at is not None
            and t.completed_at is not None
        )
        assert t.dispatched_at <= t.picked_up_at <= t.completed_at
        assert t.queue_latency_ms >= 0 and t.processing_ms >= 0
        assert t.transaction_id == tx and t.correlation_id == tx


async def test_worker_monitor_shows_success_and_failure_rates(framework: Any) -> None:
    _, _, orchestrator = framework
    await orchestrator.register_workflow(
        WorkflowBuilder("basic").add_step("only", "worker_name").build()
    )
    worker_monitor = WorkerMonitor(logger=logger)
    for data in ({"required_field": 1}, {"required_field": 2}, {}):
        await orchestrator.wait(await orchestrator.execute_workflow("basic", data), timeout=20)
    tx = await orchestrator.execute_workflow("workflow_name", {"order": 4})
    await orchestrator.wait(tx, timeout=20)
    stats = await worker_monitor.stats("worker_name", "worker1")
    await worker_monitor.close()
    assert (stats["worker_name"].succeeded, stats["worker_name"].failed) == (2, 1)
    assert stats["worker_name"].success_rate == pytest.approx(2 / 3)
    assert stats["worker_name"].error_types == {"ValueError": 1}
    assert stats["worker1"].success_rate == 1.0  # always succeeds: 100 %
    assert stats["worker1"].health == "healthy"
    assert stats["worker1"].languages == ("python",)


# -- Configuration Patterns --------------------------------------------------------------------


def test_dspy_configuration_pattern_with_the_current_lm_api(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The seed's `dspy.OpenAI(...)` is gone from DSPy 3; the same pattern with `dspy.LM`."""
    import os

    import dspy

    def configure_dspy_for_environment() -> Any:
        env = os.getenv("ENVIRONMENT", "development")
        if env == "production":
            lm = dspy.LM(
                "openai/gpt-3.5-turbo",
                api_key=os.getenv("OPENAI_API_KEY"),
                max_tokens=300,
                temperature=0.3,
            )
        else:
            lm = dspy.LM(
                "openai/gpt-3.5-turbo",
                api_key=os.getenv("OPENAI_API_KEY"),
                max_tokens=200,
                temperature=0.8,
            )
        dspy.settings.configure(lm=lm)
        return lm

    assert not hasattr(dspy, "OpenAI")
    monkeypatch.setenv("ENVIRONMENT", "production")
    previous = dspy.settings.lm
    try:
        lm = configure_dspy_for_environment()
        assert dspy.settings.lm is lm
        assert (lm.kwargs["max_tokens"], lm.kwargs["temperature"]) == (300, 0.3)
    finally:
        dspy.settings.configure(lm=previous)


async def test_monitoring_configuration_from_file_and_from_keywords_takes_effect(
    tmp_path: Path,
) -> None:
    log_file = tmp_path / "framework.log"
    (tmp_path / "monitoring.yaml").write_text(
        "logging:\n"
        "  default_logger: file\n"
        f"  file_path: {log_file}\n"
        "  level: INFO\n"
        "event_monitoring:\n"
        "  enabled: false\n"
        "  trace_retention_hours: 24\n"
        "worker_monitoring:\n"
        "  enabled: true\n"
        "  health_check_interval_seconds: 30\n"
    )
    config = MonitoringConfig.from_file(tmp_path / "monitoring.yaml")
    assert config == MonitoringConfig(
        logging={"default_logger": "file", "level": "INFO", "file_path": str(log_file)},
        event_monitoring={"enabled": False, "trace_retention_hours": 24},
        worker_monitoring={"enabled": True, "health_check_interval_seconds": 30},
    )
    event_bus, worker_manager, orchestrator = await create_simple_framework(
        create_workflow(), monitoring_config=config
    )
    await event_bus.start()
    for w in (worker1, worker2, worker3, compensation_worker2, compensation_worker3):
        worker_manager.register(w)
    await worker_manager.start()
    await orchestrator.start()
    try:
        tx = await orchestrator.execute_workflow("workflow_name", {"order": 5})
        assert (await orchestrator.wait(tx, timeout=20))["state"] == "completed"
        monitor = EventMonitor(logger=logger)
        assert await monitor.lifecycle(tx) == []  # event_monitoring.enabled: false
        await monitor.close()
        workers = WorkerMonitor(logger=logger)
        assert (await workers.stats("worker1"))["worker1"].succeeded == 1
        await workers.close()
    finally:
        await shutdown_framework(event_bus, worker_manager, orchestrator)
    assert "server started" in log_file.read_text()  # logging.default_logger: file


def test_monitoring_configuration_rejects_unknown_keys_naming_them(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="event_monitoring: unknown keys retention"):
        MonitoringConfig(event_monitoring={"retention": 3})
    (tmp_path / "m.yaml").write_text("logging: {level: INFO}\nalerts: {}\n")
    with pytest.raises(ValueError, match="unknown keys alerts"):
        MonitoringConfig.from_file(tmp_path / "m.yaml")
    with pytest.raises(ValueError, match=r"logging\.default_logger"):
        MonitoringConfig(logging={"default_logger": "syslog"})


# -- Testing Strategies ------------------------------------------------------------------------


async def test_unit_testing_workers_pattern() -> None:
    context = {"input": "test_value", "required_field": "x"}
    result = await worker_function(context)
    assert result["status"] == "success"
    assert "output_field" in result


async def test_integration_testing_pattern() -> None:
    workflow = create_workflow()
    event_bus, worker_manager, orchestrator = await create_simple_framework(workflow)
    try:
        await event_bus.start()
        for w in (worker1, worker2, worker3, compensation_worker2, compensation_worker3):
            worker_manager.register(w)
        await worker_manager.start()
        await orchestrator.start()
        transaction_id = await orchestrator.execute_workflow("workflow_name", {"order": 6})
        status = await orchestrator.wait(transaction_id, timeout=20)
        assert status["state"] == "completed"
    finally:
        await shutdown_framework(event_bus, worker_manager, orchestrator)


async def test_two_frameworks_run_side_by_side_in_one_process() -> None:
    a = await setup_framework(create_workflow(), [worker1, worker2, worker3])
    b = await setup_framework(create_workflow(), [worker1, worker2, worker3])
    try:
        assert a[0].address != b[0].address
        results = await asyncio.gather(
            execute_workflow(a[2], "workflow_name", {"order": "a"}),
            execute_workflow(b[2], "workflow_name", {"order": "b"}),
        )
        assert [r["state"] for r in results] == ["completed", "completed"]
    finally:
        await shutdown_framework(*a)
        await shutdown_framework(*b)
