"""Workers of the multi-agent review workflow (workflow model v2): three
agents review a draft at once, a condition branches on their scores, a
person approves the publication, and a rejected one gives the booked
publication slot back.

    book_slot [release_slot]
    -> reviews: parallel { research | critic | fact_check }
    -> route: condition on the mean score
         >= 0.6: approval (wait for a person) -> publish
         else:   revise

Deterministic agents (no model needed), so the demo runs anywhere; an LLM
agent is the same `@worker` with a DSPy program inside (docs/dspy.md).
Serve them with `multiagents worker workers/python/multiagents_demo/review_workers.py`.
"""

from __future__ import annotations

import hashlib
from typing import Any

from multiagents import WaitForSignal, WorkflowBuilder, branch, case, step, worker
from multiagents.workflow import Workflow


def _score(agent: str, draft: str) -> float:
    """A stable pseudo-score in [0, 1] per agent and draft."""
    digest = hashlib.sha256(f"{agent}:{draft}".encode()).digest()
    return round(digest[0] / 255, 2)


def _agent(name: str, angle: str) -> Any:
    @worker(name)
    async def review(context: dict[str, Any]) -> dict[str, Any]:
        draft = str(context["draft"])
        score = _score(name, draft)
        bonus = 0.3 if "evidence" in draft else 0.0
        return {"score": round(min(1.0, score + bonus), 2), "note": f"{angle}: {draft[:40]!r}"}

    return review


research_agent = _agent("research_agent", "sources")
critic_agent = _agent("critic_agent", "argument")
fact_check_agent = _agent("fact_check_agent", "facts")


@worker("book_slot")
async def book_slot(context: dict[str, Any]) -> dict[str, Any]:
    return {"slot": f"slot-{abs(hash(context['draft'])) % 1000:03d}"}


@worker("release_slot")
async def release_slot(context: dict[str, Any]) -> dict[str, Any]:
    return {"released": context["slot"]}


@worker("publish")
async def publish(context: dict[str, Any]) -> dict[str, Any]:
    return {"published_in": context["slot"], "approved_by": context["approval"].get("by", "")}


@worker("revise")
async def revise(context: dict[str, Any]) -> dict[str, Any]:
    notes = [r["note"] for r in context["reviews"].values()]
    return {"revision_requested": notes}


WORKERS = [
    research_agent, critic_agent, fact_check_agent, book_slot, release_slot, publish, revise,
]  # fmt: skip

# The mean of the three scores, in CEL over the context.
MEAN = (
    "(context.reviews.research.score + context.reviews.critic.score"
    " + context.reviews.fact_check.score) / 3.0"
)


def review_workflow() -> Workflow:
    return (
        WorkflowBuilder("article_review", description="three agents, a branch, an approval")
        .add_step("book", book_slot, compensation=release_slot)
        .add_parallel(
            "reviews",
            [
                branch("research", step("research_review", research_agent)),
                branch("critic", step("critic_review", critic_agent)),
                branch("fact_check", step("fact_check_review", fact_check_agent)),
            ],
        )
        .add_condition(
            "route",
            [
                case(
                    f"{MEAN} >= 0.6",
                    WaitForSignal("approval", "approval", timeout=300, approval=True),
                    step("publish_it", publish),
                )
            ],
            otherwise=[step("revise_it", revise)],
        )
        .build()
    )
