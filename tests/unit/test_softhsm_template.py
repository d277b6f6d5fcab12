"""`signerd init` writes the SoftHSM config from the template kept in hsm/softhsm-config (the
hsm adapter's SOFTHSM_CONF, which place_softhsm_conf writes again after a move)."""
import os
import subprocess
from pathlib import Path

from signerd.adapters.hsm import SOFTHSM_CONF

ROOT = Path(__file__).resolve().parents[2]


def test_embedded_template_is_the_reviewed_one() -> None:
    assert (ROOT / "hsm/softhsm-config/softhsm2.conf.template").read_text() == SOFTHSM_CONF


def test_setup_token_script_makes_a_usable_token(tmp_path: Path) -> None:
    script = ROOT / "hsm/softhsm-config/setup-token.sh"
    r = subprocess.run(["bash", str(script), str(tmp_path / "hsm"), "manual"],
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    pin = tmp_path / "hsm" / "pin"
    assert pin.stat().st_mode & 0o077 == 0
    r = subprocess.run(["softhsm2-util", "--show-slots"], capture_output=True, text=True,
                       env=dict(os.environ, SOFTHSM2_CONF=str(tmp_path / "hsm/softhsm2.conf")))
    assert "manual" in r.stdout
    again = subprocess.run(["bash", str(script), str(tmp_path / "hsm")], capture_output=True,
                           text=True)
    assert again.returncode != 0 and "refusing" in again.stderr
