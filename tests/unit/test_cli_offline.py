"""signerctl without a daemon: parsing, local files, offline audit verification, confirmation,
and the approve path against an in-process fake of the API (honest and lying)."""
from __future__ import annotations

import hashlib
import io
import json
import os
import stat
from concurrent import futures
from pathlib import Path

import coincurve
import grpc
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature
from grpc_health.v1 import health, health_pb2, health_pb2_grpc

from signerd.adapters import key_files
from signerd import cli
from signerd.adapters import pki
from signerd.core import approval, audit, operator_keys
from signerd.core.chains import adapter_for, classify_outputs
from signerd.cli.documents import transfer_json, wallet_json
from signerd.cli.errors import CliError
from signerd.cli.inputs import confirm
from signerd.cli.render import fmt_amount, safe
from signerd.cli.verify import rebuild_statement, wallet_model
from signerd.adapters.config import Limits
from signerd.core.ethereum.address import address_from_pubkey
from signerd.core.model import Decision
from signerd.v1 import signerd_pb2 as pb
from signerd.v1 import signerd_pb2_grpc as rpc
from tests.support.audit import approvals_chain

PRINCIPALS = ["platform", "admin", "auditor", "inv1", "cust1"]
INSTANCE = "signerd-cli-test"
LEGAL_BASIS = "Regional Court Berlin; 4 K 12/26; 2026-11-20"
BOGUS = ["--timeout", "2", "--insecure", "--server", "127.0.0.1:1"]
WALLET_KEY = coincurve.PrivateKey(hashlib.sha256(b"signerctl test wallet").digest())
WALLET_PUB = WALLET_KEY.public_key.format(compressed=True)
WALLET_ADDRESS = address_from_pubkey(WALLET_PUB)
DEST = "0x" + "ab" * 20
ETH_TX = {"chainId": 1, "nonce": 7, "maxPriorityFeePerGas": "0x3b9aca00",
          "maxFeePerGas": "0x77359400", "gas": 21000, "to": DEST,
          "value": "0xde0b6b3a7640000", "data": "0x", "accessList": []}
PAYLOAD = json.dumps(ETH_TX).encode()
EXPIRES = 2_000_000_000


def run(capsys, argv: list[str]) -> tuple[int, str, str]:
    rc = cli.main(argv)
    out, err = capsys.readouterr()
    return rc, out, err


def assert_one_line_failure(rc: int, err: str, starts: str) -> None:
    assert rc != 0
    assert err.count("\n") == 1 and err.endswith("\n"), err
    assert err.startswith(f"signerctl: {starts}"), err


# ---------------------------------------------------------------- a state folder

@pytest.fixture(scope="module")
def state(tmp_path_factory) -> Path:
    d = tmp_path_factory.mktemp("state")
    pki.make_dev_pki(d / "pki", PRINCIPALS, d.parent / f"{d.name}.ca" / "ca.key")
    (d / "operators").mkdir()
    for op in ("inv1", "cust1"):
        key_files.write_keypair(operator_keys.generate(), d / "operators" / f"{op}.key",
                                    d / "operators" / f"{op}.pub")
    (d / "policies").mkdir()
    (d / "policies" / "two-key.toml").write_text('name = "two-key"\n')
    write_config(d, "127.0.0.1:1")
    return d


def write_config(d: Path, listen: str, name: str = "signerd.toml") -> Path:
    path = d / name
    path.write_text(f'instance_id = "{INSTANCE}"\n[server]\nlisten = "{listen}"\n'
                    'tls_cert = "pki/server.pem"\ntls_key = "pki/server.key"\n'
                    'client_ca = "pki/ca.pem"\n')
    return path


@pytest.fixture(scope="module")
def files(state: Path, tmp_path_factory) -> dict[str, str]:
    d = tmp_path_factory.mktemp("inputs")
    out = {"key": str(state / "operators" / "inv1.key"),
           "pub": str(state / "operators" / "inv1.pub"),
           "policy": str(state / "policies" / "two-key.toml")}
    for name, data in {"psbt": b"psbt\xff\x01\x00", "eth": PAYLOAD, "wif": b"not-a-real-wif\n",
                       "mnemonic": b"abandon " * 11 + b"about\n"}.items():
        (d / name).write_bytes(data)
        out[name] = str(d / name)
    out["export"] = str(d / "export.jsonl")
    return out


# ---------------------------------------------------------------- every command parses

def command_lines(f: dict[str, str]) -> list[list[str]]:
    return [
        ["wallet", "create", "--chain", "ethereum", "--chain-id", "1", "--chain-id", "0xaa36a7",
         "--category", "seized", "--case", "C-1", "--policy", f["policy"]],
        ["wallet", "create", "--chain", "bitcoin", "--network", "regtest", "--category",
         "confiscated", "--case", "C-1", "--multisig", "2", "--hsm-keys", "1", "--cosigner",
         "02" + "11" * 32, "--legal-basis", LEGAL_BASIS],
        ["wallet", "list", "--category", "strategic", "--case", "C-1"],
        ["wallet", "show", "w_1"],
        ["wallet", "freeze", "w_1", "--order", "ORD-1"],
        ["wallet", "unfreeze", "w_1", "--order", "ORD-2"],
        ["operator", "add", "inv9", "--role", "investigator", "judge", "--pubkey", f["pub"]],
        ["operator", "revoke", "inv9", "--reason", "left"],
        ["operator", "list"],
        ["policy", "set", "w_1", f["policy"]],
        ["policy", "show", "w_1"],
        ["policy", "history", "w_1"],
        ["transfer", "submit", "w_1", "--psbt", f["psbt"], "--replaces", "t_0"],
        ["transfer", "submit", "w_1", "--eth-tx", f["eth"], "--legal-basis", LEGAL_BASIS,
         "--category-change", "seized_to_confiscated", "--idempotency-key", "k1"],
        ["transfer", "list", "--state", "pending_approval", "--wallet", "w_1"],
        ["transfer", "show", "t_1"],
        ["transfer", "approve", "t_1", "--key", f["key"], "--yes"],
        ["transfer", "reject", "t_1", "--key", f["key"], "--reason", "wrong address", "--yes"],
        ["transfer", "cancel", "t_1", "--reason", "typo"],
        ["transfer", "result", "t_1"],
        ["transfer", "watch", "t_1"],
        ["transfer", "combine", "t_1", "--psbt", f["psbt"]],
        ["key", "import", "--chain", "bitcoin", "--network", "regtest", "--case", "C-2",
         "--seizure-record", "SR-1", "--wif", f["wif"]],
        ["key", "import", "C-2", "--chain", "ethereum", "--chain-id", "1", "--seizure-record",
         "SR-1", "--mnemonic", f["mnemonic"], "--path", "m/44'/60'/0'/0/0"],
        ["key", "status"],
        ["audit", "export", f["export"]],
        ["audit", "head"],
        ["report", "--category", "seized", "--case", "C-1"],
        ["health"],
    ]


def test_every_command_reports_an_unreachable_daemon_in_one_line(capsys, files):
    for line in command_lines(files):
        rc, out, err = run(capsys, BOGUS + line)
        assert rc == 1, line
        assert_one_line_failure(rc, err, "UNAVAILABLE: ")
        assert out == "", line
    assert not os.path.exists(files["export"])
    assert not [p for p in os.listdir(os.path.dirname(files["export"])) if "partial" in p]


def test_json_failure_is_one_document_and_one_line(capsys, files):
    rc, out, err = run(capsys, BOGUS + ["--json", "wallet", "list"])
    assert_one_line_failure(rc, err, "UNAVAILABLE")
    assert json.loads(out)["error"]["code"] == "UNAVAILABLE"
    rc, out, _ = run(capsys, BOGUS + ["wallet", "list", "--json"])  # --json after the command
    assert rc == 1 and json.loads(out)["error"]["code"] == "UNAVAILABLE"


def test_mtls_from_the_state_folder_to_an_unreachable_daemon(capsys, state, files):
    cfg = str(state / "signerd.toml")
    for line in (["wallet", "list"], ["--as", "admin", "operator", "list"],
                 ["transfer", "approve", "t_1", "--key", files["key"], "--yes"]):
        rc, _, err = run(capsys, ["--config", cfg, "--timeout", "2"] + line)
        assert_one_line_failure(rc, err, "UNAVAILABLE")
    rc, _, err = run(capsys, ["--config", cfg, "--server", "127.0.0.1:1", "--timeout", "2",
                              "health"])
    assert_one_line_failure(rc, err, "UNAVAILABLE")


@pytest.mark.parametrize("argv, message", [
    ([], "the following arguments are required: COMMAND"),
    (["wallet"], "wallet: the following arguments are required: SUBCOMMAND"),
    (["wallet", "create", "--chain", "doge", "--category", "seized", "--case", "C"],
     "wallet create: argument --chain: invalid choice: 'doge'"),
    (["wallet", "create", "--chain", "ethereum", "--case", "C"],
     "wallet create: the following arguments are required: --category"),
    (["transfer", "submit", "w", "--psbt", "a", "--eth-tx", "b"],
     "transfer submit: argument --eth-tx: not allowed with argument --psbt"),
    (["transfer", "submit", "w"], "transfer submit: one of the arguments --psbt --eth-tx"),
    (["transfer", "reject", "t", "--key", "k"],
     "transfer reject: the following arguments are required: --reason"),
    (["transfer", "list", "--state", "done"], "transfer list: argument --state: unknown state"),
    (["key", "import", "--chain", "bitcoin", "--seizure-record", "S"],
     "key import: one of the arguments --wif --hex --mnemonic is required"),
    (["--timeout", "0", "health"], "argument --timeout: must be positive"),
    (["health", "--config", "x"], "unrecognized arguments: --config x"),
])
def test_usage_errors_are_one_line_exit_2(capsys, argv, message):
    rc, out, err = run(capsys, argv)
    assert rc == 2 and out == ""
    assert_one_line_failure(rc, err, message)


def test_help_exits_0(capsys):
    rc, out, _ = run(capsys, ["transfer", "approve", "--help"])
    assert rc == 0 and "--yes" in out


def test_local_argument_checks(capsys, files):
    rc, _, err = run(capsys, BOGUS + ["wallet", "create", "--chain", "bitcoin", "--category",
                                      "seized", "--case", "C"])
    assert_one_line_failure(rc, err, "wallet create: --network is required for bitcoin")
    rc, _, err = run(capsys, BOGUS + ["key", "import", "--chain", "ethereum", "--case", "C",
                                      "--seizure-record", "S", "--mnemonic", files["mnemonic"]])
    assert_one_line_failure(rc, err, "key import: --mnemonic needs --path")
    rc, _, err = run(capsys, BOGUS + ["key", "import", "C-1", "--case", "C-2", "--chain",
                                      "ethereum", "--seizure-record", "S", "--wif", files["wif"]])
    assert_one_line_failure(rc, err, "key import: the positional case reference and --case")
    rc, _, err = run(capsys, BOGUS + ["operator", "add", "x", "--role", "judge", "--pubkey",
                                      files["key"]])
    assert_one_line_failure(rc, err, "operator public key is not a PEM")
    rc, _, err = run(capsys, BOGUS + ["transfer", "submit", "w", "--psbt", "/nonexistent"])
    assert_one_line_failure(rc, err, "cannot read PSBT file /nonexistent: No such file")


def test_secret_files_never_reach_the_output(capsys, files):
    rc, out, err = run(capsys, BOGUS + ["key", "import", "C", "--chain", "bitcoin", "--network",
                                        "regtest", "--seizure-record", "S", "--wif", files["wif"]])
    assert rc == 1 and "not-a-real-wif" not in out + err


def test_principal_selection(capsys, state, files, tmp_path, monkeypatch):
    cfg = str(state / "signerd.toml")
    rc, _, err = run(capsys, ["--config", cfg, "--as", "nobody", "wallet", "list"])
    assert_one_line_failure(rc, err, "no client certificate for principal 'nobody'")
    rc, _, err = run(capsys, ["--config", cfg, "--as", "../pki/ca", "wallet", "list"])
    assert_one_line_failure(rc, err, "--as: '../pki/ca' is not a principal name")
    rc, _, err = run(capsys, ["--config", cfg, "--as", "platform", "transfer", "approve", "t",
                              "--key", files["key"], "--yes"])
    assert_one_line_failure(rc, err, "--as platform: approvals are made by operators")
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("SIGNERD_CONFIG", raising=False)
    rc, _, err = run(capsys, ["--server", "127.0.0.1:1", "health"])
    assert_one_line_failure(rc, err, "--server without a state folder needs --tls-ca")
    rc, _, err = run(capsys, ["health"])
    assert_one_line_failure(rc, err, "config file")
    monkeypatch.setenv("SIGNERD_CONFIG", cfg)
    rc, _, err = run(capsys, ["--timeout", "2", "health"])
    assert_one_line_failure(rc, err, "UNAVAILABLE")


# ---------------------------------------------------------------- operator keygen

def test_keygen_writes_private_0600_and_public(capsys, tmp_path):
    out = tmp_path / "alice.key"
    rc, text, err = run(capsys, ["operator", "keygen", "--out", str(out)])
    assert rc == 0 and err == ""
    assert stat.S_IMODE(out.stat().st_mode) == 0o600
    pub = tmp_path / "alice.pub"
    public = operator_keys.load_public_pem(pub.read_bytes())
    assert public == key_files.load_private(out).public_key()
    fp = operator_keys.fingerprint(public)
    assert f"fingerprint: {fp}" in text
    assert "PRIVATE" not in text
    rc, _, err = run(capsys, ["operator", "keygen", "--out", str(out)])
    assert_one_line_failure(rc, err, "refusing to overwrite")


def test_keygen_with_passphrase_and_json(capsys, tmp_path):
    (tmp_path / "pass").write_text("correct horse\n")
    out = tmp_path / "bob"
    rc, text, _ = run(capsys, ["--json", "operator", "keygen", "--out", str(out),
                               "--passphrase-file", str(tmp_path / "pass")])
    doc = json.loads(text)
    assert rc == 0 and doc["public_key"] == str(out) + ".pub" and doc["encrypted"] is True
    assert key_files.load_private(out, b"correct horse")
    (tmp_path / "empty").write_text("\n")
    rc, _, err = run(capsys, ["operator", "keygen", "--out", str(tmp_path / "c.key"),
                              "--passphrase-file", str(tmp_path / "empty")])
    assert_one_line_failure(rc, err, "passphrase file")


# ---------------------------------------------------------------- audit verify (offline)

AUDIT_KEY = coincurve.PrivateKey(hashlib.sha256(b"signerctl audit test key").digest())


def make_export(n: int = 5) -> bytes:
    events = approvals_chain(n)
    digest = audit.head_digest(INSTANCE, events[-1].seq, events[-1].hash)
    r, s = decode_dss_signature(AUDIT_KEY.sign(digest, hasher=None))
    sig = r.to_bytes(32, "big") + s.to_bytes(32, "big")
    return audit.export_document(events, sig, AUDIT_KEY.public_key.format(), INSTANCE)


def tamper(doc: bytes, line: int) -> bytes:
    lines = doc.split(b"\n")
    obj = json.loads(lines[line - 1])
    obj["details"] = {"n": 999}
    lines[line - 1] = json.dumps(obj, sort_keys=True, separators=(",", ":")).encode()
    return b"\n".join(lines)


def test_audit_verify_ok(capsys, tmp_path):
    f = tmp_path / "ok.jsonl"
    f.write_bytes(make_export())
    rc, out, err = run(capsys, ["--server", "127.0.0.1:1", "audit", "verify", str(f)])
    assert rc == 0 and err == ""
    assert out.startswith("OK: 5 events verified; head seq 5 hash ")
    key = AUDIT_KEY.public_key.format().hex()
    rc, out, _ = run(capsys, ["--json", "audit", "verify", str(f), "--audit-key", key,
                              "--instance-id", INSTANCE])
    doc = json.loads(out)
    assert rc == 0 and doc["ok"] and doc["checked"] == 5 and doc["key_pinned"]


def test_audit_verify_names_the_first_bad_event(capsys, tmp_path):
    f = tmp_path / "bad.jsonl"
    f.write_bytes(tamper(make_export(), 4))  # line 4 is seq 3
    rc, out, err = run(capsys, ["audit", "verify", str(f)])
    assert_one_line_failure(rc, err, f"{f}: audit chain is NOT valid: first bad event seq 3 "
                                     "(transfer.approve transfer/t_3 by inv1)")
    assert "2 events verified before it" in err and out == ""
    rc, out, err = run(capsys, ["--json", "audit", "verify", str(f)])
    doc = json.loads(out)
    assert rc == 1 and doc["ok"] is False and doc["first_bad_seq"] == 3
    assert doc["event"]["object"] == "transfer/t_3"


def test_audit_verify_other_failures(capsys, tmp_path):
    f = tmp_path / "x.jsonl"
    f.write_bytes(make_export())
    rc, _, err = run(capsys, ["audit", "verify", str(f), "--audit-key", "02" + "00" * 32])
    assert_one_line_failure(rc, err, f"{f}: audit export is NOT valid: export is signed by ")
    f.write_bytes(b"{}\n")
    rc, _, err = run(capsys, ["audit", "verify", str(f)])
    assert_one_line_failure(rc, err, f"{f} is not a valid audit export: line 1: ")
    rc, _, err = run(capsys, ["audit", "verify", str(tmp_path / "missing")])
    assert_one_line_failure(rc, err, "cannot read audit export")


# ---------------------------------------------------------------- confirmation

class Tty(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_confirm_refuses_without_a_terminal():
    with pytest.raises(CliError, match="refusing to ask for confirmation without a "
                                          "terminal; pass --yes"):
        confirm("Sign?", assume_yes=False, stdin=io.StringIO("y\n"))
    confirm("Sign?", assume_yes=True, stdin=io.StringIO(""))


@pytest.mark.parametrize("answer, ok", [("y\n", True), ("YES\n", True), ("n\n", False),
                                        ("\n", False), ("", False), ("yep\n", False)])
def test_confirm_on_a_terminal(answer, ok):
    prompt = io.StringIO()
    if ok:
        confirm("Sign this approval?", assume_yes=False, stdin=Tty(answer), prompt_to=prompt)
    else:
        with pytest.raises(CliError, match="not confirmed"):
            confirm("Sign this approval?", assume_yes=False, stdin=Tty(answer),
                    prompt_to=prompt)
    assert prompt.getvalue() == "Sign this approval? [y/N] "


def test_approve_without_terminal_or_yes_refuses_before_contacting_anyone(capsys, files,
                                                                        monkeypatch):
    monkeypatch.setattr("sys.stdin", io.StringIO("y\n"))
    for decision in (["approve"], ["reject", "--reason", "no"]):
        rc, out, err = run(capsys, BOGUS + ["transfer", *decision[:1], "t_1", "--key",
                                            files["key"], *decision[1:]])
        assert rc == 1 and out == ""
        assert err == ("signerctl: refusing to ask for confirmation without a terminal; "
                       "pass --yes\n")


# ---------------------------------------------------------------- proto -> JSON

def test_transfer_and_wallet_json_shapes():
    t = pb.Transfer(id="t_1", wallet_id="w_1", chain=pb.BITCOIN, state=pb.SIGNED,
                    payload=b"psbt", raw_tx="0200", psbt="cHNidP8=", tx_hash="ab",
                    expires_at_unix=EXPIRES, requirement="2 of investigator",
                    movement=pb.Movement(chain=pb.BITCOIN, network="regtest",
                                         outputs=[pb.Output(address="bcrt1q", amount=str(2**70),
                                                            asset="BTC", is_change=True)],
                                         fee="150", digests=[b"\x01" * 32], vsize=141),
                    approvals=[pb.ApprovalRecord(operator_id="inv1", decision=pb.APPROVE,
                                                 signature=b"\xff", counted=True)])
    d = transfer_json(t)
    assert d["state"] == "SIGNED" and d["chain"] == "bitcoin" and d["expires_at"] == EXPIRES
    assert d["raw_tx"] == "0200" and d["psbt"] == "cHNidP8=" and "payload" not in d
    assert d["payload_sha256"] == hashlib.sha256(b"psbt").hexdigest()
    out = d["movement"]["outputs"][0]
    assert out["amount"] == str(2**70) and out["is_change"] is True
    assert d["movement"]["digests"] == ["01" * 32] and d["movement"]["nonce"] is None
    assert d["movement"]["vsize"] == 141
    assert d["approvals"][0] == {"operator_id": "inv1", "decision": "APPROVE", "signature": "ff",
                                 "reason": "", "created_at": 0, "counted": True}
    w = wallet_json(pb.Wallet(id="w_1", chain=pb.ETHEREUM, network="ethereum",
                              chain_ids=[1, 5], script_type=pb.P2SH_P2WPKH,
                              category=pb.CONFISCATED, status=pb.FROZEN))
    assert (w["chain"], w["chain_id"], w["chain_ids"]) == ("ethereum", 1, [1, 5])
    assert (w["category"], w["status"], w["script_type"]) == ("confiscated", "FROZEN",
                                                              "p2sh-p2wpkh")


def test_amounts_are_shown_in_units_and_base_units():
    assert fmt_amount("1500000000000000000", "ETH") == \
        "1.500000000000000000 ETH (1500000000000000000 wei)"
    assert fmt_amount(123456789, "BTC") == "1.23456789 BTC (123456789 sat)"
    assert fmt_amount(5, "ERC20:0xToken") == "5 base units of token 0xToken"
    assert safe("evil\x1b[2Jline") == "'evil\\x1b[2Jline'"


# ---------------------------------------------------------------- against a fake daemon

def principal_of(context) -> str | None:
    pems = context.auth_context().get("x509_pem_cert", [])
    if not pems:
        return None
    cert = x509.load_pem_x509_certificate(pems[0])
    return pki.principal_from_cert_der(cert.public_bytes(serialization.Encoding.DER))


class FakeDaemon(rpc.CustodyServicer, rpc.ApprovalServicer, rpc.AdminServicer,
                 rpc.AuditServicer, rpc.GovernanceServicer):
    """The API as an honest (or, with ``lie``, a lying) daemon would answer it."""

    def __init__(self, operators_dir: Path):
        self.operators_dir = operators_dir
        self.lie = ""
        self.calls: list[tuple[str, str | None]] = []
        self.approvals: list[pb.SubmitApprovalRequest] = []
        self.imports: list[pb.ImportKeyRequest] = []
        self.export = make_export(7)
        self.report: dict | None = None  # what Report answers (None: a document of another shape)
        self.wallet = pb.Wallet(
            id="w_eth", chain=pb.ETHEREUM, network="ethereum", chain_ids=[1],
            script_type=pb.EOA, category=pb.SEIZED, case_ref="C-1", status=pb.ACTIVE,
            address=WALLET_ADDRESS, policy_version=3,
            keys=[pb.Key(key_id="aa01", label="k", public_key=WALLET_PUB, hsm_held=True)])

    def transfer(self, payload: bytes = PAYLOAD) -> pb.Transfer:
        return pb.Transfer(id="t_1", wallet_id="w_eth", chain=pb.ETHEREUM,
                           state=pb.PENDING_APPROVAL, payload=payload, policy_version=3,
                           requirement="1 investigator and 1 custody_officer",
                           remaining="1 custody_officer", expires_at_unix=EXPIRES,
                           instance_id=INSTANCE, legal_basis=LEGAL_BASIS,
                           category_change="none", submitter="platform")

    def statement(self, decision: Decision) -> bytes:
        payload = PAYLOAD
        if self.lie == "statement":  # the daemon describes another transaction
            payload = json.dumps({**ETH_TX, "to": "0x" + "66" * 20}).encode()
        t = self.transfer()
        wallet = wallet_model(self.wallet)
        mv = adapter_for(wallet.chain).decode(wallet, payload, Limits()).movement
        mv = classify_outputs(mv, {}, ())
        ctx = approval.StatementContext(INSTANCE, t.id, t.wallet_id, t.policy_version,
                                        t.expires_at_unix, hashlib.sha256(t.payload).digest(),
                                        t.legal_basis, "none", submitter=t.submitter)
        return approval.build_statement(ctx, mv, decision)

    def GetStatement(self, request, context):
        self.calls.append(("GetStatement", principal_of(context)))
        decision = Decision(pb.Decision.Name(request.decision))
        t = self.transfer()
        if self.lie == "instance":
            t.instance_id = "another-daemon"
        return pb.Statement(transfer=t, wallet=self.wallet, statement=self.statement(decision),
                            rendered="trust me", own_addresses=[WALLET_ADDRESS])

    def SubmitApproval(self, request, context):
        self.calls.append(("SubmitApproval", principal_of(context)))
        self.approvals.append(request)
        pem = (self.operators_dir / f"{request.operator_id}.pub").read_bytes()
        decision = Decision(pb.Decision.Name(request.decision))
        statement = self.statement(decision)
        assert request.statement_sha256 == approval.statement_digest(statement)
        approval.verify_statement(pem, statement, request.signature,
                                  operator_id=request.operator_id)
        t = self.transfer()
        t.approvals.append(pb.ApprovalRecord(operator_id=request.operator_id,
                                             decision=request.decision, counted=True))
        return t

    def GetTransfer(self, request, context):
        self.calls.append(("GetTransfer", principal_of(context)))
        t = self.transfer()
        t.state, t.raw_tx, t.tx_hash = pb.SIGNED, "02f8", "0x" + "12" * 32
        t.movement.CopyFrom(pb.Movement(chain=pb.ETHEREUM, network="ethereum", chain_id=1,
                                        outputs=[pb.Output(address=DEST, amount=str(10**18),
                                                           asset="ETH",
                                                           destination_class="external")],
                                        fee=str(21000 * 2 * 10**9), fee_asset="ETH", nonce=7))
        return t

    def GetWallet(self, request, context):
        self.calls.append(("GetWallet", principal_of(context)))
        return self.wallet

    def WatchTransfer(self, request, context):
        t = self.transfer()
        yield t
        yield t
        t.state, t.raw_tx = pb.SIGNED, "02f8"
        yield t

    def ImportKey(self, request, context):
        self.calls.append(("ImportKey", principal_of(context)))
        self.imports.append(request)
        return pb.Proposal(id="p_" + "0" * 20, kind="wallet.import", state="PENDING_APPROVAL",
                           submitter="admin", summary="import a seized key")

    def Export(self, request, context):
        self.calls.append(("Export", principal_of(context)))
        for i in range(0, len(self.export), 100):
            yield pb.ExportChunk(data=self.export[i:i + 100])

    def GetHead(self, request, context):
        header = json.loads(self.export.split(b"\n")[0])
        return pb.AuditHead(seq=header["head_seq"], hash=bytes.fromhex(header["head_hash"]),
                            signature=bytes.fromhex(header["head_signature"]),
                            audit_public_key=bytes.fromhex(header["audit_public_key"]),
                            instance_id=header["instance_id"])

    def Report(self, request, context):
        return pb.ReportResponse(json=json.dumps(self.report or {"categories": [
            {"category": "seized", "case_ref": "C-1", "wallets": 2, "BTC": "150000"}]}))

    def GetAuthority(self, request, context):
        """The registered operators and their keys, which signerctl checks its key against
        before it signs."""
        self.calls.append(("GetAuthority", principal_of(context)))
        return pb.Authority(operators=[
            pb.Operator(id=p.stem, public_key_pem=p.read_bytes(), status="active")
            for p in sorted(self.operators_dir.glob("*.pub"))])

    def ListOperators(self, request, context):
        self.calls.append(("ListOperators", principal_of(context)))
        return pb.ListOperatorsResponse(operators=[pb.Operator(id="inv1", roles=["investigator"],
                                                               status="active")])


@pytest.fixture
def daemon(state: Path):
    p = state / "pki"
    creds = grpc.ssl_server_credentials(
        [((p / "server.key").read_bytes(), (p / "server.pem").read_bytes())],
        root_certificates=(p / "ca.pem").read_bytes(), require_client_auth=True)
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=4))
    fake = FakeDaemon(state / "operators")
    rpc.add_CustodyServicer_to_server(fake, server)
    rpc.add_ApprovalServicer_to_server(fake, server)
    rpc.add_AdminServicer_to_server(fake, server)
    rpc.add_AuditServicer_to_server(fake, server)
    rpc.add_GovernanceServicer_to_server(fake, server)
    healthy = health.HealthServicer()
    healthy.set("", health_pb2.HealthCheckResponse.SERVING)
    health_pb2_grpc.add_HealthServicer_to_server(healthy, server)
    port = server.add_secure_port("127.0.0.1:0", creds)
    server.start()
    cfg = write_config(state, f"127.0.0.1:{port}", name=f"live-{port}.toml")
    yield fake, ["--config", str(cfg), "--timeout", "10"]
    server.stop(grace=None)


def test_approve_signs_the_statement_rebuilt_here(capsys, daemon, files):
    fake, base = daemon
    rc, out, err = run(capsys, base + ["transfer", "approve", "t_1", "--key", files["key"],
                                       "--yes"])
    assert (rc, err) == (0, "")
    assert "You are about to APPROVE this transfer." in out
    assert "send 1.000000000000000000 ETH (1000000000000000000 wei) to 0x" in out
    assert DEST in out.lower()
    assert "nonce:           7" in out and "trust me" not in out
    assert "approved as inv1; transfer t_1: PENDING_APPROVAL" in out
    assert fake.calls == [("GetAuthority", "inv1"), ("GetStatement", "inv1"),
                          ("SubmitApproval", "inv1")]
    (req,) = fake.approvals
    assert req.operator_id == "inv1" and req.decision == pb.APPROVE and len(req.signature) == 64


def test_reject_with_json(capsys, daemon, files):
    fake, base = daemon
    rc, out, err = run(capsys, base + ["--json", "transfer", "reject", "t_1", "--key",
                                       files["key"], "--reason", "wrong address", "--yes"])
    assert (rc, err) == (0, "")
    doc = json.loads(out)
    assert doc["id"] == "t_1" and doc["approvals"][0]["operator_id"] == "inv1"
    (req,) = fake.approvals
    assert req.decision == pb.REJECT and req.reason == "wrong address"


@pytest.mark.parametrize("lie, message", [
    ("statement", "the daemon's statement does not match the transaction; refusing to sign"),
    ("instance", "the transfer belongs to daemon another-daemon, not to the configured "),
])
def test_approve_refuses_a_lying_daemon(capsys, daemon, files, lie, message):
    fake, base = daemon
    fake.lie = lie
    rc, out, err = run(capsys, base + ["transfer", "approve", "t_1", "--key", files["key"],
                                       "--yes"])
    assert_one_line_failure(rc, err, message)
    assert err.endswith("; refusing to sign\n")
    assert fake.approvals == [] and out == ""


def test_rebuild_detects_any_changed_metadata(daemon):
    fake, _ = daemon
    st = fake.GetStatement(pb.GetStatementRequest(transfer_id="t_1", decision=pb.APPROVE),
                           type("C", (), {"auth_context": lambda self: {}})())
    ok = rebuild_statement(st, "t_1", Decision.APPROVE, limits=Limits())
    assert ok.statement == st.statement
    with pytest.raises(CliError, match="does not match"):
        rebuild_statement(st, "t_1", Decision.REJECT, limits=Limits())
    for field, value in (("policy_version", 2), ("expires_at_unix", EXPIRES + 1),
                         ("legal_basis", "other"), ("payload", PAYLOAD + b" ")):
        bad = pb.Statement()
        bad.CopyFrom(st)
        setattr(bad.transfer, field, value)
        with pytest.raises(CliError, match="does not match"):
            rebuild_statement(bad, "t_1", Decision.APPROVE, limits=Limits())
    with pytest.raises(CliError, match="answered for transfer t_1, not t_2"):
        rebuild_statement(st, "t_2", Decision.APPROVE, limits=Limits())


def test_show_as_operator_and_as_platform(capsys, daemon):
    fake, base = daemon
    rc, out, _ = run(capsys, base + ["--as", "inv1", "transfer", "show", "t_1"])
    assert rc == 0 and f"from:             {WALLET_ADDRESS}" in out
    assert "rebuilt here from the raw transaction; it matches" in out
    rc, out, _ = run(capsys, base + ["--json", "transfer", "show", "t_1"])
    doc = json.loads(out)
    assert rc == 0 and doc["state"] == "SIGNED" and doc["raw_tx"] == "02f8"
    assert doc["movement"]["outputs"][0]["amount"] == str(10**18)
    assert doc["from_address"] == WALLET_ADDRESS
    assert ("GetTransfer", "platform") in fake.calls


def test_result_watch_health_and_admin_default(capsys, daemon):
    fake, base = daemon
    rc, out, _ = run(capsys, base + ["transfer", "result", "t_1"])
    assert (rc, out) == (0, "raw transaction: 02f8\ntx hash:         0x" + "12" * 32 + "\n")
    rc, out, _ = run(capsys, base + ["-q", "transfer", "result", "t_1"])
    assert (rc, out) == (0, "02f8\n")  # the transaction alone, for a script
    rc, out, _ = run(capsys, base + ["transfer", "watch", "t_1"])
    assert rc == 0 and out.count("\n") == 2 and out.splitlines()[-1].endswith("t_1: SIGNED")
    rc, out, _ = run(capsys, base + ["--json", "transfer", "watch", "t_1"])
    assert rc == 0 and json.loads(out)["state"] == "SIGNED"
    rc, out, _ = run(capsys, base + ["health"])
    assert (rc, out) == (0, "SERVING\n")
    rc, out, _ = run(capsys, base + ["operator", "list"])
    assert rc == 0 and "inv1" in out and fake.calls[-1] == ("ListOperators", "admin")
    rc, _, err = run(capsys, base + ["key", "status"])
    assert_one_line_failure(rc, err, "UNIMPLEMENTED")


def test_audit_export_head_verify_and_report(capsys, daemon, tmp_path):
    fake, base = daemon
    dest = tmp_path / "audit.jsonl"
    rc, out, _ = run(capsys, base + ["audit", "export", str(dest)])
    assert rc == 0 and dest.read_bytes() == fake.export
    assert f"wrote {dest}: {len(fake.export)} bytes, 7 events, head seq 7" in out
    assert fake.calls[-1] == ("Export", "auditor")
    rc, _, err = run(capsys, base + ["audit", "export", str(dest)])
    assert_one_line_failure(rc, err, f"refusing to overwrite {dest}")
    rc, out, _ = run(capsys, ["audit", "verify", str(dest)])
    assert rc == 0 and out.startswith("OK: 7 events verified")
    rc, out, _ = run(capsys, base + ["audit", "head"])
    assert rc == 0 and "signature: valid" in out and "head seq:  7" in out
    rc, out, _ = run(capsys, base + ["report"])
    assert rc == 0 and out.splitlines()[1].split() == ["category", "case_ref", "wallets", "BTC"]
    rc, out, _ = run(capsys, base + ["--json", "report"])
    assert json.loads(out)["categories"][0]["BTC"] == "150000"


def test_key_import_sends_the_secret_from_the_file_only(capsys, daemon, files):
    fake, base = daemon
    rc, out, err = run(capsys, base + ["key", "import", "C-9", "--chain", "bitcoin", "--network",
                                       "regtest", "--seizure-record", "SR-9", "--wif",
                                       files["wif"]])
    assert rc == 0 and "not-a-real-wif" not in out + err
    rc, _, _ = run(capsys, base + ["key", "import", "--case", "C-9", "--chain", "ethereum",
                                   "--chain-id", "1", "--seizure-record", "SR-9", "--mnemonic",
                                   files["mnemonic"], "--path", "m/44'/60'/0'/0/0"])
    assert rc == 0
    wif, mnemonic = fake.imports
    assert (wif.wif, wif.case_ref, wif.seizure_record, wif.network) == (
        "not-a-real-wif", "C-9", "SR-9", "regtest")
    assert mnemonic.mnemonic == "abandon " * 11 + "about"
    assert mnemonic.derivation_path == "m/44'/60'/0'/0/0" and list(mnemonic.chain_ids) == [1]
    assert fake.calls[-1] == ("ImportKey", "admin")


# ---------------------------------------------------------------- what scripts capture

def test_id_only_prints_just_the_ids(capsys, daemon, files):
    fake, base = daemon
    for argv in (["-q", "transfer", "show", "t_1"], ["transfer", "show", "t_1", "--id-only"],
                 ["-q", "--as", "inv1", "transfer", "approve", "t_1", "--key", files["key"],
                  "--yes"]):
        rc, out, err = run(capsys, base + argv)
        assert (rc, out, err) == (0, "t_1\n", ""), argv  # no statement shown, no label
    rc, out, _ = run(capsys, base + ["-q", "operator", "list"])
    assert (rc, out) == (0, "inv1\n")  # a listing: one id a line


def test_id_only_is_refused_before_a_command_without_an_id_runs(capsys, tmp_path):
    rc, out, err = run(capsys, ["-q", "operator", "keygen", "--out", str(tmp_path / "x.key")])
    assert_one_line_failure(rc, err, "-q/--id-only: signerctl operator keygen prints no id; "
                                     "leave -q out")
    assert (rc, out, list(tmp_path.iterdir())) == (2, "", [])
    for argv in (["--json", "-q", "wallet", "list"], ["--json", "wallet", "list", "-q"]):
        rc, out, err = run(capsys, BOGUS + argv)
        assert rc == 2 and out == "" and "--json" in err and "-q/--id-only" in err, argv


def test_json_output_ends_with_a_newline(capsys, daemon):
    _, base = daemon
    rc, out, _ = run(capsys, base + ["--json", "transfer", "show", "t_1"])
    assert rc == 0 and out.endswith("}\n") and json.loads(out)["id"] == "t_1"


def test_the_old_global_key_option_still_works_with_a_warning(capsys, state):
    clients = state / "pki" / "clients"
    tls = ["--cert", str(clients / "platform.pem"), "--timeout", "2", "health"]
    for old, warned in ((["--key", str(clients / "platform.key")], True),
                        (["--tls-key", str(clients / "platform.key")], False)):
        rc, _, err = run(capsys, ["--config", str(state / "signerd.toml")] + old + tls)
        lines = err.splitlines()
        assert rc == 1 and lines[-1].startswith("signerctl: UNAVAILABLE"), err
        assert (len(lines) == 2) is warned, err
        if warned:
            assert lines[0].startswith("signerctl: warning: the global option --key is "
                                       "deprecated, use --tls-key")
    rc, _, err = run(capsys, ["--tls-cert", str(clients / "platform.pem"), "--server",
                              "127.0.0.1:1", "health"])
    assert_one_line_failure(rc, err, "--tls-cert and --tls-key go together")


# ---------------------------------------------------------------- inputs mixed up

def test_a_public_key_given_as_the_operator_key_is_named(capsys, daemon, files):
    fake, base = daemon
    assert stat.S_IMODE(os.stat(files["pub"]).st_mode) == 0o644  # as keygen writes it
    rc, out, err = run(capsys, base + ["transfer", "approve", "t_1", "--key", files["pub"],
                                       "--yes"])
    assert_one_line_failure(rc, err, f"{files['pub']} is a public key; --key needs the "
                                     f"operator's private key file (the one beside it: "
                                     f"{files['key']})")
    assert (out, fake.calls) == ("", [])  # refused before anything was fetched


def test_a_transaction_given_to_the_wrong_option_is_named(capsys, files, tmp_path):
    b64 = tmp_path / "transfer.psbt"
    b64.write_text("cHNidP8BAHECAAAAAQ==\n")
    for psbt in (files["psbt"], str(b64)):
        rc, _, err = run(capsys, BOGUS + ["transfer", "submit", "w_1", "--eth-tx", psbt])
        assert_one_line_failure(rc, err, f"--eth-tx {psbt}: this file looks like a Bitcoin "
                                         f"PSBT, not an Ethereum transaction (JSON); submit it "
                                         f"with --psbt {psbt}")
    rc, _, err = run(capsys, BOGUS + ["transfer", "submit", "w_1", "--psbt", files["eth"]])
    assert_one_line_failure(rc, err, f"--psbt {files['eth']}: this file looks like an Ethereum "
                                     "transaction (JSON), not a PSBT")


# ---------------------------------------------------------------- what people read

REPORT = {
    "generated_at": 1_790_000_000, "instance_id": INSTANCE,
    "filter": {"category": "seized", "case_ref": ""},
    "known": "what signerd knows", "not_known": "on-chain balances",
    "categories": {"seized": {"cases": {"C-1": {
        "wallets": [
            {"id": "w_a", "chain": "ethereum", "network": "ethereum", "chain_ids": [1],
             "address": WALLET_ADDRESS, "script_type": "eoa", "status": "ACTIVE",
             "freeze_order": "ORDER 2", "legal_basis": "", "origin": "generated in the HSM"},
            {"id": "w_b", "chain": "bitcoin", "network": "regtest", "chain_ids": [],
             "address": "bcrt1qexample", "script_type": "p2wpkh", "status": "FROZEN",
             "freeze_order": "ORDER 3", "legal_basis": "", "origin": "generated in the HSM"}],
        "signed_transfers": [
            {"id": "t_s", "wallet_id": "w_a", "state": "SIGNED", "category_change": "none",
             "legal_basis": "", "tx_hash": "0x" + "ab" * 32, "updated_at": 1_790_000_100,
             "fee": "21000000000000", "fee_asset": "ETH",
             "outputs": [{"address": DEST, "amount": "1500000000000000000", "asset": "ETH",
                          "change": False}]}],
        "pending_transfers": [],
        "freezes": [
            {"wallet_id": "w_a", "action": "frozen", "order_ref": "ORDER 1",
             "time": 1_790_000_200, "audit_seq": 7},
            {"wallet_id": "w_a", "action": "unfrozen", "order_ref": "ORDER 2",
             "time": 1_790_000_300, "audit_seq": 9}],
        "signed_outflows": {"ETH": "1500000000000000000", "fee:ETH": "21000000000000"}}}}},
}


def test_report_shows_utc_times_and_amounts_with_units(capsys, daemon):
    fake, base = daemon
    fake.report = REPORT
    rc, out, _ = run(capsys, base + ["report", "--category", "seized"])
    assert rc == 0, out
    assert "generated:        2026-09-21T14:13:20Z" in out and "1790000" not in out
    assert "signed outflows: 1.500000000000000000 ETH (1500000000000000000 wei); fees: " \
           "0.000021000000000000 ETH (21000000000000 wei)" in out
    assert "t_s from wallet w_a, SIGNED 2026-09-21T14:15:00Z" in out
    assert f"send 1.500000000000000000 ETH (1500000000000000000 wei) to {DEST}" in out
    freezes = out[out.index("freezes:"):]
    assert "2026-09-21T14:16:40Z  frozen    w_a" in freezes and "unfrozen  w_a" in freezes
    # An active wallet's row keeps the order that lifted its freeze: not shown as frozen by it.
    wallets = out[out.index("wallets:"):out.index("signed outflows")].splitlines()
    assert "ORDER 2" not in next(line for line in wallets if "w_a" in line)
    assert "ORDER 3" in next(line for line in wallets if "w_b" in line)
    rc, out, _ = run(capsys, base + ["--json", "report"])
    assert json.loads(out) == REPORT  # the daemon's document, unchanged, for programs


def test_result_of_a_bitcoin_transfer_is_labelled():
    from signerd.cli.transfer import result_text

    t = {"chain": "bitcoin", "psbt": "cHNidP8=", "raw_tx": "0200", "tx_hash": "ab" * 32}
    assert result_text(t) == ("signed PSBT:     cHNidP8=\nraw transaction: 0200\n"
                              f"txid:            {'ab' * 32}\n")
    partial = result_text({**t, "raw_tx": "", "tx_hash": ""})
    assert partial == "partially signed PSBT: cHNidP8=\n"

