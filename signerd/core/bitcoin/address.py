"""Address encoding and decoding for mainnet, testnet, signet and regtest.

Segwit addresses use bip-utils' BIP-173/BIP-350 codec (bech32 for v0, bech32m for v1+); legacy
addresses use its Base58Check codec. Outputs without an address are shown as ``script:<hex>``.
"""
from __future__ import annotations

from dataclasses import dataclass

from bip_utils import (
    Base58ChecksumError,
    Base58Decoder,
    Base58Encoder,
    Bech32ChecksumError,
    SegwitBech32Decoder,
    SegwitBech32Encoder,
)

from signerd.core.bitcoin.script import (
    OP_0,
    OP_1,
    ScriptKind,
    classify,
    p2pkh_script,
    p2sh_script_from_hash,
    witness_program,
)
from signerd.core.errors import InvalidArgument
from signerd.core.errors import echo
from signerd.core.model import BitcoinNetwork

MAX_BECH32_LENGTH = 90


@dataclass(frozen=True)
class NetworkParams:
    hrp: str
    p2pkh_prefix: int
    p2sh_prefix: int


NETWORKS: dict[BitcoinNetwork, NetworkParams] = {
    BitcoinNetwork.MAINNET: NetworkParams("bc", 0x00, 0x05),
    BitcoinNetwork.TESTNET: NetworkParams("tb", 0x6F, 0xC4),
    BitcoinNetwork.SIGNET: NetworkParams("tb", 0x6F, 0xC4),
    BitcoinNetwork.REGTEST: NetworkParams("bcrt", 0x6F, 0xC4),
}


class InvalidAddress(InvalidArgument):
    reason = "INVALID_ADDRESS"


def network_params(network: BitcoinNetwork | str) -> NetworkParams:
    try:
        return NETWORKS[BitcoinNetwork(network)]
    except ValueError:
        raise InvalidArgument(f"unknown bitcoin network {echo(network)}") from None


def script_to_address(script: bytes, network: BitcoinNetwork | str) -> str:
    """The address paying to ``script`` on ``network``, or ``script:<hex>`` if it has none."""
    params = network_params(network)
    kind, payload = classify(script)
    if kind is ScriptKind.P2PKH:
        return str(Base58Encoder.CheckEncode(bytes((params.p2pkh_prefix,)) + payload))
    if kind is ScriptKind.P2SH:
        return str(Base58Encoder.CheckEncode(bytes((params.p2sh_prefix,)) + payload))
    if kind in (ScriptKind.P2WPKH, ScriptKind.P2WSH, ScriptKind.P2TR, ScriptKind.WITNESS_UNKNOWN):
        wp = witness_program(script)
        assert wp is not None
        version, program = wp
        if 2 <= len(program) <= 40:
            return str(SegwitBech32Encoder.Encode(params.hrp, version, program))
    return "script:" + script.hex()


def address_to_script(address: str, network: BitcoinNetwork | str) -> bytes:
    """The output script of ``address``; raises InvalidAddress if it is malformed or for another
    network (testnet and signet share their encodings)."""
    params = network_params(network)
    if address.lower().startswith(params.hrp + "1"):
        if len(address) > MAX_BECH32_LENGTH:
            raise InvalidAddress(f"address {echo(address)} is longer than {MAX_BECH32_LENGTH} characters")
        try:
            version, program = SegwitBech32Decoder.Decode(params.hrp, address)
        except (ValueError, Bech32ChecksumError) as exc:
            raise InvalidAddress(f"address {echo(address)} is not a valid segwit address: {exc}") from None
        op = OP_0 if version == 0 else OP_1 + version - 1
        return bytes((op, len(program))) + bytes(program)
    try:
        raw = Base58Decoder.CheckDecode(address)
    except (ValueError, Base58ChecksumError) as exc:
        raise InvalidAddress(f"address {echo(address)} is not valid for {BitcoinNetwork(network).value}: {exc}") from None
    if len(raw) != 21:
        raise InvalidAddress(f"address {echo(address)} has a payload of {len(raw)} bytes, "
                             "expected 21")
    prefix, payload = raw[0], bytes(raw[1:])
    if prefix == params.p2pkh_prefix:
        return p2pkh_script(payload)
    if prefix == params.p2sh_prefix:
        return p2sh_script_from_hash(payload)
    raise InvalidAddress(f"address {echo(address)} is not for {BitcoinNetwork(network).value} "
                         f"(version byte {prefix:#04x})")
