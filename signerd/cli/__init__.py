"""signerctl: the command line through which people and scripts drive signerd (DESIGN §10).

A client of the gRPC API only. Every command takes ``--json`` (one JSON document on stdout)
and fails with exit status 1 (2 for a usage error) and one line ``signerctl: <reason>`` on
stderr. Approve and reject never trust the daemon's description of a transfer: they decode the
raw transaction here, rebuild the approval statement from it and the transfer's metadata, refuse
when the daemon's statement differs, show the person the rebuilt statement and sign only that.
Secrets (operator keys, seized keys, mnemonics, passphrases) are read from files, never from
the command line, and never printed.
"""
from __future__ import annotations

import argparse
import getpass
import hashlib
import ipaddress
import json
import os
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import datetime, timezone
from functools import cached_property
from pathlib import Path
from typing import Any, NoReturn, TextIO

import grpc
from google.protobuf.descriptor import FieldDescriptor
from google.protobuf.message import Message

from signerd import approval, audit, config as config_mod, operator_keys
from signerd.approval import format_amount, safe_text
from signerd.config import Config, Limits
from signerd.errors import InvalidArgument, SignerError
from signerd.model import (Category, Chain, Decision, KeyRef, Movement, ScriptType, Token,
                           Wallet, WalletStatus)
from signerd.pki import is_valid_principal
from signerd.policy import CATEGORY_CHANGES, SIGHASH_TYPES
from signerd.tokens import lookup as lookup_token
from signerd.tokens import make_token, token_from_json, token_json
from signerd.v1 import signerd_pb2 as pb
from signerd.v1 import signerd_pb2_grpc as rpc

PROG = "signerctl"
DEFAULT_CONFIG = Path("signerd-state") / "signerd.toml"
SERVICE_PRINCIPALS = frozenset({"platform", "admin", "auditor"})
FINAL_STATES = frozenset({pb.SIGNED, pb.REJECTED, pb.EXPIRED, pb.CANCELLED, pb.FAILED})
MAX_RECEIVE_BYTES = 256 * 1024 * 1024
MAX_INPUT_FILE = 64 * 1024 * 1024
MAX_PAGES = 100_000
MISMATCH = "the daemon's statement does not match the transaction"
LABEL_WIDTH = 18

CHAINS = {"bitcoin": pb.BITCOIN, "ethereum": pb.ETHEREUM}
CATEGORIES = {"seized": pb.SEIZED, "confiscated": pb.CONFISCATED, "strategic": pb.STRATEGIC}
SCRIPT_TYPES = {"p2wpkh": pb.P2WPKH, "p2sh-p2wpkh": pb.P2SH_P2WPKH,
                "p2wsh-sortedmulti": pb.P2WSH_SORTEDMULTI, "eoa": pb.EOA}
STATES = [n for n in pb.TransferState.keys() if not n.endswith("UNSPECIFIED")]


class CliError(Exception):
    """A failure to report as one line; ``status`` is the process exit status."""

    def __init__(self, message: str, status: int = 1, doc: dict[str, Any] | None = None):
        super().__init__(message)
        self.status = status
        self.doc = doc


class UsageError(CliError):
    def __init__(self, message: str):
        super().__init__(message, status=2)


# ---------------------------------------------------------------- proto -> JSON (one place)

_LOWERCASE_ENUMS = frozenset({"Chain", "Category", "ScriptType"})  # spelled as on the CLI


def _enum_name(field: FieldDescriptor, number: int) -> str:
    value = field.enum_type.values_by_number.get(number)
    if value is None:
        return str(number)
    if value.name.endswith("UNSPECIFIED"):
        return ""
    if field.enum_type.name in _LOWERCASE_ENUMS:
        return value.name.lower().replace("_", "-")
    return value.name


def _field_value(field: FieldDescriptor, value: Any) -> Any:
    if field.type == FieldDescriptor.TYPE_ENUM:
        return _enum_name(field, value)
    if field.type == FieldDescriptor.TYPE_BYTES:
        return bytes(value).hex()
    if field.type == FieldDescriptor.TYPE_MESSAGE:
        return to_dict(value)
    return value


def to_dict(msg: Message) -> dict[str, Any]:
    """A proto message as plain JSON values: enums by name (chain, category and script type in
    lower case as typed on the command line, states in capitals), bytes as lower-case hex, 64-bit
    integers as numbers, unset optional fields as null, ``*_unix`` fields without the suffix."""
    out: dict[str, Any] = {}
    for field in msg.DESCRIPTOR.fields:
        name = field.name.removesuffix("_unix")
        value = getattr(msg, field.name)
        if field.is_repeated:
            out[name] = [_field_value(field, v) for v in value]
        elif field.has_presence and not msg.HasField(field.name):
            out[name] = None
        else:
            out[name] = _field_value(field, value)
    return out


def wallet_json(w: pb.Wallet) -> dict[str, Any]:
    doc = to_dict(w)
    doc["chain_id"] = doc["chain_ids"][0] if doc["chain_ids"] else None
    return doc


def transfer_json(t: pb.Transfer) -> dict[str, Any]:
    doc = to_dict(t)
    doc.pop("payload")
    doc["payload_sha256"] = hashlib.sha256(t.payload).hexdigest()
    return doc


def operator_json(o: pb.Operator) -> dict[str, Any]:
    doc = to_dict(o)
    doc["public_key_pem"] = o.public_key_pem.decode("ascii", "replace")
    return doc


def movement_json(mv: Movement) -> dict[str, Any]:
    """A decoded movement in the same shape as ``to_dict(pb.Movement)``."""
    def opt(v: int | None) -> str | None:
        return None if v is None else str(v)

    return {
        "chain": mv.chain.value, "network": mv.network, "chain_id": mv.chain_id,
        "outputs": [{"address": o.address, "amount": str(o.amount), "asset": o.asset,
                     "is_change": o.is_change, "destination_class": o.destination_class.value,
                     "wallet_id": o.wallet_id, "category": o.category}
                    for o in mv.outputs],
        "fee": str(mv.fee), "fee_asset": mv.fee_asset, "digests": [d.hex() for d in mv.digests],
        "nonce": mv.nonce, "gas_limit": mv.gas_limit,
        "max_fee_per_gas": opt(mv.max_fee_per_gas),
        "max_priority_fee_per_gas": opt(mv.max_priority_fee_per_gas),
        "contract_call": mv.contract_call, "vsize": mv.vsize, "outpoints": list(mv.outpoints),
        "sighash": list(mv.sighash),
        "tokens": [token_json(t) for t in mv.tokens],
    }


def wallet_model(w: pb.Wallet) -> Wallet:
    """The daemon's wallet as the domain value the chain adapters decode against."""
    def need(name: str, value: str) -> str:
        if not value:
            raise CliError(f"the daemon sent wallet {safe(w.id)} without a {name}")
        return value

    d = to_dict(w)
    keys = []
    for k in w.keys:
        key_id = k.key_id if k.hsm_held or k.key_id.startswith("ext-") else "ext-" + k.key_id
        keys.append(KeyRef(key_id, k.label, bytes(k.public_key)))
    return Wallet(
        id=w.id, chain=Chain(need("chain", d["chain"])), network=w.network,
        script_type=ScriptType(need("script type", d["script_type"])),
        category=Category(need("category", d["category"])), case_ref=w.case_ref,
        legal_basis=w.legal_basis, status=WalletStatus(need("status", d["status"])),
        address=w.address, keys=tuple(keys), chain_ids=tuple(w.chain_ids),
        descriptor=w.descriptor, threshold=w.threshold or 1, cosigners=tuple(w.cosigners),
        created_at=float(w.created_at_unix), policy_version=w.policy_version,
    )


# ---------------------------------------------------------------- human output

safe = safe_text


def safe_block(text: str) -> str:
    return "".join(c if c.isprintable() or c in "\n\t" else ascii(c)[1:-1] for c in text)


def fmt_time(unix: int | None) -> str:
    if not unix:
        return "-"
    return datetime.fromtimestamp(unix, timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def fmt_amount(amount: int | str, asset: str, token: Token | None = None) -> str:
    return format_amount(int(amount), asset, token)


def kv(pairs: list[tuple[str, object]], width: int = 0) -> str:
    width = width or max((len(k) for k, _ in pairs), default=0) + 2
    return "".join(f"{k + ':':<{width}}{safe(v)}\n" for k, v in pairs)


def table(header: list[str], rows: list[list[object]]) -> str:
    if not rows:
        return "(none)\n"
    cells = [header] + [[safe(c) for c in row] for row in rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(header))]
    return "".join("  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip() + "\n"
                   for r in cells)


def wallet_text(w: dict[str, Any]) -> str:
    where = (f"chain ids {', '.join(map(str, w['chain_ids']))}" if w["chain"] == "ethereum"
             else w["network"])
    pairs: list[tuple[str, object]] = [
        ("id", w["id"]), ("chain", f"{w['chain']} ({where})"), ("address", w["address"]),
        ("script type", w["script_type"]), ("category", w["category"]),
        ("status", w["status"]), ("case", w["case_ref"]),
    ]
    if w["legal_basis"]:
        pairs.append(("legal basis", w["legal_basis"]))
    if w["freeze_order"]:
        pairs.append(("freeze order", w["freeze_order"]))
    if w["descriptor"]:
        pairs.append(("descriptor", w["descriptor"]))
    if w["threshold"] > 1 or len(w["keys"]) > 1:
        pairs.append(("multisig", f"{w['threshold']} of {len(w['keys'])}"))
    if w.get("template"):
        pairs.append(("template", w["template"]))
    if w.get("proposal_id"):
        pairs.append(("proposal", w["proposal_id"]))
    for k in w["keys"]:
        pairs.append(("key", f"{k['public_key']} ({'HSM' if k['hsm_held'] else 'cosigner'})"))
    pairs += [("policy version", w["policy_version"]), ("created", fmt_time(w["created_at"]))]
    return kv(pairs)


def movement_text(mv: dict[str, Any], from_address: str = "") -> str:
    lines = []
    if from_address:
        lines.append(f"from:             {safe(from_address)}")
    net = (f"{mv['network']}, chain id {mv['chain_id']}" if mv["chain_id"] else mv["network"])
    lines.append(f"chain:            {safe(mv['chain'])} ({safe(net)})")
    lines.append("outputs:")
    tokens = [token_from_json(t) for t in mv.get("tokens", [])]
    for i, o in enumerate(mv["outputs"], 1):
        verb = "change" if o["is_change"] else "send"
        to = safe(o["address"]) if o["address"] else "(new contract)"
        ours = (f" {safe(o['category'])} wallet {safe(o['wallet_id'])}"
                if o.get("wallet_id") and not o["is_change"] else "")
        mark = f"[{safe(o['destination_class'])}{ours}{', CHANGE' if o['is_change'] else ''}]"
        token = lookup_token(tokens, o["asset"], int(mv["chain_id"] or 0))
        lines.append(f"  {i}. {verb} {fmt_amount(o['amount'], o['asset'], token)} to {to} {mark}")
    if not mv["outputs"]:
        lines.append("  (none)")
    label = "max fee:" if mv["chain"] == "ethereum" else "fee:"
    lines.append(f"{label:<18}{fmt_amount(mv['fee'] or 0, mv['fee_asset'] or 'BTC')}"
                 + (f", {mv['vsize']} vB" if mv["vsize"] else ""))
    for label, key in (("nonce:", "nonce"), ("gas limit:", "gas_limit")):
        if mv[key] is not None:
            lines.append(f"{label:<18}{mv[key]}")
    for label, key in (("max fee/gas:", "max_fee_per_gas"),
                       ("priority fee/gas:", "max_priority_fee_per_gas")):
        if mv[key]:
            lines.append(f"{label:<18}{safe(mv[key])} wei")
    for t in tokens:
        lines.append(f"token:            {safe(t.symbol)} = {safe(t.standard).upper()} contract "
                     f"{safe(t.address)} on chain {t.chain_id}, {t.decimals} decimals")
    if mv["contract_call"]:
        lines.append(f"contract call:    {safe(mv['contract_call'])} (NOT decoded)")
    if mv["outpoints"]:
        lines.append("spends:           " + ", ".join(safe(p) for p in mv["outpoints"]))
    if mv.get("sighash"):
        lines.append("sighash:          " + approval.sighash_summary(mv["sighash"]))
        lines += approval.sighash_warnings(mv["sighash"], len(mv["outputs"]))
    return "\n".join(lines) + "\n"


def transfer_text(t: dict[str, Any], from_address: str = "") -> str:
    head = kv([("transfer", t["id"]), ("wallet", t["wallet_id"]), ("state", t["state"])],
              LABEL_WIDTH)
    body = movement_text(t["movement"], from_address) if t["movement"] else "(not decoded)\n"
    pairs: list[tuple[str, object]] = [
        ("expires", fmt_time(t["expires_at"])), ("requirement", t["requirement"] or "-"),
        ("remaining", t["remaining"] or "-"), ("policy version", t["policy_version"]),
    ]
    for label, key in (("category change", "category_change"), ("legal basis", "legal_basis")):
        if t[key] and t[key] != "none":
            pairs.append((label, t[key]))
    if t["replaces"]:
        pairs.append(("replaces", replacement_text(t)))
    for label, key in (("tx hash", "tx_hash"), ("failure", "failure")):
        if t[key]:
            pairs.append((label, t[key]))
    pairs += [("submitter", t["submitter"]), ("created", fmt_time(t["created_at"]))]
    text = head + body + kv(pairs, LABEL_WIDTH) + "".join(
        line + "\n" for line in approval.veto_warnings(
            (v["role"], v["transfer_id"]) for v in t.get("vetoed") or ()))
    if t["approvals"]:
        text += "approvals:\n" + "".join(
            f"  {safe(a['operator_id'])} {a['decision']}"
            f"{' (counted)' if a['counted'] else ''} {fmt_time(a['created_at'])}"
            f"{' ' + safe(a['reason']) if a['reason'] else ''}\n" for a in t["approvals"])
    return text


def replacement_text(t: dict[str, Any]) -> str:
    """``t_... (SIGNED), fee +4,500 sat``, as the daemon's rendering of the statement has it."""
    asset = (t["movement"] or {}).get("fee_asset") or "BTC"
    try:
        delta = int(t["replaces_fee_delta"] or 0)
    except ValueError:
        return f"{t['replaces']} ({t['replaces_state']}), fee change {t['replaces_fee_delta']}"
    return approval.replacement_summary(t["replaces"], t["replaces_state"], delta, asset)


def generic_text(value: Any, indent: str = "") -> str:
    """A report of unknown shape: lists of flat objects as tables, objects as sections."""
    if isinstance(value, dict):
        out = ""
        for k, v in value.items():
            if isinstance(v, (dict, list)) and v:
                out += f"{indent}{safe(k)}:\n" + generic_text(v, indent + "  ")
            else:
                out += f"{indent}{safe(k)}: {safe(v)}\n"
        return out
    if isinstance(value, list):
        if value and all(isinstance(r, dict) for r in value):
            cols = list(dict.fromkeys(k for r in value for k in r))
            if all(not isinstance(r.get(c), (dict, list)) for r in value for c in cols):
                rows = [["" if r.get(c) is None else r.get(c) for c in cols] for r in value]
                return "".join(indent + line + "\n"
                               for line in table(cols, rows).splitlines())
        return "".join(indent + "- " + generic_text(v, indent + "  ").lstrip() for v in value)
    return f"{indent}{safe(value)}\n"


# ---------------------------------------------------------------- files and prompts

def read_file(path: str, what: str, limit: int | None = MAX_INPUT_FILE) -> bytes:
    try:
        with open(path, "rb") as f:
            data = f.read() if limit is None else f.read(limit + 1)
    except OSError as e:
        raise CliError(f"cannot read {what} {path}: {e.strerror}") from None
    if limit is not None and len(data) > limit:
        raise CliError(f"{what} {path} is larger than {limit} bytes")
    return data


def read_text(path: str, what: str) -> str:
    try:
        return read_file(path, what).decode("utf-8")
    except UnicodeDecodeError:
        raise CliError(f"{what} {path} is not UTF-8 text") from None


def read_passphrase(path: str) -> bytes:
    secret = read_file(path, "passphrase file", 64 * 1024)
    secret = secret[:-1] if secret.endswith(b"\n") else secret
    secret = secret[:-1] if secret.endswith(b"\r") else secret
    if not secret:
        raise CliError(f"passphrase file {path} is empty")
    return secret


def can_confirm(*, assume_yes: bool, stdin: TextIO | None = None) -> TextIO | None:
    """The terminal to ask on (None with --yes); refuses, rather than waits, without one."""
    if assume_yes:
        return None
    stdin = sys.stdin if stdin is None else stdin
    if stdin is None or not stdin.isatty():
        raise CliError("refusing to ask for confirmation without a terminal; pass --yes")
    return stdin


def confirm(question: str, *, assume_yes: bool, stdin: TextIO | None = None,
            prompt_to: TextIO | None = None) -> None:
    """Ask on the terminal; anything but y or yes is a no."""
    stdin = can_confirm(assume_yes=assume_yes, stdin=stdin)
    if stdin is None:
        return
    out = sys.stderr if prompt_to is None else prompt_to
    out.write(f"{question} [y/N] ")
    out.flush()
    answer = stdin.readline()
    if answer.strip().lower() not in ("y", "yes"):
        raise CliError("not confirmed; nothing was signed")


def load_operator_key(path: str, passphrase_file: str | None,
                      stdin: TextIO | None = None) -> Any:
    passphrase = read_passphrase(passphrase_file) if passphrase_file else None
    if passphrase is None:
        head = read_file(path, "key file", operator_keys.MAX_KEY_FILE)[:64]
        stdin = sys.stdin if stdin is None else stdin
        if b"ENCRYPTED PRIVATE KEY" in head and stdin is not None and stdin.isatty():
            passphrase = getpass.getpass(f"Passphrase for {path}: ").encode() or None
    return operator_keys.load_private(path, passphrase)


# ---------------------------------------------------------------- connection

def _host_of(target: str) -> str:
    if target.startswith("["):
        return target[1:target.find("]")]
    return target.rsplit(":", 1)[0] if target.count(":") == 1 else target


def _dial_target(listen: str) -> str:
    """Where to connect for a listen address (a wildcard bind is reached on loopback)."""
    host = _host_of(listen)
    port = listen.rsplit(":", 1)[1] if ":" in listen else ""
    if host in ("0.0.0.0", ""):
        return f"127.0.0.1:{port}"
    if host == "::":
        return f"[::1]:{port}"
    return listen


def _is_loopback_ip(host: str) -> bool:
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


class Context:
    """The parsed command line, the config (when one is needed) and the gRPC channel."""

    def __init__(self, args: argparse.Namespace):
        self.args = args
        self._channel: grpc.Channel | None = None

    @cached_property
    def config(self) -> Config | None:
        a = self.args
        path = a.config or os.environ.get("SIGNERD_CONFIG") or None
        if path is None:
            if a.server and not DEFAULT_CONFIG.exists():
                return None
            path = str(DEFAULT_CONFIG)
        return config_mod.load(path)

    @property
    def principal(self) -> str:
        who = self.args.as_principal or self.args.default_principal
        if not is_valid_principal(who):
            raise CliError(f"--as: {who!r} is not a principal name")
        return who

    @property
    def is_operator(self) -> bool:
        return self.principal not in SERVICE_PRINCIPALS

    @property
    def limits(self) -> Limits:
        return self.config.limits if self.config is not None else Limits()

    def _tls_files(self) -> tuple[str, str, str]:
        a = self.args
        if bool(a.tls_cert) != bool(a.tls_key):
            raise CliError("--cert and --key go together")
        pki = self.config.base / "pki" if self.config is not None else None
        ca = a.tls_ca or (str(pki / "ca.pem") if pki is not None else None)
        if a.tls_cert and ca:
            return ca, a.tls_cert, a.tls_key
        if pki is None or ca is None:
            raise CliError("--server without a state folder needs --ca, --cert and --key "
                           "(or --insecure for a plaintext daemon)")
        cert = pki / "clients" / f"{self.principal}.pem"
        key = pki / "clients" / f"{self.principal}.key"
        if not cert.exists() or not key.exists():
            raise CliError(f"no client certificate for principal {self.principal!r} at {cert} "
                           "(pick another with --as, or pass --cert and --key)")
        return ca, str(cert), str(key)

    def channel(self) -> grpc.Channel:
        if self._channel is not None:
            return self._channel
        a = self.args
        if a.server:
            target, insecure = a.server, a.insecure
        else:
            assert self.config is not None
            target = _dial_target(self.config.server.listen)
            insecure = a.insecure or self.config.server.insecure
        options: list[tuple[str, Any]] = [("grpc.max_receive_message_length", MAX_RECEIVE_BYTES)]
        if insecure:
            self._channel = grpc.insecure_channel(target, options=options)
            return self._channel
        ca, cert, key = self._tls_files()
        creds = grpc.ssl_channel_credentials(
            root_certificates=read_file(ca, "CA certificate"),
            private_key=read_file(key, "client key"),
            certificate_chain=read_file(cert, "client certificate"))
        if _is_loopback_ip(_host_of(target)):
            options.append(("grpc.ssl_target_name_override", "localhost"))
        self._channel = grpc.secure_channel(target, creds, options=options)
        return self._channel

    def close(self) -> None:
        if self._channel is not None:
            self._channel.close()

    def custody(self) -> rpc.CustodyStub:
        return rpc.CustodyStub(self.channel())

    def approval(self) -> rpc.ApprovalStub:
        return rpc.ApprovalStub(self.channel())

    def admin(self) -> rpc.AdminStub:
        return rpc.AdminStub(self.channel())

    def audit(self) -> rpc.AuditStub:
        return rpc.AuditStub(self.channel())

    def governance(self) -> rpc.GovernanceStub:
        return rpc.GovernanceStub(self.channel())

    def call(self, method: Callable[..., Any], request: Message) -> Any:
        return method(request, timeout=self.args.timeout)

    def pages(self, method: Callable[..., Any], make: Callable[[pb.Page], Message],
              field: str) -> Iterator[Any]:
        token = ""
        for _ in range(MAX_PAGES):
            resp = self.call(method, make(pb.Page(page_size=1000, page_token=token)))
            yield from getattr(resp, field)
            if not resp.next_page_token or resp.next_page_token == token:
                return
            token = resp.next_page_token
        raise CliError("the daemon's listing did not end")

    def emit(self, doc: Any, human: str | Callable[[], str]) -> None:
        if self.args.json:
            sys.stdout.write(json.dumps(doc, indent=2) + "\n")
        else:
            sys.stdout.write(human() if callable(human) else human)


# ---------------------------------------------------------------- wallet

def cmd_wallet_create(ctx: Context) -> int:
    a = ctx.args
    if a.chain == "bitcoin" and not a.network:
        raise CliError("wallet create: --network is required for bitcoin "
                       "(mainnet, testnet, signet or regtest)")
    if a.chain == "ethereum" and not a.chain_id:
        raise CliError("wallet create: --chain-id is required for ethereum")
    script_type = a.script_type or ("p2wsh-sortedmulti" if a.multisig else None)
    template = wallet_template(ctx, a.policy, a.template)
    req = pb.CreateWalletRequest(
        chain=CHAINS[a.chain], network=a.network or "", chain_ids=a.chain_id or [],
        script_type=SCRIPT_TYPES[script_type] if script_type else pb.SCRIPT_TYPE_UNSPECIFIED,
        category=CATEGORIES[a.category], case_ref=a.case, legal_basis=a.legal_basis or "",
        template=template, threshold=a.multisig or 0, hsm_keys=a.hsm_keys or 0,
        cosigners=a.cosigner or [], label=a.label or "")
    w = wallet_json(ctx.call(ctx.custody().CreateWallet, req))
    note = ""
    if w["proposal_id"]:
        note = (f"this wallet holds an outside key: it is {w['status']} until the governance "
                f"quorum approves proposal {w['proposal_id']}\n")
    ctx.emit(w, lambda: wallet_text(w) + note)
    return 0


def wallet_template(ctx: Context, policy: str | None, template: str | None) -> str:
    """The template a new wallet starts from. ``--policy`` names one, or a policy file whose
    text must be a governance-approved template (the platform never sends policy text: a
    wallet's own policy is a governance proposal)."""
    if policy and template:
        raise CliError("wallet create: --policy and --template name the same thing; give one")
    if not policy or not os.path.isfile(policy):
        return template or policy or ""
    text = read_text(policy, "policy file")
    for t in ctx.call(ctx.admin().ListTemplates, pb.ListTemplatesRequest()).templates:
        if t.toml == text:
            return str(t.name)
    raise CliError(f"--policy {policy}: this text is not a governance-approved template; name "
                   "one with --template (signerctl template list), or propose this text "
                   "(signerctl template set NAME FILE, or policy set WALLET FILE)")


def cmd_wallet_list(ctx: Context) -> int:
    a = ctx.args
    cat = CATEGORIES[a.category] if a.category else pb.CATEGORY_UNSPECIFIED
    wallets = [wallet_json(w) for w in ctx.pages(
        ctx.custody().ListWallets,
        lambda page: pb.ListWalletsRequest(category=cat, case_ref=a.case or "", page=page),
        "wallets")]
    rows = [[w["id"], w["chain"],
             w["network"] if w["chain"] == "bitcoin" else ",".join(map(str, w["chain_ids"])),
             w["category"], w["status"], w["case_ref"], w["address"]] for w in wallets]
    ctx.emit({"wallets": wallets}, lambda: table(
        ["ID", "CHAIN", "NETWORK", "CATEGORY", "STATUS", "CASE", "ADDRESS"], rows))
    return 0


def cmd_wallet_show(ctx: Context) -> int:
    w = wallet_json(ctx.call(ctx.custody().GetWallet, pb.GetWalletRequest(wallet_id=ctx.args.id)))
    ctx.emit(w, lambda: wallet_text(w))
    return 0


def cmd_wallet_freeze(ctx: Context) -> int:
    req = pb.FreezeWalletRequest(wallet_id=ctx.args.id, order_ref=ctx.args.order)
    if ctx.args.action == "unfreeze":
        return emit_proposal(ctx, ctx.call(ctx.admin().UnfreezeWallet, req))
    w = wallet_json(ctx.call(ctx.admin().FreezeWallet, req))
    ctx.emit(w, lambda: wallet_text(w))
    return 0


# ---------------------------------------------------------------- operator

def pub_path_for(key_path: str) -> str:
    p = Path(key_path)
    return str(p.with_suffix(".pub")) if p.suffix == ".key" else key_path + ".pub"


def cmd_operator_keygen(ctx: Context) -> int:
    a = ctx.args
    passphrase = read_passphrase(a.passphrase_file) if a.passphrase_file else None
    pub = pub_path_for(a.out)
    key = operator_keys.generate()
    operator_keys.write_keypair(key, a.out, pub, passphrase)
    fp = operator_keys.fingerprint(key.public_key())
    doc = {"key": a.out, "public_key": pub, "fingerprint": fp, "encrypted": bool(passphrase)}
    ctx.emit(doc, f"wrote {a.out} (private, 0600) and {pub}\nfingerprint: {fp}\n")
    return 0


def cmd_operator_add(ctx: Context) -> int:
    a = ctx.args
    pem = read_file(a.pubkey, "public key file", operator_keys.MAX_KEY_FILE)
    operator_keys.load_public_pem(pem)  # a clear local error before the daemon's
    return emit_proposal(ctx, ctx.call(ctx.admin().RegisterOperator, pb.RegisterOperatorRequest(
        id=a.id, roles=a.role, public_key_pem=pem)))


def operator_text(op: dict[str, Any]) -> str:
    return kv([("operator", op["id"]), ("roles", ", ".join(op["roles"])),
               ("status", op["status"]), ("fingerprint", op["fingerprint"]),
               ("created", fmt_time(op["created_at"]))])


def cmd_operator_revoke(ctx: Context) -> int:
    a = ctx.args
    req = pb.RevokeOperatorRequest(id=a.id, reason=a.reason or "")
    stub = ctx.admin()
    if a.action == "suspend":
        op = operator_json(ctx.call(stub.SuspendOperator, req))
        ctx.emit(op, lambda: operator_text(op))
        return 0
    method = stub.RevokeOperator if a.action == "revoke" else stub.ReinstateOperator
    return emit_proposal(ctx, ctx.call(method, req))


def cmd_operator_roles(ctx: Context) -> int:
    return emit_proposal(ctx, ctx.call(ctx.admin().SetOperatorRoles, pb.SetOperatorRolesRequest(
        id=ctx.args.id, roles=ctx.args.role)))


def cmd_operator_list(ctx: Context) -> int:
    resp = ctx.call(ctx.admin().ListOperators, pb.ListOperatorsRequest())
    ops = [operator_json(o) for o in resp.operators]
    ctx.emit({"operators": ops}, lambda: table(
        ["ID", "ROLES", "STATUS", "FINGERPRINT"],
        [[o["id"], ",".join(o["roles"]), o["status"], o["fingerprint"]] for o in ops]))
    return 0


# ---------------------------------------------------------------- policy

def policy_text(p: dict[str, Any]) -> str:
    return (f"# wallet {safe(p['wallet_id'])}, policy version {p['version']}, set by "
            f"{safe(p['actor'])} at {fmt_time(p['created_at'])}\n" + safe_block(p["toml"])
            + ("" if p["toml"].endswith("\n") else "\n"))


def cmd_policy_set(ctx: Context) -> int:
    a = ctx.args
    if bool(a.file) == bool(a.template):
        raise CliError("policy set: give a policy FILE or --template NAME")
    text = read_text(a.file, "policy file") if a.file else ""
    return emit_proposal(ctx, ctx.call(ctx.admin().SetPolicy, pb.SetPolicyRequest(
        wallet_id=a.wallet, toml=text, template=a.template or "")))


def cmd_template_list(ctx: Context) -> int:
    resp = ctx.call(ctx.admin().ListTemplates, pb.ListTemplatesRequest())
    ts = [to_dict(t) for t in resp.templates]
    if ctx.args.name:
        t = next((t for t in ts if t["name"] == ctx.args.name), None)
        if t is None:
            raise CliError(f"no template {safe(ctx.args.name)} (known: "
                           f"{', '.join(safe(x['name']) for x in ts)})")
        ctx.emit(t, lambda: f"# template {safe(t['name'])}, version {t['version']}, sha256 "
                            f"{t['sha256']}\n" + safe_block(t["toml"]))
        return 0
    ctx.emit({"templates": ts}, lambda: table(
        ["NAME", "VERSION", "SHA256"], [[t["name"], t["version"], t["sha256"]] for t in ts]))
    return 0


def cmd_template_set(ctx: Context) -> int:
    return emit_proposal(ctx, ctx.call(ctx.admin().SetTemplate, pb.SetTemplateRequest(
        name=ctx.args.name, toml=read_text(ctx.args.file, "template file"))))


def cmd_token_set(ctx: Context) -> int:
    a = ctx.args
    return emit_proposal(ctx, ctx.call(ctx.admin().SetToken, pb.SetTokenRequest(
        chain_id=a.chain_id, address=a.address, symbol=a.symbol, decimals=a.decimals,
        standard=a.standard)))


def cmd_token_list(ctx: Context) -> int:
    resp = ctx.call(ctx.admin().ListTokens, pb.ListTokensRequest(chain_id=ctx.args.chain_id or 0))
    ts = [to_dict(t) for t in resp.tokens]
    ctx.emit({"tokens": ts}, lambda: table(
        ["CHAIN ID", "ADDRESS", "STANDARD", "SYMBOL", "DECIMALS"],
        [[t["chain_id"], t["address"], t["standard"], t["symbol"], t["decimals"]] for t in ts]))
    return 0


def cmd_governance_show(ctx: Context) -> int:
    au = ctx.call(ctx.governance().GetAuthority, pb.GetAuthorityRequest())
    doc = to_dict(au)
    doc["operators"] = [operator_json(o) for o in au.operators]
    ctx.emit(doc, lambda: kv([("instance", doc["instance_id"]), ("genesis", doc["genesis"]),
                              ("ledger head", f"entry {doc['seq']} ({doc['head']})"),
                              ("audit key", doc["audit_public_key"])])
             + "governance policy:\n" + safe_block(doc["governance_toml"])
             + "templates: " + ", ".join(f"{safe(t['name'])} v{t['version']}"
                                         for t in doc["templates"]) + "\n"
             + "frozen wallets: " + (", ".join(f"{safe(f['wallet_id'])} ({safe(f['order_ref'])})"
                                               for f in doc["frozen"]) or "none") + "\n")
    return 0


def cmd_governance_set(ctx: Context) -> int:
    return emit_proposal(ctx, ctx.call(ctx.admin().SetGovernance, pb.SetGovernanceRequest(
        toml=read_text(ctx.args.file, "governance policy file"))))


# ---------------------------------------------------------------- proposals

def proposal_json(p: pb.Proposal) -> dict[str, Any]:
    doc = to_dict(p)
    try:
        doc["change"] = json.loads(p.body_json)["change"]
    except (ValueError, KeyError, TypeError):
        doc["change"] = None
    return doc


def proposal_text(p: dict[str, Any]) -> str:
    pairs: list[tuple[str, object]] = [
        ("proposal", p["id"]), ("state", p["state"]), ("kind", p["kind"]),
        ("change", p["summary"]), ("submitter", p["submitter"]),
        ("needs", p["requirement"] or "-")]
    if p["state"] == "PENDING_APPROVAL":
        pairs.append(("remaining", p["remaining"] or "-"))
    pairs += [("expires", fmt_time(p["expires_at"])), ("created", fmt_time(p["created_at"]))]
    if p["applied_seq"]:
        pairs.append(("ledger entry", p["applied_seq"]))
    if p["failure"]:
        pairs.append(("failure", p["failure"]))
    text = kv(pairs, LABEL_WIDTH)
    if p["approvals"]:
        text += "decisions:\n" + "".join(
            f"  {safe(a['operator_id'])} {a['decision']}"
            f"{' (counted)' if a['counted'] else ''} {fmt_time(a['created_at'])}"
            f"{' ' + safe(a['reason']) if a['reason'] else ''}\n" for a in p["approvals"])
    return text


def emit_proposal(ctx: Context, p: pb.Proposal) -> int:
    """What every act that needs the governance quorum prints: the proposal it created."""
    doc = proposal_json(p)
    ctx.emit(doc, lambda: proposal_text(doc) + (
        f"it takes effect once the governance quorum approves it: signerctl --as OPERATOR "
        f"proposal approve {safe(doc['id'])} --key OPERATOR.key\n"
        if doc["state"] == "PENDING_APPROVAL" else ""))
    return 0


def cmd_proposal_list(ctx: Context) -> int:
    state = ctx.args.state or ""
    found = ctx.pages(ctx.governance().ListProposals,
                      lambda page: pb.ListProposalsRequest(state=state, page=page), "proposals")
    ps = [proposal_json(p) for p in found]
    ctx.emit({"proposals": ps}, lambda: table(
        ["ID", "STATE", "KIND", "CHANGE", "REMAINING"],
        [[p["id"], p["state"], p["kind"], p["summary"],
          p["remaining"] if p["state"] == "PENDING_APPROVAL" else ""] for p in ps]))
    return 0


def cmd_proposal_show(ctx: Context) -> int:
    p = proposal_json(ctx.call(ctx.governance().GetProposal,
                               pb.GetProposalRequest(proposal_id=ctx.args.id)))
    ctx.emit(p, lambda: proposal_text(p))
    return 0


def cmd_proposal_cancel(ctx: Context) -> int:
    return emit_proposal(ctx, ctx.call(ctx.governance().CancelProposal, pb.CancelProposalRequest(
        proposal_id=ctx.args.id, reason=ctx.args.reason or "")))


def verify_proposal_statement(st: pb.ProposalStatement, proposal_id: str, decision: Decision,
                              *, instance_id: str | None = None) -> dict[str, Any]:
    """Check the bytes the daemon asks to be signed, here: the proposal statement's tag and
    canonical form, that it is this proposal and this decision, and what can be recomputed
    from its own content (a wallet's address from its keys, a key's fingerprint, that a
    policy parses). Returns the proposal document the person is shown."""
    from signerd import authority as AU
    from signerd import canonical

    raw = bytes(st.statement)
    prefix = approval.PROPOSAL_TAG + b"\n"
    if not raw.startswith(prefix):
        raise CliError("the daemon's statement is not a proposal statement")
    try:
        body = canonical.loads(raw[len(prefix):], "statement")
    except SignerError as e:
        raise CliError(f"the daemon's statement is malformed: {e}") from None
    if not isinstance(body, dict) or set(body) != {"decision", "proposal"}:
        raise CliError("the daemon's statement is malformed")
    doc = body["proposal"]
    if body["decision"] != decision.value:
        raise CliError(f"the daemon's statement is for {safe(body['decision'])}, not "
                       f"{decision.value}")
    try:
        AU.check_document(doc, doc.get("instance_id", "") if isinstance(doc, dict) else "")
    except SignerError as e:
        raise CliError(f"the daemon's proposal is malformed: {e}") from None
    if doc["id"] != proposal_id:
        raise CliError(f"the daemon answered for proposal {safe(doc['id'])}, not "
                       f"{safe(proposal_id)}")
    if instance_id is not None and doc["instance_id"] != instance_id:
        raise CliError(f"the proposal belongs to daemon {safe(doc['instance_id'])}, not to the "
                       f"configured {safe(instance_id)}")
    if approval.proposal_statement(doc, decision) != raw:
        raise CliError(MISMATCH)
    c = doc["change"]
    try:
        if doc["kind"] == "operator.register":
            operator_keys.load_public_pem(c["public_key_pem"].encode())
        elif doc["kind"] in ("wallet.policy", "template.set"):
            from signerd.policy import parse_policy

            parse_policy(c["document"])
        elif doc["kind"] == "governance.set":
            AU.parse_governance(c["document"])
        elif doc["kind"] in ("wallet.import", "wallet.create"):
            check_wallet_record(c["wallet"])
    except SignerError as e:
        raise CliError(f"the proposal's content does not check out here: {e}") from None
    return dict(doc)


def check_wallet_record(w: dict[str, Any]) -> None:
    """A proposed wallet's address and descriptor, derived here from its keys."""
    from signerd.wallets import derive_address

    keys = sorted(w["keys"], key=lambda k: k["position"])
    address, desc = derive_address(Chain(w["chain"]), w["network"], ScriptType(w["script_type"]),
                                   int(w["threshold"]),
                                   [bytes.fromhex(k["public_key"]) for k in keys])
    if address != w["address"] or desc != w["descriptor"]:
        raise CliError(f"the proposed wallet's address {safe(w['address'])} is not the one its "
                       f"keys make ({safe(address)}); refusing to sign")


def cmd_proposal_decide(ctx: Context) -> int:
    a = ctx.args
    decision = Decision.APPROVE if a.decision == "approve" else Decision.REJECT
    operator_principal(ctx)
    if decision is Decision.REJECT and not a.reason.strip():
        raise CliError("proposal reject: --reason must not be empty")
    can_confirm(assume_yes=a.yes)
    key = load_operator_key(a.key, a.passphrase_file)
    st = ctx.call(ctx.governance().GetProposalStatement, pb.GetProposalStatementRequest(
        proposal_id=a.id, decision=pb.Decision.Value(decision.value)))
    instance = ctx.config.instance_id if ctx.config is not None else None
    try:
        doc = verify_proposal_statement(st, a.id, decision, instance_id=instance)
    except CliError as e:
        raise CliError(f"{e}; refusing to sign") from None
    from signerd import authority as AU

    shown = AU.render_proposal(doc, decision, requirement_text=st.proposal.requirement)
    if not ctx.args.json:
        sys.stdout.write(shown)
        sys.stdout.flush()
    elif not a.yes:
        sys.stderr.write(shown)
    confirm("Sign this approval?" if decision is Decision.APPROVE else "Sign this rejection?",
            assume_yes=a.yes)
    statement = bytes(st.statement)
    p = proposal_json(ctx.call(ctx.governance().DecideProposal, pb.DecideProposalRequest(
        proposal_id=a.id, operator_id=ctx.principal,
        decision=pb.Decision.Value(decision.value),
        signature=approval.sign_statement(key, statement), reason=a.reason or "",
        statement_sha256=approval.statement_digest(statement))))
    verb = "approved" if decision is Decision.APPROVE else "rejected"
    ctx.emit(p, lambda: f"{verb} as {ctx.principal}; proposal {safe(p['id'])}: {p['state']}"
             + (f"; remaining: {safe(p['remaining'])}" if p["state"] == "PENDING_APPROVAL"
                and p["remaining"] else "")
             + (f"; {safe(p['failure'])}" if p["failure"] else "") + "\n")
    return 0


def cmd_policy_show(ctx: Context) -> int:
    p = to_dict(ctx.call(ctx.admin().GetPolicy, pb.GetPolicyRequest(wallet_id=ctx.args.wallet)))
    ctx.emit(p, lambda: policy_text(p))
    return 0


def cmd_policy_history(ctx: Context) -> int:
    resp = ctx.call(ctx.admin().PolicyHistory, pb.GetPolicyRequest(wallet_id=ctx.args.wallet))
    versions = [to_dict(v) for v in resp.versions]
    ctx.emit({"versions": versions}, lambda: table(
        ["VERSION", "ACTOR", "CREATED"],
        [[v["version"], v["actor"], fmt_time(v["created_at"])] for v in versions]))
    return 0


# ---------------------------------------------------------------- transfer

def transfer_summary(t: dict[str, Any]) -> str:
    line = f"transfer {safe(t['id'])}: {t['state']}"
    if t["remaining"] and t["state"] == "PENDING_APPROVAL":
        line += f"; remaining: {safe(t['remaining'])}"
    return line + "\n"


def cmd_transfer_submit(ctx: Context) -> int:
    a = ctx.args
    req = pb.SubmitTransferRequest(wallet_id=a.wallet, replaces=a.replaces or "",
                                   legal_basis=a.legal_basis or "",
                                   category_change=a.category_change or "",
                                   idempotency_key=a.idempotency_key or "")
    if a.psbt:
        req.psbt = read_file(a.psbt, "PSBT file")
    else:
        req.ethereum.json = read_text(a.eth_tx, "transaction file")
    t = transfer_json(ctx.call(ctx.custody().SubmitTransfer, req))
    ctx.emit(t, lambda: transfer_text(t))
    return 0


def cmd_transfer_list(ctx: Context) -> int:
    a = ctx.args
    state = pb.TransferState.Value(a.state) if a.state else pb.TRANSFER_STATE_UNSPECIFIED
    if ctx.is_operator:  # an operator sees what waits for them
        found = ctx.pages(ctx.approval().ListPending,
                          lambda page: pb.ListPendingRequest(page=page), "transfers")
        found = (t for t in found if (not a.wallet or t.wallet_id == a.wallet)
                 and (not a.state or t.state == state))
    else:
        found = ctx.pages(ctx.custody().ListTransfers, lambda page: pb.ListTransfersRequest(
            wallet_id=a.wallet or "", state=state, page=page), "transfers")
    ts = [transfer_json(t) for t in found]
    ctx.emit({"transfers": ts}, lambda: table(
        ["ID", "WALLET", "CHAIN", "STATE", "CREATED", "EXPIRES", "REMAINING"],
        [[t["id"], t["wallet_id"], t["chain"], t["state"], fmt_time(t["created_at"]),
          fmt_time(t["expires_at"]), t["remaining"] if t["state"] == "PENDING_APPROVAL" else ""]
         for t in ts]))
    return 0


@dataclass(frozen=True)
class Rebuilt:
    statement: bytes
    context: approval.StatementContext
    movement: Movement


def rebuild_statement(st: pb.Statement, transfer_id: str, decision: Decision, *,
                      limits: Limits, instance_id: str | None = None,
                      allowed_sighash: frozenset[int] = frozenset({SIGHASH_TYPES["ALL"]})
                      ) -> Rebuilt:
    """Rebuild the approval statement here from the raw payload and the transfer's metadata;
    raise CliError unless it is byte for byte the statement the daemon asks to be signed."""
    from signerd.chains import Ours, adapter_for, classify_outputs

    t = st.transfer
    if t.id != transfer_id:
        raise CliError(f"the daemon answered for transfer {safe(t.id)}, not {safe(transfer_id)}")
    if st.wallet.id != t.wallet_id:
        raise CliError(f"the daemon sent wallet {safe(st.wallet.id)} for a transfer from "
                       f"{safe(t.wallet_id)}")
    if instance_id is not None and t.instance_id != instance_id:
        raise CliError(f"the transfer belongs to daemon {safe(t.instance_id)}, not to the "
                       f"configured {safe(instance_id)}")
    wallet = wallet_model(st.wallet)
    if t.chain != pb.CHAIN_UNSPECIFIED and pb.Chain.Name(t.chain).lower() != wallet.chain.value:
        raise CliError("the transfer's chain is not its wallet's chain")
    adapter = adapter_for(wallet.chain)
    try:
        if wallet.chain is Chain.BITCOIN:
            decoded = adapter.decode(wallet, bytes(t.payload), limits,
                                     allowed_sighash=allowed_sighash)
        else:
            decoded = adapter.decode(wallet, bytes(t.payload), limits,
                                     tokens=token_registry(st))
    except ImportError as e:
        raise CliError(f"cannot decode {wallet.chain.value} transactions here ({e})") from None
    except SignerError as e:
        raise CliError(f"the transaction does not decode here: {e}") from None
    ours = {d.address: Ours(d.wallet_id, d.category, d.own) for d in st.destinations}
    mv = classify_outputs(decoded.movement, ours, tuple(st.allowlist))
    try:
        ctx = approval.StatementContext(
            instance_id=t.instance_id, transfer_id=t.id, wallet_id=t.wallet_id,
            policy_version=t.policy_version, expires_at=t.expires_at_unix,
            payload_sha256=hashlib.sha256(t.payload).digest(), legal_basis=t.legal_basis,
            category_change=t.category_change or "none", submitter=t.submitter,
            replaces=t.replaces, replaces_state=t.replaces_state,
            replaces_fee_delta=_signed_int(t.replaces_fee_delta or "0", "replaces_fee_delta"),
            vetoed=tuple((v.role, v.transfer_id) for v in t.vetoed))
        statement = approval.build_statement(ctx, mv, decision)
    except SignerError as e:
        raise CliError(f"{MISMATCH}: {e}") from None
    if statement != bytes(st.statement):
        raise CliError(MISMATCH)
    return Rebuilt(statement, ctx, mv)


def _signed_int(text: str, name: str) -> int:
    """A signed decimal integer the daemon sent (as the statement spells it), or
    InvalidArgument naming the field."""
    body = text[1:] if text[:1] == "-" else text
    if not (body.isascii() and body.isdigit()) or (len(body) > 1 and body[0] == "0"):
        raise InvalidArgument(f"{name} must be a decimal integer, got {safe(text)}")
    return int(text)


def token_registry(st: pb.Statement) -> dict[tuple[int, str], Token]:
    """The token registry entries the daemon says the transfer uses, checked as the daemon
    checks them. They decide what decodes as a token here, and the statement binds them, so a
    daemon that names a contract it did not register, or another symbol or decimals, gets a
    statement that no operator's signature over the true one matches."""
    out = {}
    for t in st.tokens:
        try:
            token = make_token(chain_id=t.chain_id, address=t.address, standard=t.standard,
                               symbol=t.symbol, decimals=t.decimals)
        except SignerError as e:
            raise CliError(f"the daemon sent a malformed token entry: {e}") from None
        out[token.key] = token
    return out


def _allowed_sighash(names: list[str] | None) -> frozenset[int]:
    return frozenset({SIGHASH_TYPES["ALL"]} | {SIGHASH_TYPES[n] for n in names or []})


def _verified(ctx: Context, decision: Decision, allowed_sighash: frozenset[int]
              ) -> tuple[pb.Statement, Rebuilt]:
    a = ctx.args
    st = ctx.call(ctx.approval().GetStatement, pb.GetStatementRequest(
        transfer_id=a.id, decision=pb.Decision.Value(decision.value)))
    instance = ctx.config.instance_id if ctx.config is not None else None
    rebuilt = rebuild_statement(st, a.id, decision, limits=ctx.limits, instance_id=instance,
                                allowed_sighash=allowed_sighash)
    return st, rebuilt


def cmd_transfer_show(ctx: Context) -> int:
    a = ctx.args
    if ctx.is_operator:
        # Showing signs nothing: every standard sighash type decodes, and the movement shows
        # each input's type with a WARNING for any but ALL. Approving one but ALL still needs
        # --allow-sighash.
        st, rebuilt = _verified(ctx, Decision.APPROVE, frozenset(SIGHASH_TYPES.values()))
        t = transfer_json(st.transfer)
        t["movement"] = movement_json(rebuilt.movement)
        t["statement_verified"] = True
        address = st.wallet.address
    else:
        tr = ctx.call(ctx.custody().GetTransfer, pb.GetTransferRequest(transfer_id=a.id))
        t = transfer_json(tr)
        address = ctx.call(ctx.custody().GetWallet,
                           pb.GetWalletRequest(wallet_id=tr.wallet_id)).address
    t["from_address"] = address
    ctx.emit(t, lambda: transfer_text(t, address)
             + ("statement:        rebuilt here from the raw transaction; it matches\n"
                if t.get("statement_verified") else ""))
    return 0


def operator_principal(ctx: Context) -> None:
    """The operator who decides: --as, else the stem of the key file's name."""
    if ctx.args.as_principal is None:
        stem = Path(ctx.args.key).stem
        if not is_valid_principal(stem):
            raise CliError(f"cannot tell the operator id from key file {ctx.args.key}; pass "
                           "--as ID")
        ctx.args.default_principal = stem
    if not ctx.is_operator:
        raise CliError(f"--as {ctx.principal}: approvals are made by operators, "
                       "pass --as OPERATOR_ID")


def cmd_transfer_decide(ctx: Context) -> int:
    a = ctx.args
    decision = Decision.APPROVE if a.decision == "approve" else Decision.REJECT
    operator_principal(ctx)
    if decision is Decision.REJECT and not a.reason.strip():
        raise CliError("transfer reject: --reason must not be empty")
    can_confirm(assume_yes=a.yes)  # without a terminal, refuse before fetching anything
    key = load_operator_key(a.key, a.passphrase_file)
    try:
        _, rebuilt = _verified(ctx, decision, _allowed_sighash(a.allow_sighash))
    except CliError as e:
        raise CliError(f"{e}; refusing to sign") from None
    shown = approval.render(rebuilt.context, rebuilt.movement, decision)
    if not ctx.args.json:
        sys.stdout.write(shown)
        sys.stdout.flush()
    elif not a.yes:
        sys.stderr.write(shown)
    confirm(f"{'Sign this approval?' if decision is Decision.APPROVE else 'Sign this rejection?'}",
            assume_yes=a.yes)
    signature = approval.sign_statement(key, rebuilt.statement)
    t = transfer_json(ctx.call(ctx.approval().SubmitApproval, pb.SubmitApprovalRequest(
        transfer_id=a.id, operator_id=ctx.principal,
        decision=pb.Decision.Value(decision.value), signature=signature,
        reason=a.reason or "", statement_sha256=approval.statement_digest(rebuilt.statement))))
    verb = "approved" if decision is Decision.APPROVE else "rejected"
    ctx.emit(t, lambda: f"{verb} as {ctx.principal}; " + transfer_summary(t))
    return 0


def cmd_transfer_cancel(ctx: Context) -> int:
    t = transfer_json(ctx.call(ctx.custody().CancelTransfer, pb.CancelTransferRequest(
        transfer_id=ctx.args.id, reason=ctx.args.reason or "")))
    ctx.emit(t, lambda: transfer_summary(t))
    return 0


def cmd_transfer_result(ctx: Context) -> int:
    t = transfer_json(ctx.call(ctx.custody().GetTransfer,
                               pb.GetTransferRequest(transfer_id=ctx.args.id)))
    if not (t["raw_tx"] or t["psbt"]):
        raise CliError(f"transfer {safe(t['id'])} has no signed result (state {t['state']})",
                       doc=t)
    if t["chain"] == "ethereum":
        human = f"{t['raw_tx']}\n"
    else:
        human = "".join(f"{v}\n" for v in (t["psbt"], t["raw_tx"]) if v)
    ctx.emit(t, human)
    return 0


def cmd_transfer_watch(ctx: Context) -> int:
    stream = ctx.custody().WatchTransfer(pb.WatchTransferRequest(transfer_id=ctx.args.id))
    last: pb.Transfer | None = None
    seen: tuple[int, str] | None = None
    try:
        for t in stream:
            last = t
            if not ctx.args.json and (t.state, t.remaining) != seen:
                sys.stdout.write(f"{fmt_time(t.updated_at_unix)} " + transfer_summary(
                    transfer_json(t)))
                sys.stdout.flush()
            seen = (t.state, t.remaining)
            if t.state in FINAL_STATES:
                break
    finally:
        stream.cancel()
    if last is None or last.state not in FINAL_STATES:
        raise CliError("the daemon ended the watch before the transfer reached a final state",
                       doc=None if last is None else transfer_json(last))
    doc = transfer_json(last)
    if ctx.args.json:
        ctx.emit(doc, "")
    if last.state != pb.SIGNED:
        why = f": {safe(last.failure)}" if last.failure else ""
        raise CliError(f"transfer {safe(last.id)} ended {doc['state']}{why}",
                       doc=doc if not ctx.args.json else None)
    return 0


def cmd_transfer_combine(ctx: Context) -> int:
    t = transfer_json(ctx.call(ctx.custody().CombinePsbt, pb.CombinePsbtRequest(
        transfer_id=ctx.args.id, psbt=read_file(ctx.args.psbt, "PSBT file"))))
    ctx.emit(t, lambda: transfer_summary(t))
    return 0


# ---------------------------------------------------------------- key

def cmd_key_import(ctx: Context) -> int:
    a = ctx.args
    case = a.case or a.wallet_spec
    if a.case and a.wallet_spec and a.case != a.wallet_spec:
        raise CliError("key import: the positional case reference and --case differ")
    if not case:
        raise CliError("key import: a case reference is required (--case REF)")
    if a.mnemonic and not a.path:
        raise CliError("key import: --mnemonic needs --path (e.g. m/84'/0'/0'/0/0)")
    if a.path and not a.mnemonic:
        raise CliError("key import: --path goes with --mnemonic")
    if a.passphrase_file and not a.mnemonic:
        raise CliError("key import: --passphrase-file is the BIP-39 passphrase of --mnemonic")
    req = pb.ImportKeyRequest(
        chain=CHAINS[a.chain], network=a.network or "", chain_ids=a.chain_id or [],
        script_type=SCRIPT_TYPES[a.script_type] if a.script_type else pb.SCRIPT_TYPE_UNSPECIFIED,
        case_ref=case, seizure_record=a.seizure_record, legal_basis=a.legal_basis or "",
        template=a.template or "")
    if a.wif:
        req.wif = read_text(a.wif, "WIF file").strip()
    elif a.hex:
        req.hex = read_text(a.hex, "hex key file").strip()
    else:
        req.mnemonic = " ".join(read_text(a.mnemonic, "mnemonic file").split())
        req.derivation_path = a.path
        if a.passphrase_file:
            req.passphrase = read_passphrase(a.passphrase_file).decode("utf-8", "strict")
    try:
        p = ctx.call(ctx.admin().ImportKey, req)
    finally:
        req.Clear()  # drop the secret from the message as soon as it is sent
    return emit_proposal(ctx, p)


def cmd_key_status(ctx: Context) -> int:
    s = to_dict(ctx.call(ctx.admin().KeyStatus, pb.KeyStatusRequest()))
    ctx.emit(s, lambda: kv([(k.replace("_", " "), v) for k, v in s.items()]))
    return 0


# ---------------------------------------------------------------- audit

def head_signature_ok(head: pb.AuditHead) -> bool:
    import coincurve
    from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature

    try:
        sig = audit.normalize_head_signature(bytes(head.signature))
        digest = audit.head_digest(head.instance_id, head.seq, bytes(head.hash))
        key = coincurve.PublicKey(bytes(head.audit_public_key))
        der = encode_dss_signature(int.from_bytes(sig[:32], "big"),
                                   int.from_bytes(sig[32:], "big"))
        return bool(key.verify(der, digest, hasher=None))
    except (SignerError, ValueError, TypeError):
        return False


def cmd_audit_head(ctx: Context) -> int:
    head = ctx.call(ctx.audit().GetHead, pb.GetHeadRequest())
    doc = to_dict(head)
    doc["signature_valid"] = head_signature_ok(head)
    ctx.emit(doc, lambda: kv([("instance", doc["instance_id"]), ("head seq", doc["seq"]),
                              ("head hash", doc["hash"]),
                              ("audit key", doc["audit_public_key"]),
                              ("signature", "valid" if doc["signature_valid"] else "INVALID")]))
    if not doc["signature_valid"]:
        raise CliError("the audit head signature does not verify under the daemon's audit key")
    return 0


def _export_header(data: bytes) -> dict[str, Any]:
    try:
        header = json.loads(data[:data.find(b"\n")].decode("ascii"))
        return header if isinstance(header, dict) else {}
    except (UnicodeDecodeError, ValueError):
        return {}


def cmd_audit_export(ctx: Context) -> int:
    dest = Path(ctx.args.file)
    if os.path.lexists(dest):
        raise CliError(f"refusing to overwrite {dest}")
    tmp = dest.with_name(f".{dest.name}.{os.getpid()}.partial")
    size = 0
    try:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o640)
    except OSError as e:
        raise CliError(f"cannot write {dest}: {e.strerror}") from None
    try:
        with os.fdopen(fd, "wb") as f:
            for chunk in ctx.audit().Export(pb.ExportRequest()):
                f.write(chunk.data)
                size += len(chunk.data)
            f.flush()
            os.fsync(f.fileno())
        try:
            os.link(tmp, dest)  # never replaces a file that appeared meanwhile
        except FileExistsError:
            raise CliError(f"refusing to overwrite {dest}") from None
    finally:
        tmp.unlink(missing_ok=True)
    with open(dest, "rb") as f:
        header = _export_header(f.read(64 * 1024))
    doc = {"file": str(dest), "bytes": size, "count": header.get("count"),
           "head_seq": header.get("head_seq"), "head_hash": header.get("head_hash"),
           "instance_id": header.get("instance_id"), "checkpoints": header.get("checkpoints")}
    cps = "" if doc["checkpoints"] is None else f", {doc['checkpoints']} checkpoints"
    ctx.emit(doc, f"wrote {dest}: {size} bytes, {doc['count']} events, head seq "
                  f"{doc['head_seq']} hash {doc['head_hash']}{cps}\n")
    return 0


def cmd_audit_verify(ctx: Context) -> int:
    a = ctx.args
    data = read_file(a.file, "audit export", None)
    pinned_key = None
    if a.audit_key:
        try:
            pinned_key = bytes.fromhex(a.audit_key)
        except ValueError:
            raise CliError("--audit-key must be the hex of a compressed public key") from None
    try:
        result = audit.verify_export(data, audit_public_key=pinned_key,
                                     instance_id=a.instance_id)
    except SignerError as e:
        raise CliError(f"{a.file} is not a valid audit export: {e}",
                       doc={"ok": False, "file": a.file, "problem": str(e)}) from None
    header = _export_header(data)
    doc: dict[str, Any] = {"ok": result.ok, "file": a.file, "checked": result.checked,
                           "first_bad_seq": result.first_bad_seq, "problem": result.problem,
                           "count": header.get("count"), "head_seq": header.get("head_seq"),
                           "head_hash": header.get("head_hash"),
                           "instance_id": header.get("instance_id"),
                           "audit_public_key": header.get("audit_public_key"),
                           "key_pinned": pinned_key is not None,
                           "format": header.get("format"),
                           "checkpoints": result.checkpoints,
                           "bad_checkpoint": result.bad_checkpoint}
    v1 = header.get("format") == audit.EXPORT_FORMAT_V1
    extends = ""
    if result.ok and a.earlier:
        extends = _verify_extends(ctx, data, pinned_key, doc)
    if result.ok:
        note = "" if pinned_key else " (pass --audit-key to pin the key)"
        cps = ("no checkpoints (a v1 export)" if v1 else
               f"{result.checkpoints} checkpoint{'s' if result.checkpoints != 1 else ''} "
               "verified, the last at the head" if result.checkpoints else "no checkpoints")
        ctx.emit(doc, f"OK: {result.checked} events verified; head seq {doc['head_seq']} hash "
                      f"{doc['head_hash']}; instance {safe(doc['instance_id'])}; audit key "
                      f"{doc['audit_public_key']}; {cps}{extends}{note}\n")
        return 0
    doc["event"] = None
    where = ""
    if result.first_bad_seq is not None:
        where = f"seq {result.first_bad_seq}"
        events = audit.parse_export(data)[1]
        event = next((e for e in events if e.seq == result.first_bad_seq), None)
        if event is not None:
            where += f" ({safe(event.action)} {safe(event.object)} by {safe(event.actor)})"
            doc["event"] = {"seq": event.seq, "time": event.time, "actor": event.actor,
                            "action": event.action, "object": event.object}
    if ctx.args.json:
        ctx.emit(doc, "")
    if result.bad_checkpoint is not None:
        n = result.bad_checkpoint
        problem = result.problem.removeprefix(f"checkpoint {n}: ")
        raise CliError(f"{a.file}: audit checkpoint {n} is NOT valid"
                       + (f", first bad event {where}" if where else "")
                       + f": {problem}; {result.checkpoints} checkpoint"
                       f"{'s' if result.checkpoints != 1 else ''} verified before it")
    if not where:
        raise CliError(f"{a.file}: audit export is NOT valid: {result.problem}")
    raise CliError(f"{a.file}: audit chain is NOT valid: first bad event {where}: "
                   f"{result.problem}; {result.checked} events verified before it")


def _verify_extends(ctx: Context, data: bytes, pinned_key: bytes | None,
                    doc: dict[str, Any]) -> str:
    """--earlier: the earlier export verifies on its own and this one extends it (no event of
    it rewritten or dropped, no checkpoint of it replaced or rolled back). Returns the words for
    the OK line; raises CliError naming the first difference."""
    a = ctx.args
    earlier = read_file(a.earlier, "earlier audit export", None)
    try:
        before = audit.verify_export(earlier, audit_public_key=pinned_key,
                                     instance_id=a.instance_id)
        found = audit.verify_extends(earlier, data) if before.ok else before
    except SignerError as e:
        raise CliError(f"{a.earlier} is not a valid audit export: {e}") from None
    if not before.ok:
        raise CliError(f"{a.earlier}: the earlier audit export is NOT valid: {before.problem}")
    doc["extends"] = {"file": a.earlier, "ok": found.ok, "checked": found.checked,
                      "first_bad_seq": found.first_bad_seq,
                      "bad_checkpoint": found.bad_checkpoint, "problem": found.problem}
    if found.ok:
        return (f"; extends {a.earlier} ({found.checked} events, {found.checkpoints} "
                "checkpoints unchanged)")
    where = ""
    if found.first_bad_seq is not None:
        where = f" at seq {found.first_bad_seq}"
        event = next((e for e in audit.parse_export(earlier)[1]
                      if e.seq == found.first_bad_seq), None)
        if event is not None:
            where += (f" ({safe(event.action)} {safe(event.object)} by {safe(event.actor)} in "
                      "the earlier export)")
    doc["ok"] = False
    if ctx.args.json:
        ctx.emit(doc, "")
    raise CliError(f"{a.file}: audit export does NOT extend {a.earlier}{where}: "
                   f"{found.problem}; {found.checked} events matched before it")


def cmd_report(ctx: Context) -> int:
    a = ctx.args
    cat = CATEGORIES[a.category] if a.category else pb.CATEGORY_UNSPECIFIED
    resp = ctx.call(ctx.audit().Report, pb.ReportRequest(category=cat, case_ref=a.case or ""))
    try:
        doc = json.loads(resp.json)
    except ValueError:
        raise CliError("the daemon's report is not JSON") from None
    ctx.emit(doc, lambda: generic_text(doc))
    return 0


# ---------------------------------------------------------------- pki (offline)

def _state_config(ctx: Context) -> Config:
    if ctx.config is None:
        raise CliError("this command needs the state folder's config (--config FILE or "
                       "SIGNERD_CONFIG)")
    return ctx.config


def cmd_pki_issue(ctx: Context) -> int:
    """A client certificate for a newly registered operator or a service principal, from the
    offline development CA, into the state folder's pki/clients/."""
    from signerd import pki

    a = ctx.args
    cfg = _state_config(ctx)
    if not is_valid_principal(a.name):
        raise CliError(f"{a.name!r} is not a principal name (it must match "
                       f"{pki.PRINCIPAL_RE.pattern})")
    if a.days < 1:
        raise CliError("--days: at least 1")
    ca_cert = pki.load_cert(cfg.server.client_ca or cfg.base / "pki" / "ca.pem")
    ca_key = pki.load_ca_key(a.ca_key, ca_cert)
    key, cert = pki.issue_client(ca_key, ca_cert, a.name, days=a.days)
    key_path, cert_path = pki.write_client(cfg.base / "pki" / "clients", a.name, key, cert)
    fp = pki.fingerprint(cert)
    until = cert.not_valid_after_utc.strftime("%Y-%m-%d %H:%M UTC")
    ctx.emit({"principal": a.name, "certificate": str(cert_path), "key": str(key_path),
              "sha256": fp, "serial": f"{cert.serial_number:x}", "not_after": until},
             f"issued a client certificate for {a.name}: {cert_path} (key {key_path}, mode "
             f"0600), sha256 {fp}, valid until {until}\n")
    return 0


def cmd_pki_revoke(ctx: Context) -> int:
    """Append a certificate's SHA-256 fingerprint to the revocation list the config names; the
    daemon refuses the certificate from its next call."""
    from cryptography.hazmat.primitives.serialization import Encoding

    from signerd import pki

    a = ctx.args
    cfg = _state_config(ctx)
    path = cfg.server.revoked
    if path is None:
        raise CliError('the config names no revocation list: add revoked = "pki/revoked.txt" '
                       "under [server] and restart the daemon")
    who = ""
    if a.cert:
        cert = pki.load_cert(a.cert)
        fp = pki.fingerprint(cert)
        who = (f"principal {pki.principal_from_cert_der(cert.public_bytes(Encoding.DER)) or '?'}"
               f", serial {cert.serial_number:x}, ")
    else:
        fp = a.fingerprint.strip().lower().replace(":", "")
        if len(fp) != 64 or any(c not in "0123456789abcdef" for c in fp):
            raise CliError(f"--fingerprint: {a.fingerprint!r} is not a SHA-256 fingerprint "
                           "(64 hex digits)")
    current = pki.load_revocations(path) if path.exists() else pki.Revocations()
    doc = {"sha256": fp, "revocation_list": str(path)}
    if fp in current.fingerprints:
        ctx.emit(doc | {"already": True}, f"certificate sha256 {fp} is already revoked\n")
        return 0
    reason = " ".join((a.reason or "").split())[:200]
    when = datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    line = f"{fp}  # {who}revoked {when}{': ' + reason if reason else ''}\n"
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    with os.fdopen(fd, "a", encoding="utf-8") as f:
        if f.tell() == 0:
            f.write(pki.REVOKED_HEADER)
        elif not path.read_bytes().endswith(b"\n"):
            f.write("\n")
        f.write(line)
        f.flush()
        os.fsync(f.fileno())
    ctx.emit(doc | {"already": False},
             f"revoked certificate sha256 {fp} ({who}listed in {path}); the daemon refuses it "
             "from its next call\n")
    return 0


def cmd_health(ctx: Context) -> int:
    from grpc_health.v1 import health_pb2, health_pb2_grpc

    stub = health_pb2_grpc.HealthStub(ctx.channel())
    resp = ctx.call(stub.Check, health_pb2.HealthCheckRequest(service=ctx.args.service))
    status = health_pb2.HealthCheckResponse.ServingStatus.Name(resp.status)
    ctx.emit({"service": ctx.args.service, "status": status}, f"{status}\n")
    if status != "SERVING":
        raise CliError(f"daemon is {status}")
    return 0


# ---------------------------------------------------------------- argument parsing

class Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        where = self.prog.removeprefix(PROG).strip()
        raise UsageError(f"{where}: {message}" if where else message)


def _uint(text: str) -> int:
    try:
        value = int(text, 0)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not an integer") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"{text!r} is negative")
    return value


def _positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if not value > 0:
        raise argparse.ArgumentTypeError("must be positive")
    return value


def _state(text: str) -> str:
    name = text.upper().replace("-", "_")
    if name not in STATES:
        raise argparse.ArgumentTypeError(f"unknown state {text!r} ({', '.join(STATES)})")
    return name


def build_parser() -> Parser:
    p = Parser(prog=PROG, description="Operate a signerd custody signing daemon.")
    p.add_argument("--config", help="signerd.toml (default: $SIGNERD_CONFIG, else "
                                    "./signerd-state/signerd.toml)")
    p.add_argument("--server", metavar="HOST:PORT", help="daemon address instead of the config's")
    p.add_argument("--ca", dest="tls_ca", metavar="FILE",
                   help="CA certificate (default: STATE/pki/ca.pem)")
    p.add_argument("--cert", dest="tls_cert", metavar="FILE", help="client certificate")
    p.add_argument("--key", dest="tls_key", metavar="FILE", help="client private key")
    p.add_argument("--insecure", action="store_true", help="plaintext gRPC (test daemons only)")
    p.add_argument("--as", dest="as_principal", metavar="PRINCIPAL",
                   help="platform, admin, auditor or an operator id (default: the command's "
                        "own principal)")
    p.add_argument("--json", action="store_true", help="print one JSON document")
    p.add_argument("--timeout", type=_positive_float, default=30.0, metavar="SECONDS")
    p.set_defaults(default_principal="platform")
    commands = p.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def decision_commands(parent: argparse._SubParsersAction, what: str,
                          func: Callable[[Context], int]) -> list[Parser]:
        """``approve`` and ``reject`` of an act, signed with the operator's own key."""
        out = []
        for name in ("approve", "reject"):
            sp = cmd(parent, name, func, f"{name} a {what} with your operator key", "platform")
            sp.add_argument("id")
            sp.add_argument("--key", required=True, metavar="FILE", help="operator private key")
            sp.add_argument("--passphrase-file", metavar="FILE")
            sp.add_argument("--reason", required=name == "reject", default="", metavar="TEXT")
            sp.add_argument("--yes", action="store_true", help="sign without asking")
            sp.set_defaults(decision=name)
            out.append(sp)
        return out

    def group(name: str, help: str) -> argparse._SubParsersAction:
        sub = commands.add_parser(name, help=help)
        return sub.add_subparsers(dest="sub", required=True, metavar="SUBCOMMAND")

    def cmd(parent: argparse._SubParsersAction, name: str, func: Callable[[Context], int],
            help: str, principal: str = "platform") -> Parser:
        sp = parent.add_parser(name, help=help)
        sp.add_argument("--json", action="store_true", default=argparse.SUPPRESS,
                        help=argparse.SUPPRESS)
        sp.set_defaults(func=func, default_principal=principal)
        return sp

    # wallet
    g = group("wallet", "custody wallets")
    sp = cmd(g, "create", cmd_wallet_create, "create a wallet with keys made in the HSM")
    sp.add_argument("--chain", required=True, choices=sorted(CHAINS))
    sp.add_argument("--network")
    sp.add_argument("--chain-id", type=_uint, action="append", metavar="N")
    sp.add_argument("--category", required=True, choices=list(CATEGORIES))
    sp.add_argument("--case", required=True, metavar="REF")
    sp.add_argument("--legal-basis", metavar="REF",
                    help="the court decision: 'COURT; CASE NUMBER; YYYY-MM-DD' (optional)")
    sp.add_argument("--template", metavar="NAME",
                    help="a governance-approved policy template (see: signerctl template list)")
    sp.add_argument("--policy", metavar="FILE_OR_NAME",
                    help="the wallet's initial policy: a template's name, or a file holding a "
                         "template's exact text")
    sp.add_argument("--script-type", choices=[s for s in SCRIPT_TYPES if s != "eoa"])
    sp.add_argument("--multisig", type=_uint, metavar="M")
    sp.add_argument("--hsm-keys", type=_uint, metavar="K")
    sp.add_argument("--cosigner", action="append", metavar="PUBKEY_OR_XPUB")
    sp.add_argument("--label")
    sp = cmd(g, "list", cmd_wallet_list, "list wallets")
    sp.add_argument("--category", choices=list(CATEGORIES))
    sp.add_argument("--case", metavar="REF")
    sp = cmd(g, "show", cmd_wallet_show, "show a wallet")
    sp.add_argument("id")
    for action in ("freeze", "unfreeze"):
        sp = cmd(g, action, cmd_wallet_freeze, f"{action} a wallet by court order", "admin")
        sp.add_argument("id")
        sp.add_argument("--order", required=True, metavar="REF")
        sp.set_defaults(action=action)

    # operator
    g = group("operator", "operators and their keys")
    sp = cmd(g, "keygen", cmd_operator_keygen, "make an Ed25519 operator key pair (offline)")
    sp.add_argument("--out", required=True, metavar="FILE")
    sp.add_argument("--passphrase-file", metavar="FILE")
    sp = cmd(g, "add", cmd_operator_add, "register an operator", "admin")
    sp.add_argument("id")
    sp.add_argument("--role", required=True, action="extend", nargs="+", metavar="ROLE")
    sp.add_argument("--pubkey", required=True, metavar="FILE")
    for action, help in (("revoke", "propose to revoke an operator for good"),
                         ("suspend", "suspend an operator at once (reinstated by a proposal)"),
                         ("reinstate", "propose to reinstate a suspended operator")):
        sp = cmd(g, action, cmd_operator_revoke, help, "admin")
        sp.add_argument("id")
        sp.add_argument("--reason", metavar="TEXT")
        sp.set_defaults(action=action)
    sp = cmd(g, "roles", cmd_operator_roles, "propose an operator's new roles", "admin")
    sp.add_argument("id")
    sp.add_argument("--role", required=True, action="extend", nargs="+", metavar="ROLE")
    cmd(g, "list", cmd_operator_list, "list operators", "admin")

    # policy
    g = group("policy", "wallet policies")
    sp = cmd(g, "set", cmd_policy_set,
             "propose a wallet's next policy: a TOML file, or a template", "admin")
    sp.add_argument("wallet")
    sp.add_argument("file", nargs="?", help="the policy TOML (omit with --template)")
    sp.add_argument("--template", metavar="NAME", help="a governance-approved template")
    for name, func, help in (("show", cmd_policy_show, "show a wallet's current policy"),
                             ("history", cmd_policy_history, "list a wallet's policy versions")):
        sp = cmd(g, name, func, help, "admin")
        sp.add_argument("wallet")

    # token registry
    g = group("token", "the governance-approved token registry")
    sp = cmd(g, "set", cmd_token_set, "propose a new or changed token entry", "admin")
    sp.add_argument("--chain-id", required=True, type=_uint, metavar="N")
    sp.add_argument("--address", required=True, metavar="0x..", help="the token contract")
    sp.add_argument("--symbol", required=True, metavar="S")
    sp.add_argument("--decimals", required=True, type=_uint, metavar="D")
    sp.add_argument("--standard", default="erc20", choices=["erc20"])
    sp = cmd(g, "list", cmd_token_list, "list the registered tokens", "admin")
    sp.add_argument("--chain-id", type=_uint, metavar="N")

    # templates and governance
    g = group("template", "governance-approved policy templates")
    sp = cmd(g, "list", cmd_template_list, "list the templates", "admin")
    sp.set_defaults(name="")
    sp = cmd(g, "show", cmd_template_list, "show a template's text", "admin")
    sp.add_argument("name")
    sp = cmd(g, "set", cmd_template_set, "propose a new or changed template", "admin")
    sp.add_argument("name")
    sp.add_argument("file")
    g = group("governance", "the governance policy and the chain of authority")
    cmd(g, "show", cmd_governance_show, "genesis, ledger head, governance policy", "admin")
    sp = cmd(g, "set", cmd_governance_set, "propose a new governance policy", "admin")
    sp.add_argument("file")

    # proposals
    g = group("proposal", "governance proposals")
    sp = cmd(g, "list", cmd_proposal_list, "list proposals", "admin")
    sp.add_argument("--state", choices=["PENDING_APPROVAL", "APPROVED", "REJECTED", "EXPIRED",
                                        "CANCELLED", "FAILED"], type=str.upper)
    sp = cmd(g, "show", cmd_proposal_show, "show a proposal", "admin")
    sp.add_argument("id")
    decision_commands(g, "proposal", cmd_proposal_decide)
    sp = cmd(g, "cancel", cmd_proposal_cancel,
             "withdraw a pending proposal you submitted (others reject it)", "admin")
    sp.add_argument("id")
    sp.add_argument("--reason", metavar="TEXT")

    # transfer
    g = group("transfer", "transfers")
    sp = cmd(g, "submit", cmd_transfer_submit, "submit a transaction to be signed")
    sp.add_argument("wallet")
    tx = sp.add_mutually_exclusive_group(required=True)
    tx.add_argument("--psbt", metavar="FILE", help="PSBT, binary or base64")
    tx.add_argument("--eth-tx", metavar="FILE.json", help="EIP-1559 transaction as JSON")
    sp.add_argument("--replaces", metavar="ID")
    sp.add_argument("--legal-basis", metavar="REF",
                    help="the court decision: 'COURT; CASE NUMBER; YYYY-MM-DD'")
    sp.add_argument("--category-change", choices=sorted(CATEGORY_CHANGES), metavar="KIND")
    sp.add_argument("--idempotency-key", metavar="K")
    sp = cmd(g, "list", cmd_transfer_list, "list transfers (an operator: those waiting)")
    sp.add_argument("--state", type=_state, metavar="STATE")
    sp.add_argument("--wallet", metavar="ID")
    sp = cmd(g, "show", cmd_transfer_show, "show a transfer and what it moves")
    sp.add_argument("id")
    # Accepted as before; show decodes every standard sighash type and warns of any but ALL.
    sp.add_argument("--allow-sighash", action="append", choices=sorted(SIGHASH_TYPES),
                    help=argparse.SUPPRESS)
    for sp in decision_commands(g, "transfer", cmd_transfer_decide):
        sp.add_argument("--allow-sighash", action="append", choices=sorted(SIGHASH_TYPES),
                        metavar="TYPE", help="also accept this Bitcoin sighash type")
    sp = cmd(g, "cancel", cmd_transfer_cancel, "cancel a live transfer")
    sp.add_argument("id")
    sp.add_argument("--reason", metavar="TEXT")
    sp = cmd(g, "result", cmd_transfer_result, "print the signed transaction")
    sp.add_argument("id")
    sp = cmd(g, "watch", cmd_transfer_watch, "follow a transfer until it ends")
    sp.add_argument("id")
    sp = cmd(g, "combine", cmd_transfer_combine, "add cosigners' signatures from a PSBT")
    sp.add_argument("id")
    sp.add_argument("--psbt", required=True, metavar="FILE")

    # key
    g = group("key", "HSM keys")
    sp = cmd(g, "import", cmd_key_import, "import a seized key into the HSM", "admin")
    sp.add_argument("wallet_spec", nargs="?", metavar="CASE_REF",
                    help="the case reference (same as --case)")
    sp.add_argument("--chain", required=True, choices=sorted(CHAINS))
    sp.add_argument("--network")
    sp.add_argument("--chain-id", type=_uint, action="append", metavar="N")
    sp.add_argument("--case", metavar="REF")
    sp.add_argument("--seizure-record", required=True, metavar="REF")
    sp.add_argument("--legal-basis", metavar="REF",
                    help="the court decision: 'COURT; CASE NUMBER; YYYY-MM-DD' (optional)")
    sp.add_argument("--script-type", choices=list(SCRIPT_TYPES))
    sp.add_argument("--template", metavar="NAME", help="policy template (default: seized-sweep)")
    secret = sp.add_mutually_exclusive_group(required=True)
    secret.add_argument("--wif", metavar="FILE")
    secret.add_argument("--hex", metavar="FILE")
    secret.add_argument("--mnemonic", metavar="FILE")
    sp.add_argument("--path", metavar="PATH", help="BIP-32 derivation path for --mnemonic")
    sp.add_argument("--passphrase-file", metavar="FILE", help="BIP-39 passphrase")
    cmd(g, "status", cmd_key_status, "HSM and token status", "admin")

    # audit
    g = group("audit", "the audit chain")
    sp = cmd(g, "export", cmd_audit_export, "export the audit chain to a file", "auditor")
    sp.add_argument("file")
    sp = cmd(g, "verify", cmd_audit_verify, "verify an export offline: the signed head, the "
             "chain and every HSM-signed checkpoint")
    sp.add_argument("file")
    sp.add_argument("--audit-key", metavar="HEX", help="the daemon's audit key, known out of band")
    sp.add_argument("--instance-id", metavar="ID")
    sp.add_argument("--earlier", metavar="FILE",
                    help="an export kept from before: check that this one extends it")
    cmd(g, "head", cmd_audit_head, "show the signed head of the chain", "auditor")

    sp = cmd(commands, "report", cmd_report, "holdings and activity per category and case",
             "auditor")
    sp.add_argument("--category", choices=list(CATEGORIES))
    sp.add_argument("--case", metavar="REF")
    # pki (offline: the state folder's files only)
    g = group("pki", "client certificates of the development CA (offline)")
    sp = cmd(g, "issue", cmd_pki_issue, "issue a client certificate for a principal into the "
             "state folder's pki/clients/, from the CA key kept offline")
    sp.add_argument("name", help="an operator id, or platform, admin or auditor")
    sp.add_argument("--ca-key", required=True, metavar="FILE",
                    help="the CA's private key (signerd init wrote it beside the state folder)")
    sp.add_argument("--days", type=_uint, default=825, metavar="N")
    sp = cmd(g, "revoke", cmd_pki_revoke, "add a client certificate to the revocation list")
    which = sp.add_mutually_exclusive_group(required=True)
    which.add_argument("cert", nargs="?", metavar="CERT.pem")
    which.add_argument("--fingerprint", metavar="HEX", help="its SHA-256 fingerprint instead")
    sp.add_argument("--reason", metavar="TEXT")

    sp = cmd(commands, "health", cmd_health, "ask the daemon whether it is serving")
    sp.add_argument("--service", default="", help=argparse.SUPPRESS)
    return p


# ---------------------------------------------------------------- main

def _one_line(text: str) -> str:
    return " ".join(text.split()) or "failed"


def _rpc_error(e: grpc.RpcError) -> CliError:
    code = e.code() if hasattr(e, "code") else None
    name = code.name if code is not None else "UNKNOWN"
    details = (e.details() if hasattr(e, "details") else None) or ""
    reason = ""
    for key, value in (e.trailing_metadata() or ()) if hasattr(e, "trailing_metadata") else ():
        if key == "signerd-reason":
            reason = value if isinstance(value, str) else value.decode("ascii", "replace")
    doc = {"error": {"code": name, "reason": reason, "message": details}}
    return CliError(f"{name}: {details}" if details else name, doc=doc)


def main(argv: list[str] | None = None) -> int:
    args = None
    ctx = None
    try:
        try:
            args = build_parser().parse_args(argv)
        except SystemExit as e:  # --help
            return e.code if isinstance(e.code, int) else 0
        ctx = Context(args)
        return int(args.func(ctx))
    except grpc.RpcError as e:
        err = _rpc_error(e)
    except CliError as e:
        err = e
    except SignerError as e:
        err = CliError(str(e), doc={"error": {"code": e.status.value, "reason": e.reason,
                                              "message": str(e)}})
    except OSError as e:
        name = f" {e.filename}" if e.filename else ""
        err = CliError(f"{e.strerror or e}{':' if name else ''}{name}")
    except KeyboardInterrupt:
        err = CliError("interrupted", status=130)
    finally:
        if ctx is not None:
            ctx.close()
    if args is not None and getattr(args, "json", False) and err.doc is not None:
        sys.stdout.write(json.dumps(err.doc, indent=2) + "\n")
    sys.stderr.write(f"{PROG}: {_one_line(str(err))}\n")
    return err.status


if __name__ == "__main__":
    sys.exit(main())
