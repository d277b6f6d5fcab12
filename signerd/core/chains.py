"""Chain adapters: decode a submitted payload into a Movement, and assemble signed output.

Each adapter is pure apart from the ``sign`` callback it is handed; the transfer service supplies
the HSM through that callback and stores what comes back.
"""
from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any, Protocol

from .bitcoin import psbt as P
from .bitcoin import signer
from .bitcoin.address import script_to_address
from .bitcoin.descriptor import make_descriptor, parse_descriptor
from .bitcoin.signer import WalletSpec
from .canonical import strict_b64decode
from .errors import FailedPrecondition, InvalidPsbt, InvalidTransaction
from .ethereum import safe as eth_safe
from .ethereum import signing as eth_signing
from .ethereum.address import parse_address
from .ethereum.address import address_from_pubkey
from .ethereum.eip1559 import Eip1559Tx
from .limits import Limits
from . import chain_registry
from . import safe_wallet as SW
from .model import (BitcoinNetwork, Chain, DestinationClass, EvmChain, Movement, ScriptType,
                    Token, Wallet)
from .policy import normalize_address
from .tron import address as tron_address
from .tron import signing as tron_signing
from .tron.tx import parse_payload as parse_tron_payload


# The bounds on a submitted payload the adapters apply: the daemon's [limits], handed in by the
# caller (the one Limits, signerd.core.limits).
PayloadLimits = Limits


@dataclass(frozen=True)
class Decoded:
    movement: Movement
    lock_keys: tuple[str, ...]  # nonces / outpoints this transfer holds while live
    tx: Any  # the parsed transaction object of the chain module


@dataclass(frozen=True)
class Signed:
    raw_tx: str = ""  # hex, when a network transaction exists
    psbt: str = ""  # base64
    tx_hash: str = ""
    complete: bool = True


Signatures = dict[tuple[str, bytes], tuple[int, int]]  # (key id, digest) -> (r, s)


class ChainAdapter(Protocol):
    """What every chain adapter provides (``adapter_for``; see docs/ARCHITECTURE.md, "Adding
    a chain"). ``decode`` takes each chain's own arguments by keyword, and an adapter ignores
    those of other chains: the Bitcoin sighash types the policy allows, the governance's
    Ethereum token and chain registries."""

    def decode(self, wallet: Wallet, payload: bytes, limits: PayloadLimits, *,
               allowed_sighash: frozenset[int] = ...,
               tokens: Mapping[tuple[int, str], Token] | None = ...,
               chains: Mapping[int, EvmChain] | None = ...) -> Decoded:
        """The payload parsed strictly and decoded: the movement with every digest signerd
        will sign, computed from the transaction, and the lock keys it holds while live."""
        ...

    def redecode(self, wallet: Wallet, payload: bytes, limits: PayloadLimits,
                 submitted: Movement, allowed_sighash: frozenset[int] = ...) -> Decoded:
        """The stored payload decoded again, its digests required to equal ``submitted``'s."""
        ...

    def digests_to_sign(self, wallet: Wallet, decoded: Decoded) -> list[tuple[str, bytes]]:
        """(key id, digest) for each signature the wallet's HSM keys make."""
        ...

    def assemble(self, wallet: Wallet, decoded: Decoded, signatures: Signatures) -> Signed:
        """The signed transaction (or PSBT) from signatures the keystore verified."""
        ...


@dataclass(frozen=True)
class Ours:
    """A wallet of this signerd at a destination address (see ``ledger.destinations``)."""

    wallet_id: str
    category: str
    own: bool  # counts as own_wallet for the source wallet's policy


def claims(movement: Movement, lock_key: str) -> bool:
    """Whether a transfer of ``movement`` spends what ``lock_key`` (one of the adapters'
    ``lock_keys``, of the same wallet) names: its Ethereum chain id and nonce, a Bitcoin
    outpoint of its inputs, or a Tron transaction id (Tron has no nonces)."""
    kind, _, rest = lock_key.partition(":")
    if kind == "tron":
        return (movement.chain is Chain.TRON and len(movement.digests) == 1
                and rest.endswith(":" + movement.digests[0].hex()))
    if kind == "eth":
        return (movement.chain is Chain.ETHEREUM and movement.nonce is not None
                and rest.endswith(f":{movement.chain_id}:{movement.nonce}"))
    if kind == "btc":
        return movement.chain is Chain.BITCOIN and rest.partition(":")[2] in movement.outpoints
    return False


def classify_outputs(movement: Movement, ours: Mapping[str, Ours],
                     allowlist: Iterable[str]) -> Movement:
    """Each output's destination class and, where the address is one of this signerd's
    wallets, that wallet's id and category. Change is own_wallet; a wallet of ours counts as
    own_wallet only when ``ours`` says so (same category, no outside spend); then the policy's
    allowlist; else external."""
    allowed = {normalize_address(a) for a in allowlist}
    outs = []
    for o in movement.outputs:
        dest = ours.get(o.address) if o.address else None
        if o.is_change or (dest is not None and dest.own):
            cls = DestinationClass.OWN_WALLET
        elif o.address and normalize_address(o.address) in allowed:
            cls = DestinationClass.ALLOWLISTED
        else:
            cls = DestinationClass.EXTERNAL
        outs.append(replace(o, destination_class=cls,
                            wallet_id="" if dest is None or o.is_change else dest.wallet_id,
                            category="" if dest is None or o.is_change else dest.category))
    return replace(movement, outputs=tuple(outs))


# ---------------------------------------------------------------- Ethereum

class EthereumAdapter:
    def parse(self, wallet: Wallet, payload: bytes, limits: PayloadLimits) -> Any:
        """The EIP-1559 transaction of a submitted JSON payload, checked against the wallet."""
        if len(payload) > limits.max_calldata_bytes * 2 + 65536:
            raise InvalidTransaction(
                f"data: the transaction is larger than the calldata limit of "
                f"{limits.max_calldata_bytes} bytes")
        try:
            fields = json.loads(payload.decode("utf-8"))
        except (UnicodeDecodeError, json.JSONDecodeError) as e:
            raise InvalidTransaction(f"ethereum transaction: not valid JSON ({e})") from None
        except ValueError:  # an integer literal beyond Python's limit on digits
            raise InvalidTransaction("ethereum transaction: a number has too many digits") from None
        except RecursionError:
            raise InvalidTransaction("ethereum transaction: not valid JSON (nested too deeply)"
                                     ) from None
        if not isinstance(fields, dict):
            raise InvalidTransaction("ethereum transaction: must be a JSON object")
        tx = Eip1559Tx.from_fields(fields, max_data_bytes=limits.max_calldata_bytes)
        if tx.chain_id not in wallet.chain_ids:
            raise InvalidTransaction(
                f"chainId: {tx.chain_id} is not allowed for wallet {wallet.id} (allowed: "
                f"{', '.join(str(c) for c in wallet.chain_ids)})")
        return tx

    def decode(self, wallet: Wallet, payload: bytes, limits: PayloadLimits,
               tokens: Mapping[tuple[int, str], Token] | None = None, *,
               allowed_sighash: frozenset[int] = frozenset({1}),
               chains: Mapping[int, EvmChain] | None = None) -> Decoded:
        """``tokens``: the governance's token registry (``AuthorityState.tokens``); calldata
        to a contract it does not name is a contract call, never a token movement.
        ``chains``: the governance's chain registry (``AuthorityState.chains``): a chain id
        it does not name is refused (InvalidArgument naming it), and the native coin is its
        entry's symbol. The daemon always passes it; None (offline tools that rebuild a
        statement from its own bound entry) leaves the movement without an entry.
        ``allowed_sighash`` is Bitcoin's (an Ethereum transaction has one digest)."""
        tx = self.parse(wallet, payload, limits)
        entry = None if chains is None else chain_registry.require(chains, tx.chain_id)
        lock = f"eth:{wallet.address.lower()}:{tx.chain_id}:{tx.nonce}"
        return Decoded(eth_signing.movement(tx, tokens, entry, sender=wallet.address), (lock,),
                       tx)

    def redecode(self, wallet: Wallet, payload: bytes, limits: PayloadLimits,
                 submitted: Movement, allowed_sighash: frozenset[int] = frozenset()) -> Decoded:
        """The stored payload decoded again for the sign step: the transaction and its digest
        are recomputed from the bytes and must be those the approvals saw at submission (the
        decoded movement is the submitted one: the digest binds every field)."""
        tx = self.parse(wallet, payload, limits)
        if (tx.signing_hash(),) != submitted.digests:
            raise FailedPrecondition("the transaction's digest differs from the one approved")
        return Decoded(submitted, (), tx)

    def digests_to_sign(self, wallet: Wallet, decoded: Decoded) -> list[tuple[str, bytes]]:
        return [(wallet.keys[0].key_id, decoded.tx.signing_hash())]

    def assemble(self, wallet: Wallet, decoded: Decoded,
                 signatures: Signatures) -> Signed:
        key = wallet.keys[0]
        r, s = signatures[(key.key_id, decoded.tx.signing_hash())]
        raw, tx_hash = eth_signing.assemble_signed(decoded.tx, r, s, key.public_key)
        return Signed(raw_tx=raw.hex(), tx_hash="0x" + tx_hash.hex())


# ---------------------------------------------------------------- Safe (Ethereum)

class SafeAdapter:
    """A Safe wallet's transfers: the payload is a SafeTx (JSON) the Safe at the wallet's
    address executes on the wallet's chain id; the one digest is its SafeTx hash (EIP-712),
    which the wallet's HSM owner key signs. The result is that owner's signature (r, s, v);
    ``execTransaction`` is built once the Safe's threshold of owners signed
    (``TransferService.combine_safe``). A Safe nonce is held for good by the transfer that
    signed it: signerd never signs two SafeTx hashes for one Safe and nonce."""

    @staticmethod
    def safe(wallet: Wallet) -> tuple[int, bytes]:
        if wallet.script_type is not ScriptType.SAFE or len(wallet.chain_ids) != 1:
            raise FailedPrecondition(f"wallet {wallet.id} is not a Safe wallet")
        return wallet.chain_ids[0], parse_address(wallet.address, field="safe")

    def parse(self, wallet: Wallet, payload: bytes, limits: PayloadLimits) -> Any:
        return SW.parse_safe_tx(payload, limits.max_calldata_bytes)

    def decode(self, wallet: Wallet, payload: bytes, limits: PayloadLimits,
               tokens: Mapping[tuple[int, str], Token] | None = None, *,
               allowed_sighash: frozenset[int] = frozenset({1}),
               chains: Mapping[int, EvmChain] | None = None) -> Decoded:
        """``tokens`` and ``chains`` as for ``EthereumAdapter.decode``: the Safe's chain id must
        be in the chain registry (InvalidArgument naming it), whose symbol names the native
        coin."""
        chain_id, safe = self.safe(wallet)
        tx = self.parse(wallet, payload, limits)
        entry = None if chains is None else chain_registry.require(chains, chain_id)
        moved = eth_safe.movement(chain_id, safe, tx, tokens, entry)
        digest = moved.digests[0]
        native = "ETH" if entry is None else entry.symbol
        moved = replace(moved, safe=SW.safe_fields(chain_id, safe, tx, digest, native))
        lock = f"safe:{wallet.address.lower()}:{chain_id}:{tx.nonce}"
        return Decoded(moved, (lock,), tx)

    def redecode(self, wallet: Wallet, payload: bytes, limits: PayloadLimits,
                 submitted: Movement, allowed_sighash: frozenset[int] = frozenset()) -> Decoded:
        chain_id, safe = self.safe(wallet)
        tx = self.parse(wallet, payload, limits)
        if (eth_safe.safe_tx_hash(chain_id, safe, tx),) != submitted.digests:
            raise FailedPrecondition("the SafeTx hash differs from the one approved")
        return Decoded(submitted, (), tx)

    def digest(self, wallet: Wallet, decoded: Decoded) -> bytes:
        """The SafeTx hash, which decode computed from the transaction (and redecode compared
        with the approved one)."""
        return decoded.movement.digests[0]

    def digests_to_sign(self, wallet: Wallet, decoded: Decoded) -> list[tuple[str, bytes]]:
        return [(wallet.keys[0].key_id, self.digest(wallet, decoded))]

    def assemble(self, wallet: Wallet, decoded: Decoded, signatures: Signatures) -> Signed:
        key = wallet.keys[0]
        digest = self.digest(wallet, decoded)
        r, s = signatures[(key.key_id, digest)]
        eth_safe.owner_signature_from_hsm(digest, r, s, key.public_key)  # verifies (v found)
        return Signed(complete=False)


# ---------------------------------------------------------------- Bitcoin

def decode_psbt_bytes(payload: bytes, max_bytes: int = Limits.max_psbt_bytes) -> bytes:
    """A PSBT arrives as binary or as base64 text; return the binary form."""
    if len(payload) > max_bytes * 4 // 3 + 4:
        raise InvalidPsbt(f"psbt: larger than the limit of {max_bytes} bytes")
    if payload[:5] == b"psbt\xff":
        return payload
    raw = strict_b64decode(payload.strip(), "psbt", error=InvalidPsbt)
    if raw[:5] != b"psbt\xff":
        raise InvalidPsbt("psbt: missing the PSBT magic bytes 'psbt\\xff'")
    return raw


class BitcoinAdapter:
    @staticmethod
    def spec(wallet: Wallet) -> Any:
        hsm = [k.public_key for k in wallet.keys if k.hsm_held]
        return WalletSpec(script_type=wallet.script_type, network=BitcoinNetwork(wallet.network),
                          threshold=wallet.threshold,
                          pubkeys=tuple(k.public_key for k in wallet.keys),
                          own_pubkeys=tuple(hsm))

    @staticmethod
    def parse(payload: bytes, limits: PayloadLimits) -> Any:
        raw = decode_psbt_bytes(payload, limits.max_psbt_bytes)
        return P.parse_psbt(raw, limits)

    def decode(self, wallet: Wallet, payload: bytes, limits: PayloadLimits,
               allowed_sighash: frozenset[int] = frozenset({1}), *,
               tokens: Mapping[tuple[int, str], Token] | None = None,
               chains: Mapping[int, EvmChain] | None = None) -> Decoded:
        """``tokens`` and ``chains`` are Ethereum's (Bitcoin moves no registered tokens)."""
        parsed = self.parse(payload, limits)
        analysis = signer.analyze(parsed, self.spec(wallet), allowed_sighash=allowed_sighash)
        locks = tuple(f"btc:{wallet.network}:{op}" for op in analysis.movement.outpoints)
        return Decoded(analysis.movement, locks, (parsed, analysis))

    def redecode(self, wallet: Wallet, payload: bytes, limits: PayloadLimits,
                 submitted: Movement, allowed_sighash: frozenset[int] = frozenset({1})) -> Decoded:
        """The stored PSBT parsed and analysed again for the sign step (UTXO proofs, scripts,
        digests); its digests must be those the approvals saw at submission."""
        decoded = self.decode(wallet, payload, limits, allowed_sighash=allowed_sighash)
        if decoded.movement.digests != submitted.digests:
            raise FailedPrecondition("the transaction's digests differ from those approved")
        return decoded

    @staticmethod
    def _key_ids(wallet: Wallet) -> dict[bytes, str]:
        return {k.public_key: k.key_id for k in wallet.keys if k.hsm_held}

    def digests_to_sign(self, wallet: Wallet, decoded: Decoded) -> list[tuple[str, bytes]]:
        _, analysis = decoded.tx
        by_pub = self._key_ids(wallet)
        return [(by_pub[r.pubkey], r.digest) for r in analysis.to_sign if r.pubkey in by_pub]

    def assemble(self, wallet: Wallet, decoded: Decoded,
                 signatures: Signatures) -> Signed:
        psbt, analysis = decoded.tx
        by_pub = self._key_ids(wallet)
        items = []
        for req in analysis.to_sign:
            key_id = by_pub.get(req.pubkey)
            if key_id is None or (key_id, req.digest) not in signatures:
                continue
            r, s = signatures[(key_id, req.digest)]
            inp = psbt.inputs[req.input_index]
            sighash = 1 if inp.sighash_type is None else inp.sighash_type
            # Each signature was verified against this digest by the keystore (and stored ones
            # when they were made); finalize verifies every partial signature once more.
            items.append((req.input_index, req.pubkey,
                          signer.der_encode(r, s) + bytes([sighash & 0xFF]), None))
        return self.finish(wallet, signer.add_signatures(psbt, items))

    def finish(self, wallet: Wallet, psbt: Any) -> Signed:
        """Finalize and extract when the wallet's threshold is met, else return the PSBT."""
        final, raw = signer.finalize(psbt, self.spec(wallet))
        if raw is None:
            return Signed(psbt=psbt.to_base64(), complete=False)
        return Signed(raw_tx=raw.hex(), psbt=final.to_base64(),
                      tx_hash=signer.extract(final).txid_hex)

    def combine(self, wallet: Wallet, ours_b64: str, theirs: bytes,
                limits: PayloadLimits) -> Signed:
        """Add a cosigner's verified partial signatures to our signed PSBT."""
        ours = self.parse(ours_b64.encode(), limits)
        merged = signer.combine_verified(ours, self.parse(theirs, limits), self.spec(wallet))
        return self.finish(wallet, merged)


# ---------------------------------------------------------------- Tron

class TronAdapter:
    """Tron: the submitted JSON's ``raw_data_hex`` decoded strictly (``tron.tx``), a TRX
    ``TransferContract`` or a registered TRC-20 ``transfer`` from the wallet's own address;
    the digest is the transaction id, SHA-256 of raw_data. The lock key is the transaction id
    (Tron has no nonces): the same transaction is live in one transfer at a time. The
    expiration is checked against the clock by the services (at submission, against the
    transfer's window, and again right before the HSM signs)."""

    @staticmethod
    def parse(payload: bytes, limits: PayloadLimits) -> Any:
        return parse_tron_payload(payload, max_bytes=limits.max_calldata_bytes + 4096)

    def decode(self, wallet: Wallet, payload: bytes, limits: PayloadLimits, *,
               allowed_sighash: frozenset[int] = frozenset({1}),
               tokens: Mapping[tuple[int, str], Token] | None = None,
               chains: Mapping[int, EvmChain] | None = None) -> Decoded:
        """``tokens``: the governance's registry; a TriggerSmartContract is signed only as a
        TRC-20 transfer to a ``trc20`` entry of the wallet's network. ``allowed_sighash`` is
        Bitcoin's, ``chains`` the EVM chain registry (Tron is not an EVM chain: its coin is
        TRX)."""
        tx = self.parse(payload, limits)
        movement = tron_signing.movement(tx, wallet.address, wallet.network, tokens)
        return Decoded(movement, (f"tron:{wallet.network}:{tx.txid.hex()}",), tx)

    def redecode(self, wallet: Wallet, payload: bytes, limits: PayloadLimits,
                 submitted: Movement, allowed_sighash: frozenset[int] = frozenset()) -> Decoded:
        tx = self.parse(payload, limits)
        if (tx.txid,) != submitted.digests:
            raise FailedPrecondition("the transaction's id differs from the one approved")
        return Decoded(submitted, (), tx)

    def digests_to_sign(self, wallet: Wallet, decoded: Decoded) -> list[tuple[str, bytes]]:
        return [(wallet.keys[0].key_id, decoded.tx.txid)]

    def assemble(self, wallet: Wallet, decoded: Decoded, signatures: Signatures) -> Signed:
        """``raw_tx``: hex of the signed ``Transaction`` (``/wallet/broadcasthex``);
        ``tx_hash``: the transaction id in hex. ``tron.tx.signed_json`` turns ``raw_tx`` into
        the JSON ``/wallet/broadcasttransaction`` takes."""
        key = wallet.keys[0]
        r, s = signatures[(key.key_id, decoded.tx.txid)]
        raw, txid = tron_signing.assemble_signed(decoded.tx, r, s, key.public_key)
        return Signed(raw_tx=raw.hex(), tx_hash=txid.hex())


def adapter_for(chain: Chain) -> ChainAdapter:
    if chain is Chain.TRON:
        return TronAdapter()
    return EthereumAdapter() if chain is Chain.ETHEREUM else BitcoinAdapter()


def adapter_for_wallet(wallet: Wallet) -> ChainAdapter:
    """The adapter of a wallet: its chain's, or the Safe adapter for a Safe wallet."""
    if wallet.script_type is ScriptType.SAFE:
        return SafeAdapter()
    return adapter_for(wallet.chain)


if TYPE_CHECKING:  # the adapters are ChainAdapters (checked by mypy)
    _SAFE: ChainAdapter = SafeAdapter()
    _ETHEREUM: ChainAdapter = EthereumAdapter()
    _BITCOIN: ChainAdapter = BitcoinAdapter()
    _TRON: ChainAdapter = TronAdapter()



def derive_address(chain: Chain, network: str, script_type: ScriptType, threshold: int,
                   pubkeys: list[bytes]) -> tuple[str, str]:
    """(address, descriptor) of a wallet, computed from its public keys."""
    if chain is Chain.ETHEREUM:
        return address_from_pubkey(pubkeys[0]), ""
    if chain is Chain.TRON:
        return tron_address.from_pubkey(pubkeys[0]), ""
    desc = make_descriptor(script_type, threshold, pubkeys)
    return script_to_address(parse_descriptor(desc).script_pubkey(), network), desc
