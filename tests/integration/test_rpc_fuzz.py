"""Bounded fuzzing of every RPC of every service against a real daemon over mTLS (issue 13).

A seeded generator builds each RPC's request message from its descriptor: every field at
random or left unset, strings from the daemon's own ids, names and documents (and mutations of
them), random text with control and non-ASCII characters, lengths at and past each field's
bound; bytes from real PSBTs, keys, signatures and digests, mutated or random; integers at the
edges of their wire type; enum values the API does not define, negative ones included. Three in
ten requests are then mutated as raw bytes: invalid UTF-8 in a string field, a negative or
oversized varint, a flipped bit, a truncation, unknown fields, an unterminated group. Each goes
to the daemon as is (no client-side serialisation), from a principal allowed to call it (of
each allowed kind in turn, at random).

Asserted for every request: never INTERNAL or UNKNOWN, never a hang (a unary call answers
within its deadline; only the two streams that stay open by design may run into theirs), an
error message of bounded length; after every round the daemon answers Health SERVING; at the end
nothing was signed and nothing reached a quorum: no signature row, no transfer APPROVED or
SIGNED, no proposal APPROVED (the fuzzer cannot make an operator's signature).

Bounds: ``ROUNDS`` rounds over all 40 RPCs (``SIGNERD_FUZZ_ROUNDS``, default 25: 1,000 requests)
and at most ``BUDGET`` seconds (``SIGNERD_FUZZ_SECONDS``, default 60), whichever comes first;
``SIGNERD_FUZZ_SEED`` (default 13) picks the sequence, so CI is repeatable and a longer local run
is one variable away. A request that fails is written to the test's temporary folder and named
in the failure; keep it under ``tests/fuzz_regressions/rpc/`` (``<Service>.<Method>.<what>.bin``)
and ``test_regression_requests`` replays it on every run.
"""
from __future__ import annotations

import hashlib
import json
import os
import random
import sqlite3
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from signerd.api import validate as V
from signerd.api.server import ALLOWED
from signerd.daemon import DEMO_GOVERNANCE, DEMO_POLICIES
from tests.support.daemon import Daemon, edit_config, init_state
from tests.support.rpc import pb
from tests.support.bitcoin import EXTERNAL, build_psbt
from tests.support.ethereum import tx_fields
from tests.support.rpc_raw import (LONG_LIVED, METHODS, PRINCIPAL_OF_KIND, call, field_bytes,
                                   field_varint, tag, varint)

SEED = int(os.environ.get("SIGNERD_FUZZ_SEED", "13"))
ROUNDS = int(os.environ.get("SIGNERD_FUZZ_ROUNDS", "25"))
BUDGET = float(os.environ.get("SIGNERD_FUZZ_SECONDS", "60"))
UNARY_DEADLINE = 10.0
LONG_LIVED_DEADLINE = 1.5
NEVER = (grpc.StatusCode.INTERNAL, grpc.StatusCode.UNKNOWN)
MAX_DETAILS = 2100
REGRESSIONS = Path(__file__).resolve().parents[1] / "fuzz_regressions" / "rpc"
INVALID_UTF8 = (b"\xff", b"\xfe\xff", b"\xc3\x28", b"\xa0\xa1", b"\xe2\x28\xa1", b"\xed\xa0\x80",
                b"\xf0\x28\x8c\x28", b"\xf4\x90\x80\x80", b"\xc0\xaf", b"abc\x80")
XPUB = ("xpub661MyMwAqRbcFW31YEwpkMuc5THy2PSt5bDMsktWQcFF8syAmRUapSCGu8ED9W6oDMSgv6Zz8idoc4a6mr8"
        "BDzTJY47LJhkJ8UB7WEGuduB")
MNEMONIC = " ".join(["abandon"] * 11 + ["about"])
TEXT_CHARS = ("abcxyzABC019 _-./:'\"\\#[]{}=,;*?" "\t\n\r\x01\x1b\x7f" "é€Ωß\u00a0\u200b\u202e"
              "\u0301\ufeff\U0001f600\U0010ffff")
T = V.T


@dataclass
class World:
    daemon: Daemon
    seeds: dict[str, list[Any]]
    fuzzed_wallets: list[str]
    found: Path
    codes: Counter[str] = field(default_factory=Counter)


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    """A daemon with a little of everything to aim at: an Ethereum and a Bitcoin wallet, a
    pending transfer on each, a pending governance proposal, a key share."""
    from signerd.adapters.key_files import load_private
    from signerd.core.operator_keys import generate, public_pem

    cfg = init_state(tmp_path_factory.mktemp("rpcfuzz") / "state")
    edit_config(cfg, "limits", rate_per_second=100000.0, rate_burst=100000)
    d = Daemon(cfg).start()
    c = d.custody()
    eth = c.CreateWallet(pb.CreateWalletRequest(chain=pb.ETHEREUM, chain_ids=[1337],
                                                category=pb.SEIZED, case_ref="FUZZ"))
    btc = c.CreateWallet(pb.CreateWalletRequest(chain=pb.BITCOIN, network="regtest",
                                                category=pb.SEIZED, case_ref="FUZZ"))
    eth_json = json.dumps(tx_fields(nonce=3, chainId=1337))
    t_eth = c.SubmitTransfer(pb.SubmitTransferRequest(
        wallet_id=eth.id, ethereum=pb.EthereumTransaction(json=eth_json)))
    psbt, _ = build_psbt(btc, [50_000], [(EXTERNAL, 40_000)])
    t_btc = c.SubmitTransfer(pb.SubmitTransferRequest(wallet_id=btc.id, psbt=psbt.serialize()))
    prop = d.admin().RegisterOperator(pb.RegisterOperatorRequest(
        id="fuzz1", roles=["investigator"], public_key_pem=public_pem(generate())))
    share = c.CreateKeyShare(pb.CreateKeyShareRequest(category=pb.SEIZED, case_ref="FUZZ"))
    statement = d.approval("cust1").GetStatement(pb.GetStatementRequest(
        transfer_id=t_eth.id, decision=pb.APPROVE)).statement
    pem = public_pem(load_private(d.state / "operators" / "inv1.key"))
    ids = [eth.id, btc.id, t_eth.id, t_btc.id, prop.id, "w_0000000000000000", ""]
    seeds: dict[str, list[Any]] = {
        "wallet_id": [eth.id, btc.id, "w_0000000000000000"],
        "transfer_id": [t_eth.id, t_btc.id, "t_00000000000000000000"],
        "replaces": [t_eth.id, t_btc.id], "proposal_id": [prop.id, "p_00000000000000000000"],
        "page_token": ids, "idempotency_key": ["k-1", "k-2"],
        # Not cust1, the operator the fuzzer calls as: a suspension would shut it out.
        "id": ["inv2", "pros1", "judge1", "nobody", "Bad Id"], "operator_id": ["cust1", "inv1"],
        "roles": ["investigator", "custody_officer", "admin", "judge", "nope"],
        "template": ["two-key", "tiered", "seized-sweep", "category-movement", "missing"],
        "name": ["two-key", "fuzz-template", "Bad Name"],
        "network": ["regtest", "mainnet", "testnet", "signet", "ethereum"],
        "category_change": ["none", "seized_to_confiscated", "sale_proceeds"],
        "state": ["PENDING_APPROVAL", "APPROVED", "REJECTED"], "case_ref": ["FUZZ", "CASE-1"],
        "hsm_key_ids": [share.key_id], "cosigners": [
            share.public_key.hex(), XPUB, XPUB + "/0/7", "[d34db33f/48'/0'/0'/2']" + XPUB],
        "toml": list(DEMO_POLICIES.values()) + [DEMO_GOVERNANCE],
        "policy_toml": list(DEMO_POLICIES.values()), "json": [eth_json],
        "psbt": [psbt.serialize(), psbt.to_base64().encode()], "public_key_pem": [pem],
        "signature": [os.urandom(64)], "statement_sha256": [hashlib.sha256(statement).digest()],
        "mnemonic": [MNEMONIC], "derivation_path": ["m/84'/0'/0'/0/0", "m/44h/60h/0h/0/0"],
        "hex": ["11" * 32], "wif": ["cVt4o7BGAig1UXywgGSmARhxMdzP5qvQsxKkSsc1XEkw3tDTQFpy"],
        "passphrase": ["", "TREZOR"], "order_ref": ["ORDER-1"], "seizure_record": ["SEIZ-1"],
        "legal_basis": ["court order 1", "Regional Court Berlin; 4 K 12/26; 2026-11-20"],
        "reason": ["fuzz"], "label": ["fuzz"],
    }
    found = tmp_path_factory.mktemp("rpcfuzz-found")
    yield World(d, seeds, [eth.id, btc.id], found)
    assert d.stop() == 0


class Generator:
    """Random and mutated request bytes for any request message descriptor."""

    def __init__(self, rng: random.Random, seeds: dict[str, list[Any]]):
        self.rng = rng
        self.seeds = seeds

    def request(self, d: Any) -> bytes:
        r = self.rng
        if r.random() < 0.05:
            return r.randbytes(r.randrange(0, 64))
        data = self.message(d, 0).SerializeToString()
        if r.random() < 0.3:
            data = self.mutate(data, d)
        return data

    def message(self, d: Any, depth: int) -> Any:
        r = self.rng
        msg = V.pb_message(d)()
        oneofs: set[str] = set()
        for f in d.fields:
            if r.random() < 0.35:
                continue
            if f.containing_oneof is not None:
                if f.containing_oneof.name in oneofs:
                    continue
                oneofs.add(f.containing_oneof.name)
            key = f"{d.name}.{f.name}"
            if f.is_repeated:
                limit = int(V.LIMITS.get(key, 3))
                n = r.choice([0, 1, 1, 2, 3, min(limit, 100), min(limit + 1, 101)])
                target = getattr(msg, f.name)
                for _ in range(n):
                    if f.type == T.TYPE_MESSAGE:
                        target.add().CopyFrom(self.message(f.message_type, depth + 1))
                    else:
                        target.append(self.scalar(f, key + "[]"))
            elif f.type == T.TYPE_MESSAGE:
                if depth < 3:
                    getattr(msg, f.name).CopyFrom(self.message(f.message_type, depth + 1))
            else:
                setattr(msg, f.name, self.scalar(f, key))
        return msg

    def scalar(self, f: Any, key: str) -> Any:
        r = self.rng
        if f.type == T.TYPE_STRING:
            return self.text(f.name, key)
        if f.type == T.TYPE_BYTES:
            return self.blob(f.name, key)
        if f.type == T.TYPE_BOOL:
            return r.random() < 0.5
        if f.type == T.TYPE_ENUM:
            if r.random() < 0.85:
                return r.choice(f.enum_type.values).number
            return r.choice([-1, -(2**31), 2**31 - 1, r.randrange(-100, 100), 5, 99])
        top = 2**32 - 1 if f.type == T.TYPE_UINT32 else 2**64 - 1
        limit = V.LIMITS.get(key)
        picks = [0, 1, 2, 3, 15, 16, 100, 1000, 1001, 2**31 - 1, 2**31, 2**32 - 1, 2**53,
                 2**63 - 1, 2**63, 2**64 - 1, r.randrange(0, 1 << 20)]
        if isinstance(limit, int):
            picks += [limit, limit + 1]
        return r.choice([p for p in picks if 0 <= p <= top])

    def _length(self, key: str) -> int:
        limit = V.LIMITS.get(key, 64)
        limit = 200_000 if limit == V.MESSAGE else int(limit)
        return min(self.rng.choice([limit - 1, limit, limit + 1, limit * 2 + 7]), 300_000)

    def text(self, name: str, key: str) -> str:
        r = self.rng
        roll = r.random()
        seeds = self.seeds.get(name)
        if seeds and roll < 0.45:
            return str(r.choice(seeds))
        if seeds and roll < 0.6:
            return self.mutate_text(str(r.choice(seeds)))
        if roll < 0.85:
            return "".join(r.choice(TEXT_CHARS) for _ in range(r.randrange(0, 40)))
        if roll < 0.88:
            return "a\x00b"
        return r.choice("a7Zé€\U0001f600") * self._length(key)

    def mutate_text(self, s: str) -> str:
        r = self.rng
        chars = list(s)
        for _ in range(r.randint(1, 4)):
            pos = r.randrange(0, len(chars) + 1)
            op = r.randrange(5)
            if op == 0:
                chars.insert(pos, r.choice(TEXT_CHARS))
            elif op == 1 and chars:
                del chars[min(pos, len(chars) - 1)]
            elif op == 2 and chars:
                chars[min(pos, len(chars) - 1)] = r.choice(TEXT_CHARS)
            elif op == 3:
                chars[pos:pos] = chars[pos:pos + r.randrange(1, 64)] * r.randrange(2, 50)
            else:
                del chars[pos:]
        return "".join(chars)

    def blob(self, name: str, key: str) -> bytes:
        r = self.rng
        roll = r.random()
        seeds = self.seeds.get(name)
        if seeds and roll < 0.35:
            return bytes(r.choice(seeds))
        if seeds and roll < 0.65:
            return self.mutate_bytes(bytes(r.choice(seeds)))
        if roll < 0.9:
            return r.randbytes(r.randrange(0, 200))
        return b"\xff" * self._length(key)

    def mutate_bytes(self, data: bytes) -> bytes:
        r = self.rng
        b = bytearray(data)
        for _ in range(r.randint(1, 6)):
            pos = r.randrange(0, len(b) + 1)
            op = r.randrange(6)
            if op == 0 and pos < len(b):
                b[pos] ^= 1 << r.randrange(8)
            elif op == 1 and pos < len(b):
                b[pos] = r.choice([0x00, 0x01, 0x7F, 0x80, 0xFD, 0xFE, 0xFF])
            elif op == 2:
                b[pos:pos] = r.randbytes(r.randrange(1, 16))
            elif op == 3:
                del b[pos:pos + r.randrange(1, 64)]
            elif op == 4:
                del b[pos:]
            else:
                b[pos:pos] = b[pos:pos + r.randrange(1, 128)]
        return bytes(b)

    def _fields(self, d: Any, types: tuple[int, ...]) -> list[Any]:
        return [f for f in d.fields if f.type in types]

    def mutate(self, data: bytes, d: Any) -> bytes:
        """Raw-byte mutations no protobuf library would write."""
        r = self.rng
        out = bytearray(data)
        for _ in range(r.randint(1, 3)):
            op = r.randrange(9)
            strings = self._fields(d, (T.TYPE_STRING,))
            messages = self._fields(d, (T.TYPE_MESSAGE,))
            numbers = [f for f in d.fields if f.type in V.INTEGER_TYPES or f.type == T.TYPE_ENUM]
            if op == 0 and strings:  # invalid UTF-8 in a string field
                f = r.choice(strings)
                out += field_bytes(f.number, r.choice(INVALID_UTF8) + r.randbytes(r.randrange(3)))
            elif op == 1 and messages:  # ... in a string field of a message field
                f = r.choice(messages)
                inner = self._fields(f.message_type, (T.TYPE_STRING,))
                if inner:
                    g = r.choice(inner)
                    out += field_bytes(f.number, field_bytes(g.number, r.choice(INVALID_UTF8)))
            elif op == 2 and numbers:  # negative and huge varints, where the wire allows them
                f = r.choice(numbers)
                out += field_varint(f.number, r.choice([-1, -(2**31), 2**63, 2**64 - 1, 2**32]))
            elif op == 3 and out:
                pos = r.randrange(len(out))
                out[pos] ^= 1 << r.randrange(8)
            elif op == 4 and out:
                del out[r.randrange(len(out)):]
            elif op == 5:
                out += tag(r.randrange(16, 1 << 29), 0) + varint(r.randrange(1 << 40))
                out += field_bytes(r.randrange(16, 1000), r.randbytes(r.randrange(32)))
            elif op == 6:
                out += tag(r.choice([1, 2, 3, 40]), 0) + b"\xff" * 10 + b"\x7f"  # 11-byte varint
            elif op == 7:
                out += tag(r.randrange(1, 30), 3)  # a group that never ends
            else:
                out += bytes(out)  # the message twice: fields merge, repeated ones double
        return bytes(out)


def _check(world: World, method: str, data: bytes, out: Any, failures: list[str]) -> None:
    problem = ""
    if out.code in NEVER:
        problem = "answered " + out.code.name
    elif out.code == grpc.StatusCode.DEADLINE_EXCEEDED and method not in LONG_LIVED:
        problem = "did not answer within its deadline (a hang)"
    elif len(out.details) > MAX_DETAILS:
        problem = f"an error message of {len(out.details)} characters"
    if problem:
        name = f"{method.replace('/', '.')}.{hashlib.sha256(data).hexdigest()[:12]}.bin"
        (world.found / name).write_bytes(data)
        failures.append(f"{method} {problem}: {out.details[:200]!r}; request saved as "
                        f"{world.found / name}")


def _send(world: World, method: str, data: bytes, principal: str | None = None) -> Any:
    long = method in LONG_LIVED
    return call(world.daemon, method, data, principal=principal,
                timeout=LONG_LIVED_DEADLINE if long else UNARY_DEADLINE,
                max_responses=1 if long else 3)


def _healthy(d: Daemon) -> bool:
    stub = health_pb2_grpc.HealthStub(d.channel("platform"))
    resp = stub.Check(health_pb2.HealthCheckRequest(service=""), timeout=10)
    return d.proc is not None and d.proc.poll() is None and \
        resp.status == health_pb2.HealthCheckResponse.SERVING


def test_every_rpc_survives_random_and_mutated_requests(world: World) -> None:
    rng = random.Random(SEED)
    gen = Generator(rng, world.seeds)
    methods = sorted(METHODS)
    failures: list[str] = []
    sent: Counter[str] = Counter()
    t0 = time.monotonic()
    rounds = 0
    for _ in range(ROUNDS):
        if time.monotonic() - t0 > BUDGET:
            break
        for method in methods:
            data = gen.request(METHODS[method].input_type)
            kind = rng.choice(sorted(ALLOWED[method]))  # any principal kind allowed to call it
            out = _send(world, method, data, PRINCIPAL_OF_KIND[kind])
            sent[method] += 1
            world.codes[out.code.name] += 1
            _check(world, method, data, out, failures)
        rounds += 1
        assert _healthy(world.daemon), f"the daemon is not serving after round {rounds}"
    elapsed = time.monotonic() - t0
    print(f"\nrpc fuzz: seed {SEED}, {sum(sent.values())} requests, {rounds} rounds over "
          f"{len(methods)} RPCs in {elapsed:.1f} s; "
          + ", ".join(f"{k}={v}" for k, v in world.codes.most_common()))
    assert not failures, "\n".join(failures)
    assert set(sent) == set(methods) and min(sent.values()) >= 1


def test_nothing_was_signed_or_approved_while_fuzzing(world: World) -> None:
    """The fuzzer cannot make an operator's signature, so no quorum can have formed."""
    db = world.daemon.state / "signerd.db"
    with sqlite3.connect(f"file:{db}?mode=ro", uri=True) as conn:
        signed = conn.execute("SELECT COUNT(*) FROM signatures").fetchone()[0]
        states = dict(conn.execute("SELECT state, COUNT(*) FROM transfers GROUP BY state"))
        fuzzed = conn.execute(
            "SELECT COUNT(*) FROM transfers WHERE wallet_id IN (?, ?) AND state IN "
            "('APPROVED', 'SIGNED')", world.fuzzed_wallets).fetchone()[0]
        approved = conn.execute("SELECT COUNT(*) FROM proposals WHERE state = 'APPROVED'"
                                ).fetchone()[0]
    assert signed == 0 and fuzzed == 0, states
    assert "SIGNED" not in states and "APPROVED" not in states, states
    assert approved == 0
    assert _healthy(world.daemon)


REGRESSION_CASES = sorted(REGRESSIONS.glob("*.bin"))


def test_regression_requests_are_kept(world: World) -> None:
    assert REGRESSION_CASES, f"no regression requests under {REGRESSIONS}"
    for p in REGRESSION_CASES:
        service, method, _ = p.name.split(".", 2)
        assert f"{service}/{method}" in METHODS, p.name


@pytest.mark.parametrize("path", REGRESSION_CASES, ids=lambda p: p.name)
def test_regression_requests(world: World, path: Path) -> None:
    """Requests that once made the daemon answer INTERNAL, take seconds of CPU or send an
    error message too long for its trailer: each is INVALID_ARGUMENT now."""
    service, method, _ = path.name.split(".", 2)
    out = _send(world, f"{service}/{method}", path.read_bytes())
    assert out.code == grpc.StatusCode.INVALID_ARGUMENT, out.message
    assert out.seconds < 2 and len(out.details) <= MAX_DETAILS
    assert _healthy(world.daemon)
