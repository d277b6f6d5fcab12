"""The key backup's pure core (signerd.core.backup) and its governance kinds
(signerd.core.authority): the Shamir split, shares sealed to custodians, the ceremony record,
the bundle refused for any one changed byte, and backup.key / backup.create in the ledger."""
from __future__ import annotations

import hashlib
import itertools
import json
from typing import Any

import coincurve
import pytest
from cryptography.hazmat.primitives.keywrap import aes_key_wrap_with_padding
from hypothesis import given, settings
from hypothesis import strategies as st

from signerd.core import authority as AU
from signerd.core import backup as BK
from signerd.core import canonical
from signerd.core.errors import FailedPrecondition, InvalidArgument
from signerd.core.operator_keys import fingerprint, generate, public_pem

from tests.support.authority import (AUDIT_KEY, DOC, KEYS, PIN, STATE, applied, proposal,
                                     sealer)


def custodians(*ops: str) -> list[BK.Custodian]:
    return [BK.Custodian(op, public_pem(KEYS[op]).decode()) for op in ops]


KEY = bytearray(hashlib.sha256(b"a test backup key").digest())
CHECK = aes_key_wrap_with_padding(bytes(KEY), BK.CHECK_KEY).hex()
OPS = ("admin1", "admin2", "admin3", "inv1", "cust1")


def ceremony(threshold: int = 3, ops: tuple[str, ...] = OPS, **over: Any) -> dict[str, Any]:
    doc = BK.ceremony_record(ceremony_id="c_" + "ab" * 8, instance_id="signerd-test",
                             created_at=1_700_000_000, threshold=threshold,
                             custodians=custodians(*ops), key_id="ab" * 8,
                             key_label="signerd-backup-key", check_value=CHECK)
    return {**doc, **over}


# ---------------------------------------------------------------- Shamir

@settings(max_examples=25, deadline=None)
@given(n=st.integers(2, 7), data=st.data())
def test_any_threshold_shares_rebuild_the_key_and_fewer_are_refused(n: int, data: Any) -> None:
    t = data.draw(st.integers(2, n))
    key = bytearray(data.draw(st.binary(min_size=32, max_size=32)))
    shares = BK.split(key, t, n)
    assert [i for i, _ in shares] == list(range(1, n + 1))
    for subset in itertools.combinations(shares, t):
        assert BK.combine(list(subset), t) == key
    with pytest.raises(BK.BackupRefused, match=f"needs {t}"):
        BK.combine(shares[:t - 1], t)
    # t-1 shares interpolated as if they were enough give another key, not this one
    if t > 2:
        assert BK.combine(shares[:t - 1], t - 1) != key


def test_one_custodian_alone_is_never_enough() -> None:
    with pytest.raises(InvalidArgument, match="one custodian alone"):
        BK.split(KEY, 1, 3)
    with pytest.raises(InvalidArgument):
        BK.split(KEY, 4, 3)
    with pytest.raises(BK.BackupRefused, match="twice"):
        shares = BK.split(KEY, 2, 3)
        BK.combine([shares[0], shares[0]], 2)


def test_shares_of_two_splits_of_the_same_key_do_not_mix() -> None:
    a, b = BK.split(KEY, 3, 5), BK.split(KEY, 3, 5)
    assert BK.combine([a[0], a[1], b[2]], 3) != KEY


# ---------------------------------------------------------------- shares sealed to custodians

def test_a_share_opens_only_with_its_custodians_key() -> None:
    c = ceremony()
    (i, share) = BK.split(KEY, 3, 5)[0]
    doc = BK.seal_share(c, custodians("admin1")[0], i, share)
    back = BK.parse_share(canonical.dumps(doc), "f")
    assert BK.open_share(back, KEYS["admin1"], "f") == (1, share)
    with pytest.raises(BK.BackupRefused, match="not to the key given"):
        BK.open_share(back, KEYS["admin2"], "f")
    # The same envelope claiming the other key's fingerprint: the sealed box refuses
    forged = {**back, "fingerprint": fingerprint(KEYS["admin2"].public_key())}
    with pytest.raises(BK.BackupRefused, match="does not open"):
        BK.open_share(forged, KEYS["admin2"], "f")
    # An envelope edited to another index or ceremony: its sealed part says otherwise
    for edit in ({"index": 2}, {"ceremony_id": "c_" + "cd" * 8}):
        with pytest.raises(BK.BackupRefused, match="the envelope was edited"):
            BK.open_share({**back, **edit}, KEYS["admin1"], "f")
    with pytest.raises(BK.BackupRefused, match="not a share file"):
        BK.parse_share(json.dumps(doc, indent=1), "f")


# ---------------------------------------------------------------- ceremony records

@pytest.mark.parametrize("over,needle", [
    ({"threshold": 1}, "one custodian alone"),
    ({"threshold": 6}, "threshold"),
    ({"check_value": "00" * 3}, "check_value"),
    ({"mechanism": "CKM_AES_ECB"}, "CKM_AES_KEY_WRAP_PAD"),
    ({"ceremony_id": "x"}, "ceremony_id"),
    ({"extra": 1}, "exactly the fields"),
])
def test_ceremony_records_are_checked(over: dict[str, Any], needle: str) -> None:
    with pytest.raises(InvalidArgument, match=needle):
        BK.check_ceremony(ceremony(**over), "ceremony")


def test_a_custodian_holds_one_share() -> None:
    with pytest.raises(InvalidArgument, match="named twice"):
        ceremony(ops=("admin1", "admin1", "admin2"), threshold=2)


# ---------------------------------------------------------------- backup.key / backup.create

def test_a_backup_key_and_a_backup_come_into_force_only_with_the_quorum() -> None:
    doc = proposal("backup.key", {"ceremony": ceremony()})
    state = applied(STATE, doc, "admin1", "admin2")
    key = state.backup_keys["c_" + "ab" * 8]
    assert (key.check_value, key.threshold, key.proposal) == (CHECK, 3, doc["id"])
    assert [c for c, _ in key.custodians] == list(OPS)
    from signerd.core.errors import AuthorityViolation
    with pytest.raises(AuthorityViolation, match="quorum"):
        applied(STATE, doc, "admin1")
    make = proposal("backup.create", {"ceremony_id": key.ceremony_id, "check_value": CHECK})
    state2 = applied(state, make, "admin1", "admin3")
    assert state2.backups[make["id"]] == (key.ceremony_id, make["expires_at"])
    assert "back up every custody key" in AU.summary(make)
    assert "check value:     " + CHECK in AU.render_proposal(doc, AU.Decision.APPROVE)


@pytest.mark.parametrize("edit,error,needle", [
    (lambda c: c["custodians"][0].update(fingerprint="0" * 16), InvalidArgument,
     "not to the key admin1 holds"),
    (lambda c: c["custodians"][0].update(operator_id="nobody"), InvalidArgument,
     "not an operator"),
    (lambda c: c.update(instance_id="other"), InvalidArgument, "made for instance"),
])
def test_a_backup_key_names_custodians_by_their_keys_in_the_ledger(edit: Any, error: type,
                                                                   needle: str) -> None:
    c = json.loads(json.dumps(ceremony()))
    edit(c)
    doc = proposal("backup.key", {"ceremony": c})
    with pytest.raises(error, match=needle):
        AU.check_proposal(STATE, doc)


def test_a_backup_names_an_approved_key_by_its_check_value() -> None:
    state = applied(STATE, proposal("backup.key", {"ceremony": ceremony()}), "admin1", "admin2")
    with pytest.raises(FailedPrecondition, match="not a backup key the governance approved"):
        AU.check_proposal(state, proposal("backup.create", {"ceremony_id": "c_" + "cd" * 8,
                                                            "check_value": CHECK}))
    with pytest.raises(InvalidArgument, match="not the check value"):
        AU.check_proposal(state, proposal("backup.create", {"ceremony_id": "c_" + "ab" * 8,
                                                            "check_value": "00" * 40}))
    with pytest.raises(FailedPrecondition, match="approved already"):
        AU.check_proposal(state, proposal("backup.key", {"ceremony": ceremony()}))


def test_a_governance_policy_without_backup_rules_still_parses() -> None:
    text = DOC["governance"].replace('kinds = ["*"]', 'kinds = ["operator.register", '
                                     '"operator.revoke", "operator.roles", "operator.reinstate",'
                                     ' "wallet.policy", "template.set", "governance.set", '
                                     '"wallet.unfreeze", "wallet.import", "wallet.create"]')
    policy = AU.parse_governance(text)
    assert policy.requirement_for("backup.create").approvers == 2


# ---------------------------------------------------------------- the bundle

def bundle_bytes(**body_over: Any) -> bytes:
    pub = coincurve.PrivateKey(b"\x05" * 32).public_key.format()
    body = {"instance_id": "signerd-test", "genesis": PIN.hex(), "genesis_document": DOC,
            "proposal": "p_" + "0" * 20, "created_at": 1_700_000_000, "ceremony": ceremony(),
            "mechanism": BK.MECHANISM, "ledger": {"seq": 3, "hash": "11" * 32},
            "keys": [BK.bundle_key_json("aa" * 16, "signerd-audit", PINNED, "audit", (),
                                        b"\x01" * 40),
                     BK.bundle_key_json("bb" * 16, "w_1/0", pub, "wallet", ("w_1",),
                                        b"\x02" * 40)],
            "wallets": [{"id": "w_1", "chain": "ethereum", "network": "ethereum",
                         "chain_ids": [1], "address": "0x" + "ab" * 20, "category": "seized",
                         "status": "ACTIVE", "key_ids": ["bb" * 16]}],
            "not_backed_up": []}
    body.update(body_over)
    digest = BK.bundle_digest(body)
    return BK.encode_bundle(body, sealer(AUDIT_KEY)(BK.BUNDLE_SEAL, BK.seal_record(body, digest)))


PINNED = AUDIT_KEY.public_key.format()


def test_a_bundle_signerd_sealed_parses() -> None:
    b = BK.parse_bundle(bundle_bytes(), pinned_genesis=PIN)
    assert [k.use for k in b.keys] == ["audit", "wallet"] and b.ledger == (3, b"\x11" * 32)
    assert b.audit_key == ("aa" * 16, PINNED)


def test_every_one_byte_change_of_a_bundle_is_refused() -> None:
    data = bundle_bytes()
    for i in range(len(data)):
        for new in {data[i] ^ 0x01, ord(" ")} - {data[i]}:
            changed = data[:i] + bytes([new]) + data[i + 1:]
            with pytest.raises(BK.BackupRefused, match="^bundle: "):
                BK.parse_bundle(changed, pinned_genesis=PIN)
    with pytest.raises(BK.BackupRefused):
        BK.parse_bundle(data + b"\n", pinned_genesis=PIN)
    with pytest.raises(BK.BackupRefused):
        BK.parse_bundle(data[:-1], pinned_genesis=PIN)


def test_a_bundle_of_another_instance_or_sealed_by_another_key_is_refused() -> None:
    with pytest.raises(BK.BackupRefused, match="not of this one"):
        BK.parse_bundle(bundle_bytes(), pinned_genesis=b"\x00" * 32)
    body = json.loads(bundle_bytes())["body"]
    digest = BK.bundle_digest(body)
    other = coincurve.PrivateKey(b"\x09" * 32)
    forged = BK.encode_bundle(body, sealer(other)(BK.BUNDLE_SEAL, BK.seal_record(body, digest)))
    with pytest.raises(BK.BackupRefused, match="seal does not verify"):
        BK.parse_bundle(forged, pinned_genesis=PIN)


def test_shares_are_checked_against_the_bundle_before_any_is_opened() -> None:
    b = BK.parse_bundle(bundle_bytes(), pinned_genesis=PIN)
    c = ceremony()
    shares = [BK.seal_share(c, cu, i, s) for (i, s), cu in zip(BK.split(KEY, 3, 5),
                                                                custodians(*OPS))]
    BK.check_shares_for(b, shares[:3], ["a", "b", "c"])
    with pytest.raises(BK.BackupRefused, match="2 share.s. given; ceremony .* needs 3"):
        BK.check_shares_for(b, shares[:2], ["a", "b"])
    with pytest.raises(BK.BackupRefused, match="given twice"):
        BK.check_shares_for(b, [shares[0], shares[0], shares[1]], ["a", "a", "b"])
    other = {**shares[2], "ceremony_id": "c_" + "cd" * 8}
    with pytest.raises(BK.BackupRefused, match="from ceremony c_cdcd"):
        BK.check_shares_for(b, [shares[0], shares[1], other], ["a", "b", "c"])
    moved = {**shares[2], "fingerprint": fingerprint(generate().public_key())}
    with pytest.raises(BK.BackupRefused, match="is not the one ceremony"):
        BK.check_shares_for(b, [shares[0], shares[1], moved], ["a", "b", "c"])


def test_the_genesis_label_is_the_daemons() -> None:
    from signerd.adapters.hsm_backup import GENESIS_LABEL
    from signerd.app import GENESIS_LABEL as APP_LABEL

    assert GENESIS_LABEL == APP_LABEL
