"""The edge's bounds table, its decoding of hostile bytes, the echo helper and the descriptor
caps, in-process (the daemon-level cases are tests/integration/test_input_bounds.py)."""
from __future__ import annotations

import time

import pytest

from signerd.api import validate as V
from signerd.core.bitcoin.descriptor import (MAX_KEY_CHARS, MAX_PATH_STEPS, InvalidDescriptor,
                                             parse_descriptor, parse_key)
from signerd.core.errors import MAX_MESSAGE_CHARS, InvalidArgument, NotFound, echo
from signerd.v1 import signerd_pb2 as pb

XPUB = ("xpub661MyMwAqRbcFW31YEwpkMuc5THy2PSt5bDMsktWQcFF8syAmRUapSCGu8ED9W6oDMSgv6Zz8idoc4a6mr8"
        "BDzTJY47LJhkJ8UB7WEGuduB")


def test_every_request_field_has_exactly_one_bound() -> None:
    assert set(V.LIMITS) == V.bounded_keys()
    assert {d.name for d in V.request_messages()} >= {"Page", "EthereumTransaction",
                                                       "CreateWalletRequest", "ListEventsRequest"}
    assert len(list(V.rpc_methods())) == 58


def test_a_field_without_a_bound_stops_the_daemon_at_start(monkeypatch: pytest.MonkeyPatch
                                                           ) -> None:
    limits = dict(V.LIMITS)
    del limits["GetWalletRequest.wallet_id"]
    monkeypatch.setattr(V, "LIMITS", limits)
    with pytest.raises(RuntimeError, match="GetWalletRequest.wallet_id"):
        V.Bounds(4 << 20)


@pytest.mark.parametrize("request_,message", [
    (pb.ListEventsRequest(after_seq=2**63), f"after_seq: {2**63} is more than the limit of "
                                            f"{2**63 - 1}"),
    (pb.CreateWalletRequest(cosigners=["x"] * 16), "cosigners: 16 entries, more than the limit "
                                                   "of 15"),
    (pb.CreateWalletRequest(cosigners=["a", "x" * 513]), "cosigners[1]: 513 characters, more "
                                                         "than the limit of 512"),
    (pb.ListWalletsRequest(page=pb.Page(page_size=1001)), "page.page_size: 1001 is more than "
                                                          "the limit of 1000"),
    (pb.SubmitApprovalRequest(signature=b"s" * 1025), "signature: 1025 bytes, more than the "
                                                      "limit of 1024"),
    (pb.GetWalletRequest(wallet_id="w\x00"), "wallet_id: contains a NUL character"),
    (pb.CreateWalletRequest(category=7), "category: 7 is not a value of signerd.v1.Category"),
])
def test_bounds_name_the_field_and_the_limit(request_: object, message: str) -> None:
    with pytest.raises(InvalidArgument) as e:
        V.Bounds(4 << 20).check(request_)
    assert e.value.message == message


def test_requests_within_their_bounds_pass() -> None:
    b = V.Bounds(100)
    b.check(pb.CreateWalletRequest(chain=pb.BITCOIN, cosigners=["a" * 512] * 15, threshold=15,
                                   chain_ids=[2**64 - 1] * 64))
    b.check(pb.SubmitTransferRequest(psbt=b"p" * 100))
    with pytest.raises(InvalidArgument, match="psbt: 101 bytes, more than the limit of 100"):
        b.check(pb.SubmitTransferRequest(psbt=b"p" * 101))  # [server] max_message_bytes


@pytest.mark.parametrize("cls,data,message", [
    (pb.GetWalletRequest, b"\x0a\x02\xff\xfe", "wallet_id: not valid UTF-8"),
    (pb.CreateWalletRequest, b"\x5a\x01a\x5a\x01a\x5a\x02\xc3\x28",
     "cosigners[2]: not valid UTF-8"),
    (pb.ListTransfersRequest, b"\x1a\x04\x12\x02\xed\xa0", "page.page_token: not valid UTF-8"),
    (pb.SubmitTransferRequest, b"\x1a\x03\x0a\x01\x80", "ethereum.json: not valid UTF-8"),
    (pb.GetWalletRequest, b"\x0a\x05ab", "request: not a valid signerd.v1.GetWalletRequest "
                                         "message (truncated or malformed)"),
    (pb.GetWalletRequest, b"\x0f", "request: not a valid signerd.v1.GetWalletRequest message "
                                   "(truncated or malformed)"),
])
def test_undecodable_bytes_become_a_refusal_naming_the_field(cls: object, data: bytes,
                                                            message: str) -> None:
    got = V.safe_deserializer(cls)(data)
    assert isinstance(got, V.Undecodable) and got.message == message
    with pytest.raises(InvalidArgument) as e:
        V.Bounds(4 << 20).check(got)
    assert e.value.message == message


def test_the_interceptor_swaps_the_deserializer_of_signerd_methods_only() -> None:
    import grpc

    def handler_for(method: str) -> grpc.RpcMethodHandler:
        h = grpc.unary_unary_rpc_method_handler(lambda r, c: r,
                                                request_deserializer=pb.GetWalletRequest.FromString)
        return V.SafeDecoding().intercept_service(
            lambda details: h, type("D", (), {"method": method, "invocation_metadata": ()})())

    ours = handler_for("/signerd.v1.Custody/GetWallet")
    assert isinstance(ours.request_deserializer(b"\x0a\x01\xff"), V.Undecodable)
    other = handler_for("/grpc.health.v1.Health/Check")
    assert other.request_deserializer == pb.GetWalletRequest.FromString


# ---------------------------------------------------------------- echo and message bounds

def test_echo_reads_as_before_for_short_input_and_is_cut_after_80_characters() -> None:
    assert echo("w_1") == "'w_1'" and echo("w_1", quote=False) == "w_1"
    assert echo(5) == "5" and echo(["a"]) == "['a']"
    long = "z" * 1000
    assert echo(long) == repr("z" * 80) + "... (1000 characters)"
    assert echo(long, quote=False) == "z" * 80 + "... (1000 characters)"
    assert echo(list(range(100))).endswith(f"... ({len(repr(list(range(100))))} characters)")


def test_no_error_message_outgrows_its_bound() -> None:
    e = NotFound("x" * 100_000)
    assert len(e.message) < MAX_MESSAGE_CHARS + 50
    assert e.message.endswith("... (message of 100000 characters)")
    assert NotFound("short").message == "short"


# ---------------------------------------------------------------- descriptor caps

def test_key_paths_are_capped_before_any_derivation() -> None:
    assert parse_key(XPUB + "/1" * MAX_PATH_STEPS).path == (1,) * MAX_PATH_STEPS
    t0 = time.process_time()
    with pytest.raises(InvalidDescriptor, match=r"a path of 17 steps, more than 16"):
        parse_key(XPUB + "/1" * 17)
    with pytest.raises(InvalidDescriptor, match=r"key origin: a path of 17 steps"):
        parse_key("[d34db33f" + "/0'" * 17 + "]" + XPUB)
    with pytest.raises(InvalidDescriptor, match=f"longer than {MAX_KEY_CHARS} characters"):
        parse_key(XPUB + "/0" * 30_000)
    assert time.process_time() - t0 < 0.5


def test_sortedmulti_counts_its_keys_before_parsing_them() -> None:
    keys = ",".join([XPUB + "/1" * 16] * 1000)
    t0 = time.process_time()
    with pytest.raises(InvalidDescriptor, match="sortedmulti: 1000 keys, more than 16"):
        parse_descriptor(f"wsh(sortedmulti(1,{keys}))")
    assert time.process_time() - t0 < 0.5
