"""Every configured limit answers with a clear status that names it: the gRPC message size
([server] max_message_bytes), PSBT size, inputs and outputs, Ethereum calldata, and the
per-principal rate limit ([limits]). The daemon here runs with small limits so each is reached
with ordinary requests."""
from __future__ import annotations

import base64
import time
from pathlib import Path

import grpc
import pytest

from signerd.core.bitcoin.psbt import PsbtOutput
from tests.support.daemon import Daemon, edit_config, init_state
from tests.support.rpc import pb, rpc_error
from tests.support.bitcoin import EXTERNAL, build_psbt, wallet
from tests.support.ethereum import eth_wallet, submit, tx_fields
from tests.support.fixtures import DaemonFactory

MAX_MESSAGE = 200_000
LIMITS = dict(max_psbt_bytes=60_000, max_psbt_inputs=3, max_psbt_outputs=2,
              max_calldata_bytes=1000, rate_per_second=20.0, rate_burst=10)


@pytest.fixture(scope="module")
def daemon(daemon_factory: DaemonFactory):
    yield from daemon_factory.run("limits", limits=LIMITS,
                                  server={"max_message_bytes": MAX_MESSAGE}, clean_exit=True)


@pytest.fixture(autouse=True)
def full_rate_bucket() -> None:
    """Each test starts with the platform's rate bucket full again (rate_burst at
    rate_per_second refills in half a second), so what one test spent never makes the next
    one's ordinary calls RESOURCE_EXHAUSTED."""
    time.sleep(LIMITS["rate_burst"] / LIMITS["rate_per_second"] + 0.1)


def submit_psbt(d: Daemon, wallet_id: str, psbt: bytes) -> pb.Transfer:
    return d.custody().SubmitTransfer(pb.SubmitTransferRequest(wallet_id=wallet_id, psbt=psbt))


def test_psbt_inputs_and_outputs_limits(daemon: Daemon) -> None:
    w = wallet(daemon)
    four_in, _ = build_psbt(w, [10_000] * 4, [(EXTERNAL, 30_000)])
    e = rpc_error(submit_psbt, daemon, w.id, four_in.serialize())
    assert e.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "4 inputs, more than 3 (limit max_psbt_inputs)" in e.details()
    three_out, _ = build_psbt(w, [100_000], [(EXTERNAL, 10_000)] * 3)
    e = rpc_error(submit_psbt, daemon, w.id, three_out.serialize())
    assert e.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "3 outputs, more than 2 (limit max_psbt_outputs)" in e.details()
    at_limit, _ = build_psbt(w, [10_000] * 3, [(EXTERNAL, 10_000)] * 2)
    assert submit_psbt(daemon, w.id, at_limit.serialize()).state == pb.PENDING_APPROVAL


def test_psbt_size_limit_binary_and_base64(daemon: Daemon) -> None:
    w = wallet(daemon)
    psbt, _ = build_psbt(w, [100_000], [(EXTERNAL, 90_000)])
    big = psbt.__class__(psbt.tx, psbt.inputs,
                         (PsbtOutput(unknown={b"\xfc\x05bloat": b"\x00" * 65_000}),),
                         psbt.xpubs, psbt.version, psbt.unknown).serialize()
    assert LIMITS["max_psbt_bytes"] < len(big) < MAX_MESSAGE
    e = rpc_error(submit_psbt, daemon, w.id, big)
    assert e.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "larger than 60000 (limit max_psbt_bytes)" in e.details()
    e = rpc_error(submit_psbt, daemon, w.id, base64.b64encode(big))
    assert e.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "larger than the limit of 60000 bytes" in e.details()


def test_calldata_limit(daemon: Daemon) -> None:
    w = eth_wallet(daemon)
    e = rpc_error(submit, daemon, w.id, tx_fields(nonce=1, data="0x" + "ab" * 1001))
    assert e.code() == grpc.StatusCode.INVALID_ARGUMENT and "data: larger than 1000 bytes" in \
        e.details()
    e = rpc_error(submit, daemon, w.id, tx_fields(nonce=1, data="0x" + "ab" * 40_000))
    assert e.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "calldata limit of 1000 bytes" in e.details()
    # At the limit the size is fine; the default policy then refuses undecoded calldata.
    e = rpc_error(submit, daemon, w.id, tx_fields(nonce=1, data="0x" + "ab" * 1000))
    assert e.code() == grpc.StatusCode.FAILED_PRECONDITION and "contract call" in e.details()


@pytest.mark.parametrize("rpc_name", ["psbt", "ethereum", "policy", "approval"])
def test_message_size_limit_on_any_rpc(daemon: Daemon, rpc_name: str) -> None:
    blob = b"\x00" * (MAX_MESSAGE + 1)
    calls = {
        "psbt": lambda: daemon.custody().SubmitTransfer(pb.SubmitTransferRequest(
            wallet_id="w_x", psbt=blob)),
        "ethereum": lambda: daemon.custody().SubmitTransfer(pb.SubmitTransferRequest(
            wallet_id="w_x", ethereum=pb.EthereumTransaction(json="x" * len(blob)))),
        "policy": lambda: daemon.admin().SetPolicy(pb.SetPolicyRequest(
            wallet_id="w_x", toml="#" * len(blob))),
        "approval": lambda: daemon.approval("inv1").SubmitApproval(pb.SubmitApprovalRequest(
            transfer_id="t_x", operator_id="inv1", signature=blob)),
    }
    e = rpc_error(calls[rpc_name])
    assert e.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert str(MAX_MESSAGE) in e.details()
    assert daemon.custody().ListWallets(pb.ListWalletsRequest()) is not None  # still serving


def test_rate_limit_per_principal(daemon: Daemon) -> None:
    time.sleep(1)  # a full bucket
    codes, refused = [], None
    for _ in range(400):  # until refused: a slow machine's calls refill part of the bucket
        try:
            daemon.admin().ListOperators(pb.ListOperatorsRequest())
            codes.append(grpc.StatusCode.OK)
        except grpc.RpcError as e:
            codes.append(e.code())
            refused = e
            break
    assert set(codes) == {grpc.StatusCode.OK, grpc.StatusCode.RESOURCE_EXHAUSTED}
    assert codes.count(grpc.StatusCode.OK) >= LIMITS["rate_burst"]
    assert refused is not None
    assert "rate limit exceeded for principal admin" in refused.details()
    assert "rate_per_second = 20" in refused.details() and "rate_burst = 10" in refused.details()
    assert ("signerd-reason", "RATE_LIMITED") in (refused.trailing_metadata() or ())
    # Another principal has its own bucket.
    daemon.audit().ListEvents(pb.ListEventsRequest(limit=1))
    time.sleep(0.5)
    daemon.admin().ListOperators(pb.ListOperatorsRequest())
    text = daemon.metrics()
    assert 'signerd_grpc_requests_total{code="RESOURCE_EXHAUSTED",method="Admin/ListOperators"}' \
        in text


def test_limits_are_read_from_the_config(daemon: Daemon) -> None:
    from signerd.adapters import config

    conf = config.load(daemon.config)
    assert conf.server.max_message_bytes == MAX_MESSAGE
    assert {k: getattr(conf.limits, k) for k in LIMITS} == LIMITS


REGRESSIONS = Path(__file__).resolve().parents[1] / "fuzz_regressions"


@pytest.mark.parametrize("name,needle", [("deeply-nested-array", "nested too deeply"),
                                         ("integer-over-4300-digits", "too many digits")])
def test_hostile_documents_found_by_fuzzing_are_invalid_argument(daemon: Daemon, name: str,
                                                                 needle: str) -> None:
    w = eth_wallet(daemon)
    e = rpc_error(daemon.admin().SetPolicy, pb.SetPolicyRequest(
        wallet_id=w.id, toml=(REGRESSIONS / "policy" / f"{name}.toml").read_text()))
    assert e.code() == grpc.StatusCode.INVALID_ARGUMENT and needle in e.details()
    e = rpc_error(daemon.custody().SubmitTransfer, pb.SubmitTransferRequest(
        wallet_id=w.id, ethereum=pb.EthereumTransaction(
            json=(REGRESSIONS / "eth_json" / f"{name}.json").read_text())))
    assert e.code() == grpc.StatusCode.INVALID_ARGUMENT and needle in e.details()
