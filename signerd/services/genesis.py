"""The genesis of a chain of authority: committing it to the store and pinning it in the HSM
(``commit_genesis``, used by every ``signerd init``), and a production genesis in three steps.

In production nobody at the install holds an operator's private key: ``signerd init
--production`` takes the initial operators' public keys, the governance policy and the
templates, generates the audit key in the HSM and writes a genesis request (the document and
its digest); each operator checks it and signs it on their own machine (``signerd genesis
sign``); ``signerd genesis seal`` verifies that every initial operator approved and starts the
chain of authority. The digest is the genesis pin: it goes into the config, and the HSM token
pins it too.
"""
from __future__ import annotations

import datetime as dt
from importlib import resources
import json
import os
import time
import tomllib
from pathlib import Path
from typing import Any

from signerd.adapters import config as C
from signerd.core import chain_registry as CR
from signerd.adapters.hsm import Keystore
from signerd.adapters.store.factory import open_store
from signerd.core import authority as AU
from signerd.core.anchor import GENESIS_LABEL, Anchors
from signerd.core.approval import SignedDecision, genesis_statement, signature_valid
from signerd.core.errors import InvalidArgument, InvalidKey, InvalidPolicy, SignerError
from signerd.core.model import Decision
from signerd.core.operator_keys import MAX_KEY_FILE, fingerprint, load_public_pem

REQUEST_FORMAT = "signerd-genesis-request/v1"
APPROVAL_FORMAT = "signerd-genesis-approval/v1"
# No one person may be a governance quorum: every kind of proposal needs this many operators.
MIN_GOVERNANCE_APPROVERS = 2


def commit_genesis(entry: Any, store_url: str, keystore: Any) -> bytes:
    """Start a chain of authority: the genesis entry (its document approved by every initial
    operator) written as the first entry of the store's authority ledger, with its audit
    events; then its digest pinned in an HSM data object that can be neither changed nor
    destroyed, and the ledger's first monotonic anchor written beside it
    (signerd.core.anchor). Refuses a store that already has a genesis. Returns the digest."""
    doc = entry.body
    digest = AU.genesis_digest(doc)
    AU.start(entry, digest)  # exactly what the daemon will check
    instance_id = doc["instance_id"]
    audit_key_id = doc["audit_key"]["key_id"]
    store = open_store(store_url)
    try:
        with store.transaction() as tx:
            if tx.authority_head()[0] != 0:
                raise SignerError("the store already has a genesis; refusing to start a "
                                  "second chain of authority in it")
            tx.set_meta("instance_id", instance_id)
            tx.set_meta("audit_key_id", audit_key_id)
            tx.set_meta("genesis", digest.hex())
            tx.append_authority(entry)
            tx.append_audit("signerd-init", "instance.created", instance_id, {})
            tx.append_audit("signerd-init", "genesis", digest.hex(), {
                "operators": sorted(o["id"] for o in doc["operators"]),
                "templates": sorted(doc["templates"]),
                "audit_public_key": doc["audit_key"]["public_key"]})
            for o in doc["operators"]:
                tx.insert_operator(o["id"], o["roles"], o["public_key_pem"])
                tx.append_audit("signerd-init", "operator.registered", o["id"], {
                    "roles": o["roles"],
                    "fingerprint": fingerprint(load_public_pem(o["public_key_pem"].encode()))})
    finally:
        store.close()
    keystore.create_data(GENESIS_LABEL, digest)
    # The ledger's first anchor: from here on it only moves forward (signerd.core.anchor).
    Anchors(keystore, instance_id).advance_ledger(entry.seq, entry.hash)
    return digest


def _read_operator_key(path: Path, op_id: str) -> str:
    """An initial operator's public key (PEM, Ed25519 or P-256) from ``path``; a private key is
    refused."""
    try:
        data = path.read_bytes()[:MAX_KEY_FILE + 1]
    except OSError as e:
        raise SignerError(f"operator {op_id}: public key file {path} cannot be read "
                          f"({e.strerror})") from None
    if b"PRIVATE KEY" in data:
        raise SignerError(f"operator {op_id}: {path} is a private key; give the operator's public "
                          "key (signerctl operator keygen writes it beside the key, as .pub): the "
                          "private key never leaves its operator")
    try:
        load_public_pem(data)
    except InvalidKey as e:
        raise SignerError(f"operator {op_id}: {path}: {e.message}") from None
    return data.decode("ascii")


def parse_operator_spec(spec: str, base: Path = Path(".")) -> dict[str, Any]:
    """``ID:ROLE[,ROLE...]:PUBKEY.pem`` (one --operator of init --production)."""
    parts = spec.split(":", 2)
    if len(parts) != 3 or not all(parts):
        raise SignerError(f"--operator {spec!r}: expected ID:ROLE[,ROLE...]:PUBKEY.pem, e.g. "
                          "alice:admin,custody_officer:alice.pub")
    op_id, roles, key = parts
    return {"id": op_id, "roles": [r.strip() for r in roles.split(",") if r.strip()],
            "public_key_pem": _read_operator_key(base / key, op_id)}


def read_operators_file(path: Path) -> list[dict[str, Any]]:
    """The initial operators listed in a TOML file, one ``[[operator]]`` table each with ``id``,
    ``roles`` and ``public_key`` (a PEM file, relative to this file), and optionally
    ``token_held`` (the device the operator declares the key held on: the governance policy's
    hardware_keys roles need it)."""
    try:
        doc = tomllib.loads(path.read_text(encoding="utf-8"))
    except OSError as e:
        raise SignerError(f"--operators {path} cannot be read ({e.strerror})") from None
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as e:
        raise SignerError(f"--operators {path} is not valid TOML: {e}") from None
    items = doc.get("operator")
    if set(doc) != {"operator"} or not isinstance(items, list) or not items:
        raise SignerError(f"--operators {path}: expected [[operator]] tables (id, roles, "
                          "public_key) and nothing else")
    out = []
    for i, item in enumerate(items, 1):
        if not isinstance(item, dict) or not {"id", "roles", "public_key"} <= set(item) or \
                not set(item) <= {"id", "roles", "public_key", "token_held"} or \
                not isinstance(item["id"], str) or not isinstance(item["public_key"], str) or \
                not isinstance(item["roles"], list) or \
                not isinstance(item.get("token_held", ""), str):
            raise SignerError(f"--operators {path}: operator #{i} needs exactly id, roles (a "
                              "list) and public_key (a file), and optionally token_held (text)")
        out.append({"id": item["id"], "roles": item["roles"],
                    "public_key_pem": _read_operator_key(path.parent / item["public_key"],
                                                         item["id"]),
                    **({"token_held": item["token_held"]} if "token_held" in item else {})})
    return out


def check_production_operators(operators: list[dict[str, Any]], governance: Any) -> None:
    """At least two operators, each named once, with a key of their own and roles the
    governance policy knows."""
    if not operators:
        raise SignerError("init --production: name the initial operators (--operator "
                          "ID:ROLE[,ROLE...]:PUBKEY.pem, repeated, or --operators FILE); a "
                          "production state has no demo operators")
    seen: dict[str, str] = {}
    keys: dict[str, str] = {}
    for o in operators:
        op_id = o["id"]
        if not AU.OPERATOR_ID.fullmatch(op_id):
            raise SignerError(f"operator {op_id!r}: not an operator id ({AU.OPERATOR_ID.pattern})")
        if op_id in seen:
            raise SignerError(f"operator {op_id} is named twice")
        seen[op_id] = op_id
        known = ", ".join(sorted(governance.roles))
        if not o["roles"]:
            raise SignerError(f"operator {op_id}: no role given (the governance policy's roles: "
                              f"{known})")
        unknown = [r for r in o["roles"] if not isinstance(r, str) or r not in governance.roles]
        if unknown:
            raise SignerError(f"operator {op_id}: role {unknown[0]!r} is not a role of the "
                              f"governance policy ({known})")
        digest = AU.key_digest(o["public_key_pem"])
        if digest in keys:
            raise SignerError(f"operators {keys[digest]} and {op_id} have the same public key; "
                              "one key serves one identity")
        keys[digest] = op_id


def check_production_governance(text: str, source: str) -> Any:
    """The governance policy of a production genesis: it parses, and no kind of proposal can be
    decided by fewer than MIN_GOVERNANCE_APPROVERS distinct operators."""
    try:
        policy = AU.parse_governance(text)
    except InvalidPolicy as e:
        raise SignerError(f"--governance {source}: {e.message}") from None
    for kind in AU.KINDS:
        req = policy.requirement_for(kind)
        if req.approvers < MIN_GOVERNANCE_APPROVERS:
            raise SignerError(
                f"--governance {source}: {kind} proposals need only {req.describe()}; a "
                f"production genesis needs at least {MIN_GOVERNANCE_APPROVERS} distinct "
                "operators for every kind, so that no one person is a governance quorum")
    return policy


def read_chains(path: Path | None) -> list[dict[str, Any]]:
    """The chain registry entries of a production genesis: the TOML file ``path`` of
    [[chain]] tables, or the shipped ``chains.toml``."""
    try:
        text = (path.read_text(encoding="utf-8") if path is not None else
                (resources.files("signerd") / "templates" / "chains.toml").read_text(
                    encoding="utf-8"))
    except OSError as e:
        raise SignerError(f"--chains {path} cannot be read ({e.strerror})") from None
    try:
        return [CR.chain_json(c) for c in CR.parse_chains_toml(text, str(path or "chains.toml"))]
    except InvalidArgument as e:
        raise SignerError(f"--chains: {e.message}") from None


def read_templates(folder: Path) -> dict[str, str]:
    """The policy templates of a production genesis: every ``*.toml`` of ``folder``, by stem."""
    try:
        files = sorted(folder.glob("*.toml")) if folder.is_dir() else None
    except OSError:
        files = None
    if files is None:
        raise SignerError(f"--templates {folder} is not a folder")
    if not files:
        raise SignerError(f"--templates {folder} holds no policy template (*.toml); start from "
                          "the ones signerd ships (signerd/templates/) and review them")
    return {f.stem: f.read_text(encoding="utf-8") for f in files}


def _keystore_for(cfg: Any) -> Any:
    """The HSM keystore a config names (as the daemon opens it), for one-off ceremonies."""
    uri = cfg.hsm.token if cfg.hsm.token.startswith("pkcs11:") else None
    return Keystore(cfg.hsm.module, token_uri=uri, token_label=None if uri else cfg.hsm.token,
                    pin_file=cfg.hsm.pin_file, concurrency="serialized", pool_size=1,
                    env={"SOFTHSM2_CONF": str(cfg.hsm.softhsm_conf)}
                    if cfg.hsm.softhsm_conf else None, call_timeout=cfg.hsm.call_timeout)


def _production_config(config_path: str) -> Any:
    """A config fit for a production genesis: TLS on, no genesis pinned yet."""
    cfg = C.load(config_path)
    if cfg.server.insecure:
        raise SignerError(f"{cfg.path}: [server] insecure = true is for development; a "
                          "production config names tls_cert, tls_key and client_ca")
    if cfg.genesis:
        raise SignerError(f"{cfg.path} already pins genesis {cfg.genesis.hex()}; a production "
                          "genesis starts a new instance: leave [governance] genesis empty "
                          "until `signerd genesis seal` prints it")
    return cfg


def _no_genesis_yet(cfg: Any, keystore: Any) -> None:
    """The store and the HSM token of ``cfg`` serve no instance yet."""
    url = cfg.store_url
    if not (url.startswith("sqlite:///") and not Path(url[len("sqlite:///"):]).exists()):
        store = open_store(url)  # (a SQLite file is made only by the seal)
        try:
            with store.read() as tx:
                if tx.authority_head()[0] != 0:
                    raise SignerError("the store already has a genesis; refusing to start a "
                                      "second chain of authority in it")
        finally:
            store.close()
    pinned = keystore.read_data(GENESIS_LABEL)
    if pinned:
        raise SignerError(f"the HSM token already pins genesis {pinned[0].hex()}: one token "
                          "serves one instance")


def init_production(config_path: str, *, operators: list[dict[str, Any]], governance: Path | None,
                    templates: Path | None, out: Path, chains: Path | None = None) -> bytes:
    """Stage one of a production genesis: check the operators, the governance policy and the
    templates, generate the audit key in the config's HSM, and write the genesis request
    ``out`` (the document and its digest) for the operators to sign. Creates no operator key,
    no certificate and no demo policy. Returns the digest."""
    if governance is None:
        raise SignerError("init --production: --governance FILE is required: the governance "
                          "policy says who approves a change to the rules (signerd ships no "
                          "production default)")
    if templates is None:
        raise SignerError("init --production: --templates DIR is required: the policy "
                          "templates wallets get (review the ones signerd ships in "
                          "signerd/templates/ and copy those you keep)")
    try:
        gov_text = governance.read_text(encoding="utf-8")
    except OSError as e:
        raise SignerError(f"--governance {governance} cannot be read ({e.strerror})") from None
    policy = check_production_governance(gov_text, str(governance))
    check_production_operators(operators, policy)
    texts = read_templates(templates)
    chain_entries = read_chains(chains)
    cfg = _production_config(config_path)
    default = cfg.default_policy.removesuffix(".toml")
    if default not in texts:
        raise SignerError(f"{cfg.path}: [policies] default = {cfg.default_policy!r} is not among "
                          f"the templates in {templates} ({', '.join(sorted(texts))})")
    if out.exists() or out.is_symlink():
        raise SignerError(f"{out} already exists; refusing to overwrite it")
    keystore = _keystore_for(cfg)
    keystore.open()
    try:
        _no_genesis_yet(cfg, keystore)
        # Checked before the audit key is made: an invalid document makes nothing.
        try:
            AU.make_genesis(instance_id=cfg.instance_id, created_at=0, operators=operators,
                            governance=gov_text, templates=texts, audit_key_id="check",
                            audit_public_key=b"\2" * 33, chains=chain_entries)
        except (InvalidArgument, SignerError) as e:
            raise SignerError(f"the genesis would not verify: {e.message}") from None
        audit_key = keystore.generate_key("signerd-audit")
    finally:
        keystore.close()
    doc = AU.make_genesis(instance_id=cfg.instance_id, created_at=int(time.time()),
                          operators=operators, governance=gov_text, templates=texts,
                          audit_key_id=audit_key.key_id, audit_public_key=audit_key.public_key,
                          chains=chain_entries)
    digest = AU.genesis_digest(doc)
    request = {"format": REQUEST_FORMAT, "digest": digest.hex(), "genesis": doc}
    fd = os.open(out, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        f.write(json.dumps(request, indent=1, sort_keys=True) + "\n")
    return digest


def _read_document(path: Path, what: str, fmt: str) -> dict[str, Any]:
    """A JSON document of format ``fmt`` from ``path``; SignerError naming ``what`` it is not."""
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
    except OSError as e:
        raise SignerError(f"{path} cannot be read ({e.strerror})") from None
    except (ValueError, UnicodeDecodeError):
        raise SignerError(f"{path} is not a {what} (not JSON)") from None
    if not isinstance(doc, dict) or doc.get("format") != fmt:
        raise SignerError(f"{path} is not a {what} ({fmt})")
    return doc


def read_request(path: Path) -> tuple[dict[str, Any], bytes]:
    """A genesis request (init --production): its document, checked as the daemon will check
    it, and its digest, which must be the document's."""
    request = _read_document(path, "genesis request", REQUEST_FORMAT)
    if not isinstance(request.get("genesis"), dict):
        raise SignerError(f"{path} is not a genesis request ({REQUEST_FORMAT})")
    doc = request["genesis"]
    try:
        again = AU.make_genesis(
            instance_id=doc["instance_id"], created_at=doc["created_at"],
            operators=doc["operators"], governance=doc["governance"],
            templates=doc["templates"], audit_key_id=doc["audit_key"]["key_id"],
            audit_public_key=bytes.fromhex(doc["audit_key"]["public_key"]),
            tokens=doc.get("tokens", ()), chains=doc.get("chains", ()))
    except (KeyError, TypeError, ValueError) as e:
        raise SignerError(f"{path}: the genesis document is malformed ({e})") from None
    except (InvalidArgument, SignerError) as e:
        raise SignerError(f"{path}: the genesis does not verify: {e.message}") from None
    digest = AU.genesis_digest(again)
    if again != doc or request.get("digest") != digest.hex():
        raise SignerError(f"{path}: its digest is not its document's ({digest.hex()}): the "
                          "request was altered")
    return doc, digest


def render_genesis(doc: dict[str, Any], digest: bytes, you: str = "") -> str:
    """What an operator reads before signing a genesis: every field of the document."""
    when = dt.datetime.fromtimestamp(doc["created_at"], dt.timezone.utc)
    lines = [f"genesis {digest.hex()}", f"  instance    {doc['instance_id']}",
             f"  created     {when.strftime('%Y-%m-%dT%H:%M:%SZ')}",
             f"  audit key   {doc['audit_key']['key_id']} "
             f"(public {doc['audit_key']['public_key']})", "  operators"]
    for o in doc["operators"]:
        fp = fingerprint(load_public_pem(o["public_key_pem"].encode()))
        mark = "   <- you" if o["id"] == you else ""
        lines.append(f"    {o['id']:<16} key {fp}  roles {', '.join(o['roles'])}{mark}")
        if o.get("token_held"):
            lines.append(f"    {'':<16} key held on {AU.safe_text(o['token_held'])} (declared, "
                         "not attested by the device)")
    lines.append("  templates")
    for name, text in doc["templates"].items():
        lines.append(f"    {name:<24} sha256 {AU.sha256_hex(text)}")
    for t in doc.get("tokens", []):
        lines.append(f"  token       {t}")
    for c in doc.get("chains", []):
        lines.append(f"  chain       {AU.safe_text(c.get('name', ''))} ({c.get('chain_id')}), "
                     f"native coin {AU.safe_text(c.get('symbol', ''))}, "
                     f"{c.get('decimals')} decimals")
    if not doc.get("chains"):
        lines.append("  chains      none (Ethereum wallets sign nothing until chain.set "
                     "proposals register their chains)")
    lines.append("  governance policy")
    lines += [f"    | {line}" for line in doc["governance"].splitlines()]
    return "\n".join(lines) + "\n"


def read_approvals(paths: list[Path], doc: dict[str, Any], digest: bytes) -> list[Any]:
    """One verified approval of ``doc`` per initial operator, from the files ``paths``."""
    statement = genesis_statement(doc)
    keys = {o["id"]: o["public_key_pem"].encode() for o in doc["operators"]}
    got: dict[str, Any] = {}
    for path in paths:
        a = _read_document(path, "genesis approval", APPROVAL_FORMAT)
        if not all(isinstance(a.get(k), str) for k in ("operator_id", "digest", "signature")):
            raise SignerError(f"{path} is not a genesis approval ({APPROVAL_FORMAT})")
        op = a["operator_id"]
        if a["digest"] != digest.hex():
            raise SignerError(f"{path}: {op} approved genesis {a['digest']}, not this one "
                              f"({digest.hex()})")
        if op not in keys:
            raise SignerError(f"{path}: {op} is not an initial operator of this genesis")
        if op in got:
            raise SignerError(f"{path}: a second approval by {op}")
        try:
            signature = bytes.fromhex(a["signature"])
        except ValueError:
            signature = b""
        if not signature_valid(keys[op], statement, signature):
            raise SignerError(f"{path}: the signature is not {op}'s over this genesis")
        got[op] = SignedDecision(op, Decision.APPROVE, signature)
    missing = [o for o in keys if o not in got]
    if missing:
        raise SignerError(f"every initial operator must approve the genesis; missing: "
                          f"{', '.join(missing)} (signerd genesis sign)")
    return [got[o] for o in keys]


def seal_genesis(config_path: str, request_path: Path, approvals: list[Path]) -> bytes:
    """Stage three: with every initial operator's approval, start the chain of authority in the
    config's store and pin the genesis in its HSM token (:func:`commit_genesis`)."""
    doc, digest = read_request(request_path)
    cfg = C.load(config_path)
    if doc["instance_id"] != cfg.instance_id:
        raise SignerError(f"{request_path} is for instance {doc['instance_id']}; {cfg.path} "
                          f"says {cfg.instance_id}")
    if cfg.genesis and cfg.genesis != digest:
        raise SignerError(f"{cfg.path} pins genesis {cfg.genesis.hex()}, not this one "
                          f"({digest.hex()})")
    entry = AU.genesis_entry(doc, read_approvals(approvals, doc, digest))
    keystore = _keystore_for(cfg)
    keystore.open()
    try:
        _no_genesis_yet(cfg, keystore)
        held = keystore.held_public_key(doc["audit_key"]["key_id"])
        if held.hex() != doc["audit_key"]["public_key"]:
            raise SignerError(f"the HSM token does not hold the audit key "
                              f"{doc['audit_key']['key_id']} the genesis names: this is not "
                              "the token init --production used")
        return commit_genesis(entry, cfg.store_url, keystore)
    finally:
        keystore.close()
