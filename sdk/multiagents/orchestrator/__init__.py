"""Seed-compatible `multiagents.orchestrator` (the workflow builder)."""
