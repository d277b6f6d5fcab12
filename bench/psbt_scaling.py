"""Part 3: PSBT sweeps of 1, 10, 100, 1,000 and 5,000 inputs through each stage of signing.

The wallet is a P2WPKH wallet whose key is in the SoftHSM token of a state folder made by
``signerd init``; signerd runs in this process (App, real SQLite). Each input spends an output of
a funding transaction of its own, carried as both non-witness and witness UTXO, with a BIP-32
origin (as Bitcoin Core writes a segwit v0 PSBT); one external output and one change output.

Stages, each timed on its own with signerd's own functions:
  parse      BitcoinAdapter.parse: base64 and the strict BIP-174 parser
  analyze    signer.analyze: UTXO proofs (non-witness UTXO hashed against the outpoint), script
             checks, BIP-143 digests, movement
  digest     the BIP-143 digests alone (SegwitV0Cache + bip143_sighash per input)
  hsm        App.hsm_sign_many of every digest, spread over the HSM sessions (as the sign
             step does; the CPU of its threads is counted)
  add sigs   signer.add_signatures: every signature checked (strict DER, low-S, sighash byte)
             and added in one copy of the inputs (as the sign step does; the keystore has
             verified each signature against its digest)
  finalize   signer.finalize + extract + serialize (signatures verified again)
  sign step  TransferService.sign of the APPROVED transfer: all of the above plus the store

Time per input should stay flat from 100 to 5,000 inputs (linear total); the digest share should
be at most 2x the HSM share.

Run alone: .venv/bin/python bench/psbt_scaling.py [--quick] [--json OUT]
"""
from __future__ import annotations

import base64
import cProfile
import sys
import time
from pathlib import Path
from typing import Any, Callable

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import (build_psbt, in_process_approve, log, open_app, operator_keys,  # noqa: E402
                    part_args, profile_top, signerd_init, signing_deferred, workdir, write_json)

SIZES = (1, 10, 100, 1000, 5000)


class Stage:
    """Wall and CPU seconds of the fastest of some runs. CPU is this process's (all threads),
    which SoftHSM's C_Sign counts in too (it runs in the calling thread); on a machine shared
    with other work, CPU time is the steadier measure, wall time the one a caller sees."""

    def __init__(self) -> None:
        self.wall: dict[str, float] = {}
        self.cpu: dict[str, float] = {}

    def run(self, name: str, fn: Callable[[], Any], reps: int) -> Any:
        wall = cpu = float("inf")
        out = None
        for _ in range(reps):
            c0, t0 = time.process_time(), time.perf_counter()
            out = fn()
            wall = min(wall, time.perf_counter() - t0)
            cpu = min(cpu, time.process_time() - c0)
        self.wall[name], self.cpu[name] = wall, cpu
        return out


def main() -> None:
    args = part_args(__doc__ or "")
    budget = 0.1 if args.quick else 1.0  # seconds of repetitions per cheap stage and size
    results: dict[str, Any] = {"sizes": {}}
    with workdir(args.workdir) as wd:
        cfg = signerd_init(wd / "state-psbt")
        app = open_app(cfg)
        keys = operator_keys(cfg.parent)
        from signerd.core.bitcoin import signer
        from signerd.core.bitcoin.sighash import SIGHASH_ALL, SegwitV0Cache, bip143_sighash
        from signerd.core.chains import BitcoinAdapter
        from signerd.services.wallets import WalletRequest

        w = app.wallets.create("platform", WalletRequest(
            chain="bitcoin", network="regtest", category="seized", case_ref="BENCH-PSBT",
            script_type="p2wpkh"))
        adapter = BitcoinAdapter()
        spec = adapter.spec(w)
        key_id = w.keys[0].key_id
        limits = app.config.limits
        for n in SIZES:
            psbt = build_psbt(spec, n, salt=n)
            payload = base64.b64encode(psbt.serialize())
            reps = max(1, min(50, int(budget * 2000 / n)))
            st = Stage()
            parsed = st.run("parse", lambda: adapter.parse(payload, limits), reps)
            analysis = st.run("analyze", lambda: signer.analyze(parsed, spec), reps)

            def digests() -> list[bytes]:
                cache = SegwitV0Cache(parsed.tx)
                return [bip143_sighash(parsed.tx, i, spec.script_code,
                                       parsed.inputs[i].witness_utxo.value, SIGHASH_ALL, cache)
                        for i in range(n)]

            ds = st.run("digest", digests, reps)
            assert ds == [r.digest for r in analysis.to_sign]
            hsm_reps = 3 if n <= 100 else 1

            def hsm() -> dict[tuple[str, bytes], tuple[int, int]]:
                jobs = [(key_id, r.digest) for r in analysis.to_sign]
                return dict(zip(jobs, app.hsm_sign_many(jobs)))

            sigs = st.run("hsm", hsm, hsm_reps)

            def add_sigs() -> Any:
                items = []
                for r in analysis.to_sign:
                    rr, ss = sigs[(key_id, r.digest)]
                    items.append((r.input_index, r.pubkey,
                                  signer.der_encode(rr, ss) + bytes([SIGHASH_ALL]), None))
                return signer.add_signatures(parsed, items)

            signed_psbt = st.run("add_signatures", add_sigs, max(1, reps // 2))

            def finalize() -> bytes:
                final, raw = signer.finalize(signed_psbt, spec)
                assert raw is not None
                final.to_base64()
                return raw

            st.run("finalize", finalize, max(1, reps // 2))

            # the whole sign step, in the transfer service with the store
            t = app.transfers.submit("platform", w.id, payload)
            with signing_deferred(app):
                in_process_approve(app, keys, t.id, "inv1")
                in_process_approve(app, keys, t.id, "cust1")
            st.run("sign_step", lambda: app.transfers.sign(t.id), 1)
            if n == 1000 and not args.quick:  # the same once more under cProfile
                t2 = app.transfers.submit("platform", w.id, base64.b64encode(
                    build_psbt(spec, n, salt=n + 1).serialize()))
                with signing_deferred(app):
                    in_process_approve(app, keys, t2.id, "inv1")
                    in_process_approve(app, keys, t2.id, "cust1")
                prof = cProfile.Profile()
                prof.enable()
                app.transfers.sign(t2.id)
                prof.disable()
                results["profile_sign_step_1000_inputs"] = {
                    "note": "under cProfile (slower than the timed run)",
                    "top_tottime": profile_top(prof, 16, "tottime"),
                    "top_cumulative": profile_top(prof, 22, "cumulative")}
            view = app.transfers.get(t.id)
            ok = view.row["state"] == "SIGNED" and bool(view.row["raw_tx"])

            def us(t: float) -> float:
                return round(t / n * 1e6, 1)

            row: dict[str, Any] = {
                "inputs": n, "psbt_bytes": len(payload) * 3 // 4, "reps": reps,
                "wall_seconds": {k: round(v, 6) for k, v in st.wall.items()},
                "cpu_us_per_input": {k: us(v) for k, v in st.cpu.items()},
                "wall_us_per_input": {k: us(v) for k, v in st.wall.items()},
                "digest_vs_hsm_cpu": round(st.cpu["digest"] / st.cpu["hsm"], 4),
                "analyze_vs_hsm_cpu": round(st.cpu["analyze"] / st.cpu["hsm"], 4),
                "sign_step_signatures_per_second": round(n / st.wall["sign_step"], 1),
                "signed": ok,
            }
            results["sizes"][n] = row
            log(f"{n:>5} inputs, CPU us/input: " + ", ".join(
                f"{k} {v}" for k, v in row["cpu_us_per_input"].items()))
        app.stop()
    base = results["sizes"][100]["cpu_us_per_input"]
    results["cpu_per_input_vs_100_inputs"] = {
        n: {k: round(v / base[k], 2) for k, v in results["sizes"][n]["cpu_us_per_input"].items()}
        for n in (1000, 5000)}
    write_json(args.json, results)


if __name__ == "__main__":
    main()
