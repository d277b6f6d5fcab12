"""The systemd unit is accepted by `systemd-analyze verify` and keeps its hardening."""
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

UNIT = Path(__file__).resolve().parents[2] / "systemd" / "signerd.service"


def test_unit_is_hardened() -> None:
    text = UNIT.read_text()
    for line in ("Type=notify", "User=signerd", "NoNewPrivileges=yes", "ProtectSystem=strict",
                 "StateDirectory=signerd", "LoadCredential=hsm-pin:", "CapabilityBoundingSet=\n"):
        assert line in text, line


def test_unit_sends_no_sighup() -> None:
    """signerd reloads nothing on SIGHUP (it logs and keeps serving); the unit does not pretend
    to reload it and says how to apply a change."""
    text = UNIT.read_text()
    assert not [line for line in text.splitlines() if line.startswith("ExecReload")]
    assert "systemctl restart signerd" in text


def test_systemd_analyze_verify_accepts_the_unit(tmp_path: Path) -> None:
    tool = shutil.which("systemd-analyze")
    if tool is None:
        pytest.skip("systemd-analyze is not installed here")
    # Verify a copy whose ExecStart points at an executable that exists on this machine.
    signerd = Path(sys.executable).parent / "signerd"
    exe = signerd if signerd.exists() else Path(sys.executable)
    text = UNIT.read_text().replace("/opt/signerd/.venv/bin/signerd", str(exe))
    unit = tmp_path / "signerd.service"
    unit.write_text(text)
    r = subprocess.run([tool, "verify", str(unit)], capture_output=True, text=True, timeout=60)
    problems = [l for l in (r.stdout + r.stderr).splitlines()
                if "signerd.service" in l and "Failed to" not in l.split(":", 1)[0]]
    assert r.returncode == 0, r.stdout + r.stderr
    assert not [p for p in problems if "Unknown" in p or "Invalid" in p or "ignoring" in p], problems


def test_the_unit_and_the_production_config_agree() -> None:
    """deploy/signerd.toml names every secret as a credential the unit (or its PostgreSQL
    drop-in) loads from /etc/signerd/credentials, and every path it names is absolute, under
    the unit's ConfigurationDirectory (read-only to the daemon) or StateDirectory."""
    import re
    import tomllib

    root = UNIT.parents[1]
    config = (root / "deploy" / "signerd.toml").read_text()
    loaded = UNIT.read_text() + (root / "deploy" / "systemd" / "postgresql.conf").read_text()
    names = set(re.findall(r'= "credential:([\w-]+)"', config))
    assert names == {"hsm-pin", "server-key", "store-url"}
    for name in names:
        assert f"LoadCredential={name}:/etc/signerd/credentials/{name}\n" in loaded, name
    assert "StateDirectory=signerd\n" in UNIT.read_text()
    assert "ConfigurationDirectory=signerd\n" in UNIT.read_text()
    doc = tomllib.loads(config)
    paths = [doc["server"][k] for k in ("tls_cert", "client_ca", "revoked")]
    paths.append(doc["policies"]["dir"])
    for p in paths:
        assert p.startswith("/etc/signerd/"), p
    sqlite = re.search(r'url = "sqlite:///(\S+)"', config)
    assert sqlite is not None and sqlite.group(1).startswith("/var/lib/signerd/")
