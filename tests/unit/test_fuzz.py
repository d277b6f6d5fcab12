"""Bounded fuzzing of every decoder that hostile request bytes reach.

The PSBT path (``decode_psbt_bytes`` + ``parse_psbt`` as the Bitcoin adapter runs them, then the
wallet analysis), the Ethereum path (the adapter's JSON decode, ``Eip1559Tx.from_fields``,
``decode_unsigned``, ``decode_signed``) and what a SubmitApprovalRequest or SetPolicy meets
(``load_public_pem``, ``verify_statement``, ``parse_policy``) get random and mutated valid inputs.
The only allowed outcomes are a result or a ``SignerError``: any other exception fails the test,
as does a call running past ``CALL_SECONDS`` (a hang) or the process growing by more than
``RSS_GROWTH_MB`` over the module (unbounded memory).

Inputs that once crashed a decoder live in ``tests/fuzz_regressions/<target>/`` and are replayed
by ``test_regression_inputs`` on every run. ``python -m pytest tests/unit/test_fuzz.py -s`` prints
how many examples each target ran.
"""
from __future__ import annotations

import base64
import contextlib
import json
import resource
import signal
import string
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import coincurve
import pytest
import rlp
from cryptography.hazmat.primitives.asymmetric import ec, ed448, ed25519, rsa, x25519
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from _vectors import load
from signerd.core.approval import sign_statement, verify_statement
from signerd.core.bitcoin.psbt import MAGIC, parse_psbt
from signerd.core.bitcoin.signer import analyze
from signerd.core.chains import BitcoinAdapter, EthereumAdapter, decode_psbt_bytes
from signerd.adapters.config import Limits
from signerd.daemon import DEMO_POLICIES
from signerd.core.errors import InvalidApproval, SignerError
from signerd.core.ethereum.eip1559 import SECP256K1_N, Eip1559Tx
from signerd.core.model import (Category, Chain, DestinationClass, KeyRef, Movement, Output,
                                ScriptType, Wallet, WalletStatus)
from signerd.core.operator_keys import load_public_pem, public_pem
from signerd.core.policy import parse_policy
from test_btc_signer import ALL_TYPES, EXTERNAL_SPK, make_psbt, spec_for

EXAMPLES = 500
CALL_SECONDS = 5.0
RSS_GROWTH_MB = 256
REGRESSIONS = Path(__file__).resolve().parents[1] / "fuzz_regressions"
FUZZ = settings(max_examples=EXAMPLES, deadline=None,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large,
                                       HealthCheck.filter_too_much])
RAN: Counter[str] = Counter()


@pytest.fixture(scope="module", autouse=True)
def bounded_memory_and_report() -> Iterator[None]:
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    yield
    grown_mb = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before) / 1024
    print("\nfuzz examples run: " + ", ".join(f"{k}={v}" for k, v in sorted(RAN.items()))
          + f"; total {sum(RAN.values())}; peak RSS grew {grown_mb:.0f} MB")
    assert grown_mb < RSS_GROWTH_MB, f"peak RSS grew by {grown_mb:.0f} MB while fuzzing"


@contextlib.contextmanager
def time_limit(seconds: float) -> Iterator[None]:
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def expired(signum: int, frame: Any) -> None:
        raise TimeoutError(f"decoder still running after {seconds} s (a hang)")

    previous = signal.signal(signal.SIGALRM, expired)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


def outcome(target: str, fn: Callable[..., Any], *args: Any, **kw: Any) -> Any:
    """``fn(*args)``'s result, or None when it raised a SignerError; anything else escapes."""
    RAN[target] += 1
    t0 = time.monotonic()
    with time_limit(CALL_SECONDS):
        try:
            return fn(*args, **kw)
        except SignerError:
            return None
        finally:
            assert time.monotonic() - t0 < CALL_SECONDS


# ---------------------------------------------------------------- mutation of valid inputs

def _compact_size(n: int) -> bytes:
    if n < 0xFD:
        return bytes([n])
    for prefix, size in ((0xFD, 2), (0xFE, 4), (0xFF, 8)):
        if n < 1 << (8 * size):
            return bytes([prefix]) + n.to_bytes(size, "little")
    raise ValueError(n)


@st.composite
def mutated(draw: st.DrawFn, seeds: list[bytes], max_ops: int = 6,
            ops: tuple[str, ...] = ("flip", "set", "insert", "delete", "duplicate", "truncate",
                                    "splice", "length")) -> bytes:
    """A seed with 1..max_ops byte-level mutations, including hostile length prefixes."""
    data = bytearray(draw(st.sampled_from(seeds)))
    for _ in range(draw(st.integers(1, max_ops))):
        pos = draw(st.integers(0, len(data)))
        op = draw(st.sampled_from(ops))
        if op == "flip" and pos < len(data):
            data[pos] ^= 1 << draw(st.integers(0, 7))
        elif op == "set" and pos < len(data):
            data[pos] = draw(st.sampled_from([0x00, 0x01, 0x7F, 0x80, 0xFC, 0xFD, 0xFE, 0xFF]))
        elif op == "insert":
            data[pos:pos] = draw(st.binary(min_size=1, max_size=16))
        elif op == "delete":
            del data[pos:pos + draw(st.integers(1, 64))]
        elif op == "duplicate":
            end = min(len(data), pos + draw(st.integers(1, 256)))
            data[end:end] = data[pos:end]
        elif op == "truncate":
            del data[pos:]
        elif op == "splice":
            other = draw(st.sampled_from(seeds))
            a = draw(st.integers(0, len(other)))
            data[pos:pos] = other[a:a + draw(st.integers(1, 200))]
        elif op == "length":  # a compact size claiming far more than is there
            n = draw(st.sampled_from([0xFC, 0xFD, 0xFFFF, 0x10000, 0x2000000, 0x2000001,
                                      0xFFFFFFFF, 2**64 - 1]))
            data[pos:pos + 1] = _compact_size(n)
    return bytes(data)


def mutated_text(seeds: list[str], max_ops: int = 6) -> st.SearchStrategy[str]:
    return mutated([s.encode() for s in seeds], max_ops).map(
        lambda b: b.decode("utf-8", errors="replace"))


# ---------------------------------------------------------------- PSBT

BIP174_VALID = [bytes.fromhex(v["hex"]) for v in load("bip174/valid.json")]
BIP174_INVALID = [bytes.fromhex(v["hex"]) for v in load("bip174/invalid.json")]
SMALL = Limits(max_psbt_bytes=200_000, max_psbt_inputs=50, max_psbt_outputs=50)


def _own_wallet_psbts() -> list[tuple[ScriptType, bytes]]:
    out = []
    for script_type in ALL_TYPES:
        spec = spec_for(script_type)
        for utxo in ("witness", "non_witness", "both"):
            psbt = make_psbt(spec, [70_000, 30_000], [(EXTERNAL_SPK, 60_000),
                                                     (spec.script_pubkey, 39_000)], utxo=utxo)
            out.append((script_type, psbt.serialize()))
    return out


OWN_PSBTS = _own_wallet_psbts()


@FUZZ
@given(st.binary(max_size=3000).map(lambda b: MAGIC + b))
def test_parse_psbt_random_bytes(data: bytes) -> None:
    outcome("psbt.random", parse_psbt, data)


@FUZZ
@given(mutated(BIP174_VALID + BIP174_INVALID))
def test_parse_psbt_mutated_bip174_vectors(data: bytes) -> None:
    psbt = outcome("psbt.mutated", parse_psbt, data)
    if psbt is not None:  # what parses is valid by construction and serialises back stably
        again = parse_psbt(psbt.serialize())
        assert again == psbt and again.serialize() == psbt.serialize()


def _payload() -> st.SearchStrategy[bytes]:
    b64 = [base64.b64encode(v) for v in BIP174_VALID]
    return st.one_of(
        mutated(b64),  # base64 text with broken alphabet, padding, length
        mutated(BIP174_VALID),  # binary
        st.binary(max_size=2000),
        st.text(alphabet=string.ascii_letters + string.digits + "+/= \n\t\r", max_size=2000)
        .map(str.encode),
    )


@FUZZ
@given(_payload())
def test_psbt_payload_as_the_bitcoin_adapter_reads_it(payload: bytes) -> None:
    raw = outcome("psbt.decode_psbt_bytes", decode_psbt_bytes, payload, SMALL.max_psbt_bytes)
    assert raw is None or raw[:5] == MAGIC
    outcome("psbt.adapter_parse", BitcoinAdapter.parse, payload, SMALL)


@FUZZ
@given(st.sampled_from(range(len(OWN_PSBTS))).flatmap(
    lambda i: st.tuples(st.just(OWN_PSBTS[i][0]),  # mostly in-place changes: they still parse
                        mutated([OWN_PSBTS[i][1]], max_ops=2, ops=("flip", "set", "flip", "set",
                                                                   "length", "splice")))))
def test_mutated_own_wallet_psbt_through_analysis(case: tuple[ScriptType, bytes]) -> None:
    script_type, data = case
    psbt = outcome("psbt.own_wallet_parse", parse_psbt, data)
    if psbt is not None:
        outcome("psbt.analyze", analyze, psbt, spec_for(script_type))


# ---------------------------------------------------------------- Ethereum

ETH_KEYS = ["chainId", "nonce", "maxPriorityFeePerGas", "maxFeePerGas", "gas", "to", "value",
            "data", "accessList", "type"]
ADDRESS = "0x96216849c49358B10257cb55b28eA603c874b05E"
ERC20_TRANSFER = ("0xa9059cbb" + "00" * 12 + "11" * 20 + f"{10**18:064x}")

json_scalar = st.one_of(
    st.none(), st.booleans(), st.integers(min_value=-(2**300), max_value=2**300),
    st.floats(allow_nan=False), st.text(max_size=80),
    st.text(alphabet="0123456789abcdefABCDEFx", max_size=80).map(lambda t: "0x" + t),
    st.sampled_from([ADDRESS, ADDRESS.lower(), ADDRESS.upper(), "0x", "", "0x00", ERC20_TRANSFER,
                     "0x" + "f" * 65, "0x" + "0" * 300 + "1", str(2**256), "1e3"]))
json_value = st.recursive(json_scalar, lambda inner: st.one_of(
    st.lists(inner, max_size=4), st.dictionaries(st.text(max_size=8), inner, max_size=4)),
    max_leaves=8)


@st.composite
def valid_fields(draw: st.DrawFn) -> dict[str, Any]:
    u = lambda hi: draw(st.integers(0, hi))  # noqa: E731
    as_hex = draw(st.booleans())
    enc = (lambda n: hex(n)) if as_hex else (lambda n: n)
    fee = u(2**256 - 1)
    return {
        "chainId": enc(draw(st.integers(1, 2**64 - 1))), "nonce": enc(u(2**64 - 2)),
        "maxPriorityFeePerGas": enc(draw(st.integers(0, fee))), "maxFeePerGas": enc(fee),
        "gas": enc(draw(st.integers(21000, 2**64 - 1))),
        "to": draw(st.sampled_from([ADDRESS, ADDRESS.lower(), None, ""])),
        "value": enc(u(2**256 - 1)),
        "data": draw(st.sampled_from(["0x", ERC20_TRANSFER, "0x60016000f3"])),
        "accessList": draw(st.sampled_from([[], [{"address": ADDRESS, "storageKeys": [
            "0x" + "00" * 31 + "01"]}]])),
    }


@st.composite
def mutated_fields(draw: st.DrawFn) -> dict[str, Any]:
    fields = draw(valid_fields())
    for _ in range(draw(st.integers(1, 3))):
        key = draw(st.sampled_from(ETH_KEYS + ["extra"]))
        if draw(st.booleans()) and key in fields:
            del fields[key]
        else:
            fields[key] = draw(json_value)
    return fields


@FUZZ
@given(st.one_of(json_value, st.dictionaries(st.sampled_from(ETH_KEYS) | st.text(max_size=8),
                                             json_value, max_size=12)))
def test_eth_from_fields_random(fields: Any) -> None:
    outcome("eth.from_fields_random", Eip1559Tx.from_fields, fields, max_data_bytes=1024)


@FUZZ
@given(mutated_fields())
def test_eth_from_fields_mutated_valid(fields: dict[str, Any]) -> None:
    tx = outcome("eth.from_fields_mutated", Eip1559Tx.from_fields, fields)
    if tx is not None:
        assert Eip1559Tx.from_fields(tx.to_fields()) == tx


ETH_WALLET = Wallet(id="w_fuzz", chain=Chain.ETHEREUM, network="ethereum",
                    script_type=ScriptType.EOA, category=Category.SEIZED, case_ref="FUZZ",
                    legal_basis="", status=WalletStatus.ACTIVE, address=ADDRESS,
                    keys=(KeyRef("k", "k", coincurve.PrivateKey(b"\x01" * 32).public_key.format()),),
                    chain_ids=(1, 1337))
ETH_JSON_SEEDS = [json.dumps(dict(f, chainId=1337)) for f in (
    {"chainId": 1, "nonce": 0, "maxPriorityFeePerGas": 1, "maxFeePerGas": 2, "gas": 21000,
     "to": ADDRESS, "value": 10**15, "data": "0x", "accessList": []},
    {"chainId": "0x539", "nonce": "0x2", "maxPriorityFeePerGas": "0x1", "maxFeePerGas": "0x2",
     "gas": "0x186a0", "to": ADDRESS, "value": "0x0", "data": ERC20_TRANSFER,
     "accessList": [{"address": ADDRESS, "storageKeys": ["0x" + "00" * 32]}]},
)]


@FUZZ
@given(st.one_of(
    mutated_text(ETH_JSON_SEEDS).map(str.encode),
    mutated_fields().map(lambda f: json.dumps(f).encode()),
    json_value.map(lambda v: json.dumps(v).encode()),
    st.binary(max_size=500),
    st.integers(1, 3000).map(lambda n: b"[" * n + b"]" * n),
    st.integers(4000, 6000).map(lambda n: b'{"nonce": ' + b"9" * n + b"}"),
))
def test_eth_json_payload_as_the_ethereum_adapter_reads_it(payload: bytes) -> None:
    outcome("eth.adapter_decode", EthereumAdapter().decode, ETH_WALLET, payload, Limits())


def _unsigned_seeds() -> list[bytes]:
    txs = [Eip1559Tx.from_fields(json.loads(s)) for s in ETH_JSON_SEEDS]
    return [tx.unsigned_payload() for tx in txs]


UNSIGNED = _unsigned_seeds()
SIGNED = [Eip1559Tx.decode_unsigned(u).signed_raw(1, 0x1234, 0x5678) for u in UNSIGNED]
rlp_items = st.recursive(st.binary(max_size=40), lambda inner: st.lists(inner, max_size=12),
                         max_leaves=40)


def _raw(seeds: list[bytes]) -> st.SearchStrategy[bytes]:
    return st.one_of(mutated(seeds), st.binary(max_size=600).map(lambda b: b"\x02" + b),
                     rlp_items.map(lambda i: b"\x02" + rlp.encode(i)),
                     st.integers(1, 3000).map(lambda n: b"\x02" + b"\xc1" * n))


@FUZZ
@given(_raw(UNSIGNED))
def test_eth_decode_unsigned(payload: bytes) -> None:
    tx = outcome("eth.decode_unsigned", Eip1559Tx.decode_unsigned, payload)
    assert tx is None or tx.unsigned_payload() == payload


@FUZZ
@given(_raw(SIGNED))
def test_eth_decode_signed(raw: bytes) -> None:
    signed = outcome("eth.decode_signed", Eip1559Tx.decode_signed, raw)
    assert signed is None or (signed.raw() == raw and 0 < signed.s <= SECP256K1_N // 2)


# ---------------------------------------------------------------- approvals and policies

OPERATOR = ed25519.Ed25519PrivateKey.from_private_bytes(b"\x07" * 32)
OPERATOR_PEM = public_pem(OPERATOR)
OPERATOR_SPKI = OPERATOR.public_key().public_bytes(Encoding.DER, PublicFormat.SubjectPublicKeyInfo)


def _spki(key: Any) -> bytes:
    return key.public_bytes(Encoding.PEM, PublicFormat.SubjectPublicKeyInfo)


OTHER_PEMS = [
    _spki(ec.generate_private_key(ec.SECP256R1()).public_key()),
    _spki(ec.generate_private_key(ec.SECP256K1()).public_key()),
    _spki(rsa.generate_private_key(65537, 1024).public_key()),
    _spki(x25519.X25519PrivateKey.generate().public_key()),
    _spki(ed448.Ed448PrivateKey.generate().public_key()),
]
PEM_SEEDS = [OPERATOR_PEM] + OTHER_PEMS
STATEMENT = b'signerd-approval/v1\n{"decision":"APPROVE","transfer_id":"t_1"}'
GENUINE = sign_statement(OPERATOR, STATEMENT)


def _pem_of(der: bytes, label: str = "PUBLIC KEY") -> bytes:
    body = base64.encodebytes(der).decode().replace("\n", "")
    lines = [body[i:i + 64] for i in range(0, len(body), 64)]
    return (f"-----BEGIN {label}-----\n" + "\n".join(lines) + f"\n-----END {label}-----\n").encode()


pem_inputs = st.one_of(
    mutated(PEM_SEEDS),
    st.binary(max_size=400),
    st.binary(max_size=300).map(_pem_of),
    mutated([OPERATOR.public_key().public_bytes(Encoding.DER, PublicFormat.SubjectPublicKeyInfo)])
    .map(_pem_of),
    st.sampled_from(["PRIVATE KEY", "CERTIFICATE", "EC PARAMETERS", "RSA PUBLIC KEY"])
    .flatmap(lambda label: st.binary(max_size=200).map(lambda d: _pem_of(d, label))),
)


@FUZZ
@given(pem_inputs)
def test_load_public_pem(pem: bytes) -> None:
    outcome("approval.load_public_pem", load_public_pem, pem)


def _is_operator_key(pem: bytes) -> bool:
    """Whether ``pem`` holds the operator's own public key, however it is laid out."""
    try:
        key = load_public_pem(pem)
    except SignerError:
        return False
    # SubjectPublicKeyInfo names the algorithm, so a P-256 or secp256k1 key among the mutated
    # seeds compares unequal instead of failing to encode (Raw exists only for Ed25519/X25519).
    return key.public_bytes(Encoding.DER, PublicFormat.SubjectPublicKeyInfo) == OPERATOR_SPKI


@FUZZ
@given(st.one_of(st.just(OPERATOR_PEM), pem_inputs),
       st.one_of(st.just(STATEMENT), mutated([STATEMENT]), st.binary(max_size=300)),
       st.one_of(st.just(GENUINE), mutated([GENUINE]), st.binary(max_size=130),
                 st.binary(min_size=64, max_size=64)))
def test_verify_statement_accepts_only_the_genuine_signature(pem: bytes, statement: bytes,
                                                              signature: bytes) -> None:
    RAN["approval.verify_statement"] += 1
    genuine = (_is_operator_key(pem) and statement == STATEMENT and signature == GENUINE)
    try:
        with time_limit(CALL_SECONDS):
            verify_statement(pem, statement, signature, operator_id="fuzz")
    except SignerError as e:
        assert not genuine, f"the genuine approval was refused: {e}"
        if _is_operator_key(pem):
            assert isinstance(e, InvalidApproval)
    else:
        assert genuine, "a signature that is not the operator's was accepted"


POLICY_SEEDS = list(DEMO_POLICIES.values()) + [
    'name = "full"\nexpiry = "4h"\nallowlist = ["0xabc", "bc1qxyz"]\nmax_fee = "1000"\n'
    'max_fee_rate = 12.5\nsighash = ["ALL", "NONE|ANYONECANPAY"]\nallow_contract_calls = true\n'
    '[[rule]]\nname = "r"\nasset = "ERC20:0x' + "ab" * 20 + '"\nmin_amount = 0\n'
    'max_amount = "99999999999999999999999"\ncontract_call = true\napprovers = 3\n'
    'group = ["inv1", "cust1", "pros1"]\nexpiry = "30m"\nrequire_legal_basis = true\n'
    'category_change = ["seized_to_confiscated"]\n',
]
POLICY_KEYS = ["name", "expiry", "allowlist", "max_fee", "max_fee_rate", "sighash",
               "allow_contract_creation", "allow_contract_calls"]
RULE_KEYS = ["name", "asset", "min_amount", "max_amount", "destination", "category_change",
             "contract_call", "approvers", "roles", "group", "veto", "expiry",
             "require_legal_basis"]
toml_scalar = st.one_of(
    st.booleans(), st.integers(min_value=-(2**63), max_value=2**63 - 1), st.floats(),
    st.text(max_size=40),
    st.sampled_from(["24h", "0s", "366d", "999999999d", "ALL", "*", "BTC", "ETH", "external",
                     "own_wallet", "any", "none", "investigator", "x" * 300, "ERC20:0x" + "1" * 40,
                     "1" * 78, "1" * 79]))
toml_value = st.one_of(
    toml_scalar, st.lists(toml_scalar, max_size=4),
    st.dictionaries(st.sampled_from(["investigator", "custody_officer", "judge", "x"])
                    | st.text(max_size=6), st.one_of(toml_scalar, st.lists(toml_scalar, max_size=3)),
                    max_size=3))


def _toml_key(k: str) -> str:
    return k if k and all(c.isascii() and (c.isalnum() or c in "_-") for c in k) else json.dumps(k)


def _toml(v: Any) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, float):
        return {"inf": "inf", "-inf": "-inf", "nan": "nan"}.get(repr(v), repr(v))
    if isinstance(v, int):
        return str(v)
    if isinstance(v, str):
        return json.dumps(v)
    if isinstance(v, list):
        return "[" + ", ".join(_toml(x) for x in v) + "]"
    return "{" + ", ".join(f"{_toml_key(k)} = {_toml(x)}" for k, x in v.items()) + "}"


VALID_TOP: dict[str, Any] = {"name": "fuzz", "expiry": "24h", "allowlist": ["0xabc"],
                             "max_fee": 0, "max_fee_rate": 0, "sighash": ["ALL"],
                             "allow_contract_creation": False, "allow_contract_calls": False}
VALID_RULE: dict[str, Any] = {"name": "r", "asset": "*", "min_amount": "0",
                              "max_amount": "1000000000000000000000", "destination": ["external"],
                              "category_change": ["any"], "contract_call": False, "approvers": 2,
                              "roles": {"investigator": 1, "custody_officer": 1},
                              "veto": ["judge"], "expiry": "4h", "require_legal_basis": False}


@st.composite
def policy_documents(draw: st.DrawFn) -> str:
    """A valid policy with 1..3 of its keys (top level or in a rule) replaced or dropped."""
    top = dict(VALID_TOP)
    rules = [dict(VALID_RULE, name=f"r{i}") for i in range(draw(st.integers(1, 3)))]
    for _ in range(draw(st.integers(1, 3))):
        table = draw(st.sampled_from([top] + rules))
        keys = POLICY_KEYS if table is top else RULE_KEYS
        key = draw(st.sampled_from(keys) | st.text(min_size=1, max_size=6))
        if key in table and draw(st.booleans()):
            del table[key]
        else:
            table[key] = draw(toml_value)
    lines = [f"{_toml_key(k)} = {_toml(v)}" for k, v in top.items()]
    for rule in rules:
        lines.append("[[rule]]")
        lines += [f"{_toml_key(k)} = {_toml(v)}" for k, v in rule.items()]
    return "\n".join(lines) + "\n"


MOVEMENT = Movement(chain=Chain.ETHEREUM, network="ethereum", chain_id=1,
                    outputs=(Output("0xabc", 10**18, "ETH", False, DestinationClass.EXTERNAL),),
                    fee=21000 * 10**9, fee_asset="ETH", digests=(b"\x00" * 32,), nonce=0,
                    gas_limit=21000, max_fee_per_gas=10**9, max_priority_fee_per_gas=1)


def _check_policy(text: str, target: str) -> None:
    policy = outcome(target, parse_policy, text)
    if policy is not None:
        outcome("policy.requirement_for", policy.requirement_for, MOVEMENT)


@FUZZ
@given(st.text(max_size=2000))
def test_parse_policy_random_text(text: str) -> None:
    _check_policy(text, "policy.random_text")


@FUZZ
@given(mutated_text(POLICY_SEEDS))
def test_parse_policy_mutated_valid(text: str) -> None:
    _check_policy(text, "policy.mutated")


@FUZZ
@given(policy_documents())
def test_parse_policy_structured_documents(text: str) -> None:
    _check_policy(text, "policy.structured")


# ---------------------------------------------------------------- regressions found here

REPLAY: dict[str, Callable[[bytes], Any]] = {
    "policy": lambda data: parse_policy(data.decode("utf-8")),
    "eth_json": lambda data: EthereumAdapter().decode(ETH_WALLET, data, Limits()),
    "eth_unsigned": Eip1559Tx.decode_unsigned,
    "eth_signed": Eip1559Tx.decode_signed,
    "psbt": lambda data: BitcoinAdapter.parse(data, Limits()),
    "pubkey_pem": load_public_pem,
}
# rpc/ holds whole requests, replayed against a daemon by tests/integration/test_rpc_fuzz.py.
CASES = sorted(p for p in REGRESSIONS.glob("*/*")
               if p.is_file() and p.suffix != ".md" and p.parent.name != "rpc")


def test_every_regression_input_has_a_replayer() -> None:
    assert CASES, f"no regression inputs under {REGRESSIONS}"
    assert {p.parent.name for p in CASES} <= set(REPLAY)


@pytest.mark.parametrize("path", CASES, ids=lambda p: f"{p.parent.name}/{p.name}")
def test_regression_inputs(path: Path) -> None:
    outcome(f"regression.{path.parent.name}", REPLAY[path.parent.name], path.read_bytes())
