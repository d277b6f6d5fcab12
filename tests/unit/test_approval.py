"""The approval statement: binds every field, canonical bytes, Ed25519 over its SHA-256."""
from __future__ import annotations

import hashlib
import json
from dataclasses import replace

import pytest
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from signerd.core import operator_keys
from signerd.core.approval import (
    DOMAIN_TAG,
    StatementContext,
    build_statement,
    render,
    sign_statement,
    statement_digest,
    verify_statement,
)
from signerd.core.errors import InvalidApproval, InvalidArgument, InvalidKey
from signerd.core.model import Chain, Decision, DestinationClass, Movement, Output, Token
from signerd.core.tokens import format_units

CTX = StatementContext(instance_id="signerd-1", transfer_id="t-42", wallet_id="w-7",
                       policy_version=3, expires_at=1_700_000_000,
                       payload_sha256=hashlib.sha256(b"payload").digest(),
                       legal_basis="District Court Hamburg; 12 Js 77/24; 2024-12-02",
                       category_change="seized_to_confiscated")
ETH = Movement(
    chain=Chain.ETHEREUM, network="ethereum", chain_id=1,
    outputs=(Output("0x" + "11" * 20, 2**70 + 1, "ETH", False, DestinationClass.EXTERNAL),),
    fee=21000 * 30 * 10**9, fee_asset="ETH", digests=(bytes(range(32)),), nonce=7,
    gas_limit=21000, max_fee_per_gas=30 * 10**9, max_priority_fee_per_gas=10**9)
BTC = Movement(
    chain=Chain.BITCOIN, network="mainnet", chain_id=0,
    outputs=(Output("bc1qdest", 100_000, "BTC", False, DestinationClass.EXTERNAL),
             Output("bc1qchange", 50_000_000, "BTC", True, DestinationClass.OWN_WALLET)),
    fee=1_410, fee_asset="BTC", digests=(b"\x01" * 32, b"\x02" * 32), vsize=141,
    outpoints=("aa" * 32 + ":0", "bb" * 32 + ":1"), sighash=("ALL", "ALL"))


def body(statement: bytes) -> dict:
    tag, _, text = statement.partition(b"\n")
    assert tag == DOMAIN_TAG
    return json.loads(text)


def test_statement_is_tagged_canonical_json():
    statement = build_statement(CTX, ETH, Decision.APPROVE)
    assert statement.startswith(b"signerd-approval/v1\n")
    doc = body(statement)
    # re-serialising with the canonical settings gives the same bytes
    canonical = json.dumps(doc, sort_keys=True, separators=(",", ":"), ensure_ascii=True)
    assert statement == DOMAIN_TAG + b"\n" + canonical.encode()
    assert statement == build_statement(replace(CTX), replace(ETH), Decision.APPROVE)


def test_statement_fields_and_big_integers():
    doc = body(build_statement(CTX, ETH, Decision.APPROVE))
    assert doc["outputs"] == [{"address": "0x" + "11" * 20, "amount": str(2**70 + 1),
                               "asset": "ETH", "change": False,
                               "destination_class": "external", "wallet_id": "",
                               "category": ""}]
    assert doc["chain_id"] == "1" and doc["nonce"] == "7" and doc["vsize"] is None
    assert doc["fee"] == str(21000 * 30 * 10**9) and doc["expires_at"] == "1700000000"
    assert doc["digests"] == [bytes(range(32)).hex()]
    assert doc["payload_sha256"] == hashlib.sha256(b"payload").hexdigest()
    assert doc["decision"] == "APPROVE" and doc["policy_version"] == "3"
    assert doc["category_change"] == "seized_to_confiscated"
    assert set(doc) == {
        "instance_id", "transfer_id", "wallet_id", "submitter", "chain", "network", "chain_id",
        "digests",
        "outputs", "fee", "fee_asset", "nonce", "gas_limit", "max_fee_per_gas",
        "max_priority_fee_per_gas", "contract_call", "vsize", "outpoints", "sighash",
        "payload_sha256", "policy_version", "category_change", "legal_basis", "replaces",
        "vetoed", "decision", "expires_at"}
    assert doc["sighash"] == []
    assert body(build_statement(CTX, BTC, Decision.APPROVE))["sighash"] == ["ALL", "ALL"]
    assert doc["replaces"] is None
    bump = body(build_statement(REPLACING, ETH, Decision.APPROVE))
    assert bump["replaces"] == {"transfer_id": "t-41", "state": "SIGNED",
                                "fee_delta": str(-(2**70))}
    assert doc["vetoed"] == []
    again = body(build_statement(VETOED, ETH, Decision.APPROVE))
    assert again["vetoed"] == [{"role": "judge", "transfer_id": "t-40"},
                               {"role": "prosecutor", "transfer_id": "t-39"}]
    # sorted: the order the context lists them in does not matter
    assert build_statement(replace(VETOED, vetoed=VETOED.vetoed[::-1]), ETH,
                           Decision.APPROVE) == build_statement(VETOED, ETH, Decision.APPROVE)


REPLACING = replace(CTX, replaces="t-41", replaces_state="SIGNED", replaces_fee_delta=-(2**70))
VETOED = replace(CTX, vetoed=(("prosecutor", "t-39"), ("judge", "t-40")))


def _out(m: Movement, i: int = 0, **kw) -> Movement:
    outs = list(m.outputs)
    outs[i] = replace(outs[i], **kw)
    return replace(m, outputs=tuple(outs))


CHANGES = [
    ("fee", CTX, replace(ETH, fee=ETH.fee + 1), Decision.APPROVE),
    ("destination", CTX, _out(ETH, address="0x" + "11" * 19 + "12"), Decision.APPROVE),
    ("amount", CTX, _out(ETH, amount=2**70 + 2), Decision.APPROVE),
    ("asset", CTX, _out(ETH, asset="ERC20:0x" + "22" * 20), Decision.APPROVE),
    ("change flag", CTX, _out(ETH, is_change=True), Decision.APPROVE),
    ("destination class", CTX, _out(ETH, destination_class=DestinationClass.ALLOWLISTED),
     Decision.APPROVE),
    ("chain id", CTX, replace(ETH, chain_id=2), Decision.APPROVE),
    ("network", CTX, replace(ETH, network="sepolia"), Decision.APPROVE),
    ("nonce", CTX, replace(ETH, nonce=8), Decision.APPROVE),
    ("gas limit", CTX, replace(ETH, gas_limit=21001), Decision.APPROVE),
    ("max fee per gas", CTX, replace(ETH, max_fee_per_gas=30 * 10**9 + 1), Decision.APPROVE),
    ("priority fee", CTX, replace(ETH, max_priority_fee_per_gas=10**9 + 1), Decision.APPROVE),
    ("contract call", CTX, replace(ETH, contract_call="0x00"), Decision.APPROVE),
    ("digest", CTX, replace(ETH, digests=(bytes(range(31)) + b"\x20",)), Decision.APPROVE),
    ("extra digest", CTX, replace(ETH, digests=ETH.digests * 2), Decision.APPROVE),
    ("vsize", CTX, replace(ETH, vsize=1), Decision.APPROVE),
    ("outpoints", CTX, replace(ETH, outpoints=("aa" * 32 + ":0",)), Decision.APPROVE),
    ("fee asset", CTX, replace(ETH, fee_asset="BTC"), Decision.APPROVE),
    ("sighash", CTX, replace(ETH, sighash=("ALL",)), Decision.APPROVE),
    ("decision", CTX, ETH, Decision.REJECT),
    ("expiry", replace(CTX, expires_at=CTX.expires_at + 1), ETH, Decision.APPROVE),
    ("transfer id", replace(CTX, transfer_id="t-43"), ETH, Decision.APPROVE),
    ("wallet id", replace(CTX, wallet_id="w-8"), ETH, Decision.APPROVE),
    ("instance id", replace(CTX, instance_id="signerd-2"), ETH, Decision.APPROVE),
    ("policy version", replace(CTX, policy_version=4), ETH, Decision.APPROVE),
    ("payload", replace(CTX, payload_sha256=hashlib.sha256(b"payload2").digest()), ETH,
     Decision.APPROVE),
    ("legal basis", replace(CTX, legal_basis="District Court Hamburg; 13 Js 77/24; 2024-12-02"),
     ETH, Decision.APPROVE),
    ("category change", replace(CTX, category_change="seized_to_returned"), ETH,
     Decision.APPROVE),
    ("replaces", REPLACING, ETH, Decision.APPROVE),
    ("vetoed before", VETOED, ETH, Decision.APPROVE),
    ("vetoed by another role", replace(VETOED, vetoed=(("prosecutor", "t-39"),
                                                      ("investigator", "t-40"))), ETH,
     Decision.APPROVE),
    ("vetoed in another transfer", replace(VETOED, vetoed=(("prosecutor", "t-39"),
                                                          ("judge", "t-38"))), ETH,
     Decision.APPROVE),
    ("one veto less", replace(VETOED, vetoed=(("judge", "t-40"),)), ETH, Decision.APPROVE),
]
# What a replacement replaces is bound: each of its fields, against the replacement.
REPLACEMENT_CHANGES = [
    ("replaced transfer", replace(REPLACING, replaces="t-40")),
    ("replaced state", replace(REPLACING, replaces_state="PENDING_APPROVAL")),
    ("replaced state not recorded", replace(REPLACING, replaces_state="")),
    ("fee delta", replace(REPLACING, replaces_fee_delta=-(2**70) + 1)),
    ("fee delta sign", replace(REPLACING, replaces_fee_delta=2**70)),
    ("not a replacement", CTX),
]


USDT = Token(1, "0xdAC17F958D2ee523a2206206994597C13D831ec7", "erc20", "USDT", 6)
ETH_USDT = replace(ETH, outputs=(Output("0x" + "11" * 20, 10**9, "ERC20:" + USDT.address),),
                   tokens=(USDT,))
TOKEN_CHANGES = [
    ("token symbol", replace(ETH_USDT, tokens=(replace(USDT, symbol="USDC"),))),
    ("token decimals", replace(ETH_USDT, tokens=(replace(USDT, decimals=18),))),
    ("token address", replace(ETH_USDT, tokens=(replace(USDT, address="0x" + "22" * 20),))),
    ("token chain", replace(ETH_USDT, tokens=(replace(USDT, chain_id=10),))),
    ("token standard", replace(ETH_USDT, tokens=(replace(USDT, standard="erc777"),))),
    ("token dropped", replace(ETH_USDT, tokens=())),
]


def test_statement_binds_the_registered_tokens_only_when_there_are_some():
    assert "tokens" not in body(build_statement(CTX, ETH, Decision.APPROVE))
    doc = body(build_statement(CTX, ETH_USDT, Decision.APPROVE))
    assert doc["tokens"] == [{"chain_id": "1", "address": USDT.address, "standard": "erc20",
                              "symbol": "USDT", "decimals": "6"}]


@pytest.mark.parametrize("movement", [c[1] for c in TOKEN_CHANGES],
                         ids=[c[0] for c in TOKEN_CHANGES])
def test_a_token_entry_told_otherwise_changes_the_statement(movement):
    assert (build_statement(CTX, movement, Decision.APPROVE)
            != build_statement(CTX, ETH_USDT, Decision.APPROVE))


def test_render_shows_a_registered_token_with_symbol_and_decimals():
    approve = Output("0x" + "55" * 20, 2**256 - 1, "ERC20-APPROVE:" + USDT.address)
    mv = replace(ETH_USDT, outputs=ETH_USDT.outputs + (approve,))
    text = render(CTX, mv, Decision.APPROVE)
    assert (f"1. send 1,000.00 USDT (1000000000 base units) to 0x{'11' * 20} [external]"
            in text)
    assert (f"approve spender 0x{'55' * 20} for an allowance of "
            f"{format_units(2**256 - 1, 6)} USDT ({2**256 - 1} base units)") in text
    assert (f"token:           USDT = ERC20 contract {USDT.address} on chain 1, 6 decimals "
            "(governance token registry)") in text


@pytest.mark.parametrize(("ctx", "movement", "decision"), [c[1:] for c in CHANGES],
                         ids=[c[0] for c in CHANGES])
def test_any_change_changes_the_statement(ctx, movement, decision):
    base = build_statement(CTX, ETH, Decision.APPROVE)
    changed = build_statement(ctx, movement, decision)
    assert changed != base
    assert statement_digest(changed) != statement_digest(base)


@pytest.mark.parametrize("ctx", [c[1] for c in REPLACEMENT_CHANGES],
                         ids=[c[0] for c in REPLACEMENT_CHANGES])
def test_any_change_of_what_is_replaced_changes_the_statement(ctx):
    assert build_statement(ctx, ETH, Decision.APPROVE) != build_statement(REPLACING, ETH,
                                                                          Decision.APPROVE)


@pytest.mark.parametrize("types", [("NONE", "ALL"), ("ALL", "SINGLE"),
                                   ("ALL|ANYONECANPAY", "ALL"), ("ALL", "ALL", "ALL"), ("ALL",),
                                   ("ALL", "NONE|ANYONECANPAY")])
def test_each_inputs_sighash_is_bound(types):
    assert build_statement(CTX, replace(BTC, sighash=types), Decision.APPROVE) != \
        build_statement(CTX, BTC, Decision.APPROVE)


def test_output_order_is_bound():
    swapped = replace(BTC, outputs=BTC.outputs[::-1])
    assert build_statement(CTX, swapped, Decision.APPROVE) != build_statement(
        CTX, BTC, Decision.APPROVE)


@pytest.mark.parametrize(("ctx_kw", "mv_kw", "named"), [
    ({"payload_sha256": b"\0" * 31}, {}, "payload_sha256"),
    ({"category_change": "theft"}, {}, "category change"),
    ({"expires_at": -1}, {}, "expires_at"),
    ({"expires_at": 10**12}, {}, "expires_at"),
    ({"policy_version": "3"}, {}, "policy_version"),
    ({}, {"fee": -1}, "fee"),
    ({}, {"nonce": True}, "nonce"),
    ({}, {"digests": ("00" * 32,)}, "digest"),
    ({}, {"sighash": (1,)}, "sighash"),
    ({"replaces": "t-41", "replaces_state": "CANCELLED"}, {}, "replaces_state"),
    ({"replaces": "t-41", "replaces_fee_delta": "5"}, {}, "replaces_fee_delta"),
    ({"replaces": "t-41", "replaces_fee_delta": True}, {}, "replaces_fee_delta"),
    ({"replaces_state": "SIGNED"}, {}, "need replaces"),
    ({"replaces_fee_delta": 1}, {}, "need replaces"),
    ({"replaces": 41}, {}, "replaces"),
    ({"vetoed": (("judge",),)}, {}, "vetoed"),
    ({"vetoed": (("judge", ""),)}, {}, "vetoed"),
    ({"vetoed": [("judge", "t-1")]}, {}, "vetoed"),
])
def test_bad_fields_are_refused(ctx_kw, mv_kw, named):
    with pytest.raises(InvalidArgument, match=named):
        build_statement(replace(CTX, **ctx_kw), replace(ETH, **mv_kw), Decision.APPROVE)


def test_render_bitcoin():
    text = render(CTX, BTC, Decision.APPROVE)
    assert "APPROVE" in text
    assert "send 0.00100000 BTC (100000 sat) to bc1qdest [external]" in text
    assert "change 0.50000000 BTC (50000000 sat) to bc1qchange [own_wallet, CHANGE]" in text
    assert "0.00001410 BTC (1410 sat), 141 vB" in text
    assert "2023-11-14T22:13:20Z" in text
    assert ("aa" * 32 + ":0") in text and ("01" * 32) in text
    assert "seized_to_confiscated" in text
    assert ("legal basis:     District Court Hamburg; 12 Js 77/24; 2024-12-02\n"
            "  court:         District Court Hamburg\n"
            "  case number:   12 Js 77/24\n"
            "  decided on:    2024-12-02\n") in text


def test_render_marks_a_free_text_legal_basis_and_none():
    text = render(replace(CTX, legal_basis="court order 12/2024"), BTC, Decision.APPROVE)
    assert ("legal basis:     court order 12/2024\n"
            "  (free text, not a structured court reference)\n") in text
    assert "legal basis:     (none)\n" in render(replace(CTX, legal_basis=""), BTC,
                                                 Decision.APPROVE)


@pytest.mark.parametrize("state, delta, shown", [
    ("SIGNED", 4_500, "replaces:        t-41 (SIGNED), fee +4,500 sat"),
    ("PENDING_APPROVAL", -120, "replaces:        t-41 (PENDING_APPROVAL), fee -120 sat"),
    ("APPROVED", 0, "replaces:        t-41 (APPROVED), fee +0 sat"),
    ("", 7, "replaces:        t-41 (state not recorded), fee +7 sat"),
])
def test_render_shows_what_a_replacement_replaces(state, delta, shown):
    ctx = replace(CTX, replaces="t-41", replaces_state=state, replaces_fee_delta=delta)
    assert f"\n{shown}\n" in render(ctx, BTC, Decision.APPROVE)
    assert "replaces:" not in render(CTX, BTC, Decision.APPROVE)
    eth = render(replace(ctx, replaces_fee_delta=21_000 * 10**9), ETH, Decision.APPROVE)
    assert "fee +21,000,000,000,000 wei" in eth


def test_render_warns_of_each_earlier_veto():
    text = render(VETOED, BTC, Decision.APPROVE)
    assert _warnings(text) == [
        "WARNING: previously vetoed by judge in t-40; this transfer needs an approval by a "
        "judge as well",
        "WARNING: previously vetoed by prosecutor in t-39; this transfer needs an approval by a "
        "prosecutor as well"]
    assert not _warnings(render(CTX, BTC, Decision.APPROVE))


def test_render_bitcoin_sighash_all_has_no_warning():
    text = render(CTX, BTC, Decision.APPROVE)
    assert "\nsighash:         inputs 0-1 ALL\n" in text
    assert "WARNING" not in text
    assert "sighash" not in render(CTX, ETH, Decision.APPROVE)


def _warnings(text: str) -> list[str]:
    return [line for line in text.splitlines() if line.startswith("WARNING:")]


@pytest.mark.parametrize("types, shown, warnings", [
    (("ALL", "NONE"), "input 0 ALL, input 1 NONE",
     ["WARNING: SIGHASH_NONE on input 1: the outputs can be changed after signing (no output is "
      "signed), so whoever holds the signed transaction can send these funds anywhere."]),
    (("SINGLE", "SINGLE", "SINGLE"), "inputs 0-2 SINGLE",
     ["WARNING: SIGHASH_SINGLE on inputs 0-1: only the output at the same index as the input is "
      "signed; the other outputs can be changed or added after signing.",
      "WARNING: SIGHASH_SINGLE on input 2, with no output at the same index: no output is "
      "signed, so the outputs can be changed after signing and these funds sent anywhere."]),
    (("ALL|ANYONECANPAY", "ALL"), "input 0 ALL|ANYONECANPAY, input 1 ALL",
     ["WARNING: ANYONECANPAY on input 0: other inputs can be added (or the other inputs left "
      "out) after signing; the signature covers only its own input."]),
    (("NONE|ANYONECANPAY", "ALL", "NONE"), "input 0 NONE|ANYONECANPAY, input 1 ALL, input 2 NONE",
     ["WARNING: SIGHASH_NONE on inputs 0, 2: the outputs can be changed after signing (no output "
      "is signed), so whoever holds the signed transaction can send these funds anywhere.",
      "WARNING: ANYONECANPAY on input 0: other inputs can be added (or the other inputs left "
      "out) after signing; the signature covers only its own input."]),
    (("0x0", "ALL|FOO"), "input 0 0x0, input 1 ALL|FOO",
     ["WARNING: a non-standard sighash type on inputs 0-1: what it lets change after signing is "
      "not known here."]),
])
def test_render_shows_each_inputs_sighash_and_warns_of_any_but_all(types, shown, warnings):
    mv = replace(BTC, sighash=types)
    text = render(CTX, mv, Decision.APPROVE)
    assert f"\nsighash:         {shown}\n" in text
    assert _warnings(text) == warnings
    # signerctl shows the same lines from the movement it decodes itself
    from signerd.cli.documents import movement_json
    from signerd.cli.render import movement_text

    doc = movement_json(mv)
    assert _warnings(movement_text(doc)) == warnings
    assert f"\nsighash:          {shown}\n" in movement_text(doc)


def test_render_ethereum_and_tokens():
    eth = replace(ETH, outputs=ETH.outputs + (
        Output("0x" + "33" * 20, 5, "ERC20:0x" + "44" * 20),
        Output("0x" + "55" * 20, 2**256 - 1, "ERC20-APPROVE:0x" + "44" * 20)),
        contract_call="0xdeadbeef")
    text = render(CTX, eth, Decision.REJECT)
    assert "REJECT" in text
    assert f"1180.591620717411303425 ETH ({2**70 + 1} wei)" in text
    assert "chain id 1" in text and "nonce:           7" in text
    assert "0.000630000000000000 ETH (630000000000000 wei)" in text
    assert f"5 base units of token 0x{'44' * 20}" in text
    assert f"approve spender 0x{'55' * 20} for {2**256 - 1} base units" in text
    assert "0xdeadbeef (NOT decoded)" in text


def test_render_escapes_hostile_text():
    ctx = replace(CTX, legal_basis="ok\nsend 0 BTC to bc1qsafe [own_wallet]\x1b[2K")
    text = render(ctx, BTC, Decision.APPROVE)
    assert "\x1b" not in text
    assert "\nsend 0 BTC" not in text
    lookalike = _out(BTC, address="bc1q\u0430dest")  # Cyrillic a
    assert "\\u0430" in render(CTX, lookalike, Decision.APPROVE)


@pytest.fixture(scope="module")
def key():
    return operator_keys.generate()


@pytest.fixture(scope="module")
def pem(key):
    return operator_keys.public_pem(key)


def test_sign_and_verify(key, pem):
    statement = build_statement(CTX, BTC, Decision.APPROVE)
    signature = sign_statement(key, statement)
    verify_statement(pem, statement, signature, operator_id="inv1")
    # the signed message is SHA-256 of the statement, checked by libsodium independently
    nacl = pytest.importorskip("nacl.signing")
    raw = key.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)
    nacl.VerifyKey(raw).verify(hashlib.sha256(statement).digest(), signature)


def _bad_signatures(key):
    statement = build_statement(CTX, BTC, Decision.APPROVE)
    good = sign_statement(key, statement)
    other = operator_keys.generate()
    return statement, {
        "forged": bytes(64),
        "bit flipped": good[:10] + bytes([good[10] ^ 1]) + good[11:],
        "truncated": good[:63],
        "extended": good + b"\0",
        "empty": b"",
        "other statement": sign_statement(key, build_statement(CTX, BTC, Decision.REJECT)),
        "other key": sign_statement(other, statement),
        "unhashed statement": key.sign(statement),
    }


@pytest.mark.parametrize("case", ["forged", "bit flipped", "truncated", "extended", "empty",
                                  "other statement", "other key", "unhashed statement"])
def test_verify_rejects(key, pem, case):
    statement, bad = _bad_signatures(key)
    with pytest.raises(InvalidApproval, match="operator inv1"):
        verify_statement(pem, statement, bad[case], operator_id="inv1")


def test_verify_rejects_a_changed_statement(key, pem):
    statement = build_statement(CTX, BTC, Decision.APPROVE)
    signature = sign_statement(key, statement)
    with pytest.raises(InvalidApproval, match="does not verify for operator cust1"):
        verify_statement(pem, statement[:-1] + b" ", signature, operator_id="cust1")


def test_verify_refuses_keys_of_other_types(key):
    """Ed25519 and P-256 only: a secp256k1 or P-384 key is no operator key."""
    statement = build_statement(CTX, BTC, Decision.APPROVE)
    for curve in (ec.SECP256K1(), ec.SECP384R1()):
        other = ec.generate_private_key(curve).public_key().public_bytes(
            Encoding.PEM, PublicFormat.SubjectPublicKeyInfo)
        with pytest.raises(InvalidKey, match="operator keys must be Ed25519 or P-256"):
            verify_statement(other, statement, sign_statement(key, statement))


def test_signerctl_shows_the_wallet_of_ours_an_output_pays():
    """`signerctl transfer show` names the destination wallet and its category where an output
    pays one of signerd's wallets, as the statement does."""
    from signerd.cli.documents import movement_json
    from signerd.cli.render import movement_text

    ours = replace(BTC.outputs[0], destination_class=DestinationClass.EXTERNAL,
                   wallet_id="w_" + "c" * 16, category="confiscated", is_change=False)
    doc = movement_json(replace(BTC, outputs=(ours,)))
    line = next(x for x in movement_text(doc).splitlines() if x.startswith("  1."))
    assert line.endswith(f"[external confiscated wallet w_{'c' * 16}]"), line
    plain = movement_json(replace(BTC, outputs=(replace(ours, wallet_id="", category=""),)))
    line = next(x for x in movement_text(plain).splitlines() if x.startswith("  1."))
    assert line.endswith("[external]"), line
