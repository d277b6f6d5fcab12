"""``signerctl backup``: the key ceremony, the backup under the governance quorum, and the restore
into a new HSM token (README, "Key backup and recovery").

``ceremony`` and ``restore`` run offline, on the machine whose HSM token they act on, with the
token's security officer present (its SO-PIN from a file); they talk to no daemon. ``register``,
``create``, ``bundle``, ``status`` are calls to the daemon; ``verify`` checks a bundle offline.

The backup key's plaintext exists only in the memory of ``ceremony`` and ``restore``: kept in
a ``bytearray`` that is wiped when they end, with core dumps of the process turned off. Copies
made by the libraries it passes through (see signerd.core.backup) cannot be wiped from Python;
the process ends right after.
"""
from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any

from signerd.adapters.config import Config
from signerd.adapters.hsm import read_pin_file
from signerd.adapters.hsm_backup import BACKUP_KEY_LABEL, BackupToken
from signerd.cli.args import Commands, command, group
from signerd.cli.context import Context
from signerd.cli.errors import CliError
from signerd.cli.inputs import load_operator_key, read_file
from signerd.cli.render import Output, kv, proposal_output, table
from signerd.core import backup as BK
from signerd.core import canonical
from signerd.core.operator_keys import load_public_pem
from signerd.v1 import signerd_pb2 as pb

SHARE_FILE_BYTES = 64 * 1024


def _no_core_dumps() -> None:
    """A process that holds the backup key writes no core dump (where the OS lets it)."""
    try:
        import resource

        resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
    except (ImportError, ValueError, OSError):
        pass


def _config(ctx: Context) -> Config:
    cfg = ctx.config
    if cfg is None:
        raise CliError("this command acts on the HSM token of a state folder: give --config")
    return cfg


def _token(cfg: Config) -> BackupToken:
    env = {"SOFTHSM2_CONF": str(cfg.hsm.softhsm_conf)} if cfg.hsm.softhsm_conf else None
    uri = cfg.hsm.token if cfg.hsm.token.startswith("pkcs11:") else None
    return BackupToken(cfg.hsm.module, token_uri=uri, token_label=None if uri else cfg.hsm.token,
                       pin_file=cfg.hsm.pin_file, env=env, call_timeout=3600.0)


def _write_new(path: Path, data: bytes, mode: int = 0o600) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
    with os.fdopen(fd, "wb") as f:
        f.write(data)


# ---------------------------------------------------------------- ceremony (offline)

def _custodians(ctx: Context, cfg: Config) -> list[BK.Custodian]:
    out = []
    for spec in ctx.args.custodian:
        op_id, _, path = spec.partition("=")
        pub = Path(path) if path else cfg.base / "operators" / f"{op_id}.pub"
        pem = read_file(str(pub), f"custodian {op_id}'s public key")
        load_public_pem(pem)
        out.append(BK.Custodian(op_id, pem.decode("ascii")))
    return out


def cmd_ceremony(ctx: Context) -> Output:
    """Make the backup key, install it in this state folder's token as trusted (as the security
    officer), split it among the custodians and seal each share to one of them."""
    a = ctx.args
    cfg = _config(ctx)
    _no_core_dumps()
    custodians = _custodians(ctx, cfg)
    BK.check_threshold(a.threshold, len(custodians))
    out = Path(a.out)
    out.mkdir(mode=0o700, exist_ok=True)
    if any(out.iterdir()):
        raise CliError(f"{out} is not empty; the ceremony writes into an empty folder")
    so_pin = read_pin_file(a.so_pin_file)
    ceremony_id = BK.new_ceremony_id()
    key_id = bytes.fromhex(ceremony_id[2:])
    key = BK.new_backup_key()
    token = _token(cfg)
    try:
        # The shares are written before the key is installed: a ceremony that fails leaves no
        # trusted key behind (the token would keep it: it cannot be destroyed).
        value = token.check_value_of(so_pin, key)
        record = BK.ceremony_record(
            ceremony_id=ceremony_id, instance_id=cfg.instance_id, created_at=int(time.time()),
            threshold=a.threshold, custodians=custodians, key_id=key_id.hex(),
            key_label=BACKUP_KEY_LABEL, check_value=value)
        shares = BK.split(key, a.threshold, len(custodians))
        files = []
        try:
            for (index, share), custodian in zip(shares, custodians):
                doc = BK.seal_share(record, custodian, index, share)
                name = out / f"share-{index}-{custodian.operator_id}.json"
                _write_new(name, canonical.dumps(doc))
                files.append(str(name))
        finally:
            for _, share in shares:
                BK.wipe(share)
        path = out / "ceremony.json"
        _write_new(path, canonical.dumps(record), 0o644)
        token.install_backup_key(so_pin, key, key_id, BACKUP_KEY_LABEL, expect=value)
    finally:
        BK.wipe(key)
        token.close()
    doc = {"ceremony": record, "ceremony_file": str(path), "shares": files}
    return Output(doc, lambda: kv([
        ("ceremony", ceremony_id), ("backup key", f"HSM key id {key_id.hex()} (trusted)"),
        ("check value", value),
        ("threshold", f"any {a.threshold} of {len(custodians)} custodians"),
        ("record", str(path)),
    ]) + "".join(f"  share for {c.operator_id}: {f}\n" for c, f in zip(custodians, files))
        + f"Hand each custodian their share file; then propose the key: signerctl backup "
          f"register {path}\n")


# ---------------------------------------------------------------- the daemon's acts

def cmd_register(ctx: Context) -> Output:
    data = read_file(ctx.args.ceremony, "ceremony record", SHARE_FILE_BYTES)
    return proposal_output(ctx.call(ctx.admin().RegisterBackupKey,
                                    pb.RegisterBackupKeyRequest(ceremony=data)))


def cmd_create(ctx: Context) -> Output:
    return proposal_output(ctx.call(ctx.admin().ProposeBackup,
                                    pb.ProposeBackupRequest(ceremony_id=ctx.args.ceremony or "")))


def cmd_bundle(ctx: Context) -> Output:
    a = ctx.args
    resp = ctx.call(ctx.admin().GetBackupBundle,
                    pb.GetBackupBundleRequest(proposal_id=a.proposal_id))
    _write_new(Path(a.out), bytes(resp.bundle))
    doc = {"file": a.out, "digest": resp.digest, "keys": resp.keys,
           "not_backed_up": list(resp.not_backed_up)}
    lines = [("bundle", a.out), ("digest", resp.digest), ("keys wrapped", resp.keys)]
    if resp.not_backed_up:
        lines.append(("NOT backed up", ", ".join(resp.not_backed_up)
                      + " (signerctl backup status says why and what to do)"))
    return Output(doc, kv(lines))


def cmd_status(ctx: Context) -> Output:
    doc = json.loads(ctx.call(ctx.admin().BackupStatus, pb.BackupStatusRequest()).document)

    def text() -> str:
        out = table(["BACKUP KEY", "THRESHOLD", "CUSTODIANS", "IN TOKEN"],
                    [[k["ceremony_id"], k["threshold"], ",".join(k["custodians"]),
                      "yes" if k["in_token"] else "NO"] for k in doc["backup_keys"]])
        out += table(["KEY", "USE", "WALLETS", "BACKED UP"],
                     [[k["key_id"], k["use"], ",".join(k["wallets"]) or "-",
                       "capable" if k["backup_capable"] else "NOT BACKED UP"]
                      for k in doc["keys"]])
        for k in doc["keys"]:
            if not k["backup_capable"]:
                out += f"{k['key_id']}: {k['advice']}\n"
        return out
    return Output(doc, text)


# ---------------------------------------------------------------- offline

def _bundle(ctx: Context, cfg: Config) -> BK.Bundle:
    data = read_file(ctx.args.bundle, "bundle", BK.MAX_BUNDLE_BYTES)
    return BK.parse_bundle(data, pinned_genesis=cfg.genesis)


def _summary(b: BK.Bundle) -> dict[str, Any]:
    c = b.ceremony
    return {"instance_id": b.instance_id, "digest": b.digest, "proposal": b.body["proposal"],
            "created_at": b.body["created_at"], "ceremony_id": c["ceremony_id"],
            "threshold": c["threshold"], "custodians": [x["operator_id"] for x in c["custodians"]],
            "ledger_seq": b.ledger[0], "keys": len(b.keys),
            "wallets": [{"id": w["id"], "chain": w["chain"], "address": w["address"]}
                        for w in b.body["wallets"]],
            "not_backed_up": [k["key_id"] for k in b.body["not_backed_up"]]}


def cmd_verify(ctx: Context) -> Output:
    """Check a bundle offline against this state folder's pinned genesis."""
    doc = _summary(_bundle(ctx, _config(ctx)))
    return Output(doc, lambda: kv([
        ("bundle", "verified: sealed by this instance's audit key, unchanged"),
        ("digest", doc["digest"]), ("backup key", doc["ceremony_id"]),
        ("threshold", f"any {doc['threshold']} of {', '.join(doc['custodians'])}"),
        ("keys", doc["keys"]), ("wallets", len(doc["wallets"])),
        ("not backed up", ", ".join(doc["not_backed_up"]) or "none")]))


def cmd_restore(ctx: Context) -> Output:
    """Rebuild the backup key from the custodians' shares and import every key of the bundle
    into this state folder's (new) token; or nothing."""
    a = ctx.args
    cfg = _config(ctx)
    _no_core_dumps()
    if len(a.share) != len(a.key):
        raise CliError("give each --share with the --key of its custodian (as many --key as "
                       "--share, in the same order)")
    parts: list[tuple[int, bytearray]] = []
    key = bytearray()
    token = _token(cfg)
    try:
        bundle = _bundle(ctx, cfg)  # nothing is read from the token before the bundle verified
        envelopes = [BK.parse_share(read_file(s, "share file", SHARE_FILE_BYTES), s)
                     for s in a.share]
        BK.check_shares_for(bundle, envelopes, a.share)
        for env, share_path, key_path in zip(envelopes, a.share, a.key):
            parts.append(BK.open_share(env, load_operator_key(key_path, None), share_path))
        key = BK.combine(parts, bundle.ceremony["threshold"])
        c = bundle.ceremony
        so_pin = read_pin_file(a.so_pin_file)
        token.install_backup_key(so_pin, key, bytes.fromhex(c["key_id"]), c["key_label"],
                                 expect=c["check_value"])
        token.open()
        done = token.restore_keys(bundle, key)
    except BK.BackupRefused as e:
        tail = "" if "nothing was restored" in e.message else "; nothing was restored"
        raise CliError(e.message + tail) from None
    finally:
        BK.wipe(key)
        for _, p in parts:
            BK.wipe(p)
        token.close()
    doc = {**_summary(bundle), "restored": done}
    return Output(doc, lambda: "".join(f"{line}\n" for line in done)
                  + f"Restored {len(bundle.keys)} keys of bundle {bundle.digest[:16]}... into "
                    "this token; start the daemon on this state folder.\n")


def register(commands: Commands) -> None:
    g = group(commands, "backup", "key backup: ceremony, backup under the quorum, restore")
    sp = command(g, "ceremony", cmd_ceremony, "offline: make the backup key, install it in the "
                 "token as trusted, and seal its shares to the custodians", "admin")
    sp.add_argument("--so-pin-file", required=True, metavar="FILE",
                    help="the token's security officer PIN (mode 600)")
    sp.add_argument("--threshold", required=True, type=int, metavar="M",
                    help="how many custodians' shares rebuild the key")
    sp.add_argument("--custodian", required=True, action="append", metavar="ID[=PUBFILE]",
                    help="an operator who holds a share (default key: STATE/operators/ID.pub); "
                         "repeat for each")
    sp.add_argument("--out", required=True, metavar="DIR",
                    help="an empty folder for the ceremony record and the share files")
    sp = command(g, "register", cmd_register, "propose a ceremony's backup key to the "
                 "governance", "admin")
    sp.add_argument("ceremony", metavar="CEREMONY.json",
                    help="the record `backup ceremony` wrote (no secret in it)")
    sp = command(g, "create", cmd_create, "propose a backup of every custody key", "admin")
    sp.add_argument("--ceremony", metavar="ID", help="the approved backup key (default: the "
                                                     "only one)")
    sp = command(g, "bundle", cmd_bundle, "write the bundle of an approved backup proposal",
                 "admin")
    sp.add_argument("proposal_id", metavar="PROPOSAL_ID",
                    help="the backup.create proposal the governance approved")
    sp.add_argument("--out", required=True, metavar="FILE",
                    help="where to write the bundle (a new file, mode 600)")
    command(g, "status", cmd_status, "the approved backup keys and which keys are backed up",
            "admin")
    sp = command(g, "verify", cmd_verify, "offline: check a bundle against the pinned genesis",
                 "admin")
    sp.add_argument("bundle", metavar="BUNDLE", help="a bundle `backup bundle` wrote")
    sp = command(g, "restore", cmd_restore, "offline: rebuild the backup key from custodians' "
                 "shares and import every key of a bundle into a new token", "admin")
    sp.add_argument("bundle", metavar="BUNDLE", help="the bundle to restore")
    sp.add_argument("--share", required=True, action="append", metavar="FILE",
                    help="a custodian's share file; repeat for each custodian present")
    sp.add_argument("--key", required=True, action="append", metavar="FILE",
                    help="that custodian's operator key file, in the same order")
    sp.add_argument("--so-pin-file", required=True, metavar="FILE",
                    help="the new token's security officer PIN (mode 600)")
