"""Safe wallets (pure): what signerd checks before it records a Safe, and the Safe fields a
transfer's movement binds.

A Safe wallet is a Safe v1.4.1 smart account (``signerd.core.ethereum.safe``) one of whose
owners is an HSM key of this signerd (a key share made first, so that its owner address can be
put in the Safe's owner list). signerd records the Safe only after checking that its address is
the one the factory deploys for the setup (``predicted_address``) and that its own owner key is
among the setup's owners; the record (address, chain id, owners, threshold, setup) is sealed
with the wallet's other fields.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from .canonical import dumps as canonical_dumps
from .errors import InvalidArgument, echo
from .ethereum import safe as S
from .ethereum.address import address_from_pubkey, parse_address, to_checksum
from .model import Movement

ZERO = bytes(20)
MAX_SETUP_CHARS = 16384


@dataclass(frozen=True)
class CheckedSafe:
    setup: S.SafeSetup
    address: str  # EIP-55
    owner: str  # this signerd's owner address (EIP-55)
    owners: tuple[str, ...]  # EIP-55, in the setup's order
    threshold: int

    @property
    def outside_owners(self) -> tuple[str, ...]:
        return tuple(o for o in self.owners if o != self.owner)

    def record(self, chain_id: int) -> dict[str, Any]:
        """The ``safe`` field of the wallet's sealed record."""
        return {"address": self.address, "chain_id": int(chain_id), "owner": self.owner,
                "owners": list(self.owners), "threshold": self.threshold,
                "setup": self.setup.to_json()}


def parse_setup(text: str) -> S.SafeSetup:
    if not text:
        raise InvalidArgument("safe_setup: a Safe wallet needs its setup (SafeSetup JSON: "
                              "owners, threshold, fallbackHandler, singleton, factory, saltNonce)")
    if len(text) > MAX_SETUP_CHARS:
        raise InvalidArgument(f"safe_setup: at most {MAX_SETUP_CHARS} characters")
    try:
        doc = json.loads(text)
    except (json.JSONDecodeError, ValueError, RecursionError):
        raise InvalidArgument("safe_setup: not valid JSON") from None
    return S.SafeSetup.from_json(doc)


# Safe v1.4.1's canonical deployment: the only factory, singletons (L1, L2) and fallback handler
# (or none) signerd records a Safe of. The CREATE2 address proves the Safe was created by the
# factory named, with the singleton named: a factory of anyone's choosing can deploy the proxy at
# that address and set it up with other owners (it need not call the initializer it hashed), a
# singleton is the Safe's code, and the fallback handler answers for the Safe (EIP-1271
# isValidSignature). Only the canonical contracts make the setup's owners the Safe's owners.
CANONICAL_FACTORIES = frozenset({S.CANONICAL_FACTORY})
CANONICAL_SINGLETONS = frozenset({S.CANONICAL_SINGLETON, S.CANONICAL_SINGLETON_L2})
CANONICAL_FALLBACK_HANDLERS = frozenset({ZERO, S.CANONICAL_FALLBACK_HANDLER})


def check_canonical(setup: S.SafeSetup) -> None:
    """InvalidArgument naming the field unless the setup's factory, singleton and fallback
    handler are Safe v1.4.1's canonical ones (the handler may be zero: none)."""
    for key, value, allowed, what in (
            ("factory", setup.factory, CANONICAL_FACTORIES, "SafeProxyFactory"),
            ("singleton", setup.singleton, CANONICAL_SINGLETONS, "Safe or SafeL2 singleton"),
            ("fallbackHandler", setup.fallback_handler, CANONICAL_FALLBACK_HANDLERS,
             "CompatibilityFallbackHandler (or none, the zero address)")):
        if value not in allowed:
            known = ", ".join(to_checksum(a) for a in sorted(allowed) if a != ZERO)
            raise InvalidArgument(
                f"safe_setup: {key}: {to_checksum(value)} is not Safe v{S.SAFE_VERSION}'s "
                f"canonical {what} ({known}); signerd records only Safes of the canonical "
                "deployment, whose code makes the setup's owners the Safe's owners")


def check_safe(address_text: str, setup_text: str, owner_pubkey: bytes) -> CheckedSafe:
    """The Safe at ``address_text`` built from ``setup_text``, checked: its address must be the
    one the setup deploys to (``predicted_address``: factory, singleton, salt nonce and the
    initializer with its owners and threshold), of the canonical v1.4.1 factory, singleton and
    fallback handler (``check_canonical``), and the HSM key ``owner_pubkey`` must be one of
    its owners. Each mismatch is InvalidArgument naming what differs."""
    if not address_text:
        raise InvalidArgument("safe_address: a Safe wallet needs the Safe's address")
    safe = parse_address(address_text, field="safe_address")
    setup = parse_setup(setup_text)
    check_canonical(setup)
    predicted = S.predicted_address(setup)
    if predicted != safe:
        raise InvalidArgument(
            f"safe_address: {to_checksum(safe)} is not the address of this setup; the factory "
            f"{to_checksum(setup.factory)} deploys it at {to_checksum(predicted)} (check the "
            "owners, threshold, fallback handler, singleton, factory and salt nonce)")
    owner = address_from_pubkey(owner_pubkey)
    owners = tuple(to_checksum(o) for o in setup.owners)
    if owner not in owners:
        raise InvalidArgument(
            f"safe_setup: this signerd's owner key {owner} is not among the Safe's owners "
            f"({', '.join(owners)})")
    return CheckedSafe(setup, to_checksum(safe), owner, owners, int(setup.threshold))


def setup_text(record_safe: dict[str, Any]) -> str:
    return canonical_dumps(record_safe["setup"]).decode()


def parse_safe_tx(payload: bytes, max_data_bytes: int) -> S.SafeTx:
    """A submitted SafeTx (JSON: to, value, data, operation, safeTxGas, baseGas, gasPrice,
    gasToken, refundReceiver, nonce)."""
    if len(payload) > max_data_bytes * 2 + 65536:
        raise InvalidArgument(f"safe_tx: larger than the calldata limit of {max_data_bytes} "
                              "bytes")
    try:
        doc = json.loads(payload.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError):
        raise InvalidArgument("safe_tx: not valid JSON") from None
    except (ValueError, RecursionError):
        raise InvalidArgument("safe_tx: not valid JSON (a number too long or nested too deeply)"
                              ) from None
    return S.SafeTx.from_json(doc, max_data_bytes)


def gas_refund(tx: S.SafeTx, native: str = "ETH") -> str:
    """``none`` when the Safe pays no refund (gasPrice, gasToken and refundReceiver all zero),
    else what it pays (``native``: the chain's coin, when gasToken is zero) and to whom."""
    if tx.gas_price == 0 and tx.gas_token == ZERO and tx.refund_receiver == ZERO:
        return "none"
    asset = native if tx.gas_token == ZERO else f"ERC20:{to_checksum(tx.gas_token)}"
    receiver = ("whoever executes it" if tx.refund_receiver == ZERO
                else to_checksum(tx.refund_receiver))
    return (f"gasPrice {tx.gas_price} in {asset} to {receiver}, up to {S.refund(tx)} for "
            f"safeTxGas {tx.safe_tx_gas} + baseGas {tx.base_gas} + the call's overhead (the "
            "transfer's fee)")


def safe_fields(chain_id: int, safe: bytes, tx: S.SafeTx, digest: bytes, native: str = "ETH"
                ) -> tuple[tuple[str, str], ...]:
    """What a Safe transfer's statement binds and shows besides its outputs (see
    ``Movement.safe``); ``native`` is the symbol of the chain's coin in the registry."""
    fields = [
        ("safe", to_checksum(safe)),
        ("chain_id", str(chain_id)),
        ("safe_tx_hash", "0x" + digest.hex()),
        ("to", to_checksum(tx.to)),
        ("operation", f"{tx.operation} ({S.OPERATIONS[tx.operation]})"),
        ("safe_nonce", str(tx.nonce)),
        ("safe_tx_gas", str(tx.safe_tx_gas)),
        ("base_gas", str(tx.base_gas)),
        ("gas_price", str(tx.gas_price)),
        ("gas_token", to_checksum(tx.gas_token)),
        ("refund_receiver", to_checksum(tx.refund_receiver)),
        ("gas_refund", gas_refund(tx, native)),
    ]
    change = S.owner_change(safe, tx)
    if change is not None:
        fields.append(("owner_change", canonical_dumps(dict(change)).decode()))
    return tuple(fields)


def field(movement: Movement, name: str) -> str:
    return dict(movement.safe).get(name, "")


def owner_change_of(movement: Movement) -> str:
    """The canonical JSON of the change a SafeTx makes to its own Safe ('' for none)."""
    return field(movement, "owner_change")


def owner_address(pubkey: bytes) -> str:
    return address_from_pubkey(pubkey)


def check_owner(text: str) -> bytes:
    try:
        return parse_address(text, field="owner")
    except InvalidArgument as e:
        raise InvalidArgument(f"owner: {echo(text)} is not an address ({e.message})") from None
