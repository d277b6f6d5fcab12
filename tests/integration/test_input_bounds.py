"""Bounded input at the gRPC edge, against a real daemon over mTLS (issue 13, item 1).

Every string, bytes and repeated field of every request has a maximum (``validate.LIMITS``),
integers beyond what the store and the code accept are refused, invalid UTF-8 and malformed
messages are INVALID_ARGUMENT naming the field (they were INTERNAL), cosigner derivation paths
are capped (a 60 KB one cost seconds of CPU and was stored), and input quoted in an error
message is cut to its first 80 characters. The sweep at the end sends every RPC its hostile
variants and finds no INTERNAL: the randomised counterpart is ``test_rpc_fuzz.py``.
"""
from __future__ import annotations

import time
from typing import Any, Iterator

import grpc
import pytest

from signerd.api import validate as V
from signerd.v1 import signerd_pb2 as pb
from tests.support.daemon import Daemon, edit_config, init_state
from tests.support.rpc import rpc_error
from tests.support.rpc_raw import METHODS, call, field_bytes, field_varint
from tests.support.fixtures import DaemonFactory

XPUB = ("xpub661MyMwAqRbcFW31YEwpkMuc5THy2PSt5bDMsktWQcFF8syAmRUapSCGu8ED9W6oDMSgv6Zz8idoc4a6mr8"
        "BDzTJY47LJhkJ8UB7WEGuduB")
INVALID_UTF8 = (b"\xff\xfe", b"\xc3\x28", b"\xed\xa0\x80", b"\xf4\x90\x80\x80", b"ok\x80")
NEVER = (grpc.StatusCode.INTERNAL, grpc.StatusCode.UNKNOWN)


@pytest.fixture(scope="module")
def daemon(daemon_factory: DaemonFactory) -> Iterator[Daemon]:
    yield from daemon_factory.run("bounds", limits={"rate_per_second": 100000.0,
                                                    "rate_burst": 100000}, clean_exit=True)


def multisig(**kw: Any) -> pb.CreateWalletRequest:
    req = dict(chain=pb.BITCOIN, network="mainnet", category=pb.SEIZED, case_ref="C-BOUNDS",
               script_type=pb.P2WSH_SORTEDMULTI, threshold=1)
    req.update(kw)
    return pb.CreateWalletRequest(**req)


# ---------------------------------------------------------------- undecodable requests

UTF8_CASES = [
    # method, request bytes around the bad string, the field the answer names
    ("Custody/GetWallet", lambda bad: field_bytes(1, bad), "wallet_id"),
    ("Custody/CreateWallet", lambda bad: field_varint(1, 1) + field_bytes(2, b"regtest")
     + field_varint(5, 1) + field_bytes(6, bad), "case_ref"),
    ("Custody/CreateWallet", lambda bad: field_bytes(11, b"02" * 33) + field_bytes(11, bad),
     "cosigners[1]"),
    ("Custody/ListWallets", lambda bad: field_bytes(3, field_bytes(2, bad)), "page.page_token"),
    ("Custody/SubmitTransfer", lambda bad: field_bytes(1, b"w_x")
     + field_bytes(3, field_bytes(1, bad)), "ethereum.json"),
    ("Custody/WatchTransfer", lambda bad: field_bytes(1, bad), "transfer_id"),
    ("Approval/SubmitApproval", lambda bad: field_bytes(1, b"t_x") + field_bytes(5, bad),
     "reason"),
    ("Admin/SetPolicy", lambda bad: field_bytes(1, b"w_x") + field_bytes(2, bad), "toml"),
    ("Admin/ImportKey", lambda bad: field_bytes(3, bad), "mnemonic"),
    ("Governance/ListProposals", lambda bad: field_bytes(1, bad), "state"),
    ("Audit/Report", lambda bad: field_bytes(2, bad), "case_ref"),
]


@pytest.mark.parametrize("method,build,field", UTF8_CASES,
                         ids=[f"{m}-{f}" for m, _, f in UTF8_CASES])
def test_invalid_utf8_is_invalid_argument_naming_the_field(daemon: Daemon, method: str,
                                                           build: Any, field: str) -> None:
    """Before: INTERNAL "Exception deserializing request!" (grpcio's own answer)."""
    for bad in INVALID_UTF8:
        out = call(daemon, method, build(bad))
        assert (out.code, out.details) == (grpc.StatusCode.INVALID_ARGUMENT,
                                           f"{field}: not valid UTF-8"), out.message


@pytest.mark.parametrize("data", [b"\x08", b"\x0a\x05ab", b"\x0f", b"\x0b", b"\x0b\x14",
                                  b"\xff" * 11, b"\x0a\xff\xff\xff\xff\x0f"], ids=repr)
def test_a_malformed_request_is_invalid_argument(daemon: Daemon, data: bytes) -> None:
    out = call(daemon, "Custody/GetWallet", data)
    assert out.code == grpc.StatusCode.INVALID_ARGUMENT, out.message
    assert out.details == ("request: not a valid signerd.v1.GetWalletRequest message "
                           "(truncated or malformed)")


def test_undecodable_requests_are_still_authenticated_first(daemon: Daemon) -> None:
    """The gate answers who may call before what was sent: an auditor calling a Custody RPC
    with bytes that do not parse is PERMISSION_DENIED, as with any request."""
    out = call(daemon, "Custody/GetWallet", field_bytes(1, b"\xff"), principal="auditor")
    assert out.code == grpc.StatusCode.PERMISSION_DENIED, out.message


# ---------------------------------------------------------------- integers

@pytest.mark.parametrize("after", [2**63, 2**63 + 1, 2**64 - 1])
def test_after_seq_beyond_the_store_is_invalid_argument(daemon: Daemon, after: int) -> None:
    """Before: INTERNAL (SQLite: "Python int too large to convert to SQLite INTEGER")."""
    e = rpc_error(daemon.audit().ListEvents, pb.ListEventsRequest(after_seq=after))
    assert e.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert e.details() == f"after_seq: {after} is more than the limit of {2**63 - 1}"
    e = rpc_error(lambda: list(daemon.audit().StreamEvents(
        pb.StreamEventsRequest(after_seq=after), timeout=10)))
    assert e.code() == grpc.StatusCode.INVALID_ARGUMENT and "after_seq" in e.details()


def test_after_seq_at_the_limit_answers_no_events(daemon: Daemon) -> None:
    assert not daemon.audit().ListEvents(pb.ListEventsRequest(after_seq=2**63 - 1)).events
    assert not list(daemon.audit().StreamEvents(pb.StreamEventsRequest(after_seq=2**63 - 1),
                                                timeout=10))


def test_enum_values_the_api_does_not_define_are_refused(daemon: Daemon) -> None:
    e = rpc_error(daemon.custody().CreateWallet, pb.CreateWalletRequest(
        chain=99, network="regtest", category=pb.SEIZED, case_ref="C"))
    assert e.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert e.details() == "chain: 99 is not a value of signerd.v1.Chain"
    # A negative enum value, as a 10-byte varint.
    out = call(daemon, "Approval/GetStatement", field_bytes(1, b"t_x") + field_varint(2, -1))
    assert (out.code, out.details) == (grpc.StatusCode.INVALID_ARGUMENT,
                                       "decision: -1 is not a value of signerd.v1.Decision")


def test_a_nul_character_is_refused_naming_the_field(daemon: Daemon) -> None:
    e = rpc_error(daemon.custody().CancelTransfer, pb.CancelTransferRequest(
        transfer_id="t_x", reason="a\x00b"))
    assert e.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert e.details() == "reason: contains a NUL character"


# ---------------------------------------------------------------- every field's maximum

def _holder(message: str) -> tuple[str, str]:
    """An RPC whose request is or contains ``message``, and the path to it ("" or "page.")."""
    for name, m in METHODS.items():
        if m.input_type.name == message:
            return name, ""
    for name, m in METHODS.items():
        for f in m.input_type.fields:
            if f.message_type is not None and f.message_type.name == message:
                return name, f.name + "."
    raise AssertionError(message)


def _over(key: str, limit: int) -> list[tuple[str, Any, str]]:
    """(method, a request with the field of ``key`` one past ``limit``, the path named); none
    when the limit is the wire type's own largest value."""
    message, _, field = key.partition(".")
    entry = field.endswith("[]")
    field = field.removesuffix("[]")
    method, prefix = _holder(message)
    fd = getattr(pb, message).DESCRIPTOR.fields_by_name[field]
    if fd.type == fd.TYPE_STRING:
        one: Any = "a" * (limit + 1) if entry or not fd.is_repeated else "a"
    elif fd.type == fd.TYPE_BYTES:
        one = b"a" * (limit + 1)
    else:
        top = 2**32 - 1 if fd.type == fd.TYPE_UINT32 else 2**64 - 1
        if fd.is_repeated and not entry:
            one = 1
        elif limit >= top:
            return []
        else:
            one = limit + 1
    if not fd.is_repeated:
        value, path = one, prefix + field
    elif entry:
        value, path = [one], f"{prefix}{field}[0]"
    else:
        value, path = [one] * (limit + 1), prefix + field
    msg = getattr(pb, message)(**{field: value})
    req = msg if not prefix else V.pb_message(METHODS[method].input_type)(**{prefix[:-1]: msg})
    return [(method, req, path)]


BOUNDED = [(key, limit) for key, limit in sorted(V.LIMITS.items()) if limit != V.MESSAGE]


@pytest.mark.parametrize("key,limit", BOUNDED, ids=[k for k, _ in BOUNDED])
def test_each_field_past_its_limit_is_refused_naming_field_and_limit(daemon: Daemon, key: str,
                                                                     limit: Any) -> None:
    for method, req, path in _over(key, int(limit)):
        out = call(daemon, method, req.SerializeToString())
        assert out.code == grpc.StatusCode.INVALID_ARGUMENT, (key, out.message)
        assert out.details.startswith(f"{path}: ") and \
            f"more than the limit of {limit}" in out.details, (key, out.details)


def test_payload_fields_are_bounded_by_the_message_size(daemon: Daemon) -> None:
    """A PSBT, Ethereum or Tron JSON is bounded by [server] max_message_bytes here, and by its
    [limits] where it is decoded (test_limits.py; Tron: max_calldata_bytes)."""
    assert {k for k, v in V.LIMITS.items() if v == V.MESSAGE} == {
        "SubmitTransferRequest.psbt", "EthereumTransaction.json", "TronTransaction.json",
        "CombinePsbtRequest.psbt", "CombineAttestationRequest.psbt",
        "SubmitTransferRequest.safe_tx"}


# ---------------------------------------------------------------- cosigners

def test_a_60_kb_cosigner_path_is_refused_at_once(daemon: Daemon) -> None:
    """Before: accepted after about 10 s of CPU (30,000 BIP-32 derivations, twice), and its
    60 KB stored in the wallet record and the audit chain."""
    text = XPUB + "/0" * 30_000
    t0 = time.monotonic()
    e = rpc_error(daemon.custody().CreateWallet, multisig(cosigners=[text]))
    assert time.monotonic() - t0 < 2
    assert e.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert e.details() == f"cosigners[0]: {len(text)} characters, more than the limit of 512"


def test_cosigner_paths_longer_than_16_steps_are_refused(daemon: Daemon) -> None:
    e = rpc_error(daemon.custody().CreateWallet, multisig(cosigners=[XPUB + "/1" * 17]))
    assert e.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert e.details() == "cosigners: key xpub661M...: a path of 17 steps, more than 16"
    origin = "[d34db33f" + "/44'" * 17 + "]"
    e = rpc_error(daemon.custody().CreateWallet, multisig(cosigners=[origin + XPUB]))
    assert e.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert e.details() == "cosigners: key origin: a path of 17 steps, more than 16"
    w = daemon.custody().CreateWallet(multisig(cosigners=[
        "[d34db33f" + "/48'" * 16 + "]" + XPUB + "/7" * 16]))
    assert w.status == pb.AWAITING_APPROVAL and len(w.keys) == 2


def test_the_largest_cosigner_set_costs_little(daemon: Daemon) -> None:
    """Fourteen cosigners at the caps (with one HSM key, the 15 a wallet may have): each is a
    bounded number of derivations, so the whole request stays well under a second of CPU."""
    key = "[d34db33f" + "/2147483647'" * 16 + "]" + XPUB + "/2147483647" * 16
    assert len(key) <= 512
    t0 = time.monotonic()
    e = rpc_error(daemon.custody().CreateWallet, multisig(cosigners=[key] * 14))
    assert time.monotonic() - t0 < 3
    assert e.code() == grpc.StatusCode.INVALID_ARGUMENT  # the same key fourteen times
    e = rpc_error(daemon.custody().CreateWallet, multisig(cosigners=[key] * 15))
    assert e.details() == "multisig: at most 15 keys"


# ---------------------------------------------------------------- echoed input

def test_input_quoted_in_an_error_is_cut_to_80_characters(daemon: Daemon) -> None:
    wid = "w_" + "z" * 126
    e = rpc_error(daemon.custody().GetWallet, pb.GetWalletRequest(wallet_id=wid))
    assert e.code() == grpc.StatusCode.NOT_FOUND
    assert e.details() == f"wallet {wid[:80]}... (128 characters) not found"
    hexkey = "02" * 200
    e = rpc_error(daemon.custody().CreateWallet, multisig(cosigners=[hexkey]))
    assert e.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert e.details() == (f"cosigners: public key {hexkey[:80]!r}... (400 characters) must be "
                           "33 bytes (66 hex characters), compressed")
    e = rpc_error(daemon.custody().CreateWallet, pb.CreateWalletRequest(
        chain=pb.BITCOIN, network="n" * 64, category=pb.SEIZED, case_ref="C"))
    assert e.details() == (f"network: unknown Bitcoin network {'n' * 64!r} (mainnet, testnet, "
                           "signet, regtest)")  # short input reads as before


def test_operator_id_quoted_in_a_refusal_is_cut(daemon: Daemon) -> None:
    op = "x" * 128
    e = rpc_error(daemon.approval("cust1").SubmitApproval, pb.SubmitApprovalRequest(
        transfer_id="t_x", operator_id=op, decision=pb.APPROVE, signature=b"\0" * 64))
    assert e.code() == grpc.StatusCode.PERMISSION_DENIED
    assert e.details() == f"operator_id {op[:80]!r}... (128 characters) does not match the " \
                          "caller cust1"


# ---------------------------------------------------------------- no INTERNAL from input

def _variants(method: str) -> Iterator[tuple[str, bytes]]:
    """Hostile variants of one RPC's request: empty, each field invalid UTF-8, past its
    limit, at the wire's largest value, negative, with a NUL, plus unknown fields."""
    d = METHODS[method].input_type
    yield "empty", b""
    yield "unknown fields", field_varint(99, 1) + field_bytes(100, b"\xff" * 8)
    for f in d.fields:
        n = f.number
        if f.type == f.TYPE_STRING:
            yield f"{f.name}: invalid UTF-8", field_bytes(n, b"\xff\xfe")
            yield f"{f.name}: NUL", field_bytes(n, b"a\x00")
            yield f"{f.name}: 100000 characters", field_bytes(n, b"a" * 100_000)
        elif f.type == f.TYPE_BYTES:
            yield f"{f.name}: 100000 bytes", field_bytes(n, b"\xff" * 100_000)
        elif f.type == f.TYPE_MESSAGE:
            for g in f.message_type.fields:
                if g.type == g.TYPE_STRING:
                    yield f"{f.name}.{g.name}: invalid UTF-8", field_bytes(
                        n, field_bytes(g.number, b"\xc3\x28"))
                elif g.type in (g.TYPE_UINT32, g.TYPE_UINT64):
                    yield f"{f.name}.{g.name}: max", field_bytes(n, field_varint(g.number, -1))
            yield f"{f.name}: garbage", field_bytes(n, b"\xff\xff\xff")
        elif f.type == f.TYPE_BOOL:
            yield f"{f.name}: 2", field_varint(n, 2)
        else:  # integers and enums: the largest varint, i.e. -1 / 2^64-1 / 2^32-1
            yield f"{f.name}: -1", field_varint(n, -1)
            yield f"{f.name}: 2^63", field_varint(n, 2**63)
        if f.is_repeated:
            entry = field_bytes(n, b"a") if f.type in (f.TYPE_STRING, f.TYPE_BYTES) else \
                field_varint(n, 1)
            yield f"{f.name}: 1000 entries", entry * 1000


@pytest.mark.parametrize("method", sorted(METHODS))
def test_no_hostile_variant_of_any_request_is_internal(daemon: Daemon, method: str) -> None:
    for what, data in _variants(method):
        out = call(daemon, method, data, timeout=10 if method not in (
            "Custody/WatchTransfer", "Audit/StreamEvents") else 2)
        assert out.code not in NEVER, (method, what, out.message)
        if out.code == grpc.StatusCode.DEADLINE_EXCEEDED:
            assert method in ("Custody/WatchTransfer", "Audit/StreamEvents"), (method, what)
        assert len(out.details) <= 2100, (method, what, len(out.details))
