"""The README's walkthrough runs as written.

Every ``sh`` block between the README's ``<!-- walkthrough: start`` and ``<!-- walkthrough: end
-->`` markers runs, in order, in one bash session under ``set -euo pipefail``, against a fresh
daemon, from a folder laid out as the README's: ``./signerd-state`` is the daemon's state folder
(its CA key beside it in ``./signerd-state.ca``), ``./.venv/bin`` holds ``signerctl`` and
``python`` (this checkout's signerd), and ``./scripts`` is the repository's. Whatever the
walkthrough needs (tx.json, seized-words.txt, ids) it makes with its own commands. A README
change that breaks a step fails here, naming the README line of the step and its output.
"""
from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.support.cli import ctl
from tests.support.daemon import Daemon, edit_config, init_state

ROOT = Path(__file__).resolve().parents[2]
README = ROOT / "README.md"
START = "<!-- walkthrough: start"
END = "<!-- walkthrough: end -->"
# The sections whose commands must be among those run.
SECTIONS = ("Five-minute walkthrough", "Governance: no one alone changes the rules",
            "Custody operations", "The audit trail")
SCRIPT = "walkthrough.sh"


@dataclass(frozen=True)
class Block:
    heading: str  # the README section it is in
    line: int  # the README line of its first command line (1-based)
    code: str


def walkthrough_blocks(text: str) -> list[Block]:
    """The sh blocks between the markers, with the section and README line of each."""
    lines = text.splitlines()
    starts = [i for i, line in enumerate(lines) if line.startswith(START)]
    ends = [i for i, line in enumerate(lines) if line.strip() == END]
    assert len(starts) == 1 and len(ends) == 1 and starts[0] < ends[0], \
        f"README.md needs one {START!r} marker and, after it, one {END!r}"
    heading, fence, blocks, body = "", None, [], []
    for i, line in enumerate(lines):
        if fence is None and line.startswith("#"):
            heading = line.lstrip("#").strip()
        elif fence is None and line.startswith("```"):
            fence, body = line[3:].strip(), []
        elif fence is not None and line.startswith("```"):
            if fence == "sh" and starts[0] < i < ends[0]:
                blocks.append(Block(heading, i - len(body) + 1, "\n".join(body)))
            fence = None
        elif fence is not None:
            body.append(line)
    return blocks


def script_of(blocks: list[Block]) -> tuple[str, list[tuple[int, Block]]]:
    """The blocks as one bash script, and where each starts in it (1-based lines)."""
    lines = ["set -euo pipefail",
             "trap 'status=$?; echo \"README STEP FAILED at script line $LINENO (exit $status):"
             " $BASH_COMMAND\" >&2' ERR"]
    where = []
    for b in blocks:
        lines.append(f"echo '### README line {b.line} ({b.heading})'")
        where.append((len(lines) + 1, b))
        lines += b.code.splitlines()
    return "\n".join(lines) + "\n", where


def readme_line(script_line: int, where: list[tuple[int, Block]]) -> int | None:
    found = None
    for start, b in where:
        if start <= script_line < start + len(b.code.splitlines()):
            found = b.line + script_line - start
    return found


def failure_report(out: str, where: list[tuple[int, Block]]) -> str:
    """The README lines of the step that failed and the end of what the walkthrough printed."""
    m = re.search(r"README STEP FAILED at script line (\d+)", out) or \
        re.search(rf"{re.escape(SCRIPT)}: line (\d+):", out)
    readme = README.read_text(encoding="utf-8").splitlines()
    step = ""
    n = readme_line(int(m.group(1)), where) if m else None
    if n is not None:
        step = "".join(f"  {i:4}{'>' if i == n else ' '} {readme[i - 1]}\n"
                       for i in range(max(1, n - 3), min(len(readme), n + 3) + 1))
        step = f"the README step at line {n} failed:\n{step}"
    tail = "\n".join(out.splitlines()[-60:])
    return f"{step}\n--- the walkthrough's last output lines ---\n{tail}"


def test_the_walkthrough_covers_every_section_it_names() -> None:
    blocks = walkthrough_blocks(README.read_text(encoding="utf-8"))
    headings = {b.heading for b in blocks}
    assert set(SECTIONS) <= headings, f"no walkthrough block in {set(SECTIONS) - headings}"
    code = "\n".join(b.code for b in blocks)
    # ids come from the commands themselves, never from a placeholder to fill in by hand
    assert not re.search(r"(?<![$\w])(WALLET|TRANSFER|PROPOSAL)_ID(?!=)", code), code


def _venv(bin_dir: Path) -> None:
    """./.venv/bin as the install makes it: signerctl and python of this checkout."""
    bin_dir.mkdir(parents=True)
    for name, command in (("python", f'exec "{sys.executable}" "$@"'),
                          ("signerctl", f'exec "{sys.executable}" -m signerd.cli "$@"')):
        (bin_dir / name).write_text(f"#!/bin/sh\n{command}\n")
        (bin_dir / name).chmod(0o755)


@pytest.fixture
def folder(tmp_path: Path):
    """The README's folder, with a fresh daemon on ./signerd-state."""
    work = tmp_path / "signerd"
    work.mkdir()
    _venv(work / ".venv" / "bin")
    (work / "scripts").symlink_to(ROOT / "scripts")
    cfg = init_state(work / "signerd-state")
    d = Daemon(cfg).start()
    # signerctl dials the address in the config: the port the daemon took.
    edit_config(cfg, "server", listen=f"127.0.0.1:{d.port}")
    yield work, d
    d.stop()


def test_the_readme_walkthrough_runs_as_written(folder: tuple[Path, Daemon]) -> None:
    work, d = folder
    script, where = script_of(walkthrough_blocks(README.read_text(encoding="utf-8")))
    (work / SCRIPT).write_text(script)
    env = {k: v for k, v in os.environ.items() if not k.startswith("SIGNERD_")}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, (str(ROOT), env.get("PYTHONPATH"))))
    started = time.monotonic()
    r = subprocess.run(["bash", SCRIPT], cwd=work, env=env, stdin=subprocess.DEVNULL,
                       stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                       timeout=900)
    took = time.monotonic() - started
    assert r.returncode == 0, failure_report(r.stdout, where) + (
        f"\n--- daemon log ---\n{d.log_path.read_text()[-3000:] if d.log_path else ''}")
    print(f"README walkthrough: {len(where)} blocks in {took:.1f} s")
    out = r.stdout
    assert "input 0: OK" in out and "all 1 inputs verify" in out  # python-bitcointx agreed
    assert out.count("OK: ") >= 2 and "extends audit.jsonl" in out, out[-2000:]

    # What the walkthrough left behind, as the daemon shows it: every transfer signed, every
    # proposal approved, and a wallet shown alike by list and show (an active one without a
    # freeze order).
    transfers = json.loads(ctl(d, "--json", "transfer", "list").stdout)["transfers"]
    assert transfers and {t["state"] for t in transfers} == {"SIGNED"}, transfers
    proposals = json.loads(ctl(d, "--json", "proposal", "list").stdout)["proposals"]
    assert proposals and {p["state"] for p in proposals} == {"APPROVED"}, proposals
    wallets = json.loads(ctl(d, "--json", "wallet", "list").stdout)["wallets"]
    for w in wallets:
        assert json.loads(ctl(d, "--json", "wallet", "show", w["id"]).stdout) == w
        assert (w["status"] == "FROZEN") == bool(w["freeze_order"]), w
