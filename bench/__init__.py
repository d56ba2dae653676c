"""Benchmarks of MultiAgents against Celery (not run by the test suite)."""
