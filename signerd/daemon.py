"""`signerd init DIR` and `signerd run --config FILE`."""
from __future__ import annotations

import argparse
import faulthandler
import logging
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import threading
import uuid
from importlib import resources
from pathlib import Path
from typing import Any

from signerd.core.errors import SignerError
from . import __version__

log = logging.getLogger("signerd")

# The functions below import the rest of signerd when they run, not here: deliberately, so that
# `signerd --help` and `signerd init` load neither gRPC nor the app, and a daemon only what it
# uses. None of these late imports hides a cycle (tests/unit/test_architecture.py).

DEMO_OPERATORS: dict[str, list[str]] = {
    "inv1": ["investigator"], "inv2": ["investigator"],
    "cust1": ["custody_officer"], "cust2": ["custody_officer"],
    "pros1": ["prosecutor"], "judge1": ["judge"],
    "admin1": ["admin"], "admin2": ["admin"], "audit1": ["auditor"],
}
# The demo governance policy and policy templates `signerd init` writes ship as files in the
# package (signerd/templates/), so that one text serves init, the genesis and the tests. Every
# template bounds fees: ``max_fee`` is per fee asset, in its base units (sat for Bitcoin, wei for
# Ethereum: gas limit x maxFeePerGas, the most the transaction can pay); max_fee_rate is the
# Bitcoin fee rate in sat/vB. A fee above them is refused at submission, whoever approves; a
# wallet that must pay more (a very large sweep) gets a policy of its own from the governance.
# Category movements (after a court decision) need the judicial roles and a legal basis in every
# template: a judge, a prosecutor and a custody officer.
TEMPLATE_FILES = ("two-key.toml", "tiered.toml", "seized-sweep.toml", "category-movement.toml")
GOVERNANCE_FILE = "governance.toml"


def shipped_template(name: str) -> str:
    """The text of a file in signerd/templates/ (read from the installed package)."""
    return (resources.files("signerd") / "templates" / name).read_text(encoding="utf-8")


DEMO_GOVERNANCE = shipped_template(GOVERNANCE_FILE)
SERVICE_PRINCIPALS = {"platform": "platform", "admin": "admin", "auditor": "auditor"}
SOFTHSM_MODULE_CANDIDATES = ("/usr/lib/softhsm/libsofthsm2.so",
                             "/usr/lib/x86_64-linux-gnu/softhsm/libsofthsm2.so",
                             "/usr/lib/aarch64-linux-gnu/softhsm/libsofthsm2.so",
                             "/usr/local/lib/softhsm/libsofthsm2.so")

DEMO_POLICIES = {name: shipped_template(name) for name in TEMPLATE_FILES}

SOFTHSM_CONF = """\
# SoftHSM2 configuration for this signerd state folder (written by `signerd init`).
directories.tokendir = {tokendir}
objectstore.backend = file
log.level = ERROR
slots.removable = false
slots.mechanisms = ALL
library.reset_on_fork = false
"""

CONFIG = """\
# signerd configuration (written by `signerd init`). Relative paths are relative to this file.
instance_id = "{instance_id}"

[server]
listen = "{listen}"
insecure = {insecure}
tls_cert = "pki/server.pem"
tls_key = "pki/server.key"
client_ca = "pki/ca.pem"
# Revoked client certificates, one SHA-256 fingerprint a line (signerctl pki revoke CERT.pem);
# read again whenever it changes.
revoked = "pki/revoked.txt"
max_message_bytes = 4194304

[hsm]
module = "{module}"
token = "pkcs11:token={token}"
pin_file = "hsm/pin"
softhsm_conf = "hsm/softhsm2.conf"
concurrency = "os-locking"
sessions = 4

[store]
url = "{store_url}"

[metrics]
listen = "{metrics}"

[policies]
dir = "policies"
default = "two-key.toml"

# Certificate principal -> kind. Any other certificate name must be a registered operator id.
[principals]
platform = "platform"
admin = "admin"
auditor = "auditor"

[limits]
max_psbt_bytes = 4000000
max_psbt_inputs = 5000
max_psbt_outputs = 5000
max_calldata_bytes = 131072
rate_per_second = 200.0
rate_burst = 400
# Open streams (WatchTransfer, StreamEvents, Export): on their own threads, never on the
# workers that answer other calls; more are refused with RESOURCE_EXHAUSTED.
max_streams = 128
max_streams_per_principal = 32

[log]
format = "json"

# The HSM signs a checkpoint of the audit chain head once this many events have accumulated
# since the last one or the oldest of them is this many seconds old (and before every GetHead
# and export), always after verifying the chain since the previous checkpoint.
[audit]
checkpoint_seconds = 60.0
checkpoint_events = 1000

# The genesis of the chain of authority (initial operators, governance policy, templates),
# pinned here and in the HSM token; the daemon refuses a store whose genesis differs.
[governance]
genesis = "{genesis}"
"""


def find_softhsm_module() -> str:
    for p in SOFTHSM_MODULE_CANDIDATES:
        if Path(p).exists():
            return p
    return SOFTHSM_MODULE_CANDIDATES[0]


def _write_secret(path: Path, text: str) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(text + "\n")


def init_state(root: Path, *, listen: str = "127.0.0.1:7443", metrics: str = "127.0.0.1:9464",
               insecure: bool = False, store_url: str = "sqlite:///signerd.db",
               token_label: str = "signerd") -> Path:
    """Create a ready-to-run state folder. Refuses an existing, non-empty folder. The
    development CA's private key goes beside it (pki.dev_ca_key_path), never into it."""
    # late: start-up stays light (see the note at the top)
    from signerd.core import operator_keys
    from signerd.adapters import key_files
    from signerd.adapters import pki
    from signerd.adapters.config import insecure_listen_error, is_loopback_listen

    if insecure and not is_loopback_listen(listen):
        raise SignerError(insecure_listen_error(listen))
    root = root.resolve()
    if root.exists() and (not root.is_dir() or any(root.iterdir())):
        raise SignerError(f"{root} already exists and is not empty; refusing to overwrite it")
    ca_key = pki.dev_ca_key_path(root)
    if ca_key.exists() or ca_key.is_symlink():
        raise SignerError(f"{ca_key} already exists; refusing to overwrite it")
    util = shutil.which("softhsm2-util")
    if util is None:
        raise SignerError("softhsm2-util not found: install Debian's softhsm2 package")
    root.mkdir(parents=True, exist_ok=True, mode=0o700)
    os.chmod(root, 0o700)
    hsm = root / "hsm"
    (hsm / "tokens").mkdir(parents=True, mode=0o700)
    conf = hsm / "softhsm2.conf"
    conf.write_text(SOFTHSM_CONF.format(tokendir=hsm / "tokens"))
    pin = secrets.token_hex(16)
    so_pin = secrets.token_hex(16)
    _write_secret(hsm / "pin", pin)
    _write_secret(hsm / "so-pin", so_pin)
    env = dict(os.environ, SOFTHSM2_CONF=str(conf))
    # softhsm2-util takes the PINs as arguments; this runs once, on the operator's own machine.
    r = subprocess.run([util, "--init-token", "--free", "--label", token_label,
                        "--so-pin", so_pin, "--pin", pin], env=env, capture_output=True, text=True)
    if r.returncode != 0:
        raise SignerError(f"softhsm2-util could not initialise the token: "
                          f"{r.stderr.strip().splitlines()[-1] if r.stderr.strip() else r.returncode}")
    principals = list(SERVICE_PRINCIPALS) + list(DEMO_OPERATORS)
    pki.make_dev_pki(root / "pki", principals, ca_key)
    (root / "pki" / "revoked.txt").write_text(pki.REVOKED_HEADER)
    ops = root / "operators"
    ops.mkdir(mode=0o700)
    keys = {}
    for op_id in DEMO_OPERATORS:
        key = operator_keys.generate()
        key_files.write_keypair(key, ops / f"{op_id}.key", ops / f"{op_id}.pub", None)
        keys[op_id] = key
    pol = root / "policies"
    pol.mkdir()
    for name, text in DEMO_POLICIES.items():
        (pol / name).write_text(text)
    (root / "governance.toml").write_text(DEMO_GOVERNANCE)
    instance_id = "signerd-" + uuid.uuid4().hex[:12]
    module = find_softhsm_module()
    genesis = make_genesis(root, instance_id=instance_id, module=module, token_label=token_label,
                           store_url=store_url, keys=keys)
    cfg = root / "signerd.toml"
    cfg.write_text(CONFIG.format(
        instance_id=instance_id, listen=listen, metrics=metrics,
        insecure="true" if insecure else "false", module=module,
        token=token_label, store_url=store_url, genesis=genesis.hex()))
    return cfg


def make_genesis(root: Path, *, instance_id: str, module: str, token_label: str,
                 store_url: str, keys: dict[str, Any]) -> bytes:
    """The genesis of a new state folder: the audit key generated in the HSM, the genesis
    document (demo operators, governance policy, templates, audit key) signed by every initial
    operator, written as the first entry of the store's authority ledger, and its digest
    pinned in an HSM data object that can be neither changed nor destroyed, and the ledger's
    first monotonic anchor written beside it (signerd.core.anchor). Returns the digest, which the
    config pins too."""
    import time

    # late: start-up stays light (see the note at the top)
    from signerd.core import authority as AU
    from signerd.core.anchor import Anchors
    from .app import GENESIS_LABEL
    from signerd.core.approval import SignedDecision, genesis_statement, sign_statement
    from signerd.adapters.hsm import Keystore
    from signerd.core.model import Decision
    from signerd.core.operator_keys import fingerprint, load_public_pem, public_pem
    from signerd.adapters.store.factory import open_store

    keystore = Keystore(module, token_label=token_label, pin_file=root / "hsm" / "pin",
                        concurrency="serialized", pool_size=1,
                        env={"SOFTHSM2_CONF": str(root / "hsm" / "softhsm2.conf")})
    keystore.open()
    try:
        audit_key = keystore.generate_key("signerd-audit")
        operators: list[dict[str, Any]] = [
            {"id": op_id, "roles": roles, "public_key_pem": public_pem(keys[op_id]).decode()}
            for op_id, roles in DEMO_OPERATORS.items()]
        doc = AU.make_genesis(
            instance_id=instance_id, created_at=int(time.time()), operators=operators,
            governance=DEMO_GOVERNANCE,
            templates={n.removesuffix(".toml"): t for n, t in DEMO_POLICIES.items()},
            audit_key_id=audit_key.key_id, audit_public_key=audit_key.public_key)
        statement = genesis_statement(doc)
        entry = AU.genesis_entry(doc, [
            SignedDecision(op_id, Decision.APPROVE, sign_statement(keys[op_id], statement))
            for op_id in DEMO_OPERATORS])
        digest = AU.genesis_digest(doc)
        AU.start(entry, digest)  # exactly what the daemon will check
        url = store_url
        if url.startswith("sqlite:///") and not Path(url[len("sqlite:///"):]).is_absolute():
            url = "sqlite:///" + str(root / url[len("sqlite:///"):])
        store = open_store(url)
        try:
            with store.transaction() as tx:
                if tx.authority_head()[0] != 0:
                    raise SignerError("the store already has a genesis; refusing to start a "
                                      "second chain of authority in it")
                tx.set_meta("instance_id", instance_id)
                tx.set_meta("audit_key_id", audit_key.key_id)
                tx.set_meta("genesis", digest.hex())
                tx.append_authority(entry)
                tx.append_audit("signerd-init", "instance.created", instance_id, {})
                tx.append_audit("signerd-init", "genesis", digest.hex(), {
                    "operators": sorted(DEMO_OPERATORS), "templates": sorted(doc["templates"]),
                    "audit_public_key": audit_key.public_key.hex()})
                for o in operators:
                    tx.insert_operator(o["id"], o["roles"], o["public_key_pem"])
                    tx.append_audit("signerd-init", "operator.registered", o["id"], {
                        "roles": o["roles"],
                        "fingerprint": fingerprint(load_public_pem(o["public_key_pem"].encode()))})
        finally:
            store.close()
        keystore.create_data(GENESIS_LABEL, digest)
        # The ledger's first anchor: from here on it only moves forward (signerd.core.anchor).
        Anchors(keystore, instance_id).advance_ledger(entry.seq, entry.hash)
    finally:
        keystore.close()
    return digest


def sd_notify(message: str) -> None:
    """Tell systemd (Type=notify) about our state; a no-op outside systemd."""
    addr = os.environ.get("NOTIFY_SOCKET")
    if not addr:
        return
    if addr.startswith("@"):
        addr = "\0" + addr[1:]
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as s:
        s.connect(addr)
        s.sendall(message.encode())


def run(config_path: str) -> int:
    # late: start-up stays light (see the note at the top)
    from signerd.adapters import config as C
    from signerd.adapters import lifecycle, logs
    from .api.server import build_server
    from .app import App

    cfg = C.load(config_path)
    if cfg.server.revoked is not None and not cfg.server.insecure:
        from signerd.adapters import pki

        pki.load_revocations(cfg.server.revoked)  # refuse to start without a readable list
    folder = lifecycle.state_folder(cfg.store_url)
    lock = lifecycle.lock_state(folder) if folder is not None else None  # held until exit
    logs.setup(cfg.log_format)
    signal.signal(signal.SIGHUP, lifecycle.on_sighup)  # reloads nothing; keeps serving
    # SIGUSR1 writes every thread's stack to stderr (the journal) and signerd goes on: what an
    # SRE needs from a daemon that stops answering, before restarting it.
    faulthandler.register(signal.SIGUSR1, all_threads=True)
    if cfg.server.insecure:
        log.warning("INSECURE: listening without TLS; principals are taken from request metadata "
                    "(development only)")
    # Before anything starts: a SIGTERM that arrives while signerd starts (or right after it
    # prints that it listens) drains and exits 0 like any other.
    stop = threading.Event()

    def on_signal(signum: int, _frame: object) -> None:
        log.info("signal %s: draining", signal.Signals(signum).name)
        stop.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    app = App(cfg)
    app.start()
    try:
        server, health_servicer, port = build_server(app)
        msrv = lifecycle.start_metrics(cfg.metrics_listen, app.metrics.registry)
    except BaseException:
        app.stop()
        raise
    server.start()
    host = cfg.server.listen.rsplit(":", 1)[0]
    mhost = cfg.metrics_listen.rsplit(":", 1)[0]
    print(f"signerd {__version__} listening on {host}:{port} "
          f"({'plaintext' if cfg.server.insecure else 'mTLS'}); "
          f"metrics on http://{mhost}:{msrv.server_port}/metrics", flush=True)
    log.info("started", extra={"listen": f"{host}:{port}", "metrics_port": msrv.server_port,
                               "instance_id": cfg.instance_id,
                               "hsm_concurrency": app.keystore.concurrency})
    if os.environ.get("WATCHDOG_USEC"):
        app.on_tick = lambda: sd_notify("WATCHDOG=1")
    monitor = threading.Thread(target=app.monitor, name="monitor", daemon=True)
    monitor.start()
    sd_notify("READY=1\nSTATUS=serving")
    while not stop.wait(1.0):
        pass
    sd_notify("STOPPING=1")
    health_servicer.enter_graceful_shutdown()
    server.stop(cfg.server.grace_seconds).wait()
    msrv.shutdown()
    app.stop(checkpoint=True)
    log.info("stopped")
    if lock is not None:
        lock.release()
    return 0


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="signerd", description="signerd custody signing daemon")
    ap.add_argument("--version", action="version", version=f"signerd {__version__}")
    sub = ap.add_subparsers(dest="cmd", required=True)
    p_init = sub.add_parser("init", help="create a ready-to-run state folder")
    p_init.add_argument("dir")
    p_init.add_argument("--listen", default="127.0.0.1:7443")
    p_init.add_argument("--metrics", default="127.0.0.1:9464")
    p_init.add_argument("--insecure", action="store_true",
                        help="plaintext gRPC (development only; logs a warning at every start)")
    p_init.add_argument("--store-url", default="sqlite:///signerd.db")
    p_run = sub.add_parser("run", help="run the daemon in the foreground")
    p_run.add_argument("--config", required=True)
    args = ap.parse_args(argv)
    try:
        if args.cmd == "init":
            cfg = init_state(Path(args.dir), listen=args.listen, metrics=args.metrics,
                             insecure=args.insecure, store_url=args.store_url)
            from signerd.adapters import config as C
            from signerd.adapters import pki

            print(f"signerd state folder ready: {cfg}")
            print(f"genesis {C.load(cfg).genesis.hex()} (pinned in the config and in the HSM "
                  "token; keep a copy offline)")
            print(f"development CA key: {pki.dev_ca_key_path(cfg.parent)} (the daemon never "
                  "reads it; move it offline, signerctl pki issue --ca-key needs it only to "
                  "issue a certificate)")
            print(f"start it with: signerd run --config {cfg}")
            return 0
        return run(args.config)
    except SignerError as e:
        print(f"signerd: {e.message}", file=sys.stderr)
        return 2
    except OSError as e:
        print(f"signerd: {e.strerror or e}: {e.filename or ''}".rstrip(": "), file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
