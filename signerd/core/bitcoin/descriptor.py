"""Output descriptors for signerd's wallet types, with the BIP-380 checksum.

Supported forms (nothing else is accepted):

* ``wpkh(KEY)``, ``sh(wpkh(KEY))``, ``wsh(sortedmulti(M,KEY,...,KEY))`` (1 <= M <= N <= 16),
  optionally followed by ``#`` and the 8-character checksum, which is then verified.
* ``KEY`` is an optional origin ``[fingerprint/path]`` (kept in the string, informational only)
  followed by either a 33-byte compressed public key in hex, or an ``xpub``/``tpub`` extended
  public key with an optional fixed path of non-hardened steps (``xpub.../1/7``). The key used is
  the extended key's child at that path (the key itself when there is no path).
* Bounded: a key expression has at most ``MAX_KEY_CHARS`` characters and each of its paths (the
  origin's, the one after an extended key) at most ``MAX_PATH_STEPS`` steps, so a key costs at
  most that many BIP-32 derivations; ``sortedmulti`` takes at most 16 keys, counted before any
  is parsed.
* Not supported: ranged keys (``/*``), multipath (``<0;1>``), hardened steps after an extended
  key, private keys, uncompressed keys, SLIP-132 versions (ypub, zpub, Vpub...), and every other
  script expression.
"""
from __future__ import annotations

import re
from dataclasses import dataclass

from bip_utils import (
    Base58ChecksumError,
    Base58Decoder,
    Bip32KeyError,
    Bip32KeyNetVersions,
    Bip32Slip10Secp256k1,
)

from signerd.core.bitcoin.address import script_to_address
from signerd.core.bitcoin.psbt import HARDENED, KeyOrigin
from signerd.core.bitcoin.script import (
    p2sh_p2wpkh_scripts,
    p2wpkh_script,
    p2wsh_script,
    sort_pubkeys,
    MAX_MULTISIG_KEYS,
    sortedmulti_script,
    validate_compressed_pubkey,
)
from signerd.core.errors import InvalidArgument, InvalidKey, echo
from signerd.core.model import BitcoinNetwork, ScriptType

_INPUT_CHARSET = ("0123456789()[],'/*abcdefgh@:$%{}IJKLMNOPQRSTUVWXYZ&+-.;<=>?!^_|~"
                  "ijklmnopqrstuvwxyzABCDEFGH`#\"\\ ")
_CHECKSUM_CHARSET = "qpzry9x8gf2tvdw0s3jn54khce6mua7l"
_GENERATOR = (0xF5DEE51989, 0xA9FDCA3312, 0x1BAB10E32D, 0x3706B1677A, 0x644D626FFD)

MAX_PATH_STEPS = 16  # steps of a key origin's path, and of the path after an extended key
MAX_KEY_CHARS = 512  # one key expression: an origin and an xpub with paths of 16 steps fit

_XPUB_VERSION = bytes.fromhex("0488b21e")
_TPUB_VERSION = bytes.fromhex("043587cf")
_KEY_NET_VERSIONS = {
    _XPUB_VERSION: Bip32KeyNetVersions(_XPUB_VERSION, bytes.fromhex("0488ade4")),
    _TPUB_VERSION: Bip32KeyNetVersions(_TPUB_VERSION, bytes.fromhex("04358394")),
}


class InvalidDescriptor(InvalidArgument):
    reason = "INVALID_DESCRIPTOR"


def _polymod(c: int, value: int) -> int:
    top = c >> 35
    c = ((c & 0x7FFFFFFFF) << 5) ^ value
    for i, gen in enumerate(_GENERATOR):
        if (top >> i) & 1:
            c ^= gen
    return c


def descriptor_checksum(text: str) -> str:
    """The BIP-380 checksum (8 characters) of a descriptor without its ``#`` suffix."""
    c = 1
    group = 0
    count = 0
    for ch in text:
        pos = _INPUT_CHARSET.find(ch)
        if pos < 0:
            raise InvalidDescriptor(f"descriptor contains the invalid character {ch!r}")
        c = _polymod(c, pos & 31)
        group = group * 3 + (pos >> 5)
        count += 1
        if count == 3:
            c = _polymod(c, group)
            group = count = 0
    if count:
        c = _polymod(c, group)
    for _ in range(8):
        c = _polymod(c, 0)
    c ^= 1
    return "".join(_CHECKSUM_CHARSET[(c >> (5 * (7 - j))) & 31] for j in range(8))


def add_checksum(text: str) -> str:
    return f"{text}#{descriptor_checksum(text)}"


@dataclass(frozen=True)
class DescriptorKey:
    """One key expression, with the compressed public key it stands for."""

    text: str
    pubkey: bytes
    origin: KeyOrigin | None = None
    extended_key: str | None = None
    path: tuple[int, ...] = ()

    @property
    def is_testnet_key(self) -> bool | None:
        """True for a tpub, False for an xpub, None for a plain public key."""
        if self.extended_key is None:
            return None
        return self.extended_key.startswith("tpub")


@dataclass(frozen=True)
class Descriptor:
    script_type: ScriptType
    threshold: int
    keys: tuple[DescriptorKey, ...]

    @property
    def pubkeys(self) -> tuple[bytes, ...]:
        return tuple(k.pubkey for k in self.keys)

    def script_pubkey(self) -> bytes:
        if self.script_type is ScriptType.P2WPKH:
            return p2wpkh_script(self.keys[0].pubkey)
        if self.script_type is ScriptType.P2SH_P2WPKH:
            return p2sh_p2wpkh_scripts(self.keys[0].pubkey)[0]
        return p2wsh_script(self.witness_script())

    def witness_script(self) -> bytes:
        if self.script_type is not ScriptType.P2WSH_SORTEDMULTI:
            raise InvalidDescriptor(f"{self.script_type.value} has no witness script")
        return sortedmulti_script(self.threshold, self.pubkeys)

    def address(self, network: BitcoinNetwork | str) -> str:
        self.check_network(network)
        return script_to_address(self.script_pubkey(), network)

    def check_network(self, network: BitcoinNetwork | str) -> None:
        """Refuse an xpub on a test network or a tpub on mainnet."""
        mainnet = BitcoinNetwork(network) is BitcoinNetwork.MAINNET
        for key in self.keys:
            if key.is_testnet_key is not None and key.is_testnet_key == mainnet:
                raise InvalidDescriptor(
                    f"extended key {key.extended_key[:8]}... is not for {BitcoinNetwork(network).value}"  # type: ignore[index]
                )

    def to_string(self, *, checksum: bool = True) -> str:
        keys = ",".join(k.text for k in self.keys)
        if self.script_type is ScriptType.P2WPKH:
            body = f"wpkh({keys})"
        elif self.script_type is ScriptType.P2SH_P2WPKH:
            body = f"sh(wpkh({keys}))"
        else:
            body = f"wsh(sortedmulti({self.threshold},{keys}))"
        return add_checksum(body) if checksum else body

    def __str__(self) -> str:
        return self.to_string()


def make_descriptor(script_type: ScriptType, threshold: int, pubkeys: list[bytes] | tuple[bytes, ...]
                    ) -> str:
    """The canonical descriptor (hex keys, BIP-67 order for multisig, with checksum)."""
    keys = sort_pubkeys(list(pubkeys))
    for i, key in enumerate(keys):
        validate_compressed_pubkey(key, f"key {i}")
    if script_type in (ScriptType.P2WPKH, ScriptType.P2SH_P2WPKH):
        if len(keys) != 1 or threshold != 1:
            raise InvalidDescriptor(f"{script_type.value} takes exactly one key")
        body = (f"wpkh({keys[0].hex()})" if script_type is ScriptType.P2WPKH
                else f"sh(wpkh({keys[0].hex()}))")
    elif script_type is ScriptType.P2WSH_SORTEDMULTI:
        sortedmulti_script(threshold, keys)  # validates m, n and distinct keys
        body = f"wsh(sortedmulti({threshold},{','.join(k.hex() for k in keys)}))"
    else:
        raise InvalidDescriptor(f"script type {script_type.value} has no bitcoin descriptor")
    return add_checksum(body)


_ORIGIN_RE = re.compile(r"\[([0-9a-fA-F]{8})((?:/[0-9]+['hH]?)*)\]")
_NUM_RE = re.compile(r"[0-9]+")


def _parse_index(text: str, what: str, *, allow_hardened: bool) -> int:
    hardened = text[-1:] in ("'", "h", "H")
    digits = text[:-1] if hardened else text
    if not _NUM_RE.fullmatch(digits) or (len(digits) > 1 and digits[0] == "0"):
        raise InvalidDescriptor(f"{what}: path step {echo(text)} is not a number")
    value = int(digits)
    if value >= HARDENED:
        raise InvalidDescriptor(f"{what}: path step {echo(text)} is out of range")
    if hardened:
        if not allow_hardened:
            raise InvalidDescriptor(f"{what}: hardened step {echo(text)} after an extended "
                                    "public key cannot be derived")
        value += HARDENED
    return value


def parse_key(text: str) -> DescriptorKey:
    """Parse one key expression (see the module docstring for what is supported)."""
    if len(text) > MAX_KEY_CHARS:
        raise InvalidDescriptor(f"key expression {echo(text)} is longer than {MAX_KEY_CHARS} "
                                "characters")
    origin = None
    rest = text
    if rest.startswith("["):
        m = _ORIGIN_RE.match(rest)
        if m is None:
            raise InvalidDescriptor(f"key origin in {echo(text)} is malformed")
        steps = [s for s in m.group(2).split("/") if s]
        if len(steps) > MAX_PATH_STEPS:
            raise InvalidDescriptor(f"key origin: a path of {len(steps)} steps, more than "
                                    f"{MAX_PATH_STEPS}")
        origin = KeyOrigin(bytes.fromhex(m.group(1)),
                           tuple(_parse_index(s, "key origin", allow_hardened=True) for s in steps))
        rest = rest[m.end():]
    if not rest:
        raise InvalidDescriptor(f"key expression {echo(text)} has no key")
    if "*" in rest or "<" in rest:
        raise InvalidDescriptor(f"ranged or multipath key {echo(text)} is not supported")
    if re.fullmatch(r"[0-9a-fA-F]+", rest):
        if len(rest) != 66:
            raise InvalidDescriptor(f"public key {echo(rest)} must be 33 bytes (66 hex "
                                    "characters), compressed")
        try:
            pubkey = validate_compressed_pubkey(bytes.fromhex(rest), f"public key {rest}")
        except InvalidKey as exc:
            raise InvalidDescriptor(str(exc)) from None
        return DescriptorKey(text, pubkey, origin)
    xpub, *steps = rest.split("/")
    if len(steps) > MAX_PATH_STEPS:
        raise InvalidDescriptor(f"key {xpub[:8]}...: a path of {len(steps)} steps, more than "
                                f"{MAX_PATH_STEPS}")
    path = tuple(_parse_index(s, f"key {xpub[:8]}...", allow_hardened=False) for s in steps)
    return DescriptorKey(text, _derive_xpub(xpub, path), origin, xpub, path)


def xpub_child_pubkey(xpub: str, path: tuple[int, ...] = ()) -> bytes:
    """The compressed public key of an xpub/tpub's child at a non-hardened ``path``."""
    for index in path:
        if not 0 <= index < HARDENED:
            raise InvalidDescriptor(f"path step {index} is not a non-hardened index")
    return _derive_xpub(xpub, tuple(path))


def _derive_xpub(xpub: str, path: tuple[int, ...]) -> bytes:
    try:
        raw = Base58Decoder.CheckDecode(xpub)
    except (ValueError, Base58ChecksumError) as exc:
        raise InvalidDescriptor(f"extended key {xpub[:8]}... is not valid base58check: {exc}") from None
    if len(raw) != 78:
        raise InvalidDescriptor(f"extended key {xpub[:8]}... is {len(raw)} bytes, expected 78")
    versions = _KEY_NET_VERSIONS.get(raw[:4])
    if versions is None:
        raise InvalidDescriptor(f"extended key {xpub[:8]}... is not an xpub or tpub "
                                f"(version {raw[:4].hex()})")
    try:
        node = Bip32Slip10Secp256k1.FromExtendedKey(xpub, versions)
        if not node.IsPublicOnly():
            raise InvalidDescriptor("extended private keys are not accepted")
        for index in path:
            node = node.ChildKey(index)
    except (Bip32KeyError, ValueError) as exc:
        raise InvalidDescriptor(f"extended key {xpub[:8]}... is invalid: {exc}") from None
    return bytes(node.PublicKey().RawCompressed().ToBytes())


def _split_args(text: str) -> list[str]:
    """Split on top-level commas (none of our supported forms nests inside a key)."""
    return text.split(",")


def parse_descriptor(text: str, *, require_checksum: bool = False) -> Descriptor:
    """Parse one of the supported descriptors; a ``#checksum`` suffix, if present, must match."""
    if "#" in text:
        body, _, checksum = text.partition("#")
        if len(checksum) != 8:
            raise InvalidDescriptor(f"descriptor checksum {echo(checksum)} must be 8 characters")
        expected = descriptor_checksum(body)
        if checksum != expected:
            raise InvalidDescriptor(f"descriptor checksum {echo(checksum)} does not match "
                                    f"(expected {expected})")
    else:
        if require_checksum:
            raise InvalidDescriptor("descriptor has no checksum")
        body = text
        descriptor_checksum(body)  # rejects characters outside the descriptor charset

    if body.startswith("wpkh(") and body.endswith(")"):
        return Descriptor(ScriptType.P2WPKH, 1, (parse_key(body[5:-1]),))
    if body.startswith("sh(wpkh(") and body.endswith("))"):
        return Descriptor(ScriptType.P2SH_P2WPKH, 1, (parse_key(body[8:-2]),))
    if body.startswith("wsh(sortedmulti(") and body.endswith("))"):
        args = _split_args(body[16:-2])
        if len(args) < 2:
            raise InvalidDescriptor("sortedmulti needs a threshold and at least one key")
        if len(args) - 1 > MAX_MULTISIG_KEYS:
            raise InvalidDescriptor(f"sortedmulti: {len(args) - 1} keys, more than "
                                    f"{MAX_MULTISIG_KEYS}")
        if not _NUM_RE.fullmatch(args[0]) or (len(args[0]) > 1 and args[0][0] == "0"):
            raise InvalidDescriptor(f"sortedmulti threshold {echo(args[0])} is not a number")
        threshold = int(args[0])
        keys = tuple(parse_key(a) for a in args[1:])
        try:
            sortedmulti_script(threshold, [k.pubkey for k in keys])
        except InvalidKey as exc:
            raise InvalidDescriptor(f"sortedmulti: {exc}") from None
        return Descriptor(ScriptType.P2WSH_SORTEDMULTI, threshold, keys)
    raise InvalidDescriptor("unsupported descriptor: only wpkh(KEY), sh(wpkh(KEY)) and "
                            "wsh(sortedmulti(M,KEY,...)) are accepted")
