"""The demo governance policy and policy templates ship as files in the package
(signerd/templates/), are read with importlib.resources, and are what `signerd init` writes."""
from __future__ import annotations

import fnmatch
import tomllib
from importlib import resources
from pathlib import Path

from signerd import daemon
from signerd.core.authority import parse_governance
from signerd.core.policy import parse_policy
from tests.support.daemon import init_state

ROOT = Path(__file__).resolve().parents[2]


def shipped_files() -> dict[str, str]:
    folder = resources.files("signerd") / "templates"
    return {f.name: f.read_text(encoding="utf-8") for f in folder.iterdir()
            if f.name.endswith(".toml")}


def test_every_shipped_file_is_a_template_the_governance_or_a_chain_registry() -> None:
    assert set(shipped_files()) == set(daemon.TEMPLATE_FILES) | {
        daemon.GOVERNANCE_FILE, daemon.CHAINS_FILE, daemon.DEV_CHAINS_FILE}


def test_every_shipped_template_parses_and_is_what_the_daemon_holds() -> None:
    files = shipped_files()
    assert daemon.DEMO_POLICIES == {n: files[n] for n in daemon.TEMPLATE_FILES}
    for name in daemon.TEMPLATE_FILES:
        policy = parse_policy(files[name])
        assert policy.name == name.removesuffix(".toml"), name
    assert daemon.DEMO_GOVERNANCE == files[daemon.GOVERNANCE_FILE]
    assert parse_governance(files[daemon.GOVERNANCE_FILE]).name == "governance"


def test_the_wheel_carries_the_templates() -> None:
    """pyproject's package data covers every shipped file, so a non-editable install has them."""
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())
    patterns = config["tool"]["setuptools"]["package-data"]["signerd"]
    for name in shipped_files():
        assert any(fnmatch.fnmatch(f"templates/{name}", p) for p in patterns), name


def test_init_writes_the_shipped_files(tmp_path: Path) -> None:
    state = init_state(tmp_path / "state").parent
    files = shipped_files()
    written = {p.name: p.read_text() for p in (state / "policies").iterdir()}
    assert written == {n: files[n] for n in daemon.TEMPLATE_FILES}
    assert (state / "governance.toml").read_text() == files[daemon.GOVERNANCE_FILE]
