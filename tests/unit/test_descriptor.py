"""Descriptors (BIP-380 checksum, supported forms, xpub keys), scripts and addresses."""
from __future__ import annotations

import re

import coincurve
import pytest
from bip_utils import Base58Decoder

from _vectors import VECTORS, load
from signerd.core.bitcoin.address import InvalidAddress, address_to_script, script_to_address
from signerd.core.bitcoin.descriptor import (
    InvalidDescriptor,
    descriptor_checksum,
    make_descriptor,
    parse_descriptor,
    parse_key,
    xpub_child_pubkey,
)
from signerd.core.bitcoin.script import (
    ScriptKind,
    classify,
    parse_multisig,
    sortedmulti_script,
)
from signerd.core.errors import InvalidKey
from signerd.core.model import BitcoinNetwork, ScriptType

XPUB_A = ("xpub661MyMwAqRbcFW31YEwpkMuc5THy2PSt5bDMsktWQcFF8syAmRUapSCGu8ED9W6oDMSgv6Zz8idoc4a6mr8"
          "BDzTJY47LJhkJ8UB7WEGuduB")
XPUB_B = ("xpub69H7F5d8KSRgmmdJg2KhpAK8SR3DjMwAdkxj3ZuxV27CprR9LgpeyGmXUbC6wb7ERfvrnKZjXoUmmDznezp"
          "bZb7ap6r1D3tgFxHmwMkQTPH")
XPUB_C = ("xpub6ERApfZwUNrhLCkDtcHTcxd75RbzS1ed54G1LkBUHQVHQKqhMkhgbmJbZRkrgZw4koxb5JaHWkY4ALHY2gr"
          "BGRjaDMzQLcgJvLJuZZvRcEL")
XPUB_D = ("xpub68NZiKmJWnxxS6aaHmn81bvJeTESw724CRDs6HbuccFQN9Ku14VQrADWgqbhhTHBaohPX4CjNLf9fq9MYo6"
          "oDaPPLPxSb7gwQN3ih19Zm4Y")

# Descriptors with checksums published by BIP-380, Bitcoin Core's descriptors.md and
# descriptor_tests.cpp, and rust-miniscript's tests (computed there by other implementations).
KNOWN_CHECKSUMS = [
    ("raw(deadbeef)", "89f8spxm"),
    ("wpkh(02f9308a019258c31049344f85f89d5229b531c845836f99b08601f113bce036f9)", "8zl0zxma"),
    ("pkh(02c6047f9441ed7d6d3045406e95c07cd85c778e4b8cef3ca7abac09b95c709ee5)", "8fhd9pwu"),
    ("sh(wpkh(03fff97bd5755eeea420453a14355235d382f6472f8568a18b2f057a1460297556))", "qkrrc7je"),
    (f"sh(wpkh({XPUB_C}))", "tjp2zm88"),
    (f"wsh(sortedmulti(1,{XPUB_A},{XPUB_B}))", "7etm7zk7"),
    (f"wsh(sortedmulti(1,{XPUB_B},{XPUB_A}))", "ppmeel9k"),
    (f"sh(multi(2,[00000000/111'/222]{XPUB_C},{XPUB_D}/0))", "tjg09x5t"),
    ("sh(sortedmulti(1,03fff97bd5755eeea420453a14355235d382f6472f8568a18b2f057a1460297556,"
     "0250863ad64a87ae8a2fe83c1af1a8403cb53f53e486d8511dad8a04887e5b2352))", "uetvewm2"),
]


@pytest.mark.parametrize("text, checksum", KNOWN_CHECKSUMS, ids=[c for _, c in KNOWN_CHECKSUMS])
def test_known_checksums(text: str, checksum: str) -> None:
    assert descriptor_checksum(text) == checksum


# (descriptor, network, expected scriptPubKey hex or None, expected address or None)
PARSE_CASES = [
    # Bitcoin Core descriptor_tests.cpp
    ("wpkh(03a34b99f22c790c4e36b2b3c2c35a36db06226e41c692fc82b8b56ac1c540c5bd)", "mainnet",
     "00149a1c78a507689f6f54b847ad1cef1e614ee23f1e", None),
    ("sh(wpkh(03a34b99f22c790c4e36b2b3c2c35a36db06226e41c692fc82b8b56ac1c540c5bd))", "mainnet",
     "a91484ab21b1b2fd065d4504ff693d832434b6108d7b87", None),
    # libwally / cfd tests
    ("wpkh(02f9308a019258c31049344f85f89d5229b531c845836f99b08601f113bce036f9)#8zl0zxma",
     "mainnet", None, "bc1q0ht9tyks4vh7p5p904t340cr9nvahy7u3re7zg"),
    ("wpkh(02f9308a019258c31049344f85f89d5229b531c845836f99b08601f113bce036f9)", "testnet",
     None, "tb1q0ht9tyks4vh7p5p904t340cr9nvahy7um9zdem"),
    ("sh(wpkh(03fff97bd5755eeea420453a14355235d382f6472f8568a18b2f057a1460297556))#qkrrc7je",
     "mainnet", None, "3LKyvRN6SmYXGBNn8fcQvYxW9MGKtwcinN"),
    # rust-miniscript: plain xpubs stand for their own key
    (f"wsh(sortedmulti(1,{XPUB_A},{XPUB_B}))#7etm7zk7", "mainnet", None,
     "bc1qpq2cfgz5lktxzr5zqv7nrzz46hsvq3492ump9pz8rzcl8wqtwqcspx5y6a"),
    (f"wsh(sortedmulti(1,{XPUB_B},{XPUB_A}))#ppmeel9k", "mainnet", None,
     "bc1qpq2cfgz5lktxzr5zqv7nrzz46hsvq3492ump9pz8rzcl8wqtwqcspx5y6a"),
]


@pytest.mark.parametrize("text, network, spk, address", PARSE_CASES,
                         ids=[f"case{n}" for n in range(len(PARSE_CASES))])
def test_parse_descriptor(text: str, network: str, spk: str | None, address: str | None) -> None:
    desc = parse_descriptor(text)
    if spk is not None:
        assert desc.script_pubkey().hex() == spk
    if address is not None:
        assert desc.address(network) == address
        assert address_to_script(address, network) == desc.script_pubkey()
    assert parse_descriptor(desc.to_string()) == desc
    assert desc.to_string(checksum=False) == text.split("#")[0]


def test_xpub_with_fixed_path_and_bip67_sort() -> None:
    # Core's descriptor_tests: sortedmulti(2, xpubC/*, xpubD/0/0/*) at index 0
    desc = parse_descriptor(f"wsh(sortedmulti(2,{XPUB_C}/0,{XPUB_D}/0/0/0))")
    assert desc.witness_script().hex() == (
        "5221025d5fc65ebb8d44a5274b53bac21ff8307fec2334a32df05553459f8b1f7fe1b62102fbd47cc8034098"
        "f0e6a94c6aeee8528abf0a2153a5d8e46d325b7284c046784652ae")
    # pk(xpubD/0) in Core's tests
    expected = "0379e45b3cf75f9c5f9befd8e9506fb962f6a9d185ac87001ec44a8d3df8d4a9e3"
    assert parse_key(f"{XPUB_D}/0").pubkey.hex() == expected
    assert xpub_child_pubkey(XPUB_D, (0,)).hex() == expected
    with pytest.raises(InvalidDescriptor, match="non-hardened"):
        xpub_child_pubkey(XPUB_D, (2**31,))


def test_xpub_derivation_matches_bip32_vectors() -> None:
    """A non-hardened child of each BIP-32 vector xpub equals the vector's own child xpub key."""
    checked = 0
    for vector in load("bip32/vectors.json")["valid_vectors"]:
        chains = {c["path"]: c["ext_pub"] for c in vector["chains"]}
        for path, xpub in chains.items():
            parent, _, last = path.rpartition("/")
            if parent and not last.endswith("'") and parent in chains:
                child_key = Base58Decoder.CheckDecode(xpub)[45:]
                assert parse_key(f"{chains[parent]}/{last}").pubkey == child_key
                checked += 1
    assert checked >= 3


INVALID_XPUBS = load("bip32/vectors.json")["invalid_extended_keys"]["cases"]


@pytest.mark.parametrize("case", INVALID_XPUBS, ids=[c["reason"] for c in INVALID_XPUBS])
def test_bip32_invalid_extended_keys_rejected(case: dict) -> None:
    with pytest.raises(InvalidDescriptor):
        parse_key(case["key"])


@pytest.mark.parametrize("text, match", [
    ("wpkh(02f9308a019258c31049344f85f89d5229b531c845836f99b08601f113bce036f9)#8zl0zxmb",
     "does not match"),
    ("wpkh(02f9308a019258c31049344f85f89d5229b531c845836f99b08601f113bce036f9)#8zl0zxm",
     "8 characters"),
    ("pkh(02c6047f9441ed7d6d3045406e95c07cd85c778e4b8cef3ca7abac09b95c709ee5)", "unsupported"),
    ("sh(multi(1,02c6047f9441ed7d6d3045406e95c07cd85c778e4b8cef3ca7abac09b95c709ee5))",
     "unsupported"),
    ("wpkh(04a34b99f22c790c4e36b2b3c2c35a36db06226e41c692fc82b8b56ac1c540c5bd5b8dec5235a0fa8722"
     "476c7709c02559e3aa73aa03918ba2d492eea75abea235)", "compressed"),
    ("wpkh(020000000000000000000000000000000000000000000000000000000000000007)", "not a point"),
    (f"wpkh({XPUB_A}/*)", "ranged"),
    (f"wpkh({XPUB_A}/<0;1>)", "ranged or multipath"),
    (f"wpkh({XPUB_A}/1')", "hardened"),
    (f"wpkh({XPUB_A}/2147483648)", "out of range"),
    (f"wpkh({XPUB_A}/01)", "not a number"),
    ("wpkh(xprv9s21ZrQH143K3QTDL4LXw2F7HEK3wJUD2nW2nRk4stbPy6cq3jPPqjiChkVvvNKmPGJxWUtg6LnF5ke"
     "jMRNNU3TGtRBeJgk33yuGBxrMPHi)", "not an xpub or tpub"),
    ("wsh(sortedmulti(3,02c6047f9441ed7d6d3045406e95c07cd85c778e4b8cef3ca7abac09b95c709ee5,"
     "02f9308a019258c31049344f85f89d5229b531c845836f99b08601f113bce036f9))", "threshold 3"),
    ("wsh(sortedmulti(1,02c6047f9441ed7d6d3045406e95c07cd85c778e4b8cef3ca7abac09b95c709ee5,"
     "02c6047f9441ed7d6d3045406e95c07cd85c778e4b8cef3ca7abac09b95c709ee5))", "distinct"),
    ("wsh(sortedmulti(01,02c6047f9441ed7d6d3045406e95c07cd85c778e4b8cef3ca7abac09b95c709ee5))",
     "threshold"),
    ("wpkh([d34db3/84h]02c6047f9441ed7d6d3045406e95c07cd85c778e4b8cef3ca7abac09b95c709ee5)",
     "origin"),
    ("wpkh(02c6047f9441ed7d6d3045406e95c07cd85c778e4b8cef3ca7abac09b95c709ee5)\u00e9",
     "invalid character"),
], ids=lambda v: v if len(v) < 30 else None)
def test_invalid_descriptors(text: str, match: str) -> None:
    with pytest.raises(InvalidDescriptor, match=match):
        parse_descriptor(text)


def test_require_checksum() -> None:
    bare = "wpkh(02f9308a019258c31049344f85f89d5229b531c845836f99b08601f113bce036f9)"
    with pytest.raises(InvalidDescriptor, match="no checksum"):
        parse_descriptor(bare, require_checksum=True)
    parse_descriptor(bare + "#8zl0zxma", require_checksum=True)


def test_origin_kept_in_string() -> None:
    text = ("wpkh([d34db33f/84h/0h/0h]02f9308a019258c31049344f85f89d5229b531c845836f99b08601f113bc"
            "e036f9)")
    desc = parse_descriptor(text)
    assert desc.to_string(checksum=False) == text
    assert desc.keys[0].origin is not None
    assert desc.keys[0].origin.path_str() == "m/84'/0'/0'"


def test_network_check_for_extended_keys() -> None:
    desc = parse_descriptor(f"wpkh({XPUB_A})")
    desc.address("mainnet")
    with pytest.raises(InvalidDescriptor, match="not for testnet"):
        desc.address("testnet")


def test_make_descriptor_is_canonical() -> None:
    keys = [coincurve.PrivateKey(bytes([i]) * 32).public_key.format() for i in (3, 1, 2)]
    text = make_descriptor(ScriptType.P2WSH_SORTEDMULTI, 2, keys)
    assert text == make_descriptor(ScriptType.P2WSH_SORTEDMULTI, 2, list(reversed(keys)))
    desc = parse_descriptor(text, require_checksum=True)
    assert desc.witness_script() == sortedmulti_script(2, keys)
    assert re.fullmatch(r"wsh\(sortedmulti\(2,(0[23][0-9a-f]{64},?){3}\)\)#[a-z0-9]{8}", text)
    single = make_descriptor(ScriptType.P2SH_P2WPKH, 1, keys[:1])
    assert parse_descriptor(single).script_type is ScriptType.P2SH_P2WPKH
    with pytest.raises(InvalidDescriptor):
        make_descriptor(ScriptType.P2WPKH, 1, keys)


# -- scripts ---------------------------------------------------------------------------------

def test_sortedmulti_is_bip67_order() -> None:
    keys = [coincurve.PrivateKey(bytes([i]) * 32).public_key.format() for i in range(1, 4)]
    m, ordered = parse_multisig(sortedmulti_script(2, list(reversed(keys))))  # type: ignore[misc]
    assert m == 2 and list(ordered) == sorted(keys)
    with pytest.raises(InvalidKey):
        sortedmulti_script(0, keys)
    with pytest.raises(InvalidKey):
        sortedmulti_script(2, keys[:1] + [b"\x04" + keys[0][1:]])


@pytest.mark.parametrize("script, kind", [
    ("76a9149a1c78a507689f6f54b847ad1cef1e614ee23f1e88ac", ScriptKind.P2PKH),
    ("a91484ab21b1b2fd065d4504ff693d832434b6108d7b87", ScriptKind.P2SH),
    ("00149a1c78a507689f6f54b847ad1cef1e614ee23f1e", ScriptKind.P2WPKH),
    ("0020" + "11" * 32, ScriptKind.P2WSH),
    ("5120" + "11" * 32, ScriptKind.P2TR),
    ("5210751e76e8199196d454941c45d1b3a323", ScriptKind.WITNESS_UNKNOWN),
    ("0010" + "11" * 16, ScriptKind.NONSTANDARD),
    ("6a0401020304", ScriptKind.NULL_DATA),
    ("51", ScriptKind.NONSTANDARD),
])
def test_classify(script: str, kind: ScriptKind) -> None:
    assert classify(bytes.fromhex(script))[0] is kind


# -- addresses -------------------------------------------------------------------------------

# BIP-350 valid segwit addresses (v0 bech32, v1+ bech32m) and their scriptPubKeys
BIP350_VALID = [
    ("BC1QW508D6QEJXTDG4Y5R3ZARVARY0C5XW7KV8F3T4", "0014751e76e8199196d454941c45d1b3a323f1433bd6"),
    ("tb1qrp33g0q5c5txsp9arysrx4k6zdkfs4nce4xj0gdcccefvpysxf3q0sl5k7",
     "00201863143c14c5166804bd19203356da136c985678cd4d27a1b8c6329604903262"),
    ("bc1pw508d6qejxtdg4y5r3zarvary0c5xw7kw508d6qejxtdg4y5r3zarvary0c5xw7kt5nd6y",
     "5128751e76e8199196d454941c45d1b3a323f1433bd6751e76e8199196d454941c45d1b3a323f1433bd6"),
    ("BC1SW50QGDZ25J", "6002751e"),
    ("bc1zw508d6qejxtdg4y5r3zarvaryvaxxpcs", "5210751e76e8199196d454941c45d1b3a323"),
    ("tb1qqqqqp399et2xygdj5xreqhjjvcmzhxw4aywxecjdzew6hylgvsesrxh6hy",
     "0020000000c4a5cad46221b2a187905e5266362b99d5e91c6ce24d165dab93e86433"),
    ("tb1pqqqqp399et2xygdj5xreqhjjvcmzhxw4aywxecjdzew6hylgvsesf3hn0c",
     "5120000000c4a5cad46221b2a187905e5266362b99d5e91c6ce24d165dab93e86433"),
    ("bc1p0xlxvlhemja6c4dqv22uapctqupfhlxm9h8z3k2e72q4k9hcz7vqzk5jj0",
     "512079be667ef9dcbbac55a06295ce870b07029bfcdb2dce28d959f2815b16f81798"),
]


@pytest.mark.parametrize("address, spk", BIP350_VALID, ids=[a[:14] for a, _ in BIP350_VALID])
def test_bip350_valid(address: str, spk: str) -> None:
    network = "mainnet" if address.lower().startswith("bc1") else "testnet"
    script = bytes.fromhex(spk)
    assert address_to_script(address, network) == script
    assert script_to_address(script, network) == address.lower()


BIP350_INVALID = [
    "tc1p0xlxvlhemja6c4dqv22uapctqupfhlxm9h8z3k2e72q4k9hcz7vq5zuyut",
    "bc1p0xlxvlhemja6c4dqv22uapctqupfhlxm9h8z3k2e72q4k9hcz7vqh2y7hd",
    "tb1z0xlxvlhemja6c4dqv22uapctqupfhlxm9h8z3k2e72q4k9hcz7vqglt7rf",
    "BC1S0XLXVLHEMJA6C4DQV22UAPCTQUPFHLXM9H8Z3K2E72Q4K9HCZ7VQ54WELL",
    "bc1qw508d6qejxtdg4y5r3zarvary0c5xw7kemeawh",
    "tb1q0xlxvlhemja6c4dqv22uapctqupfhlxm9h8z3k2e72q4k9hcz7vq24jc47",
    "bc1p38j9r5y49hruaue7wxjce0updqjuyyx0kh56v8s25huc6995vvpql3jow4",
    "BC130XLXVLHEMJA6C4DQV22UAPCTQUPFHLXM9H8Z3K2E72Q4K9HCZ7VQ7ZWS8R",
    "bc1pw5dgrnzv",
    "bc1p0xlxvlhemja6c4dqv22uapctqupfhlxm9h8z3k2e72q4k9hcz7v8n0nx0muaewav253zgeav",
    "BC1QR508D6QEJXTDG4Y5R3ZARVARYV98GJ9P",
    "tb1p0xlxvlhemja6c4dqv22uapctqupfhlxm9h8z3k2e72q4k9hcz7vq47Zagq",
    "bc1p0xlxvlhemja6c4dqv22uapctqupfhlxm9h8z3k2e72q4k9hcz7v07qwwzcrf",
    "tb1p0xlxvlhemja6c4dqv22uapctqupfhlxm9h8z3k2e72q4k9hcz7vpggkg4j",
    "bc1gmk9yu",
    # BIP-173 v1+ addresses with a bech32 (not bech32m) checksum
    "BC1SW50QA3JX3S",
    "bc1zw508d6qejxtdg4y5r3zarvaryvg6kdaj",
]


@pytest.mark.parametrize("address", BIP350_INVALID)
def test_bip350_invalid(address: str) -> None:
    network = "testnet" if address.lower().startswith("tb") else "mainnet"
    with pytest.raises(InvalidAddress):
        address_to_script(address, network)


def test_bip84_addresses() -> None:
    text = (VECTORS / "bip84" / "test-vectors.txt").read_text()
    pairs = re.findall(r"pubkey\s*=\s*([0-9a-f]{66})\s*\n\s*address\s*=\s*(bc1\w+)", text)
    assert len(pairs) == 3
    for pub, addr in pairs:
        desc = parse_descriptor(f"wpkh({pub})")
        assert desc.address("mainnet") == addr


@pytest.mark.parametrize("network, hrp, p2pkh, p2sh", [
    ("mainnet", "bc1", "1", "3"), ("testnet", "tb1", "m", "2"), ("signet", "tb1", "m", "2"),
    ("regtest", "bcrt1", "m", "2")])
def test_networks(network: str, hrp: str, p2pkh: str, p2sh: str) -> None:
    key_hash = bytes(range(20))
    wpkh = bytes.fromhex("0014") + key_hash
    pkh = bytes.fromhex("76a914") + key_hash + bytes.fromhex("88ac")
    sh = bytes.fromhex("a914") + key_hash + b"\x87"
    for script, prefix in ((wpkh, hrp), (pkh, p2pkh), (sh, p2sh)):
        address = script_to_address(script, network)
        assert address.startswith(prefix) or (prefix == "m" and address[0] in "mn")
        assert address_to_script(address, network) == script
    other = "testnet" if network == "mainnet" else "mainnet"
    with pytest.raises(InvalidAddress):
        address_to_script(script_to_address(wpkh, network), other)
    with pytest.raises(InvalidAddress):
        address_to_script(script_to_address(pkh, network), other)


def test_regtest_differs_from_testnet_for_segwit_only() -> None:
    wpkh = bytes.fromhex("0014") + bytes(20)
    assert script_to_address(wpkh, BitcoinNetwork.REGTEST).startswith("bcrt1")
    with pytest.raises(InvalidAddress):
        address_to_script(script_to_address(wpkh, "regtest"), "testnet")


@pytest.mark.parametrize("script", ["51", "6a0401020304", "0010" + "11" * 16, ""])
def test_non_standard_scripts_have_no_address(script: str) -> None:
    assert script_to_address(bytes.fromhex(script), "mainnet") == "script:" + script


def test_address_garbage_rejected() -> None:
    valid = "3LKyvRN6SmYXGBNn8fcQvYxW9MGKtwcinN"
    address_to_script(valid, "mainnet")
    for bad in ("", "1", "bc1", valid[:-1] + "M", "x" * 200, "bc1" + "q" * 100):
        with pytest.raises(InvalidAddress):
            address_to_script(bad, "mainnet")
