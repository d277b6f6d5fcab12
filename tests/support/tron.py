"""Tron, independently of signerd: transactions built with tronpy's builder and the protobuf
messages tronpy ships (``tronpy.proto.tron_pb2``, generated from java-tron's definitions),
decoded with the same, and signatures checked with tronpy's ``keys`` module. Nothing here uses
``signerd.core.tron``."""
from __future__ import annotations

import hashlib
import json
import time
from dataclasses import dataclass
from typing import Any

from google.protobuf import any_pb2
from tronpy import Tron
from tronpy.keys import PrivateKey, Signature, to_base58check_address, to_hex_address
from tronpy.proto import tron_pb2

from tests.support.daemon import Daemon
from tests.support.rpc import pb

NILE_CHAIN_ID = 3448148188
TYPE_URL = "type.googleapis.com/protocol."
TRANSFER_SELECTOR = bytes.fromhex("a9059cbb")
REF_BLOCK_ID = "0000000003e8f6a0" + "1122334455667788" + "99aabbccddeeff00"
# A recipient and a contract made from keys of our own (any valid Tron addresses do).
RECIPIENT = PrivateKey(b"\x07" * 32).public_key.to_base58check_address()
CONTRACT = PrivateKey(b"\x09" * 32).public_key.to_base58check_address()


def raw_address(text: str) -> bytes:
    return bytes.fromhex(to_hex_address(text))


def trc20_transfer_data(to: str, amount: int) -> bytes:
    return (TRANSFER_SELECTOR + b"\x00" * 12 + raw_address(to)[1:]
            + amount.to_bytes(32, "big"))


def now_ms() -> int:
    return int(time.time() * 1000)


def builder_raw_data(owner: str, to: str, amount: int, *, expiration_ms: int = 10 * 60_000,
                     memo: str = "", fee_limit: int = 0) -> dict[str, Any]:
    """A TRX transfer's raw_data as tronpy's builder makes it offline (its JSON form)."""
    b = Tron(network="nile").trx.transfer(owner, to, amount).expiration(expiration_ms)
    if memo:
        b = b.memo(memo)
    if fee_limit:
        b = b.fee_limit(fee_limit)
    return b.build(offline=True, ref_block_id=REF_BLOCK_ID).to_json()["raw_data"]


def raw_message(raw_data: dict[str, Any]) -> tron_pb2.Transaction.raw:
    """``Transaction.raw`` from the JSON form (``visible`` addresses or hex), every field kept
    (tronpy's own conversion drops fee_limit and data)."""
    c = raw_data["contract"][0]
    v = c["parameter"]["value"]
    if c["type"] == "TransferContract":
        param = tron_pb2.TransferContract(owner_address=raw_address(v["owner_address"]),
                                          to_address=raw_address(v["to_address"]),
                                          amount=v["amount"])
    else:
        param = tron_pb2.TriggerSmartContract(
            owner_address=raw_address(v["owner_address"]),
            contract_address=raw_address(v["contract_address"]),
            data=bytes.fromhex(v["data"]), call_value=v.get("call_value", 0),
            call_token_value=v.get("call_token_value", 0), token_id=v.get("token_id", 0))
    contract = tron_pb2.Transaction.Contract(
        type=getattr(tron_pb2.Transaction.Contract.ContractType, c["type"]),
        parameter=any_pb2.Any(type_url=c["parameter"]["type_url"],
                              value=param.SerializeToString()))
    if c.get("Permission_id"):
        contract.Permission_id = c["Permission_id"]
    msg = tron_pb2.Transaction.raw(
        ref_block_bytes=bytes.fromhex(raw_data["ref_block_bytes"]),
        ref_block_hash=bytes.fromhex(raw_data["ref_block_hash"]),
        expiration=raw_data["expiration"], timestamp=raw_data.get("timestamp", 0),
        fee_limit=raw_data.get("fee_limit", 0), contract=[contract])
    if raw_data.get("data"):
        msg.data = bytes.fromhex(raw_data["data"])
    return msg


def trx_raw(owner: str, to: str = RECIPIENT, amount: int = 1_500_000, **kw: Any) -> bytes:
    return raw_message(builder_raw_data(owner, to, amount, **kw)).SerializeToString()


def trc20_raw(owner: str, to: str = RECIPIENT, amount: int = 25_000_000, *,
              contract: str = CONTRACT, fee_limit: int = 30_000_000,
              expiration_ms: int | None = None, call_value: int = 0,
              data: bytes | None = None) -> bytes:
    """A TRC-20 transfer (TriggerSmartContract) built with the protobuf messages."""
    now = now_ms()
    raw_data = {
        "contract": [{"type": "TriggerSmartContract", "parameter": {
            "type_url": TYPE_URL + "TriggerSmartContract",
            "value": {"owner_address": owner, "contract_address": contract,
                      "call_value": call_value,
                      "data": (trc20_transfer_data(to, amount) if data is None else data).hex()}}}],
        "ref_block_bytes": REF_BLOCK_ID[12:16], "ref_block_hash": REF_BLOCK_ID[16:32],
        "expiration": expiration_ms if expiration_ms is not None else now + 10 * 60_000,
        "timestamp": now, "fee_limit": fee_limit}
    return raw_message(raw_data).SerializeToString()


def payload(raw: bytes, *, with_txid: bool = True, **extra: Any) -> bytes:
    doc: dict[str, Any] = {"raw_data_hex": raw.hex(), **extra}
    if with_txid:
        doc["txID"] = hashlib.sha256(raw).hexdigest()
    return json.dumps(doc).encode()


def independent_decode(raw: bytes) -> dict[str, Any]:
    """The fields of ``raw`` as the protobuf library reads them with tronpy's messages."""
    msg = tron_pb2.Transaction.raw.FromString(raw)
    c = msg.contract[0]
    name = tron_pb2.Transaction.Contract.ContractType.Name(c.type)
    inner: Any = (tron_pb2.TransferContract if name == "TransferContract"
                  else tron_pb2.TriggerSmartContract).FromString(c.parameter.value)
    out = {"ref_block_bytes": msg.ref_block_bytes, "ref_block_hash": msg.ref_block_hash,
           "expiration": msg.expiration, "timestamp": msg.timestamp, "fee_limit": msg.fee_limit,
           "data": msg.data, "type": name, "type_url": c.parameter.type_url,
           "owner": to_base58check_address(inner.owner_address)}
    if name == "TransferContract":
        out.update(to=to_base58check_address(inner.to_address), amount=inner.amount)
    else:
        out.update(contract=to_base58check_address(inner.contract_address), call_data=inner.data,
                   call_value=inner.call_value)
    return out


@dataclass
class Checked:
    txid: str
    signer: str
    fields: dict[str, Any]


def check_signed(signed_hex: str) -> Checked:
    """A signed ``Transaction`` (hex) read with tronpy's messages: its id recomputed from the
    raw_data, the signer's address recovered from the signature with tronpy's keys, and the
    signature verified by that key."""
    tx = tron_pb2.Transaction.FromString(bytes.fromhex(signed_hex))
    raw = tx.raw_data.SerializeToString()
    assert tron_pb2.Transaction(raw_data=tx.raw_data, signature=tx.signature
                                ).SerializeToString() == bytes.fromhex(signed_hex)
    assert len(tx.signature) == 1 and len(tx.signature[0]) == 65
    txid = hashlib.sha256(raw).digest()
    sig = Signature(bytes(tx.signature[0]))
    assert tx.signature[0][64] in (0, 1)
    pub = sig.recover_public_key_from_msg_hash(txid)
    assert sig.verify_msg_hash(txid, pub)
    assert sig.s <= 0x7FFFFFFFFFFFFFFFFFFFFFFFFFFFFFFF5D576E7357A4501DDFE92F46681B20A0  # low S
    return Checked(txid.hex(), pub.to_base58check_address(), independent_decode(raw))


def tron_wallet(d: Daemon, network: str = "nile") -> pb.Wallet:
    return d.custody().CreateWallet(pb.CreateWalletRequest(
        chain=pb.TRON, network=network, category=pb.SEIZED, case_ref="CASE-TRON"))


def submit(d: Daemon, wallet_id: str, body: bytes) -> pb.Transfer:
    return d.custody().SubmitTransfer(pb.SubmitTransferRequest(
        wallet_id=wallet_id, tron=pb.TronTransaction(json=body.decode())))
