"""`python -m multiagents_server`: the server's command line (as
`multiagents-server`), or, when the supervisor of `serve --processes N`
starts it with the replica configuration in the environment and no
arguments, one of its replicas."""

import asyncio
import os
import sys

from multiagents_server.cli import main
from multiagents_server.supervisor import CONFIG_ENV, run_replica_from_env

if CONFIG_ENV in os.environ and len(sys.argv) == 1:
    asyncio.run(run_replica_from_env())
else:
    sys.exit(main())
