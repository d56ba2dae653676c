"""An OTLP/gRPC trace receiver that counts the spans it is sent and keeps
none: the collector the server exports to in `bench.run --observability all`,
run as a process of its own (its CPU is not the server's).

    python -m bench.otlp_sink --port 4317

It prints `listening on 127.0.0.1:PORT` once it serves, and on SIGTERM or
SIGINT `received N spans in M requests` before it exits.
"""

from __future__ import annotations

import argparse
import asyncio
import signal
import sys

import grpc
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2 as pb
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2_grpc as pb_grpc

RECEIVED = "received"


class Sink(pb_grpc.TraceServiceServicer):
    """Answers every export with success and counts its spans."""

    def __init__(self) -> None:
        self.spans = 0
        self.requests = 0

    async def Export(
        self, request: pb.ExportTraceServiceRequest, context: grpc.aio.ServicerContext
    ) -> pb.ExportTraceServiceResponse:
        self.requests += 1
        self.spans += sum(
            len(scope.spans)
            for resource in request.resource_spans
            for scope in resource.scope_spans
        )
        return pb.ExportTraceServiceResponse()


async def serve(port: int) -> Sink:
    sink = Sink()
    server = grpc.aio.server()
    pb_grpc.add_TraceServiceServicer_to_server(sink, server)
    bound = server.add_insecure_port(f"127.0.0.1:{port}")
    await server.start()
    print(f"listening on 127.0.0.1:{bound}", flush=True)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    await stop.wait()
    await server.stop(grace=1)
    return sink


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.otlp_sink", description=__doc__)
    parser.add_argument("--port", type=int, required=True)
    args = parser.parse_args(argv)
    sink = asyncio.run(serve(args.port))
    print(f"{RECEIVED} {sink.spans} spans in {sink.requests} requests", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
