"""The access matrix: every RPC of every service, which principals may call it, and a raw call
of a method by name over a channel of a chosen client certificate."""
from __future__ import annotations

from typing import Any

import grpc

from tests.support.daemon import Daemon
from tests.support.rpc import pb, rpc

SERVICES = ("Custody", "Approval", "Admin", "Governance", "Audit", "Attestation")


# Design §6 and §11: each service for its principals; admins may also read wallets. Acts that
# need the governance quorum may be proposed by an admin or an operator (who then cannot count
# toward it); acts that only tighten (freeze, suspend) and reads are the admin's.
EXPECTED: dict[str, set[str]] = {
    **{f"Custody/{m}": {"platform"} for m in (
        "CreateWallet", "CreateKeyShare", "SubmitTransfer", "GetTransfer", "ListTransfers",
        "WatchTransfer", "CancelTransfer", "CombinePsbt", "CombineSafeSignature",
        "GetSafeSignatures")},
    "Custody/GetWallet": {"platform", "admin"},
    "Custody/ListWallets": {"platform", "admin"},
    **{f"Approval/{m}": {"operator"} for m in ("ListPending", "GetStatement", "SubmitApproval")},
    **{f"Admin/{m}": {"admin"} for m in (
        "ListOperators", "GetPolicy", "PolicyHistory", "FreezeWallet", "SuspendOperator",
        "ImportKey", "KeyStatus")},
    **{f"Admin/{m}": {"admin", "operator"} for m in (
        "RegisterOperator", "RevokeOperator", "SetOperatorRoles", "ReinstateOperator",
        "SetPolicy", "SetTemplate", "SetGovernance", "UnfreezeWallet", "SetToken",
        "SetChain", "ProposeSafeOwners")},
    "Admin/ListTemplates": {"admin", "platform"},
    "Admin/ListTokens": {"admin", "platform"},
    "Admin/ListChains": {"admin", "platform"},
    # The key backup: a backup key and a backup are proposals; a bundle is the admin's to fetch.
    "Admin/RegisterBackupKey": {"admin", "operator"},
    "Admin/ProposeBackup": {"admin", "operator"},
    "Admin/GetBackupBundle": {"admin"},
    "Admin/BackupStatus": {"admin", "auditor"},
    **{f"Governance/{m}": {"admin", "operator", "auditor"} for m in (
        "ListProposals", "GetAuthority")},
    "Governance/GetProposal": {"admin", "operator", "auditor", "platform"},
    **{f"Governance/{m}": {"operator"} for m in ("GetProposalStatement", "DecideProposal")},
    "Governance/CancelProposal": {"admin", "operator"},
    **{f"Audit/{m}": {"auditor"} for m in ("ListEvents", "StreamEvents", "GetHead", "Export",
                                           "Report")},
    # Proofs of control: anyone may ask for one and read it; only operators decide.
    **{f"Attestation/{m}": {"platform", "admin", "auditor", "operator"} for m in (
        "CreateAttestation", "GetAttestation", "ListAttestations", "ExportAttestation",
        "CombineAttestation")},
    **{f"Attestation/{m}": {"operator"} for m in ("GetAttestationStatement",
                                                  "DecideAttestation")},
}


def methods() -> list[tuple[str, Any]]:
    out = []
    for svc in SERVICES:
        for m in pb.DESCRIPTOR.services_by_name[svc].methods:
            out.append((f"{svc}/{m.name}", m))
    return out


METHODS = methods()


def call(channel: grpc.Channel, method: str, desc: Any, principal: str = "",
         timeout: float = 10) -> grpc.StatusCode:
    """Call ``method`` with an empty request; the status code it ends with."""
    svc, name = method.split("/")
    stub = getattr(rpc, f"{svc}Stub")(channel)
    req = getattr(pb, desc.input_type.name)()
    if method in ("Approval/SubmitApproval", "Governance/DecideProposal",
                  "Attestation/DecideAttestation"):
        req.operator_id = principal  # the gate, not the operator-id check, must decide
    try:
        if desc.server_streaming:
            list(getattr(stub, name)(req, timeout=timeout))
        else:
            getattr(stub, name)(req, timeout=timeout)
    except grpc.RpcError as e:
        return e.code()
    return grpc.StatusCode.OK


def details(channel: grpc.Channel, method: str, desc: Any, principal: str = "") -> str:
    svc, name = method.split("/")
    stub = getattr(rpc, f"{svc}Stub")(channel)
    req = getattr(pb, desc.input_type.name)()
    if method in ("Approval/SubmitApproval", "Governance/DecideProposal",
                  "Attestation/DecideAttestation"):
        req.operator_id = principal
    try:
        r = getattr(stub, name)(req, timeout=10)
        list(r) if desc.server_streaming else None
    except grpc.RpcError as e:
        return e.details() or ""
    return ""


def channel_with(d: Daemon, key: bytes | None, cert: bytes | None,
                 root: bytes | None = None) -> grpc.Channel:
    creds = grpc.ssl_channel_credentials(
        root_certificates=root or (d.state / "pki" / "ca.pem").read_bytes(),
        private_key=key, certificate_chain=cert)
    return grpc.secure_channel(f"127.0.0.1:{d.port}", creds,
                               options=[("grpc.ssl_target_name_override", "localhost")])
