"""Proof of control: the one text a custody key ever signs outside a transaction, its hashing
(EIP-191 for Ethereum, BIP-322 for Bitcoin), the act operators approve, and its verification
(pure: no I/O, no clock, no HSM).

**Only this format is ever signed.** An attestation text is a fixed header line, a fixed notice
line and nine ``name: value`` lines in a fixed order, LF-separated, printable ASCII, no trailing
newline, at most ``MAX_TEXT`` bytes::

    signerd proof of control v1
    This message proves control of the address below. It is not a transaction and authorises no payment, allowance or permit.
    purpose: holdings statement
    statement: a_0123456789abcdef0123
    issuer: Federal Custody Office
    address: bc1q...
    chain: bitcoin mainnet
    category: seized
    case: CASE-2026-001
    date: 2026-11-30
    challenge: 00000000000000000002a7c4c1e48d76c5a37902165a270156b7a8d72728a054

``parse_text`` accepts exactly what ``render_text`` writes (``render_text(parse_text(t)) == t``);
anything else (another header, a field out of order, a CR, a tab, a control character, a value
out of its alphabet or length) is InvalidArgument naming the line. A challenge that reads as a
transaction, a PSBT or more than 32 bytes of hex is refused (``check_challenge``), so no field
can carry something a wallet or a contract would take for a transaction or a permit.

**Hashing, computed by signerd, never taken from a client.**

- Ethereum: EIP-191 version 0x45 (``personal_sign``): keccak-256 of ``"\\x19Ethereum Signed
  Message:\\n" + len(text) + text``. A transaction's signing hash starts with its type byte or
  an RLP list, EIP-712 typed data (permits) with ``0x19 0x01``: the prefix keeps them apart.
- Bitcoin: BIP-322. ``message_hash`` is the tagged hash ``BIP0322-signed-message`` of the text;
  ``to_spend`` pays 0 to the address's script from the invalid outpoint ``000..000:ffffffff``
  with ``OP_0 PUSH32[message_hash]``; ``to_sign`` spends it to ``OP_RETURN``. The custody key
  signs the BIP-143 digest of ``to_sign``'s input (SIGHASH_ALL, amount 0): a transaction that
  spends an output no chain has. P2WPKH and P2SH-P2WPKH give *simple* signatures (the witness
  stack), a P2WSH multisig a *full* one (``to_sign`` serialised with its witness).

**The act.** An attestation (``document``) names every wallet it covers with its text; operators
approve it by signing ``statement(doc, decision)`` (``signerd-attestation/v1``) with their own
keys, so a change to any text voids every approval. ``requirement`` says what quorum it needs:
for each wallet, what its policy in force demands of a zero-value movement to an *external*
destination, never below the floor of two people of two roles (the floor is never waived for an
attestation), all merged. ``judge`` counts verified votes toward it.

**The holdings statement** (``EXPORT_FORMAT``) is the approved document, the approvals with the
approvers' keys, one proof per wallet, signerd's record of the transfers of the period, sealed by
the HSM audit key (``seal.valid`` under kind ``SEAL_KIND``); ``verify_export`` checks all of it
offline.
"""
from __future__ import annotations

import base64
import binascii
import hashlib
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import date as Date
from functools import reduce
from typing import Any

import coincurve

from . import approval as A
from . import authority as AU
from . import canonical
from . import policy as P
from . import seal as SEAL
from .bitcoin import address as btc_address
from .bitcoin import script as S
from .bitcoin import sighash as SH
from .bitcoin.psbt import Psbt, PsbtInput, PsbtOutput
from .bitcoin.signer import check_signature, der_encode
from .bitcoin.tx import (ByteReader, OutPoint, Transaction, TxIn, TxOut, encode_compact_size,
                         encode_var_bytes)
from .engine import policy_of
from .errors import InvalidArgument, InvalidPsbt, PolicyDenied, SignerError
from .ethereum.address import address_from_pubkey
from .ethereum.keccak import keccak256
from .ethereum.signing import low_s, recover_y_parity
from .model import (Category, Chain, Decision, DestinationClass, Movement, Output, ScriptType,
                    Wallet)


class InvalidProof(SignerError):
    """A proof of control that does not verify (offline verification)."""

    reason = "INVALID_PROOF"


HEADER = "signerd proof of control v1"
NOTICE = ("This message proves control of the address below. It is not a transaction and "
          "authorises no payment, allowance or permit.")
PURPOSE = "holdings statement"
FIELDS = ("purpose", "statement", "issuer", "address", "chain", "category", "case", "date",
          "challenge")
MAX_TEXT = 1024
MAX_FIELD = 128
MIN_CHALLENGE = 8
MAX_CHALLENGE_BYTES = 32  # a block hash; longer hex could be a transaction
MAX_WALLETS = 1000

ATTESTATION_TAG = b"signerd-attestation/v1"
EXPORT_FORMAT = "signerd-holdings-statement/v1"
SEAL_KIND = "holdings-statement"
DOCUMENT_SEAL = "attestation"  # the seal on the document as signerd recorded it
# The record of an attestation waiting for outside cosigners (its proofs so far, the BIP-322
# PSBTs of the wallets that wait), sealed as signerd wrote it.
COSIGNING_FORMAT = "signerd-attestation-cosigning/v1"
COSIGNING_SEAL = "attestation-cosigning"
ATTESTATION_ID = re.compile(r"a_[0-9a-f]{20}")
METHODS = {"eip191": "EIP-191 personal_sign", "bip322-simple": "BIP-322 simple",
           "bip322-full": "BIP-322 full"}

# printable ASCII, no leading or trailing space
_SAFE = re.compile(r"[!-~](?:[ -~]*[!-~])?")
_ADDRESS = re.compile(r"(?:0x[0-9a-fA-F]{40}|[a-km-zA-HJ-NP-Z1-9]{25,35}|[a-z]{2,4}1[02-9ac-hj-np-z]{8,87})")
_CHAIN = re.compile(r"bitcoin (?:mainnet|testnet|signet|regtest)|ethereum [1-9][0-9]{0,19}")
_DATE = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}")
_HEX = re.compile(r"(?:0[xX])?([0-9a-fA-F]*)")


@dataclass(frozen=True)
class Attestation:
    """The fields of one attestation text (``render_text`` writes it, ``parse_text`` reads it)."""

    statement: str  # the attestation (act) id, a_...
    issuer: str
    address: str
    chain: str  # "bitcoin NETWORK" or "ethereum CHAIN_ID"
    category: str
    case: str
    date: str  # YYYY-MM-DD (UTC)
    challenge: str
    purpose: str = PURPOSE

    def __post_init__(self) -> None:
        check_fields(self)


def _field(name: str, value: object, pattern: re.Pattern[str], limit: int = MAX_FIELD,
           what: str = "") -> str:
    if not isinstance(value, str):
        raise InvalidArgument(f"{name}: must be text")
    if len(value) > limit:
        raise InvalidArgument(f"{name}: at most {limit} characters, got {len(value)}")
    if not pattern.fullmatch(value):
        bad = next((c for c in value if not (" " <= c <= "~")), None)
        if bad is not None:
            raise InvalidArgument(f"{name}: holds {ascii(bad)}; only printable ASCII, no "
                                  "newline, tab or other control character")
        raise InvalidArgument(f"{name}: {A.safe_text(value)[:80]} is not {what or 'allowed'}")
    return value


def check_fields(a: Attestation) -> None:
    """InvalidArgument naming the first field of ``a`` that cannot be written in the format."""
    if a.purpose != PURPOSE:
        raise InvalidArgument(f"purpose: must be {PURPOSE!r}")
    _field("statement", a.statement, ATTESTATION_ID, what="an attestation id (a_ and 20 hex)")
    _field("issuer", a.issuer, _SAFE, what="printable ASCII without leading or trailing space")
    _field("address", a.address, _ADDRESS, what="a Bitcoin or Ethereum address")
    _field("chain", a.chain, _CHAIN, what="'bitcoin NETWORK' or 'ethereum CHAIN_ID'")
    if a.category not in {c.value for c in Category}:
        raise InvalidArgument(f"category: {A.safe_text(a.category)[:40]} is not one of "
                              + ", ".join(c.value for c in Category))
    _field("case", a.case, _SAFE, what="printable ASCII without leading or trailing space")
    _field("date", a.date, _DATE, what="a date YYYY-MM-DD")
    try:
        Date.fromisoformat(a.date)
    except ValueError:
        raise InvalidArgument(f"date: {a.date} is not a calendar date") from None
    check_challenge(a.challenge)


def check_challenge(challenge: object) -> str:
    """The challenge as given, or InvalidArgument: printable ASCII of ``MIN_CHALLENGE`` to
    ``MAX_FIELD`` characters (a recent block hash, an auditor's nonce) that is not a
    transaction, a PSBT, or more than 32 bytes of hex."""
    text = _field("challenge", challenge, _SAFE,
                  what="printable ASCII without leading or trailing space")
    if len(text) < MIN_CHALLENGE:
        raise InvalidArgument(f"challenge: at least {MIN_CHALLENGE} characters (a block hash or "
                              f"an auditor's nonce), got {len(text)}")
    kind = transaction_like(text)
    if kind:
        raise InvalidArgument(f"challenge: refused, it parses as {kind}; a challenge is a block "
                              "hash or a nonce, never anything a wallet could sign")
    return text


def transaction_like(text: str) -> str:
    """What ``text`` could be taken for by a wallet or a contract ("" for nothing): its hex or
    base64 decoding as a Bitcoin transaction, a PSBT, an Ethereum transaction (typed envelope
    or RLP list), or hex longer than a 32-byte hash."""
    decoded: list[bytes] = []
    m = _HEX.fullmatch(text)
    if m and len(m.group(1)) % 2 == 0 and m.group(1):
        raw = bytes.fromhex(m.group(1))
        if len(raw) > MAX_CHALLENGE_BYTES:
            return (f"{len(raw)} bytes of hex (more than a {MAX_CHALLENGE_BYTES}-byte hash: it "
                    "could be a transaction or a signed message)")
        decoded.append(raw)
    try:
        decoded.append(base64.b64decode(text, validate=True))
    except (binascii.Error, ValueError):
        pass
    for raw in decoded:
        if raw[:5] == b"psbt\xff":
            return "a PSBT"
        if _rlp_list(raw):
            return "an RLP list (an Ethereum transaction)"
        if len(raw) > 1 and 0 < raw[0] < 0x80 and _rlp_list(raw[1:]):
            return f"an Ethereum typed transaction (type {raw[0]})"
        try:
            Transaction.parse(raw)
            return "a Bitcoin transaction"
        except SignerError:
            pass
    return ""


def _rlp_list(raw: bytes) -> bool:
    """Whether ``raw`` is exactly one RLP list (its length prefix covers the rest)."""
    if not raw or raw[0] < 0xC0:
        return False
    if raw[0] <= 0xF7:
        return raw[0] - 0xC0 == len(raw) - 1
    n = raw[0] - 0xF7
    return len(raw) > 1 + n and int.from_bytes(raw[1:1 + n], "big") == len(raw) - 1 - n


def render_text(a: Attestation) -> str:
    values = {"purpose": a.purpose, "statement": a.statement, "issuer": a.issuer,
              "address": a.address, "chain": a.chain, "category": a.category, "case": a.case,
              "date": a.date, "challenge": a.challenge}
    text = "\n".join([HEADER, NOTICE, *(f"{k}: {values[k]}" for k in FIELDS)])
    if len(text.encode("ascii")) > MAX_TEXT:
        raise InvalidArgument(f"attestation text: at most {MAX_TEXT} bytes")
    return text


def parse_text(text: object) -> Attestation:
    """The attestation ``text`` states, or InvalidArgument: exactly the format, nothing else."""
    if isinstance(text, bytes):
        try:
            text = text.decode("ascii")
        except UnicodeDecodeError:
            raise InvalidArgument("attestation text: not ASCII") from None
    if not isinstance(text, str):
        raise InvalidArgument("attestation text: must be text")
    if len(text) > MAX_TEXT:
        raise InvalidArgument(f"attestation text: at most {MAX_TEXT} bytes, got {len(text)}")
    lines = text.split("\n")
    if lines[0] != HEADER:
        raise InvalidArgument(f"attestation text: line 1 must be {HEADER!r}; this is not a "
                              "signerd attestation")
    if len(lines) != 2 + len(FIELDS):
        raise InvalidArgument(f"attestation text: {len(lines)} lines, expected "
                              f"{2 + len(FIELDS)} (no trailing newline)")
    if lines[1] != NOTICE:
        raise InvalidArgument("attestation text: line 2 must be the fixed notice")
    values: dict[str, str] = {}
    for i, (name, line) in enumerate(zip(FIELDS, lines[2:]), 3):
        prefix = f"{name}: "
        if not line.startswith(prefix):
            raise InvalidArgument(f"attestation text: line {i} must start {prefix!r}")
        values[name] = line[len(prefix):]
    a = Attestation(**values)
    if render_text(a) != text:  # cannot differ after the checks above; kept as the contract
        raise InvalidArgument("attestation text: not in canonical form")
    return a


def chain_label(wallet: Wallet) -> str:
    """The ``chain`` field of a wallet's text."""
    if wallet.chain is Chain.ETHEREUM:
        return f"ethereum {wallet.chain_ids[0] if wallet.chain_ids else 1}"
    return f"bitcoin {wallet.network}"


# ---------------------------------------------------------------- Ethereum: EIP-191

def eip191_digest(text: str) -> bytes:
    """keccak-256 of the EIP-191 ``personal_sign`` message of ``text`` (version 0x45)."""
    parse_text(text)
    data = text.encode("ascii")
    return keccak256(b"\x19Ethereum Signed Message:\n" + str(len(data)).encode() + data)


def eip191_signature(digest: bytes, r: int, s: int, public_key: bytes) -> str:
    """0x r || s || v (v = 27 + y-parity, s low), the form ``personal_sign`` returns."""
    s = low_s(s)
    v = 27 + recover_y_parity(digest, r, s, public_key)
    return "0x" + (r.to_bytes(32, "big") + s.to_bytes(32, "big") + bytes([v])).hex()


def eip191_recover(text: str, signature: str) -> str:
    """The EIP-55 address whose key made ``signature`` over ``text`` (InvalidProof if none)."""
    m = re.fullmatch(r"0x([0-9a-f]{130})", signature or "")
    if not m:
        raise InvalidProof("signature: 0x and 65 bytes of lower-case hex expected")
    raw = bytes.fromhex(m.group(1))
    r, s, v = int.from_bytes(raw[:32], "big"), int.from_bytes(raw[32:64], "big"), raw[64]
    if v not in (27, 28) or not (0 < r < SEAL.SECP256K1_N and 0 < s <= SEAL.SECP256K1_N // 2):
        raise InvalidProof("signature: r, s out of range, s not low, or v not 27/28")
    try:
        pub = coincurve.PublicKey.from_signature_and_message(
            raw[:64] + bytes([v - 27]), eip191_digest(text), hasher=None)
    except ValueError:
        raise InvalidProof("signature: recovers no public key") from None
    return address_from_pubkey(pub.format(compressed=False))


# ---------------------------------------------------------------- Bitcoin: BIP-322

BIP322_TAG = b"BIP0322-signed-message"
SIGHASH_ALL = 1


def message_hash(message: bytes) -> bytes:
    """BIP-340 tagged hash of the message with tag ``BIP0322-signed-message``."""
    tag = hashlib.sha256(BIP322_TAG).digest()
    return hashlib.sha256(tag + tag + message).digest()


def to_spend(message: bytes, script_pubkey: bytes) -> Transaction:
    return Transaction(
        version=0, locktime=0,
        inputs=(TxIn(OutPoint(b"\x00" * 32, 0xFFFFFFFF),
                     script_sig=b"\x00\x20" + message_hash(message), sequence=0),),
        outputs=(TxOut(0, script_pubkey),))


def to_sign(spend: Transaction, *, witness: Sequence[bytes] = (), script_sig: bytes = b""
            ) -> Transaction:
    return Transaction(
        version=0, locktime=0,
        inputs=(TxIn(OutPoint(spend.txid(), 0), script_sig=script_sig, sequence=0,
                     witness=tuple(witness)),),
        outputs=(TxOut(0, b"\x6a"),))


def bip322_script_code(wallet: Wallet) -> bytes:
    """The BIP-143 script code under which the wallet's keys sign ``to_sign``'s input."""
    if wallet.script_type in (ScriptType.P2WPKH, ScriptType.P2SH_P2WPKH):
        return S.p2wpkh_script_code(S.hash160(wallet.keys[0].public_key))
    if wallet.script_type is ScriptType.P2WSH_SORTEDMULTI:
        return witness_script(wallet)
    raise InvalidArgument(f"BIP-322 does not sign for a {wallet.script_type.value} wallet")


def witness_script(wallet: Wallet) -> bytes:
    return S.sortedmulti_script(wallet.threshold, [k.public_key for k in wallet.keys])


def bip322_digest(wallet: Wallet, text: str) -> bytes:
    """The digest a key of ``wallet`` signs to prove control of its address with ``text``."""
    parse_text(text)
    spk = btc_address.address_to_script(wallet.address, wallet.network)
    tx = to_sign(to_spend(text.encode("ascii"), spk))
    return SH.bip143_sighash(tx, 0, bip322_script_code(wallet), 0, SIGHASH_ALL)


def encode_witness(stack: Sequence[bytes]) -> bytes:
    return encode_compact_size(len(stack)) + b"".join(encode_var_bytes(x) for x in stack)


def bip322_signature(wallet: Wallet, text: str, signatures: Mapping[bytes, tuple[int, int]]
                     ) -> tuple[str, str, bool]:
    """(method, base64 signature, complete) from ECDSA signatures by public key over
    ``bip322_digest``: simple for P2WPKH and P2SH-P2WPKH, full for P2WSH multisig (complete
    once the wallet's threshold of keys signed; a full signature that is not complete carries
    the signatures made so far, for ``combine``)."""
    def sig(pub: bytes) -> bytes:
        r, s = signatures[pub]
        return der_encode(r, s) + bytes([SIGHASH_ALL])
    if wallet.script_type in (ScriptType.P2WPKH, ScriptType.P2SH_P2WPKH):
        pub = wallet.keys[0].public_key
        return "bip322-simple", base64.b64encode(encode_witness([sig(pub), pub])).decode(), True
    signature, complete = bip322_full(wallet, text, {k: sig(k) for k in signatures})
    return "bip322-full", signature, complete


def bip322_full(wallet: Wallet, text: str, signatures: Mapping[bytes, bytes]) -> tuple[str, bool]:
    """(base64 full signature, complete) of a P2WSH multisig wallet from signatures by public
    key (DER with the SIGHASH_ALL byte, as a PSBT holds them): ``to_sign`` with the witness
    ``[empty, the first threshold signatures in the script's key order, witness script]``;
    complete once the wallet's threshold of its keys signed. Signatures are taken as given:
    ``verify_proof`` checks the result (``bip322_cosigned`` verifies each first)."""
    if wallet.script_type is not ScriptType.P2WSH_SORTEDMULTI:
        raise InvalidArgument(f"a BIP-322 full signature is for a P2WSH multisig, not a "
                              f"{wallet.script_type.value} wallet")
    ordered = [k for k in S.sort_pubkeys([k.public_key for k in wallet.keys]) if k in signatures]
    complete = len(ordered) >= wallet.threshold
    stack = [b"", *(signatures[k] for k in ordered[:wallet.threshold]), witness_script(wallet)]
    spk = btc_address.address_to_script(wallet.address, wallet.network)
    tx = to_sign(to_spend(text.encode("ascii"), spk), witness=stack)
    return base64.b64encode(tx.serialize()).decode(), complete


# ---------------------------------------------------------------- BIP-322 with cosigners

def cosigned(wallet: Wallet) -> bool:
    """Whether the wallet's proof needs signatures by keys outside this HSM: a P2WSH multisig
    whose HSM-held keys are fewer than its threshold."""
    return (wallet.script_type is ScriptType.P2WSH_SORTEDMULTI
            and sum(1 for k in wallet.keys if k.hsm_held) < wallet.threshold)


def bip322_psbt(wallet: Wallet, text: str) -> Psbt:
    """The BIP-322 ``to_sign`` of ``wallet``'s address and ``text`` as a PSBT v0 (BIP-174) that
    cosigners sign with their own tools: its one input carries ``to_spend`` in full
    (``non_witness_utxo``, which proves the amount of 0) and its output (``witness_utxo``), the
    wallet's witness script and SIGHASH_ALL. A key that signs it signs ``bip322_digest``: a
    transaction spending an output no chain has."""
    if wallet.script_type is not ScriptType.P2WSH_SORTEDMULTI:
        raise InvalidArgument("cosigners sign a BIP-322 PSBT only for a P2WSH multisig")
    parse_text(text)
    spk = btc_address.address_to_script(wallet.address, wallet.network)
    spend = to_spend(text.encode("ascii"), spk)
    return Psbt(to_sign(spend), (PsbtInput(non_witness_utxo=spend, witness_utxo=spend.outputs[0],
                                           sighash_type=SIGHASH_ALL,
                                           witness_script=witness_script(wallet)),),
                (PsbtOutput(),))


def bip322_cosigned(wallet: Wallet, text: str, psbt: Psbt) -> tuple[str, int, bool]:
    """(base64 full signature, signatures that verify, complete) from a BIP-322 PSBT of
    ``wallet`` and ``text`` (``bip322_psbt``): each partial signature is checked again over
    signerd's own ``bip322_digest`` under a key of the wallet, and only those count. InvalidPsbt
    when the PSBT is not that ``to_sign``."""
    if psbt.tx.serialize() != bip322_psbt(wallet, text).tx.serialize():
        raise InvalidPsbt("the PSBT is not the BIP-322 to_sign of this wallet's text")
    digest = bip322_digest(wallet, text)
    keys = {k.public_key for k in wallet.keys}
    good = {pk: sig for pk, sig in psbt.inputs[0].partial_sigs.items()
            if pk in keys and check_signature(pk, sig, digest, SIGHASH_ALL) is None}
    signature, complete = bip322_full(wallet, text, good)
    return signature, len(good), complete


def bip322_verify(address: str, network: str, text: str, signature: str) -> str:
    """Check a BIP-322 signature by ``address`` over ``text`` (simple or full; P2WPKH,
    P2SH-P2WPKH, P2WSH multisig); the method, else InvalidProof naming what failed."""
    try:
        raw = base64.b64decode(signature, validate=True)
    except (binascii.Error, ValueError):
        raise InvalidProof("signature: not base64") from None
    spk = btc_address.address_to_script(address, network)
    spend = to_spend(text.encode("ascii"), spk)
    expected = to_sign(spend)
    method = "bip322-simple"
    try:
        full = Transaction.parse(raw)
    except SignerError:
        full = None
    if full is not None and full.inputs and full.inputs[0].witness:
        method = "bip322-full"
        bare = replace(full, inputs=(replace(full.inputs[0], witness=(), script_sig=b""),))
        if bare.serialize() != expected.serialize():
            raise InvalidProof("full signature: to_sign is not the BIP-322 to_sign of this "
                               "address and message")
        stack = list(full.inputs[0].witness)
    else:
        stack = _decode_witness(raw)
    kind, program = S.classify(spk)
    digest_of = lambda code: SH.bip143_sighash(expected, 0, code, 0, SIGHASH_ALL)  # noqa: E731
    if kind in (S.ScriptKind.P2WPKH, S.ScriptKind.P2SH):
        if len(stack) != 2:
            raise InvalidProof("witness: [signature, public key] expected")
        sig, pub = stack
        h = S.hash160(pub)
        own = S.hash160(S.p2wpkh_script(pub)) if kind is S.ScriptKind.P2SH else h
        if own != program:
            raise InvalidProof("public key: not the key of this address")
        _check(pub, sig, digest_of(S.p2wpkh_script_code(h)))
        return method
    if kind is S.ScriptKind.P2WSH:
        if len(stack) < 3 or stack[0] != b"":
            raise InvalidProof("witness: [empty, signatures..., witness script] expected")
        ws = stack[-1]
        if hashlib.sha256(ws).digest() != program:
            raise InvalidProof("witness script: not the script of this address")
        multi = S.parse_multisig(ws)
        if multi is None:
            raise InvalidProof("witness script: not a multisig script")
        m, keys = multi
        sigs = stack[1:-1]
        if len(sigs) != m:
            raise InvalidProof(f"witness: {len(sigs)} signatures, the script needs {m}")
        digest = digest_of(ws)
        k = 0
        for sig in sigs:  # CHECKMULTISIG: signatures in the order of the keys
            while k < len(keys) and check_signature(keys[k], sig, digest, SIGHASH_ALL):
                k += 1
            if k == len(keys):
                raise InvalidProof("witness: a signature does not verify under the script's "
                                   "keys in order")
            k += 1
        return method
    raise InvalidProof(f"address: {kind.value} is not a script type signerd attests")


def _decode_witness(raw: bytes) -> list[bytes]:
    r = ByteReader(raw, error=InvalidProof, what="simple signature")
    stack = [r.var_bytes(f"witness item {i}") for i in range(r.compact_size("witness items"))]
    r.expect_end()
    return stack


def _check(pub: bytes, sig: bytes, digest: bytes) -> None:
    why = check_signature(pub, sig, digest, SIGHASH_ALL)
    if why:
        raise InvalidProof(f"signature: {why}")


# ---------------------------------------------------------------- the act

def native_asset(wallet: Wallet) -> str:
    return "ETH" if wallet.chain is Chain.ETHEREUM else "BTC"


def wallet_requirement(state: AU.AuthorityState, wallet: Wallet) -> P.Requirement:
    """What an attestation of ``wallet`` needs: what its policy in force demands of a
    zero-value movement of its native asset to an external destination, raised to the floor
    (never waived here). PolicyDenied when the policy allows no such movement."""
    policy, _ = policy_of(state, wallet, state.wallet_policy_version(wallet.id))
    asset = native_asset(wallet)
    entry = state.chains.get(wallet.chain_ids[0]) if wallet.chain_ids else None
    if wallet.chain is Chain.ETHEREUM and entry is not None:
        asset = entry.symbol  # the chain registry's name for the coin (BNB on chain 56)
    movement = Movement(chain=wallet.chain, network=wallet.network,
                        chain_id=wallet.chain_ids[0] if wallet.chain_ids else 0,
                        outputs=(Output(address=wallet.address, amount=0, asset=asset,
                                        destination_class=DestinationClass.EXTERNAL),),
                        fee=0, fee_asset=asset, digests=(),
                        vsize=1 if wallet.chain is Chain.BITCOIN else None)
    return P.with_floor(policy.requirement_for(movement, category_change="none"), movement,
                        waived=False)


def requirement(state: AU.AuthorityState, wallets: Iterable[Wallet]) -> P.Requirement:
    """The strictest of every covered wallet's ``wallet_requirement``."""
    reqs = [wallet_requirement(state, w) for w in wallets]
    if not reqs:
        raise InvalidArgument("an attestation covers at least one wallet")
    return reduce(P.merge, reqs)


_DOC_KEYS = frozenset({"id", "instance_id", "issuer", "category", "case_ref", "challenge",
                       "date", "created_at", "expires_at", "since", "submitter", "wallets",
                       "left_out"})
_WALLET_KEYS = frozenset({"wallet_id", "chain", "network", "chain_id", "script_type", "address",
                          "category", "case_ref", "text"})


def wallet_entry(wallet: Wallet, text: str) -> dict[str, str]:
    return {"wallet_id": wallet.id, "chain": wallet.chain.value, "network": wallet.network,
            "chain_id": str(wallet.chain_ids[0]) if wallet.chain_ids else "",
            "script_type": wallet.script_type.value, "address": wallet.address,
            "category": wallet.category.value, "case_ref": wallet.case_ref, "text": text}


def make_document(*, attestation_id: str, instance_id: str, issuer: str, category: str,
                  case_ref: str, challenge: str, date: str, created_at: int, expires_at: int,
                  since: int, submitter: str, wallets: Sequence[Wallet],
                  left_out: Sequence[Mapping[str, str]]) -> dict[str, Any]:
    """The attestation operators approve: one text per wallet, each naming this act."""
    entries = []
    for w in wallets:
        text = render_text(Attestation(
            statement=attestation_id, issuer=issuer, address=w.address, chain=chain_label(w),
            category=w.category.value, case=w.case_ref, date=date, challenge=challenge))
        entries.append(wallet_entry(w, text))
    doc = {"id": attestation_id, "instance_id": instance_id, "issuer": issuer,
           "category": category, "case_ref": case_ref, "challenge": challenge, "date": date,
           "created_at": str(created_at), "expires_at": str(expires_at), "since": str(since),
           "submitter": submitter, "wallets": entries,
           "left_out": [dict(x) for x in left_out]}
    return check_document(doc, instance_id)


def check_document(doc: Any, instance_id: str) -> dict[str, Any]:
    """``doc`` if it is an attestation of this signerd whose every text is in the format and
    states what its entry says; InvalidArgument otherwise. The gate before any signature."""
    if not isinstance(doc, dict) or set(doc) != _DOC_KEYS:
        raise InvalidArgument("attestation: not an attestation document")
    if doc["instance_id"] != instance_id:
        raise InvalidArgument("attestation: made by another signerd instance")
    _field("id", doc["id"], ATTESTATION_ID, what="an attestation id")
    wallets = doc["wallets"]
    if not isinstance(wallets, list) or not 0 < len(wallets) <= MAX_WALLETS:
        raise InvalidArgument(f"attestation: 1 to {MAX_WALLETS} wallets")
    seen = set()
    for e in wallets:
        if not isinstance(e, dict) or set(e) != _WALLET_KEYS:
            raise InvalidArgument("attestation: a wallet entry has other fields")
        a = parse_text(e["text"])
        expected = Attestation(statement=doc["id"], issuer=doc["issuer"], address=e["address"],
                               chain=a.chain, category=e["category"], case=e["case_ref"],
                               date=doc["date"], challenge=doc["challenge"])
        if a != expected or (doc["category"] and e["category"] != doc["category"]):
            raise InvalidArgument(f"attestation: the text for {A.safe_text(e['address'])} does "
                                  "not state its entry")
        if e["wallet_id"] in seen:
            raise InvalidArgument("attestation: a wallet appears twice")
        seen.add(e["wallet_id"])
    return doc


def statement(doc: Mapping[str, Any], decision: Decision) -> bytes:
    """What an operator signs to approve or reject an attestation: the whole document (every
    text signerd will sign) and the decision."""
    return ATTESTATION_TAG + b"\n" + canonical.dumps({"attestation": dict(doc),
                                                      "decision": Decision(decision).value})


@dataclass(frozen=True)
class Verdict:
    met: bool
    rejected: bool
    reason: str
    bad: tuple[str, ...]  # decisions that do not verify (an authority violation)
    requirement: P.Requirement


def judge(state: AU.AuthorityState, doc: Mapping[str, Any], wallets: Iterable[Wallet],
          decisions: Iterable[A.SignedDecision]) -> Verdict:
    """Count the verified decisions on ``doc`` toward what its wallets need now."""
    try:
        req = requirement(state, wallets)
    except PolicyDenied as e:
        return Verdict(False, True, f"a covered wallet's policy no longer allows it: "
                       f"{e.message}", (), P.Requirement(approvers=1))
    votes, bad = A.verified_votes(lambda d: statement(doc, d), decisions, state.keys())
    q = P.evaluate(req, votes, state.operator_views(), str(doc["submitter"]))
    return Verdict(q.met and not bad, q.rejected, q.reason, tuple(bad), req)


def render(doc: Mapping[str, Any], decision: Decision, need: str = "") -> str:
    """What an operator reads before signing: every text, as it will be signed."""
    lines = [f"You are about to {Decision(decision).value} attestation {A.safe_text(doc['id'])}:",
             f"{len(doc['wallets'])} proofs of control, each a signature by a custody key "
             "over the text below (never a transaction).",
             f"category:   {A.safe_text(doc['category'] or '(all)')}",
             f"case:       {A.safe_text(doc['case_ref'] or '(all)')}",
             f"challenge:  {A.safe_text(doc['challenge'])}",
             f"issuer:     {A.safe_text(doc['issuer'])}",
             f"requested by: {A.safe_text(doc['submitter'])}"]
    if need:
        lines.append(f"needs:      {need}")
    for e in doc["wallets"]:
        lines += ["", f"--- {A.safe_text(e['wallet_id'])} ({A.safe_text(e['script_type'])})",
                  *(A.safe_text(x) for x in e["text"].split("\n"))]
    for x in doc["left_out"]:
        lines.append(f"left out: {A.safe_text(x.get('wallet_id', ''))} "
                     f"{A.safe_text(x.get('address', ''))}: {A.safe_text(x.get('reason', ''))}")
    return "\n".join(lines) + "\n"


# ---------------------------------------------------------------- the holdings statement

def verify_proof(entry: Mapping[str, Any], proof: Mapping[str, Any]) -> str:
    """Check one proof against its wallet entry; the method, else InvalidProof."""
    text = entry["text"]
    parse_text(text)
    if proof.get("address") != entry["address"] or proof.get("wallet_id") != entry["wallet_id"]:
        raise InvalidProof("proof: names another wallet")
    if entry["chain"] == Chain.ETHEREUM.value:
        if proof.get("method") != "eip191":
            raise InvalidProof("proof: an Ethereum proof is EIP-191")
        found = eip191_recover(text, str(proof.get("signature", "")))
        if found.lower() != str(entry["address"]).lower():
            raise InvalidProof(f"signature: recovers {found}, not the address")
        return "eip191"
    method = bip322_verify(entry["address"], entry["network"], text,
                           str(proof.get("signature", "")))
    if proof.get("method") != method:
        raise InvalidProof(f"proof: says {A.safe_text(proof.get('method'))}, is {method}")
    return method


def verify_export(doc: Any, audit_public_key: bytes | None) -> list[str]:
    """Verify a holdings statement offline: the audit key's seal (when ``audit_public_key`` is
    given), every operator approval under the key the statement names, and every proof. One
    line per check that passed; InvalidProof naming the first that failed."""
    if not isinstance(doc, dict) or doc.get("format") != EXPORT_FORMAT:
        raise InvalidProof(f"not a {EXPORT_FORMAT} document")
    body = {k: v for k, v in doc.items() if k != "seal"}
    lines = []
    if audit_public_key is not None:
        if not SEAL.valid(audit_public_key, SEAL_KIND, body, str(doc.get("seal", ""))):
            raise InvalidProof("seal: the audit key's signature does not verify over this "
                               "statement")
        lines.append("OK: sealed by the audit key")
    att = doc["attestation"]
    keys = {a["operator_id"]: a["public_key_pem"].encode() for a in doc["approvers"]}
    for a in doc["approvals"]:
        d = A.SignedDecision(a["operator_id"], Decision(a["decision"]),
                             bytes.fromhex(a["signature"]))
        votes, bad = A.verified_votes(lambda dec: statement(att, dec), [d], keys)
        if bad:
            raise InvalidProof(f"approval: {bad[0]}")
        lines.append(f"OK: {d.decision.value} by {A.safe_text(d.operator_id)} verifies")
    proofs = {p["wallet_id"]: p for p in doc["proofs"]}
    for e in att["wallets"]:
        p = proofs.get(e["wallet_id"])
        if p is None:
            raise InvalidProof(f"proof: none for {A.safe_text(e['address'])}")
        try:
            method = verify_proof(e, p)
        except (InvalidProof, InvalidArgument) as err:
            raise InvalidProof(f"proof for {A.safe_text(e['address'])}: {err.message}") from None
        lines.append(f"OK: {A.safe_text(e['address'])} ({METHODS[method]})")
    if len(proofs) != len(att["wallets"]):
        raise InvalidProof("proof: one for a wallet the attestation does not cover")
    return lines
