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
from signerd.core.ethereum.calls import UNLIMITED, Method, TokenCall, decode_token_call
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
                sender: bytes | str | None = None, native: str = ETH) -> DecodedCall:
    """The movement of one call to ``to`` (None: contract creation) on ``chain_id``, made by
    ``sender`` (the wallet whose key or contract makes the call; None when unknown).

    ``tokens`` is the governance's token registry, by (chain id, lower-case contract address):
    only a call to a contract registered on that chain is decoded, and only as its registered
    standard reads it (``calls.decode_token_call``, strict canonical ABI). The outputs, each
    with the contract's asset name, to the recipient, spender or operator:

    - ERC-20 ``transfer`` and ``transferFrom``: "ERC20:<contract>", the amount in base units;
      ``approve``: "ERC20-APPROVE:<contract>", the allowance; ``increaseAllowance``:
      "ERC20-INCREASE:<contract>", the increase (the allowance that results is the current one
      plus it, which only the chain knows);
    - ERC-721 ``transferFrom`` and both ``safeTransferFrom``: "ERC721:<contract>", amount 1 (a
      count of tokens) and ``token_id``; ``approve``: "ERC721-APPROVE:<contract>", 1 and the id;
    - ERC-1155 ``safeTransferFrom``: "ERC1155:<contract>", the amount of that id and
      ``token_id``; ``safeBatchTransferFrom``: one such output per (id, amount), in order;
    - ``setApprovalForAll(operator, approved)`` (ERC-721, ERC-1155):
      "ERC721-APPROVE-ALL:<contract>" or "ERC1155-APPROVE-ALL:<contract>" to the operator,
      amount 1 and ``grant`` when it grants, amount 0 when it revokes.

    An ERC-20 allowance (approve, increaseAllowance) of at least ``calls.UNLIMITED`` is a grant
    too (``grant``). The ``from`` of a transferFrom or safeTransferFrom that is not ``sender``
    (or any ``from`` when ``sender`` is None) is the output's ``source``: the call moves tokens
    another address holds, under an allowance or operator approval it gave the wallet.

    The native value is an output when it is non-zero or the calldata is not a decoded token
    call (so a plain transfer of 0 and a contract call still show a destination). Any other
    calldata, token-shaped calldata to a contract the registry does not know (or knows under
    another standard) included, and contract-creation code go into ``contract_call``.

    ``native`` names the chain's native coin (its symbol in the chain registry).
    """
    address = "" if to is None else to_checksum(to)
    token = None if to is None else (tokens or {}).get((chain_id, address.lower()))
    call = decode_token_call(token.standard, data) if token is not None else None
    outputs: list[Output] = []
    if value > 0 or call is None:
        outputs.append(Output(address=address, amount=value, asset=native))
    details: dict[str, str] = {}
    if call is not None and token is not None:
        outputs += token_outputs(token, call, sender)
        if token.standard == "erc20":
            details["erc20_method"] = call.method.value
        details["token_method"] = call.method.value
        if call.data:
            details["token_call_data"] = "0x" + call.data.hex()
    return DecodedCall(
        outputs=tuple(outputs),
        contract_call="" if call is not None or not data else "0x" + data.hex(),
        tokens=() if call is None or token is None else (token,),
        details=details,
    )


_KINDS = {"erc20": "ERC20", "erc721": "ERC721", "erc1155": "ERC1155"}


def token_outputs(token: Token, call: TokenCall, sender: bytes | str | None) -> list[Output]:
    """The outputs of a decoded token call to ``token`` (see ``decode_call``)."""
    kind = _KINDS[token.standard]
    to = to_checksum(call.counterparty)
    if call.method is Method.SET_APPROVAL_FOR_ALL:
        return [Output(address=to, amount=1 if call.approved else 0,
                       asset=f"{kind}-APPROVE-ALL:{token.address}", grant=call.approved)]
    if call.method in (Method.APPROVE, Method.INCREASE_ALLOWANCE):
        suffix = "-INCREASE" if call.method is Method.INCREASE_ALLOWANCE else "-APPROVE"
        (item,) = call.items
        return [Output(address=to, amount=item.amount, asset=f"{kind}{suffix}:{token.address}",
                       token_id=item.token_id,
                       grant=token.standard == "erc20" and item.amount >= UNLIMITED)]
    source = ""
    if call.source is not None and not _same(call.source, sender):
        source = to_checksum(call.source)
    return [Output(address=to, amount=item.amount, asset=f"{kind}:{token.address}",
                   token_id=item.token_id, source=source) for item in call.items]


def _same(address: bytes, sender: bytes | str | None) -> bool:
    if sender is None:
        return False
    if isinstance(sender, str):
        return sender.lower() == "0x" + address.hex()
    return bytes(sender) == address


def movement(tx: Eip1559Tx, tokens: Mapping[tuple[int, str], Token] | None = None,
             chain: EvmChain | None = None, *, sender: bytes | str | None = None) -> Movement:
    """What ``tx`` moves, decoded by signerd itself for policies and the approval statement:
    its call decoded by ``decode_call`` (see there for tokens and contract calls; ``sender``
    is the wallet's address). The fee is the maximum: gas * maxFeePerGas. ``chain``: the
    chain registry's entry for ``tx``'s chain id, whose symbol names the native value and the
    fee (and which the movement carries, so the statement binds it); without it (a caller from
    before the registry) they are ETH.
    """
    native = chain.symbol if chain is not None else ETH
    call = decode_call(tx.chain_id, tx.to, tx.value, tx.data, tokens, sender=sender,
                       native=native)
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
