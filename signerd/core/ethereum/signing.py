"""From an HSM's raw ECDSA output to a broadcastable Ethereum transaction, and what it moves.

The HSM signs the digest signerd computed (never one a client supplied) and returns (r, s).
Ethereum needs s in the lower half of the curve order (EIP-2) and the y-parity of R, which
PKCS#11 does not return; it is found by recovering the public key from the signature.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import coincurve

from signerd.core.errors import SignerError
from signerd.core.ethereum.address import to_checksum
from signerd.core.ethereum.eip1559 import SECP256K1_N, Eip1559Tx, tx_hash
from signerd.core.ethereum.erc20 import Erc20Method, decode_erc20_call
from signerd.core.model import Chain, EvmChain, Movement, Output, Token

NETWORK = "ethereum"
ETH = "ETH"


class SignatureMismatch(SignerError):
    """The signature does not verify under the wallet's public key (an HSM or key-map fault)."""

    reason = "SIGNATURE_MISMATCH"


def low_s(s: int) -> int:
    """The low-half representative of s (s and n - s are both valid ECDSA signatures)."""
    if not 0 < s < SECP256K1_N:
        raise ValueError("s out of range")
    return SECP256K1_N - s if s > SECP256K1_N // 2 else s


def recover_y_parity(digest: bytes, r: int, s: int, pubkey: bytes) -> int:
    """The y-parity (0 or 1) under which (r, s) over ``digest`` recovers to ``pubkey``.

    ``pubkey`` may be compressed or uncompressed. Raises SignatureMismatch when neither parity
    recovers it, i.e. the signature is not by this key over this digest.
    """
    if len(digest) != 32:
        raise ValueError("digest must be 32 bytes")
    wanted = coincurve.PublicKey(bytes(pubkey)).format(compressed=True)
    rs = r.to_bytes(32, "big") + s.to_bytes(32, "big")
    for parity in (0, 1):
        try:
            found = coincurve.PublicKey.from_signature_and_message(
                rs + bytes([parity]), digest, hasher=None
            )
        except ValueError:
            continue
        if found.format(compressed=True) == wanted:
            return parity
    raise SignatureMismatch("signature does not match the wallet's public key")


def assemble_signed(tx: Eip1559Tx, r: int, s: int, pubkey: bytes) -> tuple[bytes, bytes]:
    """Normalise s, find the y-parity, and return (signed raw transaction, transaction hash)."""
    s = low_s(s)
    parity = recover_y_parity(tx.signing_hash(), r, s, pubkey)
    raw = tx.signed_raw(parity, r, s)
    return raw, tx_hash(raw)


@dataclass(frozen=True)
class DecodedCall:
    """What one call (``to``, ``value``, ``data``) moves, as policies and operators see it: the
    outputs, the calldata left undecoded (``contract_call``, "0x..." or ""), the registered
    tokens whose calls were decoded, and display details. Shared by a transaction's own call
    (``movement``) and a call made from a smart-contract wallet."""

    outputs: tuple[Output, ...]
    contract_call: str
    tokens: tuple[Token, ...]
    details: dict[str, str]


def decode_call(chain_id: int, to: bytes | None, value: int, data: bytes,
                tokens: Mapping[tuple[int, str], Token] | None = None, *,
                native: str = ETH) -> DecodedCall:
    """The movement of one call to ``to`` (None: contract creation) on ``chain_id``.

    ``tokens`` is the governance's token registry, by (chain id, lower-case contract address):
    only a call to a registered contract on that chain is decoded. There an ERC-20 transfer
    becomes a token output ("ERC20:<contract>") to its recipient and an approve an
    "ERC20-APPROVE:<contract>" output to the spender with the allowance, and the entry goes
    into ``tokens``. The native value is an output when it is non-zero or the calldata is not a
    decoded token call (so a plain transfer of 0 and a contract call still show a destination).
    Any other calldata, ERC-20-shaped calldata to a contract the registry does not know
    included, and contract-creation code go into ``contract_call``. ``native`` names the
    chain's native coin (its symbol in the chain registry).
    """
    address = "" if to is None else to_checksum(to)
    token = None if to is None else (tokens or {}).get((chain_id, address.lower()))
    call = decode_erc20_call(data) if token is not None else None
    outputs: list[Output] = []
    if value > 0 or call is None:
        outputs.append(Output(address=address, amount=value, asset=native))
    details: dict[str, str] = {}
    if call is not None:
        prefix = "ERC20" if call.method is Erc20Method.TRANSFER else "ERC20-APPROVE"
        outputs.append(Output(address=to_checksum(call.counterparty), amount=call.amount,
                              asset=f"{prefix}:{address}"))
        details["erc20_method"] = call.method.value
    return DecodedCall(
        outputs=tuple(outputs),
        contract_call="" if call is not None or not data else "0x" + data.hex(),
        tokens=() if call is None or token is None else (token,),
        details=details,
    )


def movement(tx: Eip1559Tx, tokens: Mapping[tuple[int, str], Token] | None = None,
             chain: EvmChain | None = None) -> Movement:
    """What ``tx`` moves, decoded by signerd itself for policies and the approval statement:
    its call decoded by ``decode_call`` (see there for tokens and contract calls). The fee is
    the maximum: gas * maxFeePerGas. ``chain``: the chain registry's entry for ``tx``'s chain
    id, whose symbol names the native value and the fee (and which the movement carries, so
    the statement binds it); without it (a caller from before the registry) they are ETH.
    """
    native = chain.symbol if chain is not None else ETH
    call = decode_call(tx.chain_id, tx.to, tx.value, tx.data, tokens, native=native)
    return Movement(
        chain=Chain.ETHEREUM,
        network=NETWORK,
        chain_id=tx.chain_id,
        outputs=call.outputs,
        fee=tx.gas * tx.max_fee_per_gas,
        fee_asset=native,
        digests=(tx.signing_hash(),),
        nonce=tx.nonce,
        gas_limit=tx.gas,
        max_fee_per_gas=tx.max_fee_per_gas,
        max_priority_fee_per_gas=tx.max_priority_fee_per_gas,
        contract_call=call.contract_call,
        tokens=call.tokens,
        native=chain,
        details={"tx_type": "2", **call.details},
    )
