"""Seed-compatible `multiagents.core` (factory and exceptions)."""
