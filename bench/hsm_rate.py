"""Part 1a: the raw PKCS#11 ECDSA rate of a SoftHSM token against signerd's sign path on the
same token, in the same process and the same run.

Layers, from the bottom:
  raw        python-pkcs11 alone: one session per thread, module initialised with OS locking
             (the same C_Finalize/C_Initialize(CKF_OS_LOCKING_OK) signerd does), CKM_ECDSA
  keystore   signerd.adapters.hsm.Keystore.sign_digest from N threads (session pool, shared lock,
             low-S, verification against the cached public key)
  hsm_sign   App.hsm_sign (keystore + the Prometheus histogram)
  sign step  TransferService.sign on APPROVED one-digest Ethereum transfers from N threads
             (1, 2, 4, 16): store read, quorum re-check, decode, HSM, assemble, store commit,
             audit event; concurrent callers share group-committed batches
             (signerd.services.sign_step)
  backlog    the same sign step draining a backlog of APPROVED transfers the way the monitor
             does after an HSM outage (SignStep.sign_many: batches of up to 256 transfers)
  psbt step  TransferService.sign of one many-input PSBT: signatures per second of one sign step

The raw rate is measured once with the module initialised by this file alone (before signerd is
loaded), then in rounds alternating with the keystore and App.hsm_sign layers (raw sessions of
its own, the wallet's own key), so that load from elsewhere on a shared machine falls on every
layer alike. "raw best" is the highest raw rate seen at any thread count; ratios compare best
with best.

Run alone: .venv/bin/python bench/hsm_rate.py [--quick] [--json OUT]
"""
from __future__ import annotations

import base64
import cProfile
import queue
import secrets
import sys
import threading
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import (NPROC, RawToken, build_psbt, eth_payload, in_process_approve,  # noqa: E402
                    log, open_app, operator_keys, part_args, profile_summary, profile_top,
                    profiled_worker, rate, raw_rate, run_threads, signerd_init, signing_deferred,
                    token_of, transfer_state, workdir, write_json)


def thread_levels() -> list[int]:
    return sorted({1, NPROC, 2 * NPROC})


def caller_levels() -> list[int]:
    return sorted({1, NPROC, 2 * NPROC, 16})


def measure_raw(tok: RawToken, key_id: bytes, seconds: float) -> dict[int, dict[str, Any]]:
    out = {}
    for n in thread_levels():
        out[n] = raw_rate(tok, key_id, n, seconds)
        log(f"raw {n} thread(s): {out[n]['per_second']:.0f}/s")
    return out


def layer_rate(fn: Any, threads: int, seconds: float) -> dict[str, Any]:
    digests = [secrets.token_bytes(32) for _ in range(256)]

    def worker(stop: threading.Event) -> int:
        n = 0
        while not stop.is_set():
            fn(digests[n & 255])
            n += 1
        return n

    total, elapsed, per = run_threads([worker] * threads, seconds)
    return {"threads": threads, "signs": total, "seconds": round(elapsed, 2),
            "per_second": rate(total, elapsed), "per_thread": per}


def summarise(runs: list[dict[str, Any]]) -> dict[str, Any]:
    rates = sorted(r["per_second"] for r in runs)
    return {"threads": runs[0]["threads"], "best": rates[-1],
            "median": rates[len(rates) // 2], "rounds": rates}


def prepare_eth(app: Any, keys: dict[str, Any], wallet_id: str, count: int, start_nonce: int,
                threads: int = 2) -> list[str]:
    """``count`` Ethereum transfers submitted and approved by a quorum, left APPROVED."""
    ids: list[str] = []
    lock = threading.Lock()
    nonces = iter(range(start_nonce, start_nonce + count))

    def work() -> None:
        while True:
            with lock:
                nonce = next(nonces, None)
            if nonce is None:
                return
            t = app.transfers.submit("platform", wallet_id, eth_payload(nonce))
            in_process_approve(app, keys, t.id, "inv1")
            in_process_approve(app, keys, t.id, "cust1")
            with lock:
                ids.append(t.id)

    with signing_deferred(app):
        ts = [threading.Thread(target=work) for _ in range(threads)]
        for t in ts:
            t.start()
        for t in ts:
            t.join()
    return ids


def sign_step_rate(app: Any, ids: list[str], threads: int, seconds: float) -> dict[str, Any]:
    q: queue.SimpleQueue[str] = queue.SimpleQueue()
    for i in ids:
        q.put(i)

    def worker(stop: threading.Event) -> int:
        n = 0
        while not stop.is_set():
            try:
                tid = q.get_nowait()
            except queue.Empty:
                return n
            app.transfers.sign(tid)
            n += 1
        return n

    c0 = time.process_time()
    total, elapsed, per = run_threads([worker] * threads, seconds)
    cpu = time.process_time() - c0
    return {"threads": threads, "transfers": total, "seconds": round(elapsed, 2),
            "per_second": rate(total, elapsed), "states": states_of(app, ids[:total]),
            "process_cpu_ms_per_transfer": round(cpu / max(1, total) * 1000, 3)}


def states_of(app: Any, ids: list[str]) -> dict[str, int]:
    states: dict[str, int] = {}
    with app.store.read() as tx:
        for tid in ids:
            s = transfer_state(tx.get_transfer(tid))
            states[s] = states.get(s, 0) + 1
    return states


def backlog_rate(app: Any, ids: list[str]) -> dict[str, Any]:
    """A backlog of APPROVED transfers drained by the monitor's path (one caller)."""
    c0, t0 = time.process_time(), time.perf_counter()
    errors = app.transfers.signer.sign_many(ids)
    elapsed, cpu = time.perf_counter() - t0, time.process_time() - c0
    return {"transfers": len(ids), "seconds": round(elapsed, 3),
            "per_second": rate(len(ids), elapsed), "errors": len(errors),
            "states": states_of(app, ids),
            "process_cpu_ms_per_transfer": round(cpu / len(ids) * 1000, 3)}


def main() -> None:
    args = part_args(__doc__ or "")
    seconds = 1.0 if args.quick else 2.5
    n_rounds = 1 if args.quick else 3
    results: dict[str, Any] = {"seconds_per_measurement": seconds, "rounds": n_rounds}
    with workdir(args.workdir) as wd:
        cfg = signerd_init(wd / "state-hsm")
        info = token_of(cfg)
        # -- raw, before signerd is loaded into this process
        tok = RawToken(info)
        tok.initialise()
        tok.attach()
        raw_key = tok.generate_key()
        raw_independent = measure_raw(tok, raw_key, seconds)
        tok.close()

        # -- signerd in process on the same token (its Keystore initialises the module again)
        app = open_app(cfg)
        ks = app.keystore
        results["keystore"] = {"concurrency": ks.concurrency, "pool_size": ks.pool_size}
        from signerd.services.wallets import WalletRequest

        w = app.wallets.create("platform", WalletRequest(
            chain="ethereum", network="", category="seized", case_ref="BENCH-HSM",
            chain_ids=(1,)))
        key_id = w.keys[0].key_id
        levels = thread_levels()
        # raw, keystore and App.hsm_sign in alternating rounds, so that load from elsewhere
        # on the machine falls on all of them alike; each keeps its best and median round
        tok2 = RawToken(info)
        tok2.attach()
        wallet_key = bytes.fromhex(key_id)
        rounds: dict[str, dict[int, list[dict[str, Any]]]] = {
            "raw": {n: [] for n in levels}, "keystore": {n: [] for n in levels},
            "hsm_sign": {n: [] for n in levels}}
        for r in range(n_rounds):
            for n in levels:
                rounds["raw"][n].append(raw_rate(tok2, wallet_key, n, seconds))
                rounds["keystore"][n].append(
                    layer_rate(lambda d: ks.sign_digest(key_id, d), n, seconds))
                rounds["hsm_sign"][n].append(
                    layer_rate(lambda d: app.hsm_sign(key_id, d), n, seconds))
            log("round %d: " % (r + 1) + "; ".join(
                f"{layer} " + " ".join(f"{n}t={v[n][-1]['per_second']:.0f}" for n in levels)
                for layer, v in rounds.items()))
        tok2.close()
        layers = {layer: {n: summarise(v[n]) for n in levels} for layer, v in rounds.items()}

        # -- the sign step of one-digest transfers, real SQLite
        keys = operator_keys(cfg.parent)
        per_level = 80 if args.quick else 600
        n_backlog = 300 if args.quick else 1500
        callers = caller_levels()
        t0 = time.perf_counter()
        pool = prepare_eth(app, keys, w.id,
                           per_level * len(callers) + n_backlog + per_level // 2, 0)
        prep_s = time.perf_counter() - t0
        log(f"prepared {len(pool)} approved transfers in {prep_s:.1f} s")
        # each sign-step measurement right after a raw one at its best thread count, so that
        # every ratio also has a neighbour taken under the same load
        tok3 = RawToken(info)
        tok3.attach()
        best_n = max(layers["raw"], key=lambda n: layers["raw"][n]["best"])

        def raw_now() -> float:
            return float(raw_rate(tok3, wallet_key, best_n, seconds)["per_second"])

        step_rates = {}
        at = 0
        for n in callers:
            chunk = pool[at:at + per_level]
            at += per_level
            adjacent = raw_now()
            step_rates[n] = sign_step_rate(app, chunk, n, seconds)
            step_rates[n]["raw_adjacent"] = adjacent
            log(f"sign step {n} thread(s): {step_rates[n]['per_second']:.0f} transfers/s "
                f"(raw just before: {adjacent:.0f}/s)")
        adjacent = raw_now()
        results["backlog"] = backlog_rate(app, pool[at:at + n_backlog])
        results["backlog"]["raw_adjacent"] = adjacent
        at += n_backlog
        log(f"sign step, backlog of {n_backlog}: {results['backlog']['per_second']:.0f}/s "
            f"(raw just before: {adjacent:.0f}/s)")
        # the HSM layer's CPU per signature in this process, one thread, for the CPU shares
        digests = [secrets.token_bytes(32) for _ in range(500)]
        c0 = time.process_time()
        for d in digests:
            app.hsm_sign(key_id, d)
        results["hsm_sign_process_cpu_ms"] = round((time.process_time() - c0) / 500 * 1000, 3)
        # profile of the sign step (one thread) on the rest
        rest = pool[at:]
        prof = cProfile.Profile()  # of the sign step's worker thread, where signing happens
        undo = profiled_worker(app, prof)
        t0 = time.perf_counter()
        for tid in rest:
            app.transfers.sign(tid)
        prof_s = time.perf_counter() - t0
        undo()
        results["profile_sign_step"] = {
            "transfers": len(rest), "seconds": round(prof_s, 3),
            "summary_cumulative_s": profile_summary(prof, {
                "SignStep._pipeline (the worker, per burst)":
                    "signerd/services/sign_step.py:_pipeline",
                "SignStep._start (read, quorum, decode, HSM)":
                    "signerd/services/sign_step.py:_start",
                "SignStep._load (read, quorum, decode)": "signerd/services/sign_step.py:_load",
                "SignStep._finish (assemble, write)": "signerd/services/sign_step.py:_finish",
                "SignStep._commit (write)": "signerd/services/sign_step.py:_commit",
                "App.hsm_sign": "signerd/app.py:hsm_sign",
                "Keystore.sign_digest": "signerd/adapters/hsm.py:sign_digest",
                "PKCS#11 C_Sign (key.sign)": "signerd/adapters/hsm.py:<lambda>",
                "coincurve verify": "coincurve/keys.py:verify",
                "store.transaction (commit)": "signerd/adapters/store/sqlite.py:transaction",
                "store.read": "signerd/adapters/store/sqlite.py:read",
                "Tx.append_audit": "signerd/adapters/store/__init__.py:append_audit",
                "chain adapter redecode": "signerd/core/chains.py:redecode",
                "policy.parse_policy": "signerd/core/policy.py:parse_policy",
                "TransferService._quorum": "signerd/services/transfers.py:_quorum",
                "assemble (eth)": "signerd/core/chains.py:assemble",
                "PKCS#11 C_Sign (python-pkcs11)": "pkcs11/types.py:sign",
            }),
            "top_tottime": profile_top(prof, 18, "tottime"),
            "top_cumulative": profile_top(prof, 25, "cumulative"),
        }

        # profile of Keystore.sign_digest alone
        prof = cProfile.Profile()
        digests = [secrets.token_bytes(32) for _ in range(2000)]
        prof.enable()
        for d in digests:
            ks.sign_digest(key_id, d)
        prof.disable()
        results["profile_keystore"] = {"signs": len(digests),
                                       "top_tottime": profile_top(prof, 14, "tottime")}

        # -- one many-input PSBT through the sign step
        n_inputs = 300 if args.quick else 1000
        bw = app.wallets.create("platform", WalletRequest(
            chain="bitcoin", network="regtest", category="seized", case_ref="BENCH-HSM-BTC",
            script_type="p2wpkh"))
        from signerd.core.chains import BitcoinAdapter

        psbt_rounds = []
        for r in range(n_rounds):  # fresh PSBTs (their own outpoints), best of the rounds
            psbt = build_psbt(BitcoinAdapter.spec(bw), n_inputs, salt=r + 1)
            payload = base64.b64encode(psbt.serialize())
            t = app.transfers.submit("platform", bw.id, payload)
            with signing_deferred(app):
                in_process_approve(app, keys, t.id, "inv1")
                in_process_approve(app, keys, t.id, "cust1")
            adjacent = raw_now()
            t0 = time.perf_counter()
            app.transfers.sign(t.id)
            psbt_s = time.perf_counter() - t0
            psbt_rounds.append({"seconds": round(psbt_s, 3), "raw_adjacent": adjacent,
                                "signatures_per_second": rate(n_inputs, psbt_s),
                                "state": app.transfers.get(t.id).row["state"]})
        best_round = max(psbt_rounds, key=lambda x: x["signatures_per_second"])
        results["psbt_sign_step"] = {"inputs": n_inputs, **best_round, "rounds": psbt_rounds}
        tok3.close()
        log(f"PSBT sign step, {n_inputs} inputs: " + ", ".join(
            f"{x['signatures_per_second']:.0f}" for x in psbt_rounds) + " signatures/s")
        app.stop()

    best = max([r["per_second"] for r in raw_independent.values()] +
               [r["best"] for r in layers["raw"].values()])
    one = max(raw_independent[1]["per_second"], layers["raw"][1]["best"])
    results.update({
        "raw_independent_init": raw_independent, "layers": layers, "raw_best": best,
        "raw_one_thread": one, "sign_step_rates": step_rates, "prepare_seconds": round(prep_s, 1),
    })
    ks_best = max(r["best"] for r in layers["keystore"].values())
    app_best = max(r["best"] for r in layers["hsm_sign"].values())
    step_best = max([r["per_second"] for r in step_rates.values()]
                    + [results["backlog"]["per_second"]])
    results["ratios"] = {
        "keystore_vs_raw_best": round(ks_best / best, 3),
        "hsm_sign_vs_raw_best": round(app_best / best, 3),
        "sign_step_transfers_vs_raw_best": round(step_best / best, 3),
        "sign_step_backlog_vs_raw_best": round(results["backlog"]["per_second"] / best, 3),
        "psbt_sign_step_vs_raw_best": round(results["psbt_sign_step"]["signatures_per_second"]
                                            / best, 3),
        "psbt_sign_step_vs_raw_one_thread": round(
            results["psbt_sign_step"]["signatures_per_second"] / one, 3),
    }
    write_json(args.json, results)


if __name__ == "__main__":
    main()
