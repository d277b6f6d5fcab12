"""Policy documents: strict parsing, rule matching, merging and the strictness order."""
from __future__ import annotations

from dataclasses import replace

import pytest

from signerd.core.errors import InvalidArgument, InvalidPolicy, PolicyDenied
from signerd.core.model import Chain, DestinationClass, Movement, Output
from signerd.core.policy import (
    Requirement,
    is_stricter_or_equal,
    merge,
    parse_policy,
)

OWN, ALLOW, EXT = (DestinationClass.OWN_WALLET, DestinationClass.ALLOWLISTED,
                   DestinationClass.EXTERNAL)
TOKEN = "0x" + "ab" * 20
TOKEN_CHECKSUMMED = "0x" + "aB" * 20

POLICY = f"""
name = "two-key"
expiry = "24h"
allowlist = ["0xABCDEF0000000000000000000000000000000001", "bc1qallowed"]
max_fee = 100000
max_fee_rate = 50
sighash = ["ALL", "single|anyonecanpay"]

[[rule]]
name = "sweep"
destination = ["own_wallet"]
approvers = 1
roles = {{ custody_officer = 1 }}
expiry = "4h"

[[rule]]
name = "small"
asset = "BTC"
max_amount = "1000000"
approvers = 2
roles = {{ investigator = 1, custody_officer = 1 }}
veto = ["judge"]

[[rule]]
name = "large"
asset = "BTC"
min_amount = 1000001
approvers = 3
roles = {{ investigator = 1, custody_officer = 1, prosecutor = 1 }}
veto = ["judge"]
require_legal_basis = true

[[rule]]
name = "token"
asset = "ERC20:{TOKEN.upper().replace('0X', '0x')}"
max_amount = "1000000000000000000000000"
approvers = 2

[[rule]]
name = "verdict"
category_change = ["seized_to_confiscated"]
approvers = 2
roles = {{ judge = 1 }}
group = ["judge1", "cust1", "cust2"]
"""


def btc(*outputs: Output, fee: int = 500, vsize: int | None = 141) -> Movement:
    return Movement(chain=Chain.BITCOIN, network="regtest", chain_id=0, outputs=outputs, fee=fee,
                    fee_asset="BTC", digests=(b"\x01" * 32,), vsize=vsize,
                    outpoints=("aa" * 32 + ":0",))


def eth(*outputs: Output, fee: int = 21_000, call: str = "") -> Movement:
    return Movement(chain=Chain.ETHEREUM, network="ethereum", chain_id=1, outputs=outputs,
                    fee=fee, fee_asset="ETH", digests=(b"\x02" * 32,), nonce=0, gas_limit=21000,
                    max_fee_per_gas=10**9, max_priority_fee_per_gas=1, contract_call=call)


def out(amount: int, asset: str = "BTC", cls: DestinationClass = EXT, *, change: bool = False,
        address: str = "bc1qdest") -> Output:
    return Output(address=address, amount=amount, asset=asset, is_change=change,
                  destination_class=cls)


@pytest.fixture(scope="module")
def policy():
    return parse_policy(POLICY)


def test_parse_full_document(policy):
    assert policy.name == "two-key"
    assert policy.expiry == 86400
    assert "0xabcdef0000000000000000000000000000000001" in policy.allowlist
    assert policy.sighash_types == {0x01, 0x83}
    assert [r.name for r in policy.rules] == ["sweep", "small", "large", "token", "verdict"]
    assert policy.rules[0].requirement.expiry == 4 * 3600
    assert policy.rules[3].max_amount == 10**24
    assert policy.rules[3].asset == "ERC20:" + TOKEN


def test_defaults():
    p = parse_policy('name = "x"\n[[rule]]\nname = "all"\napprovers = 1\n')
    rule = p.rules[0]
    assert p.expiry == 86400 and p.sighash_types == {1} and p.max_fee == 0
    assert not p.allow_contract_calls and not p.allow_contract_creation
    assert rule.asset == "*" and rule.min_amount == 0 and rule.max_amount is None
    assert rule.destinations == {OWN, ALLOW, EXT}
    assert rule.category_changes == {"any"}
    assert rule.requirement.group is None and rule.requirement.veto == frozenset()


def test_approvers_raised_to_sum_of_role_minimums():
    p = parse_policy('name = "x"\n[[rule]]\nname = "r"\napprovers = 1\n'
                     "roles = { investigator = 2, custody_officer = 1 }\n")
    assert p.rules[0].requirement.approvers == 3


RULE_ERRORS = [
    ("approvrs = 2", "'approvrs'"),
    ("approvers = 0", "'approvers'"),
    ("approvers = true", "'approvers'"),
    ("approvers = 101", "'approvers'"),
    ('approvers = "2"', "'approvers'"),
    ("min_amount = -1", "'min_amount'"),
    ('min_amount = "-1"', "'min_amount'"),
    ('max_amount = "1.5"', "'max_amount'"),
    ('max_amount = " 10"', "'max_amount'"),
    ("min_amount = 10\nmax_amount = 9", "'max_amount'"),
    ('asset = "DOGE@0"', "'asset'"),  # a bare DOGE is a native coin's name: see
    ('asset = "ETH:1"', "'asset'"),   # test_chain_registry for the registry's check of it
    ('asset = "ERC20:0x1234"', "'asset'"),
    ('destination = ["mars"]', "'destination'"),
    ("destination = []", "'destination'"),
    ('category_change = ["theft"]', "'category_change'"),
    ("roles = { investigator = 0 }", "'roles.investigator'"),
    ('roles = { "bad role" = 1 }', "'roles'"),
    ('roles = "investigator"', "'roles'"),
    ('expiry = "4 hours"', "'expiry'"),
    ('expiry = "0h"', "'expiry'"),
    ('expiry = "400d"', "'expiry'"),
    ("expiry = 3600", "'expiry'"),
    ('group = ["inv1"]', "'group'"),
    ('veto = "judge"', "'veto'"),
    ('contract_call = "yes"', "'contract_call'"),
    ("require_legal_basis = 1", "'require_legal_basis'"),
]


@pytest.mark.parametrize(("line", "named"), RULE_ERRORS, ids=[e[0] for e in RULE_ERRORS])
def test_rule_errors_name_the_key_and_rule(line, named):
    text = 'name = "p"\n[[rule]]\nname = "r1"\n' + line + "\n"
    if "approvers" not in line.split("=")[0]:
        text += "approvers = 2\n"
    with pytest.raises(InvalidPolicy) as err:
        parse_policy(text)
    assert named in str(err.value)
    assert "'r1'" in str(err.value)


POLICY_ERRORS = [
    ('maxfee = 1', "'maxfee'"),
    ('expiry = "1y"', "'expiry'"),
    ('allowlist = "bc1q"', "'allowlist'"),
    ('allowlist = [""]', "'allowlist'"),
    ("max_fee = -5", "'max_fee'"),
    ("max_fee_rate = -1", "'max_fee_rate'"),
    ('max_fee_rate = "5"', "'max_fee_rate'"),
    ('sighash = ["ALL", "BOGUS"]', "'sighash'"),
    ("sighash = []", "'sighash'"),
    ('allow_contract_calls = "no"', "'allow_contract_calls'"),
    ("allow_contract_creation = 0", "'allow_contract_creation'"),
]


@pytest.mark.parametrize(("line", "named"), POLICY_ERRORS, ids=[e[0] for e in POLICY_ERRORS])
def test_policy_errors_name_the_key(line, named):
    with pytest.raises(InvalidPolicy, match=named):
        parse_policy('name = "p"\n' + line + '\n[[rule]]\nname = "r"\napprovers = 1\n')


@pytest.mark.parametrize(("text", "named"), [
    ('[[rule]]\nname = "r"\napprovers = 1\n', "'name'"),
    ('name = "p"\n', "rule"),
    ('name = "p"\n[[rule]]\napprovers = 1\n', "rule #1: missing key 'name'"),
    ('name = "p"\n[[rule]]\nname = "r"\n', "missing key 'approvers'"),
    ('name = "p"\n[[rule]]\nname = "r"\napprovers = 1\n[[rule]]\nname = "r"\napprovers = 2\n',
     "'r': name used"),
    ('name = "p"\nname = "q"\n', "not valid TOML"),
    ('name = "p"\nrule = 3\n', "rule"),
    ("x" * 70000, "exceeds"),
], ids=["no name", "no rules", "rule without name", "rule without approvers", "duplicate rule",
        "duplicate key", "rule not a table", "oversize"])
def test_document_errors(text, named):
    with pytest.raises(InvalidPolicy, match=named):
        parse_policy(text)


def test_unknown_keys_all_named():
    with pytest.raises(InvalidPolicy) as err:
        parse_policy('name = "p"\n[[rule]]\nname = "r"\napprovers = 1\nfoo = 1\nbar = 2\n')
    assert "'bar'" in str(err.value) and "'foo'" in str(err.value)


def test_small_transfer_needs_two_key(policy):
    req = policy.requirement_for(btc(out(1_000_000)))
    assert req.rules == ("small",)
    assert req.approvers == 2
    assert req.role_minimums == {"investigator": 1, "custody_officer": 1}
    assert req.veto == {"judge"} and req.expiry == 86400 and not req.require_legal_basis


def test_bounds_are_inclusive_and_large_needs_more(policy):
    assert policy.requirement_for(btc(out(1_000_001))).rules == ("large",)
    req = policy.requirement_for(btc(out(600_000), out(400_001)))  # summed per asset
    assert req.rules == ("large",) and req.approvers == 3 and req.require_legal_basis


def test_sweep_to_own_wallet_merges_with_amount_rule(policy):
    req = policy.requirement_for(btc(out(10, cls=OWN)))
    assert req.rules == ("sweep", "small")
    assert req.approvers == 2
    assert req.expiry == 4 * 3600  # the shortest expiry
    assert req.veto == {"judge"}


def test_worst_destination_class_decides(policy):
    # one own-wallet output and one external output: the sweep rule no longer matches
    req = policy.requirement_for(btc(out(10, cls=OWN), out(10, cls=EXT)))
    assert req.rules == ("small",)


def test_change_is_excluded_and_all_change_is_own_wallet(policy):
    assert policy.requirement_for(
        btc(out(500, cls=OWN), out(10**9, cls=OWN, change=True))).rules == ("sweep", "small")
    assert policy.requirement_for(btc(out(10**9, cls=OWN, change=True))).rules == (
        "sweep", "small")


def test_no_rule_denies_naming_asset_and_amount(policy):
    with pytest.raises(PolicyDenied) as err:
        policy.requirement_for(eth(out(5 * 10**18, "ETH", address="0x" + "11" * 20)))
    assert str(err.value) == ("no policy rule covers 5000000000000000000 wei (5 ETH) to an "
                              "external destination (category change none)")


def test_token_amounts_summed_across_address_case(policy):
    half = 6 * 10**23
    assert policy.requirement_for(eth(out(half, "ERC20:" + TOKEN_CHECKSUMMED))).rules == ("token",)
    # splitting the amount across spellings of the same contract must not dodge max_amount
    with pytest.raises(PolicyDenied, match=f"1200000000000000000000000 base units of ERC20:{TOKEN}"):
        policy.requirement_for(eth(out(half, "ERC20:" + TOKEN_CHECKSUMMED),
                                   out(half, "erc20:" + TOKEN)))


def test_every_asset_must_be_covered(policy):
    with pytest.raises(PolicyDenied, match="ETH"):
        policy.requirement_for(eth(out(5, "ERC20:" + TOKEN), out(10**19, "ETH")))


def test_category_change(policy):
    req = policy.requirement_for(btc(out(5)), category_change="seized_to_confiscated")
    assert req.rules == ("small", "verdict")
    assert req.role_minimums == {"investigator": 1, "custody_officer": 1, "judge": 1}
    assert req.approvers == 3 and req.group == {"judge1", "cust1", "cust2"}
    assert policy.requirement_for(btc(out(5))).rules == ("small",)
    with pytest.raises(InvalidArgument, match="'theft'"):
        policy.requirement_for(btc(out(5)), category_change="theft")


def test_group_intersection_too_small_is_denied():
    p = parse_policy('name = "p"\n'
                     '[[rule]]\nname = "a"\napprovers = 2\ngroup = ["x", "y", "z"]\n'
                     '[[rule]]\nname = "b"\napprovers = 2\ngroup = ["y", "w"]\n')
    with pytest.raises(PolicyDenied, match="group of 1 operators for 2 approvers"):
        p.requirement_for(btc(out(1)))


def test_fee_bounds(policy):
    with pytest.raises(PolicyDenied, match="max_fee 100000"):
        policy.requirement_for(btc(out(5), fee=100_001, vsize=10_000))
    with pytest.raises(PolicyDenied, match="max_fee_rate 50"):
        policy.requirement_for(btc(out(5), fee=50 * 141 + 1))
    assert policy.requirement_for(btc(out(5), fee=50 * 141)).rules == ("small",)
    with pytest.raises(PolicyDenied, match="size unknown"):
        policy.requirement_for(btc(out(5), vsize=None))


FEE_TABLE = ('name = "p"\nmax_fee = {{ {table} }}\n[[rule]]\nname = "r"\napprovers = 1\n')


def test_max_fee_by_fee_asset():
    """sat and wei differ by ten orders of magnitude: a table bounds each fee asset in its own
    base units; a fee asset it does not name has no bound."""
    p = parse_policy(FEE_TABLE.format(table='BTC = 1000000, ETH = "50000000000000000"'))
    assert p.max_fees == (("BTC", 1_000_000), ("ETH", 5 * 10**16)) and p.max_fee == 0
    assert p.fee_bound("BTC") == 1_000_000 and p.fee_bound("ETH") == 5 * 10**16
    assert p.requirement_for(btc(out(5), fee=1_000_000, vsize=10_000)).rules == ("r",)
    with pytest.raises(PolicyDenied, match=r"fee 1000001 sat \(0.01000001 BTC\) exceeds max_fee.BTC 1000000 sat"):
        p.requirement_for(btc(out(5), fee=1_000_001, vsize=10_000))
    assert p.requirement_for(eth(out(5, "ETH"), fee=5 * 10**16)).rules == ("r",)
    with pytest.raises(PolicyDenied, match="exceeds max_fee.ETH 50000000000000000"):
        p.requirement_for(eth(out(5, "ETH"), fee=5 * 10**16 + 1))
    only_btc = parse_policy(FEE_TABLE.format(table="BTC = 1000"))
    assert only_btc.fee_bound("ETH") == 0
    assert only_btc.requirement_for(eth(out(5, "ETH"), fee=10**18)).rules == ("r",)


def test_max_fee_as_one_number_still_bounds_every_fee_asset():
    p = parse_policy('name = "p"\nmax_fee = 1000\n[[rule]]\nname = "r"\napprovers = 1\n')
    assert p.max_fee == 1000 and p.max_fees == ()
    assert p.fee_bound("BTC") == p.fee_bound("ETH") == 1000
    with pytest.raises(PolicyDenied, match=r"fee 1001 wei \(0.000000000000001001 ETH\) exceeds max_fee 1000 wei"):
        p.requirement_for(eth(out(5, "ETH"), fee=1001))


@pytest.mark.parametrize(("table", "named"), [
    ("", "must name at least one fee asset"),
    ('"DOGE@x" = 1', "'DOGE@x' is not a fee asset"),
    ("btc = 1", "'btc' is not a fee asset"),
    ("BTC = -1", "'max_fee.BTC'"),
    ('ETH = "1e18"', "'max_fee.ETH'"),
    ("BTC = true", "'max_fee.BTC'"),
    ("BTC = 1.5", "'max_fee.BTC'"),
])
def test_max_fee_table_errors_name_the_key(table, named):
    with pytest.raises(InvalidPolicy, match=named):
        parse_policy(FEE_TABLE.format(table=table))


def test_every_shipped_template_bounds_fees_and_gives_category_moves_to_the_judiciary():
    """Each genesis template caps the fee of both chains and the Bitcoin fee rate; its ordinary
    rules match no category movement, and every category movement needs a judge, a prosecutor
    and a custody officer, with a legal basis."""
    from signerd.daemon import DEMO_POLICIES

    assert set(DEMO_POLICIES) == {"two-key.toml", "tiered.toml", "seized-sweep.toml",
                                  "category-movement.toml"}
    for name, text in DEMO_POLICIES.items():
        p = parse_policy(text)
        assert 0 < p.fee_bound("BTC") <= 2_500_000, name
        assert 0 < p.fee_bound("ETH") <= 5 * 10**16, name
        assert 0 < p.max_fee_rate <= 500, name
        with pytest.raises(PolicyDenied, match="exceeds max_fee.BTC"):
            p.requirement_for(btc(out(5, cls=OWN), fee=495_000_000, vsize=10**9))
        with pytest.raises(PolicyDenied, match="exceeds max_fee_rate"):
            p.requirement_for(btc(out(5, cls=OWN), fee=100_000, vsize=100))
        with pytest.raises(PolicyDenied, match="exceeds max_fee.ETH"):
            p.requirement_for(eth(out(5, "ETH", OWN), fee=10**18))
        for change in ("seized_to_confiscated", "seized_to_returned", "sale_proceeds"):
            for cls in (OWN, ALLOW, EXT):
                req = p.requirement_for(btc(out(5, cls=cls)), category_change=change)
                assert req.rules == ("verdict",), (name, change, cls)
                assert dict(req.roles) == {"judge": 1, "prosecutor": 1, "custody_officer": 1}
                assert req.require_legal_basis and req.approvers >= 3
        for cls in (OWN, ALLOW, EXT):
            req = p.requirement_for(btc(out(5, cls=cls)))
            assert "verdict" not in req.rules and not req.require_legal_basis


def test_fractional_fee_rate():
    p = parse_policy('name = "p"\nmax_fee_rate = 1.5\n[[rule]]\nname = "r"\napprovers = 1\n')
    assert p.requirement_for(btc(out(5), fee=3, vsize=2)).rules == ("r",)
    with pytest.raises(PolicyDenied, match="max_fee_rate 1.5"):
        p.requirement_for(btc(out(5), fee=4, vsize=2))


CONTRACT_POLICY = """
name = "c"
allow_contract_calls = {calls}
allow_contract_creation = {create}
[[rule]]
name = "plain"
approvers = 1
[[rule]]
name = "contracts"
contract_call = {rule}
max_amount = 0
approvers = 3
"""


@pytest.mark.parametrize(("calls", "create", "rule", "movement", "outcome"), [
    ("false", "false", "true", eth(out(0, "ETH", address="0x" + "22" * 20), call="0xdeadbeef"),
     "allow_contract_calls = false"),
    ("true", "false", "false", eth(out(0, "ETH", address="0x" + "22" * 20), call="0xdeadbeef"),
     "contract_call = true"),
    ("true", "false", "true", eth(out(0, "ETH", address="0x" + "22" * 20), call="0xdeadbeef"),
     ("plain", "contracts")),
    ("true", "false", "true", eth(out(1, "ETH", address="0x" + "22" * 20), call="0xdeadbeef"),
     "contract_call = true"),
    ("true", "false", "true", eth(call="0xdeadbeef"), ("plain", "contracts")),
    ("true", "false", "true", eth(out(0, "ETH", address=""), call="0x6080"),
     "allow_contract_creation = false"),
    ("false", "true", "true", eth(out(0, "ETH", address="")), ("plain", "contracts")),
], ids=["calls off", "no contract rule", "call allowed", "call with value beyond contract rule",
        "call without outputs", "creation off", "creation allowed"])
def test_contract_calls(calls, create, rule, movement, outcome):
    p = parse_policy(CONTRACT_POLICY.format(calls=calls, create=create, rule=rule))
    if isinstance(outcome, str):
        with pytest.raises(PolicyDenied, match=outcome):
            p.requirement_for(movement)
    else:
        req = p.requirement_for(movement)
        assert req.rules == outcome and req.approvers == 3


def test_check_sighash(policy):
    policy.check_sighash(0x01)
    policy.check_sighash(0x83)
    with pytest.raises(PolicyDenied, match="0x02"):
        policy.check_sighash(0x02)


BASE = Requirement(approvers=2, roles=(("investigator", 1), ("custody_officer", 1)),
                   group=frozenset({"a", "b", "c"}), veto=frozenset({"judge"}), expiry=3600)


@pytest.mark.parametrize(("new", "stricter"), [
    (BASE, True),
    (replace(BASE, rules=("other",)), True),
    (replace(BASE, approvers=3), True),
    (replace(BASE, approvers=1), True),  # normalised back to 2 by the role minimums
    (replace(BASE, roles=(("investigator", 1),), approvers=1), False),
    (replace(BASE, roles=(("investigator", 2), ("custody_officer", 1))), True),
    (replace(BASE, roles=(("investigator", 1), ("custody_officer", 1), ("judge", 1))), True),
    (replace(BASE, group=frozenset({"a", "b"})), True),
    (replace(BASE, group=frozenset({"a", "b", "c", "d"})), False),
    (replace(BASE, group=None), False),
    (replace(BASE, veto=frozenset()), False),
    (replace(BASE, veto=frozenset({"judge", "prosecutor"})), True),
    (replace(BASE, expiry=3599), True),
    (replace(BASE, expiry=3601), False),
    (replace(BASE, require_legal_basis=True), True),
], ids=lambda v: "" if isinstance(v, bool) else None)
def test_strictness_order(new, stricter):
    assert is_stricter_or_equal(new, BASE) is stricter
    merged = merge(BASE, new)
    assert is_stricter_or_equal(merged, BASE) and is_stricter_or_equal(merged, new)
    if stricter:
        assert is_stricter_or_equal(new, merged)  # merge keeps the dominating one's demands


def test_merge_adds_up_to_strictest_of_each():
    a = Requirement(approvers=2, roles=(("investigator", 2),), group=frozenset({"x", "y", "z"}),
                    veto=frozenset({"judge"}), expiry=100, rules=("a",))
    b = Requirement(approvers=1, roles=(("custody_officer", 2),), group=frozenset({"y", "z", "w"}),
                    veto=frozenset({"auditor"}), expiry=50, rules=("b",),
                    require_legal_basis=True)
    m = merge(a, b)
    assert m.role_minimums == {"investigator": 2, "custody_officer": 2}
    assert m.approvers == 4  # each role slot needs its own operator
    assert m.group == {"y", "z"} and m.veto == {"judge", "auditor"} and m.expiry == 50
    assert m.rules == ("a", "b") and m.require_legal_basis
    assert merge(a, replace(b, group=None)).group == a.group


RULE_SIGHASH = """
name = "rule-sighash"
[[rule]]
name = "small"
asset = "BTC"
max_amount = 100000
approvers = 2
roles = { investigator = 1, custody_officer = 1 }
sighash = ["ALL", "SINGLE|ANYONECANPAY"]

[[rule]]
name = "large"
asset = "BTC"
min_amount = 50000
approvers = 3
roles = { investigator = 1, custody_officer = 1, prosecutor = 1 }
"""


def test_a_sighash_other_than_all_needs_every_matching_rule_to_allow_it():
    p = parse_policy(RULE_SIGHASH)
    # Decodable at all: the policy's default (ALL) and what any rule names.
    assert p.sighash_types == {0x01, 0x83}
    small = replace(btc(out(10_000)), sighash=("ALL", "SINGLE|ANYONECANPAY"))
    assert p.requirement_for(small).rules == ("small",)
    # Matched by "large" too, which allows only the policy's default: refused, naming it.
    both = replace(btc(out(60_000)), sighash=("SINGLE|ANYONECANPAY",))
    with pytest.raises(PolicyDenied, match=r"sighash SINGLE\|ANYONECANPAY is not allowed by "
                                           r"matching rule large \(sighash = \[ALL\]\)"):
        p.requirement_for(both)
    assert p.requirement_for(replace(both, sighash=("ALL",))).rules == ("small", "large")
    with pytest.raises(InvalidPolicy, match="'sighash'"):
        parse_policy(RULE_SIGHASH.replace('"SINGLE|ANYONECANPAY"]', '"BOGUS"]'))
