"""Safe (v1.4.1) multisig wallets: the transaction, its EIP-712 hash, the deployment of a Safe,
owner signatures and the ``execTransaction`` call, with nothing but pure computation.

A Safe is a contract: its owners sign the EIP-712 hash of a ``SafeTx`` (``safe_tx_hash``, what
``Safe.getTransactionHash`` returns) and anyone may submit ``execTransaction`` with at least
``threshold`` signatures, sorted by owner address, to the Safe. signerd computes that hash from
the ``SafeTx`` itself, signs it with the owner key it holds in the HSM, checks every other
owner's signature by recovering its signer, and decodes what the call moves exactly as it would
decode a direct transaction (``signing.decode_call``), plus what only a Safe can do: a
DELEGATECALL, a refund of the submitter's gas, a change of who controls the Safe.

A Safe is deployed by ``SafeProxyFactory.createProxyWithNonce(singleton, initializer,
saltNonce)``, whose CREATE2 address (``predicted_address``) is known before it exists.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any

import coincurve
from eth_abi.abi import encode as abi_encode

from signerd.core.errors import (
    FailedPrecondition,
    InvalidArgument,
    InvalidTransaction,
    PermissionDenied,
)
from signerd.core.ethereum.address import (
    ADDRESS_LEN,
    address_from_pubkey,
    parse_address,
    to_checksum,
)
from signerd.core.ethereum.eip1559 import (
    DEFAULT_MAX_DATA_BYTES,
    NONCE_MAX,
    SECP256K1_N,
    UINT256_MAX,
    _json_hex,
    _json_int,
    _json_object,
)
from signerd.core.ethereum.calls import selector
from signerd.core.ethereum.keccak import keccak256
from signerd.core.ethereum.signing import (
    ETH,
    NETWORK,
    SignatureMismatch,
    decode_call,
    low_s,
    recover_y_parity,
)
from signerd.core.model import Chain, EvmChain, Movement, Output, Token

SAFE_VERSION = "1.4.1"

ZERO_ADDRESS = bytes(ADDRESS_LEN)
SENTINEL = bytes(ADDRESS_LEN - 1) + b"\x01"  # SENTINEL_OWNERS / SENTINEL_MODULES
MAX_OWNERS = 64  # a bound on the owners of a Safe signerd deploys or signs for

CALL = 0
DELEGATECALL = 1
OPERATIONS = {CALL: "CALL", DELEGATECALL: "DELEGATECALL"}

SAFE_TX_TYPEHASH = keccak256(
    b"SafeTx(address to,uint256 value,bytes data,uint8 operation,uint256 safeTxGas,"
    b"uint256 baseGas,uint256 gasPrice,address gasToken,address refundReceiver,uint256 nonce)"
)
DOMAIN_SEPARATOR_TYPEHASH = keccak256(b"EIP712Domain(uint256 chainId,address verifyingContract)")

SIGNATURE_LEN = 65
ETH_SIGN_PREFIX = b"\x19Ethereum Signed Message:\n32"


SETUP_SIGNATURE = "setup(address[],uint256,address,bytes,address,address,uint256,address)"
CREATE_PROXY_SIGNATURE = "createProxyWithNonce(address,bytes,uint256)"
EXEC_TRANSACTION_SIGNATURE = ("execTransaction(address,uint256,bytes,uint8,uint256,uint256,"
                              "uint256,address,address,bytes)")
SETUP_SELECTOR = selector(SETUP_SIGNATURE)
CREATE_PROXY_SELECTOR = selector(CREATE_PROXY_SIGNATURE)
EXEC_TRANSACTION_SELECTOR = selector(EXEC_TRANSACTION_SIGNATURE)

# SafeProxy's creation code, as Safe v1.4.1's SafeProxyFactory deploys it
# (``type(SafeProxy).creationCode``, what ``proxyCreationCode()`` returns); the CREATE2 init code
# is this followed by the singleton's address as a uint256.
SAFE_PROXY_CREATION_CODE = bytes.fromhex(
    "608060405234801561001057600080fd5b506040516101e63803806101e68339818101604052602081101561"
    "003357600080fd5b8101908080519060200190929190505050600073ffffffffffffffffffffffffffffffff"
    "ffffffff168173ffffffffffffffffffffffffffffffffffffffff1614156100ca576040517f08c379a00000"
    "000000000000000000000000000000000000000000000000000081526004018080602001828103825260228152"
    "602001806101c46022913960400191505060405180910390fd5b806000806101000a81548173ffffffffffff"
    "ffffffffffffffffffffffffffff021916908373ffffffffffffffffffffffffffffffffffffffff16021790"
    "55505060ab806101196000396000f3fe608060405273ffffffffffffffffffffffffffffffffffffffff6000"
    "54167fa619486e0000000000000000000000000000000000000000000000000000000060003514156050578060"
    "005260206000f35b3660008037600080366000845af43d6000803e60008114156070573d6000fd5b3d6000f3"
    "fea264697066735822122003d1488ee65e08fa41e58e888a9865554c535f2c77126a82cb4c0f917f31441364"
    "736f6c63430007060033496e76616c69642073696e676c65746f6e20616464726573732070726f7669646564"
)


# keccak256 of it: what the canonical v1.4.1 factory's proxyCreationCode() hashes to
SAFE_PROXY_CREATION_CODE_HASH = bytes.fromhex(
    "1856e0ee08399d74e0ea0b03adca210aeade6f748969ac023cdcb4dd62dcaf5f")

# Safe v1.4.1's canonical deployment (safe-deployments), the same address on every chain where
# it is deployed; a wallet's setup names them explicitly, these are the usual values.
CANONICAL_SINGLETON = bytes.fromhex("41675C099F32341bf84BFc5382aF534df5C7461a")
CANONICAL_SINGLETON_L2 = bytes.fromhex("29fcB43b46531BcA003ddC8FCB67FFE91900C762")
CANONICAL_FACTORY = bytes.fromhex("4e1DCf7AD4e460CfD30791CCC4F9c8a4f820ec67")
CANONICAL_FALLBACK_HANDLER = bytes.fromhex("fd0732Dc9E303f09fCEf3a7388Ad10A83459Ec99")


# --- the Safe transaction ---


def _check_address(field: str, value: object) -> bytes:
    if not isinstance(value, bytes) or len(value) != ADDRESS_LEN:
        raise InvalidTransaction(f"{field}: must be 20 bytes")
    return value


_BOUNDS = {UINT256_MAX: "2^256-1", NONCE_MAX: "2^64-2"}


def _check_uint(field: str, value: object, high: int = UINT256_MAX) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= high:
        bound = _BOUNDS.get(high, str(high))
        raise InvalidTransaction(f"{field}: must be an integer between 0 and {bound}")
    return value


def _check_operation(value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value not in OPERATIONS:
        raise InvalidTransaction("operation: must be 0 (CALL) or 1 (DELEGATECALL)")
    return value


_SAFE_TX_KEYS = ("to", "value", "data", "operation", "safeTxGas", "baseGas", "gasPrice",
                 "gasToken", "refundReceiver", "nonce")
# JSON key -> (attribute, highest value). The Safe's nonce is a uint256 that only ever grows by
# one per executed transaction: 2^64-2 (as EIP-2681 bounds an account's nonce) is out of reach
# and keeps it within a uint64 wherever a nonce is stored or shown.
_SAFE_TX_INTS = {"value": ("value", UINT256_MAX), "safeTxGas": ("safe_tx_gas", UINT256_MAX),
                 "baseGas": ("base_gas", UINT256_MAX), "gasPrice": ("gas_price", UINT256_MAX),
                 "nonce": ("nonce", NONCE_MAX)}
_SAFE_TX_ADDRESSES = {"to": "to", "gasToken": "gas_token", "refundReceiver": "refund_receiver"}


@dataclass(frozen=True)
class SafeTx:
    """A Safe transaction as its owners sign it (every field of ``SafeTx`` in EIP-712).

    ``operation`` is 0 (CALL) or 1 (DELEGATECALL: the target's code runs as the Safe itself);
    a non-zero ``gas_price`` pays the submitter back (``(gas used + base_gas) * gas_price`` in
    ``gas_token``, 0 for ETH) to ``refund_receiver`` (0: whoever submits the transaction).
    """

    to: bytes
    value: int
    data: bytes
    operation: int
    safe_tx_gas: int
    base_gas: int
    gas_price: int
    gas_token: bytes
    refund_receiver: bytes
    nonce: int

    def __post_init__(self) -> None:
        for key, attr in _SAFE_TX_ADDRESSES.items():
            _check_address(key, getattr(self, attr))
        for key, (attr, high) in _SAFE_TX_INTS.items():
            _check_uint(key, getattr(self, attr), high)
        _check_operation(self.operation)
        if not isinstance(self.data, bytes):
            raise InvalidTransaction("data: must be bytes")

    @classmethod
    def from_json(cls, doc: object, max_data_bytes: int = DEFAULT_MAX_DATA_BYTES) -> SafeTx:
        """Parse the JSON form (the Safe transaction service's key names), refusing anything
        doubtful: every key required, no other; integers as JSON numbers or 0x-hex strings
        (uint256, the nonce at most 2^64-2); addresses as 40 hex digits (mixed case must be a
        valid EIP-55 checksum); ``data`` 0x-hex of at most ``max_data_bytes``; ``operation``
        0 or 1."""
        fields = _json_object(doc, "Safe transaction", _SAFE_TX_KEYS, _SAFE_TX_KEYS)
        values: dict[str, Any] = {}
        for key, attr in _SAFE_TX_ADDRESSES.items():
            values[attr] = parse_address(fields[key], field=key)
        for key, (attr, high) in _SAFE_TX_INTS.items():
            values[attr] = _json_int(key, fields[key], 0, high)
        operation = fields["operation"]
        if isinstance(operation, str):
            operation = _json_int("operation", operation, 0, 1)
        values["operation"] = _check_operation(operation)
        values["data"] = _json_hex("data", fields["data"], max_data_bytes)
        return cls(**values)

    def to_json(self) -> dict[str, object]:
        """The canonical JSON form: checksummed addresses, integers as 0x-hex, ``operation`` as
        the number 0 or 1; ``from_json`` of it gives this object back."""
        return {
            "to": to_checksum(self.to),
            "value": hex(self.value),
            "data": "0x" + self.data.hex(),
            "operation": self.operation,
            "safeTxGas": hex(self.safe_tx_gas),
            "baseGas": hex(self.base_gas),
            "gasPrice": hex(self.gas_price),
            "gasToken": to_checksum(self.gas_token),
            "refundReceiver": to_checksum(self.refund_receiver),
            "nonce": hex(self.nonce),
        }


def _check_chain(chain_id: object, safe: object) -> None:
    if isinstance(chain_id, bool) or not isinstance(chain_id, int) or \
            not 1 <= chain_id <= UINT256_MAX:
        raise InvalidArgument("chain id: must be a positive integer")
    if not isinstance(safe, bytes) or len(safe) != ADDRESS_LEN:
        raise InvalidArgument("Safe address: must be 20 bytes")


def domain_separator(chain_id: int, safe: bytes) -> bytes:
    """``Safe.domainSeparator()``: keccak(abi.encode(DOMAIN_SEPARATOR_TYPEHASH, chainId, safe))."""
    _check_chain(chain_id, safe)
    return keccak256(abi_encode(["bytes32", "uint256", "address"],
                                [DOMAIN_SEPARATOR_TYPEHASH, chain_id, safe]))


def safe_tx_struct_hash(tx: SafeTx) -> bytes:
    """The EIP-712 struct hash of ``tx`` (``keccak256(encodeData(SafeTx))``)."""
    return keccak256(abi_encode(
        ["bytes32", "address", "uint256", "bytes32", "uint8", "uint256", "uint256", "uint256",
         "address", "address", "uint256"],
        [SAFE_TX_TYPEHASH, tx.to, tx.value, keccak256(tx.data), tx.operation, tx.safe_tx_gas,
         tx.base_gas, tx.gas_price, tx.gas_token, tx.refund_receiver, tx.nonce]))


def safe_tx_hash(chain_id: int, safe: bytes, tx: SafeTx) -> bytes:
    """``Safe.getTransactionHash(...)`` on chain ``chain_id`` for the Safe at ``safe``: the
    EIP-712 digest ``keccak(0x19 0x01 || domainSeparator || structHash)`` the owners sign."""
    return keccak256(b"\x19\x01" + domain_separator(chain_id, safe) + safe_tx_struct_hash(tx))


# --- the deployment of a Safe ---

_SETUP_KEYS = ("owners", "threshold", "fallbackHandler", "singleton", "factory", "saltNonce")


def _check_owners(owners: object, threshold: object) -> None:
    if not isinstance(owners, tuple) or not 1 <= len(owners) <= MAX_OWNERS:
        raise InvalidTransaction(f"owners: must be a list of 1 to {MAX_OWNERS} addresses")
    seen: set[bytes] = set()
    for i, owner in enumerate(owners):
        _check_address(f"owners[{i}]", owner)
        if owner in (ZERO_ADDRESS, SENTINEL):
            raise InvalidTransaction(
                f"owners[{i}]: {to_checksum(owner)} cannot be an owner (reserved by Safe)")
        if owner in seen:
            raise InvalidTransaction(f"owners[{i}]: {to_checksum(owner)} is listed twice")
        seen.add(owner)
    if isinstance(threshold, bool) or not isinstance(threshold, int) or \
            not 1 <= threshold <= len(owners):
        raise InvalidTransaction(
            f"threshold: must be an integer between 1 and the number of owners ({len(owners)})")


@dataclass(frozen=True)
class SafeSetup:
    """How a Safe is deployed: its owners (in the order the Safe lists them), threshold and
    fallback handler (zero for none), the singleton (the Safe contract the proxy delegates to)
    and the factory, and the salt nonce; together they fix the Safe's address."""

    owners: tuple[bytes, ...]
    threshold: int
    fallback_handler: bytes
    singleton: bytes
    factory: bytes
    salt_nonce: int

    def __post_init__(self) -> None:
        _check_owners(self.owners, self.threshold)
        _check_address("fallbackHandler", self.fallback_handler)
        for key, value in (("singleton", self.singleton), ("factory", self.factory)):
            if _check_address(key, value) == ZERO_ADDRESS:
                raise InvalidTransaction(f"{key}: must not be the zero address")
        _check_uint("saltNonce", self.salt_nonce)

    @classmethod
    def from_json(cls, doc: object) -> SafeSetup:
        """Parse the JSON form, every key required and no other: ``owners`` a list of 1 to
        ``MAX_OWNERS`` distinct addresses (neither zero nor Safe's sentinel 0x..01),
        ``threshold`` between 1 and their number, ``fallbackHandler`` (zero: none),
        ``singleton`` and ``factory`` (not zero), ``saltNonce`` a uint256. The Safe is set up
        with no module and no payment (``setup_calldata``)."""
        fields = _json_object(doc, "Safe setup", _SETUP_KEYS, _SETUP_KEYS)
        owners = fields["owners"]
        if not isinstance(owners, (list, tuple)) or not 1 <= len(owners) <= MAX_OWNERS:
            raise InvalidTransaction(f"owners: must be a list of 1 to {MAX_OWNERS} addresses")
        return cls(
            owners=tuple(parse_address(o, field=f"owners[{i}]") for i, o in enumerate(owners)),
            threshold=_json_int("threshold", fields["threshold"], 1, MAX_OWNERS),
            fallback_handler=parse_address(fields["fallbackHandler"], field="fallbackHandler"),
            singleton=parse_address(fields["singleton"], field="singleton"),
            factory=parse_address(fields["factory"], field="factory"),
            salt_nonce=_json_int("saltNonce", fields["saltNonce"], 0, UINT256_MAX),
        )

    def to_json(self) -> dict[str, object]:
        """The canonical JSON form; ``from_json`` of it gives this object back."""
        return {
            "owners": [to_checksum(o) for o in self.owners],
            "threshold": self.threshold,
            "fallbackHandler": to_checksum(self.fallback_handler),
            "singleton": to_checksum(self.singleton),
            "factory": to_checksum(self.factory),
            "saltNonce": hex(self.salt_nonce),
        }


def setup_calldata(setup: SafeSetup) -> bytes:
    """``Safe.setup(owners, threshold, to=0, data=0x, fallbackHandler, paymentToken=0,
    payment=0, paymentReceiver=0)``: the proxy's initializer (no module setup, no payment)."""
    return SETUP_SELECTOR + abi_encode(
        ["address[]", "uint256", "address", "bytes", "address", "address", "uint256", "address"],
        [list(setup.owners), setup.threshold, ZERO_ADDRESS, b"", setup.fallback_handler,
         ZERO_ADDRESS, 0, ZERO_ADDRESS])


def create_proxy_calldata(setup: SafeSetup) -> bytes:
    """``SafeProxyFactory.createProxyWithNonce(singleton, setup_calldata(setup), saltNonce)``,
    sent to ``setup.factory``."""
    return CREATE_PROXY_SELECTOR + abi_encode(
        ["address", "bytes", "uint256"],
        [setup.singleton, setup_calldata(setup), setup.salt_nonce])


def predicted_address(setup: SafeSetup) -> bytes:
    """The address ``create_proxy_calldata(setup)`` deploys the Safe at (CREATE2 by the
    factory): salt = keccak(keccak(initializer) || uint256(saltNonce)), init code = SafeProxy's
    creation code || uint256(singleton)."""
    salt = keccak256(keccak256(setup_calldata(setup)) + setup.salt_nonce.to_bytes(32, "big"))
    init_code = SAFE_PROXY_CREATION_CODE + bytes(12) + setup.singleton
    return keccak256(b"\xff" + setup.factory + salt + keccak256(init_code))[12:]


# --- owner signatures ---


@dataclass(frozen=True)
class OwnerSignature:
    """One owner's ECDSA signature of a Safe transaction hash, as ``execTransaction`` takes it:
    r || s || v, v 27/28 for a signature of the hash itself, 31/32 for an eth_sign (the
    personal_sign prefix over the 32-byte hash)."""

    owner: bytes  # 20 bytes
    signature: bytes  # 65 bytes

    def __post_init__(self) -> None:
        if not isinstance(self.owner, bytes) or len(self.owner) != ADDRESS_LEN:
            raise InvalidArgument("owner: must be 20 bytes")
        if not isinstance(self.signature, bytes) or len(self.signature) != SIGNATURE_LEN:
            raise InvalidArgument("signature: must be 65 bytes (r, s, v)")

    @property
    def v(self) -> int:
        return self.signature[64]

    @property
    def eth_sign(self) -> bool:
        return self.v in (31, 32)


def _check_hash(safe_hash: object) -> bytes:
    if not isinstance(safe_hash, bytes) or len(safe_hash) != 32:
        raise InvalidArgument("Safe transaction hash: must be 32 bytes")
    return safe_hash


def owner_signature_from_hsm(safe_hash: bytes, r: int, s: int, pubkey: bytes) -> OwnerSignature:
    """The HSM's raw (r, s) over ``safe_hash`` as an owner signature: s made low, v = 27 + the
    y-parity under which it recovers ``pubkey`` (SignatureMismatch if none does), the owner
    being the address of ``pubkey``."""
    _check_hash(safe_hash)
    if not 0 < r < SECP256K1_N or not 0 < s < SECP256K1_N:
        raise SignatureMismatch("signature: r or s out of range")
    s = low_s(s)
    parity = recover_y_parity(safe_hash, r, s, pubkey)
    owner = parse_address(address_from_pubkey(pubkey), field="owner")
    return OwnerSignature(owner, r.to_bytes(32, "big") + s.to_bytes(32, "big") +
                          bytes([27 + parity]))


def eth_sign_digest(safe_hash: bytes) -> bytes:
    """What an eth_sign (v 31/32) signature signs: keccak("\\x19Ethereum Signed Message:\\n32"
    || hash), as ``checkNSignatures`` recomputes it."""
    return keccak256(ETH_SIGN_PREFIX + _check_hash(safe_hash))


def recover_owner(safe_hash: bytes, signature: bytes) -> OwnerSignature:
    """Verify one owner signature of ``safe_hash`` and say whose it is. Only ECDSA signatures
    are accepted (v 27/28 over the hash, 31/32 over its eth_sign digest), with r in range and s
    in the lower half of the curve order (the high-S twin of a signature is refused so that
    one signature has one form); contract signatures (v 0) and approved hashes (v 1) are not
    supported."""
    _check_hash(safe_hash)
    if not isinstance(signature, bytes) or len(signature) != SIGNATURE_LEN:
        size = len(signature) if isinstance(signature, bytes) else "not bytes"
        raise InvalidArgument(f"signature: must be 65 bytes (r, s, v), got {size}")
    r = int.from_bytes(signature[:32], "big")
    s = int.from_bytes(signature[32:64], "big")
    v = signature[64]
    if v == 0:
        raise InvalidArgument("signature: v = 0 is a contract (EIP-1271) signature, "
                              "which signerd does not support")
    if v == 1:
        raise InvalidArgument("signature: v = 1 is an approved hash, which signerd does not "
                              "support")
    if v in (27, 28):
        digest, parity = safe_hash, v - 27
    elif v in (31, 32):
        digest, parity = eth_sign_digest(safe_hash), v - 31
    else:
        raise InvalidArgument(f"signature: v = {v}; must be 27 or 28 (EIP-712) or 31 or 32 "
                              "(eth_sign)")
    if not 0 < r < SECP256K1_N:
        raise InvalidArgument("signature: r out of range")
    if not 0 < s < SECP256K1_N:
        raise InvalidArgument("signature: s out of range")
    if s > SECP256K1_N // 2:
        raise InvalidArgument("signature: s is in the upper half of the curve order (high-S); "
                              "use its low-S form")
    try:
        point = coincurve.PublicKey.from_signature_and_message(
            signature[:64] + bytes([parity]), digest, hasher=None)
    except ValueError:
        raise InvalidArgument("signature: recovers no public key") from None
    owner = keccak256(point.format(compressed=False)[1:])[12:]
    return OwnerSignature(owner, bytes(signature))


def pack_signatures(sigs: Iterable[OwnerSignature], owners: Sequence[bytes], threshold: int,
                    *, safe_hash: bytes | None = None) -> bytes:
    """The ``signatures`` argument of ``execTransaction``: exactly ``threshold`` signatures
    (the first ones in ascending owner order when there are more), sorted ascending by owner
    as ``checkNSignatures`` requires. Each must be by one of ``owners`` (PermissionDenied
    naming the address otherwise), no owner twice (InvalidArgument), and fewer than
    ``threshold`` is FailedPrecondition saying how many are missing. With ``safe_hash`` each
    signature is verified again (``recover_owner``) and must be by the owner it claims."""
    owner_list = tuple(owners)
    for i, owner in enumerate(owner_list):
        if not isinstance(owner, bytes) or len(owner) != ADDRESS_LEN:
            raise InvalidArgument(f"owners[{i}]: must be 20 bytes")
    owner_set = set(owner_list)
    if isinstance(threshold, bool) or not isinstance(threshold, int) or \
            not 1 <= threshold <= len(owner_set):
        raise InvalidArgument(f"threshold: must be between 1 and the number of owners "
                              f"({len(owner_set)}), got {threshold!r}")
    by_owner: dict[bytes, OwnerSignature] = {}
    for sig in sigs:
        if not isinstance(sig, OwnerSignature):
            raise InvalidArgument("signatures: must be owner signatures")
        if safe_hash is not None and recover_owner(safe_hash, sig.signature).owner != sig.owner:
            raise InvalidArgument(f"signature claimed by {to_checksum(sig.owner)} is not "
                                  "that owner's signature of this Safe transaction")
        if sig.owner not in owner_set:
            raise PermissionDenied(f"signature by {to_checksum(sig.owner)}: not an owner of "
                                   "the Safe")
        if sig.owner in by_owner:
            raise InvalidArgument(f"signature by {to_checksum(sig.owner)}: that owner signed "
                                  "twice")
        by_owner[sig.owner] = sig
    if len(by_owner) < threshold:
        missing = threshold - len(by_owner)
        raise FailedPrecondition(
            f"{missing} more owner signature{'s' if missing > 1 else ''} needed: "
            f"{len(by_owner)} of the threshold of {threshold}")
    chosen = sorted(by_owner)[:threshold]  # bytes order of equal-length addresses = numeric
    return b"".join(by_owner[owner].signature for owner in chosen)


def exec_transaction_calldata(tx: SafeTx, signatures: bytes) -> bytes:
    """``Safe.execTransaction(to, value, data, operation, safeTxGas, baseGas, gasPrice,
    gasToken, refundReceiver, signatures)``, to be sent to the Safe by anyone."""
    if not isinstance(signatures, bytes):
        raise InvalidArgument("signatures: must be bytes")
    return EXEC_TRANSACTION_SELECTOR + abi_encode(
        ["address", "uint256", "bytes", "uint8", "uint256", "uint256", "uint256", "address",
         "address", "bytes"],
        [tx.to, tx.value, tx.data, tx.operation, tx.safe_tx_gas, tx.base_gas, tx.gas_price,
         tx.gas_token, tx.refund_receiver, signatures])


# --- calls that change who controls the Safe ---


@dataclass(frozen=True)
class _Method:
    name: str
    args: tuple[tuple[str, str], ...]  # (name, "address" | "uint256")

    @property
    def signature(self) -> str:
        return f"{self.name}({','.join(kind for _, kind in self.args)})"


_MANAGEMENT_METHODS = (
    _Method("addOwnerWithThreshold", (("owner", "address"), ("threshold", "uint256"))),
    _Method("removeOwner", (("prevOwner", "address"), ("owner", "address"),
                            ("threshold", "uint256"))),
    _Method("swapOwner", (("prevOwner", "address"), ("oldOwner", "address"),
                          ("newOwner", "address"))),
    _Method("changeThreshold", (("threshold", "uint256"),)),
    _Method("setGuard", (("guard", "address"),)),
    _Method("setFallbackHandler", (("handler", "address"),)),
    _Method("enableModule", (("module", "address"),)),
    _Method("disableModule", (("prevModule", "address"), ("module", "address"))),
)
_BY_SELECTOR = {selector(m.signature): m for m in _MANAGEMENT_METHODS}
# selector -> canonical signature of every Safe call that changes who controls the Safe
OWNER_MANAGEMENT: Mapping[bytes, str] = MappingProxyType(
    {sel: m.signature for sel, m in _BY_SELECTOR.items()})


def _decode_management(method: _Method, data: bytes) -> dict[str, object] | None:
    body = data[4:]
    if len(body) != 32 * len(method.args):
        return None
    out: dict[str, object] = {"method": method.name}
    for i, (name, kind) in enumerate(method.args):
        word = body[32 * i: 32 * (i + 1)]
        if kind == "address":
            if any(word[:12]):
                return None
            out[name] = to_checksum(word[12:])
        else:
            out[name] = int.from_bytes(word, "big")
    return out


def owner_change(safe: bytes, tx: SafeTx) -> dict[str, object] | None:
    """A change of the Safe itself, decoded. A DELEGATECALL of another address runs its code
    as the Safe: it can rewrite the owners, threshold, modules, guard or fallback handler
    in the Safe's storage, or call the Safe's own management functions (MultiSend), so it is
    one: ``{"method": "delegatecall", "to": "0x...", "selector": "0x...", "data": "0x..."}``.
    A call of the Safe to itself: one of the ``OWNER_MANAGEMENT`` calls as
    ``{"method": name, <argument>: value, ...}`` (addresses checksummed, integers as int);
    any other call to itself (other calldata, or calldata not in the exact ABI encoding) as
    ``{"method": "unknown", "selector": "0x...", "data": "0x..."}`` (whatever the operation).
    None when ``tx`` is a CALL of another address."""
    if not isinstance(safe, bytes) or len(safe) != ADDRESS_LEN:
        raise InvalidArgument("Safe address: must be 20 bytes")
    if tx.to != safe:
        if tx.operation == DELEGATECALL:
            return {"method": "delegatecall", "to": to_checksum(tx.to),
                    "selector": "0x" + tx.data[:4].hex(), "data": "0x" + tx.data.hex()}
        return None
    method = _BY_SELECTOR.get(tx.data[:4])
    decoded = None if method is None else _decode_management(method, tx.data)
    if decoded is not None:
        return decoded
    return {"method": "unknown", "selector": "0x" + tx.data[:4].hex(),
            "data": "0x" + tx.data.hex()}


def describe_owner_change(change: Mapping[str, object]) -> str:
    """One line for operators: ``swapOwner(prevOwner=0x.., oldOwner=0x.., newOwner=0x..)``."""
    args = ", ".join(f"{k}={v}" for k, v in change.items() if k != "method")
    return f"{change['method']}({args})"


# --- what a Safe transaction moves ---


# Gas ``execTransaction`` counts beside the call's ``safeTxGas`` when it pays a refund: the
# CALL's own cost (a cold account 2,600, a value 9,000, a new account 25,000, the 2,300 stipend)
# and the calldata's copy to memory (``REFUND_OVERHEAD_GAS`` + 6 gas a word + the memory
# expansion's words^2 / 512). Measured with Safe v1.4.1 on anvil: at most about 48,000 gas above
# safeTxGas with 128 KiB of calldata, well under this bound.
REFUND_OVERHEAD_GAS = 50_000


def refund(tx: SafeTx) -> int:
    """The most ``execTransaction`` pays as a refund for the gas: 0 when ``gas_price`` is 0,
    else gas_price * (base_gas + safe_tx_gas + the call's overhead, ``REFUND_OVERHEAD_GAS``
    and the calldata's copy), in ``gas_token`` (ETH when zero; then at a gas price of at most
    the submitter's own), to ``refund_receiver`` (zero: whoever submits it). The Safe pays
    (gas used + base_gas) * gas_price, where the gas used is the call's (at most safe_tx_gas
    when a refund is paid) plus that overhead, and it pays it whether the call succeeds or
    fails. It is the movement's fee, so that ``max_fee`` bounds it."""
    if tx.gas_price == 0:
        return 0
    words = (len(tx.data) + 31) // 32
    overhead = REFUND_OVERHEAD_GAS + 6 * words + words * words // 512
    return tx.gas_price * (tx.base_gas + tx.safe_tx_gas + overhead)


def movement(chain_id: int, safe: bytes, tx: SafeTx,
             tokens: Mapping[tuple[int, str], Token] | None = None,
             chain: EvmChain | None = None) -> Movement:
    """What ``tx`` executed by the Safe at ``safe`` moves, for policies and the approval
    statement. A CALL is decoded by ``decode_call`` exactly as a direct transaction's call
    (registered ERC-20 transfers and approvals as token outputs, anything else as a contract
    call). A DELEGATECALL runs the target's code as the Safe: nothing of it is decoded, the
    target is an output of 0 and the calldata is a contract call (never empty), so only a
    policy that allows contract calls to that target can let it through. The digest is the
    Safe transaction hash; the fee is the most a refund pays (``refund``: 0 without one, the
    gas being paid by whoever submits it), in the refund's asset, so that max_fee bounds it; a
    refund (``gas_price`` non-zero) is named in the details, as are the operation, the Safe, and a
    call of the Safe to itself (``owner_change``). ``chain``: the chain registry's entry for
    ``chain_id``, whose symbol names the native value (and which the movement carries, so the
    statement binds it); without it the native coin is ETH."""
    digest = safe_tx_hash(chain_id, safe, tx)
    native = ETH if chain is None else chain.symbol
    if tx.operation == CALL:
        call = decode_call(chain_id, tx.to, tx.value, tx.data, tokens, sender=safe,
                           native=native)
        outputs, contract_call, decoded_tokens = call.outputs, call.contract_call, call.tokens
        details = dict(call.details)
    else:
        outputs = (Output(address=to_checksum(tx.to), amount=0, asset=native),)
        contract_call, decoded_tokens, details = "0x" + tx.data.hex(), (), {}
        details["warning"] = ("DELEGATECALL: the target's code runs as the Safe itself and can "
                              "move any of its assets or change its owners")
    gas_token = native if tx.gas_token == ZERO_ADDRESS else f"ERC20:{to_checksum(tx.gas_token)}"
    details.update({
        "tx_type": "safe",
        "safe": to_checksum(safe),
        "safe_version": SAFE_VERSION,
        "safe_tx_hash": "0x" + digest.hex(),
        "operation": OPERATIONS[tx.operation],
        "safe_tx_gas": str(tx.safe_tx_gas),
        "base_gas": str(tx.base_gas),
        "gas_price": str(tx.gas_price),
        "gas_token": to_checksum(tx.gas_token),
        "refund_receiver": to_checksum(tx.refund_receiver)
        + (" (whoever submits the transaction)" if tx.refund_receiver == ZERO_ADDRESS else ""),
        "refund_asset": gas_token,
        "refund": str(refund(tx)),
    })
    if tx.gas_price:
        details["refund_note"] = ("the Safe pays (gas used + base_gas) * gas_price, the gas "
                                  "used including the call's own cost, even if the call fails")
    change = owner_change(safe, tx)
    if change is not None:
        details["owner_change"] = describe_owner_change(change)
    return Movement(
        chain=Chain.ETHEREUM,
        network=NETWORK,
        chain_id=chain_id,
        outputs=outputs,
        fee=refund(tx),
        fee_asset=gas_token if tx.gas_price else native,
        digests=(digest,),
        nonce=tx.nonce,
        contract_call=contract_call,
        tokens=decoded_tokens,
        native=chain,
        details=details,
    )
