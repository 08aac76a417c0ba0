#!/usr/bin/env python3
"""Follow proxyconf's package registry proxy settings from Python (grpcio).

Generate the stubs once from the repository's proto (no protoc needed, grpcio-tools ships one):

    pip install grpcio grpcio-tools
    python -m grpc_tools.protoc -I proto --python_out=gen --grpc_python_out=gen \
        proto/proxyconf/v1/proxyconf.proto

then run:

    PYTHONPATH=gen python docs/examples/subscriber.py localhost:50051 npm,pip
"""

import argparse
import random
import sys
import time

import grpc

from proxyconf.v1 import proxyconf_pb2 as pb
from proxyconf.v1 import proxyconf_pb2_grpc as rpc

# Statuses after which reconnecting may succeed: the replica is shutting down or unreachable,
# the stream reached its maximum age, or too many streams were opened at once.
RETRYABLE = {
    grpc.StatusCode.UNAVAILABLE,
    grpc.StatusCode.RESOURCE_EXHAUSTED,
    grpc.StatusCode.DEADLINE_EXCEEDED,
}


def follow(targets, package_managers):
    """Yields each new Resolution, forever, across reconnects, never the same version twice."""
    last_version = ""
    backoff = 0.1
    attempt = random.randrange(len(targets))
    while True:
        target = targets[attempt % len(targets)]
        attempt += 1
        # Keepalive as the server expects it: a PING after 30 s of silence, 10 s to answer.
        options = [("grpc.keepalive_time_ms", 30_000), ("grpc.keepalive_timeout_ms", 10_000)]
        try:
            with grpc.insecure_channel(target, options=options) as channel:
                stub = rpc.ProxyConfigStub(channel)
                request = pb.WatchRequest(
                    request=pb.ResolveRequest(package_managers=package_managers),
                    # Resume: the server sends nothing until the answer differs from this.
                    resume_from_version=last_version,
                )
                for resolution in stub.Watch(request):
                    backoff = 0.1
                    if resolution.version != last_version:
                        last_version = resolution.version
                        yield resolution
        except grpc.RpcError as error:
            if error.code() not in RETRYABLE:
                raise
            print(f"reconnecting after {error.code().name}: {error.details()}", file=sys.stderr)
        # Jittered exponential backoff, so that many subscribers do not return together.
        time.sleep(backoff * random.uniform(0.5, 1.5))
        backoff = min(backoff * 2, 5.0)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("servers", help="HOST:PORT[,HOST:PORT...]")
    parser.add_argument("package_managers", nargs="?", default="", help="e.g. npm,pip")
    parser.add_argument("--count", type=int, default=0, help="stop after N answers")
    args = parser.parse_args()
    scope = [pm for pm in args.package_managers.split(",") if pm]
    for seen, resolution in enumerate(follow(args.servers.split(","), scope), start=1):
        decision = pb.Decision.Name(resolution.decision)
        urls = " ".join(f"{pm.name}={pm.url}" for pm in resolution.package_managers)
        print(f"{resolution.version} {decision} {urls}".rstrip(), flush=True)
        if seen == args.count:
            return


if __name__ == "__main__":
    main()
