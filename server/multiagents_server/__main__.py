"""`python -m multiagents_server`: one replica started by `serve --processes N`."""

import asyncio

from multiagents_server.supervisor import run_replica_from_env

asyncio.run(run_replica_from_env())
