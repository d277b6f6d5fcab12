"""The gRPC edge: mTLS principals, per-RPC authorization, limits, error mapping, metrics.

Servicers translate requests into calls on the application object and results back; no policy
or parsing logic lives here.
"""
from __future__ import annotations

import functools
import json
import logging
import os
import threading
import time
import uuid
from concurrent import futures
from typing import Any, Callable, Iterator

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection, reflection_pb2_grpc

from signerd.adapters import pki
from signerd.adapters.lifecycle import bind_error
from signerd.app import App
from signerd.core.errors import (InvalidArgument, PermissionDenied, ResourceExhausted, SignerError,
                                 Status, Unauthenticated, Unavailable, echo)
from signerd.core.model import Chain, Decision, OperatorStatus, Wallet, WalletStatus
from signerd.services.admin import AdminService, ImportRequest, import_seized_key
from signerd.services.backup import BackupService
from signerd.services.report import holdings_report
from signerd.services.transfers import FINAL
from signerd.services.wallets import WalletRequest
from . import convert as C
from . import validate
from ..v1 import signerd_pb2 as pb
from ..v1 import signerd_pb2_grpc as rpc

log = logging.getLogger("signerd.api")

STATUS_CODES = {s: getattr(grpc.StatusCode, s.value) for s in Status}

# Which principal kinds may call each RPC. Anything not listed is refused.
PLATFORM, OPERATOR, ADMIN, AUDITOR = "platform", "operator", "admin", "auditor"
ALLOWED: dict[str, frozenset[str]] = {
    "Custody/CreateWallet": frozenset({PLATFORM}),
    "Custody/CreateKeyShare": frozenset({PLATFORM}),
    "Custody/GetWallet": frozenset({PLATFORM, ADMIN}),
    "Custody/ListWallets": frozenset({PLATFORM, ADMIN}),
    "Custody/SubmitTransfer": frozenset({PLATFORM}),
    "Custody/GetTransfer": frozenset({PLATFORM}),
    "Custody/ListTransfers": frozenset({PLATFORM}),
    "Custody/WatchTransfer": frozenset({PLATFORM}),
    "Custody/CancelTransfer": frozenset({PLATFORM}),
    "Custody/CombinePsbt": frozenset({PLATFORM}),
    "Custody/CombineSafeSignature": frozenset({PLATFORM}),
    "Custody/GetSafeSignatures": frozenset({PLATFORM}),
    "Approval/ListPending": frozenset({OPERATOR}),
    "Approval/GetStatement": frozenset({OPERATOR}),
    "Approval/SubmitApproval": frozenset({OPERATOR}),
    # Acts that return a proposal may be put forward by an admin or an operator (who then
    # cannot approve it); they take effect only with the governance quorum.
    "Admin/RegisterOperator": frozenset({ADMIN, OPERATOR}),
    "Admin/RevokeOperator": frozenset({ADMIN, OPERATOR}),
    "Admin/SetOperatorRoles": frozenset({ADMIN, OPERATOR}),
    "Admin/ReinstateOperator": frozenset({ADMIN, OPERATOR}),
    "Admin/SuspendOperator": frozenset({ADMIN}),
    "Admin/ListOperators": frozenset({ADMIN}),
    "Admin/SetPolicy": frozenset({ADMIN, OPERATOR}),
    "Admin/GetPolicy": frozenset({ADMIN}),
    "Admin/PolicyHistory": frozenset({ADMIN}),
    "Admin/SetTemplate": frozenset({ADMIN, OPERATOR}),
    "Admin/ListTemplates": frozenset({ADMIN, PLATFORM}),
    "Admin/SetGovernance": frozenset({ADMIN, OPERATOR}),
    "Admin/FreezeWallet": frozenset({ADMIN}),
    "Admin/UnfreezeWallet": frozenset({ADMIN, OPERATOR}),
    "Admin/ImportKey": frozenset({ADMIN}),
    "Admin/KeyStatus": frozenset({ADMIN}),
    "Admin/SetToken": frozenset({ADMIN, OPERATOR}),
    "Admin/ProposeSafeOwners": frozenset({ADMIN, OPERATOR}),
    "Admin/ListTokens": frozenset({ADMIN, PLATFORM}),
    "Admin/SetChain": frozenset({ADMIN, OPERATOR}),
    "Admin/ListChains": frozenset({ADMIN, PLATFORM}),
    "Admin/RegisterBackupKey": frozenset({ADMIN, OPERATOR}),
    "Admin/ProposeBackup": frozenset({ADMIN, OPERATOR}),
    "Admin/GetBackupBundle": frozenset({ADMIN}),
    "Admin/BackupStatus": frozenset({ADMIN, AUDITOR}),
    "Governance/ListProposals": frozenset({ADMIN, OPERATOR, AUDITOR}),
    "Governance/GetProposal": frozenset({ADMIN, OPERATOR, AUDITOR, PLATFORM}),
    "Governance/GetProposalStatement": frozenset({OPERATOR}),
    "Governance/DecideProposal": frozenset({OPERATOR}),
    "Governance/CancelProposal": frozenset({ADMIN, OPERATOR}),
    "Governance/GetAuthority": frozenset({ADMIN, OPERATOR, AUDITOR}),
    "Audit/ListEvents": frozenset({AUDITOR}),
    "Audit/StreamEvents": frozenset({AUDITOR}),
    "Audit/GetHead": frozenset({AUDITOR}),
    "Audit/Export": frozenset({AUDITOR}),
    "Audit/Report": frozenset({AUDITOR}),
    # Proofs of control: asked for by the platform, an admin, an auditor or an operator (who
    # then cannot approve it), approved by operators' signatures, exported for publication.
    "Attestation/CreateAttestation": frozenset({PLATFORM, ADMIN, AUDITOR, OPERATOR}),
    "Attestation/GetAttestation": frozenset({PLATFORM, ADMIN, AUDITOR, OPERATOR}),
    "Attestation/ListAttestations": frozenset({PLATFORM, ADMIN, AUDITOR, OPERATOR}),
    "Attestation/GetAttestationStatement": frozenset({OPERATOR}),
    "Attestation/DecideAttestation": frozenset({OPERATOR}),
    "Attestation/ExportAttestation": frozenset({PLATFORM, ADMIN, AUDITOR, OPERATOR}),
    "Attestation/CombineAttestation": frozenset({PLATFORM, ADMIN, AUDITOR, OPERATOR}),
}
# Refusals by policy or custody state, counted by reason (a closed set of error reasons).
DENIAL_REASONS = frozenset({"POLICY_DENIED", "WALLET_FROZEN", "CONFLICT", "AUTHORITY_VIOLATION"})
PRINCIPAL_HEADER = "x-signerd-principal"  # insecure (plaintext) development mode only
CERT_CACHE_SIZE = 1024  # client certificates whose principal name is kept
STREAM_POOL_SPARE = 8  # stream-pool threads beyond [limits] max_streams: a refusal never waits


class Caller:
    def __init__(self, name: str, kind: str, status: OperatorStatus | None = None):
        self.name = name
        self.kind = kind
        self.status = status  # an operator's status in the authority ledger


class RateLimiter:
    """A token bucket per principal."""

    def __init__(self, rate: float, burst: int):
        self.rate, self.burst = rate, burst
        self._buckets: dict[str, tuple[float, float]] = {}
        self._lock = threading.Lock()

    def allow(self, who: str) -> bool:
        if self.rate <= 0:
            return True
        now = time.monotonic()
        with self._lock:
            tokens, last = self._buckets.get(who, (float(self.burst), now))
            tokens = min(float(self.burst), tokens + (now - last) * self.rate)
            if tokens < 1:
                self._buckets[who] = (tokens, now)
                return False
            self._buckets[who] = (tokens - 1, now)
            return True


class Gate:
    """Authentication, authorization, limits, error mapping and metrics around every RPC.

    Order: the TLS layer has verified the client certificate against the configured CA; the
    gate reads its principal, applies that principal's rate limit, then checks the RPC's
    allowed principal kinds, then the request's bounds (``validate.LIMITS``). Every
    PERMISSION_DENIED answer, whether the gate's or a service's
    (e.g. an approval under another operator's id), is counted by method in
    ``signerd_grpc_permission_denied_total`` and audited as ``rpc.denied``; the rate limit
    comes first, so denied calls cannot flood the audit chain.

    Server streams (WatchTransfer, StreamEvents, Export, and server reflection) never run on
    the [server] workers that answer unary calls: grpcio's sync server runs a handler on the
    executor its behaviour names (``experimental_thread_pool``), so each stream runs on the
    gate's own stream pool, and the gate keeps at most [limits] max_streams of them open, at
    most max_streams_per_principal per principal (RESOURCE_EXHAUSTED beyond). The pool has
    STREAM_POOL_SPARE threads more than max_streams, so a refused stream is answered at once.
    An open stream waits on the notifier in its own stream-pool thread: a stream costs a
    blocked thread, never a worker, so no number of streams delays a health check or an
    approval; when the call ends (cancelled, past its deadline, its client gone) the notifier
    wakes it, so the stream's place is given back at once.
    """

    def __init__(self, app: App, admin: AdminService):
        self.app = app
        self.admin = admin
        limits = app.config.limits
        self.limiter = RateLimiter(limits.rate_per_second, limits.rate_burst)
        self.insecure = app.config.server.insecure
        self.bounds = validate.Bounds(app.config.server.max_message_bytes)
        self._names: dict[bytes, tuple[str | None, str, int]] = {}
        self._names_lock = threading.Lock()
        self._revoked_path = app.config.server.revoked
        self._revoked_seen: tuple[int, ...] | None = None
        self._revoked = pki.Revocations()
        self._revoked_error = ""
        self._revoked_lock = threading.Lock()
        self.stream_pool = futures.ThreadPoolExecutor(
            max_workers=limits.max_streams + STREAM_POOL_SPARE, thread_name_prefix="stream")
        self._streams: dict[str, int] = {}  # open streams by principal
        self._streams_lock = threading.Lock()

    def identify(self, context: grpc.ServicerContext) -> Caller:
        """The caller's principal; its kind is "" when signerd does not know the name."""
        name: str | None = None
        if self.insecure:
            md = dict(context.invocation_metadata())
            name = md.get(PRINCIPAL_HEADER)
            if name is not None and not pki.is_valid_principal(name):
                name = None
        else:
            auth = context.auth_context()
            pems = auth.get("x509_pem_cert") or []
            if pems:
                name, fingerprint, serial = self._principal_of(pems[0])
                if name and self._revoked_path is not None and \
                        self._revocations().revoked(fingerprint, serial):
                    raise Unauthenticated(
                        f"client certificate sha256:{fingerprint} (principal {name}) is revoked: "
                        "listed in the revocation list ([server] revoked)", reason="CERT_REVOKED")
        if not name:
            raise Unauthenticated("no client identity: a client certificate naming a principal "
                                  "is required")
        kind = self.app.config.principals.get(name)
        status = None
        if kind is None:
            status = self.admin.operator_status(name)
            kind = OPERATOR if status is not None else ""
        return Caller(name, kind, status)

    def _principal_of(self, pem: bytes) -> tuple[str | None, str, int]:
        """The principal a client certificate names, with the certificate's SHA-256
        fingerprint and serial number. The TLS layer has verified the chain against the
        configured CA before any handler runs; what a given certificate names never changes,
        so the answer is kept (a bounded map). Whether the certificate is revoked, and whether
        that name is a known operator and its status, are asked on every call."""
        with self._names_lock:
            if pem in self._names:
                return self._names[pem]
        from cryptography import x509
        from cryptography.hazmat.primitives.serialization import Encoding

        try:
            cert = x509.load_pem_x509_certificate(pem)
            der = cert.public_bytes(Encoding.DER)
            found = (pki.principal_from_cert_der(der), pki.fingerprint(cert),
                     cert.serial_number)
        except ValueError:
            found = (None, "", 0)
        with self._names_lock:
            if len(self._names) >= CERT_CACHE_SIZE:
                self._names.pop(next(iter(self._names)))
            self._names[pem] = found
        return found

    def _revocations(self) -> pki.Revocations:
        """The revocation list as its file says now: read again whenever the file changes
        (one stat a call). While it cannot be read, no certificate is accepted."""
        assert self._revoked_path is not None
        try:
            st = os.stat(self._revoked_path)
            seen: tuple[int, ...] | None = (st.st_mtime_ns, st.st_ctime_ns, st.st_size,
                                             st.st_ino)
        except OSError:
            seen = None
        with self._revoked_lock:
            if seen is None or seen != self._revoked_seen:
                try:
                    self._revoked = pki.load_revocations(
                        self._revoked_path, "the revocation list ([server] revoked)")
                    self._revoked_error = ""
                except InvalidArgument as e:
                    if e.message != self._revoked_error:
                        log.error("%s (%s); no client certificate is accepted until it is "
                                  "fixed", e.message, self._revoked_path)
                    self._revoked_error = e.message
                self._revoked_seen = seen
            if self._revoked_error:
                raise Unavailable(f"{self._revoked_error}; no client certificate is accepted "
                                  "until it is fixed", reason="REVOCATION_LIST")
            return self._revoked

    def _admit(self, method: str, caller: Caller, authorize: bool = True) -> None:
        """Raise unless ``caller`` is within its rate limit and may call ``method`` (with
        ``authorize`` false, any principal may: server reflection)."""
        if not self.limiter.allow(caller.name):
            limits = self.app.config.limits
            raise ResourceExhausted(
                f"rate limit exceeded for principal {caller.name}: [limits] rate_per_second = "
                f"{limits.rate_per_second:g}, rate_burst = {limits.rate_burst}; retry later",
                reason="RATE_LIMITED")
        if caller.kind == OPERATOR and caller.status is not OperatorStatus.ACTIVE:
            status = caller.status.value if caller.status is not None else "unknown"
            raise PermissionDenied(
                f"operator {caller.name} is {status} in the authority ledger: a "
                f"{status} operator may call nothing",
                reason=f"OPERATOR_{status.upper()}")
        if not authorize:
            return
        if not caller.kind:
            raise PermissionDenied(f"principal {caller.name} is not known to this signerd")
        if caller.kind not in ALLOWED.get(method, frozenset()):
            raise PermissionDenied(f"{caller.kind} principal {caller.name} may not call {method}")

    def _open_stream(self, caller: Caller) -> None:
        """Count one more open stream of ``caller``; raise beyond the [limits] caps."""
        limits = self.app.config.limits
        with self._streams_lock:
            mine = self._streams.get(caller.name, 0)
            if mine >= limits.max_streams_per_principal:
                raise ResourceExhausted(
                    f"too many open streams for principal {caller.name}: {mine} open, "
                    f"[limits] max_streams_per_principal = {limits.max_streams_per_principal}; "
                    "close one or retry later", reason="STREAM_LIMIT")
            total = sum(self._streams.values())
            if total >= limits.max_streams:
                raise ResourceExhausted(
                    f"too many open streams on this signerd: {total} open, [limits] "
                    f"max_streams = {limits.max_streams}; retry later", reason="STREAM_LIMIT")
            self._streams[caller.name] = mine + 1

    def _close_stream(self, caller: Caller) -> None:
        with self._streams_lock:
            left = self._streams.pop(caller.name, 1) - 1
            if left > 0:
                self._streams[caller.name] = left

    def _denied(self, method: str, caller: Caller | None, err: SignerError) -> None:
        self.app.metrics.grpc_denied.labels(method).inc()
        if caller is None:
            return
        try:
            with self.app.store.transaction() as tx:
                tx.append_audit(caller.name, "rpc.denied", method,
                                {"kind": caller.kind, "reason": err.reason})
        except SignerError:
            self.app.metrics.audit_failures.inc()
        except Exception:  # the denial still goes out; the failed audit write is logged, counted
            log.exception("audit of a denied %s call failed", method)
            self.app.metrics.audit_failures.inc()

    def _fail(self, context: grpc.ServicerContext, method: str, caller: Caller | None,
              err: SignerError, rid: str, t0: float) -> None:
        """Log, count (and audit a denial), then abort the call with the error's status."""
        code = STATUS_CODES[err.status]
        if err.status is Status.PERMISSION_DENIED:
            self._denied(method, caller, err)
        if err.status is Status.FAILED_PRECONDITION and err.reason in DENIAL_REASONS:
            self.app.metrics.policy_denials.labels(err.reason.lower()).inc()
        log.info("rpc", extra={"rpc": method, "request_id": rid,
                               "principal": caller.name if caller else "?",
                               "code": err.status.value, "reason": err.reason,
                               "ms": round((time.perf_counter() - t0) * 1000, 2)})
        self.app.metrics.grpc_requests.labels(method, code.name).inc()
        context.set_trailing_metadata((("signerd-reason", err.reason),))
        context.abort(code, err.message)

    def _internal(self, context: grpc.ServicerContext, method: str, rid: str) -> None:
        log.exception("rpc %s failed unexpectedly", method, extra={"request_id": rid})
        self.app.metrics.grpc_requests.labels(method, "INTERNAL").inc()
        context.abort(grpc.StatusCode.INTERNAL,
                      f"internal error (request id {rid}); see the daemon log")

    def _ok(self, method: str, caller: Caller, rid: str, t0: float) -> None:
        self.app.metrics.grpc_requests.labels(method, "OK").inc()
        log.info("rpc", extra={"rpc": method, "request_id": rid, "principal": caller.name,
                               "code": "OK", "ms": round((time.perf_counter() - t0) * 1000, 2)})

    def unary(self, method: str) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
        def wrap(fn: Callable[..., Any]) -> Callable[..., Any]:
            @functools.wraps(fn)
            def handler(servicer: Any, request: Any, context: grpc.ServicerContext) -> Any:
                rid = uuid.uuid4().hex[:16]
                t0 = time.perf_counter()
                caller: Caller | None = None
                try:
                    caller = self.identify(context)
                    self._admit(method, caller)
                    self.bounds.check(request)
                    result = fn(servicer, request, context, caller)
                except SignerError as e:
                    self._fail(context, method, caller, e, rid, t0)
                    raise AssertionError("unreachable")  # abort raises
                except Exception:
                    self._internal(context, method, rid)
                    raise AssertionError("unreachable")
                self._ok(method, caller, rid, t0)
                return result
            return handler
        return wrap

    def stream(self, method: str, authorize: bool = True
               ) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
        def wrap(fn: Callable[..., Iterator[Any]]) -> Callable[..., Any]:
            @functools.wraps(fn)
            def handler(servicer: Any, request: Any, context: grpc.ServicerContext) -> Any:
                rid = uuid.uuid4().hex[:16]
                t0 = time.perf_counter()
                caller: Caller | None = None
                try:
                    caller = self.identify(context)
                    self._admit(method, caller, authorize)
                    if authorize:  # reflection's request is a stream of grpc's own messages
                        self.bounds.check(request)
                    self._open_stream(caller)
                    # A stream waiting on the notifier wakes when its call ends (a cancel, a
                    # deadline, a dropped client), so its place is free at once.
                    context.add_callback(self.app.notifier.poke)
                    try:
                        yield from fn(servicer, request, context, caller)
                    finally:
                        self._close_stream(caller)
                except SignerError as e:
                    self._fail(context, method, caller, e, rid, t0)
                    return
                except Exception:
                    self._internal(context, method, rid)
                    return
                self._ok(method, caller, rid, t0)
            # grpcio runs a handler on the executor its behaviour names: streams on their own.
            handler.experimental_thread_pool = self.stream_pool  # type: ignore[attr-defined]
            return handler
        return wrap


def page(p: pb.Page) -> tuple[str, int]:
    size = p.page_size or 100
    if size > 1000:
        raise InvalidArgument("page_size: at most 1000")
    return p.page_token, size


def operator_decision(req: Any, caller: Caller) -> Decision:
    """The decision of an operator's Submit/Decide request: the operator id must be the caller
    (the approval signature counts; the TLS identity only says who sends it)."""
    if req.operator_id != caller.name:
        raise PermissionDenied(
            f"operator_id {echo(req.operator_id)} does not match the caller {caller.name}")
    if req.decision not in (pb.APPROVE, pb.REJECT):
        raise InvalidArgument("decision: APPROVE or REJECT")
    return Decision.APPROVE if req.decision == pb.APPROVE else Decision.REJECT


def build_servicers(app: App, gate: Gate) -> dict[str, Any]:
    admin = gate.admin
    backups = BackupService(app)

    def shown_wallet(w: Wallet) -> pb.Wallet:
        """A wallet as GetWallet and ListWallets show it: while frozen, with the order that froze
        it (from the verified ledger, which reading the wallet brought up to date)."""
        state = app.ledger.cached
        if state is None or w.status is not WalletStatus.FROZEN:
            return C.wallet_pb(w)
        return C.wallet_pb(w, freeze_order=state.frozen.get(w.id, ""))

    class Custody(rpc.CustodyServicer):
        @gate.unary("Custody/CreateWallet")
        def CreateWallet(self, req: pb.CreateWalletRequest, ctx: Any, caller: Caller) -> pb.Wallet:
            w = app.wallets.create(caller.name, WalletRequest(
                chain=C.CHAIN_FROM_PB.get(req.chain, str(req.chain)), network=req.network,
                category=C.CATEGORY_FROM_PB.get(req.category, str(req.category)),
                case_ref=req.case_ref, legal_basis=req.legal_basis,
                chain_ids=tuple(req.chain_ids), script_type=C.SCRIPT_FROM_PB.get(req.script_type, ""),
                threshold=req.threshold, hsm_keys=req.hsm_keys, cosigners=tuple(req.cosigners),
                label=req.label, policy_toml=req.policy_toml, hsm_key_ids=tuple(req.hsm_key_ids),
                template=req.template, safe_address=req.safe_address,
                safe_setup=req.safe_setup))
            return C.wallet_pb(w)

        @gate.unary("Custody/CreateKeyShare")
        def CreateKeyShare(self, req: pb.CreateKeyShareRequest, ctx: Any, caller: Caller
                           ) -> pb.Key:
            k = app.wallets.create_key_share(caller.name,
                                             C.CATEGORY_FROM_PB.get(req.category, ""),
                                             req.case_ref)
            return pb.Key(key_id=k.key_id, label=k.label, public_key=k.public_key, hsm_held=True)

        @gate.unary("Custody/GetWallet")
        def GetWallet(self, req: pb.GetWalletRequest, ctx: Any, caller: Caller) -> pb.Wallet:
            return shown_wallet(app.wallets.get(req.wallet_id))

        @gate.unary("Custody/ListWallets")
        def ListWallets(self, req: pb.ListWalletsRequest, ctx: Any, caller: Caller
                        ) -> pb.ListWalletsResponse:
            after, size = page(req.page)
            ws = app.wallets.list(category=C.CATEGORY_FROM_PB.get(req.category, ""),
                                  case_ref=req.case_ref, after=after, limit=size)
            return pb.ListWalletsResponse(
                wallets=[shown_wallet(w) for w in ws],
                next_page_token=ws[-1].id if len(ws) == size else "")

        @gate.unary("Custody/SubmitTransfer")
        def SubmitTransfer(self, req: pb.SubmitTransferRequest, ctx: Any, caller: Caller
                           ) -> pb.Transfer:
            kind = req.WhichOneof("tx")
            if kind is None:
                raise InvalidArgument("tx: a psbt, an ethereum, a tron transaction or a safe_tx "
                                      "is required")
            payload = (req.psbt if kind == "psbt" else req.tron.json.encode() if kind == "tron"
                       else req.safe_tx.encode() if kind == "safe_tx"
                       else req.ethereum.json.encode())
            chain = {"psbt": Chain.BITCOIN, "tron": Chain.TRON}.get(kind, Chain.ETHEREUM)
            v = app.transfers.submit(caller.name, req.wallet_id, payload, replaces=req.replaces,
                                     legal_basis=req.legal_basis,
                                     category_change=req.category_change,
                                     idempotency_key=req.idempotency_key,
                                     chain=chain,
                                     safe_tx=None if kind in ("psbt", "tron") else kind == "safe_tx")
            return C.transfer_pb(v)

        @gate.unary("Custody/GetTransfer")
        def GetTransfer(self, req: pb.GetTransferRequest, ctx: Any, caller: Caller) -> pb.Transfer:
            return C.transfer_pb(app.transfers.get(req.transfer_id))

        @gate.unary("Custody/ListTransfers")
        def ListTransfers(self, req: pb.ListTransfersRequest, ctx: Any, caller: Caller
                          ) -> pb.ListTransfersResponse:
            after, size = page(req.page)
            vs = app.transfers.list(wallet_id=req.wallet_id, state=C.state_from_pb(req.state),
                                    after=after, limit=size)
            return pb.ListTransfersResponse(transfers=[C.transfer_pb(v) for v in vs],
                                            next_page_token=vs[-1].id if len(vs) == size else "")

        @gate.stream("Custody/WatchTransfer")
        def WatchTransfer(self, req: pb.WatchTransferRequest, ctx: Any, caller: Caller
                          ) -> Iterator[pb.Transfer]:
            last = None
            seen = -1
            while ctx.is_active():
                seen = app.notifier.wait(seen, 1.0, ctx.is_active)
                v = app.transfers.get(req.transfer_id)
                key = (v.state, len(v.approvals), v.transfer.updated_at)
                if key != last:
                    last = key
                    yield C.transfer_pb(v)
                if v.state in FINAL:
                    return

        @gate.unary("Custody/CancelTransfer")
        def CancelTransfer(self, req: pb.CancelTransferRequest, ctx: Any, caller: Caller
                           ) -> pb.Transfer:
            return C.transfer_pb(app.transfers.cancel(caller.name, req.transfer_id, req.reason))

        @gate.unary("Custody/CombinePsbt")
        def CombinePsbt(self, req: pb.CombinePsbtRequest, ctx: Any, caller: Caller) -> pb.Transfer:
            return C.transfer_pb(app.transfers.combine_psbt(caller.name, req.transfer_id, req.psbt))

        @gate.unary("Custody/CombineSafeSignature")
        def CombineSafeSignature(self, req: pb.CombineSafeSignatureRequest, ctx: Any,
                                 caller: Caller) -> pb.SafeSignatures:
            return C.safe_signatures_pb(app.transfers.combine_safe(
                caller.name, req.transfer_id, req.owner, bytes(req.signature)))

        @gate.unary("Custody/GetSafeSignatures")
        def GetSafeSignatures(self, req: pb.GetTransferRequest, ctx: Any, caller: Caller
                              ) -> pb.SafeSignatures:
            return C.safe_signatures_pb(app.transfers.safe_result(req.transfer_id))

    class Approval(rpc.ApprovalServicer):
        @gate.unary("Approval/ListPending")
        def ListPending(self, req: pb.ListPendingRequest, ctx: Any, caller: Caller
                        ) -> pb.ListTransfersResponse:
            after, size = page(req.page)
            vs = app.transfers.pending_for(caller.name, after=after, limit=size)
            return pb.ListTransfersResponse(transfers=[C.transfer_pb(v) for v in vs])

        @gate.unary("Approval/GetStatement")
        def GetStatement(self, req: pb.GetStatementRequest, ctx: Any, caller: Caller
                         ) -> pb.Statement:
            decision = Decision.REJECT if req.decision == pb.REJECT else Decision.APPROVE
            sp = app.transfers.statement_package(req.transfer_id, decision)
            return pb.Statement(
                transfer=C.transfer_pb(sp.view), wallet=C.wallet_pb(sp.wallet),
                statement=sp.statement, rendered=sp.rendered,
                own_addresses=sorted(a for a, d in sp.destinations.items() if d.own),
                allowlist=sp.allowlist,
                destinations=[pb.Destination(address=a, wallet_id=d.wallet_id,
                                             category=d.category, own=d.own)
                              for a, d in sorted(sp.destinations.items())],
                tokens=[C.token_pb(t) for t in sp.view.movement.tokens],
                native=(C.evm_chain_pb(sp.view.movement.native)
                        if sp.view.movement.native is not None else None))

        @gate.unary("Approval/SubmitApproval")
        def SubmitApproval(self, req: pb.SubmitApprovalRequest, ctx: Any, caller: Caller
                           ) -> pb.Transfer:
            decision = operator_decision(req, caller)
            v = app.transfers.decide(caller.name, req.transfer_id, req.operator_id, decision,
                                     req.signature, reason=req.reason,
                                     statement_sha256=req.statement_sha256)
            return C.transfer_pb(v)

    class Admin(rpc.AdminServicer):
        @gate.unary("Admin/RegisterOperator")
        def RegisterOperator(self, req: pb.RegisterOperatorRequest, ctx: Any, caller: Caller
                             ) -> pb.Proposal:
            return C.proposal_pb(admin.register_operator(caller.name, req.id, list(req.roles),
                                                         req.public_key_pem, req.token_held))

        @gate.unary("Admin/RevokeOperator")
        def RevokeOperator(self, req: pb.RevokeOperatorRequest, ctx: Any, caller: Caller
                           ) -> pb.Proposal:
            return C.proposal_pb(admin.revoke_operator(caller.name, req.id, req.reason))

        @gate.unary("Admin/SetOperatorRoles")
        def SetOperatorRoles(self, req: pb.SetOperatorRolesRequest, ctx: Any, caller: Caller
                             ) -> pb.Proposal:
            return C.proposal_pb(admin.set_roles(caller.name, req.id, list(req.roles)))

        @gate.unary("Admin/ReinstateOperator")
        def ReinstateOperator(self, req: pb.RevokeOperatorRequest, ctx: Any, caller: Caller
                              ) -> pb.Proposal:
            return C.proposal_pb(admin.reinstate_operator(caller.name, req.id, req.reason))

        @gate.unary("Admin/SuspendOperator")
        def SuspendOperator(self, req: pb.RevokeOperatorRequest, ctx: Any, caller: Caller
                            ) -> pb.Operator:
            return C.operator_pb(admin.suspend_operator(caller.name, req.id, req.reason))

        @gate.unary("Admin/ListOperators")
        def ListOperators(self, req: Any, ctx: Any, caller: Caller) -> pb.ListOperatorsResponse:
            return pb.ListOperatorsResponse(
                operators=[C.operator_pb(o) for o in admin.list_operators()])

        @gate.unary("Admin/SetPolicy")
        def SetPolicy(self, req: pb.SetPolicyRequest, ctx: Any, caller: Caller) -> pb.Proposal:
            return C.proposal_pb(admin.set_policy(caller.name, req.wallet_id, req.toml,
                                                  req.template))

        @gate.unary("Admin/GetPolicy")
        def GetPolicy(self, req: pb.GetPolicyRequest, ctx: Any, caller: Caller
                      ) -> pb.PolicyVersion:
            return C.policy_pb(admin.get_policy(req.wallet_id))

        @gate.unary("Admin/PolicyHistory")
        def PolicyHistory(self, req: pb.GetPolicyRequest, ctx: Any, caller: Caller
                          ) -> pb.PolicyHistoryResponse:
            return pb.PolicyHistoryResponse(
                versions=[C.policy_pb(p) for p in admin.policy_history(req.wallet_id)])

        @gate.unary("Admin/SetTemplate")
        def SetTemplate(self, req: pb.SetTemplateRequest, ctx: Any, caller: Caller
                        ) -> pb.Proposal:
            return C.proposal_pb(admin.set_template(caller.name, req.name, req.toml))

        @gate.unary("Admin/ListTemplates")
        def ListTemplates(self, req: Any, ctx: Any, caller: Caller) -> pb.ListTemplatesResponse:
            return pb.ListTemplatesResponse(templates=[
                pb.Template(name=t.name, version=t.version, sha256=t.sha256, toml=text)
                for t, text in admin.templates()])

        @gate.unary("Admin/SetGovernance")
        def SetGovernance(self, req: pb.SetGovernanceRequest, ctx: Any, caller: Caller
                          ) -> pb.Proposal:
            return C.proposal_pb(admin.set_governance(caller.name, req.toml))

        @gate.unary("Admin/FreezeWallet")
        def FreezeWallet(self, req: pb.FreezeWalletRequest, ctx: Any, caller: Caller) -> pb.Wallet:
            admin.freeze(caller.name, req.wallet_id, req.order_ref)
            # As GetWallet shows it (its policy version from the ledger), frozen.
            return C.wallet_pb(app.wallets.get(req.wallet_id),
                               freeze_order=req.order_ref.strip())

        @gate.unary("Admin/UnfreezeWallet")
        def UnfreezeWallet(self, req: pb.FreezeWalletRequest, ctx: Any, caller: Caller
                           ) -> pb.Proposal:
            return C.proposal_pb(admin.unfreeze(caller.name, req.wallet_id, req.order_ref))

        @gate.unary("Admin/ImportKey")
        def ImportKey(self, req: pb.ImportKeyRequest, ctx: Any, caller: Caller) -> pb.Proposal:
            kind = req.WhichOneof("secret") or ""
            return C.proposal_pb(import_seized_key(app, caller.name, ImportRequest(
                kind=kind, secret=getattr(req, kind) if kind else "",
                derivation_path=req.derivation_path, passphrase=req.passphrase,
                chain=C.CHAIN_FROM_PB.get(req.chain, ""), network=req.network,
                chain_ids=tuple(req.chain_ids), script_type=C.SCRIPT_FROM_PB.get(req.script_type, ""),
                case_ref=req.case_ref, seizure_record=req.seizure_record,
                legal_basis=req.legal_basis, policy_toml=req.policy_toml,
                template=req.template)))

        @gate.unary("Admin/SetToken")
        def SetToken(self, req: pb.SetTokenRequest, ctx: Any, caller: Caller) -> pb.Proposal:
            return C.proposal_pb(admin.set_token(
                caller.name, chain_id=req.chain_id, address=req.address, symbol=req.symbol,
                decimals=req.decimals, standard=req.standard or "erc20"))

        @gate.unary("Admin/ProposeSafeOwners")
        def ProposeSafeOwners(self, req: pb.ProposeSafeOwnersRequest, ctx: Any, caller: Caller
                              ) -> pb.Proposal:
            return C.proposal_pb(app.transfers.propose_safe_owners(caller.name, req.transfer_id))

        @gate.unary("Admin/ListTokens")
        def ListTokens(self, req: pb.ListTokensRequest, ctx: Any, caller: Caller
                       ) -> pb.ListTokensResponse:
            return pb.ListTokensResponse(tokens=[C.token_pb(t)
                                                 for t in admin.tokens(req.chain_id)])

        @gate.unary("Admin/SetChain")
        def SetChain(self, req: pb.SetChainRequest, ctx: Any, caller: Caller) -> pb.Proposal:
            return C.proposal_pb(admin.set_chain(
                caller.name, chain_id=req.chain_id, name=req.name, symbol=req.symbol,
                decimals=req.decimals))

        @gate.unary("Admin/ListChains")
        def ListChains(self, req: pb.ListChainsRequest, ctx: Any, caller: Caller
                       ) -> pb.ListChainsResponse:
            return pb.ListChainsResponse(chains=[C.evm_chain_pb(c)
                                                 for c in admin.chains(req.chain_id)])

        @gate.unary("Admin/KeyStatus")
        def KeyStatus(self, req: Any, ctx: Any, caller: Caller) -> pb.KeyStatusResponse:
            ks = app.keystore
            count = len(ks.list_keys()) if ks.up else 0
            return pb.KeyStatusResponse(hsm_up=ks.up, token_label=ks.selector.get("token", ""),
                                        module=ks.module, key_count=count,
                                        concurrency=ks.concurrency, manufacturer=ks.manufacturer,
                                        model=ks.model)

        @gate.unary("Admin/RegisterBackupKey")
        def RegisterBackupKey(self, req: pb.RegisterBackupKeyRequest, ctx: Any, caller: Caller
                              ) -> pb.Proposal:
            return C.proposal_pb(backups.register_key(caller.name, req.ceremony))

        @gate.unary("Admin/ProposeBackup")
        def ProposeBackup(self, req: pb.ProposeBackupRequest, ctx: Any, caller: Caller
                          ) -> pb.Proposal:
            return C.proposal_pb(backups.propose(caller.name, req.ceremony_id))

        @gate.unary("Admin/GetBackupBundle")
        def GetBackupBundle(self, req: pb.GetBackupBundleRequest, ctx: Any, caller: Caller
                            ) -> pb.BackupBundle:
            made = backups.bundle(caller.name, req.proposal_id)
            return pb.BackupBundle(bundle=made.bundle, digest=made.digest, keys=made.keys,
                                   not_backed_up=[k["key_id"] for k in made.not_backed_up])

        @gate.unary("Admin/BackupStatus")
        def BackupStatus(self, req: Any, ctx: Any, caller: Caller) -> pb.BackupStatusResponse:
            return pb.BackupStatusResponse(document=json.dumps(backups.status(), sort_keys=True))

    class Governance(rpc.GovernanceServicer):
        @gate.unary("Governance/ListProposals")
        def ListProposals(self, req: pb.ListProposalsRequest, ctx: Any, caller: Caller
                          ) -> pb.ListProposalsResponse:
            after, size = page(req.page)
            vs = app.proposals.list(state=req.state, after=after, limit=size)
            return pb.ListProposalsResponse(
                proposals=[C.proposal_pb(v) for v in vs],
                next_page_token=vs[-1].id if len(vs) == size else "")

        @gate.unary("Governance/GetProposal")
        def GetProposal(self, req: pb.GetProposalRequest, ctx: Any, caller: Caller
                        ) -> pb.Proposal:
            return C.proposal_pb(app.proposals.get(req.proposal_id))

        @gate.unary("Governance/GetProposalStatement")
        def GetProposalStatement(self, req: pb.GetProposalStatementRequest, ctx: Any,
                                 caller: Caller) -> pb.ProposalStatement:
            decision = Decision.REJECT if req.decision == pb.REJECT else Decision.APPROVE
            statement, rendered, view = app.proposals.statement(req.proposal_id, decision)
            return pb.ProposalStatement(proposal=C.proposal_pb(view), statement=statement,
                                        rendered=rendered)

        @gate.unary("Governance/DecideProposal")
        def DecideProposal(self, req: pb.DecideProposalRequest, ctx: Any, caller: Caller
                           ) -> pb.Proposal:
            decision = operator_decision(req, caller)
            return C.proposal_pb(app.proposals.decide(
                caller.name, req.proposal_id, req.operator_id, decision, req.signature,
                reason=req.reason, statement_sha256=req.statement_sha256))

        @gate.unary("Governance/CancelProposal")
        def CancelProposal(self, req: pb.CancelProposalRequest, ctx: Any, caller: Caller
                           ) -> pb.Proposal:
            return C.proposal_pb(app.proposals.cancel(caller.name, req.proposal_id, req.reason))

        @gate.unary("Governance/GetAuthority")
        def GetAuthority(self, req: Any, ctx: Any, caller: Caller) -> pb.Authority:
            st = admin.authority()
            return pb.Authority(
                instance_id=st.instance_id, genesis=st.genesis, seq=st.seq, head=st.head,
                governance_toml=st.governance_text,
                templates=[pb.Template(name=t.name, version=t.version, sha256=t.sha256,
                                       toml=st.texts[t.sha256])
                           for t in sorted(st.templates.values(), key=lambda t: t.name)],
                operators=[C.operator_pb(o) for o in admin.list_operators()],
                frozen=[pb.FrozenWallet(wallet_id=w, order_ref=o)
                        for w, o in sorted(st.frozen.items())],
                audit_public_key=st.audit_public_key)

    class Audit(rpc.AuditServicer):
        @gate.unary("Audit/ListEvents")
        def ListEvents(self, req: pb.ListEventsRequest, ctx: Any, caller: Caller
                       ) -> pb.ListEventsResponse:
            limit = req.limit or 100
            if limit > 1000:
                raise InvalidArgument("limit: at most 1000")
            with app.store.read() as tx:
                evs = tx.audit_events(req.after_seq, limit)
            return pb.ListEventsResponse(events=[event_pb(e) for e in evs])

        @gate.stream("Audit/StreamEvents")
        def StreamEvents(self, req: pb.StreamEventsRequest, ctx: Any, caller: Caller
                         ) -> Iterator[pb.AuditEvent]:
            after = req.after_seq
            seen = -1
            while ctx.is_active():
                with app.store.read() as tx:
                    evs = tx.audit_events(after, 500)
                for e in evs:
                    yield event_pb(e)
                    after = e.seq
                if not evs and not req.follow:
                    return
                if not evs:
                    seen = app.notifier.wait(seen, 1.0, ctx.is_active)

        @gate.unary("Audit/GetHead")
        def GetHead(self, req: Any, ctx: Any, caller: Caller) -> pb.AuditHead:
            return C.audit_head_pb(app.audit_head())

        @gate.stream("Audit/Export")
        def Export(self, req: Any, ctx: Any, caller: Caller) -> Iterator[pb.ExportChunk]:
            chunk: list[bytes] = []
            size = 0
            for line in app.audit_export():
                chunk.append(line)
                size += len(line)
                if size >= 1 << 20:
                    yield pb.ExportChunk(data=b"".join(chunk))
                    chunk, size = [], 0
            if chunk:
                yield pb.ExportChunk(data=b"".join(chunk))

        @gate.unary("Audit/Report")
        def Report(self, req: pb.ReportRequest, ctx: Any, caller: Caller) -> pb.ReportResponse:
            with app.store.read() as tx:
                doc = holdings_report(tx, app.ledger.state(tx), instance_id=app.instance_id,
                                      category=C.CATEGORY_FROM_PB.get(req.category, ""),
                                      case_ref=req.case_ref)
            return pb.ReportResponse(json=json.dumps(doc, sort_keys=True))

    class Attestation(rpc.AttestationServicer):
        def _json(self, doc: Any) -> pb.AttestationResponse:
            return pb.AttestationResponse(json=json.dumps(doc, sort_keys=True))

        @gate.unary("Attestation/CreateAttestation")
        def CreateAttestation(self, req: pb.CreateAttestationRequest, ctx: Any, caller: Caller
                              ) -> pb.AttestationResponse:
            return self._json(app.attestations.create(
                caller.name, category=C.CATEGORY_FROM_PB.get(req.category, ""),
                case_ref=req.case_ref, challenge=req.challenge, issuer=req.issuer,
                since=req.since))

        @gate.unary("Attestation/GetAttestation")
        def GetAttestation(self, req: pb.GetAttestationRequest, ctx: Any, caller: Caller
                           ) -> pb.AttestationResponse:
            return self._json(app.attestations.get(req.attestation_id))

        @gate.unary("Attestation/ListAttestations")
        def ListAttestations(self, req: pb.ListAttestationsRequest, ctx: Any, caller: Caller
                             ) -> pb.AttestationResponse:
            after, size = page(req.page)
            return self._json({"attestations": app.attestations.list(
                state=req.state, after=after, limit=size)})

        @gate.unary("Attestation/GetAttestationStatement")
        def GetAttestationStatement(self, req: pb.GetAttestationStatementRequest, ctx: Any,
                                    caller: Caller) -> pb.AttestationStatement:
            decision = Decision.REJECT if req.decision == pb.REJECT else Decision.APPROVE
            statement, rendered, view = app.attestations.statement(req.attestation_id, decision)
            return pb.AttestationStatement(statement=statement, rendered=rendered,
                                           json=json.dumps(view, sort_keys=True))

        @gate.unary("Attestation/DecideAttestation")
        def DecideAttestation(self, req: pb.DecideAttestationRequest, ctx: Any, caller: Caller
                              ) -> pb.AttestationResponse:
            decision = operator_decision(req, caller)
            return self._json(app.attestations.decide(
                caller.name, req.attestation_id, req.operator_id, decision, req.signature,
                reason=req.reason, statement_sha256=req.statement_sha256))

        @gate.unary("Attestation/ExportAttestation")
        def ExportAttestation(self, req: pb.GetAttestationRequest, ctx: Any, caller: Caller
                              ) -> pb.AttestationResponse:
            return pb.AttestationResponse(json=app.attestations.export(req.attestation_id)
                                          .decode())

        @gate.unary("Attestation/CombineAttestation")
        def CombineAttestation(self, req: pb.CombineAttestationRequest, ctx: Any,
                               caller: Caller) -> pb.AttestationResponse:
            return self._json(app.attestations.combine(caller.name, req.attestation_id,
                                                       req.psbt))

    return {"Custody": Custody(), "Approval": Approval(), "Admin": Admin(),
            "Governance": Governance(), "Audit": Audit(), "Attestation": Attestation()}


def event_pb(e: Any) -> pb.AuditEvent:
    return pb.AuditEvent(seq=e.seq, time_micros=e.time, actor=e.actor, action=e.action,
                         object=e.object, details_json=C.json_details(e.details),
                         prev_hash=e.prev_hash, hash=e.hash)


def build_server(app: App) -> tuple[grpc.Server, health.HealthServicer, int]:
    cfg = app.config.server
    options = [("grpc.max_receive_message_length", cfg.max_message_bytes),
               ("grpc.max_send_message_length", max(cfg.max_message_bytes, 16 << 20)),
               ("grpc.so_reuseport", 0)]  # a second process on the port fails to bind
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=cfg.workers), options=options,
                         interceptors=[validate.SafeDecoding()])
    admin = AdminService(app)
    gate = Gate(app, admin)
    s = build_servicers(app, gate)
    rpc.add_CustodyServicer_to_server(s["Custody"], server)
    rpc.add_ApprovalServicer_to_server(s["Approval"], server)
    rpc.add_AdminServicer_to_server(s["Admin"], server)
    rpc.add_GovernanceServicer_to_server(s["Governance"], server)
    rpc.add_AuditServicer_to_server(s["Audit"], server)
    rpc.add_AttestationServicer_to_server(s["Attestation"], server)
    health_servicer = health.HealthServicer(experimental_non_blocking=True)
    health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)
    names = [pb.DESCRIPTOR.services_by_name[n].full_name
             for n in ("Custody", "Approval", "Admin", "Governance", "Audit", "Attestation")]

    class Reflection(reflection.ReflectionServicer):
        """Server reflection, for any authenticated principal as before; being a stream, it
        runs on the stream pool within the stream caps."""

        @gate.stream("ServerReflection/ServerReflectionInfo", authorize=False)
        def ServerReflectionInfo(self, requests: Any, ctx: Any, caller: Caller) -> Any:
            yield from reflection.ReflectionServicer.ServerReflectionInfo(self, requests, ctx)

    reflection_pb2_grpc.add_ServerReflectionServicer_to_server(
        Reflection(names + [health.SERVICE_NAME, reflection.SERVICE_NAME]), server)

    def publish(ok: bool) -> None:
        status = (health_pb2.HealthCheckResponse.SERVING if ok
                  else health_pb2.HealthCheckResponse.NOT_SERVING)
        for name in [""] + names:
            health_servicer.set(name, status)

    app.on_health(publish)
    publish(app.healthy())
    try:
        if cfg.insecure:
            port = server.add_insecure_port(cfg.listen)
        else:
            assert cfg.tls_cert and cfg.tls_key and cfg.client_ca
            creds = grpc.ssl_server_credentials(
                [(cfg.tls_key.read_bytes(), cfg.tls_cert.read_bytes())],
                root_certificates=cfg.client_ca.read_bytes(), require_client_auth=True)
            port = server.add_secure_port(cfg.listen, creds)
    except RuntimeError:  # grpcio: "Failed to bind to address ..."
        port = 0
    if port == 0:
        raise bind_error("gRPC", cfg.listen)
    return server, health_servicer, port

