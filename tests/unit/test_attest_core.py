"""Proof of control (core/attest): the attestation format parsed strictly, challenges that could
be taken for a transaction refused, and every proof checked by implementations that are not
signerd's: eth-account for EIP-191, python-bitcointx's script interpreter over BIP-322's
to_spend/to_sign and bip322-js for BIP-322, plus BIP-322's own test vectors."""
from __future__ import annotations

import base64
import json
from pathlib import Path

import coincurve
import pytest
import rlp
from eth_account import Account
from eth_account.messages import _hash_eip191_message, encode_defunct

from signerd.core import attest as T
from signerd.core.bitcoin import address as BA
from signerd.core.chains import derive_address
from signerd.core.errors import InvalidArgument
from signerd.core.bitcoin.psbt import Psbt
from signerd.core.model import (Category, Chain, KeyRef, ScriptType, Wallet, WalletStatus)
from tests.support.bip322 import bip322_js, bitcointx_verify

VECTORS = json.loads((Path(__file__).resolve().parents[1] / "vectors/bip322.json").read_text())
BLOCK_HASH = "00000000000000000002a7c4c1e48d76c5a37902165a270156b7a8d72728a054"
# An EIP-1559 transaction signed by eth-account, and a segwit Bitcoin transaction (BIP-143's
# native P2WPKH example): what a challenge must never be.
ETH_TX = Account.sign_transaction(
    {"chainId": 1, "nonce": 0, "maxPriorityFeePerGas": 1, "maxFeePerGas": 2, "gas": 21000,
     "to": "0x000000000000000000000000000000000000dEaD", "value": 1, "data": b"",
     "accessList": [], "type": 2}, "0x" + "11" * 32).raw_transaction.hex()
# An unsigned EIP-1559 payload (type byte and RLP list), short enough for a challenge's length.
ETH_UNSIGNED = b"\x02" + rlp.encode([1, 0, 1, 2, 21000, b"\xde" * 20, 1, b"", []])
BTC_TX = ("0100000002fff7f7881a8099afa6940d42d1e7f6362bec38171ea3edf433541db4e4ad969f00000000494830"
          "450221008b9d1dc26ba6a9cb62127b02742fa9d754cd3bebf337f7a55d114c8e5cdd30be022040529b194ba3f9"
          "281a99f2b1c0a19c0489bc22ede944ccf4ecbab4cc618ef3ed01eeffffffef51e1b804cc89d182d279655c3aa8"
          "9e815b1b309fe287d9b2b55d57b90ec68a0100000000ffffffff02202cb206000000001976a9148280b37df378"
          "db99f66f85c95a783a76ac7a6d5988ac9093510d000000001976a9143bde42dbee7e4dbe6a21b2d50ce2f0167f"
          "aa815988ac11000000")


def text(**changes: str) -> str:
    fields = dict(statement="a_0123456789abcdef0123", issuer="Federal Custody Office",
                  address="bc1q9vza2e8x573nczrlzms0wvx3gsqjx7vavgkx0l", chain="bitcoin mainnet",
                  category="seized", case="CASE-2026-001", date="2026-11-30",
                  challenge=BLOCK_HASH)
    fields.update(changes)
    return T.render_text(T.Attestation(**fields))


# ---------------------------------------------------------------- the format

def test_the_text_is_the_fixed_format_and_parses_back() -> None:
    t = text()
    lines = t.split("\n")
    assert lines[0] == "signerd proof of control v1" and lines[1] == T.NOTICE
    assert [line.split(": ", 1)[0] for line in lines[2:]] == list(T.FIELDS)
    assert T.render_text(T.parse_text(t)) == t and not t.endswith("\n")


@pytest.mark.parametrize("bad, why", [
    (lambda t: t.replace("signerd proof of control v1", "signerd proof of control v2"), "line 1"),
    (lambda t: t + "\n", "lines"),
    (lambda t: t.replace("\n", "\r\n"), "line 1"),
    (lambda t: t + "\nvalue: 1000000", "lines"),
    (lambda t: t.replace("issuer: ", "issuer:  "), "issuer"),
    (lambda t: t.replace("case: CASE", "case: \tCASE"), "case"),
    (lambda t: t.replace("date: 2026-11-30", "date: 2026-02-30"), "date"),
    (lambda t: "\n".join(t.split("\n")[:4] + [t.split("\n")[5], t.split("\n")[4]]
                         + t.split("\n")[6:]), "line 5"),
    (lambda t: "Transfer 100 BTC to bc1q...", "line 1"),
    (lambda t: '{"types": {"Permit": []}, "primaryType": "Permit"}', "line 1"),
    (lambda t: t.replace("category: seized", "category: SEIZED"), "category"),
    (lambda t: t.replace(BLOCK_HASH, BLOCK_HASH + "\u200b"), "challenge"),
], ids=["other header", "trailing newline", "CRLF", "extra line", "two spaces", "tab",
        "no such date", "fields swapped", "prose", "typed data", "category case", "non-ASCII"])
def test_a_text_not_in_the_format_is_refused(bad, why: str) -> None:
    with pytest.raises(InvalidArgument, match=why):
        T.parse_text(bad(text()))


@pytest.mark.parametrize("challenge", [
    BLOCK_HASH, "0x" + BLOCK_HASH, "auditor-nonce-7f3a9c", "Audit 2026/Q4 nonce 5521",
    base64.b64encode(bytes(range(40))).decode(), "AbCdEfGhIjKlMnOpQrStUvWxYz0123456789AbCdEfGh"])
def test_block_hashes_and_nonces_are_challenges(challenge: str) -> None:
    assert T.check_challenge(challenge) == challenge
    assert T.parse_text(text(challenge=challenge)).challenge == challenge


@pytest.mark.parametrize("challenge, why", [
    ("nonce\nvalue: 100", "newline"), ("nonce\x00abcdefgh", "control"),
    ("nonce\tabcdefgh", "control"), (" leading-space", "printable"), ("short", "at least"),
    ("x" * 129, "at most"), ("n\u00f6nce-123456", "ASCII"),
    (ETH_TX, "at most"), (ETH_UNSIGNED.hex(), "bytes of hex"),
    ("0x" + ETH_UNSIGNED.hex(), "bytes of hex"),
    (base64.b64encode(ETH_UNSIGNED).decode(), "Ethereum typed transaction"),
    (BTC_TX[:120], "bytes of hex"),
    (base64.b64encode(bytes.fromhex(BTC_TX)).decode(), "at most"),
    (base64.b64encode(b"psbt\xff" + b"\x00" * 40).decode(), "PSBT"),
    (base64.b64encode(bytes([0xC4, 1, 2, 3, 4])).decode(), "RLP list"),
], ids=["newline", "NUL", "tab", "leading space", "too short", "too long", "non-ASCII",
        "signed eth tx hex", "eth tx hex", "eth tx 0x hex", "eth tx base64", "btc tx hex", "btc tx base64 (long)",
        "psbt base64", "rlp list base64"])
def test_a_challenge_that_could_be_taken_for_something_else_is_refused(challenge: str,
                                                                       why: str) -> None:
    with pytest.raises(InvalidArgument, match=why):
        T.check_challenge(challenge)


def test_a_short_bitcoin_transaction_in_base64_is_refused() -> None:
    raw = bytes.fromhex("01000000" "01" + "00" * 36 + "00" + "ffffffff" "01" + "00" * 8 + "00"
                        + "00000000")
    with pytest.raises(InvalidArgument, match="Bitcoin transaction"):
        T.check_challenge(base64.b64encode(raw).decode())


# ---------------------------------------------------------------- EIP-191

def _eth_wallet(secret: bytes) -> Wallet:
    pub = coincurve.PrivateKey(secret).public_key.format(compressed=True)
    address, _ = derive_address(Chain.ETHEREUM, "ethereum", ScriptType.EOA, 1, [pub])
    return Wallet(id="w_00000000000000e1", chain=Chain.ETHEREUM, network="ethereum",
                  script_type=ScriptType.EOA, category=Category.STRATEGIC, case_ref="RESERVE",
                  legal_basis="", status=WalletStatus.ACTIVE, address=address,
                  keys=(KeyRef("k1", "k1", pub),), chain_ids=(1,))


def test_eip191_digest_is_eth_accounts_and_our_signature_recovers_there() -> None:
    secret = bytes(range(1, 33))
    w = _eth_wallet(secret)
    t = text(address=w.address, chain="ethereum 1", category="strategic", case="RESERVE")
    digest = T.eip191_digest(t)
    assert digest == _hash_eip191_message(encode_defunct(text=t))
    sig = coincurve.PrivateKey(secret).sign_recoverable(digest, hasher=None)
    r, s = int.from_bytes(sig[:32], "big"), int.from_bytes(sig[32:64], "big")
    proof = T.eip191_signature(digest, r, s, w.keys[0].public_key)
    assert Account.recover_message(encode_defunct(text=t), signature=proof) == w.address
    assert T.eip191_recover(t, proof) == w.address
    # eth-account's own signature verifies with ours
    theirs = Account.sign_message(encode_defunct(text=t), private_key=secret).signature.hex()
    assert T.eip191_recover(t, "0x" + theirs.removeprefix("0x")) == w.address
    flipped = proof[:-4] + ("00" if proof[-4:-2] != "00" else "01") + proof[-2:]
    assert T.eip191_recover(t, flipped) != w.address


# ---------------------------------------------------------------- BIP-322: the BIP's vectors

@pytest.mark.parametrize("v", VECTORS["message_hashes"], ids=lambda v: repr(v["message"]))
def test_bip322_message_hash_vectors(v: dict[str, str]) -> None:
    assert T.message_hash(v["message"].encode()).hex() == v["hash"]


@pytest.mark.parametrize("v", VECTORS["transaction_ids"], ids=lambda v: repr(v["message"]))
def test_bip322_to_spend_and_to_sign_vectors(v: dict[str, str]) -> None:
    spk = BA.address_to_script(VECTORS["address"], "mainnet")
    spend = T.to_spend(v["message"].encode(), spk)
    assert spend.txid_hex == v["to_spend"]
    assert T.to_sign(spend).txid_hex == v["to_sign"]


@pytest.mark.parametrize("v", VECTORS["signatures"], ids=lambda v: repr(v["message"]))
def test_bip322_signature_vectors_verify_here_and_in_bitcointx(v: dict[str, object]) -> None:
    for sig in v["signatures"]:  # type: ignore[union-attr]
        msg = str(v["message"])
        assert T.bip322_verify(VECTORS["address"], "mainnet", msg, sig) == "bip322-simple"
        bitcointx_verify(VECTORS["address"], "mainnet", msg.encode(), sig)
        with pytest.raises(T.InvalidProof):
            T.bip322_verify(VECTORS["address"], "mainnet", msg + "!", sig)


def _wif_secret(wif: str) -> bytes:
    from bitcointx.wallet import CBitcoinKey
    return bytes(CBitcoinKey(wif).secret_bytes)


def test_our_bip322_digest_signs_the_vectors_signature() -> None:
    """The BIP's key signing our digest for "Hello World" (RFC 6979) gives the BIP's simple
    signature byte for byte."""
    secret = _wif_secret(VECTORS["private_key"])
    key = coincurve.PrivateKey(secret)
    pub = key.public_key.format(compressed=True)
    spk = BA.address_to_script(VECTORS["address"], "mainnet")
    from signerd.core.bitcoin import sighash as SH
    from signerd.core.bitcoin import script as S
    for v in VECTORS["signatures"]:
        tx = T.to_sign(T.to_spend(str(v["message"]).encode(), spk))
        digest = SH.bip143_sighash(tx, 0, S.p2wpkh_script_code(S.hash160(pub)), 0, 1)
        der = key.sign(digest, hasher=None)
        simple = base64.b64encode(T.encode_witness([der + b"\x01", pub])).decode()
        assert simple in v["signatures"]  # type: ignore[operator]


# ---------------------------------------------------------------- BIP-322: signerd's wallets

def _btc_wallet(script_type: ScriptType, secrets: list[bytes], threshold: int = 1,
                network: str = "regtest") -> Wallet:
    pubs = [coincurve.PrivateKey(s).public_key.format(compressed=True) for s in secrets]
    address, desc = derive_address(Chain.BITCOIN, network, script_type, threshold, pubs)
    return Wallet(id="w_00000000000000b1", chain=Chain.BITCOIN, network=network,
                  script_type=script_type, category=Category.CONFISCATED, case_ref="CASE-7",
                  legal_basis="", status=WalletStatus.ACTIVE, address=address,
                  keys=tuple(KeyRef(f"k{i}", f"k{i}", p) for i, p in enumerate(pubs)),
                  descriptor=desc, threshold=threshold)


def _prove(w: Wallet, secrets: list[bytes]) -> tuple[str, str, str]:
    t = text(address=w.address, chain=f"bitcoin {w.network}", category="confiscated",
             case="CASE-7")
    digest = T.bip322_digest(w, t)
    sigs = {}
    for s in secrets:
        key = coincurve.PrivateKey(s)
        der = key.sign(digest, hasher=None)
        from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature
        sigs[key.public_key.format(compressed=True)] = decode_dss_signature(der)
    method, sig, complete = T.bip322_signature(w, t, sigs)
    assert complete
    return t, method, sig


WALLETS = [
    ("p2wpkh", ScriptType.P2WPKH, 1, 1, "bip322-simple"),
    ("p2sh-p2wpkh", ScriptType.P2SH_P2WPKH, 1, 1, "bip322-simple"),
    ("p2wsh 2-of-3", ScriptType.P2WSH_SORTEDMULTI, 3, 2, "bip322-full"),
]


@pytest.mark.parametrize("name, script_type, keys, threshold, method", WALLETS,
                         ids=[w[0] for w in WALLETS])
def test_bip322_proofs_verify_in_bitcointx(name: str, script_type: ScriptType, keys: int,
                                           threshold: int, method: str) -> None:
    secrets = [bytes([i + 7]) * 32 for i in range(keys)]
    w = _btc_wallet(script_type, secrets, threshold)
    t, got, sig = _prove(w, secrets[:threshold])
    assert got == method
    bitcointx_verify(w.address, w.network, t.encode(), sig)
    assert T.bip322_verify(w.address, w.network, t, sig) == method
    other = t.replace("CASE-7", "CASE-8")
    with pytest.raises(Exception):
        bitcointx_verify(w.address, w.network, other.encode(), sig)
    with pytest.raises(T.InvalidProof):
        T.bip322_verify(w.address, w.network, other, sig)


def test_bip322_simple_proofs_verify_in_bip322_js() -> None:
    cases = []
    for _, script_type, keys, threshold, _m in WALLETS[:2]:
        secrets = [bytes([i + 9]) * 32 for i in range(keys)]
        w = _btc_wallet(script_type, secrets, threshold, network="mainnet")
        t, _, sig = _prove(w, secrets)
        cases.append({"address": w.address, "message": t, "signature": sig})
        cases.append({"address": w.address, "message": t + " ", "signature": sig})
    v = VECTORS["signatures"][1]
    cases.append({"address": VECTORS["address"], "message": v["message"],
                  "signature": v["signatures"][0]})
    assert bip322_js(cases) == [True, False, True, False, True]


# ---------------------------------------------------------------- BIP-322 with outside cosigners

def _cosigned_wallet() -> tuple[Wallet, list[bytes], str]:
    """A 2-of-3 P2WSH multisig: one key in signerd's HSM, two held by outside cosigners."""
    secrets = [bytes([i + 21]) * 32 for i in range(3)]
    w = _btc_wallet(ScriptType.P2WSH_SORTEDMULTI, secrets, 2)
    keys = tuple(KeyRef(k.key_id if i == 0 else f"ext-{i}", k.label, k.public_key)
                 for i, k in enumerate(w.keys))
    w = Wallet(**{**w.__dict__, "keys": keys})
    t = text(address=w.address, chain=f"bitcoin {w.network}", category="confiscated",
             case="CASE-7")
    return w, secrets, t


def _ours(w: Wallet, secret: bytes, t: str) -> Psbt:
    from signerd.core.bitcoin import signer as SG

    digest = T.bip322_digest(w, t)
    key = coincurve.PrivateKey(secret)
    return SG.add_signatures(T.bip322_psbt(w, t), [
        (0, key.public_key.format(), key.sign(digest, hasher=None) + b"\x01", digest)])


def _bitcointx_signs(psbt_b64: str, secret: bytes) -> str:
    """An outside cosigner's own tool signs the PSBT: python-bitcointx's PSBT signer."""
    from bitcointx import ChainParams
    from bitcointx.core.key import CKey, KeyStore
    from bitcointx.core.psbt import PartiallySignedTransaction

    with ChainParams("bitcoin/regtest"):
        psbt = PartiallySignedTransaction.from_base64(psbt_b64)
        result = psbt.sign(KeyStore.from_iterable([CKey(secret)]), finalize=False)
        assert result.num_inputs_signed == 1
        return psbt.to_base64()


def test_a_cosigned_multisig_proves_control_with_a_psbt_its_cosigners_sign_elsewhere() -> None:
    from signerd.core.bitcoin import signer as SG
    from signerd.core.chains import BitcoinAdapter

    w, secrets, t = _cosigned_wallet()
    assert T.cosigned(w)
    ours = _ours(w, secrets[0], t)
    # The PSBT carries what a cosigner's tool needs: to_spend in full and its output, the
    # witness script, SIGHASH_ALL; only signerd's signature so far, which is not enough.
    inp = ours.inputs[0]
    assert inp.witness_utxo == inp.non_witness_utxo.outputs[0] and inp.witness_utxo.value == 0
    assert inp.witness_script == T.witness_script(w) and inp.sighash_type == 1
    assert T.bip322_cosigned(w, t, ours)[1:] == (1, False)
    theirs = Psbt.from_base64(_bitcointx_signs(ours.to_base64(), secrets[2]))
    merged = SG.combine_verified(ours, theirs, BitcoinAdapter.spec(w))
    signature, count, complete = T.bip322_cosigned(w, t, merged)
    assert (count, complete) == (2, True)
    bitcointx_verify(w.address, w.network, t.encode(), signature)
    assert T.bip322_verify(w.address, w.network, t, signature) == "bip322-full"


def test_a_cosigners_signature_over_another_digest_or_by_another_key_is_refused() -> None:
    from dataclasses import replace

    from signerd.core.bitcoin import signer as SG
    from signerd.core.chains import BitcoinAdapter
    from signerd.core.errors import InvalidPsbt

    w, secrets, t = _cosigned_wallet()
    ours = _ours(w, secrets[0], t)
    spec = BitcoinAdapter.spec(w)

    def with_sig(secret: bytes, digest: bytes):
        key = coincurve.PrivateKey(secret)
        inp = ours.inputs[0]
        return ours.with_input(0, replace(inp, partial_sigs={
            **inp.partial_sigs, key.public_key.format(): key.sign(digest, hasher=None) + b"\x01"}))

    other = T.bip322_digest(w, t.replace("CASE-7", "CASE-8"))  # another text's digest
    with pytest.raises(InvalidPsbt, match="does not verify"):
        SG.combine_verified(ours, with_sig(secrets[1], other), spec)
    with pytest.raises(InvalidPsbt, match="not a key of this wallet"):
        SG.combine_verified(ours, with_sig(b"\x55" * 32, T.bip322_digest(w, t)), spec)
    # Nor does such a signature count when the full signature is made.
    assert T.bip322_cosigned(w, t, with_sig(secrets[1], other))[1:] == (1, False)
    # A PSBT of another text is not this wallet's to_sign.
    with pytest.raises(InvalidPsbt, match="not the BIP-322 to_sign"):
        T.bip322_cosigned(w, t, T.bip322_psbt(w, t.replace("CASE-7", "CASE-8")))
