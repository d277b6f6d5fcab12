"""The pure Safe v1.4.1 core: strict JSON of a Safe transaction and a Safe setup, the EIP-712
hash checked by eth-account's EIP-712 implementation, owner signatures made and recovered by
eth-account, packing rules, calldata decoded by eth-abi from Safe's ABI, owner-management
decoding and the movement. (The contracts themselves judge it in
tests/integration/test_safe_contracts.py.)"""

from __future__ import annotations

import json
from typing import Any

import coincurve
import pytest
from eth_abi import decode as abi_decode
from eth_abi import encode as abi_encode
from eth_account import Account
from eth_account.messages import encode_defunct, encode_typed_data
from eth_utils import function_abi_to_4byte_selector, keccak
from hypothesis import given, settings
from hypothesis import strategies as st

from signerd.core.errors import (
    FailedPrecondition,
    InvalidArgument,
    InvalidTransaction,
    PermissionDenied,
)
from signerd.core.ethereum import safe as S
from signerd.core.ethereum.address import to_checksum
from signerd.core.ethereum.eip1559 import SECP256K1_N, Eip1559Tx
from signerd.core.ethereum.signing import SignatureMismatch
from signerd.core.ethereum.signing import movement as eip1559_movement
from signerd.core.model import Chain, Token
from tests.support import evm

CHAIN = 11155111
SAFE = bytes.fromhex("5afe" * 10)
ZERO = bytes(20)
RECIPIENT = bytes.fromhex("00000000000000000000000000000000deadbeef")
TOKEN = bytes.fromhex("a0b86991c6218b36c1d19d4a2e9eb0ce3606eb48")

addresses = st.binary(min_size=20, max_size=20)
uint256 = st.integers(min_value=0, max_value=2**256 - 1)
safe_txs = st.builds(
    S.SafeTx, to=addresses, value=uint256, data=st.binary(max_size=200),
    operation=st.sampled_from([0, 1]), safe_tx_gas=uint256, base_gas=uint256,
    gas_price=uint256, gas_token=addresses, refund_receiver=addresses,
    nonce=st.integers(min_value=0, max_value=2**64 - 2))


def tx_doc(**changes: object) -> dict[str, object]:
    doc: dict[str, object] = {
        "to": to_checksum(RECIPIENT), "value": "0xde0b6b3a7640000", "data": "0x",
        "operation": 0, "safeTxGas": 0, "baseGas": 0, "gasPrice": 0,
        "gasToken": "0x" + "00" * 20, "refundReceiver": "0x" + "00" * 20, "nonce": 7}
    doc.update(changes)
    return {k: v for k, v in doc.items() if v is not ...}


def simple_tx(**changes: Any) -> S.SafeTx:
    fields: dict[str, Any] = dict(to=RECIPIENT, value=10**18, data=b"", operation=0,
                                  safe_tx_gas=0, base_gas=0, gas_price=0, gas_token=ZERO,
                                  refund_receiver=ZERO, nonce=7)
    fields.update(changes)
    return S.SafeTx(**fields)


# --- SafeTx JSON ---


def test_safe_tx_json_parses_and_round_trips() -> None:
    tx = S.SafeTx.from_json(tx_doc(data="0xa9059cbb", operation="0x1", nonce="0x10"), 1000)
    assert tx == simple_tx(data=bytes.fromhex("a9059cbb"), operation=1, nonce=16)
    doc = tx.to_json()
    assert doc["to"] == to_checksum(RECIPIENT) and doc["nonce"] == "0x10"
    assert S.SafeTx.from_json(json.loads(json.dumps(doc)), 1000) == tx


@settings(max_examples=60, deadline=None)
@given(tx=safe_txs)
def test_safe_tx_json_round_trips(tx: S.SafeTx) -> None:
    assert S.SafeTx.from_json(json.loads(json.dumps(tx.to_json())), 200) == tx


BAD_FIELDS = [
    ("to", "0x1234", "to: must be 20 bytes"),
    ("to", None, "to: must be a hex address string"),
    ("to", "0x5aAeb6053F3E94C9b9A09f33669435E7Ef1BeAed".replace("5aA", "5Aa"), "to: bad EIP-55"),
    ("value", -1, "value: must be an integer between 0 and 2^256-1"),
    ("value", "0x1" + "0" * 64, "value: must be an integer between 0 and 2^256-1"),
    ("value", 2**256, "value: must be an integer between 0 and 2^256-1"),
    ("value", 1.5, "value: must be an integer"),
    ("value", True, "value: must be an integer"),
    ("value", "12", "value: must be a JSON number or a 0x-prefixed hex string"),
    ("data", "abcd", "data: must be a 0x-prefixed hex string"),
    ("data", "0xabc", "data: must be hex digits of even length"),
    ("data", "0x" + "00" * 11, "data: larger than 10 bytes"),
    ("data", None, "data: must be a 0x-prefixed hex string"),
    ("operation", 2, "operation: must be 0 (CALL) or 1 (DELEGATECALL)"),
    ("operation", -1, "operation: must be 0 (CALL) or 1 (DELEGATECALL)"),
    ("operation", 1.0, "operation: must be 0 (CALL) or 1 (DELEGATECALL)"),
    ("operation", True, "operation: must be 0 (CALL) or 1 (DELEGATECALL)"),
    ("operation", [], "operation: must be 0 (CALL) or 1 (DELEGATECALL)"),
    ("operation", "0x2", "operation: must be an integer between 0 and 1"),
    ("safeTxGas", 2**256, "safeTxGas: must be an integer between 0 and 2^256-1"),
    ("safeTxGas", "0x", "safeTxGas: must be a JSON number or a 0x-prefixed hex string"),
    ("baseGas", -5, "baseGas: must be an integer between 0 and 2^256-1"),
    ("gasPrice", "0xg", "gasPrice: must be a JSON number or a 0x-prefixed hex string"),
    ("gasToken", "0x" + "00" * 19, "gasToken: must be 20 bytes"),
    ("refundReceiver", 0, "refundReceiver: must be a hex address string"),
    ("nonce", 2**64 - 1, "nonce: must be an integer between 0 and 2^64-2"),
    ("nonce", "0x" + "f" * 64, "nonce: must be an integer between 0 and 2^64-2"),
    ("nonce", None, "nonce: must be an integer between 0 and 2^64-2"),
]


@pytest.mark.parametrize("field,value,message", BAD_FIELDS,
                         ids=[f"{f}-{i}" for i, (f, _, _) in enumerate(BAD_FIELDS)])
def test_safe_tx_json_bad_field_is_named(field: str, value: object, message: str) -> None:
    with pytest.raises(InvalidTransaction) as err:
        S.SafeTx.from_json(tx_doc(**{field: value}), 10)
    assert str(err.value).startswith(field + ":")
    assert message in str(err.value)
    assert err.value.status.value == "INVALID_ARGUMENT"


@pytest.mark.parametrize("field", ["to", "value", "data", "operation", "safeTxGas", "baseGas",
                                   "gasPrice", "gasToken", "refundReceiver", "nonce"])
def test_safe_tx_json_missing_field_is_named(field: str) -> None:
    with pytest.raises(InvalidTransaction, match=f"^{field}: missing$"):
        S.SafeTx.from_json(tx_doc(**{field: ...}), 10)


@pytest.mark.parametrize("doc,message", [
    (tx_doc(signatures="0x"), "signatures: unknown field"),
    (tx_doc(safe_tx_gas=0), "safe_tx_gas: unknown field"),
    ([], "Safe transaction: must be a JSON object"),
    ("{}", "Safe transaction: must be a JSON object"),
])
def test_safe_tx_json_shape(doc: object, message: str) -> None:
    with pytest.raises(InvalidTransaction, match=message):
        S.SafeTx.from_json(doc, 10)


@pytest.mark.parametrize("changes,message", [
    ({"to": b"\x00" * 19}, "to: must be 20 bytes"),
    ({"gas_token": "0x" + "00" * 20}, "gasToken: must be 20 bytes"),
    ({"value": -1}, "value: must be"), ({"nonce": 2**64 - 1}, "nonce: must be"),
    ({"operation": 2}, "operation: must be"), ({"data": "0x"}, "data: must be bytes"),
])
def test_safe_tx_is_valid_by_construction(changes: dict[str, Any], message: str) -> None:
    with pytest.raises(InvalidTransaction, match=message):
        simple_tx(**changes)


# --- the EIP-712 hash, by eth-account's implementation of EIP-712 ---


def eth_account_safe_tx_hash(chain_id: int, safe: bytes, tx: S.SafeTx) -> bytes:
    message = encode_typed_data(full_message={
        "types": {
            "EIP712Domain": [{"name": "chainId", "type": "uint256"},
                             {"name": "verifyingContract", "type": "address"}],
            "SafeTx": [{"name": n, "type": t} for n, t in (
                ("to", "address"), ("value", "uint256"), ("data", "bytes"),
                ("operation", "uint8"), ("safeTxGas", "uint256"), ("baseGas", "uint256"),
                ("gasPrice", "uint256"), ("gasToken", "address"),
                ("refundReceiver", "address"), ("nonce", "uint256"))],
        },
        "primaryType": "SafeTx",
        "domain": {"chainId": chain_id, "verifyingContract": "0x" + safe.hex()},
        "message": {"to": "0x" + tx.to.hex(), "value": tx.value, "data": tx.data,
                    "operation": tx.operation, "safeTxGas": tx.safe_tx_gas,
                    "baseGas": tx.base_gas, "gasPrice": tx.gas_price,
                    "gasToken": "0x" + tx.gas_token.hex(),
                    "refundReceiver": "0x" + tx.refund_receiver.hex(), "nonce": tx.nonce},
    })
    return bytes(keccak(b"\x19" + message.version + message.header + message.body))


def test_typehashes_are_safes() -> None:
    # the constants written in Safe.sol v1.4.1
    assert S.SAFE_TX_TYPEHASH.hex() == \
        "bb8310d486368db6bd6f849402fdd73ad53d316b5a4b2644ad6efe0f941286d8"
    assert S.DOMAIN_SEPARATOR_TYPEHASH.hex() == \
        "47e79534a245952e8b16893a336b85a3d9ea9fa8c573f3d803afb92a79469218"


@settings(max_examples=80, deadline=None)
@given(tx=safe_txs, chain_id=st.integers(min_value=1, max_value=2**64 - 1), safe=addresses)
def test_safe_tx_hash_is_eip712(tx: S.SafeTx, chain_id: int, safe: bytes) -> None:
    assert S.safe_tx_hash(chain_id, safe, tx) == eth_account_safe_tx_hash(chain_id, safe, tx)


def test_safe_tx_hash_binds_every_field() -> None:
    base = simple_tx()
    digest = S.safe_tx_hash(CHAIN, SAFE, base)
    for changes in ({"to": TOKEN}, {"value": 1}, {"data": b"\x00"}, {"operation": 1},
                    {"safe_tx_gas": 1}, {"base_gas": 1}, {"gas_price": 1},
                    {"gas_token": TOKEN}, {"refund_receiver": TOKEN}, {"nonce": 8}):
        assert S.safe_tx_hash(CHAIN, SAFE, simple_tx(**changes)) != digest, changes
    assert S.safe_tx_hash(CHAIN + 1, SAFE, base) != digest
    assert S.safe_tx_hash(CHAIN, TOKEN, base) != digest


@pytest.mark.parametrize("chain_id,safe", [(0, SAFE), (True, SAFE), (-1, SAFE),
                                           (CHAIN, SAFE[:19]), (CHAIN, "0x" + SAFE.hex())])
def test_safe_tx_hash_refuses_bad_domain(chain_id: Any, safe: Any) -> None:
    with pytest.raises(InvalidArgument):
        S.safe_tx_hash(chain_id, safe, simple_tx())


# --- SafeSetup ---

OWNERS = [bytes([i]) * 20 for i in (3, 2, 4)]


def setup_doc(**changes: object) -> dict[str, object]:
    doc: dict[str, object] = {
        "owners": [to_checksum(o) for o in OWNERS], "threshold": 2,
        "fallbackHandler": "0xfd0732Dc9E303f09fCEf3a7388Ad10A83459Ec99",
        "singleton": "0x41675C099F32341bf84BFc5382aF534df5C7461a",
        "factory": "0x4e1DCf7AD4e460CfD30791CCC4F9c8a4f820ec67", "saltNonce": "0x2a"}
    doc.update(changes)
    return doc


def test_setup_json_round_trips_and_keeps_the_owners_order() -> None:
    setup = S.SafeSetup.from_json(setup_doc())
    assert setup.owners == tuple(OWNERS) and setup.threshold == 2 and setup.salt_nonce == 42
    assert S.SafeSetup.from_json(json.loads(json.dumps(setup.to_json()))) == setup


@pytest.mark.parametrize("changes,message", [
    ({"threshold": 0}, "threshold: must be an integer between 1"),
    ({"threshold": 4}, r"threshold: must be an integer between 1 and the number of owners \(3\)"),
    ({"threshold": True}, "threshold: must be an integer"),
    ({"owners": []}, "owners: must be a list of 1 to 64 addresses"),
    ({"owners": "0x" + "03" * 20}, "owners: must be a list"),
    ({"owners": ["0x" + "03" * 20] * 65}, "owners: must be a list of 1 to 64"),
    ({"owners": ["0x" + "03" * 20, "0x" + "03" * 20]}, r"owners\[1\]: .* is listed twice"),
    ({"owners": ["0x" + "03" * 20, "0x" + "00" * 20]}, r"owners\[1\]: .* cannot be an owner"),
    ({"owners": ["0x" + "00" * 19 + "01", "0x" + "03" * 20]}, r"owners\[0\]: .* cannot be"),
    ({"owners": ["0x" + "03" * 20, "0x12"]}, r"owners\[1\]: must be 20 bytes"),
    ({"singleton": "0x" + "00" * 20}, "singleton: must not be the zero address"),
    ({"factory": "0x" + "00" * 20}, "factory: must not be the zero address"),
    ({"fallbackHandler": "nope"}, "fallbackHandler: must be 20 bytes"),
    ({"saltNonce": -1}, r"saltNonce: must be an integer between 0 and 2\^256-1"),
    ({"saltNonce": "0x1" + "0" * 64}, "saltNonce: must be an integer"),
    ({"extra": 1}, "extra: unknown field"),
])
def test_setup_json_bad_inputs(changes: dict[str, object], message: str) -> None:
    with pytest.raises(InvalidTransaction, match=message):
        S.SafeSetup.from_json(setup_doc(**changes))


def test_setup_json_missing_key() -> None:
    doc = setup_doc()
    del doc["saltNonce"]
    with pytest.raises(InvalidTransaction, match="saltNonce: missing"):
        S.SafeSetup.from_json(doc)


def test_setup_zero_fallback_handler_is_allowed() -> None:
    setup = S.SafeSetup.from_json(setup_doc(fallbackHandler="0x" + "00" * 20))
    assert setup.fallback_handler == ZERO


def safe_abi(name: str) -> dict[str, Any]:
    art = {"setup": "Safe.sol/Safe.json", "execTransaction": "Safe.sol/Safe.json",
           "createProxyWithNonce": "proxies/SafeProxyFactory.sol/SafeProxyFactory.json"}
    abi = evm.safe_artifact(art.get(name, "Safe.sol/Safe.json"))["abi"]
    (fn,) = [f for f in abi if f.get("type") == "function" and f["name"] == name]
    return dict(fn)


needs_artifacts = pytest.mark.skipif(not evm.SAFE_BUILD.exists(),
                                     reason="Safe build artifacts not installed")


def decode_with_abi(name: str, calldata: bytes) -> tuple[Any, ...]:
    fn = safe_abi(name)
    assert calldata[:4] == function_abi_to_4byte_selector(fn)
    return tuple(abi_decode([i["type"] for i in fn["inputs"]], calldata[4:]))


@needs_artifacts
def test_setup_and_create_proxy_calldata_decode_with_safes_abi() -> None:
    setup = S.SafeSetup.from_json(setup_doc())
    initializer = S.setup_calldata(setup)
    owners, threshold, to, data, handler, token, payment, receiver = \
        decode_with_abi("setup", initializer)
    assert [bytes.fromhex(o[2:]) for o in owners] == OWNERS and threshold == 2
    assert (to, data, token, payment, receiver) == ("0x" + "00" * 20, b"", "0x" + "00" * 20, 0,
                                                    "0x" + "00" * 20)
    assert bytes.fromhex(handler[2:]) == setup.fallback_handler
    singleton, init, salt = decode_with_abi("createProxyWithNonce",
                                            S.create_proxy_calldata(setup))
    assert (bytes.fromhex(singleton[2:]), init, salt) == (setup.singleton, initializer, 42)


@needs_artifacts
def test_proxy_creation_code_is_the_artifacts() -> None:
    art = evm.safe_artifact("proxies/SafeProxy.sol/SafeProxy.json")
    assert S.SAFE_PROXY_CREATION_CODE == bytes.fromhex(art["bytecode"][2:])


def test_proxy_creation_code_is_the_canonical_factorys() -> None:
    """Published hashes of the canonical v1.4.1 deployment: its factory's proxyCreationCode()
    and the CREATE2 init code with the canonical (L1) singleton."""
    assert keccak(S.SAFE_PROXY_CREATION_CODE) == S.SAFE_PROXY_CREATION_CODE_HASH
    assert keccak(S.SAFE_PROXY_CREATION_CODE + bytes(12) + S.CANONICAL_SINGLETON).hex() == \
        "76733d705f71b79841c0ee960a0ca880f779cde7ef446c989e6d23efc0a4adfb"


def test_predicted_address_of_a_mainnet_safe() -> None:
    """A 2-of-4 Safe deployed on Ethereum mainnet by the canonical v1.4.1 factory (transaction
    0xdac58edb65c2af3f86f03586eeec7caa7ee245d6d06679a913e5dda16617658e, a mined vanity salt)."""
    setup = S.SafeSetup(
        owners=tuple(bytes.fromhex(o) for o in (
            "34f845773D4364999f2fbC7AA26ABDeE902cBb46",
            "E2Df39d8c1c393BDe653D96a09852508CA2816e5",
            "000000000dD7Bc0bcCE4392698dc3e11004F20eB",
            "Cbd6073f486714E6641bf87c22A9CEc25aCf5804")),
        threshold=2, fallback_handler=S.CANONICAL_FALLBACK_HANDLER,
        singleton=S.CANONICAL_SINGLETON, factory=S.CANONICAL_FACTORY,
        salt_nonce=0xc437564b491906978ae4396733fbc0835f87e6b2578193331caa87645ebe9bdc)
    assert to_checksum(S.predicted_address(setup)) == "0x000000000034065b3a94C2118CFe5B4C0067B615"


def test_predicted_address_follows_create2() -> None:
    """CREATE2 written out here with eth-utils' keccak (EIP-1014)."""
    setup = S.SafeSetup.from_json(setup_doc())
    salt = keccak(keccak(S.setup_calldata(setup)) + (42).to_bytes(32, "big"))
    init = S.SAFE_PROXY_CREATION_CODE + abi_encode(["address"], [setup.singleton])
    expected = keccak(b"\xff" + setup.factory + salt + keccak(init))[12:]
    assert S.predicted_address(setup) == expected
    # each part of the setup moves the address
    seen = {S.predicted_address(setup)}
    for changes in ({"saltNonce": 43}, {"threshold": 3}, {"owners": setup_doc()["owners"][::-1]},
                    {"fallbackHandler": "0x" + "00" * 20},
                    {"singleton": "0x" + "11" * 20}, {"factory": "0x" + "11" * 20}):
        seen.add(S.predicted_address(S.SafeSetup.from_json(setup_doc(**changes))))
    assert len(seen) == 7


# --- owner signatures ---

KEYS = [Account.from_key(bytes([i + 1]) * 32) for i in range(4)]


def raw(account: Any) -> bytes:
    return bytes.fromhex(account.address[2:])


def direct(account: Any, digest: bytes) -> bytes:
    return bytes(account.unsafe_sign_hash(digest).signature)


def eth_sign(account: Any, digest: bytes) -> bytes:
    sig = bytes(account.sign_message(encode_defunct(primitive=digest)).signature)
    return sig[:64] + bytes([sig[64] + 4])


def flip_s(sig: bytes) -> bytes:
    s = int.from_bytes(sig[32:64], "big")
    v = sig[64]
    other = {27: 28, 28: 27, 31: 32, 32: 31}[v]
    return sig[:32] + (SECP256K1_N - s).to_bytes(32, "big") + bytes([other])


DIGEST = S.safe_tx_hash(CHAIN, SAFE, simple_tx())


@settings(max_examples=20, deadline=None)
@given(key=st.integers(min_value=1, max_value=SECP256K1_N - 1), digest=st.binary(min_size=32,
                                                                                 max_size=32))
def test_recover_owner_agrees_with_eth_account(key: int, digest: bytes) -> None:
    account = Account.from_key(key.to_bytes(32, "big"))
    for sig in (direct(account, digest), eth_sign(account, digest)):
        got = S.recover_owner(digest, sig)
        assert got.owner == raw(account) and got.signature == sig
    assert S.recover_owner(digest, direct(account, digest)).v in (27, 28)
    assert S.recover_owner(digest, eth_sign(account, digest)).eth_sign


def test_recover_owner_of_another_hash_is_another_address() -> None:
    sig = direct(KEYS[0], DIGEST)
    other = S.safe_tx_hash(CHAIN, SAFE, simple_tx(nonce=8))
    assert S.recover_owner(other, sig).owner != raw(KEYS[0])
    # an eth_sign signature read as direct (v - 4) is someone else's signature of the hash
    es = eth_sign(KEYS[0], DIGEST)
    assert S.recover_owner(DIGEST, es[:64] + bytes([es[64] - 4])).owner != raw(KEYS[0])


@pytest.mark.parametrize("mutate,message", [
    (lambda s: s[:64], "must be 65 bytes \\(r, s, v\\), got 64"),
    (lambda s: s + b"\x00", "got 66"),
    (lambda s: s[:64] + b"\x00", "v = 0 is a contract \\(EIP-1271\\) signature"),
    (lambda s: s[:64] + b"\x01", "v = 1 is an approved hash"),
    (lambda s: s[:64] + b"\x1d", "v = 29; must be 27 or 28"),
    (lambda s: s[:64] + b"\x21", "v = 33"),
    (lambda s: s[:64] + b"\x02", "v = 2"),
    (flip_s, "high-S"),
    (lambda s: bytes(32) + s[32:], "r out of range"),
    (lambda s: SECP256K1_N.to_bytes(32, "big") + s[32:], "r out of range"),
    (lambda s: s[:32] + bytes(32) + s[64:], "s out of range"),
    (lambda s: s[:32] + SECP256K1_N.to_bytes(32, "big") + s[64:], "s out of range"),
])
def test_recover_owner_refuses(mutate: Any, message: str) -> None:
    with pytest.raises(InvalidArgument, match=message):
        S.recover_owner(DIGEST, mutate(direct(KEYS[0], DIGEST)))


def test_recover_owner_refuses_high_s_eth_sign_and_bad_hash() -> None:
    with pytest.raises(InvalidArgument, match="high-S"):
        S.recover_owner(DIGEST, flip_s(eth_sign(KEYS[1], DIGEST)))
    with pytest.raises(InvalidArgument, match="hash: must be 32 bytes"):
        S.recover_owner(DIGEST[:31], direct(KEYS[0], DIGEST))
    with pytest.raises(InvalidArgument, match="not bytes"):
        S.recover_owner(DIGEST, "0x" + direct(KEYS[0], DIGEST).hex())  # type: ignore[arg-type]


def test_recover_owner_x_not_on_curve() -> None:
    # an r that is the x of no point of secp256k1
    x = next(x for x in range(1, 100) if not _on_curve(x))
    sig = x.to_bytes(32, "big") + (1).to_bytes(32, "big") + b"\x1b"
    with pytest.raises(InvalidArgument, match="recovers no public key"):
        S.recover_owner(DIGEST, sig)


def _on_curve(x: int) -> bool:
    p = 2**256 - 2**32 - 977
    y2 = (pow(x, 3, p) + 7) % p
    return pow(y2, (p - 1) // 2, p) == 1


def test_owner_signature_from_hsm() -> None:
    key = coincurve.PrivateKey(bytes([9]) * 32)
    account = Account.from_key(key.secret)
    for digest in (DIGEST, bytes(range(32))):
        rs = key.sign_recoverable(digest, hasher=None)
        r, s = int.from_bytes(rs[:32], "big"), int.from_bytes(rs[32:64], "big")
        for given_s in (s, SECP256K1_N - s):  # the HSM may return either
            sig = S.owner_signature_from_hsm(digest, r, given_s,
                                             key.public_key.format(compressed=False))
            assert sig.owner == raw(account)
            assert int.from_bytes(sig.signature[32:64], "big") <= SECP256K1_N // 2
            assert sig.v in (27, 28)
            # eth-account recovers the owner (what ecrecover in checkNSignatures does)
            assert Account._recover_hash(digest, signature=sig.signature) == account.address
            assert S.recover_owner(digest, sig.signature) == sig
    with pytest.raises(SignatureMismatch):
        S.owner_signature_from_hsm(DIGEST, r, s, coincurve.PrivateKey().public_key.format())
    pub = key.public_key.format()
    for bad_r, bad_s in ((0, s), (SECP256K1_N, s), (r, 0), (r, SECP256K1_N), (2**256, s)):
        with pytest.raises(SignatureMismatch, match="out of range"):
            S.owner_signature_from_hsm(DIGEST, bad_r, bad_s, pub)


def test_owner_signature_shape() -> None:
    with pytest.raises(InvalidArgument, match="owner: must be 20 bytes"):
        S.OwnerSignature(b"\x01" * 19, b"\x00" * 65)
    with pytest.raises(InvalidArgument, match="signature: must be 65 bytes"):
        S.OwnerSignature(b"\x01" * 20, b"\x00" * 64)


# --- packing ---


def sigs_of(accounts: list[Any], digest: bytes = DIGEST) -> list[S.OwnerSignature]:
    return [S.recover_owner(digest, direct(a, digest)) for a in accounts]


def test_pack_sorts_by_owner_and_takes_the_first_threshold() -> None:
    owners = [raw(a) for a in KEYS[:3]]
    by_addr = sorted(KEYS[:3], key=lambda a: int(a.address, 16))
    sigs = sigs_of(list(reversed(by_addr)))
    packed = S.pack_signatures(sigs, owners, 2)
    assert packed == b"".join(s.signature for s in sigs_of(by_addr[:2]))
    assert len(S.pack_signatures(sigs, owners, 3)) == 3 * 65
    assert S.pack_signatures(iter(sigs), tuple(owners), 1) == sigs_of(by_addr[:1])[0].signature
    # re-verified against the hash
    assert S.pack_signatures(sigs, owners, 2, safe_hash=DIGEST) == packed


def test_pack_refuses_too_few() -> None:
    owners = [raw(a) for a in KEYS[:3]]
    with pytest.raises(FailedPrecondition, match="^1 more owner signature needed: 2 of the "
                                                 "threshold of 3$") as err:
        S.pack_signatures(sigs_of(KEYS[:2]), owners, 3)
    assert err.value.status.value == "FAILED_PRECONDITION"
    with pytest.raises(FailedPrecondition, match="^3 more owner signatures needed: 0 of"):
        S.pack_signatures([], owners, 3)


def test_pack_refuses_a_non_owner_and_duplicates() -> None:
    owners = [raw(a) for a in KEYS[:3]]
    with pytest.raises(PermissionDenied, match=KEYS[3].address + ": not an owner") as err:
        S.pack_signatures(sigs_of([KEYS[0], KEYS[3], KEYS[1]]), owners, 2)
    assert err.value.status.value == "PERMISSION_DENIED"
    twice = sigs_of([KEYS[0]]) + [S.recover_owner(DIGEST, eth_sign(KEYS[0], DIGEST))]
    with pytest.raises(InvalidArgument, match=KEYS[0].address + ": that owner signed twice"):
        S.pack_signatures(twice + sigs_of([KEYS[1]]), owners, 2)


def test_pack_with_the_hash_refuses_a_signature_claimed_by_another_owner() -> None:
    owners = [raw(a) for a in KEYS[:3]]
    forged = S.OwnerSignature(raw(KEYS[1]), direct(KEYS[0], DIGEST))  # KEYS[0] signed it
    with pytest.raises(InvalidArgument, match=f"claimed by {KEYS[1].address} is not"):
        S.pack_signatures(sigs_of([KEYS[2]]) + [forged], owners, 2, safe_hash=DIGEST)
    other = S.safe_tx_hash(CHAIN, SAFE, simple_tx(nonce=99))
    with pytest.raises(InvalidArgument, match="is not that owner's signature"):
        S.pack_signatures(sigs_of(KEYS[:2]), owners, 2, safe_hash=other)


@pytest.mark.parametrize("owners,threshold,message", [
    ([b"\x01" * 20], 0, "threshold: must be between 1 and the number of owners \\(1\\)"),
    ([b"\x01" * 20], 2, "threshold: must be between 1"),
    ([b"\x01" * 19], 1, "owners\\[0\\]: must be 20 bytes"),
    ([b"\x01" * 20, b"\x01" * 20], 2, "threshold: must be between 1 and the number of owners"),
])
def test_pack_refuses_bad_owners_or_threshold(owners: list[bytes], threshold: int,
                                              message: str) -> None:
    with pytest.raises(InvalidArgument, match=message):
        S.pack_signatures([], owners, threshold)


# --- execTransaction, owner management ---


@needs_artifacts
@settings(max_examples=20, deadline=None)
@given(tx=safe_txs, signatures=st.binary(max_size=200))
def test_exec_transaction_calldata_decodes_with_safes_abi(tx: S.SafeTx, signatures: bytes) -> None:
    decoded = decode_with_abi("execTransaction", S.exec_transaction_calldata(tx, signatures))
    assert decoded == ("0x" + tx.to.hex(), tx.value, tx.data, tx.operation, tx.safe_tx_gas,
                       tx.base_gas, tx.gas_price, "0x" + tx.gas_token.hex(),
                       "0x" + tx.refund_receiver.hex(), signatures)


@needs_artifacts
def test_owner_management_selectors_are_safes() -> None:
    abi = evm.safe_artifact("Safe.sol/Safe.json")["abi"]
    by_name = {f["name"]: f for f in abi if f.get("type") == "function"}
    names = ["addOwnerWithThreshold", "removeOwner", "swapOwner", "changeThreshold", "setGuard",
             "setFallbackHandler", "enableModule", "disableModule"]
    assert {function_abi_to_4byte_selector(by_name[n]) for n in names} == set(S.OWNER_MANAGEMENT)
    for name in names:
        sel = function_abi_to_4byte_selector(by_name[name])
        assert S.OWNER_MANAGEMENT[sel].startswith(name + "(")
    for name, sel in (("setup", S.SETUP_SELECTOR), ("execTransaction",
                                                     S.EXEC_TRANSACTION_SELECTOR)):
        assert function_abi_to_4byte_selector(by_name[name]) == sel


MANAGEMENT_CASES = [
    ("addOwnerWithThreshold(address,uint256)", [b"\x07" * 20, 2],
     {"owner": to_checksum(b"\x07" * 20), "threshold": 2}),
    ("removeOwner(address,address,uint256)", [b"\x01" * 20, b"\x07" * 20, 1],
     {"prevOwner": to_checksum(b"\x01" * 20), "owner": to_checksum(b"\x07" * 20),
      "threshold": 1}),
    ("swapOwner(address,address,address)", [S.SENTINEL, b"\x07" * 20, b"\x08" * 20],
     {"prevOwner": to_checksum(S.SENTINEL), "oldOwner": to_checksum(b"\x07" * 20),
      "newOwner": to_checksum(b"\x08" * 20)}),
    ("changeThreshold(uint256)", [1], {"threshold": 1}),
    ("setGuard(address)", [b"\x09" * 20], {"guard": to_checksum(b"\x09" * 20)}),
    ("setFallbackHandler(address)", [ZERO], {"handler": to_checksum(ZERO)}),
    ("enableModule(address)", [b"\x0a" * 20], {"module": to_checksum(b"\x0a" * 20)}),
    ("disableModule(address,address)", [S.SENTINEL, b"\x0a" * 20],
     {"prevModule": to_checksum(S.SENTINEL), "module": to_checksum(b"\x0a" * 20)}),
]


def encoded(signature: str, args: list[Any]) -> bytes:
    types = signature[signature.index("(") + 1:-1].split(",")
    return bytes(keccak(text=signature))[:4] + abi_encode(types, args)


@pytest.mark.parametrize("signature,args,expected", MANAGEMENT_CASES,
                         ids=[c[0].split("(")[0] for c in MANAGEMENT_CASES])
def test_owner_change_decodes(signature: str, args: list[Any],
                              expected: dict[str, object]) -> None:
    data = encoded(signature, args)
    tx = simple_tx(to=SAFE, value=0, data=data)
    method = signature.split("(")[0]
    assert S.owner_change(SAFE, tx) == {"method": method, **expected}
    for op in (0, 1):
        mv = S.movement(CHAIN, SAFE, simple_tx(to=SAFE, value=0, data=data, operation=op))
        assert mv.details["owner_change"].startswith(method + "(")
        assert mv.contract_call == "0x" + data.hex()
    # the same call to another contract is no change of this Safe
    assert S.owner_change(SAFE, simple_tx(to=TOKEN, data=data)) is None
    # not the exact encoding (a byte more, a dirty address word): flagged, not decoded
    for bad in (data + b"\x00", data[:-1]):
        assert S.owner_change(SAFE, simple_tx(to=SAFE, data=bad)) == \
            {"method": "unknown", "selector": "0x" + data[:4].hex(), "data": "0x" + bad.hex()}
    if "address" in signature:
        dirty = data[:4] + b"\x01" + data[5:]
        change = S.owner_change(SAFE, simple_tx(to=SAFE, data=dirty))
        assert change is not None and change["method"] == "unknown"


def test_any_other_call_of_the_safe_to_itself_is_flagged() -> None:
    for data in (b"", b"\x12\x34", encoded("approveHash(bytes32)", [b"\x01" * 32])):
        change = S.owner_change(SAFE, simple_tx(to=SAFE, data=data))
        assert change == {"method": "unknown", "selector": "0x" + data[:4].hex(),
                          "data": "0x" + data.hex()}
        assert "owner_change" in S.movement(CHAIN, SAFE, simple_tx(to=SAFE, data=data)).details
    assert S.owner_change(SAFE, simple_tx()) is None
    assert "owner_change" not in S.movement(CHAIN, SAFE, simple_tx()).details


# --- movement ---

USDC = Token(CHAIN, to_checksum(TOKEN), "erc20", "USDC", 6)
REGISTRY = {USDC.key: USDC}


def test_movement_of_a_call_is_the_direct_transactions() -> None:
    """The Safe's call decodes exactly as the same call sent directly (signing.movement)."""
    transfer = encoded("transfer(address,uint256)", [RECIPIENT, 5_000_000])
    for to, value, data in ((RECIPIENT, 10**18, b""), (TOKEN, 0, transfer),
                            (TOKEN, 0, transfer + b"\x00"), (RECIPIENT, 3, b"\xca\xfe")):
        tx = simple_tx(to=to, value=value, data=data)
        mv = S.movement(CHAIN, SAFE, tx, REGISTRY)
        direct_tx = Eip1559Tx(chain_id=CHAIN, nonce=7, max_priority_fee_per_gas=1,
                              max_fee_per_gas=1, gas=100000, to=to, value=value, data=data)
        expected = eip1559_movement(direct_tx, REGISTRY)
        assert (mv.outputs, mv.contract_call, mv.tokens) == \
            (expected.outputs, expected.contract_call, expected.tokens)
        assert mv.chain is Chain.ETHEREUM and mv.chain_id == CHAIN and mv.nonce == 7
        assert mv.digests == (S.safe_tx_hash(CHAIN, SAFE, tx),) and mv.fee == 0
        assert mv.details["operation"] == "CALL" and mv.details["safe"] == to_checksum(SAFE)
        assert mv.details["safe_tx_hash"] == "0x" + S.safe_tx_hash(CHAIN, SAFE, tx).hex()
        assert mv.details["refund"] == "0"


def test_movement_of_a_delegatecall_decodes_nothing() -> None:
    transfer = encoded("transfer(address,uint256)", [RECIPIENT, 5_000_000])
    for data in (transfer, b""):
        mv = S.movement(CHAIN, SAFE, simple_tx(to=TOKEN, value=10**18, data=data, operation=1),
                        REGISTRY)
        assert mv.tokens == () and [(o.address, o.amount) for o in mv.outputs] == \
            [(to_checksum(TOKEN), 0)]
        assert mv.contract_call == "0x" + data.hex() and mv.contract_call != ""
        assert mv.details["operation"] == "DELEGATECALL" and "DELEGATECALL" in \
            mv.details["warning"]


def test_movement_names_the_refund() -> None:
    tx = simple_tx(safe_tx_gas=100_000, base_gas=30_000, gas_price=7, gas_token=TOKEN)
    mv = S.movement(CHAIN, SAFE, tx, REGISTRY)
    # the most it pays, the call's overhead (50,000 gas with no calldata) included: the fee,
    # in the refund's asset, which max_fee bounds
    assert mv.fee == 7 * (130_000 + 50_000) and mv.fee_asset == f"ERC20:{to_checksum(TOKEN)}"
    assert mv.details["refund"] == str(7 * 180_000)
    assert mv.details["refund_asset"] == f"ERC20:{to_checksum(TOKEN)}"
    assert mv.details["gas_token"] == to_checksum(TOKEN)
    assert mv.details["refund_receiver"].endswith("(whoever submits the transaction)")
    eth = S.movement(CHAIN, SAFE, simple_tx(gas_price=1, base_gas=1,
                                            refund_receiver=RECIPIENT))
    assert eth.details["refund_asset"] == "ETH" and eth.details["refund"] == "50001"
    assert (eth.fee, eth.fee_asset) == (50_001, "ETH")
    # the calldata's copy counts too: 6 gas a word and the memory's words^2 / 512
    big = S.movement(CHAIN, SAFE, simple_tx(gas_price=1, data=bytes(32 * 1024)))
    assert big.fee == 50_000 + 6 * 1024 + 1024 * 1024 // 512
    # no refund without a gas price, whatever the token and receiver: no fee
    free = S.movement(CHAIN, SAFE, simple_tx(gas_token=TOKEN, refund_receiver=RECIPIENT))
    assert (free.fee, free.fee_asset, free.details["refund"]) == (0, "ETH", "0")
    assert eth.details["refund_receiver"] == to_checksum(RECIPIENT)
    assert "even if the call fails" in eth.details["refund_note"]
    assert "refund_note" not in S.movement(CHAIN, SAFE, simple_tx()).details


# --- anything from outside: a clear refusal, never a crash ---

json_values = st.recursive(
    st.none() | st.booleans() | st.integers(min_value=-2**300, max_value=2**300)
    | st.floats(allow_nan=True) | st.text(max_size=80)
    | st.sampled_from(["0x", "0x00", "0x" + "ab" * 20, "0x" + "AB" * 20, "0x1", "0xzz"]),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner,
                                                                max_size=4),
    max_leaves=8)


@settings(max_examples=300, deadline=None)
@given(key=st.sampled_from(["to", "value", "data", "operation", "safeTxGas", "baseGas",
                            "gasPrice", "gasToken", "refundReceiver", "nonce"]),
       value=json_values)
def test_safe_tx_json_fuzz_is_refused_by_name(key: str, value: object) -> None:
    try:
        tx = S.SafeTx.from_json(tx_doc(**{key: value}), 64)
    except InvalidTransaction as exc:
        assert str(exc).startswith(key + ":"), str(exc)
    else:
        assert S.SafeTx.from_json(tx.to_json(), 64) == tx


@settings(max_examples=300, deadline=None)
@given(key=st.sampled_from(["owners", "threshold", "fallbackHandler", "singleton", "factory",
                            "saltNonce"]),
       value=json_values)
def test_setup_json_fuzz_is_refused_by_name(key: str, value: object) -> None:
    try:
        setup = S.SafeSetup.from_json(setup_doc(**{key: value}))
    except InvalidTransaction as exc:
        assert str(exc).split(":")[0].split("[")[0] in (key, "threshold"), str(exc)
    else:
        assert S.SafeSetup.from_json(setup.to_json()) == setup


@settings(max_examples=300, deadline=None)
@given(signature=st.binary(min_size=0, max_size=70) | st.binary(min_size=65, max_size=65),
       v=st.integers(min_value=0, max_value=255))
def test_recover_owner_fuzz(signature: bytes, v: int) -> None:
    for sig in (signature, signature[:64] + bytes([v])):
        try:
            got = S.recover_owner(DIGEST, sig)
        except InvalidArgument as exc:
            assert str(exc).startswith("signature:")
        else:
            assert Account._recover_hash(
                DIGEST if got.v in (27, 28) else S.eth_sign_digest(DIGEST),
                signature=sig[:64] + bytes([got.v - (4 if got.eth_sign else 0)])) == \
                to_checksum(got.owner)


@settings(max_examples=200, deadline=None)
@given(data=st.binary(max_size=140) | st.sampled_from(list(S.OWNER_MANAGEMENT)).flatmap(
    lambda sel: st.binary(max_size=100).map(lambda rest: sel + rest)),
    to_self=st.booleans(), operation=st.sampled_from([0, 1]))
def test_owner_change_and_movement_fuzz(data: bytes, to_self: bool, operation: int) -> None:
    tx = simple_tx(to=SAFE if to_self else TOKEN, data=data, operation=operation)
    change = S.owner_change(SAFE, tx)
    # a DELEGATECALL of any address runs its code as the Safe: a change of the Safe too
    assert (change is not None) == (to_self or operation == 1)
    if change is not None and not to_self:
        assert change == {"method": "delegatecall", "to": to_checksum(TOKEN),
                          "selector": "0x" + data[:4].hex(), "data": "0x" + data.hex()}
    mv = S.movement(CHAIN, SAFE, tx, REGISTRY)
    assert ("owner_change" in mv.details) == (to_self or operation == 1)
    assert mv.digests == (S.safe_tx_hash(CHAIN, SAFE, tx),)
