"""Open streams cannot starve the daemon (issue 13).

Server streams (WatchTransfer, StreamEvents with follow, Export, reflection) run on the gate's
own stream pool, never on the [server] workers that answer unary calls, and the gate keeps at
most [limits] max_streams open, max_streams_per_principal per principal. Before, 16 open
streams took all 16 workers: Health/Check and every approval timed out.
"""
from __future__ import annotations

import time
from typing import Any

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from tests.support.daemon import Daemon, edit_config, init_state
from tests.support.governance import decide
from tests.support.rpc import pb
from tests.support.ethereum import eth_wallet, submit, tx_fields
from tests.support.fixtures import DaemonFactory

PER_PRINCIPAL, TOTAL = 60, 100
PLATFORM_STREAMS, AUDITOR_STREAMS = 60, 40  # 100 open, each principal at or within its cap


@pytest.fixture(scope="module")
def daemon(daemon_factory: DaemonFactory):
    yield from daemon_factory.run("streams", limits={"max_streams_per_principal": PER_PRINCIPAL,
                                                       "max_streams": TOTAL}, clean_exit=True)


def watch(d: Daemon, transfer_id: str) -> Any:
    return d.custody().WatchTransfer(pb.WatchTransferRequest(transfer_id=transfer_id),
                                     timeout=120)


def follow(d: Daemon, after: int) -> Any:
    return d.audit().StreamEvents(pb.StreamEventsRequest(after_seq=after, follow=True),
                                  timeout=120)


def refused(it: Any) -> grpc.RpcError:
    with pytest.raises(grpc.RpcError) as e:
        next(it)
    return e.value


def test_open_streams_leave_health_and_approvals_responsive(daemon: Daemon) -> None:
    w = eth_wallet(daemon)
    t = submit(daemon, w.id, tx_fields(nonce=1))
    head = daemon.audit().ListEvents(pb.ListEventsRequest(after_seq=0, limit=1000)).events[-1].seq
    watches = [watch(daemon, t.id) for _ in range(PLATFORM_STREAMS)]
    follows = [follow(daemon, head - 1) for _ in range(AUDITOR_STREAMS)]
    try:
        # Every stream is open in the daemon: each has had its first message.
        for it in watches:
            assert next(it).state == pb.PENDING_APPROVAL
        for it in follows:
            assert next(it).seq == head

        t0 = time.monotonic()
        resp = health_pb2_grpc.HealthStub(daemon.channel("platform")).Check(
            health_pb2.HealthCheckRequest(), timeout=5)
        assert resp.status == health_pb2.HealthCheckResponse.SERVING
        assert time.monotonic() - t0 < 2

        # One stream more than a principal's cap, and one more than the daemon's.
        e = refused(watch(daemon, t.id))
        assert e.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
        assert (f"too many open streams for principal platform: {PER_PRINCIPAL} open, "
                f"[limits] max_streams_per_principal = {PER_PRINCIPAL}") in e.details()
        assert ("signerd-reason", "STREAM_LIMIT") in (e.trailing_metadata() or ())
        e = refused(follow(daemon, head))
        assert e.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
        assert f"{TOTAL} open, [limits] max_streams = {TOTAL}" in e.details()

        t0 = time.monotonic()
        approved = decide(daemon, t.id, "inv1")
        assert time.monotonic() - t0 < 2
        assert len(approved.approvals) == 1
        # The streams are alive: every watcher sees the approval.
        for it in watches:
            assert len(next(it).approvals) == 1
        assert daemon.custody().GetTransfer(pb.GetTransferRequest(transfer_id=t.id),
                                            timeout=2).state == pb.PENDING_APPROVAL
    finally:
        for it in watches + follows:
            it.cancel()
    # Closed streams give their places back. A try that is refused closes the streams it did
    # open, and the next try waits longer than a stream's 1 s poll, so one try's streams never
    # keep the next one out.
    deadline = time.monotonic() + 20
    while True:
        its = [watch(daemon, t.id) for _ in range(PER_PRINCIPAL)]
        try:
            for it in its:
                next(it)
            break
        except grpc.RpcError as e:
            assert e.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
            assert time.monotonic() < deadline, "closed streams kept their places"
            time.sleep(1.5)
        finally:
            for it in its:
                it.cancel()


def test_reflection_streams_are_within_the_caps(daemon: Daemon) -> None:
    from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc

    stub = reflection_pb2_grpc.ServerReflectionStub(daemon.channel("admin"))
    list_services = reflection_pb2.ServerReflectionRequest(list_services="")
    assert list(stub.ServerReflectionInfo(iter([list_services]), timeout=10))
    time.sleep(1)  # earlier tests' streams have let go of their places
    idle: list[Any] = []
    try:
        import queue

        for _ in range(PER_PRINCIPAL):  # each waits for its next request, holding its place
            q: queue.Queue[Any] = queue.Queue()
            q.put(list_services)
            it = stub.ServerReflectionInfo(iter(q.get, None), timeout=60)
            next(it)
            idle.append((it, q))
        e = refused(stub.ServerReflectionInfo(iter([list_services]), timeout=10))
        assert e.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
        assert "max_streams_per_principal" in e.details()
        resp = health_pb2_grpc.HealthStub(daemon.channel("admin")).Check(
            health_pb2.HealthCheckRequest(), timeout=2)
        assert resp.status == health_pb2.HealthCheckResponse.SERVING
    finally:
        for it, q in idle:
            q.put(None)
            it.cancel()


def test_stream_limits_are_checked_in_the_config(tmp_path: Any) -> None:
    from signerd.adapters import config
    from signerd.core.errors import ConfigError

    cfg = tmp_path / "signerd.toml"
    cfg.write_text('instance_id = "x"\n[server]\ninsecure = true\n')
    limits = config.load(cfg).limits
    assert (limits.max_streams, limits.max_streams_per_principal) == (128, 32)
    for key in ("max_streams", "max_streams_per_principal"):
        edit_config(cfg, "limits", **{key: 0})
        with pytest.raises(ConfigError, match="max_streams and max_streams_per_principal must "
                                              "be at least 1"):
            config.load(cfg)
        edit_config(cfg, "limits", **{key: 8})
