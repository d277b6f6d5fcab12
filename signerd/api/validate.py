"""Bounded input at the gRPC edge: every request field has a maximum, checked before any handler.

``LIMITS`` names, for every field of every request message of the five signerd services (and of
the messages they contain), its bound: the most characters of a string, bytes of a bytes field,
entries of a repeated field (its entries' own bound under ``"Message.field[]"``), or the largest
value of an integer. :class:`Bounds` walks a request by its descriptor and refuses, as
INVALID_ARGUMENT naming the field and the limit, a value beyond its bound, a string holding a NUL
character, and an enum value the API does not define. A field missing from the table stops the
daemon at start (``Bounds`` is built with the server), so a new field cannot go unbounded.

The request bytes are parsed by :func:`safe_deserializer`, which gRPC calls before the handler:
bytes that do not parse (invalid UTF-8 in a string field, a truncated or malformed message)
become an :class:`Undecodable` request that the gate refuses, after authentication and the rate
limit, as INVALID_ARGUMENT naming the field (grpcio would answer INTERNAL on its own).
"""
from __future__ import annotations

from typing import Any, Callable, Iterator

import grpc
from google.protobuf.descriptor import Descriptor, FieldDescriptor
from google.protobuf.message import DecodeError, Message

from signerd.core.errors import InvalidArgument
from ..v1 import signerd_pb2 as pb

PACKAGE = pb.DESCRIPTOR.package
SERVICES = ("Custody", "Approval", "Admin", "Governance", "Audit", "Attestation")

ID = 128           # wallet, transfer, proposal, operator and key share ids, page tokens
NAME = 64          # networks, template and role names, states, category changes
TEXT = 1000        # case references, legal bases, reasons, court orders, labels
DOCUMENT = 65_536  # policy, template and governance TOML (policy.MAX_DOCUMENT_CHARS)
SECRET = 1024      # an imported key: hex, WIF, mnemonic, BIP-39 passphrase
PATH = 256         # a BIP-32 derivation path
COSIGNER = 512     # one cosigner key expression (signerd.core.bitcoin.descriptor caps its paths)
SIGNATURE = 1024   # an operator's signature (Ed25519: 64 bytes)
DIGEST = 64        # statement_sha256 (32 bytes)
PEM = 65_536       # an operator's public key (operator_keys.MAX_KEY_FILE)
MULTISIG_KEYS = 15  # keys of a multisig wallet (wallets.check_request)
CHAIN_IDS = 64
SAFE_SETUP = 16_384  # a Safe's setup JSON (safe_wallet.MAX_SETUP_CHARS)
SAFE_SIGNATURE = 65  # an owner's signature of a SafeTx hash: r || s || v
ROLES = 32
PAGE = 1000
UINT64 = 2**64 - 1
MAX_SEQ = 2**63 - 1  # an audit sequence number: a signed 64-bit store column
MESSAGE = "max_message_bytes"  # a payload: bounded by [server] max_message_bytes here, by
#                                [limits] (max_psbt_bytes, max_calldata_bytes) where decoded

LIMITS: dict[str, int | str] = {
    # Custody
    "CreateWalletRequest.network": NAME,
    "CreateWalletRequest.chain_ids": CHAIN_IDS,
    "CreateWalletRequest.chain_ids[]": UINT64,
    "CreateWalletRequest.case_ref": TEXT,
    "CreateWalletRequest.legal_basis": TEXT,
    "CreateWalletRequest.policy_toml": DOCUMENT,
    "CreateWalletRequest.threshold": MULTISIG_KEYS,
    "CreateWalletRequest.hsm_keys": MULTISIG_KEYS,
    "CreateWalletRequest.cosigners": MULTISIG_KEYS,
    "CreateWalletRequest.cosigners[]": COSIGNER,
    "CreateWalletRequest.label": TEXT,
    "CreateWalletRequest.hsm_key_ids": MULTISIG_KEYS,
    "CreateWalletRequest.hsm_key_ids[]": ID,
    "CreateWalletRequest.template": NAME,
    "CreateWalletRequest.safe_address": NAME,
    "CreateWalletRequest.safe_setup": SAFE_SETUP,
    "CreateKeyShareRequest.case_ref": TEXT,
    "GetWalletRequest.wallet_id": ID,
    "ListWalletsRequest.case_ref": TEXT,
    "Page.page_size": PAGE,
    "Page.page_token": ID,
    "SubmitTransferRequest.wallet_id": ID,
    "SubmitTransferRequest.psbt": MESSAGE,
    "EthereumTransaction.json": MESSAGE,
    "TronTransaction.json": MESSAGE,
    "SubmitTransferRequest.replaces": ID,
    "SubmitTransferRequest.legal_basis": TEXT,
    "SubmitTransferRequest.category_change": NAME,
    "SubmitTransferRequest.idempotency_key": ID,
    "SubmitTransferRequest.safe_tx": MESSAGE,
    "GetTransferRequest.transfer_id": ID,
    "ListTransfersRequest.wallet_id": ID,
    "WatchTransferRequest.transfer_id": ID,
    "CancelTransferRequest.transfer_id": ID,
    "CancelTransferRequest.reason": TEXT,
    "CombinePsbtRequest.transfer_id": ID,
    "CombinePsbtRequest.psbt": MESSAGE,
    "CombineSafeSignatureRequest.transfer_id": ID,
    "CombineSafeSignatureRequest.owner": NAME,
    "CombineSafeSignatureRequest.signature": SAFE_SIGNATURE,
    "ProposeSafeOwnersRequest.transfer_id": ID,
    # Approval
    "GetStatementRequest.transfer_id": ID,
    "SubmitApprovalRequest.transfer_id": ID,
    "SubmitApprovalRequest.operator_id": ID,
    "SubmitApprovalRequest.signature": SIGNATURE,
    "SubmitApprovalRequest.reason": TEXT,
    "SubmitApprovalRequest.statement_sha256": DIGEST,
    # Admin
    "RegisterOperatorRequest.id": ID,
    "RegisterOperatorRequest.roles": ROLES,
    "RegisterOperatorRequest.roles[]": NAME,
    "RegisterOperatorRequest.public_key_pem": PEM,
    "RegisterOperatorRequest.token_held": TEXT,
    "RevokeOperatorRequest.id": ID,
    "RevokeOperatorRequest.reason": TEXT,
    "SetOperatorRolesRequest.id": ID,
    "SetOperatorRolesRequest.roles": ROLES,
    "SetOperatorRolesRequest.roles[]": NAME,
    "SetPolicyRequest.wallet_id": ID,
    "SetPolicyRequest.toml": DOCUMENT,
    "SetPolicyRequest.template": NAME,
    "SetTemplateRequest.name": NAME,
    "SetTemplateRequest.toml": DOCUMENT,
    "SetGovernanceRequest.toml": DOCUMENT,
    "SetTokenRequest.chain_id": UINT64,
    "SetTokenRequest.address": NAME,
    "SetTokenRequest.symbol": NAME,
    "SetTokenRequest.decimals": 36,  # tokens.MAX_DECIMALS
    "SetTokenRequest.standard": NAME,
    "ListTokensRequest.chain_id": UINT64,
    "SetChainRequest.chain_id": UINT64,
    "SetChainRequest.name": NAME,
    "SetChainRequest.symbol": NAME,
    "SetChainRequest.decimals": 36,  # chain_registry.MAX_DECIMALS
    "ListChainsRequest.chain_id": UINT64,
    "RegisterBackupKeyRequest.ceremony": DOCUMENT,
    "ProposeBackupRequest.ceremony_id": ID,
    "GetBackupBundleRequest.proposal_id": ID,
    "GetPolicyRequest.wallet_id": ID,
    "FreezeWalletRequest.wallet_id": ID,
    "FreezeWalletRequest.order_ref": TEXT,
    "ImportKeyRequest.hex": SECRET,
    "ImportKeyRequest.wif": SECRET,
    "ImportKeyRequest.mnemonic": SECRET,
    "ImportKeyRequest.derivation_path": PATH,
    "ImportKeyRequest.passphrase": SECRET,
    "ImportKeyRequest.network": NAME,
    "ImportKeyRequest.chain_ids": CHAIN_IDS,
    "ImportKeyRequest.chain_ids[]": UINT64,
    "ImportKeyRequest.case_ref": TEXT,
    "ImportKeyRequest.seizure_record": TEXT,
    "ImportKeyRequest.legal_basis": TEXT,
    "ImportKeyRequest.policy_toml": DOCUMENT,
    "ImportKeyRequest.template": NAME,
    # Attestation
    "CreateAttestationRequest.case_ref": TEXT,
    "CreateAttestationRequest.challenge": 128,  # attest.MAX_FIELD
    "CreateAttestationRequest.issuer": 128,
    "CreateAttestationRequest.since": UINT64,
    "GetAttestationRequest.attestation_id": ID,
    "ListAttestationsRequest.state": NAME,
    "GetAttestationStatementRequest.attestation_id": ID,
    "DecideAttestationRequest.attestation_id": ID,
    "DecideAttestationRequest.operator_id": ID,
    "DecideAttestationRequest.signature": SIGNATURE,
    "DecideAttestationRequest.reason": TEXT,
    "DecideAttestationRequest.statement_sha256": DIGEST,
    "CombineAttestationRequest.attestation_id": ID,
    "CombineAttestationRequest.psbt": MESSAGE,
    # Governance
    "ListProposalsRequest.state": NAME,
    "GetProposalRequest.proposal_id": ID,
    "GetProposalStatementRequest.proposal_id": ID,
    "DecideProposalRequest.proposal_id": ID,
    "DecideProposalRequest.operator_id": ID,
    "DecideProposalRequest.signature": SIGNATURE,
    "DecideProposalRequest.reason": TEXT,
    "DecideProposalRequest.statement_sha256": DIGEST,
    "CancelProposalRequest.proposal_id": ID,
    "CancelProposalRequest.reason": TEXT,
    # Audit
    "ListEventsRequest.after_seq": MAX_SEQ,
    "ListEventsRequest.limit": PAGE,
    "StreamEventsRequest.after_seq": MAX_SEQ,
    "ReportRequest.case_ref": TEXT,
}

T = FieldDescriptor
_STRING, _BYTES, _MESSAGE, _ENUM, _BOOL = T.TYPE_STRING, T.TYPE_BYTES, T.TYPE_MESSAGE, \
    T.TYPE_ENUM, T.TYPE_BOOL
INTEGER_TYPES = frozenset({T.TYPE_INT32, T.TYPE_INT64, T.TYPE_UINT32, T.TYPE_UINT64,
                           T.TYPE_SINT32, T.TYPE_SINT64, T.TYPE_FIXED32, T.TYPE_FIXED64,
                           T.TYPE_SFIXED32, T.TYPE_SFIXED64})


def rpc_methods() -> Iterator[tuple[str, Any]]:
    """Every signerd RPC as ("Service/Method", its MethodDescriptor)."""
    for service in SERVICES:
        sd = pb.DESCRIPTOR.services_by_name[service]
        for m in sd.methods:
            yield f"{service}/{m.name}", m


def request_messages() -> list[Descriptor]:
    """Every message type a signerd request is or contains, each once."""
    seen: dict[str, Descriptor] = {}

    def visit(d: Descriptor) -> None:
        if d.full_name in seen:
            return
        seen[d.full_name] = d
        for f in d.fields:
            if f.type == _MESSAGE:
                visit(f.message_type)

    for _, m in rpc_methods():
        visit(m.input_type)
    return list(seen.values())


def bounded_keys() -> set[str]:
    """The keys ``LIMITS`` must have: every string, bytes, integer and repeated field of every
    request message (and each repeated scalar field's entries)."""
    keys = set()
    for d in request_messages():
        for f in d.fields:
            key = f"{d.name}.{f.name}"
            scalar = f.type in INTEGER_TYPES or f.type in (_STRING, _BYTES)
            if f.is_repeated:
                keys.add(key)
                if scalar:
                    keys.add(key + "[]")
            elif scalar:
                keys.add(key)
    return keys


class _Field:
    __slots__ = ("fd", "name", "limit", "entry_limit", "sub", "enum_values")

    def __init__(self, fd: FieldDescriptor, limit: int, entry_limit: int,
                 sub: dict[str, "_Field"] | None):
        self.fd = fd
        self.name = fd.name
        self.limit = limit            # the field's own bound (entries when repeated)
        self.entry_limit = entry_limit  # each value's bound
        self.sub = sub                # a message field's plan
        self.enum_values = (frozenset(v.number for v in fd.enum_type.values)
                            if fd.type == _ENUM else frozenset())


class Bounds:
    """The checks of ``LIMITS`` on every request, with config-dependent limits resolved."""

    def __init__(self, max_message_bytes: int):
        missing = sorted(bounded_keys() - set(LIMITS))
        if missing:
            raise RuntimeError(f"request fields without a bound in LIMITS: {', '.join(missing)}")
        self.max_message_bytes = max_message_bytes
        self._plans: dict[str, dict[str, _Field]] = {}
        for d in request_messages():
            self._plan(d)

    def _limit(self, key: str) -> int:
        value = LIMITS.get(key, 0)
        return self.max_message_bytes if value == MESSAGE else int(value)

    def _plan(self, d: Descriptor) -> dict[str, _Field]:
        if d.full_name in self._plans:
            return self._plans[d.full_name]
        plan: dict[str, _Field] = {}
        self._plans[d.full_name] = plan
        for f in d.fields:
            key = f"{d.name}.{f.name}"
            sub = self._plan(f.message_type) if f.type == _MESSAGE else None
            if f.is_repeated:
                entry = self._limit(key + "[]") if key + "[]" in LIMITS else 0
                plan[f.name] = _Field(f, self._limit(key), entry, sub)
            else:
                plan[f.name] = _Field(f, 0, self._limit(key) if key in LIMITS else 0, sub)
        return plan

    def check(self, request: Any) -> None:
        """Raise InvalidArgument naming the first field of ``request`` beyond its bound (or the
        field an undecodable request broke)."""
        if isinstance(request, Undecodable):
            raise InvalidArgument(request.message)
        plan = self._plans.get(request.DESCRIPTOR.full_name)
        if plan is not None:
            self._walk(request, plan, "")

    def _walk(self, msg: Message, plan: dict[str, _Field], prefix: str) -> None:
        for fd, value in msg.ListFields():
            rule = plan.get(fd.name)
            if rule is None:  # an extension or a field of a newer schema: not ours to read
                continue
            path = prefix + fd.name
            if fd.is_repeated:
                if len(value) > rule.limit:
                    raise InvalidArgument(f"{path}: {len(value)} entries, more than the limit "
                                          f"of {rule.limit}")
                for i, v in enumerate(value):
                    self._value(rule, v, f"{path}[{i}]")
            else:
                self._value(rule, value, path)

    def _value(self, rule: _Field, value: Any, path: str) -> None:
        t = rule.fd.type
        if t == _STRING:
            if len(value) > rule.entry_limit:
                raise InvalidArgument(f"{path}: {len(value)} characters, more than the limit "
                                      f"of {rule.entry_limit}")
            if "\x00" in value:
                raise InvalidArgument(f"{path}: contains a NUL character")
        elif t == _BYTES:
            if len(value) > rule.entry_limit:
                raise InvalidArgument(f"{path}: {len(value)} bytes, more than the limit "
                                      f"of {rule.entry_limit}")
        elif t == _ENUM:
            if value not in rule.enum_values:
                raise InvalidArgument(f"{path}: {value} is not a value of "
                                      f"{rule.fd.enum_type.full_name}")
        elif t == _MESSAGE:
            assert rule.sub is not None
            self._walk(value, rule.sub, path + ".")
        elif t in INTEGER_TYPES:
            if value > rule.entry_limit:
                raise InvalidArgument(f"{path}: {value} is more than the limit of "
                                      f"{rule.entry_limit}")
            if value < 0:
                raise InvalidArgument(f"{path}: {value} is negative")


# ---------------------------------------------------------------- decoding

class Undecodable:
    """A request whose bytes did not parse; the gate refuses it with ``message``."""

    def __init__(self, message: str):
        self.message = message


def _varint(data: bytes, pos: int) -> tuple[int, int]:
    value = shift = 0
    while True:
        if pos >= len(data) or shift > 63:
            raise ValueError("truncated varint")
        b = data[pos]
        pos += 1
        value |= (b & 0x7F) << shift
        if not b & 0x80:
            return value, pos
        shift += 7


def find_invalid_utf8(data: bytes, d: Descriptor, prefix: str = "", depth: int = 0
                      ) -> str | None:
    """The path of the first string field in ``data`` (a serialized ``d``) that is not valid
    UTF-8, or None if none is or the bytes are malformed elsewhere."""
    if depth > 32:
        return None
    counts: dict[str, int] = {}
    pos = 0
    try:
        while pos < len(data):
            key, pos = _varint(data, pos)
            number, wire = key >> 3, key & 7
            if wire == 0:
                _, pos = _varint(data, pos)
            elif wire == 1:
                pos += 8
            elif wire == 5:
                pos += 4
            elif wire == 2:
                n, pos = _varint(data, pos)
                chunk = data[pos:pos + n]
                if len(chunk) != n:
                    return None
                pos += n
                f = d.fields_by_number.get(number)
                if f is None:
                    continue
                path = prefix + f.name
                if f.is_repeated:
                    i = counts.get(f.name, 0)
                    counts[f.name] = i + 1
                    path += f"[{i}]"
                if f.type == _STRING:
                    try:
                        chunk.decode("utf-8")
                    except UnicodeDecodeError:
                        return path
                elif f.type == _MESSAGE:
                    found = find_invalid_utf8(chunk, f.message_type, path + ".", depth + 1)
                    if found:
                        return found
            else:
                return None
    except ValueError:
        return None
    return None


def _describe(data: bytes, cls: Any) -> str:
    name = cls.DESCRIPTOR.full_name
    path = find_invalid_utf8(data, cls.DESCRIPTOR)
    if path is not None:
        return f"{path}: not valid UTF-8"
    return f"request: not a valid {name} message (truncated or malformed)"


def safe_deserializer(cls: Any) -> Callable[[bytes], Any]:
    """``cls.FromString`` that returns an :class:`Undecodable` instead of raising."""

    def parse(data: bytes) -> Any:
        try:
            return cls.FromString(data)
        except (DecodeError, RuntimeError, ValueError, TypeError):
            return Undecodable(_describe(data, cls))
    return parse


class SafeDecoding(grpc.ServerInterceptor):
    """Gives every signerd RPC the deserializer of :func:`safe_deserializer`."""

    def __init__(self) -> None:
        self._parsers = {f"/{PACKAGE}.{name}": safe_deserializer(pb_message(m.input_type))
                         for name, m in rpc_methods()}

    def intercept_service(self, continuation: Callable[[Any], Any],
                          handler_call_details: Any) -> Any:
        handler = continuation(handler_call_details)
        parse = self._parsers.get(handler_call_details.method)
        if handler is None or parse is None or not hasattr(handler, "_replace"):
            return handler
        return handler._replace(request_deserializer=parse)


def pb_message(d: Descriptor) -> Any:
    """The generated class of a signerd message descriptor."""
    return getattr(pb, d.name)
