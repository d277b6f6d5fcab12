"""A production genesis (deploy/DEPLOY.md): `signerd init --production` from the operators'
public keys, a governance policy and templates, `signerd genesis sign` by each operator with
their own key, `signerd genesis seal`, then the daemon from the example production config
(deploy/signerd.toml: absolute paths, secrets as systemd credentials) serving and signing.

Production creates nothing of the demo: no operator key, no certificate, no CA, no policy of
its own; no one person is a governance quorum; and every bad input is refused naming it."""
from __future__ import annotations

import json
import os
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

import grpc
import pytest

from tests.support.daemon import Daemon, signerd_cmd
from tests.support.ethereum import submit, tx_fields
from tests.support.rpc import pb
from tests.unit.eth_oracle import CHAIN_ID

ROOT = Path(__file__).resolve().parents[2]
TEMPLATES = ROOT / "signerd" / "templates"
OPERATORS = {"alice": "admin", "bob": "admin,custody_officer", "carol": "admin,investigator"}


@dataclass
class Layout:
    """/etc/signerd (etc), /var/lib/signerd (state) and what stays with people (ca: the
    organisation's CA and the client certificates; ops: each operator's own key pair)."""

    root: Path
    etc: Path
    state: Path
    creds: Path
    ops: Path
    ca: Path

    @property
    def config(self) -> Path:
        return self.etc / "signerd.toml"

    @property
    def env(self) -> dict[str, str]:
        return dict(os.environ, CREDENTIALS_DIRECTORY=str(self.creds))

    def signerd(self, *args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
        return subprocess.run(signerd_cmd(*args), capture_output=True, text=True, timeout=120,
                              env=self.env, cwd=cwd or self.root)

    def operator_args(self, **only: str) -> list[str]:
        out = []
        for op, roles in (only or OPERATORS).items():
            out += ["--operator", f"{op}:{roles}:{self.ops / (op + '.pub')}"]
        return out

    def init(self, *args: str, operators: list[str] | None = None, governance: Path | None = None,
             templates: Path | None = None) -> subprocess.CompletedProcess[str]:
        return self.signerd(
            "init", "--production", "--config", str(self.config),
            *(self.operator_args() if operators is None else operators),
            "--governance", str(governance or self.root / "governance.toml"),
            "--templates", str(templates or self.etc / "policies"), *args)

    def pin(self, digest: str) -> None:
        text = self.config.read_text()
        assert 'genesis = ""' in text
        self.config.write_text(text.replace('genesis = ""', f'genesis = "{digest}"'))


@pytest.fixture
def layout(tmp_path: Path) -> Layout:
    from signerd.adapters import key_files, pki
    from signerd.core import operator_keys
    from signerd.daemon import find_softhsm_module

    lay = Layout(tmp_path, tmp_path / "etc", tmp_path / "state", tmp_path / "etc" / "credentials",
                 tmp_path / "ops", tmp_path / "ca")
    for d in (lay.etc / "pki", lay.etc / "policies", lay.state, lay.ops, lay.ca):
        d.mkdir(parents=True)
    lay.creds.mkdir(mode=0o700)
    # The HSM: a SoftHSM token made by its own script (production init makes no token).
    r = subprocess.run(["bash", str(ROOT / "hsm/softhsm-config/setup-token.sh"),
                        str(lay.state / "hsm"), "signerd-prod"], capture_output=True, text=True,
                       timeout=60)
    assert r.returncode == 0, r.stderr
    shutil.copy(lay.state / "hsm" / "pin", lay.creds / "hsm-pin")
    # The organisation's CA, outside /etc and /var/lib: only its certificate is installed.
    ca_key, ca_cert = pki.make_ca("trial CA")
    pki.write_pem_cert(lay.etc / "pki" / "ca.pem", ca_cert)
    server_key, server_cert = pki.issue_server(ca_key, ca_cert)
    pki.write_pem_cert(lay.etc / "pki" / "server.pem", server_cert)
    pki.write_pem_key(lay.creds / "server-key", server_key)
    (lay.etc / "pki" / "revoked.txt").write_text(pki.REVOKED_HEADER)
    for principal in ("platform", "admin", "auditor", *OPERATORS):
        pki.write_client(lay.ca, principal, *pki.issue_client(ca_key, ca_cert, principal))
    for op in OPERATORS:
        key_files.write_keypair(operator_keys.generate(), lay.ops / f"{op}.key",
                                lay.ops / f"{op}.pub", None)
    for name in ("two-key", "tiered", "seized-sweep", "category-movement"):
        shutil.copy(TEMPLATES / f"{name}.toml", lay.etc / "policies")
    shutil.copy(TEMPLATES / "governance.toml", tmp_path / "governance.toml")
    # The example production config, as DEPLOY.md has it edited for SoftHSM and SQLite.
    text = (ROOT / "deploy" / "signerd.toml").read_text()
    for old, new in (
            ("/etc/signerd", str(lay.etc)),
            ('module = "/opt/hsm-vendor/lib/libpkcs11.so"',
             f'module = "{find_softhsm_module()}"\n'
             f'softhsm_conf = "{lay.state / "hsm" / "softhsm2.conf"}"'),
            ('url = "credential:store-url"', f'url = "sqlite:///{lay.state / "signerd.db"}"'),
            ('listen = "0.0.0.0:7443"', 'listen = "127.0.0.1:0"'),
            ('listen = "0.0.0.0:9464"', 'listen = "127.0.0.1:0"')):
        assert old in text, old
        text = text.replace(old, new)
    lay.config.write_text(text)
    return lay


class ProductionDaemon(Daemon):
    """The daemon of a production layout; each principal connects with its own certificate."""

    ca_dir: Path

    def channel(self, principal: str = "platform") -> grpc.Channel:
        if principal not in self.channels:
            creds = grpc.ssl_channel_credentials(
                root_certificates=(self.state / "pki" / "ca.pem").read_bytes(),
                private_key=(self.ca_dir / f"{principal}.key").read_bytes(),
                certificate_chain=(self.ca_dir / f"{principal}.pem").read_bytes())
            self.channels[principal] = grpc.secure_channel(
                f"127.0.0.1:{self.port}", creds,
                options=[("grpc.ssl_target_name_override", "localhost")])
        return self.channels[principal]


def approve(d: Daemon, transfer_id: str, operator: str, key_file: Path) -> pb.Transfer:
    """An operator approves with their own key, which never was in the daemon's folders."""
    from signerd.adapters.key_files import load_private
    from signerd.core.approval import sign_statement, statement_digest

    st = d.approval(operator).GetStatement(pb.GetStatementRequest(
        transfer_id=transfer_id, decision=pb.APPROVE)).statement
    return d.approval(operator).SubmitApproval(pb.SubmitApprovalRequest(
        transfer_id=transfer_id, operator_id=operator, decision=pb.APPROVE,
        signature=sign_statement(load_private(key_file), st), statement_sha256=statement_digest(st)))


def decide_proposal(d: Daemon, proposal_id: str, operator: str, key_file: Path
                    ) -> pb.Proposal:
    """An operator approves a governance proposal with their own key."""
    from signerd.adapters.key_files import load_private
    from signerd.core.approval import sign_statement, statement_digest
    from signerd.v1 import signerd_pb2_grpc as rpc

    gov = rpc.GovernanceStub(d.channel(operator))
    st = gov.GetProposalStatement(pb.GetProposalStatementRequest(
        proposal_id=proposal_id, decision=pb.APPROVE)).statement
    return gov.DecideProposal(pb.DecideProposalRequest(
        proposal_id=proposal_id, operator_id=operator, decision=pb.APPROVE,
        signature=sign_statement(load_private(key_file), st), statement_sha256=statement_digest(st)))


def files_under(folder: Path) -> set[str]:
    return {str(p.relative_to(folder)) for p in folder.rglob("*") if p.is_file()}


def sign_all(lay: Layout, request: Path) -> list[Path]:
    out = []
    for op in OPERATORS:
        r = lay.signerd("genesis", "sign", str(request), "--operator", op, "--key",
                        str(lay.ops / f"{op}.key"), "--yes")
        assert r.returncode == 0, r.stderr
        assert "<- you" in r.stdout
        out.append(lay.root / f"genesis-approval-{op}.json")
    return out


def test_a_production_genesis_from_the_operators_keys_serves_and_signs(layout: Layout,
                                                                      monkeypatch) -> None:
    lay = layout
    etc_before = files_under(lay.etc)
    carol = lay.root / "operators.toml"
    carol.write_text('[[operator]]\nid = "carol"\nroles = ["admin", "investigator"]\n'
                     'public_key = "ops/carol.pub"\n')
    # The chain registry: the shipped chains and Gnosis (a file of the installer's); the test
    # chain the daemon signs on below is added later by a chain.set proposal.
    chains = lay.root / "chains.toml"
    chains.write_text((TEMPLATES / "chains.toml").read_text()
                      + '[[chain]]\nchain_id = 100\nname = "Gnosis"\nsymbol = "XDAI"\n'
                        'decimals = 18\n')
    bad = lay.root / "bad-chains.toml"
    bad.write_text('[[chain]]\nchain_id = 1\nname = "Ethereum"\nsymbol = "eth"\ndecimals = 18\n')
    r = lay.init("--operators", str(carol), "--chains", str(bad), operators=lay.operator_args(
        alice=OPERATORS["alice"], bob=OPERATORS["bob"]))
    assert r.returncode == 2 and "chain #1.symbol" in r.stderr, r.stderr
    r = lay.init("--operators", str(carol), "--chains", str(chains),
                 operators=lay.operator_args(alice=OPERATORS["alice"], bob=OPERATORS["bob"]))
    assert r.returncode == 0, r.stderr
    request = lay.root / "genesis.json"
    digest = json.loads(request.read_text())["digest"]
    registered = {c["chain_id"]: c for c in json.loads(request.read_text())["genesis"]["chains"]}
    assert registered[56] == {"chain_id": 56, "name": "BNB Smart Chain", "symbol": "BNB",
                              "decimals": 18}
    assert {1, 100, 137, 17000, 11155111} <= set(registered) and CHAIN_ID not in registered
    assert f"genesis {digest}" in r.stdout and "signerd genesis sign" in r.stdout
    # Nothing of the demo, and no key or CA anywhere the daemon reads or writes.
    assert files_under(lay.etc) == etc_before
    assert files_under(lay.state) == {"hsm/softhsm2.conf", "hsm/pin", "hsm/so-pin"} | {
        f for f in files_under(lay.state) if f.startswith("hsm/tokens/")}
    assert not list(lay.root.glob("*.ca"))

    approvals = sign_all(lay, request)
    r = lay.signerd("genesis", "seal", "--config", str(lay.config), str(request),
                    *map(str, approvals[:2]))
    assert r.returncode == 2
    assert r.stderr.strip() == ("signerd: every initial operator must approve the genesis; "
                                "missing: carol (signerd genesis sign)")
    r = lay.signerd("genesis", "seal", "--config", str(lay.config), str(request),
                    *map(str, approvals))
    assert r.returncode == 0, r.stderr
    assert f'[governance] genesis = "{digest}"' in r.stdout
    assert [f for f in files_under(lay.state) | files_under(lay.etc)
            if f.endswith(".key") and not f.startswith("credentials/")] == []

    # Unpinned, the daemon refuses and says what to pin; pinned, it serves.
    monkeypatch.setenv("CREDENTIALS_DIRECTORY", str(lay.creds))
    r = lay.signerd("run", "--config", str(lay.config))
    assert r.returncode == 2 and "`signerd genesis seal` printed" in r.stderr
    lay.pin(digest)
    d = ProductionDaemon(lay.config)
    d.ca_dir = lay.ca
    d.start()
    try:
        from signerd.v1 import signerd_pb2_grpc as rpc

        au = rpc.GovernanceStub(d.channel("admin")).GetAuthority(pb.GetAuthorityRequest())
        assert au.genesis.hex() == digest  # what each operator checks against what they signed
        assert sorted(o.id for o in au.operators) == ["alice", "bob", "carol"]
        create = pb.CreateWalletRequest(chain=pb.ETHEREUM, chain_ids=[CHAIN_ID],
                                        category=pb.SEIZED, case_ref="CASE-1")
        with pytest.raises(grpc.RpcError) as e:
            d.custody().CreateWallet(create)
        assert e.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert f"chain id {CHAIN_ID} is not in the chain registry" in e.value.details()
        # The governance registers it: an admin proposes, two admin operators approve.
        admin = rpc.AdminStub(d.channel("admin"))
        p = admin.SetChain(pb.SetChainRequest(chain_id=CHAIN_ID, name="Test chain",
                                              symbol="ETH", decimals=18))
        assert decide_proposal(d, p.id, "alice", lay.ops / "alice.key").state == \
            "PENDING_APPROVAL"
        assert decide_proposal(d, p.id, "bob", lay.ops / "bob.key").state == "APPROVED"
        w = d.custody().CreateWallet(create)
        t = submit(d, w.id, tx_fields())
        approve(d, t.id, "carol", lay.ops / "carol.key")  # investigator
        t = approve(d, t.id, "bob", lay.ops / "bob.key")  # custody officer
        assert t.state == pb.SIGNED and t.raw_tx
    finally:
        assert d.stop() == 0
    assert d.log_path is not None
    levels = {json.loads(line)["level"] for line in d.log_path.read_text().splitlines()
              if line.startswith("{")}
    assert levels == {"info"}

    # One token, one store, one instance: a second production init is refused.
    r = lay.init("--out", str(lay.root / "again.json"))
    assert r.returncode == 2
    assert r.stderr.strip() == (f"signerd: {lay.config} already pins genesis {digest}; a "
                                "production genesis starts a new instance: leave [governance] "
                                "genesis empty until `signerd genesis seal` prints it")
    lay.config.write_text(lay.config.read_text().replace(digest, ""))
    r = lay.init("--out", str(lay.root / "again.json"))
    assert r.returncode == 2
    assert r.stderr.strip() == ("signerd: the store already has a genesis; refusing to start "
                                "a second chain of authority in it")
    (lay.state / "signerd.db").rename(lay.state / "old.db")
    r = lay.init("--out", str(lay.root / "again.json"))
    assert r.returncode == 2
    assert r.stderr.strip() == (f"signerd: the HSM token already pins genesis {digest}: one "
                                "token serves one instance")
    assert not (lay.root / "again.json").exists()


# ---------------------------------------------------------------- every bad input, named


def write(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


GOV_ONE = """name = "g"\nroles = ["admin"]\n[[rule]]\nname = "one"\nkinds = ["*"]\n
approvers = 1\nroles = { admin = 1 }\n"""
GOV_ONE_KIND = """name = "g"\nroles = ["admin"]\n[[rule]]\nname = "most"\nkinds = [
"operator.register", "operator.revoke", "operator.roles", "operator.reinstate", "wallet.policy",
"template.set", "governance.set", "wallet.unfreeze", "wallet.import", "token.set"]
approvers = 2\nroles = { admin = 2 }\n[[rule]]\nname = "wallets"\nkinds = ["wallet.create"]
approvers = 1\n"""


@pytest.mark.parametrize("case", [
    "no operators", "malformed operator", "missing public key", "private key", "not a key",
    "operator twice", "same key twice", "unknown role", "no role", "operators file",
    "operators file fields", "no governance", "governance unreadable", "governance not toml",
    "one person quorum", "one person quorum for one kind", "quorum out of reach", "no templates",
    "templates not a folder", "templates empty", "template invalid", "default not a template",
    "no config", "insecure config", "dir given", "development option", "out exists",
    "development init with production options"])
def test_init_production_refuses_bad_input_naming_it(layout: Layout, case: str) -> None:
    lay = layout
    ops, pub = lay.ops, lay.ops / "alice.pub"
    gov, templates, extra = None, None, []
    operators = lay.operator_args()
    if case == "no operators":
        operators = []
        want = ("init --production: name the initial operators (--operator "
                "ID:ROLE[,ROLE...]:PUBKEY.pem, repeated, or --operators FILE); a production "
                "state has no demo operators")
    elif case == "malformed operator":
        operators = ["--operator", f"alice:{pub}"]
        want = (f"--operator 'alice:{pub}': expected ID:ROLE[,ROLE...]:PUBKEY.pem, e.g. "
                "alice:admin,custody_officer:alice.pub")
    elif case == "missing public key":
        operators = ["--operator", f"alice:admin:{ops / 'nobody.pub'}"]
        want = (f"operator alice: public key file {ops / 'nobody.pub'} cannot be read "
                "(No such file or directory)")
    elif case == "private key":
        operators = ["--operator", f"alice:admin:{ops / 'alice.key'}"]
        want = (f"operator alice: {ops / 'alice.key'} is a private key; give the operator's "
                "public key (signerctl operator keygen writes it beside the key, as .pub): the "
                "private key never leaves its operator")
    elif case == "not a key":
        junk = write(lay.root / "junk.pub", "hello\n")
        operators = ["--operator", f"alice:admin:{junk}"]
        want = f"operator alice: {junk}: operator public key is not a PEM SubjectPublicKeyInfo"
    elif case == "operator twice":
        operators += lay.operator_args(alice="admin")
        want = "operator alice is named twice"
    elif case == "same key twice":
        operators += ["--operator", f"dave:admin:{pub}"]
        want = "operators alice and dave have the same public key; one key serves one identity"
    elif case == "unknown role":
        operators = lay.operator_args(alice="admin,wizard", bob="admin")
        want = ("operator alice: role 'wizard' is not a role of the governance policy (admin, "
                "auditor, custody_officer, investigator, judge, prosecutor)")
    elif case == "no role":
        f = write(lay.root / "ops.toml", f'[[operator]]\nid = "alice"\nroles = []\n'
                                         f'public_key = "{pub}"\n')
        operators = ["--operators", str(f)]
        want = ("operator alice: no role given (the governance policy's roles: admin, auditor, "
                "custody_officer, investigator, judge, prosecutor)")
    elif case == "operators file":
        f = write(lay.root / "ops.toml", "[[operator]\n")
        operators = ["--operators", str(f)]
        want = f"--operators {f} is not valid TOML: "
    elif case == "operators file fields":
        f = write(lay.root / "ops.toml", '[[operator]]\nid = "alice"\nroles = ["admin"]\n')
        operators = ["--operators", str(f)]
        want = (f"--operators {f}: operator #1 needs exactly id, roles (a list) and public_key "
                "(a file)")
    elif case == "no governance":
        r = lay.signerd("init", "--production", "--config", str(lay.config), *operators,
                        "--templates", str(lay.etc / "policies"))
        assert r.returncode == 2
        assert r.stderr.strip() == (
            "signerd: init --production: --governance FILE is required: the governance policy "
            "says who approves a change to the rules (signerd ships no production default)")
        return
    elif case == "governance unreadable":
        gov = lay.root / "nope.toml"
        want = f"--governance {gov} cannot be read (No such file or directory)"
    elif case == "governance not toml":
        gov = write(lay.root / "g.toml", "name = \n")
        want = f"--governance {gov}: governance policy is not valid TOML: "
    elif case == "one person quorum":
        gov = write(lay.root / "g.toml", GOV_ONE)
        want = (f"--governance {gov}: operator.register proposals need only 1 approver (admin "
                "x1); a production genesis needs at least 2 distinct operators for every kind, "
                "so that no one person is a governance quorum")
    elif case == "one person quorum for one kind":
        gov = write(lay.root / "g.toml", GOV_ONE_KIND)
        want = (f"--governance {gov}: wallet.create proposals need only 1 approver; a "
                "production genesis needs at least 2 distinct operators for every kind, so that "
                "no one person is a governance quorum")
    elif case == "quorum out of reach":
        operators = lay.operator_args(alice="admin", bob="custody_officer")
        want = ("the genesis would not verify: genesis would leave operator.register proposals "
                "unapprovable: the active operators cannot meet 2 approvers (admin x2)")
    elif case == "no templates":
        r = lay.signerd("init", "--production", "--config", str(lay.config), *operators,
                        "--governance", str(lay.root / "governance.toml"))
        assert r.returncode == 2
        assert r.stderr.strip() == (
            "signerd: init --production: --templates DIR is required: the policy templates "
            "wallets get (review the ones signerd ships in signerd/templates/ and copy those "
            "you keep)")
        return
    elif case == "templates not a folder":
        templates = lay.root / "none"
        want = f"--templates {templates} is not a folder"
    elif case == "templates empty":
        templates = lay.root / "empty"
        templates.mkdir()
        want = (f"--templates {templates} holds no policy template (*.toml); start from the "
                "ones signerd ships (signerd/templates/) and review them")
    elif case == "template invalid":
        templates = lay.root / "bad"
        templates.mkdir()
        write(templates / "two-key.toml", 'name = "x"\n')
        want = "the genesis would not verify: genesis template 'two-key': "
    elif case == "default not a template":
        templates = lay.root / "other"
        templates.mkdir()
        shutil.copy(TEMPLATES / "tiered.toml", templates)
        want = (f"{lay.config}: [policies] default = 'two-key.toml' is not among the templates "
                f"in {templates} (tiered)")
    elif case == "no config":
        r = lay.signerd("init", "--production", *operators)
        assert r.returncode == 2
        assert r.stderr.strip() == ("signerd: init --production: --config FILE is required "
                                    "(start from deploy/signerd.toml)")
        return
    elif case == "insecure config":
        lay.config.write_text(lay.config.read_text().replace(
            "[server]\n", "[server]\ninsecure = true\n"))
        want = (f"{lay.config}: [server] insecure = true is for development; a production "
                "config names tls_cert, tls_key and client_ca")
    elif case == "dir given":
        extra = [str(lay.root / "state2")]
        want = (f"init --production takes no state folder ({lay.root / 'state2'}): the config "
                "names the store and the HSM")
    elif case == "development option":
        extra = ["--listen", "0.0.0.0:7443", "--insecure"]
        want = ("--listen, --insecure: only for a development state folder; a production "
                "config names its addresses and store")
    elif case == "out exists":
        out = write(lay.root / "genesis.json", "{}")
        extra = ["--out", str(out)]
        want = f"{out} already exists; refusing to overwrite it"
    elif case == "development init with production options":
        r = lay.signerd("init", str(lay.root / "dev"), *lay.operator_args(alice="admin"))
        assert r.returncode == 2
        assert r.stderr.strip() == "signerd: --operator: only with init --production"
        assert not (lay.root / "dev").exists()
        return
    r = lay.init(*extra, operators=operators, governance=gov, templates=templates)
    assert r.returncode == 2, r.stdout
    line = r.stderr.strip()
    assert line.startswith(f"signerd: {want}"), line
    assert len(line.splitlines()) == 1
    if case != "out exists":
        assert not (lay.root / "genesis.json").exists()
    assert not (lay.state / "signerd.db").exists()


# ---------------------------------------------------------------- sign and seal, refused


@pytest.fixture
def request_file(layout: Layout) -> Path:
    r = layout.init()
    assert r.returncode == 0, r.stderr
    return layout.root / "genesis.json"


def test_genesis_sign_refuses_another_key_an_outsider_an_altered_request_and_no_terminal(
        layout: Layout, request_file: Path) -> None:
    lay = layout

    def sign(*args: str) -> str:
        r = subprocess.run(signerd_cmd("genesis", "sign", *args), capture_output=True,
                           text=True, timeout=60, cwd=lay.root, stdin=subprocess.DEVNULL)
        assert r.returncode == 2, r.stdout
        return r.stderr.strip()

    from signerd.core.operator_keys import fingerprint, load_public_pem

    fp = {op: fingerprint(load_public_pem((lay.ops / f"{op}.pub").read_bytes()))
          for op in OPERATORS}
    req = str(request_file)
    assert sign(req, "--operator", "alice", "--key", str(lay.ops / "bob.key"), "--yes") == (
        f"signerd: {lay.ops / 'bob.key'} is not operator alice's key in this genesis (it lists "
        f"key {fp['alice']}, this is {fp['bob']})")
    assert sign(req, "--operator", "mallory", "--key", str(lay.ops / "bob.key"), "--yes") == (
        "signerd: mallory is not an initial operator of this genesis (alice, bob, carol)")
    assert sign(req, "--operator", "alice", "--key", str(lay.ops / "alice.key")) == (
        "signerd: refusing to ask for confirmation without a terminal; pass --yes")
    doc = json.loads(request_file.read_text())
    doc["genesis"]["operators"] = doc["genesis"]["operators"][:2]
    altered = write(lay.root / "altered.json", json.dumps(doc))
    assert sign(str(altered), "--operator", "alice", "--key", str(lay.ops / "alice.key"),
                "--yes").startswith(f"signerd: {altered}: its digest is not its document's (")
    assert sign(str(lay.root / "nothing.json"), "--operator", "alice", "--key",
                str(lay.ops / "alice.key"), "--yes") == (
        f"signerd: {lay.root / 'nothing.json'} cannot be read (No such file or directory)")
    assert sign(str(lay.config), "--operator", "alice", "--key", str(lay.ops / "alice.key"),
                "--yes") == f"signerd: {lay.config} is not a genesis request (not JSON)"
    assert not list(lay.root.glob("genesis-approval-*"))


def test_genesis_seal_refuses_forged_foreign_and_repeated_approvals(
        layout: Layout, request_file: Path) -> None:
    lay = layout
    approvals = sign_all(lay, request_file)
    digest = json.loads(request_file.read_text())["digest"]

    def seal(*paths: Path) -> str:
        r = lay.signerd("genesis", "seal", "--config", str(lay.config), str(request_file),
                        *map(str, paths))
        assert r.returncode == 2, r.stdout
        return r.stderr.strip()

    alice = json.loads(approvals[0].read_text())
    forged = write(lay.root / "forged.json", json.dumps(
        dict(alice, signature=json.loads(approvals[1].read_text())["signature"])))
    assert seal(forged, *approvals[1:]) == (
        f"signerd: {forged}: the signature is not alice's over this genesis")
    other = write(lay.root / "other.json", json.dumps(dict(alice, digest="00" * 32)))
    assert seal(other, *approvals[1:]) == (
        f"signerd: {other}: alice approved genesis {'00' * 32}, not this one ({digest})")
    assert seal(*approvals, approvals[0]) == (
        f"signerd: {approvals[0]}: a second approval by alice")
    outsider = write(lay.root / "outsider.json", json.dumps(dict(alice, operator_id="mallory")))
    assert seal(outsider, *approvals) == (
        f"signerd: {outsider}: mallory is not an initial operator of this genesis")
    lay.config.write_text(lay.config.read_text().replace(
        'instance_id = "custody-prod-1"', 'instance_id = "another"'))
    assert seal(*approvals) == (f"signerd: {request_file} is for instance custody-prod-1; "
                                f"{lay.config} says another")
    assert not (lay.state / "signerd.db").exists()


# ---------------------------------------------------------------- an initial operator's card


def test_an_initial_operator_signs_the_genesis_with_a_key_on_a_card(layout: Layout) -> None:
    """bob's P-256 key is made on a card of his own (a SoftHSM token apart from the daemon's,
    with its own PIN) and declared token-held, as a governance policy that requires hardware
    keys of custody officers demands (without the declaration the genesis is refused); bob
    signs the genesis with the card, every signer is shown the declaration, and the genesis
    seals."""
    lay = layout
    card = lay.root / "bob-card"
    (card / "tokens").mkdir(parents=True)
    (card / "softhsm2.conf").write_text(f"directories.tokendir = {card / 'tokens'}\n")
    env = dict(lay.env, SOFTHSM2_CONF=str(card / "softhsm2.conf"))
    subprocess.run(["softhsm2-util", "--init-token", "--free", "--label", "bob-card", "--pin",
                    "808080", "--so-pin", "80808080"], env=env, check=True,
                   capture_output=True, timeout=60)
    pin = card / "pin"
    pin.write_text("808080\n")
    pin.chmod(0o600)
    uri = f"pkcs11:token=bob-card;object=bob?pin-source=file:{pin}"
    from signerd.daemon import find_softhsm_module
    from tests.support.daemon import signerctl_cmd

    module = find_softhsm_module()
    (lay.ops / "bob.pub").unlink()
    r = subprocess.run(signerctl_cmd("operator", "keygen", "--pkcs11", uri, "--type", "p256",
                                     "--pkcs11-module", module, "--out", str(lay.ops / "bob.pub")),
                       capture_output=True, text=True, timeout=60, env=env, cwd=lay.root)
    assert r.returncode == 0, r.stderr
    gov = lay.root / "governance.toml"
    gov.write_text(gov.read_text().replace("roles = [", 'hardware_keys = ["custody_officer"]\n'
                                           "roles = [", 1))
    ops = lay.root / "operators.toml"
    ops.write_text('[[operator]]\nid = "bob"\nroles = ["admin", "custody_officer"]\n'
                   'public_key = "ops/bob.pub"\n')
    bare = lay.init("--operators", str(ops), "--out", str(lay.root / "bare.json"),
                    operators=lay.operator_args(alice="admin", carol="admin,investigator"))
    assert bare.returncode == 2 and "requires a key held on a token for role custody_officer" \
        in bare.stderr, bare.stderr
    ops.write_text(ops.read_text() + 'token_held = "bob-card (SoftHSM, stands in for a PIV '
                                     'card)"\n')
    r = lay.init("--operators", str(ops), operators=lay.operator_args(
        alice="admin", carol="admin,investigator"))
    assert r.returncode == 0, r.stderr
    request = lay.root / "genesis.json"
    (bob,) = (o for o in json.loads(request.read_text())["genesis"]["operators"]
              if o["id"] == "bob")
    assert bob["token_held"] == "bob-card (SoftHSM, stands in for a PIV card)"
    approvals = []
    for op in ("alice", "carol"):
        r = lay.signerd("genesis", "sign", str(request), "--operator", op, "--key",
                        str(lay.ops / f"{op}.key"), "--yes")
        assert r.returncode == 0, r.stderr
        approvals.append(lay.root / f"genesis-approval-{op}.json")
    r = subprocess.run(signerd_cmd("genesis", "sign", str(request), "--operator", "bob", "--key",
                                   uri, "--pkcs11-module", module, "--yes"),
                       capture_output=True, text=True, timeout=60, env=env, cwd=lay.root)
    assert r.returncode == 0, r.stderr
    assert "key held on bob-card (SoftHSM, stands in for a PIV card) (declared" in r.stdout
    approvals.append(lay.root / "genesis-approval-bob.json")
    r = lay.signerd("genesis", "seal", "--config", str(lay.config), str(request),
                    *map(str, approvals))
    assert r.returncode == 0, r.stderr
