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
# The chain registry of a genesis: the shipped chains (production's default), and for a demo
# state folder the local development chains as well.
CHAINS_FILE = "chains.toml"
DEV_CHAINS_FILE = "chains-dev.toml"

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
    from signerd.adapters.hsm import softhsm_conf_text

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
    conf.write_text(softhsm_conf_text(hsm / "tokens"))
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
    """The genesis of a new development state folder: the audit key generated in the HSM, the
    genesis document (demo operators, governance policy, templates, audit key) signed by every
    demo operator, committed by ``services.genesis.commit_genesis``. Returns the digest, which the config
    pins too."""
    import time

    # late: start-up stays light (see the note at the top)
    from signerd.core import authority as AU
    from signerd.core import chain_registry as CR
    from signerd.core.approval import SignedDecision, genesis_statement, sign_statement
    from signerd.adapters.hsm import Keystore
    from signerd.core.model import Decision
    from signerd.core.operator_keys import public_pem
    from signerd.services import genesis as G

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
            audit_key_id=audit_key.key_id, audit_public_key=audit_key.public_key,
            chains=[CR.chain_json(c) for f in (CHAINS_FILE, DEV_CHAINS_FILE)
                    for c in CR.parse_chains_toml(shipped_template(f), f)])
        statement = genesis_statement(doc)
        entry = AU.genesis_entry(doc, [
            SignedDecision(op_id, Decision.APPROVE, sign_statement(keys[op_id], statement))
            for op_id in DEMO_OPERATORS])
        url = store_url
        if url.startswith("sqlite:///") and not Path(url[len("sqlite:///"):]).is_absolute():
            url = "sqlite:///" + str(root / url[len("sqlite:///"):])
        return G.commit_genesis(entry, url, keystore)
    finally:
        keystore.close()


def sign_genesis(request_path: Path, *, operator_id: str, key: str, out: Path | None,
                 passphrase_file: str | None, yes: bool, pkcs11_module: str | None = None
                 ) -> Path:
    """Stage two, on an operator's own machine: show the genesis request, check that ``key``
    is this operator's key in it, ask, and write the operator's approval. Returns its path.
    ``key`` is a key file or a token key's PKCS#11 URI."""
    from signerd.cli.errors import CliError
    from signerd.cli.inputs import can_confirm, open_operator_key
    from signerd.services import genesis as G

    doc, digest = G.read_request(request_path)
    mine = {o["id"]: o for o in doc["operators"]}.get(operator_id)
    if mine is None:
        raise SignerError(f"{operator_id} is not an initial operator of this genesis "
                          f"({', '.join(o['id'] for o in doc['operators'])})")
    target = out or Path(f"genesis-approval-{operator_id}.json")
    if target.exists() or target.is_symlink():
        raise SignerError(f"{target} already exists; refusing to overwrite it")
    try:
        can_confirm(assume_yes=yes)  # without a terminal, refuse before asking for a passphrase
        signer = open_operator_key(key, passphrase_file, module=pkcs11_module,
                                   configured_module=lambda: None)
    except CliError as e:
        raise SignerError(str(e)) from None
    try:
        return _sign_genesis_with(signer, doc, digest, mine, operator_id, key, target, yes)
    finally:
        signer.close()


def _sign_genesis_with(signer: Any, doc: dict[str, Any], digest: bytes, mine: dict[str, Any],
                       operator_id: str, key: str, target: Path, yes: bool) -> Path:
    import json

    from signerd.cli.errors import CliError
    from signerd.cli.inputs import confirm
    from signerd.core.approval import genesis_statement, statement_digest
    from signerd.core.operator_keys import fingerprint, load_public_pem, spki_digest
    from signerd.services import genesis as G

    listed = load_public_pem(mine["public_key_pem"].encode())
    if spki_digest(signer.public_key) != spki_digest(listed):
        raise SignerError(
            f"{key} is not operator {operator_id}'s key in this genesis (it lists key "
            f"{fingerprint(listed)}, this is {fingerprint(signer.public_key)})")
    sys.stdout.write(G.render_genesis(doc, digest, operator_id))
    sys.stdout.flush()
    try:
        confirm(f"Approve this genesis as {operator_id}?", assume_yes=yes)
    except CliError as e:
        raise SignerError(str(e)) from None
    signature = signer.sign_digest(statement_digest(genesis_statement(doc)))
    approval = {"format": G.APPROVAL_FORMAT, "operator_id": operator_id, "digest": digest.hex(),
                "signature": signature.hex()}
    fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        f.write(json.dumps(approval, sort_keys=True) + "\n")
    return target


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
    from signerd.adapters import hsm, lifecycle, logs
    from .api.server import build_server
    from .app import App

    cfg = C.load(config_path)
    moved_from = hsm.place_softhsm_conf(cfg.hsm.softhsm_conf) if cfg.hsm.softhsm_conf else None
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
    if moved_from is not None:
        log.info("the state folder moved: %s names the token folder beside it again (it named "
                 "%s)", cfg.hsm.softhsm_conf, moved_from)
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


# The defaults of a development state folder; init --production refuses them changed.
DEV_DEFAULTS = {"listen": "127.0.0.1:7443", "metrics": "127.0.0.1:9464",
                "store_url": "sqlite:///signerd.db"}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="signerd", description="signerd custody signing daemon")
    ap.add_argument("--version", action="version", version=f"signerd {__version__}")
    sub = ap.add_subparsers(dest="cmd", required=True)
    p_init = sub.add_parser(
        "init", help="create a ready-to-run development state folder, or (--production) the "
        "genesis request of a production instance",
        description="signerd init DIR: a development state folder (SoftHSM token, SQLite, "
        "development PKI, demo operators and policies). signerd init --production --config "
        "FILE ...: stage one of a production genesis (deploy/DEPLOY.md).")
    p_init.add_argument("dir", nargs="?", help="the development state folder to create")
    p_init.add_argument("--listen", default=DEV_DEFAULTS["listen"],
                        help="gRPC address (development)")
    p_init.add_argument("--metrics", default=DEV_DEFAULTS["metrics"],
                        help="Prometheus address (development)")
    p_init.add_argument("--insecure", action="store_true",
                        help="plaintext gRPC (development only; logs a warning at every start)")
    p_init.add_argument("--store-url", default=DEV_DEFAULTS["store_url"],
                        help="store of a development state folder")
    prod = p_init.add_argument_group("production (deploy/DEPLOY.md)")
    prod.add_argument("--production", action="store_true",
                      help="no demo operators, keys, PKI or policies: write a genesis request "
                      "from the operators' public keys for them to sign")
    prod.add_argument("--config", metavar="FILE",
                      help="the production config (its HSM, store and instance_id)")
    prod.add_argument("--operator", action="append", default=[], metavar="ID:ROLES:PUBKEY",
                      help="an initial operator: ID:ROLE[,ROLE...]:PUBKEY.pem (repeat it)")
    prod.add_argument("--operators", metavar="FILE", type=Path,
                      help="TOML file of [[operator]] tables: id, roles, public_key")
    prod.add_argument("--governance", metavar="FILE", type=Path,
                      help="the governance policy (every kind of proposal needs at least 2 "
                      "distinct operators)")
    prod.add_argument("--templates", metavar="DIR", type=Path,
                      help="folder of the policy templates (*.toml) wallets get")
    prod.add_argument("--chains", metavar="FILE", type=Path,
                      help="the EVM chain registry of the genesis: a TOML file of [[chain]] "
                      "tables (chain_id, name, symbol, decimals); default: the shipped "
                      "chains.toml (Ethereum, BNB Smart Chain, Polygon PoS, Holesky, Sepolia)")
    prod.add_argument("--out", metavar="FILE", type=Path, default=Path("genesis.json"),
                      help="where to write the genesis request (default genesis.json)")
    p_run = sub.add_parser("run", help="run the daemon in the foreground")
    p_run.add_argument("--config", required=True)
    p_gen = sub.add_parser("genesis", help="a production genesis: sign (each initial operator) "
                           "and seal (the installer)")
    gsub = p_gen.add_subparsers(dest="genesis_cmd", required=True)
    p_sign = gsub.add_parser("sign", help="show a genesis request and approve it with your "
                             "operator key (on your own machine)")
    p_sign.add_argument("request", type=Path, help="the genesis request init --production wrote")
    p_sign.add_argument("--operator", required=True, metavar="ID", help="your operator id")
    p_sign.add_argument("--key", required=True, metavar="FILE|URI",
                        help="your operator private key file, or its PKCS#11 URI on your "
                             "token ('pkcs11:token=LABEL;object=LABEL', PIN asked or from "
                             "'?pin-source=file:PATH')")
    p_sign.add_argument("--pkcs11-module", metavar="FILE",
                        help="the token's PKCS#11 module (else the URI's module-path)")
    p_sign.add_argument("--passphrase-file", metavar="FILE",
                        help="the key's passphrase (else asked on the terminal)")
    p_sign.add_argument("--out", type=Path, metavar="FILE",
                        help="where to write the approval (default genesis-approval-ID.json)")
    p_sign.add_argument("--yes", action="store_true",
                        help="approve without asking (the document is still printed)")
    p_seal = gsub.add_parser("seal", help="with every initial operator's approval, start the "
                             "chain of authority in the store and pin it in the HSM token")
    p_seal.add_argument("--config", required=True, metavar="FILE", help="the production config")
    p_seal.add_argument("request", type=Path, help="the genesis request")
    p_seal.add_argument("approvals", type=Path, nargs="+", metavar="APPROVAL",
                        help="one approval file per initial operator")
    args = ap.parse_args(argv)
    try:
        if args.cmd == "init" and args.production:
            return _init_production(args)
        if args.cmd == "init":
            extra = [f"--{n}" for n in ("config", "operators", "governance", "templates",
                                         "chains")
                     if getattr(args, n) is not None] + (["--operator"] if args.operator else [])
            if extra:
                raise SignerError(f"{', '.join(extra)}: only with init --production")
            if args.dir is None:
                raise SignerError("init: give the state folder to create (signerd init DIR), "
                                  "or --production (deploy/DEPLOY.md)")
            return _init_development(args)
        if args.cmd == "genesis" and args.genesis_cmd == "sign":
            path = sign_genesis(args.request, operator_id=args.operator, key=args.key,
                                out=args.out, passphrase_file=args.passphrase_file,
                                yes=args.yes, pkcs11_module=args.pkcs11_module)
            print(f"approval written: {path} (give it to whoever seals the genesis)")
            return 0
        if args.cmd == "genesis":
            from signerd.services import genesis as G

            digest = G.seal_genesis(args.config, args.request, args.approvals)
            print(f"genesis {digest.hex()} sealed: the store's authority ledger starts with it "
                  "and the HSM token pins it")
            print(f'pin it in {args.config}: [governance] genesis = "{digest.hex()}"')
            print("each operator checks that pin against the digest they signed, and later "
                  "the daemon's (signerctl governance show)")
            return 0
        return run(args.config)
    except SignerError as e:
        print(f"signerd: {e.message}", file=sys.stderr)
        return 2
    except OSError as e:
        print(f"signerd: {e.strerror or e}: {e.filename or ''}".rstrip(": "), file=sys.stderr)
        return 2


def _init_development(args: argparse.Namespace) -> int:
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


def _init_production(args: argparse.Namespace) -> int:
    if args.dir is not None:
        raise SignerError(f"init --production takes no state folder ({args.dir}): the config "
                          "names the store and the HSM")
    from signerd.services import genesis as G

    dev = [f"--{n.replace('_', '-')}" for n in ("listen", "metrics", "store_url")
           if getattr(args, n) != DEV_DEFAULTS[n]] + (["--insecure"] if args.insecure else [])
    if dev:
        raise SignerError(f"{', '.join(dev)}: only for a development state folder; a "
                          "production config names its addresses and store")
    if args.config is None:
        raise SignerError("init --production: --config FILE is required (start from "
                          "deploy/signerd.toml)")
    operators = [G.parse_operator_spec(s) for s in args.operator]
    if args.operators is not None:
        operators += G.read_operators_file(args.operators)
    digest = G.init_production(args.config, operators=operators, governance=args.governance,
                             templates=args.templates, out=args.out,
                             chains=args.chains)
    ids = [o["id"] for o in operators]
    print(f"genesis request written: {args.out}")
    print(f"genesis {digest.hex()} (the pin: each operator checks it before signing)")
    print(f"next, each of {', '.join(ids)} on their own machine:")
    print(f"  signerd genesis sign {args.out.name} --operator ID --key ID.key")
    print("then, with every approval:")
    print(f"  signerd genesis seal --config {args.config} {args.out.name} "
          "genesis-approval-*.json")
    return 0


if __name__ == "__main__":
    sys.exit(main())
