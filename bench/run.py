"""signerd benchmarks: one command runs every part, prints a table and writes the results.

    .venv/bin/python bench/run.py [--quick] [--only PART ...]

Parts (each its own module, run in a fresh process, each with its own `signerd init` state
folder and SoftHSM token in a temporary folder):

  hsm_rate      raw PKCS#11 ECDSA rate vs signerd's keystore, App.hsm_sign and sign step
  e2e           transfers/s through gRPC with 1, 4, 16 clients; last-approval latency; profile
  psbt_scaling  1 to 5,000-input PSBTs: parse, digest, sign, finalize per input
  store         10,000 pending transfers: list/approve latency, RSS, audit export and verify
  baselines     eth-account and python-bitcointx doing the same steps

Results: bench/results/<UTC timestamp>.json (gitignored) with the machine, each part's raw
numbers and the table. Nothing here asserts anything about time.
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from common import child_result, fmt, loadavg, machine, run_measured  # noqa: E402

PARTS = ("hsm_rate", "e2e", "psbt_scaling", "store", "baselines")


def run_part(name: str, quick: bool) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix=f"signerd-bench-{name}-") as tmp:
        out = Path(tmp) / "out.json"
        cmd = [sys.executable, str(HERE / f"{name}.py"), "--json", str(out)]
        if quick:
            cmd.append("--quick")
        print(f"== {name}", file=sys.stderr, flush=True)
        load0 = loadavg()
        p, m = run_measured(cmd, stderr=None, stdout=subprocess.PIPE, text=True)
        meta = {"seconds": m["seconds"], "exit": p.returncode, "loadavg_at_start": load0,
                "cpu_cores_used_by_this_part": m["cores"],
                "cpu_cores_used_by_other_work": m["other_cores"]}
        return child_result(p, out, meta, f"{name} exited {p.returncode}")


# ---------------------------------------------------------------- the table

def row(*cells: Any) -> str:
    return "| " + " | ".join(str(c) for c in cells) + " |"


def table(r: dict[str, Any]) -> str:
    L: list[str] = []
    h = r.get("hsm_rate", {})
    e = r.get("e2e", {})
    if "raw_best" in h:
        best = h["raw_best"]
        L += ["### 1. Sign throughput (signatures per second)", "",
              row("path", "threads / clients", "rate", "vs raw best", "vs raw just before",
                  "target"),
              row("---", "---", "---:", "---:", "---:", "---")]
        raw = h["layers"]["raw"]
        for n, v in raw.items():
            L.append(row("raw PKCS#11 (python-pkcs11, OS locking, session per thread)", n,
                         fmt(v["best"]), f"{v['best'] / best:.2f}", "", ""))
        for layer, label in (("keystore", "signerd Keystore.sign_digest"),
                             ("hsm_sign", "signerd App.hsm_sign")):
            for n, v in h["layers"][layer].items():
                L.append(row(label, n, fmt(v["best"]), f"{v['best'] / best:.2f}", "",
                             ">= 0.80" if layer == "hsm_sign" else ""))
        def near(rate_: float, v: dict[str, Any]) -> str:
            adj = v.get("raw_adjacent")
            return f"{rate_ / adj:.2f}" if adj else ""

        for n, v in h["sign_step_rates"].items():
            L.append(row("signerd sign step, one-digest ETH transfers (TransferService.sign)", n,
                         fmt(v["per_second"]), f"{v['per_second'] / best:.2f}",
                         near(v["per_second"], v), ">= 0.80"))
        if "backlog" in h:
            b = h["backlog"]
            L.append(row(f"signerd sign step, backlog of {b['transfers']} approved ETH transfers "
                         "(SignStep.sign_many, as the monitor)", 1, fmt(b["per_second"]),
                         f"{b['per_second'] / best:.2f}", near(b["per_second"], b), ">= 0.80"))
        ps = h["psbt_sign_step"]
        L.append(row(f"signerd sign step, one {ps['inputs']}-input PSBT", 1,
                     fmt(ps["signatures_per_second"]),
                     f"{ps['signatures_per_second'] / best:.2f}",
                     near(ps["signatures_per_second"], ps), ">= 0.80"))
        if "throughput" in e:
            for c, v in e["throughput"].items():
                L.append(row("gRPC end to end: submit + 2 approvals + sign (transfers/s)", c,
                             fmt(v["transfers_per_second"]),
                             f"{v['transfers_per_second'] / best:.3f}", "",
                             "approval-bound"))
        L.append("")
        if "backlog" in h and "hsm_sign_process_cpu_ms" in h:
            hc = h["hsm_sign_process_cpu_ms"]
            L += ["CPU of this process per signed one-digest transfer (ms; the HSM is SoftHSM "
                  "inside the process, so its signing CPU is part of it):", "",
                  row("path", "callers", "CPU ms / transfer", "of which App.hsm_sign",
                      "signerd's own", "HSM share"),
                  row("---", "---:", "---:", "---:", "---:", "---:")]
            rows = [(f"sign step, {n} caller(s)", n, v.get("process_cpu_ms_per_transfer"))
                    for n, v in h["sign_step_rates"].items()]
            rows.append(("sign step, backlog", 1, h["backlog"]["process_cpu_ms_per_transfer"]))
            for label, n, c in rows:
                if c:
                    L.append(row(label, n, fmt(c), fmt(hc), fmt(max(0.0, c - hc)),
                                 f"{hc / c:.2f}"))
            L.append("")
        if "throughput" in e:
            L += ["End-to-end cost per signed transfer (CPU, from /proc):", "",
                  row("clients", "transfers/s", "daemon CPU ms/transfer", "daemon cores busy",
                      "client CPU ms/transfer", "flow p50 ms", "flow p99 ms", "errors"),
                  row("---:", "---:", "---:", "---:", "---:", "---:", "---:", "---:")]
            for c, v in e["throughput"].items():
                tot = v["phase_ms"].get("total", {})
                L.append(row(c, fmt(v["transfers_per_second"]),
                             fmt(v["daemon_cpu_ms_per_transfer"]), v["daemon_cpu_cores"],
                             fmt(v["client_cpu_ms_per_transfer"]), tot.get("p50", "-"),
                             tot.get("p99", "-"), v["errors"]))
            ac = e.get("approval_crypto", {})
            if ac:
                L += ["", f"Approvals' own verification (Ed25519 statement check as decide() "
                          f"does it): {ac['verify_statement_us']} us each, so two approvals "
                          f"per transfer would allow ~{fmt(ac['two_approvals_cap_per_core'])} "
                          f"transfers/s per core."]
            L.append("")
    if "latency" in e:
        lat = e["latency"]
        m = lat["last_approval_rpc_ms"]
        L += ["### 2. Latency: quorum-making approval RPC to signed result "
              f"({lat['transfers']} one-input PSBTs, one at a time)", "",
              row("p50 ms", "p90 ms", "p99 ms", "max ms", "mean ms", "server sign step mean ms",
                  "target"),
              row("---:", "---:", "---:", "---:", "---:", "---:", "---"),
              row(m["p50"], m["p90"], m["p99"], m["max"], m["mean"],
                  lat.get("server_sign_step_mean_ms", "-"), "p99 < 20 ms"), ""]
    ps = r.get("psbt_scaling", {})
    if "sizes" in ps:
        L += ["### 3. PSBT scaling: CPU microseconds per input (best of repeated runs)", "",
              row("inputs", "PSBT bytes", "parse", "analyze", "digest", "HSM sign",
                  "add sigs", "finalize", "whole sign step", "digest / HSM", "sign step sig/s"),
              row(*(["---:"] * 11))]
        for n, v in ps["sizes"].items():
            u = v["cpu_us_per_input"]
            L.append(row(n, fmt(v["psbt_bytes"]), u["parse"], u["analyze"], u["digest"], u["hsm"],
                         u["add_signatures"], u["finalize"], u["sign_step"],
                         f"{v['digest_vs_hsm_cpu']:.3f}",
                         fmt(v["sign_step_signatures_per_second"])))
        g = ps.get("cpu_per_input_vs_100_inputs", {})
        if g:
            L += ["", "Per-input CPU relative to 100 inputs (1.0 = linear): " + "; ".join(
                f"{n} inputs: " + ", ".join(f"{k} {x}" for k, x in v.items())
                for n, v in g.items())]
        L.append("")
    s = r.get("store", {})
    if "latency_ms" in s:
        L += [f"### 4. Store: {fmt(s['pending_transfers'])} pending transfers (SQLite)", "",
              row("operation", "p50 ms", "p99 ms", "max ms", "target"),
              row("---", "---:", "---:", "---:", "---")]
        for k, v in s["latency_ms"].items():
            L.append(row(k, v["p50"], v["p99"], v["max"],
                         "p99 < 50 ms" if ("List" in k or "Approval" in k) else ""))
        f = s.get("fill", {})
        a = s.get("audit_fill", {})
        x = s.get("audit_export", {})
        L += ["", row("store measure", "value"), row("---", "---:"),
              row("SubmitTransfer rate while filling (4 clients)",
                  f"{fmt(f.get('submits_per_second'))}/s"),
              row("submit p99, first / last tenth of the fill (ms)",
                  f"{f.get('submit_ms_first_tenth', {}).get('p99')} / "
                  f"{f.get('submit_ms_last_tenth', {}).get('p99')}"),
              row("daemon RSS: empty / after transfers / after sampling (MiB)",
                  f"{s.get('rss_mib_empty')} / {s.get('rss_mib_after_transfers')} / "
                  f"{s.get('rss_mib_after_sampling')}"),
              row(f"daemon RSS after {fmt(a.get('events_after'))} audit events, "
                  "idle / after Audit.Export (MiB)",
                  f"{s.get('rss_mib_after_audit_events')} / {s.get('rss_mib_after_export')}"),
              row("idle daemon CPU with the pending transfers (cores)",
                  s.get("idle_daemon_cpu_cores")),
              row("audit append (signerd Tx.append_audit, 1,000 per transaction)",
                  f"{fmt(a.get('appends_per_second'))} events/s"),
              row("Audit.Export RPC", f"{fmt(x.get('export_events_per_second'))} events/s "
                  f"({fmt(x.get('bytes', 0) // 1_000_000)} MB)"),
              row("audit verify: hash chain only (verify_chain)",
                  f"{fmt(x.get('verify_chain_events_per_second'))} events/s"),
              row("audit verify: export document (parse + chain + signed head)",
                  f"{fmt(x.get('verify_export_events_per_second'))} events/s"), ""]
    b = r.get("baselines", {})
    if "ethereum" in b:
        eth = b["ethereum"]
        L += ["### 5. Baselines: the same step by a peer tool, same run", "",
              row("step", "peer", "peer us", "signerd", "signerd us", "signerd / peer",
                  "same output"),
              row("---", "---", "---:", "---", "---:", "---:", "---")]
        p = eth["eth_account_sign_transaction"]["cpu_us"]
        L.append(row("sign one EIP-1559 tx", "eth-account, software key", p,
                     "decode + digest + coincurve, same key",
                     eth["signerd_software_key"]["cpu_us"],
                     eth["ratio_cpu_signerd_software_vs_eth_account"],
                     "byte-identical" if eth["identical_raw_tx"] else "DIFFERENT"))
        L.append(row("sign one EIP-1559 tx", "eth-account, software key", p,
                     "decode + digest + HSM key (Keystore)", eth["signerd_hsm_key"]["cpu_us"],
                     eth["ratio_cpu_signerd_hsm_vs_eth_account"],
                     "recovers to wallet" if eth["hsm_tx_recovers_to_wallet"] else "NO"))
        for n, v in b["bip143"].items():
            L.append(row(f"BIP-143 digests, {n}-input tx (per input)", "python-bitcointx",
                         v["bitcointx_us_per_input"], "bip143_sighash + midstate cache",
                         v["signerd_us_per_input"], v["ratio_cpu_signerd_vs_bitcointx"],
                         "identical" if v["identical_digests"] else "DIFFERENT"))
        L.append("")
    L += ["### Runs", "", row("part", "seconds", "exit", "load avg at start",
                              "cores used by the part", "cores used by other work"),
          row("---", "---:", "---:", "---", "---:", "---:")]
    for name in PARTS:
        if name in r:
            m = r[name]["_run"]
            L.append(row(name, m["seconds"], m["exit"], " ".join(map(str, m["loadavg_at_start"])),
                         m["cpu_cores_used_by_this_part"], m["cpu_cores_used_by_other_work"]))
    return "\n".join(L)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="short measurements (< 2 minutes)")
    ap.add_argument("--only", nargs="+", choices=PARTS, help="run only these parts")
    ap.add_argument("--out", help="results file (default bench/results/<timestamp>.json)")
    args = ap.parse_args()
    stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
    t0 = time.perf_counter()
    results: dict[str, Any] = {"started_utc": stamp, "quick": args.quick, "machine": machine()}
    for name in args.only or PARTS:
        results[name] = run_part(name, args.quick)
    results["total_seconds"] = round(time.perf_counter() - t0, 1)
    results["machine"]["loadavg_at_end"] = [float(x) for x in
                                            Path("/proc/loadavg").read_text().split()[:3]]
    m = results["machine"]
    head = (f"signerd benchmarks, {stamp}{' (quick)' if args.quick else ''}: {m['nproc']} x "
            f"{m['cpu_model']}, {m['mem_total_gib']} GiB, {m['softhsm']}, Python {m['python']}, "
            f"commit {m['git_commit']}, {results['total_seconds']} s")
    text = head + "\n\n" + table(results)
    results["table"] = text
    out = Path(args.out) if args.out else HERE / "results" / f"{stamp}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(results, indent=1, default=str) + "\n")
    print(text)
    print(f"\nresults: {out}")
    failed = [n for n in (args.only or PARTS) if "error" in results[n]]
    if failed:
        print(f"parts that failed: {', '.join(failed)}", file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
