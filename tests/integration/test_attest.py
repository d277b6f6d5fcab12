"""Proof of control end to end: a real daemon, SoftHSM and signerctl. An attestation signs
nothing without its quorum; challenges that are not in the format, or that parse as a
transaction, are INVALID_ARGUMENT; the exported holdings statement verifies offline, every proof
in it also under eth-account, python-bitcointx and bip322-js; one changed byte fails
``attest verify``; the page renders in headless Chromium."""
from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path

import pytest
from eth_account import Account
from eth_account.messages import encode_defunct

from tests.support.bip322 import bip322_js, bitcointx_verify, cosigner_signs
from tests.support.cli import ctl
from tests.support.daemon import Daemon, init_state

pytestmark = pytest.mark.integration
BLOCK_HASH = "00000000000000000002a7c4c1e48d76c5a37902165a270156b7a8d72728a054"
SIGNED_ETH_TX = Account.sign_transaction(
    {"chainId": 1, "nonce": 0, "maxPriorityFeePerGas": 1, "maxFeePerGas": 2, "gas": 21000,
     "to": "0x000000000000000000000000000000000000dEaD", "value": 1, "data": b"",
     "accessList": [], "type": 2}, "0x" + "22" * 32).raw_transaction.hex()


@pytest.fixture(scope="module")
def env(tmp_path_factory: pytest.TempPathFactory):
    d = Daemon(init_state(tmp_path_factory.mktemp("attest") / "signerd-state")).start()
    wallets = [json.loads(ctl(d, "--json", "wallet", "create", *args).stdout) for args in (
        ("--chain", "ethereum", "--chain-id", "1", "--category", "strategic", "--case", "R-1"),
        ("--chain", "bitcoin", "--network", "regtest", "--category", "strategic", "--case",
         "R-1"),
        ("--chain", "bitcoin", "--network", "mainnet", "--script-type", "p2sh-p2wpkh",
         "--category", "strategic", "--case", "R-2"),
        ("--chain", "bitcoin", "--network", "regtest", "--script-type", "p2wsh-sortedmulti",
         "--multisig", "2", "--hsm-keys", "2", "--category", "strategic", "--case", "R-2"),
        ("--chain", "ethereum", "--chain-id", "1", "--category", "seized", "--case", "S-1"))]
    yield d, wallets
    d.stop()


def approve(d: Daemon, attestation: str, op: str, ok: bool = True
            ) -> subprocess.CompletedProcess:
    return ctl(d, "--as", op, "--json", "attest", "approve", attestation, "--key",
               str(d.state / f"operators/{op}.key"), "--yes", ok=ok)


def audit_key(d: Daemon) -> str:
    return json.loads(ctl(d, "--json", "governance", "show").stdout)["audit_public_key"]


@pytest.mark.parametrize("challenge, why", [
    ("nonce\nvalue: 1000", "newline"), ("nonce\x1b[2Jabc", "control"),
    (SIGNED_ETH_TX[:128], "bytes of hex"), ("0x" + "ab" * 40, "bytes of hex"),
    ("short", "at least")], ids=["newline", "escape", "transaction hex", "long hex", "short"])
def test_a_challenge_not_in_the_format_is_invalid_argument(env, challenge: str,
                                                           why: str) -> None:
    d, _ = env
    r = ctl(d, "--json", "attest", "create", "--category", "strategic", "--challenge",
            challenge, ok=False)
    assert r.returncode != 0
    err = json.loads(r.stdout)["error"]
    assert err["code"] == "INVALID_ARGUMENT" and why in err["message"], err


def test_an_issuer_that_would_add_a_line_is_invalid_argument(env) -> None:
    d, _ = env
    r = ctl(d, "--json", "attest", "create", "--category", "strategic", "--challenge",
            BLOCK_HASH, "--issuer", "Office\nvalue: 100 BTC", ok=False)
    err = json.loads(r.stdout)["error"]
    assert err["code"] == "INVALID_ARGUMENT" and err["message"].startswith("issuer"), err


def test_without_quorum_nothing_is_signed_then_the_statement_verifies(env, tmp_path: Path
                                                                      ) -> None:
    d, wallets = env
    a = json.loads(ctl(d, "--json", "attest", "create", "--category", "strategic",
                       "--challenge", BLOCK_HASH, "--issuer", "State Custody Office").stdout)
    assert a["state"] == "PENDING_APPROVAL"
    covered = {e["wallet_id"] for e in a["document"]["wallets"]}
    assert covered == {w["id"] for w in wallets if w["category"] == "strategic"}
    assert "investigator" in a["requirement"] and "custody_officer" in a["requirement"]
    # One approval is no quorum: nothing is signed, nothing can be exported.
    assert json.loads(approve(d, a["id"], "inv1").stdout)["state"] == "PENDING_APPROVAL"
    r = ctl(d, "--json", "attest", "export", a["id"], str(tmp_path / "s.json"), ok=False)
    assert r.returncode != 0 and json.loads(r.stdout)["error"]["code"] == "FAILED_PRECONDITION"
    assert not (tmp_path / "s.json").exists()
    assert json.loads(ctl(d, "--json", "attest", "show", a["id"]).stdout)["state"] == \
        "PENDING_APPROVAL"
    # The second approver of the other role makes the quorum: signerd signs every text.
    assert json.loads(approve(d, a["id"], "cust1").stdout)["state"] == "SIGNED"
    path = tmp_path / "statement.json"
    ctl(d, "attest", "export", a["id"], str(path))
    key = audit_key(d)
    out = ctl(d, "attest", "verify", str(path), "--audit-key", key).stdout
    assert "OK: sealed by the audit key" in out and "OK: 4 proofs of control verify" in out
    doc = json.loads(path.read_text())
    entries = {e["wallet_id"]: e for e in doc["attestation"]["wallets"]}
    methods = set()
    js_cases = []
    for p in doc["proofs"]:
        e = entries[p["wallet_id"]]
        methods.add(p["method"])
        assert e["text"].startswith("signerd proof of control v1\n")
        if p["method"] == "eip191":
            assert Account.recover_message(encode_defunct(text=e["text"]),
                                           signature=p["signature"]) == e["address"]
        else:
            bitcointx_verify(e["address"], e["network"], e["text"].encode(), p["signature"])
            if p["method"] == "bip322-simple" and e["network"] == "mainnet":
                js_cases.append({"address": e["address"], "message": e["text"],
                                 "signature": p["signature"]})
    assert methods == {"eip191", "bip322-simple", "bip322-full"}
    assert js_cases and bip322_js(js_cases) == [True] * len(js_cases)

    # One changed byte anywhere that counts fails verification.
    raw = path.read_text()
    for p in doc["proofs"]:
        sig = p["signature"]
        i = len(sig) // 2
        bad = sig[:i] + ("A" if sig[i] != "A" else "B") + sig[i + 1:]
        tampered = tmp_path / f"bad-{p['wallet_id']}.json"
        tampered.write_text(raw.replace(sig, bad))
        for args in ((), ("--audit-key", key)):
            r = ctl(d, "attest", "verify", str(tampered), *args, ok=False)
            assert r.returncode != 0 and "does NOT verify" in r.stderr, r.stderr
    tampered = tmp_path / "bad-seal.json"
    tampered.write_text(raw.replace('"State Custody Office"', '"State Custody Offices"', 1))
    r = ctl(d, "attest", "verify", str(tampered), "--audit-key", key, ok=False)
    assert r.returncode != 0 and "seal" in r.stderr


def test_an_operator_who_asked_cannot_approve_and_a_reject_ends_it(env) -> None:
    d, _ = env
    a = json.loads(ctl(d, "--as", "inv1", "--json", "attest", "create", "--category", "seized",
                       "--challenge", "auditor-nonce-0042").stdout)
    r = approve(d, a["id"], "inv1", ok=False)
    assert r.returncode != 0 and "submit" in r.stderr.lower()
    r = ctl(d, "--as", "judge1", "--json", "attest", "reject", a["id"], "--key",
            str(d.state / "operators/judge1.key"), "--reason", "not now", "--yes")
    assert json.loads(r.stdout)["state"] == "REJECTED"
    assert approve(d, a["id"], "cust1", ok=False).returncode != 0


@pytest.mark.skipif(shutil.which("chromium") is None, reason="Debian's chromium is not installed")
def test_the_page_renders_in_headless_chromium(env, tmp_path: Path) -> None:
    d, wallets = env
    a = json.loads(ctl(d, "--json", "attest", "create", "--category", "strategic", "--case",
                       "R-1", "--challenge", BLOCK_HASH).stdout)
    approve(d, a["id"], "inv2")
    approve(d, a["id"], "cust2")
    path = tmp_path / "statement.json"
    ctl(d, "attest", "export", a["id"], str(path))
    btc = wallets[1]  # the regtest P2WPKH wallet of case R-1
    balances = tmp_path / "balances.json"
    balances.write_text(json.dumps({"format": "signerd-balances/v1", "source": "node A",
                                    "balances": [{"address": btc["address"], "asset": "BTC",
                                                  "amount": "150000000",
                                                  "block_height": 871234}]}))
    page = tmp_path / "page.html"
    ctl(d, "attest", "page", str(path), "--out", str(page), "--balances", str(balances),
        "--audit-key", audit_key(d))
    html = page.read_text()
    assert "<script" not in html and "http://" not in html.replace(
        'xmlns="http://www.w3.org/2000/svg"', "") and "https://" not in html
    r = subprocess.run(["chromium", "--headless", "--no-sandbox", "--disable-gpu",
                        "--dump-dom", page.as_uri()], capture_output=True, text=True,
                       timeout=120)
    assert r.returncode == 0, r.stderr[-2000:]
    dom = r.stdout
    doc = json.loads(path.read_text())
    assert "Balances come from the chain, not from signerd." in dom
    assert "1.5 BTC at block 871234" in dom and "<svg" in dom
    for e in doc["attestation"]["wallets"]:
        assert e["address"] in dom
    assert "signerctl attest verify statement.json --audit-key" in dom
    shot = tmp_path / "page.png"
    subprocess.run(["chromium", "--headless", "--no-sandbox", "--disable-gpu",
                    "--hide-scrollbars", "--window-size=1000,1400", f"--screenshot={shot}",
                    page.as_uri()], capture_output=True, timeout=120, check=True)
    assert shot.stat().st_size > 10_000


# ---------------------------------------------------------------- outside cosigners

COSIGNERS = [bytes([0x31 + i]) * 32 for i in range(3)]  # two cosigners', one not in the wallet


def _bip143(psbt_b64: str, amount: int) -> bytes:
    """The BIP-143 digest of the PSBT's input 0 under its witness script, SIGHASH_ALL, by
    python-bitcointx."""
    from bitcointx import ChainParams
    from bitcointx.core.psbt import PartiallySignedTransaction
    from bitcointx.core.script import SIGHASH_ALL, SIGVERSION_WITNESS_V0

    with ChainParams("bitcoin/regtest"):
        psbt = PartiallySignedTransaction.from_base64(psbt_b64)
        ws = psbt.inputs[0].witness_script
        return bytes(ws.sighash(psbt.unsigned_tx, 0, SIGHASH_ALL, amount=amount,
                                sigversion=SIGVERSION_WITNESS_V0))


def _with_signature(psbt_b64: str, secret: bytes, digest: bytes) -> str:
    """The PSBT with a partial signature by ``secret`` over ``digest`` (whatever it is)."""
    import coincurve
    from dataclasses import replace

    from signerd.core.bitcoin.psbt import Psbt

    psbt = Psbt.from_base64(psbt_b64)
    key = coincurve.PrivateKey(secret)
    inp = psbt.inputs[0]
    return psbt.with_input(0, replace(inp, partial_sigs={
        **inp.partial_sigs, key.public_key.format(): key.sign(digest, hasher=None) + b"\x01"})
    ).to_base64()


def test_a_multisig_with_outside_cosigners_proves_control_through_combine(env, tmp_path: Path
                                                                          ) -> None:
    """A 2-of-3 P2WSH wallet with one key in signerd's HSM and two outside: after the quorum
    signerd signs its part and the attestation waits for cosigners; `attest psbt` writes the
    BIP-322 PSBT, a cosigner signs it with python-bitcointx, `attest combine` takes it back,
    and the exported statement's full signature verifies offline and under python-bitcointx's
    script interpreter (bip322-js verifies no P2WSH). A signature over another digest, or by a
    key not in the wallet, is INVALID_ARGUMENT and changes nothing."""
    import coincurve

    from tests.support.bitcoin import wallet
    from tests.support.rpc import pb

    d, _ = env
    outside = [coincurve.PrivateKey(s).public_key.format().hex() for s in COSIGNERS[:2]]
    w = wallet(d, pb.P2WSH_SORTEDMULTI, threshold=2, hsm_keys=1, cosigners=outside)
    a = json.loads(ctl(d, "--json", "attest", "create", "--category", "confiscated",
                       "--challenge", BLOCK_HASH).stdout)
    assert [e["wallet_id"] for e in a["document"]["wallets"]] == [w.id], a
    approve(d, a["id"], "inv1")
    shown = json.loads(approve(d, a["id"], "cust1").stdout)
    assert shown["state"] == "AWAITING_COSIGNERS", shown
    (waiting,) = shown["cosigning"]
    assert (waiting["wallet_id"], waiting["signatures"], waiting["threshold"]) == (w.id, 1, 2)
    r = ctl(d, "--json", "attest", "export", a["id"], str(tmp_path / "s.json"), ok=False)
    assert json.loads(r.stdout)["error"]["code"] == "FAILED_PRECONDITION"
    assert "cosigners" in json.loads(r.stdout)["error"]["message"]

    psbt_file = tmp_path / "bip322.psbt"
    ctl(d, "attest", "psbt", a["id"], "--out", str(psbt_file))
    ours = psbt_file.read_text().strip()
    text = a["document"]["wallets"][0]["text"]
    # BIP-143 digests by python-bitcointx: the right one (amount 0), and the one a tool would
    # sign if it took the amount to be 1 satoshi.
    digest, wrong_amount = (_bip143(ours, amount) for amount in (0, 1))
    for secret, sig_digest, why in (
            (COSIGNERS[1], wrong_amount, "does not verify"),
            (COSIGNERS[2], digest, "not a key of this wallet")):
        bad = tmp_path / "bad.psbt"
        bad.write_text(_with_signature(ours, secret, sig_digest))
        r = ctl(d, "--json", "attest", "combine", a["id"], "--psbt", str(bad), ok=False)
        err = json.loads(r.stdout)["error"]
        assert err["code"] == "INVALID_ARGUMENT" and why in err["message"], err
        assert json.loads(ctl(d, "--json", "attest", "show", a["id"]).stdout)["state"] == \
            "AWAITING_COSIGNERS"

    signed = tmp_path / "signed.psbt"
    signed.write_text(cosigner_signs(ours, COSIGNERS[1]))
    done = json.loads(ctl(d, "--json", "attest", "combine", a["id"], "--psbt",
                          str(signed)).stdout)
    assert done["state"] == "SIGNED", done
    path = tmp_path / "statement.json"
    ctl(d, "attest", "export", a["id"], str(path))
    out = ctl(d, "attest", "verify", str(path), "--audit-key", audit_key(d)).stdout
    assert "(BIP-322 full)" in out and "OK: 1 proofs of control verify" in out
    (proof,) = json.loads(path.read_text())["proofs"]
    assert proof["method"] == "bip322-full"
    bitcointx_verify(w.address, "regtest", text.encode(), proof["signature"])
    # Nothing more is taken once signed.
    r = ctl(d, "--json", "attest", "combine", a["id"], "--psbt", str(signed), ok=False)
    assert json.loads(r.stdout)["error"]["code"] == "FAILED_PRECONDITION"
    # Counted as the committed writes recorded them.
    metrics = d.metrics()
    for state in ("PENDING_APPROVAL", "APPROVED", "AWAITING_COSIGNERS", "SIGNED"):
        m = re.search(r'^signerd_attestation_transitions_total\{state="%s"\} (\S+)$' % state,
                      metrics, re.M)
        assert m and float(m.group(1)) >= 1, state
    m = re.search(r'^signerd_attestation_decisions_total\{decision="APPROVE"\} (\S+)$',
                  metrics, re.M)
    assert m and float(m.group(1)) >= 2
