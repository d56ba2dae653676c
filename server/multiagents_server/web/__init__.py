"""The web dashboard (README "Dashboard"): Starlette pages served by uvicorn
inside each server replica, reading and acting through the replica's own
gRPC API (backend.py)."""

from multiagents_server.web.server import Dashboard

__all__ = ["Dashboard"]
