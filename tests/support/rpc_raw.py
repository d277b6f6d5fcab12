"""Raw requests to a real daemon: any bytes to any RPC, as the principal allowed to call it.

The request bytes reach the daemon exactly as given (no client-side serialisation), so tests
can send what no protobuf library would write: invalid UTF-8 in a string field, a truncated
message, a 10-byte varint for a 32-bit field.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import grpc

from signerd.api.server import ALLOWED
from signerd.api.validate import pb_message, rpc_methods
from tests.support.daemon import Daemon

# One principal of each kind from the demo state folder; operators approve with their own ids.
PRINCIPAL_OF_KIND = {"platform": "platform", "admin": "admin", "auditor": "auditor",
                     "operator": "cust1"}
PREFERENCE = ("platform", "operator", "admin", "auditor")
METHODS = {name: m for name, m in rpc_methods()}  # "Service/Method" -> MethodDescriptor
# Streams that stay open by design while there is nothing new to send.
LONG_LIVED = frozenset({"Custody/WatchTransfer", "Audit/StreamEvents"})


def principal_for(method: str) -> str:
    kinds = ALLOWED[method]
    return PRINCIPAL_OF_KIND[next(k for k in PREFERENCE if k in kinds)]


def varint(n: int) -> bytes:
    n &= (1 << 64) - 1  # a negative int32/int64 is sent as its 10-byte two's complement
    out = bytearray()
    while True:
        b = n & 0x7F
        n >>= 7
        if n:
            out.append(b | 0x80)
        else:
            out.append(b)
            return bytes(out)


def tag(number: int, wire: int) -> bytes:
    return varint(number << 3 | wire)


def field_bytes(number: int, data: bytes) -> bytes:
    """A length-delimited field (string, bytes or message) holding ``data`` as is."""
    return tag(number, 2) + varint(len(data)) + data


def field_varint(number: int, value: int) -> bytes:
    return tag(number, 0) + varint(value)


@dataclass
class Outcome:
    code: grpc.StatusCode
    details: str
    responses: list[bytes]
    seconds: float

    @property
    def message(self) -> str:
        return f"{self.code.name}: {self.details}"


def call(d: Daemon, method: str, data: bytes, *, principal: str | None = None,
         timeout: float = 10.0, max_responses: int = 3) -> Outcome:
    """Send ``data`` as the request of ``method`` ("Service/Method"); a server stream is read
    until it ends, ``max_responses`` arrived (then cancelled) or the deadline passed."""
    import time

    m = METHODS[method]
    ch = d.channel(principal or principal_for(method))
    path = f"/{m.containing_service.full_name}/{m.name}"
    t0 = time.monotonic()
    if not m.server_streaming:
        fn: Any = ch.unary_unary(path, request_serializer=None, response_deserializer=None)
        try:
            resp = fn(data, timeout=timeout)
        except grpc.RpcError as e:
            return Outcome(e.code(), e.details() or "", [], time.monotonic() - t0)
        pb_message(m.output_type).FromString(resp)  # what the daemon sent parses
        return Outcome(grpc.StatusCode.OK, "", [resp], time.monotonic() - t0)
    stream: Any = ch.unary_stream(path, request_serializer=None, response_deserializer=None)
    it = stream(data, timeout=timeout)
    got: list[bytes] = []
    try:
        for resp in it:
            pb_message(m.output_type).FromString(resp)
            got.append(resp)
            if len(got) >= max_responses:
                it.cancel()
                return Outcome(grpc.StatusCode.OK, "", got, time.monotonic() - t0)
    except grpc.RpcError as e:
        return Outcome(e.code(), e.details() or "", got, time.monotonic() - t0)
    return Outcome(grpc.StatusCode.OK, "", got, time.monotonic() - t0)
