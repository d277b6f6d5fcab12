"""Review findings on Safe wallets' pure parts: the setup's factory, singleton and fallback
handler must be Safe v1.4.1's canonical ones; a DELEGATECALL of any address is a change of the
Safe (it needs the governance quorum's safe.owners approval); a gas refund is the movement's
fee, bounded by max_fee."""
from __future__ import annotations

import json

import coincurve
import pytest
from eth_utils import keccak, to_checksum_address

from signerd.core import safe_wallet as SW
from signerd.core.chains import SafeAdapter, classify_outputs
from signerd.core.errors import InvalidArgument, PolicyDenied
from signerd.core.ethereum import safe as S
from signerd.core.limits import Limits
from signerd.core.model import Wallet
from signerd.core.policy import parse_policy
from tests.support.safe import safe_tx_hash_eip712
from tests.support.safe_wallet import address_of
from tests.support.safe_wallet import safe_wallet as safe_wallet_of

KEY = coincurve.PrivateKey(b"\x43" * 32)
OWNER = to_checksum_address(keccak(KEY.public_key.format(compressed=False)[1:])[12:])
ALLOWED = to_checksum_address("0x" + "a1" * 20)
PLATFORM = to_checksum_address("0x" + "77" * 20)
TOKEN = to_checksum_address("0x" + "70" * 20)
ZERO = "0x" + "00" * 20
# Safe v1.4.1's canonical deployment (safe-deployments), written out here
CANONICAL = {"fallbackHandler": "0xfd0732Dc9E303f09fCEf3a7388Ad10A83459Ec99",
             "singleton": "0x41675C099F32341bf84BFc5382aF534df5C7461a",
             "factory": "0x4e1DCf7AD4e460CfD30791CCC4F9c8a4f820ec67"}
SINGLETON_L2 = "0x29fcB43b46531BcA003ddC8FCB67FFE91900C762"


def setup_doc(**over: object) -> dict:
    doc: dict = {"owners": [OWNER], "threshold": 1, "saltNonce": 1, **CANONICAL}
    doc.update(over)
    return doc


def check(doc: dict) -> SW.CheckedSafe:
    return SW.check_safe(address_of(doc), json.dumps(doc), KEY.public_key.format())


def test_the_canonical_deployment_is_recorded() -> None:
    assert check(setup_doc()).owners == (OWNER,)
    assert check(setup_doc(singleton=SINGLETON_L2)).owners == (OWNER,)
    assert check(setup_doc(fallbackHandler=ZERO)).owners == (OWNER,)


@pytest.mark.parametrize("key", ["factory", "singleton", "fallbackHandler"])
def test_any_other_factory_singleton_or_handler_is_refused_naming_it(key: str) -> None:
    other = to_checksum_address("0x" + "5b" * 20)
    with pytest.raises(InvalidArgument, match=f"safe_setup: {key}: {other} is not Safe "
                                              r"v1\.4\.1's canonical"):
        check(setup_doc(**{key: other}))
    if key != "fallbackHandler":  # none is a choice only for the handler
        with pytest.raises(InvalidArgument, match=f"{key}: must not be the zero address"):
            check(setup_doc(**{key: ZERO}))


def tx(**over: object) -> S.SafeTx:
    doc = {"to": ALLOWED, "value": 1, "data": "0x", "operation": 0, "safeTxGas": 0,
           "baseGas": 0, "gasPrice": 0, "gasToken": ZERO, "refundReceiver": ZERO, "nonce": 0}
    doc.update(over)
    return S.SafeTx.from_json(doc)


SAFE = bytes.fromhex("5afe" * 10)
MULTISEND_CALL_ONLY = "0x40A2aCCbd92BCA938b02010E17A5b8929b49130D"


def test_every_delegatecall_is_a_change_of_the_safe() -> None:
    """A DELEGATECALL runs its target's code as the Safe: named as a change of the Safe (the
    sign step then asks for a safe.owners approval); the same CALL is none."""
    data = "0x8d80ff0a" + "00" * 64
    assert S.owner_change(SAFE, tx(to=MULTISEND_CALL_ONLY, data=data, operation=1)) == {
        "method": "delegatecall", "to": MULTISEND_CALL_ONLY, "selector": "0x8d80ff0a",
        "data": data}
    assert S.owner_change(SAFE, tx(to=MULTISEND_CALL_ONLY, data=data)) is None
    to_self = S.owner_change(SAFE, tx(to="0x" + SAFE.hex(), data=data, operation=1))
    assert to_self is not None and to_self["method"] == "unknown"


REFUND_POLICY = f"""name = "relayed"
expiry = "1h"
allowlist = ["{ALLOWED}"]
max_fee = {{ ETH = 10000000000000000 }}

[[rule]]
name = "allowlisted-with-relayer"
asset = "*"
destination = ["allowlisted"]
max_amount = "1"
approvers = 1
roles = {{ custody_officer = 1 }}
gas_refund = true
"""


def safe_wallet() -> Wallet:
    return safe_wallet_of("w_" + "2" * 16, setup_doc(), KEY.public_key.format())


@pytest.mark.parametrize("gas_token", [ZERO, TOKEN])
def test_a_gas_refund_is_bounded_like_what_it_moves(gas_token: str) -> None:
    """A rule allows 1 wei to an allowlisted address with a relayer's refund (gas_refund =
    true) and the policy bounds fees at 0.01 ETH. A SafeTx paying 100 ETH (or 100e18 units of
    a token: an ERC-20 refund is not capped by the executor's gas price in Safe's
    handlePayment) to the platform, which no rule names as a destination, is refused: the
    refund is the movement's fee (an ERC-20 one a fee asset the max_fee table does not name)."""
    doc = {"to": ALLOWED, "value": 1, "data": "0x", "operation": 0, "safeTxGas": 0,
           "baseGas": 10**11, "gasPrice": 10**9, "gasToken": gas_token,
           "refundReceiver": PLATFORM, "nonce": 0}
    w = safe_wallet()
    decoded = SafeAdapter().decode(w, json.dumps(doc).encode(), Limits())
    assert dict(decoded.movement.safe)["gas_refund"].startswith("gasPrice 1000000000 in ")
    policy = parse_policy(REFUND_POLICY)
    moved = classify_outputs(decoded.movement, {}, policy.allowlist)
    with pytest.raises(PolicyDenied, match="fee"):
        policy.requirement_for(moved)
    # a relayer's refund within max_fee passes
    small = dict(doc, baseGas=0, gasPrice=1, gasToken=ZERO)
    ok = SafeAdapter().decode(w, json.dumps(small).encode(), Limits()).movement
    assert ok.fee == 50_000
    policy.requirement_for(classify_outputs(ok, {}, policy.allowlist))


def test_a_refund_in_the_chains_coin_is_named_by_the_registry() -> None:
    """On a chain whose registered coin is not ETH, the statement's gas_refund line names that
    coin, as the movement's fee asset does."""
    from signerd.core.model import EvmChain

    w = safe_wallet()
    cid = w.chain_ids[0]
    doc = {"to": ALLOWED, "value": 1, "data": "0x", "operation": 0, "safeTxGas": 0,
           "baseGas": 0, "gasPrice": 1, "gasToken": ZERO, "refundReceiver": ZERO, "nonce": 0}
    moved = SafeAdapter().decode(w, json.dumps(doc).encode(), Limits(),
                                 chains={cid: EvmChain(cid, "Polygon test", "POL", 18)}).movement
    assert moved.fee_asset == "POL"
    assert dict(moved.safe)["gas_refund"].startswith("gasPrice 1 in POL to whoever executes")


def test_a_safe_tx_hash_is_bound_to_its_chain_and_safe() -> None:
    """The same SafeTx for another chain id or another Safe (the same CREATE2 address exists on
    every chain the setup is deployed to) has another hash: an owner signature for one is
    none for the other. Each hash is eth-account's."""
    doc = {"to": ALLOWED, "value": 1, "data": "0x", "operation": 0, "safeTxGas": 0,
           "baseGas": 0, "gasPrice": 0, "gasToken": ZERO, "refundReceiver": ZERO, "nonce": 4}
    other_safe = to_checksum_address("0x" + "5c" * 20)
    seen = set()
    for chain_id in (1, 137):
        for safe in (to_checksum_address("0x" + SAFE.hex()), other_safe):
            got = S.safe_tx_hash(chain_id, bytes.fromhex(safe[2:]), S.SafeTx.from_json(doc))
            assert got == safe_tx_hash_eip712(chain_id, safe, doc)
            seen.add(got)
    assert len(seen) == 4


def test_our_signature_is_no_eth_sign_of_the_hash() -> None:
    """The HSM owner key signs the SafeTx hash itself (v 27/28). The same r, s presented as an
    eth_sign (v + 4: the Safe then checks it over the personal_sign digest) recovers another
    address, never the owner: one approval has one reading."""
    digest = keccak(b"a SafeTx hash")
    sig = KEY.sign_recoverable(digest, hasher=None)
    r, s, v = int.from_bytes(sig[:32], "big"), int.from_bytes(sig[32:64], "big"), sig[64]
    if s > S.SECP256K1_N // 2:
        s, v = S.SECP256K1_N - s, v ^ 1
    body = r.to_bytes(32, "big") + s.to_bytes(32, "big")
    assert S.recover_owner(digest, body + bytes([27 + v])).owner == bytes.fromhex(OWNER[2:])
    try:
        other = S.recover_owner(digest, body + bytes([31 + v])).owner
    except InvalidArgument:
        return
    assert other != bytes.fromhex(OWNER[2:])


def test_signerctl_safe_deploy_prints_only_a_canonical_setup(tmp_path, capsys) -> None:
    """``signerctl wallet safe-deploy`` (offline) prints the factory call of a canonical setup
    and refuses another one in one line naming the field, before anyone deploys it."""
    from signerd import cli

    good = tmp_path / "setup.json"
    good.write_text(json.dumps(setup_doc()))
    assert cli.main(["--json", "wallet", "safe-deploy", "--setup", str(good)]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["to"] == CANONICAL["factory"] and doc["safe"] == address_of(setup_doc())
    bad = tmp_path / "lookalike.json"
    other = to_checksum_address("0x" + "5d" * 20)
    bad.write_text(json.dumps(setup_doc(factory=other)))
    assert cli.main(["wallet", "safe-deploy", "--setup", str(bad)]) != 0
    err = capsys.readouterr().err
    assert err.startswith("signerctl: --setup ") and f"factory: {other} is not" in err, err
    assert err.count("\n") == 1
