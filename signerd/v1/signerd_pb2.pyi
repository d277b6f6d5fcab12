from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class Chain(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    CHAIN_UNSPECIFIED: _ClassVar[Chain]
    BITCOIN: _ClassVar[Chain]
    ETHEREUM: _ClassVar[Chain]
    TRON: _ClassVar[Chain]

class Category(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    CATEGORY_UNSPECIFIED: _ClassVar[Category]
    SEIZED: _ClassVar[Category]
    CONFISCATED: _ClassVar[Category]
    STRATEGIC: _ClassVar[Category]

class WalletStatus(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    WALLET_STATUS_UNSPECIFIED: _ClassVar[WalletStatus]
    ACTIVE: _ClassVar[WalletStatus]
    FROZEN: _ClassVar[WalletStatus]
    RETIRED: _ClassVar[WalletStatus]
    AWAITING_APPROVAL: _ClassVar[WalletStatus]

class ScriptType(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    SCRIPT_TYPE_UNSPECIFIED: _ClassVar[ScriptType]
    P2WPKH: _ClassVar[ScriptType]
    P2SH_P2WPKH: _ClassVar[ScriptType]
    P2WSH_SORTEDMULTI: _ClassVar[ScriptType]
    EOA: _ClassVar[ScriptType]
    SAFE: _ClassVar[ScriptType]

class TransferState(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    TRANSFER_STATE_UNSPECIFIED: _ClassVar[TransferState]
    PENDING_APPROVAL: _ClassVar[TransferState]
    APPROVED: _ClassVar[TransferState]
    SIGNED: _ClassVar[TransferState]
    REJECTED: _ClassVar[TransferState]
    EXPIRED: _ClassVar[TransferState]
    CANCELLED: _ClassVar[TransferState]
    FAILED: _ClassVar[TransferState]

class Decision(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    DECISION_UNSPECIFIED: _ClassVar[Decision]
    APPROVE: _ClassVar[Decision]
    REJECT: _ClassVar[Decision]
CHAIN_UNSPECIFIED: Chain
BITCOIN: Chain
ETHEREUM: Chain
TRON: Chain
CATEGORY_UNSPECIFIED: Category
SEIZED: Category
CONFISCATED: Category
STRATEGIC: Category
WALLET_STATUS_UNSPECIFIED: WalletStatus
ACTIVE: WalletStatus
FROZEN: WalletStatus
RETIRED: WalletStatus
AWAITING_APPROVAL: WalletStatus
SCRIPT_TYPE_UNSPECIFIED: ScriptType
P2WPKH: ScriptType
P2SH_P2WPKH: ScriptType
P2WSH_SORTEDMULTI: ScriptType
EOA: ScriptType
SAFE: ScriptType
TRANSFER_STATE_UNSPECIFIED: TransferState
PENDING_APPROVAL: TransferState
APPROVED: TransferState
SIGNED: TransferState
REJECTED: TransferState
EXPIRED: TransferState
CANCELLED: TransferState
FAILED: TransferState
DECISION_UNSPECIFIED: Decision
APPROVE: Decision
REJECT: Decision

class Key(_message.Message):
    __slots__ = ("key_id", "label", "public_key", "hsm_held")
    KEY_ID_FIELD_NUMBER: _ClassVar[int]
    LABEL_FIELD_NUMBER: _ClassVar[int]
    PUBLIC_KEY_FIELD_NUMBER: _ClassVar[int]
    HSM_HELD_FIELD_NUMBER: _ClassVar[int]
    key_id: str
    label: str
    public_key: bytes
    hsm_held: bool
    def __init__(self, key_id: _Optional[str] = ..., label: _Optional[str] = ..., public_key: _Optional[bytes] = ..., hsm_held: _Optional[bool] = ...) -> None: ...

class Wallet(_message.Message):
    __slots__ = ("id", "chain", "network", "chain_ids", "script_type", "category", "case_ref", "legal_basis", "status", "address", "descriptor", "keys", "threshold", "cosigners", "policy_version", "created_at_unix", "freeze_order", "template", "proposal_id", "safe_owners", "safe_setup")
    ID_FIELD_NUMBER: _ClassVar[int]
    CHAIN_FIELD_NUMBER: _ClassVar[int]
    NETWORK_FIELD_NUMBER: _ClassVar[int]
    CHAIN_IDS_FIELD_NUMBER: _ClassVar[int]
    SCRIPT_TYPE_FIELD_NUMBER: _ClassVar[int]
    CATEGORY_FIELD_NUMBER: _ClassVar[int]
    CASE_REF_FIELD_NUMBER: _ClassVar[int]
    LEGAL_BASIS_FIELD_NUMBER: _ClassVar[int]
    STATUS_FIELD_NUMBER: _ClassVar[int]
    ADDRESS_FIELD_NUMBER: _ClassVar[int]
    DESCRIPTOR_FIELD_NUMBER: _ClassVar[int]
    KEYS_FIELD_NUMBER: _ClassVar[int]
    THRESHOLD_FIELD_NUMBER: _ClassVar[int]
    COSIGNERS_FIELD_NUMBER: _ClassVar[int]
    POLICY_VERSION_FIELD_NUMBER: _ClassVar[int]
    CREATED_AT_UNIX_FIELD_NUMBER: _ClassVar[int]
    FREEZE_ORDER_FIELD_NUMBER: _ClassVar[int]
    TEMPLATE_FIELD_NUMBER: _ClassVar[int]
    PROPOSAL_ID_FIELD_NUMBER: _ClassVar[int]
    SAFE_OWNERS_FIELD_NUMBER: _ClassVar[int]
    SAFE_SETUP_FIELD_NUMBER: _ClassVar[int]
    id: str
    chain: Chain
    network: str
    chain_ids: _containers.RepeatedScalarFieldContainer[int]
    script_type: ScriptType
    category: Category
    case_ref: str
    legal_basis: str
    status: WalletStatus
    address: str
    descriptor: str
    keys: _containers.RepeatedCompositeFieldContainer[Key]
    threshold: int
    cosigners: _containers.RepeatedScalarFieldContainer[str]
    policy_version: int
    created_at_unix: int
    freeze_order: str
    template: str
    proposal_id: str
    safe_owners: _containers.RepeatedScalarFieldContainer[str]
    safe_setup: str
    def __init__(self, id: _Optional[str] = ..., chain: _Optional[_Union[Chain, str]] = ..., network: _Optional[str] = ..., chain_ids: _Optional[_Iterable[int]] = ..., script_type: _Optional[_Union[ScriptType, str]] = ..., category: _Optional[_Union[Category, str]] = ..., case_ref: _Optional[str] = ..., legal_basis: _Optional[str] = ..., status: _Optional[_Union[WalletStatus, str]] = ..., address: _Optional[str] = ..., descriptor: _Optional[str] = ..., keys: _Optional[_Iterable[_Union[Key, _Mapping]]] = ..., threshold: _Optional[int] = ..., cosigners: _Optional[_Iterable[str]] = ..., policy_version: _Optional[int] = ..., created_at_unix: _Optional[int] = ..., freeze_order: _Optional[str] = ..., template: _Optional[str] = ..., proposal_id: _Optional[str] = ..., safe_owners: _Optional[_Iterable[str]] = ..., safe_setup: _Optional[str] = ...) -> None: ...

class Output(_message.Message):
    __slots__ = ("address", "amount", "asset", "is_change", "destination_class", "wallet_id", "category", "token_id", "source", "grant")
    ADDRESS_FIELD_NUMBER: _ClassVar[int]
    AMOUNT_FIELD_NUMBER: _ClassVar[int]
    ASSET_FIELD_NUMBER: _ClassVar[int]
    IS_CHANGE_FIELD_NUMBER: _ClassVar[int]
    DESTINATION_CLASS_FIELD_NUMBER: _ClassVar[int]
    WALLET_ID_FIELD_NUMBER: _ClassVar[int]
    CATEGORY_FIELD_NUMBER: _ClassVar[int]
    TOKEN_ID_FIELD_NUMBER: _ClassVar[int]
    SOURCE_FIELD_NUMBER: _ClassVar[int]
    GRANT_FIELD_NUMBER: _ClassVar[int]
    address: str
    amount: str
    asset: str
    is_change: bool
    destination_class: str
    wallet_id: str
    category: str
    token_id: str
    source: str
    grant: bool
    def __init__(self, address: _Optional[str] = ..., amount: _Optional[str] = ..., asset: _Optional[str] = ..., is_change: _Optional[bool] = ..., destination_class: _Optional[str] = ..., wallet_id: _Optional[str] = ..., category: _Optional[str] = ..., token_id: _Optional[str] = ..., source: _Optional[str] = ..., grant: _Optional[bool] = ...) -> None: ...

class Movement(_message.Message):
    __slots__ = ("chain", "network", "chain_id", "outputs", "fee", "fee_asset", "digests", "nonce", "gas_limit", "max_fee_per_gas", "max_priority_fee_per_gas", "contract_call", "vsize", "outpoints", "sighash", "extra", "native", "safe")
    class ExtraEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    CHAIN_FIELD_NUMBER: _ClassVar[int]
    NETWORK_FIELD_NUMBER: _ClassVar[int]
    CHAIN_ID_FIELD_NUMBER: _ClassVar[int]
    OUTPUTS_FIELD_NUMBER: _ClassVar[int]
    FEE_FIELD_NUMBER: _ClassVar[int]
    FEE_ASSET_FIELD_NUMBER: _ClassVar[int]
    DIGESTS_FIELD_NUMBER: _ClassVar[int]
    NONCE_FIELD_NUMBER: _ClassVar[int]
    GAS_LIMIT_FIELD_NUMBER: _ClassVar[int]
    MAX_FEE_PER_GAS_FIELD_NUMBER: _ClassVar[int]
    MAX_PRIORITY_FEE_PER_GAS_FIELD_NUMBER: _ClassVar[int]
    CONTRACT_CALL_FIELD_NUMBER: _ClassVar[int]
    VSIZE_FIELD_NUMBER: _ClassVar[int]
    OUTPOINTS_FIELD_NUMBER: _ClassVar[int]
    SIGHASH_FIELD_NUMBER: _ClassVar[int]
    EXTRA_FIELD_NUMBER: _ClassVar[int]
    NATIVE_FIELD_NUMBER: _ClassVar[int]
    SAFE_FIELD_NUMBER: _ClassVar[int]
    chain: Chain
    network: str
    chain_id: int
    outputs: _containers.RepeatedCompositeFieldContainer[Output]
    fee: str
    fee_asset: str
    digests: _containers.RepeatedScalarFieldContainer[bytes]
    nonce: int
    gas_limit: int
    max_fee_per_gas: str
    max_priority_fee_per_gas: str
    contract_call: str
    vsize: int
    outpoints: _containers.RepeatedScalarFieldContainer[str]
    sighash: _containers.RepeatedScalarFieldContainer[str]
    extra: _containers.ScalarMap[str, str]
    native: EvmChain
    safe: _containers.RepeatedCompositeFieldContainer[SafeField]
    def __init__(self, chain: _Optional[_Union[Chain, str]] = ..., network: _Optional[str] = ..., chain_id: _Optional[int] = ..., outputs: _Optional[_Iterable[_Union[Output, _Mapping]]] = ..., fee: _Optional[str] = ..., fee_asset: _Optional[str] = ..., digests: _Optional[_Iterable[bytes]] = ..., nonce: _Optional[int] = ..., gas_limit: _Optional[int] = ..., max_fee_per_gas: _Optional[str] = ..., max_priority_fee_per_gas: _Optional[str] = ..., contract_call: _Optional[str] = ..., vsize: _Optional[int] = ..., outpoints: _Optional[_Iterable[str]] = ..., sighash: _Optional[_Iterable[str]] = ..., extra: _Optional[_Mapping[str, str]] = ..., native: _Optional[_Union[EvmChain, _Mapping]] = ..., safe: _Optional[_Iterable[_Union[SafeField, _Mapping]]] = ...) -> None: ...

class SafeField(_message.Message):
    __slots__ = ("name", "value")
    NAME_FIELD_NUMBER: _ClassVar[int]
    VALUE_FIELD_NUMBER: _ClassVar[int]
    name: str
    value: str
    def __init__(self, name: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...

class EthereumTransaction(_message.Message):
    __slots__ = ("json",)
    JSON_FIELD_NUMBER: _ClassVar[int]
    json: str
    def __init__(self, json: _Optional[str] = ...) -> None: ...

class TronTransaction(_message.Message):
    __slots__ = ("json",)
    JSON_FIELD_NUMBER: _ClassVar[int]
    json: str
    def __init__(self, json: _Optional[str] = ...) -> None: ...

class ApprovalRecord(_message.Message):
    __slots__ = ("operator_id", "decision", "signature", "reason", "created_at_unix", "counted")
    OPERATOR_ID_FIELD_NUMBER: _ClassVar[int]
    DECISION_FIELD_NUMBER: _ClassVar[int]
    SIGNATURE_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    CREATED_AT_UNIX_FIELD_NUMBER: _ClassVar[int]
    COUNTED_FIELD_NUMBER: _ClassVar[int]
    operator_id: str
    decision: Decision
    signature: bytes
    reason: str
    created_at_unix: int
    counted: bool
    def __init__(self, operator_id: _Optional[str] = ..., decision: _Optional[_Union[Decision, str]] = ..., signature: _Optional[bytes] = ..., reason: _Optional[str] = ..., created_at_unix: _Optional[int] = ..., counted: _Optional[bool] = ...) -> None: ...

class Transfer(_message.Message):
    __slots__ = ("id", "wallet_id", "chain", "state", "payload", "movement", "submitter", "policy_version", "requirement", "remaining", "expires_at_unix", "created_at_unix", "updated_at_unix", "approvals", "raw_tx", "psbt", "tx_hash", "failure", "replaces", "legal_basis", "category_change", "instance_id", "replaces_state", "replaces_fee_delta", "vetoed")
    ID_FIELD_NUMBER: _ClassVar[int]
    WALLET_ID_FIELD_NUMBER: _ClassVar[int]
    CHAIN_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    PAYLOAD_FIELD_NUMBER: _ClassVar[int]
    MOVEMENT_FIELD_NUMBER: _ClassVar[int]
    SUBMITTER_FIELD_NUMBER: _ClassVar[int]
    POLICY_VERSION_FIELD_NUMBER: _ClassVar[int]
    REQUIREMENT_FIELD_NUMBER: _ClassVar[int]
    REMAINING_FIELD_NUMBER: _ClassVar[int]
    EXPIRES_AT_UNIX_FIELD_NUMBER: _ClassVar[int]
    CREATED_AT_UNIX_FIELD_NUMBER: _ClassVar[int]
    UPDATED_AT_UNIX_FIELD_NUMBER: _ClassVar[int]
    APPROVALS_FIELD_NUMBER: _ClassVar[int]
    RAW_TX_FIELD_NUMBER: _ClassVar[int]
    PSBT_FIELD_NUMBER: _ClassVar[int]
    TX_HASH_FIELD_NUMBER: _ClassVar[int]
    FAILURE_FIELD_NUMBER: _ClassVar[int]
    REPLACES_FIELD_NUMBER: _ClassVar[int]
    LEGAL_BASIS_FIELD_NUMBER: _ClassVar[int]
    CATEGORY_CHANGE_FIELD_NUMBER: _ClassVar[int]
    INSTANCE_ID_FIELD_NUMBER: _ClassVar[int]
    REPLACES_STATE_FIELD_NUMBER: _ClassVar[int]
    REPLACES_FEE_DELTA_FIELD_NUMBER: _ClassVar[int]
    VETOED_FIELD_NUMBER: _ClassVar[int]
    id: str
    wallet_id: str
    chain: Chain
    state: TransferState
    payload: bytes
    movement: Movement
    submitter: str
    policy_version: int
    requirement: str
    remaining: str
    expires_at_unix: int
    created_at_unix: int
    updated_at_unix: int
    approvals: _containers.RepeatedCompositeFieldContainer[ApprovalRecord]
    raw_tx: str
    psbt: str
    tx_hash: str
    failure: str
    replaces: str
    legal_basis: str
    category_change: str
    instance_id: str
    replaces_state: str
    replaces_fee_delta: str
    vetoed: _containers.RepeatedCompositeFieldContainer[PriorVeto]
    def __init__(self, id: _Optional[str] = ..., wallet_id: _Optional[str] = ..., chain: _Optional[_Union[Chain, str]] = ..., state: _Optional[_Union[TransferState, str]] = ..., payload: _Optional[bytes] = ..., movement: _Optional[_Union[Movement, _Mapping]] = ..., submitter: _Optional[str] = ..., policy_version: _Optional[int] = ..., requirement: _Optional[str] = ..., remaining: _Optional[str] = ..., expires_at_unix: _Optional[int] = ..., created_at_unix: _Optional[int] = ..., updated_at_unix: _Optional[int] = ..., approvals: _Optional[_Iterable[_Union[ApprovalRecord, _Mapping]]] = ..., raw_tx: _Optional[str] = ..., psbt: _Optional[str] = ..., tx_hash: _Optional[str] = ..., failure: _Optional[str] = ..., replaces: _Optional[str] = ..., legal_basis: _Optional[str] = ..., category_change: _Optional[str] = ..., instance_id: _Optional[str] = ..., replaces_state: _Optional[str] = ..., replaces_fee_delta: _Optional[str] = ..., vetoed: _Optional[_Iterable[_Union[PriorVeto, _Mapping]]] = ...) -> None: ...

class PriorVeto(_message.Message):
    __slots__ = ("role", "transfer_id")
    ROLE_FIELD_NUMBER: _ClassVar[int]
    TRANSFER_ID_FIELD_NUMBER: _ClassVar[int]
    role: str
    transfer_id: str
    def __init__(self, role: _Optional[str] = ..., transfer_id: _Optional[str] = ...) -> None: ...

class Page(_message.Message):
    __slots__ = ("page_size", "page_token")
    PAGE_SIZE_FIELD_NUMBER: _ClassVar[int]
    PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    page_size: int
    page_token: str
    def __init__(self, page_size: _Optional[int] = ..., page_token: _Optional[str] = ...) -> None: ...

class CreateWalletRequest(_message.Message):
    __slots__ = ("chain", "network", "chain_ids", "script_type", "category", "case_ref", "legal_basis", "policy_toml", "threshold", "hsm_keys", "cosigners", "label", "hsm_key_ids", "template", "safe_address", "safe_setup")
    CHAIN_FIELD_NUMBER: _ClassVar[int]
    NETWORK_FIELD_NUMBER: _ClassVar[int]
    CHAIN_IDS_FIELD_NUMBER: _ClassVar[int]
    SCRIPT_TYPE_FIELD_NUMBER: _ClassVar[int]
    CATEGORY_FIELD_NUMBER: _ClassVar[int]
    CASE_REF_FIELD_NUMBER: _ClassVar[int]
    LEGAL_BASIS_FIELD_NUMBER: _ClassVar[int]
    POLICY_TOML_FIELD_NUMBER: _ClassVar[int]
    THRESHOLD_FIELD_NUMBER: _ClassVar[int]
    HSM_KEYS_FIELD_NUMBER: _ClassVar[int]
    COSIGNERS_FIELD_NUMBER: _ClassVar[int]
    LABEL_FIELD_NUMBER: _ClassVar[int]
    HSM_KEY_IDS_FIELD_NUMBER: _ClassVar[int]
    TEMPLATE_FIELD_NUMBER: _ClassVar[int]
    SAFE_ADDRESS_FIELD_NUMBER: _ClassVar[int]
    SAFE_SETUP_FIELD_NUMBER: _ClassVar[int]
    chain: Chain
    network: str
    chain_ids: _containers.RepeatedScalarFieldContainer[int]
    script_type: ScriptType
    category: Category
    case_ref: str
    legal_basis: str
    policy_toml: str
    threshold: int
    hsm_keys: int
    cosigners: _containers.RepeatedScalarFieldContainer[str]
    label: str
    hsm_key_ids: _containers.RepeatedScalarFieldContainer[str]
    template: str
    safe_address: str
    safe_setup: str
    def __init__(self, chain: _Optional[_Union[Chain, str]] = ..., network: _Optional[str] = ..., chain_ids: _Optional[_Iterable[int]] = ..., script_type: _Optional[_Union[ScriptType, str]] = ..., category: _Optional[_Union[Category, str]] = ..., case_ref: _Optional[str] = ..., legal_basis: _Optional[str] = ..., policy_toml: _Optional[str] = ..., threshold: _Optional[int] = ..., hsm_keys: _Optional[int] = ..., cosigners: _Optional[_Iterable[str]] = ..., label: _Optional[str] = ..., hsm_key_ids: _Optional[_Iterable[str]] = ..., template: _Optional[str] = ..., safe_address: _Optional[str] = ..., safe_setup: _Optional[str] = ...) -> None: ...

class CreateKeyShareRequest(_message.Message):
    __slots__ = ("category", "case_ref")
    CATEGORY_FIELD_NUMBER: _ClassVar[int]
    CASE_REF_FIELD_NUMBER: _ClassVar[int]
    category: Category
    case_ref: str
    def __init__(self, category: _Optional[_Union[Category, str]] = ..., case_ref: _Optional[str] = ...) -> None: ...

class GetWalletRequest(_message.Message):
    __slots__ = ("wallet_id",)
    WALLET_ID_FIELD_NUMBER: _ClassVar[int]
    wallet_id: str
    def __init__(self, wallet_id: _Optional[str] = ...) -> None: ...

class ListWalletsRequest(_message.Message):
    __slots__ = ("category", "case_ref", "page")
    CATEGORY_FIELD_NUMBER: _ClassVar[int]
    CASE_REF_FIELD_NUMBER: _ClassVar[int]
    PAGE_FIELD_NUMBER: _ClassVar[int]
    category: Category
    case_ref: str
    page: Page
    def __init__(self, category: _Optional[_Union[Category, str]] = ..., case_ref: _Optional[str] = ..., page: _Optional[_Union[Page, _Mapping]] = ...) -> None: ...

class ListWalletsResponse(_message.Message):
    __slots__ = ("wallets", "next_page_token")
    WALLETS_FIELD_NUMBER: _ClassVar[int]
    NEXT_PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    wallets: _containers.RepeatedCompositeFieldContainer[Wallet]
    next_page_token: str
    def __init__(self, wallets: _Optional[_Iterable[_Union[Wallet, _Mapping]]] = ..., next_page_token: _Optional[str] = ...) -> None: ...

class SubmitTransferRequest(_message.Message):
    __slots__ = ("wallet_id", "psbt", "ethereum", "tron", "safe_tx", "replaces", "legal_basis", "category_change", "idempotency_key")
    WALLET_ID_FIELD_NUMBER: _ClassVar[int]
    PSBT_FIELD_NUMBER: _ClassVar[int]
    ETHEREUM_FIELD_NUMBER: _ClassVar[int]
    TRON_FIELD_NUMBER: _ClassVar[int]
    SAFE_TX_FIELD_NUMBER: _ClassVar[int]
    REPLACES_FIELD_NUMBER: _ClassVar[int]
    LEGAL_BASIS_FIELD_NUMBER: _ClassVar[int]
    CATEGORY_CHANGE_FIELD_NUMBER: _ClassVar[int]
    IDEMPOTENCY_KEY_FIELD_NUMBER: _ClassVar[int]
    wallet_id: str
    psbt: bytes
    ethereum: EthereumTransaction
    tron: TronTransaction
    safe_tx: str
    replaces: str
    legal_basis: str
    category_change: str
    idempotency_key: str
    def __init__(self, wallet_id: _Optional[str] = ..., psbt: _Optional[bytes] = ..., ethereum: _Optional[_Union[EthereumTransaction, _Mapping]] = ..., tron: _Optional[_Union[TronTransaction, _Mapping]] = ..., safe_tx: _Optional[str] = ..., replaces: _Optional[str] = ..., legal_basis: _Optional[str] = ..., category_change: _Optional[str] = ..., idempotency_key: _Optional[str] = ...) -> None: ...

class GetTransferRequest(_message.Message):
    __slots__ = ("transfer_id",)
    TRANSFER_ID_FIELD_NUMBER: _ClassVar[int]
    transfer_id: str
    def __init__(self, transfer_id: _Optional[str] = ...) -> None: ...

class ListTransfersRequest(_message.Message):
    __slots__ = ("wallet_id", "state", "page")
    WALLET_ID_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    PAGE_FIELD_NUMBER: _ClassVar[int]
    wallet_id: str
    state: TransferState
    page: Page
    def __init__(self, wallet_id: _Optional[str] = ..., state: _Optional[_Union[TransferState, str]] = ..., page: _Optional[_Union[Page, _Mapping]] = ...) -> None: ...

class ListTransfersResponse(_message.Message):
    __slots__ = ("transfers", "next_page_token")
    TRANSFERS_FIELD_NUMBER: _ClassVar[int]
    NEXT_PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    transfers: _containers.RepeatedCompositeFieldContainer[Transfer]
    next_page_token: str
    def __init__(self, transfers: _Optional[_Iterable[_Union[Transfer, _Mapping]]] = ..., next_page_token: _Optional[str] = ...) -> None: ...

class WatchTransferRequest(_message.Message):
    __slots__ = ("transfer_id",)
    TRANSFER_ID_FIELD_NUMBER: _ClassVar[int]
    transfer_id: str
    def __init__(self, transfer_id: _Optional[str] = ...) -> None: ...

class CancelTransferRequest(_message.Message):
    __slots__ = ("transfer_id", "reason")
    TRANSFER_ID_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    transfer_id: str
    reason: str
    def __init__(self, transfer_id: _Optional[str] = ..., reason: _Optional[str] = ...) -> None: ...

class CombinePsbtRequest(_message.Message):
    __slots__ = ("transfer_id", "psbt")
    TRANSFER_ID_FIELD_NUMBER: _ClassVar[int]
    PSBT_FIELD_NUMBER: _ClassVar[int]
    transfer_id: str
    psbt: bytes
    def __init__(self, transfer_id: _Optional[str] = ..., psbt: _Optional[bytes] = ...) -> None: ...

class CombineSafeSignatureRequest(_message.Message):
    __slots__ = ("transfer_id", "owner", "signature")
    TRANSFER_ID_FIELD_NUMBER: _ClassVar[int]
    OWNER_FIELD_NUMBER: _ClassVar[int]
    SIGNATURE_FIELD_NUMBER: _ClassVar[int]
    transfer_id: str
    owner: str
    signature: bytes
    def __init__(self, transfer_id: _Optional[str] = ..., owner: _Optional[str] = ..., signature: _Optional[bytes] = ...) -> None: ...

class SafeOwnerSignature(_message.Message):
    __slots__ = ("owner", "signature", "reason")
    OWNER_FIELD_NUMBER: _ClassVar[int]
    SIGNATURE_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    owner: str
    signature: str
    reason: str
    def __init__(self, owner: _Optional[str] = ..., signature: _Optional[str] = ..., reason: _Optional[str] = ...) -> None: ...

class SafeSignatures(_message.Message):
    __slots__ = ("transfer_id", "wallet_id", "safe", "chain_id", "safe_tx_hash", "safe_nonce", "threshold", "owners", "state", "owner", "owner_signature", "signatures", "refused", "complete", "exec_to", "exec_calldata")
    TRANSFER_ID_FIELD_NUMBER: _ClassVar[int]
    WALLET_ID_FIELD_NUMBER: _ClassVar[int]
    SAFE_FIELD_NUMBER: _ClassVar[int]
    CHAIN_ID_FIELD_NUMBER: _ClassVar[int]
    SAFE_TX_HASH_FIELD_NUMBER: _ClassVar[int]
    SAFE_NONCE_FIELD_NUMBER: _ClassVar[int]
    THRESHOLD_FIELD_NUMBER: _ClassVar[int]
    OWNERS_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    OWNER_FIELD_NUMBER: _ClassVar[int]
    OWNER_SIGNATURE_FIELD_NUMBER: _ClassVar[int]
    SIGNATURES_FIELD_NUMBER: _ClassVar[int]
    REFUSED_FIELD_NUMBER: _ClassVar[int]
    COMPLETE_FIELD_NUMBER: _ClassVar[int]
    EXEC_TO_FIELD_NUMBER: _ClassVar[int]
    EXEC_CALLDATA_FIELD_NUMBER: _ClassVar[int]
    transfer_id: str
    wallet_id: str
    safe: str
    chain_id: int
    safe_tx_hash: str
    safe_nonce: str
    threshold: int
    owners: _containers.RepeatedScalarFieldContainer[str]
    state: TransferState
    owner: str
    owner_signature: str
    signatures: _containers.RepeatedCompositeFieldContainer[SafeOwnerSignature]
    refused: _containers.RepeatedCompositeFieldContainer[SafeOwnerSignature]
    complete: bool
    exec_to: str
    exec_calldata: str
    def __init__(self, transfer_id: _Optional[str] = ..., wallet_id: _Optional[str] = ..., safe: _Optional[str] = ..., chain_id: _Optional[int] = ..., safe_tx_hash: _Optional[str] = ..., safe_nonce: _Optional[str] = ..., threshold: _Optional[int] = ..., owners: _Optional[_Iterable[str]] = ..., state: _Optional[_Union[TransferState, str]] = ..., owner: _Optional[str] = ..., owner_signature: _Optional[str] = ..., signatures: _Optional[_Iterable[_Union[SafeOwnerSignature, _Mapping]]] = ..., refused: _Optional[_Iterable[_Union[SafeOwnerSignature, _Mapping]]] = ..., complete: _Optional[bool] = ..., exec_to: _Optional[str] = ..., exec_calldata: _Optional[str] = ...) -> None: ...

class ListPendingRequest(_message.Message):
    __slots__ = ("page",)
    PAGE_FIELD_NUMBER: _ClassVar[int]
    page: Page
    def __init__(self, page: _Optional[_Union[Page, _Mapping]] = ...) -> None: ...

class GetStatementRequest(_message.Message):
    __slots__ = ("transfer_id", "decision")
    TRANSFER_ID_FIELD_NUMBER: _ClassVar[int]
    DECISION_FIELD_NUMBER: _ClassVar[int]
    transfer_id: str
    decision: Decision
    def __init__(self, transfer_id: _Optional[str] = ..., decision: _Optional[_Union[Decision, str]] = ...) -> None: ...

class Statement(_message.Message):
    __slots__ = ("transfer", "wallet", "statement", "rendered", "own_addresses", "allowlist", "destinations", "tokens", "native")
    TRANSFER_FIELD_NUMBER: _ClassVar[int]
    WALLET_FIELD_NUMBER: _ClassVar[int]
    STATEMENT_FIELD_NUMBER: _ClassVar[int]
    RENDERED_FIELD_NUMBER: _ClassVar[int]
    OWN_ADDRESSES_FIELD_NUMBER: _ClassVar[int]
    ALLOWLIST_FIELD_NUMBER: _ClassVar[int]
    DESTINATIONS_FIELD_NUMBER: _ClassVar[int]
    TOKENS_FIELD_NUMBER: _ClassVar[int]
    NATIVE_FIELD_NUMBER: _ClassVar[int]
    transfer: Transfer
    wallet: Wallet
    statement: bytes
    rendered: str
    own_addresses: _containers.RepeatedScalarFieldContainer[str]
    allowlist: _containers.RepeatedScalarFieldContainer[str]
    destinations: _containers.RepeatedCompositeFieldContainer[Destination]
    tokens: _containers.RepeatedCompositeFieldContainer[Token]
    native: EvmChain
    def __init__(self, transfer: _Optional[_Union[Transfer, _Mapping]] = ..., wallet: _Optional[_Union[Wallet, _Mapping]] = ..., statement: _Optional[bytes] = ..., rendered: _Optional[str] = ..., own_addresses: _Optional[_Iterable[str]] = ..., allowlist: _Optional[_Iterable[str]] = ..., destinations: _Optional[_Iterable[_Union[Destination, _Mapping]]] = ..., tokens: _Optional[_Iterable[_Union[Token, _Mapping]]] = ..., native: _Optional[_Union[EvmChain, _Mapping]] = ...) -> None: ...

class Destination(_message.Message):
    __slots__ = ("address", "wallet_id", "category", "own")
    ADDRESS_FIELD_NUMBER: _ClassVar[int]
    WALLET_ID_FIELD_NUMBER: _ClassVar[int]
    CATEGORY_FIELD_NUMBER: _ClassVar[int]
    OWN_FIELD_NUMBER: _ClassVar[int]
    address: str
    wallet_id: str
    category: str
    own: bool
    def __init__(self, address: _Optional[str] = ..., wallet_id: _Optional[str] = ..., category: _Optional[str] = ..., own: _Optional[bool] = ...) -> None: ...

class SubmitApprovalRequest(_message.Message):
    __slots__ = ("transfer_id", "operator_id", "decision", "signature", "reason", "statement_sha256")
    TRANSFER_ID_FIELD_NUMBER: _ClassVar[int]
    OPERATOR_ID_FIELD_NUMBER: _ClassVar[int]
    DECISION_FIELD_NUMBER: _ClassVar[int]
    SIGNATURE_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    STATEMENT_SHA256_FIELD_NUMBER: _ClassVar[int]
    transfer_id: str
    operator_id: str
    decision: Decision
    signature: bytes
    reason: str
    statement_sha256: bytes
    def __init__(self, transfer_id: _Optional[str] = ..., operator_id: _Optional[str] = ..., decision: _Optional[_Union[Decision, str]] = ..., signature: _Optional[bytes] = ..., reason: _Optional[str] = ..., statement_sha256: _Optional[bytes] = ...) -> None: ...

class Operator(_message.Message):
    __slots__ = ("id", "roles", "public_key_pem", "status", "fingerprint", "created_at_unix", "key_type", "token_held")
    ID_FIELD_NUMBER: _ClassVar[int]
    ROLES_FIELD_NUMBER: _ClassVar[int]
    PUBLIC_KEY_PEM_FIELD_NUMBER: _ClassVar[int]
    STATUS_FIELD_NUMBER: _ClassVar[int]
    FINGERPRINT_FIELD_NUMBER: _ClassVar[int]
    CREATED_AT_UNIX_FIELD_NUMBER: _ClassVar[int]
    KEY_TYPE_FIELD_NUMBER: _ClassVar[int]
    TOKEN_HELD_FIELD_NUMBER: _ClassVar[int]
    id: str
    roles: _containers.RepeatedScalarFieldContainer[str]
    public_key_pem: bytes
    status: str
    fingerprint: str
    created_at_unix: int
    key_type: str
    token_held: str
    def __init__(self, id: _Optional[str] = ..., roles: _Optional[_Iterable[str]] = ..., public_key_pem: _Optional[bytes] = ..., status: _Optional[str] = ..., fingerprint: _Optional[str] = ..., created_at_unix: _Optional[int] = ..., key_type: _Optional[str] = ..., token_held: _Optional[str] = ...) -> None: ...

class RegisterOperatorRequest(_message.Message):
    __slots__ = ("id", "roles", "public_key_pem", "token_held")
    ID_FIELD_NUMBER: _ClassVar[int]
    ROLES_FIELD_NUMBER: _ClassVar[int]
    PUBLIC_KEY_PEM_FIELD_NUMBER: _ClassVar[int]
    TOKEN_HELD_FIELD_NUMBER: _ClassVar[int]
    id: str
    roles: _containers.RepeatedScalarFieldContainer[str]
    public_key_pem: bytes
    token_held: str
    def __init__(self, id: _Optional[str] = ..., roles: _Optional[_Iterable[str]] = ..., public_key_pem: _Optional[bytes] = ..., token_held: _Optional[str] = ...) -> None: ...

class RevokeOperatorRequest(_message.Message):
    __slots__ = ("id", "reason")
    ID_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    id: str
    reason: str
    def __init__(self, id: _Optional[str] = ..., reason: _Optional[str] = ...) -> None: ...

class SetOperatorRolesRequest(_message.Message):
    __slots__ = ("id", "roles")
    ID_FIELD_NUMBER: _ClassVar[int]
    ROLES_FIELD_NUMBER: _ClassVar[int]
    id: str
    roles: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, id: _Optional[str] = ..., roles: _Optional[_Iterable[str]] = ...) -> None: ...

class ListOperatorsRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class ListOperatorsResponse(_message.Message):
    __slots__ = ("operators",)
    OPERATORS_FIELD_NUMBER: _ClassVar[int]
    operators: _containers.RepeatedCompositeFieldContainer[Operator]
    def __init__(self, operators: _Optional[_Iterable[_Union[Operator, _Mapping]]] = ...) -> None: ...

class PolicyVersion(_message.Message):
    __slots__ = ("wallet_id", "version", "toml", "actor", "created_at_unix")
    WALLET_ID_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    TOML_FIELD_NUMBER: _ClassVar[int]
    ACTOR_FIELD_NUMBER: _ClassVar[int]
    CREATED_AT_UNIX_FIELD_NUMBER: _ClassVar[int]
    wallet_id: str
    version: int
    toml: str
    actor: str
    created_at_unix: int
    def __init__(self, wallet_id: _Optional[str] = ..., version: _Optional[int] = ..., toml: _Optional[str] = ..., actor: _Optional[str] = ..., created_at_unix: _Optional[int] = ...) -> None: ...

class SetPolicyRequest(_message.Message):
    __slots__ = ("wallet_id", "toml", "template")
    WALLET_ID_FIELD_NUMBER: _ClassVar[int]
    TOML_FIELD_NUMBER: _ClassVar[int]
    TEMPLATE_FIELD_NUMBER: _ClassVar[int]
    wallet_id: str
    toml: str
    template: str
    def __init__(self, wallet_id: _Optional[str] = ..., toml: _Optional[str] = ..., template: _Optional[str] = ...) -> None: ...

class SetTemplateRequest(_message.Message):
    __slots__ = ("name", "toml")
    NAME_FIELD_NUMBER: _ClassVar[int]
    TOML_FIELD_NUMBER: _ClassVar[int]
    name: str
    toml: str
    def __init__(self, name: _Optional[str] = ..., toml: _Optional[str] = ...) -> None: ...

class ListTemplatesRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class Template(_message.Message):
    __slots__ = ("name", "version", "sha256", "toml")
    NAME_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    SHA256_FIELD_NUMBER: _ClassVar[int]
    TOML_FIELD_NUMBER: _ClassVar[int]
    name: str
    version: int
    sha256: str
    toml: str
    def __init__(self, name: _Optional[str] = ..., version: _Optional[int] = ..., sha256: _Optional[str] = ..., toml: _Optional[str] = ...) -> None: ...

class ListTemplatesResponse(_message.Message):
    __slots__ = ("templates",)
    TEMPLATES_FIELD_NUMBER: _ClassVar[int]
    templates: _containers.RepeatedCompositeFieldContainer[Template]
    def __init__(self, templates: _Optional[_Iterable[_Union[Template, _Mapping]]] = ...) -> None: ...

class SetGovernanceRequest(_message.Message):
    __slots__ = ("toml",)
    TOML_FIELD_NUMBER: _ClassVar[int]
    toml: str
    def __init__(self, toml: _Optional[str] = ...) -> None: ...

class GetPolicyRequest(_message.Message):
    __slots__ = ("wallet_id",)
    WALLET_ID_FIELD_NUMBER: _ClassVar[int]
    wallet_id: str
    def __init__(self, wallet_id: _Optional[str] = ...) -> None: ...

class PolicyHistoryResponse(_message.Message):
    __slots__ = ("versions",)
    VERSIONS_FIELD_NUMBER: _ClassVar[int]
    versions: _containers.RepeatedCompositeFieldContainer[PolicyVersion]
    def __init__(self, versions: _Optional[_Iterable[_Union[PolicyVersion, _Mapping]]] = ...) -> None: ...

class FreezeWalletRequest(_message.Message):
    __slots__ = ("wallet_id", "order_ref")
    WALLET_ID_FIELD_NUMBER: _ClassVar[int]
    ORDER_REF_FIELD_NUMBER: _ClassVar[int]
    wallet_id: str
    order_ref: str
    def __init__(self, wallet_id: _Optional[str] = ..., order_ref: _Optional[str] = ...) -> None: ...

class ImportKeyRequest(_message.Message):
    __slots__ = ("hex", "wif", "mnemonic", "derivation_path", "passphrase", "chain", "network", "chain_ids", "script_type", "case_ref", "seizure_record", "legal_basis", "policy_toml", "template")
    HEX_FIELD_NUMBER: _ClassVar[int]
    WIF_FIELD_NUMBER: _ClassVar[int]
    MNEMONIC_FIELD_NUMBER: _ClassVar[int]
    DERIVATION_PATH_FIELD_NUMBER: _ClassVar[int]
    PASSPHRASE_FIELD_NUMBER: _ClassVar[int]
    CHAIN_FIELD_NUMBER: _ClassVar[int]
    NETWORK_FIELD_NUMBER: _ClassVar[int]
    CHAIN_IDS_FIELD_NUMBER: _ClassVar[int]
    SCRIPT_TYPE_FIELD_NUMBER: _ClassVar[int]
    CASE_REF_FIELD_NUMBER: _ClassVar[int]
    SEIZURE_RECORD_FIELD_NUMBER: _ClassVar[int]
    LEGAL_BASIS_FIELD_NUMBER: _ClassVar[int]
    POLICY_TOML_FIELD_NUMBER: _ClassVar[int]
    TEMPLATE_FIELD_NUMBER: _ClassVar[int]
    hex: str
    wif: str
    mnemonic: str
    derivation_path: str
    passphrase: str
    chain: Chain
    network: str
    chain_ids: _containers.RepeatedScalarFieldContainer[int]
    script_type: ScriptType
    case_ref: str
    seizure_record: str
    legal_basis: str
    policy_toml: str
    template: str
    def __init__(self, hex: _Optional[str] = ..., wif: _Optional[str] = ..., mnemonic: _Optional[str] = ..., derivation_path: _Optional[str] = ..., passphrase: _Optional[str] = ..., chain: _Optional[_Union[Chain, str]] = ..., network: _Optional[str] = ..., chain_ids: _Optional[_Iterable[int]] = ..., script_type: _Optional[_Union[ScriptType, str]] = ..., case_ref: _Optional[str] = ..., seizure_record: _Optional[str] = ..., legal_basis: _Optional[str] = ..., policy_toml: _Optional[str] = ..., template: _Optional[str] = ...) -> None: ...

class Token(_message.Message):
    __slots__ = ("chain_id", "address", "standard", "symbol", "decimals")
    CHAIN_ID_FIELD_NUMBER: _ClassVar[int]
    ADDRESS_FIELD_NUMBER: _ClassVar[int]
    STANDARD_FIELD_NUMBER: _ClassVar[int]
    SYMBOL_FIELD_NUMBER: _ClassVar[int]
    DECIMALS_FIELD_NUMBER: _ClassVar[int]
    chain_id: int
    address: str
    standard: str
    symbol: str
    decimals: int
    def __init__(self, chain_id: _Optional[int] = ..., address: _Optional[str] = ..., standard: _Optional[str] = ..., symbol: _Optional[str] = ..., decimals: _Optional[int] = ...) -> None: ...

class ProposeSafeOwnersRequest(_message.Message):
    __slots__ = ("transfer_id",)
    TRANSFER_ID_FIELD_NUMBER: _ClassVar[int]
    transfer_id: str
    def __init__(self, transfer_id: _Optional[str] = ...) -> None: ...

class SetTokenRequest(_message.Message):
    __slots__ = ("chain_id", "address", "symbol", "decimals", "standard")
    CHAIN_ID_FIELD_NUMBER: _ClassVar[int]
    ADDRESS_FIELD_NUMBER: _ClassVar[int]
    SYMBOL_FIELD_NUMBER: _ClassVar[int]
    DECIMALS_FIELD_NUMBER: _ClassVar[int]
    STANDARD_FIELD_NUMBER: _ClassVar[int]
    chain_id: int
    address: str
    symbol: str
    decimals: int
    standard: str
    def __init__(self, chain_id: _Optional[int] = ..., address: _Optional[str] = ..., symbol: _Optional[str] = ..., decimals: _Optional[int] = ..., standard: _Optional[str] = ...) -> None: ...

class ListTokensRequest(_message.Message):
    __slots__ = ("chain_id",)
    CHAIN_ID_FIELD_NUMBER: _ClassVar[int]
    chain_id: int
    def __init__(self, chain_id: _Optional[int] = ...) -> None: ...

class ListTokensResponse(_message.Message):
    __slots__ = ("tokens",)
    TOKENS_FIELD_NUMBER: _ClassVar[int]
    tokens: _containers.RepeatedCompositeFieldContainer[Token]
    def __init__(self, tokens: _Optional[_Iterable[_Union[Token, _Mapping]]] = ...) -> None: ...

class EvmChain(_message.Message):
    __slots__ = ("chain_id", "name", "symbol", "decimals")
    CHAIN_ID_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    SYMBOL_FIELD_NUMBER: _ClassVar[int]
    DECIMALS_FIELD_NUMBER: _ClassVar[int]
    chain_id: int
    name: str
    symbol: str
    decimals: int
    def __init__(self, chain_id: _Optional[int] = ..., name: _Optional[str] = ..., symbol: _Optional[str] = ..., decimals: _Optional[int] = ...) -> None: ...

class SetChainRequest(_message.Message):
    __slots__ = ("chain_id", "name", "symbol", "decimals")
    CHAIN_ID_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    SYMBOL_FIELD_NUMBER: _ClassVar[int]
    DECIMALS_FIELD_NUMBER: _ClassVar[int]
    chain_id: int
    name: str
    symbol: str
    decimals: int
    def __init__(self, chain_id: _Optional[int] = ..., name: _Optional[str] = ..., symbol: _Optional[str] = ..., decimals: _Optional[int] = ...) -> None: ...

class ListChainsRequest(_message.Message):
    __slots__ = ("chain_id",)
    CHAIN_ID_FIELD_NUMBER: _ClassVar[int]
    chain_id: int
    def __init__(self, chain_id: _Optional[int] = ...) -> None: ...

class ListChainsResponse(_message.Message):
    __slots__ = ("chains",)
    CHAINS_FIELD_NUMBER: _ClassVar[int]
    chains: _containers.RepeatedCompositeFieldContainer[EvmChain]
    def __init__(self, chains: _Optional[_Iterable[_Union[EvmChain, _Mapping]]] = ...) -> None: ...

class KeyStatusRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class RegisterBackupKeyRequest(_message.Message):
    __slots__ = ("ceremony",)
    CEREMONY_FIELD_NUMBER: _ClassVar[int]
    ceremony: bytes
    def __init__(self, ceremony: _Optional[bytes] = ...) -> None: ...

class ProposeBackupRequest(_message.Message):
    __slots__ = ("ceremony_id",)
    CEREMONY_ID_FIELD_NUMBER: _ClassVar[int]
    ceremony_id: str
    def __init__(self, ceremony_id: _Optional[str] = ...) -> None: ...

class GetBackupBundleRequest(_message.Message):
    __slots__ = ("proposal_id",)
    PROPOSAL_ID_FIELD_NUMBER: _ClassVar[int]
    proposal_id: str
    def __init__(self, proposal_id: _Optional[str] = ...) -> None: ...

class BackupBundle(_message.Message):
    __slots__ = ("bundle", "digest", "keys", "not_backed_up")
    BUNDLE_FIELD_NUMBER: _ClassVar[int]
    DIGEST_FIELD_NUMBER: _ClassVar[int]
    KEYS_FIELD_NUMBER: _ClassVar[int]
    NOT_BACKED_UP_FIELD_NUMBER: _ClassVar[int]
    bundle: bytes
    digest: str
    keys: int
    not_backed_up: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, bundle: _Optional[bytes] = ..., digest: _Optional[str] = ..., keys: _Optional[int] = ..., not_backed_up: _Optional[_Iterable[str]] = ...) -> None: ...

class BackupStatusRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class BackupStatusResponse(_message.Message):
    __slots__ = ("document",)
    DOCUMENT_FIELD_NUMBER: _ClassVar[int]
    document: str
    def __init__(self, document: _Optional[str] = ...) -> None: ...

class KeyStatusResponse(_message.Message):
    __slots__ = ("hsm_up", "token_label", "module", "key_count", "concurrency", "manufacturer", "model")
    HSM_UP_FIELD_NUMBER: _ClassVar[int]
    TOKEN_LABEL_FIELD_NUMBER: _ClassVar[int]
    MODULE_FIELD_NUMBER: _ClassVar[int]
    KEY_COUNT_FIELD_NUMBER: _ClassVar[int]
    CONCURRENCY_FIELD_NUMBER: _ClassVar[int]
    MANUFACTURER_FIELD_NUMBER: _ClassVar[int]
    MODEL_FIELD_NUMBER: _ClassVar[int]
    hsm_up: bool
    token_label: str
    module: str
    key_count: int
    concurrency: str
    manufacturer: str
    model: str
    def __init__(self, hsm_up: _Optional[bool] = ..., token_label: _Optional[str] = ..., module: _Optional[str] = ..., key_count: _Optional[int] = ..., concurrency: _Optional[str] = ..., manufacturer: _Optional[str] = ..., model: _Optional[str] = ...) -> None: ...

class Proposal(_message.Message):
    __slots__ = ("id", "kind", "state", "submitter", "summary", "body_json", "requirement", "remaining", "approvals", "expires_at_unix", "created_at_unix", "updated_at_unix", "applied_seq", "failure", "instance_id")
    ID_FIELD_NUMBER: _ClassVar[int]
    KIND_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    SUBMITTER_FIELD_NUMBER: _ClassVar[int]
    SUMMARY_FIELD_NUMBER: _ClassVar[int]
    BODY_JSON_FIELD_NUMBER: _ClassVar[int]
    REQUIREMENT_FIELD_NUMBER: _ClassVar[int]
    REMAINING_FIELD_NUMBER: _ClassVar[int]
    APPROVALS_FIELD_NUMBER: _ClassVar[int]
    EXPIRES_AT_UNIX_FIELD_NUMBER: _ClassVar[int]
    CREATED_AT_UNIX_FIELD_NUMBER: _ClassVar[int]
    UPDATED_AT_UNIX_FIELD_NUMBER: _ClassVar[int]
    APPLIED_SEQ_FIELD_NUMBER: _ClassVar[int]
    FAILURE_FIELD_NUMBER: _ClassVar[int]
    INSTANCE_ID_FIELD_NUMBER: _ClassVar[int]
    id: str
    kind: str
    state: str
    submitter: str
    summary: str
    body_json: str
    requirement: str
    remaining: str
    approvals: _containers.RepeatedCompositeFieldContainer[ApprovalRecord]
    expires_at_unix: int
    created_at_unix: int
    updated_at_unix: int
    applied_seq: int
    failure: str
    instance_id: str
    def __init__(self, id: _Optional[str] = ..., kind: _Optional[str] = ..., state: _Optional[str] = ..., submitter: _Optional[str] = ..., summary: _Optional[str] = ..., body_json: _Optional[str] = ..., requirement: _Optional[str] = ..., remaining: _Optional[str] = ..., approvals: _Optional[_Iterable[_Union[ApprovalRecord, _Mapping]]] = ..., expires_at_unix: _Optional[int] = ..., created_at_unix: _Optional[int] = ..., updated_at_unix: _Optional[int] = ..., applied_seq: _Optional[int] = ..., failure: _Optional[str] = ..., instance_id: _Optional[str] = ...) -> None: ...

class ListProposalsRequest(_message.Message):
    __slots__ = ("state", "page")
    STATE_FIELD_NUMBER: _ClassVar[int]
    PAGE_FIELD_NUMBER: _ClassVar[int]
    state: str
    page: Page
    def __init__(self, state: _Optional[str] = ..., page: _Optional[_Union[Page, _Mapping]] = ...) -> None: ...

class ListProposalsResponse(_message.Message):
    __slots__ = ("proposals", "next_page_token")
    PROPOSALS_FIELD_NUMBER: _ClassVar[int]
    NEXT_PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    proposals: _containers.RepeatedCompositeFieldContainer[Proposal]
    next_page_token: str
    def __init__(self, proposals: _Optional[_Iterable[_Union[Proposal, _Mapping]]] = ..., next_page_token: _Optional[str] = ...) -> None: ...

class GetProposalRequest(_message.Message):
    __slots__ = ("proposal_id",)
    PROPOSAL_ID_FIELD_NUMBER: _ClassVar[int]
    proposal_id: str
    def __init__(self, proposal_id: _Optional[str] = ...) -> None: ...

class GetProposalStatementRequest(_message.Message):
    __slots__ = ("proposal_id", "decision")
    PROPOSAL_ID_FIELD_NUMBER: _ClassVar[int]
    DECISION_FIELD_NUMBER: _ClassVar[int]
    proposal_id: str
    decision: Decision
    def __init__(self, proposal_id: _Optional[str] = ..., decision: _Optional[_Union[Decision, str]] = ...) -> None: ...

class ProposalStatement(_message.Message):
    __slots__ = ("proposal", "statement", "rendered")
    PROPOSAL_FIELD_NUMBER: _ClassVar[int]
    STATEMENT_FIELD_NUMBER: _ClassVar[int]
    RENDERED_FIELD_NUMBER: _ClassVar[int]
    proposal: Proposal
    statement: bytes
    rendered: str
    def __init__(self, proposal: _Optional[_Union[Proposal, _Mapping]] = ..., statement: _Optional[bytes] = ..., rendered: _Optional[str] = ...) -> None: ...

class DecideProposalRequest(_message.Message):
    __slots__ = ("proposal_id", "operator_id", "decision", "signature", "reason", "statement_sha256")
    PROPOSAL_ID_FIELD_NUMBER: _ClassVar[int]
    OPERATOR_ID_FIELD_NUMBER: _ClassVar[int]
    DECISION_FIELD_NUMBER: _ClassVar[int]
    SIGNATURE_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    STATEMENT_SHA256_FIELD_NUMBER: _ClassVar[int]
    proposal_id: str
    operator_id: str
    decision: Decision
    signature: bytes
    reason: str
    statement_sha256: bytes
    def __init__(self, proposal_id: _Optional[str] = ..., operator_id: _Optional[str] = ..., decision: _Optional[_Union[Decision, str]] = ..., signature: _Optional[bytes] = ..., reason: _Optional[str] = ..., statement_sha256: _Optional[bytes] = ...) -> None: ...

class CancelProposalRequest(_message.Message):
    __slots__ = ("proposal_id", "reason")
    PROPOSAL_ID_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    proposal_id: str
    reason: str
    def __init__(self, proposal_id: _Optional[str] = ..., reason: _Optional[str] = ...) -> None: ...

class GetAuthorityRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class FrozenWallet(_message.Message):
    __slots__ = ("wallet_id", "order_ref")
    WALLET_ID_FIELD_NUMBER: _ClassVar[int]
    ORDER_REF_FIELD_NUMBER: _ClassVar[int]
    wallet_id: str
    order_ref: str
    def __init__(self, wallet_id: _Optional[str] = ..., order_ref: _Optional[str] = ...) -> None: ...

class Authority(_message.Message):
    __slots__ = ("instance_id", "genesis", "seq", "head", "governance_toml", "templates", "operators", "frozen", "audit_public_key")
    INSTANCE_ID_FIELD_NUMBER: _ClassVar[int]
    GENESIS_FIELD_NUMBER: _ClassVar[int]
    SEQ_FIELD_NUMBER: _ClassVar[int]
    HEAD_FIELD_NUMBER: _ClassVar[int]
    GOVERNANCE_TOML_FIELD_NUMBER: _ClassVar[int]
    TEMPLATES_FIELD_NUMBER: _ClassVar[int]
    OPERATORS_FIELD_NUMBER: _ClassVar[int]
    FROZEN_FIELD_NUMBER: _ClassVar[int]
    AUDIT_PUBLIC_KEY_FIELD_NUMBER: _ClassVar[int]
    instance_id: str
    genesis: bytes
    seq: int
    head: bytes
    governance_toml: str
    templates: _containers.RepeatedCompositeFieldContainer[Template]
    operators: _containers.RepeatedCompositeFieldContainer[Operator]
    frozen: _containers.RepeatedCompositeFieldContainer[FrozenWallet]
    audit_public_key: bytes
    def __init__(self, instance_id: _Optional[str] = ..., genesis: _Optional[bytes] = ..., seq: _Optional[int] = ..., head: _Optional[bytes] = ..., governance_toml: _Optional[str] = ..., templates: _Optional[_Iterable[_Union[Template, _Mapping]]] = ..., operators: _Optional[_Iterable[_Union[Operator, _Mapping]]] = ..., frozen: _Optional[_Iterable[_Union[FrozenWallet, _Mapping]]] = ..., audit_public_key: _Optional[bytes] = ...) -> None: ...

class AuditEvent(_message.Message):
    __slots__ = ("seq", "time_micros", "actor", "action", "object", "details_json", "prev_hash", "hash")
    SEQ_FIELD_NUMBER: _ClassVar[int]
    TIME_MICROS_FIELD_NUMBER: _ClassVar[int]
    ACTOR_FIELD_NUMBER: _ClassVar[int]
    ACTION_FIELD_NUMBER: _ClassVar[int]
    OBJECT_FIELD_NUMBER: _ClassVar[int]
    DETAILS_JSON_FIELD_NUMBER: _ClassVar[int]
    PREV_HASH_FIELD_NUMBER: _ClassVar[int]
    HASH_FIELD_NUMBER: _ClassVar[int]
    seq: int
    time_micros: int
    actor: str
    action: str
    object: str
    details_json: str
    prev_hash: bytes
    hash: bytes
    def __init__(self, seq: _Optional[int] = ..., time_micros: _Optional[int] = ..., actor: _Optional[str] = ..., action: _Optional[str] = ..., object: _Optional[str] = ..., details_json: _Optional[str] = ..., prev_hash: _Optional[bytes] = ..., hash: _Optional[bytes] = ...) -> None: ...

class ListEventsRequest(_message.Message):
    __slots__ = ("after_seq", "limit")
    AFTER_SEQ_FIELD_NUMBER: _ClassVar[int]
    LIMIT_FIELD_NUMBER: _ClassVar[int]
    after_seq: int
    limit: int
    def __init__(self, after_seq: _Optional[int] = ..., limit: _Optional[int] = ...) -> None: ...

class ListEventsResponse(_message.Message):
    __slots__ = ("events",)
    EVENTS_FIELD_NUMBER: _ClassVar[int]
    events: _containers.RepeatedCompositeFieldContainer[AuditEvent]
    def __init__(self, events: _Optional[_Iterable[_Union[AuditEvent, _Mapping]]] = ...) -> None: ...

class StreamEventsRequest(_message.Message):
    __slots__ = ("after_seq", "follow")
    AFTER_SEQ_FIELD_NUMBER: _ClassVar[int]
    FOLLOW_FIELD_NUMBER: _ClassVar[int]
    after_seq: int
    follow: bool
    def __init__(self, after_seq: _Optional[int] = ..., follow: _Optional[bool] = ...) -> None: ...

class GetHeadRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class AuditHead(_message.Message):
    __slots__ = ("seq", "hash", "signature", "audit_public_key", "instance_id")
    SEQ_FIELD_NUMBER: _ClassVar[int]
    HASH_FIELD_NUMBER: _ClassVar[int]
    SIGNATURE_FIELD_NUMBER: _ClassVar[int]
    AUDIT_PUBLIC_KEY_FIELD_NUMBER: _ClassVar[int]
    INSTANCE_ID_FIELD_NUMBER: _ClassVar[int]
    seq: int
    hash: bytes
    signature: bytes
    audit_public_key: bytes
    instance_id: str
    def __init__(self, seq: _Optional[int] = ..., hash: _Optional[bytes] = ..., signature: _Optional[bytes] = ..., audit_public_key: _Optional[bytes] = ..., instance_id: _Optional[str] = ...) -> None: ...

class ExportRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class ExportChunk(_message.Message):
    __slots__ = ("data",)
    DATA_FIELD_NUMBER: _ClassVar[int]
    data: bytes
    def __init__(self, data: _Optional[bytes] = ...) -> None: ...

class ReportRequest(_message.Message):
    __slots__ = ("category", "case_ref")
    CATEGORY_FIELD_NUMBER: _ClassVar[int]
    CASE_REF_FIELD_NUMBER: _ClassVar[int]
    category: Category
    case_ref: str
    def __init__(self, category: _Optional[_Union[Category, str]] = ..., case_ref: _Optional[str] = ...) -> None: ...

class ReportResponse(_message.Message):
    __slots__ = ("json",)
    JSON_FIELD_NUMBER: _ClassVar[int]
    json: str
    def __init__(self, json: _Optional[str] = ...) -> None: ...

class CreateAttestationRequest(_message.Message):
    __slots__ = ("category", "case_ref", "challenge", "issuer", "since")
    CATEGORY_FIELD_NUMBER: _ClassVar[int]
    CASE_REF_FIELD_NUMBER: _ClassVar[int]
    CHALLENGE_FIELD_NUMBER: _ClassVar[int]
    ISSUER_FIELD_NUMBER: _ClassVar[int]
    SINCE_FIELD_NUMBER: _ClassVar[int]
    category: Category
    case_ref: str
    challenge: str
    issuer: str
    since: int
    def __init__(self, category: _Optional[_Union[Category, str]] = ..., case_ref: _Optional[str] = ..., challenge: _Optional[str] = ..., issuer: _Optional[str] = ..., since: _Optional[int] = ...) -> None: ...

class GetAttestationRequest(_message.Message):
    __slots__ = ("attestation_id",)
    ATTESTATION_ID_FIELD_NUMBER: _ClassVar[int]
    attestation_id: str
    def __init__(self, attestation_id: _Optional[str] = ...) -> None: ...

class ListAttestationsRequest(_message.Message):
    __slots__ = ("state", "page")
    STATE_FIELD_NUMBER: _ClassVar[int]
    PAGE_FIELD_NUMBER: _ClassVar[int]
    state: str
    page: Page
    def __init__(self, state: _Optional[str] = ..., page: _Optional[_Union[Page, _Mapping]] = ...) -> None: ...

class GetAttestationStatementRequest(_message.Message):
    __slots__ = ("attestation_id", "decision")
    ATTESTATION_ID_FIELD_NUMBER: _ClassVar[int]
    DECISION_FIELD_NUMBER: _ClassVar[int]
    attestation_id: str
    decision: Decision
    def __init__(self, attestation_id: _Optional[str] = ..., decision: _Optional[_Union[Decision, str]] = ...) -> None: ...

class AttestationStatement(_message.Message):
    __slots__ = ("statement", "rendered", "json")
    STATEMENT_FIELD_NUMBER: _ClassVar[int]
    RENDERED_FIELD_NUMBER: _ClassVar[int]
    JSON_FIELD_NUMBER: _ClassVar[int]
    statement: bytes
    rendered: str
    json: str
    def __init__(self, statement: _Optional[bytes] = ..., rendered: _Optional[str] = ..., json: _Optional[str] = ...) -> None: ...

class DecideAttestationRequest(_message.Message):
    __slots__ = ("attestation_id", "operator_id", "decision", "signature", "reason", "statement_sha256")
    ATTESTATION_ID_FIELD_NUMBER: _ClassVar[int]
    OPERATOR_ID_FIELD_NUMBER: _ClassVar[int]
    DECISION_FIELD_NUMBER: _ClassVar[int]
    SIGNATURE_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    STATEMENT_SHA256_FIELD_NUMBER: _ClassVar[int]
    attestation_id: str
    operator_id: str
    decision: Decision
    signature: bytes
    reason: str
    statement_sha256: bytes
    def __init__(self, attestation_id: _Optional[str] = ..., operator_id: _Optional[str] = ..., decision: _Optional[_Union[Decision, str]] = ..., signature: _Optional[bytes] = ..., reason: _Optional[str] = ..., statement_sha256: _Optional[bytes] = ...) -> None: ...

class AttestationResponse(_message.Message):
    __slots__ = ("json",)
    JSON_FIELD_NUMBER: _ClassVar[int]
    json: str
    def __init__(self, json: _Optional[str] = ...) -> None: ...

class CombineAttestationRequest(_message.Message):
    __slots__ = ("attestation_id", "psbt")
    ATTESTATION_ID_FIELD_NUMBER: _ClassVar[int]
    PSBT_FIELD_NUMBER: _ClassVar[int]
    attestation_id: str
    psbt: bytes
    def __init__(self, attestation_id: _Optional[str] = ..., psbt: _Optional[bytes] = ...) -> None: ...
