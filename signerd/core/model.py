"""Typed, immutable domain values shared by the pure core, the store and the API."""
from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import Enum
from types import MappingProxyType

from .errors import SignerError


class Chain(str, Enum):
    BITCOIN = "bitcoin"
    ETHEREUM = "ethereum"
    TRON = "tron"


class BitcoinNetwork(str, Enum):
    MAINNET = "mainnet"
    TESTNET = "testnet"
    SIGNET = "signet"
    REGTEST = "regtest"


class ScriptType(str, Enum):
    P2WPKH = "p2wpkh"
    P2SH_P2WPKH = "p2sh-p2wpkh"
    P2WSH_SORTEDMULTI = "p2wsh-sortedmulti"
    EOA = "eoa"
    SAFE = "safe"  # Ethereum: a Safe (v1.4.1) smart account, one of whose owners is an HSM key


class Category(str, Enum):
    SEIZED = "seized"
    CONFISCATED = "confiscated"
    STRATEGIC = "strategic"


class WalletStatus(str, Enum):
    ACTIVE = "ACTIVE"
    FROZEN = "FROZEN"
    RETIRED = "RETIRED"
    AWAITING_APPROVAL = "AWAITING_APPROVAL"  # a wallet with outside or imported keys, until its
    # governance proposal is approved (RETIRED if it is not)


class TransferState(str, Enum):
    PENDING_APPROVAL = "PENDING_APPROVAL"
    APPROVED = "APPROVED"
    SIGNED = "SIGNED"
    REJECTED = "REJECTED"
    EXPIRED = "EXPIRED"
    CANCELLED = "CANCELLED"
    FAILED = "FAILED"

    @property
    def live(self) -> bool:
        return self in (TransferState.PENDING_APPROVAL, TransferState.APPROVED)


# Which state a transfer may move to from each state: the one table every write of a
# transfer's state is checked against (``check_transition``; the store's ``update_transfer``).
# A transfer is born PENDING_APPROVAL; SIGNED, REJECTED, EXPIRED, CANCELLED and FAILED are final.
TRANSFER_TRANSITIONS: Mapping[TransferState, frozenset[TransferState]] = MappingProxyType({
    TransferState.PENDING_APPROVAL: frozenset({
        TransferState.APPROVED,  # the quorum-making approval
        TransferState.REJECTED,  # a veto, or rejections that leave the quorum unreachable
        TransferState.EXPIRED,  # the window passed
        TransferState.CANCELLED,  # by its submitter or an admin, replaced, or denied by policy
        TransferState.FAILED,  # an authority violation
    }),
    TransferState.APPROVED: frozenset({
        TransferState.SIGNED,  # the sign step
        TransferState.PENDING_APPROVAL,  # its quorum lost legitimately (an approver suspended)
        TransferState.EXPIRED,
        TransferState.CANCELLED,
        TransferState.FAILED,
    }),
    TransferState.SIGNED: frozenset(),
    TransferState.REJECTED: frozenset(),
    TransferState.EXPIRED: frozenset(),
    TransferState.CANCELLED: frozenset(),
    TransferState.FAILED: frozenset(),
})


NEW_TRANSFER = TransferState.PENDING_APPROVAL  # the only state a transfer is inserted in


def may_move(old: TransferState | None, new: TransferState) -> bool:
    """Whether a transfer in state ``old`` (None: not yet written) may be written as ``new``
    (``TRANSFER_TRANSITIONS``)."""
    return new is NEW_TRANSFER if old is None else new in TRANSFER_TRANSITIONS[old]


def predecessors(new: TransferState) -> tuple[TransferState, ...]:
    """The states a transfer may be in when it is written as ``new`` (``TRANSFER_TRANSITIONS``
    read backwards), in the table's order."""
    return tuple(old for old, nxt in TRANSFER_TRANSITIONS.items() if new in nxt)


def check_transition(transfer_id: str, old: TransferState | None, new: TransferState) -> None:
    """Raise an internal error unless a transfer may move from ``old`` (None: a new transfer)
    to ``new``: signerd never writes a transition the table does not list (that would be a
    bug, refused before anything is written)."""
    if not may_move(old, new):
        raise SignerError(f"transfer {transfer_id}: signerd refuses to write it "
                          f"{new.value} when it is {'new' if old is None else old.value} "
                          "(not a transition of a transfer)", reason="TRANSFER_TRANSITION")


class ProposalState(str, Enum):
    PENDING_APPROVAL = "PENDING_APPROVAL"
    APPROVED = "APPROVED"  # applied: its ledger entry is written
    REJECTED = "REJECTED"
    EXPIRED = "EXPIRED"
    CANCELLED = "CANCELLED"
    FAILED = "FAILED"


class Decision(str, Enum):
    APPROVE = "APPROVE"
    REJECT = "REJECT"


class OperatorStatus(str, Enum):
    ACTIVE = "active"
    SUSPENDED = "suspended"  # immediate, by an admin; reinstated only by a governance proposal
    REVOKED = "revoked"  # by a governance proposal; for good


class DestinationClass(str, Enum):
    """How a destination relates to this custody platform, from the policy's point of view."""

    OWN_WALLET = "own_wallet"
    ALLOWLISTED = "allowlisted"
    EXTERNAL = "external"


EXTERNAL_KEY_PREFIX = "ext-"


@dataclass(frozen=True)
class KeyRef:
    """A key held in the HSM: found again by its CKA_ID; the public key is cached here."""

    key_id: str  # hex of CKA_ID; "ext-..." for an external cosigner's key
    label: str
    public_key: bytes  # 33-byte compressed secp256k1 point

    @property
    def hsm_held(self) -> bool:
        return not self.key_id.startswith(EXTERNAL_KEY_PREFIX)


@dataclass(frozen=True)
class Wallet:
    id: str
    chain: Chain
    network: str  # BitcoinNetwork value, "ethereum", or a Tron network (mainnet, nile, shasta)
    script_type: ScriptType
    category: Category
    case_ref: str
    legal_basis: str
    status: WalletStatus
    address: str
    keys: tuple[KeyRef, ...]
    chain_ids: tuple[int, ...] = ()  # Ethereum only: allowed chain ids
    descriptor: str = ""  # Bitcoin only: output descriptor with checksum
    threshold: int = 1  # multisig m
    cosigners: tuple[str, ...] = ()  # external cosigner public keys / xpubs (hex or base58)
    created_at: float = 0.0
    policy_version: int = 0
    template: str = ""  # the governance-approved template it was made with (policy version 1)
    policy_sha256: str = ""  # SHA-256 of that template's text
    proposal: str = ""  # the governance proposal that approved it ("" for a platform wallet)
    origin: str = ""
    # A Safe wallet (script_type SAFE): the owners (EIP-55 addresses, as in the Safe's setup)
    # and the setup document (canonical JSON of ``safe.SafeSetup.to_json``) its address was
    # checked against; ``address`` is the Safe's, ``threshold`` the Safe's, ``keys[0]`` the
    # HSM owner key.
    safe_owners: tuple[str, ...] = ()
    safe_setup: str = ""


@dataclass(frozen=True)
class Token:
    """A token contract the governance registered (``token.set``): only calls to it, on its
    chain, are decoded as token movements; any other calldata is a contract call."""

    chain_id: int  # an Ethereum chain id, or Tron's for a trc20 entry (tron.address.CHAIN_IDS)
    address: str  # EIP-55 checksummed contract address; trc20: the base58check T... address
    standard: str  # "erc20", "erc721", "erc1155" or "trc20" (signerd.core.tokens.STANDARDS)
    symbol: str
    decimals: int

    @property
    def key(self) -> tuple[int, str]:
        """How the registry finds it: (chain id, lower-case 0x address), or for a Tron
        contract (chain id, its T... address as is: base58 is case-sensitive)."""
        return (self.chain_id, registry_address(self.address))


def registry_address(address: str) -> str:
    """An address as the token registry keys it: 0x hex lower-cased, base58 (Tron) as is."""
    return address.lower() if address[:2] in ("0x", "0X") else address


@dataclass(frozen=True)
class EvmChain:
    """An EVM chain the governance registered (genesis ``chains``, ``chain.set``): its id, the
    name operators are shown and its native coin's symbol and decimals. A transaction on a
    chain id the registry does not name is refused (signerd.core.chain_registry)."""

    chain_id: int
    name: str
    symbol: str  # upper-case: the native asset's name in movements and policies
    decimals: int


@dataclass(frozen=True)
class Output:
    """One movement of value decoded from a transaction by signerd itself."""

    address: str  # destination address ("" for Ethereum contract creation)
    amount: int  # base units (sats, wei, token base units)
    asset: str  # "BTC", "ETH", "TRX", or "<KIND>:<checksummed contract address>" for a
    # registered token (KIND: ERC20, ERC20-APPROVE, ERC20-INCREASE, ERC721, ERC721-APPROVE,
    # ERC721-APPROVE-ALL, ERC1155, ERC1155-APPROVE-ALL; signerd.core.ethereum.signing), or
    # "TRC20:<T... contract address>"
    is_change: bool = False
    destination_class: DestinationClass = DestinationClass.EXTERNAL
    wallet_id: str = ""  # the destination is this signerd's wallet (own or another category)
    category: str = ""  # that wallet's category
    # ERC-721 and ERC-1155: the token id moved or approved (None for every other asset)
    token_id: int | None = None
    # A transferFrom of tokens held by another address than the wallet (under an allowance or
    # operator approval that address gave the wallet): that address; "" otherwise.
    source: str = ""
    # A grant of everything: setApprovalForAll(operator, true) or an ERC-20 allowance of at
    # least 2**96-1 (signerd.core.ethereum.calls.UNLIMITED); only a rule with grant = true
    # covers it.
    grant: bool = False


@dataclass(frozen=True)
class Movement:
    """What a transaction moves, as decoded by signerd from the raw transaction.

    This is what policies judge, what the approval statement binds and what operators are shown.
    """

    chain: Chain
    network: str  # bitcoin network name, or "ethereum"
    chain_id: int  # Ethereum chain id; 0 for Bitcoin
    outputs: tuple[Output, ...]
    fee: int  # sats; for Ethereum the maximum fee: gas * maxFeePerGas, in wei; Tron: fee_limit
    fee_asset: str  # "BTC", "ETH" or "TRX"
    digests: tuple[bytes, ...]  # every digest signerd will ask the HSM to sign, in order
    nonce: int | None = None  # Ethereum
    gas_limit: int | None = None
    max_fee_per_gas: int | None = None
    max_priority_fee_per_gas: int | None = None
    contract_call: str = ""  # hex calldata that is not a decoded token call, else ""
    vsize: int | None = None  # Bitcoin virtual size estimate of the signed tx
    outpoints: tuple[str, ...] = ()  # Bitcoin "txid:vout" spent
    # Bitcoin: each input's sighash type by input index, as the policy names them (ALL, NONE,
    # SINGLE, each optionally "|ANYONECANPAY"); anything but ALL lets the transaction change
    # after signing, so it is bound, shown and warned about.
    sighash: tuple[str, ...] = ()
    # Ethereum: the registered tokens whose calls were decoded into outputs (symbol, decimals
    # and address are bound in the statement, so a tool that was told otherwise is caught).
    tokens: tuple[Token, ...] = ()
    # Chain-specific fields that are bound in the statement and shown, as sorted (name, value)
    # pairs (Tron: tron_expiration in ms, tron_ref_block_bytes, tron_ref_block_hash,
    # tron_contract, tron_timestamp, tron_memo); () for Bitcoin and Ethereum.
    extra: tuple[tuple[str, str], ...] = ()
    # Ethereum: the chain registry's entry for the chain id (name, native symbol and decimals),
    # bound in the statement like the tokens; None for Bitcoin and for a movement decoded
    # before the registry existed.
    native: EvmChain | None = None
    # A Safe transaction (signed by an owner key, executed by the Safe): (field, value) pairs in
    # field order, bound in the statement and shown: the Safe's address, the SafeTx hash, the
    # operation, the Safe nonce, the gas refund fields and any change of owners, threshold,
    # guard, modules or fallback handler (``chains.SafeAdapter``). Empty otherwise.
    safe: tuple[tuple[str, str], ...] = ()
    details: dict[str, str] = field(default_factory=dict, hash=False, compare=False)

    def external_outputs(self) -> tuple[Output, ...]:
        return tuple(o for o in self.outputs if not o.is_change)
