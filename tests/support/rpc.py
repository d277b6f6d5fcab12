"""gRPC pieces the tests share: the generated messages and stubs, and the error an RPC raised."""
from __future__ import annotations

from typing import Any

import grpc

from signerd.v1 import signerd_pb2 as pb
from signerd.v1 import signerd_pb2_grpc as rpc

__all__ = ["pb", "rpc", "rpc_error"]


def rpc_error(fn: Any, *args: Any, **kw: Any) -> grpc.RpcError:
    try:
        fn(*args, **kw)
    except grpc.RpcError as e:
        return e
    raise AssertionError("expected an RPC error")
