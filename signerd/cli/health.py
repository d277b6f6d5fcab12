"""``signerctl health``: whether the daemon is serving."""
from __future__ import annotations

import argparse

from grpc_health.v1 import health_pb2, health_pb2_grpc

from signerd.cli.args import Commands, command
from signerd.cli.context import Context
from signerd.cli.errors import CliError
from signerd.cli.render import Output


def cmd_health(ctx: Context) -> Output:
    stub = health_pb2_grpc.HealthStub(ctx.channel())
    resp = ctx.call(stub.Check, health_pb2.HealthCheckRequest(service=ctx.args.service))
    status = health_pb2.HealthCheckResponse.ServingStatus.Name(resp.status)
    return Output({"service": ctx.args.service, "status": status}, f"{status}\n",
                  error=CliError(f"daemon is {status}") if status != "SERVING" else None)


def register(commands: Commands) -> None:
    sp = command(commands, "health", cmd_health, "ask the daemon whether it is serving",
                 ids=False)
    sp.add_argument("--service", default="", help=argparse.SUPPRESS)
