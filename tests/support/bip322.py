"""BIP-322 proofs checked by implementations that are not signerd's: python-bitcointx's script
interpreter (VerifyScript) over to_spend and to_sign built here with bitcointx's own classes,
and bip322-js under node (installed by scripts/install.sh --test into tests/node)."""
from __future__ import annotations

import base64
import hashlib
import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest
from bitcointx import ChainParams
from bitcointx.core import (CMutableTransaction, CMutableTxIn, CMutableTxOut, COutPoint,
                            CTransaction, CTxInWitness, CTxWitness)
from bitcointx.core.script import OP_0, OP_RETURN, CScript, CScriptWitness
from bitcointx.core.scripteval import (SCRIPT_VERIFY_CLEANSTACK, SCRIPT_VERIFY_DERSIG,
                                       SCRIPT_VERIFY_LOW_S, SCRIPT_VERIFY_NULLDUMMY,
                                       SCRIPT_VERIFY_NULLFAIL, SCRIPT_VERIFY_P2SH,
                                       SCRIPT_VERIFY_STRICTENC, SCRIPT_VERIFY_WITNESS,
                                       SCRIPT_VERIFY_WITNESS_PUBKEYTYPE, VerifyScript)
from bitcointx.core import Hash160
from bitcointx.wallet import CCoinAddress

NODE_DIR = Path(__file__).resolve().parents[1] / "node"
FLAGS = {SCRIPT_VERIFY_P2SH, SCRIPT_VERIFY_WITNESS, SCRIPT_VERIFY_DERSIG, SCRIPT_VERIFY_LOW_S,
         SCRIPT_VERIFY_NULLDUMMY, SCRIPT_VERIFY_NULLFAIL, SCRIPT_VERIFY_STRICTENC,
         SCRIPT_VERIFY_WITNESS_PUBKEYTYPE, SCRIPT_VERIFY_CLEANSTACK}
CHAINS = {"mainnet": "bitcoin", "testnet": "bitcoin/testnet", "signet": "bitcoin/signet",
          "regtest": "bitcoin/regtest"}


def _witness_stack(raw: bytes) -> list[bytes]:
    def size(i: int) -> tuple[int, int]:
        b = raw[i]
        if b < 0xFD:
            return b, i + 1
        n = {0xFD: 2, 0xFE: 4, 0xFF: 8}[b]
        return int.from_bytes(raw[i + 1:i + 1 + n], "little"), i + 1 + n
    count, i = size(0)
    stack = []
    for _ in range(count):
        n, i = size(i)
        stack.append(raw[i:i + n])
        i += n
    assert i == len(raw), "trailing bytes after the witness stack"
    return stack


def bitcointx_verify(address: str, network: str, message: bytes, signature: str) -> None:
    """Raise unless ``signature`` (simple or full) proves ``address`` signed ``message``,
    by python-bitcointx's VerifyScript over BIP-322's to_spend and to_sign."""
    with ChainParams(CHAINS[network]):
        spk = CCoinAddress(address).to_scriptPubKey()
        tag = hashlib.sha256(b"BIP0322-signed-message").digest()
        mh = hashlib.sha256(tag + tag + message).digest()
        to_spend = CMutableTransaction(
            [CMutableTxIn(COutPoint(b"\x00" * 32, 0xFFFFFFFF), CScript([OP_0, mh]),
                          nSequence=0)], [CMutableTxOut(0, spk)], nLockTime=0, nVersion=0)
        raw = base64.b64decode(signature)
        try:
            full = CTransaction.deserialize(raw)
        except Exception:  # not a transaction: a simple signature
            full = None
        if full is not None and full.wit.vtxinwit:
            assert full.vin[0].prevout == COutPoint(to_spend.GetTxid(), 0)
            assert len(full.vout) == 1 and full.vout[0].nValue == 0
            assert full.vout[0].scriptPubKey == CScript([OP_RETURN])
            to_sign, stack = full, list(full.wit.vtxinwit[0].scriptWitness.stack)
            script_sig = full.vin[0].scriptSig
        else:
            stack = _witness_stack(raw)
            script_sig = CScript()
            if spk.is_p2sh():  # P2SH-P2WPKH: the redeem script from the witness's key
                script_sig = CScript([CScript([OP_0, Hash160(stack[-1])])])
            to_sign = CMutableTransaction(
                [CMutableTxIn(COutPoint(to_spend.GetTxid(), 0), script_sig, nSequence=0)],
                [CMutableTxOut(0, CScript([OP_RETURN]))], nLockTime=0, nVersion=0)
            to_sign.wit = CTxWitness([CTxInWitness(CScriptWitness(stack))])
        VerifyScript(script_sig, spk, to_sign, 0, flags=FLAGS, amount=0,
                     witness=CScriptWitness(stack))


def node_available() -> bool:
    return shutil.which("node") is not None and (NODE_DIR / "node_modules/bip322-js").is_dir()


def bip322_js(cases: list[dict[str, str]]) -> list[bool]:
    """bip322-js's Verifier.verifySignature(address, message, signature) for each case."""
    if not node_available():
        if os.environ.get("SIGNERD_CI"):
            pytest.fail("bip322-js is not installed in tests/node (scripts/install.sh --test)")
        pytest.skip("bip322-js is not installed in tests/node (scripts/install.sh --test)")
    script = ("const {Verifier} = require('bip322-js');"
              "const cases = JSON.parse(require('fs').readFileSync(0, 'utf8'));"
              "console.log(JSON.stringify(cases.map(c => { try { return "
              "Verifier.verifySignature(c.address, c.message, c.signature); } "
              "catch (e) { return false; } })));")
    r = subprocess.run(["node", "-e", script], input=json.dumps(cases), capture_output=True,
                       text=True, timeout=60, cwd=NODE_DIR,
                       env={**os.environ, "NODE_PATH": str(NODE_DIR / "node_modules")})
    assert r.returncode == 0, r.stderr
    return list(json.loads(r.stdout))


def cosigner_signs(psbt_b64: str, secret: bytes, network: str = "regtest") -> str:
    """An outside cosigner signs a PSBT with their own tool: python-bitcointx's PSBT signer,
    with the one key ``secret``."""
    from bitcointx.core.key import CKey, KeyStore
    from bitcointx.core.psbt import PartiallySignedTransaction

    with ChainParams(CHAINS[network]):
        psbt = PartiallySignedTransaction.from_base64(psbt_b64)
        assert psbt.sign(KeyStore.from_iterable([CKey(secret)]), finalize=False).is_ready
        return psbt.to_base64()
