"""Decoding seized private keys (raw hex, WIF, BIP-39 mnemonic + path) before they go into the HSM.

Pure: no I/O. The secret is returned as a bytearray so the caller can wipe it after the HSM import;
Python may still hold copies of intermediate values (strings, bip-utils objects) until they are
collected, which is as far as Python allows. Errors never contain the secret.
"""
from __future__ import annotations

import re
import unicodedata

from .errors import InvalidKey
from .errors import echo

SECP256K1_N = 0xFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFEBAAEDCE6AF48A03BBFD25E8CD0364141
_HEX64 = re.compile(r"(?:0x)?[0-9a-fA-F]{64}")
_PATH = re.compile(r"m(/[0-9]{1,10}['hH]?){1,10}")
MAX_INDEX = 2**31 - 1  # a BIP-32 index; hardened ones add 2^31
WIF_PREFIX = {"mainnet": b"\x80", "testnet": b"\xef", "signet": b"\xef", "regtest": b"\xef"}


def _checked(secret: bytes) -> bytearray:
    d = int.from_bytes(secret, "big")
    if not 0 < d < SECP256K1_N:
        raise InvalidKey("private key is out of range for secp256k1 (zero or not below the "
                         "group order)")
    return bytearray(secret)


def from_hex(text: str) -> bytearray:
    t = text.strip()
    if not _HEX64.fullmatch(t):
        raise InvalidKey("hex key: expected 64 hexadecimal digits (32 bytes)")
    return _checked(bytes.fromhex(t.removeprefix("0x")))


def from_wif(text: str, network: str) -> bytearray:
    """A WIF key of the given Bitcoin network (compressed keys only: our wallets are segwit)."""
    from bip_utils import Base58Decoder
    from bip_utils import Base58ChecksumError

    t = text.strip()
    try:
        raw = Base58Decoder.CheckDecode(t)
    except Base58ChecksumError:
        raise InvalidKey("WIF key: bad checksum") from None
    except ValueError:
        raise InvalidKey("WIF key: not valid base58") from None
    prefix = WIF_PREFIX.get(network)
    if prefix is None:
        raise InvalidKey(f"WIF key: unknown network {echo(network)}")
    if not raw:
        raise InvalidKey("WIF key: empty payload")
    if raw[:1] != prefix:
        raise InvalidKey(f"WIF key: not a {network} key (version byte 0x{raw[0]:02x})")
    if len(raw) == 33:
        raise InvalidKey("WIF key: uncompressed keys are not supported (segwit wallets need "
                         "compressed keys)")
    if len(raw) != 34 or raw[33] != 0x01:
        raise InvalidKey("WIF key: wrong length")
    return _checked(raw[1:33])


def from_mnemonic(mnemonic: str, path: str, passphrase: str = "") -> bytearray:
    """BIP-39 words (English) with a BIP-32 derivation path, e.g. m/84'/0'/0'/0/0."""
    from bip_utils import Bip32Secp256k1, Bip39MnemonicValidator, Bip39SeedGenerator
    from bip_utils import MnemonicChecksumError

    words = " ".join(unicodedata.normalize("NFKD", mnemonic).split())
    if not _PATH.fullmatch(path.strip()):
        raise InvalidKey("derivation path: expected m/ followed by up to 10 indexes, e.g. "
                         "m/84'/0'/0'/0/0")
    if any(int(part.rstrip("'hH")) > MAX_INDEX for part in path.strip().split("/")[1:]):
        raise InvalidKey(f"derivation path: an index is above {MAX_INDEX} (2^31 - 1)")
    n = len(words.split())
    if n not in (12, 15, 18, 21, 24):
        raise InvalidKey(f"mnemonic: {n} words; BIP-39 uses 12, 15, 18, 21 or 24")
    try:
        Bip39MnemonicValidator().Validate(words)
    except MnemonicChecksumError:
        raise InvalidKey("mnemonic: bad checksum (a word is wrong or out of order)") from None
    except ValueError:
        raise InvalidKey("mnemonic: a word is not in the BIP-39 English list") from None
    seed = Bip39SeedGenerator(words).Generate(passphrase)
    key = Bip32Secp256k1.FromSeed(seed).DerivePath(path.strip().replace("h", "'")
                                                   .replace("H", "'"))
    return _checked(key.PrivateKey().Raw().ToBytes())
