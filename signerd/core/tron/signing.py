"""What a Tron transaction moves, and its signature (pure).

A ``TransferContract`` is a TRX output (asset ``TRX``, base unit sun, 6 decimals). A
``TriggerSmartContract`` is signed only when its calldata is exactly an ERC-20
``transfer(address,uint256)`` (``core.ethereum.erc20``) to a contract the governance registered
as ``trc20`` for the wallet's network, with no TRX or TRC-10 value attached: a ``TRC20:<T...>``
output. Any other contract call is refused: signerd makes no arbitrary contract calls on Tron.

The fee is ``fee_limit`` (sun), the most the transaction may burn for energy; the bandwidth a
plain transfer burns, and the fee for activating a new account, are not in the transaction
(a fraction of a TRX and 1 TRX at the time of writing).
"""
from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime, timezone

from signerd.core.errors import InvalidTransaction, echo
from signerd.core.ethereum.erc20 import Erc20Method, decode_erc20_call
from signerd.core.ethereum.signing import low_s, recover_y_parity
from signerd.core.model import Chain, Movement, Output, Token

from . import address as A
from .tx import TRANSFER, TronTx, signature_bytes, signed_transaction

TRX = "TRX"
STANDARD = "trc20"


def asset_of(contract: str) -> str:
    return f"TRC20:{contract}"


def chain_id_of(network: str) -> int:
    try:
        return A.CHAIN_IDS[network]
    except KeyError:
        raise InvalidTransaction(f"network: {echo(network)} is not a Tron network "
                                 f"({', '.join(A.NETWORKS)})") from None


def movement(tx: TronTx, owner: str, network: str,
             tokens: Mapping[tuple[int, str], Token] | None = None) -> Movement:
    """The movement of ``tx`` from the wallet at ``owner`` (``T...``) on ``network``; raises
    InvalidTransaction when the owner is not the wallet or the call is not a registered
    TRC-20 transfer."""
    chain_id = chain_id_of(network)
    sender = A.to_text(tx.owner)
    if sender != owner:
        raise InvalidTransaction(f"owner_address: {sender} is not this wallet's address "
                                 f"({owner})")
    tokens_used: tuple[Token, ...] = ()
    if tx.contract_type == TRANSFER:
        outputs = (Output(address=A.to_text(tx.to), amount=tx.amount, asset=TRX),)
    else:
        contract = A.to_text(tx.to)
        token = (tokens or {}).get((chain_id, contract))
        if token is None or token.standard != STANDARD:
            raise InvalidTransaction(
                f"contract_address: {contract} is not a TRC-20 token registered for Tron "
                f"{network} (chain id {chain_id}); signerd signs no other contract calls on Tron")
        call = decode_erc20_call(tx.data)
        if call is None or call.method is not Erc20Method.TRANSFER:
            raise InvalidTransaction(
                "data: not exactly a TRC-20 transfer(address,uint256) call (selector "
                "a9059cbb, a 20-byte address word and an amount word); signerd signs no other "
                "contract calls on Tron")
        outputs = (Output(address=A.to_text(bytes([A.PREFIX]) + call.counterparty),
                          amount=call.amount, asset=asset_of(contract)),)
        tokens_used = (token,)
    extra = [("tron_contract", tx.contract_name),
             ("tron_expiration", str(tx.expiration)),
             ("tron_ref_block_bytes", tx.ref_block_bytes.hex()),
             ("tron_ref_block_hash", tx.ref_block_hash.hex())]
    if tx.ref_block_num is not None:
        extra.append(("tron_ref_block_num", str(tx.ref_block_num)))
    if tx.timestamp is not None:
        extra.append(("tron_timestamp", str(tx.timestamp)))
    if tx.memo:
        extra.append(("tron_memo", tx.memo.hex()))
    return Movement(
        chain=Chain.TRON, network=network, chain_id=chain_id, outputs=outputs,
        fee=tx.fee_limit, fee_asset=TRX, digests=(tx.txid,), tokens=tokens_used,
        extra=tuple(sorted(extra)),
        details={"tron_contract": tx.contract_name, "txid": tx.txid.hex()})


def expiration_problem(expiration_ms: int, now: float, latest: float | None = None) -> str:
    """Why a transaction expiring at ``expiration_ms`` may not be taken or signed at ``now``
    (seconds), or "" when it may: it must expire after ``now`` and, when ``latest`` (the
    transfer's own expiry, seconds) is given, not after it."""
    if expiration_ms <= int(now * 1000):
        return (f"raw_data.expiration: the transaction expired at {utc_ms(expiration_ms)} "
                f"(now {utc_ms(int(now * 1000))})")
    if latest is not None and expiration_ms > int(latest * 1000):
        return (f"raw_data.expiration: {utc_ms(expiration_ms)} is after the transfer's own "
                f"expiry {utc_ms(int(latest * 1000))} (the policy's approval window); build "
                "the transaction to expire within it")
    return ""


def utc_ms(ms: int) -> str:
    try:
        return (datetime.fromtimestamp(ms / 1000, timezone.utc)
                .strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z")
    except (OverflowError, ValueError, OSError):
        return f"{ms} ms"


def assemble_signed(tx: TronTx, r: int, s: int, pubkey: bytes) -> tuple[bytes, bytes]:
    """(signed ``Transaction`` bytes, txid): s normalised to the low half, the recovery id
    found by public-key recovery (a signature that recovers to another key is refused)."""
    s = low_s(s)
    v = recover_y_parity(tx.txid, r, s, pubkey)
    return signed_transaction(tx, signature_bytes(r, s, v)), tx.txid
