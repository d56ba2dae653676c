"""Scaling out on a real 3-master Redis Cluster: throughput with 1 server
replica against 3 (each replica with its own worker process), on the same
cluster, in one run.

    python -m bench.cluster                  # 1 and 3 replicas, 2,000 workflows each
    python -m bench.cluster --workflows 5000 --replicas 1,2,3

The cluster is the test suite's harness (tests/redis_cluster.py: three
redis-server processes in cluster mode, no replicas, AOF on). For each
replica count: start the replicas (`multiagents serve --processes 1`, one
port each) and one worker process per replica, submit the workflows spread
over the replicas (one client per replica, each waiting on its own
replica's watch streams), and measure the time until every one is terminal
and the CPU of every process. The machine's core count is printed beside
the ratio: on a machine with fewer cores than processes, the cores cap the
ratio, which the per-process CPU shows.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import tempfile
import time
from pathlib import Path

import psutil

from bench import procs
from bench.common import WORKFLOW, bench3_definition, log
from multiagents_server.embedded_redis import free_port

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
from redis_cluster import RedisCluster


async def run(count: int, n: int, cluster: RedisCluster, work: Path) -> dict[str, object]:
    from multiagents import Client

    prefix = f"benchc{count}"
    servers: list[procs.Child] = []
    workers: list[procs.Child] = []
    try:
        ports = [free_port() for _ in range(count)]
        for i, port in enumerate(ports):
            server = procs.start(
                f"replica{count}-{i}",
                [str(procs.BIN / "multiagents"), "serve", "--processes", "1", "--port", str(port),
                 "--redis-url", cluster.url, "--key-prefix", prefix, "--log-level", "WARNING"],
                work,
            )  # fmt: skip
            servers.append(server)
            procs.wait_for_line(server, "listening on")
            worker = procs.start(
                f"worker{count}-{i}",
                [str(procs.BIN / "multiagents"), "worker", "bench/ma_workers.py",
                 "--server", f"127.0.0.1:{port}", "--concurrency", "1000"],
                work,
            )  # fmt: skip
            workers.append(worker)
            procs.wait_for_line(worker, "serving")
        clients = [Client(f"127.0.0.1:{p}") for p in ports]
        await clients[0].register_workflow(bench3_definition())

        async def one(client: Client, i: int) -> None:
            tx = await client.execute_workflow(WORKFLOW, {"n": i})
            status = await client.wait(tx, timeout=600)
            if status.state != "completed":
                raise RuntimeError(f"{tx} ended {status.state}")

        await asyncio.gather(*(one(clients[i % count], i) for i in range(50)))  # warm-up
        nodes = [psutil.Process(pid) for _, _, pid in cluster.nodes]
        before = {c.name: c.cpu_seconds() for c in servers + workers}
        redis_before = sum(p.cpu_times().user + p.cpu_times().system for p in nodes)
        t0 = time.perf_counter()
        await asyncio.gather(*(one(clients[i % count], i) for i in range(n)))
        elapsed = time.perf_counter() - t0
        cpu = {c.name: c.cpu_seconds() - before[c.name] for c in servers + workers}
        redis_cpu = sum(p.cpu_times().user + p.cpu_times().system for p in nodes) - redis_before
        for client in clients:
            await client.close()
    finally:
        for child in workers + servers:
            child.stop()
    return {
        "replicas": count,
        "workflows_per_s": n / elapsed,
        "seconds": elapsed,
        "replica_cpu_share": [cpu[s.name] / elapsed for s in servers],
        "worker_cpu_share": [cpu[w.name] / elapsed for w in workers],
        "redis_cpu_share": redis_cpu / elapsed,
    }


async def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.cluster", description=__doc__)
    parser.add_argument("--workflows", type=int, default=2000)
    parser.add_argument("--replicas", default="1,3", help="replica counts, comma-separated")
    args = parser.parse_args(argv)
    counts = [int(c) for c in args.replicas.split(",")]
    work = Path(tempfile.mkdtemp(prefix="ma-bench-cluster-"))
    cluster = RedisCluster(work / "cluster")
    await cluster.start()
    log(f"3-master Redis Cluster at {cluster.url}; logs in {work}")
    results = []
    try:
        for count in counts:
            log(f"{count} replica(s): {args.workflows} workflows submitted at once")
            results.append(await run(count, args.workflows, cluster, work))
    finally:
        await cluster.stop()
    cores = os.cpu_count()
    print(f"== Redis Cluster (3 masters), {cores} cores on this machine")
    for r in results:
        replicas = ", ".join(f"{100 * c:.0f}%" for c in r["replica_cpu_share"])  # type: ignore[attr-defined]
        workers = ", ".join(f"{100 * c:.0f}%" for c in r["worker_cpu_share"])  # type: ignore[attr-defined]
        print(
            f"{r['replicas']} replica(s): {r['workflows_per_s']:.0f} workflows/s "
            f"({r['seconds']:.1f} s); CPU of a core: replicas {replicas}; workers {workers}; "
            f"redis nodes {100 * r['redis_cpu_share']:.0f}% in all"  # type: ignore[operator]
        )
    if len(results) > 1:
        first, last = results[0], results[-1]
        ratio = float(last["workflows_per_s"]) / float(first["workflows_per_s"])  # type: ignore[arg-type]
        print(
            f"throughput {last['replicas']} replicas / {first['replicas']}: {ratio:.2f}x "
            f"(target >= 2.5x with 3; {cores} cores: {'met' if ratio >= 2.5 else 'NOT met'})"
        )
    return 0


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
