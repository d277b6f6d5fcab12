"""Part 5: peer tools doing the same step on this machine, in the same run.

  eth-account    Account.sign_transaction of one EIP-1559 transaction with a software key,
                 against signerd's own path for the same transaction: JSON decode and checks
                 (Eip1559Tx.from_fields), RLP + keccak digest, ECDSA, y-parity by recovery,
                 signed RLP (signing.assemble_signed). signerd is timed twice: with the same
                 software key through coincurve (like for like; the raw transactions must be
                 byte-identical, both being RFC 6979 signatures), and with its HSM key through
                 Keystore.sign_digest (what it really does).
  python-bitcointx  the BIP-143 digests of every input of a 10-, 100- and 1,000-input P2WPKH
                 transaction (SignatureHash with SIGVERSION_WITNESS_V0), against signerd's
                 bip143_sighash with its per-transaction midstate cache; digests must be equal.

Times are per operation, CPU time of this process (steady on a shared machine) and wall time.

Run alone: .venv/bin/python bench/baselines.py [--quick] [--json OUT]
"""
from __future__ import annotations

import json
import secrets
import sys
import time
from pathlib import Path
from typing import Any, Callable

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import (build_psbt, eth_fields, log, part_args, signerd_init,  # noqa: E402
                    token_of, workdir, write_json)


def per_call(fn: Callable[[], Any], seconds: float) -> dict[str, float]:
    fn()  # warm
    n = 0
    c0, t0 = time.process_time(), time.perf_counter()
    while time.perf_counter() - t0 < seconds:
        fn()
        n += 1
    wall, cpu = time.perf_counter() - t0, time.process_time() - c0
    return {"calls": n, "cpu_us": round(cpu / n * 1e6, 2), "wall_us": round(wall / n * 1e6, 2)}


def eth_baseline(seconds: float, keystore: Any) -> dict[str, Any]:
    import coincurve
    from eth_account import Account

    from signerd.core.chains import EthereumAdapter
    from signerd.adapters.config import Limits
    from signerd.core.ethereum.eip1559 import Eip1559Tx
    from signerd.core.ethereum.signing import assemble_signed

    priv = secrets.token_bytes(32)
    sk = coincurve.PrivateKey(priv)
    pub = sk.public_key.format(compressed=True)
    fields = eth_fields(7, data="0x", value=123456789)
    fields["to"] = "0x000000000000000000000000000000000000dEaD"
    payload = json.dumps(fields).encode()

    def peer() -> bytes:
        return bytes(Account.sign_transaction(fields, priv).raw_transaction)

    def ours_software() -> bytes:
        tx = Eip1559Tx.from_fields(json.loads(payload))
        rec = sk.sign_recoverable(tx.signing_hash(), hasher=None)
        r, s = int.from_bytes(rec[:32], "big"), int.from_bytes(rec[32:64], "big")
        return assemble_signed(tx, r, s, pub)[0]

    same = peer() == ours_software()
    info = keystore.generate_key("bench-baseline-eth")
    adapter = EthereumAdapter()
    limits = Limits()

    class _W:  # the two wallet attributes the adapter reads
        id = "w_bench"
        chain_ids = (1,)
        address = ""
        keys = (info,)

    def ours_hsm() -> bytes:
        decoded = adapter.decode(_W, payload, limits)  # type: ignore[arg-type]
        sigs = {(k, d): keystore.sign_digest(k, d) for k, d in
                adapter.digests_to_sign(_W, decoded)}  # type: ignore[arg-type]
        return bytes.fromhex(adapter.assemble(_W, decoded, sigs).raw_tx)  # type: ignore[arg-type]

    raw = ours_hsm()
    recovered = Account.recover_transaction(raw)
    from signerd.core.ethereum.address import address_from_pubkey

    hsm_ok = recovered.lower() == address_from_pubkey(info.public_key).lower()
    p = per_call(peer, seconds)
    o = per_call(ours_software, seconds)
    h = per_call(ours_hsm, seconds)
    return {
        "eth_account_sign_transaction": p, "signerd_software_key": o, "signerd_hsm_key": h,
        "identical_raw_tx": same, "hsm_tx_recovers_to_wallet": hsm_ok,
        "ratio_cpu_signerd_software_vs_eth_account": round(o["cpu_us"] / p["cpu_us"], 3),
        "ratio_cpu_signerd_hsm_vs_eth_account": round(h["cpu_us"] / p["cpu_us"], 3),
        "ratio_wall_signerd_hsm_vs_eth_account": round(h["wall_us"] / p["wall_us"], 3),
    }


def btc_baseline(seconds: float) -> dict[int, Any]:
    import coincurve
    from bitcointx.core import CTransaction
    from bitcointx.core.script import (SIGHASH_ALL, SIGVERSION_WITNESS_V0, CScript,
                                       SignatureHash)

    from signerd.core.bitcoin.sighash import SegwitV0Cache, bip143_sighash
    from signerd.core.bitcoin.signer import WalletSpec
    from signerd.core.model import BitcoinNetwork, ScriptType

    pub = coincurve.PrivateKey(secrets.token_bytes(32)).public_key.format(compressed=True)
    spec = WalletSpec(ScriptType.P2WPKH, BitcoinNetwork.REGTEST, 1, (pub,), (pub,))
    out: dict[int, Any] = {}
    for n in (10, 100, 1000):
        psbt = build_psbt(spec, n)
        tx = psbt.tx
        amounts = [i.witness_utxo.value for i in psbt.inputs]
        ctx = CTransaction.deserialize(tx.serialize())
        code = CScript(spec.script_code)

        # python-bitcointx hashes all prevouts, sequences and outputs again for every input
        # (quadratic in inputs), so at most 50 inputs, spread over the transaction, are timed
        # for it and the cost per input is reported
        some = sorted({(k * n) // min(n, 50) for k in range(min(n, 50))})

        def peer() -> list[bytes]:
            return [SignatureHash(code, ctx, i, SIGHASH_ALL, amount=amounts[i],
                                  sigversion=SIGVERSION_WITNESS_V0) for i in some]

        def ours() -> list[bytes]:
            cache = SegwitV0Cache(tx)
            return [bip143_sighash(tx, i, spec.script_code, amounts[i], 1, cache)
                    for i in range(n)]

        mine = ours()
        same = peer() == [mine[i] for i in some]
        p = per_call(peer, seconds / 3)
        o = per_call(ours, seconds / 3)
        peer_us, our_us = p["cpu_us"] / len(some), o["cpu_us"] / n
        out[n] = {"inputs": n, "identical_digests": same, "bitcointx_inputs_timed": len(some),
                  "bitcointx_us_per_input": round(peer_us, 2),
                  "signerd_us_per_input": round(our_us, 2),
                  "ratio_cpu_signerd_vs_bitcointx": round(our_us / peer_us, 5)}
        log(f"BIP-143 {n} inputs: bitcointx {out[n]['bitcointx_us_per_input']} us/input, "
            f"signerd {out[n]['signerd_us_per_input']} us/input")
    return out


def main() -> None:
    args = part_args(__doc__ or "")
    seconds = 0.5 if args.quick else 3.0
    results: dict[str, Any] = {}
    with workdir(args.workdir) as wd:
        cfg = signerd_init(wd / "state-baselines")
        tok = token_of(cfg)
        from signerd.adapters.hsm import Keystore

        ks = Keystore(tok.module, token_label=tok.label, pin_file=cfg.parent / "hsm" / "pin",
                      env={"SOFTHSM2_CONF": str(tok.conf)})
        ks.open()
        results["ethereum"] = eth_baseline(seconds, ks)
        e = results["ethereum"]
        log(f"EIP-1559: eth-account {e['eth_account_sign_transaction']['cpu_us']} us, signerd "
            f"software {e['signerd_software_key']['cpu_us']} us, signerd HSM "
            f"{e['signerd_hsm_key']['cpu_us']} us (identical raw tx: {e['identical_raw_tx']})")
        ks.close()
        results["bip143"] = btc_baseline(seconds)
    write_json(args.json, results)


if __name__ == "__main__":
    main()
