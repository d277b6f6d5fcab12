"""The configuration: the production example (deploy/signerd.toml) loads as shipped, its
secrets come from systemd credentials (the HSM PIN, the server's TLS key, the PostgreSQL URL),
and an error about a secret never quotes it."""
from __future__ import annotations

from pathlib import Path

import pytest

from signerd.adapters import config as C
from signerd.core.errors import ConfigError

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "deploy" / "signerd.toml"
URL = "postgresql://signerd:s3cret-pw@db-1.internal:5432/signerd"


@pytest.fixture
def creds(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    d = tmp_path / "credentials"
    d.mkdir()
    (d / "store-url").write_text(URL + "\n")
    monkeypatch.setenv("CREDENTIALS_DIRECTORY", str(d))
    return d


def example(tmp_path: Path, **replace: str) -> Path:
    text = EXAMPLE.read_text()
    for old, new in replace.items():
        assert old in text, old
        text = text.replace(old, new)
    path = tmp_path / "signerd.toml"
    path.write_text(text)
    return path


def test_the_production_example_loads_with_absolute_paths_and_credentials(
        tmp_path: Path, creds: Path) -> None:
    cfg = C.load(example(tmp_path))
    assert cfg.store_url == URL
    assert cfg.hsm.pin_file == creds / "hsm-pin"
    assert cfg.server.tls_key == creds / "server-key"
    assert cfg.server.tls_cert == Path("/etc/signerd/pki/server.pem")
    assert cfg.server.client_ca == Path("/etc/signerd/pki/ca.pem")
    assert cfg.server.revoked == Path("/etc/signerd/pki/revoked.txt")
    assert cfg.policies_dir == Path("/etc/signerd/policies")
    assert cfg.hsm.softhsm_conf is None and cfg.genesis == b""
    # Nothing in it depends on where the file is: no path resolves under its folder.
    for value in (cfg.server.tls_cert, cfg.server.client_ca, cfg.server.revoked,
                  cfg.policies_dir):
        assert value is not None and not str(value).startswith(str(tmp_path))


def test_the_sqlite_variant_of_the_example_names_the_state_directory(
        tmp_path: Path, creds: Path) -> None:
    cfg = C.load(example(tmp_path, **{'url = "credential:store-url"':
                                      'url = "sqlite:////var/lib/signerd/signerd.db"'}))
    assert cfg.store_url == "sqlite:////var/lib/signerd/signerd.db"


def test_a_credential_needs_the_credentials_directory_and_says_how(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("CREDENTIALS_DIRECTORY", raising=False)
    with pytest.raises(ConfigError) as e:
        C.load(example(tmp_path))
    assert e.value.message == (
        "config: server.tls_key = 'credential:server-key' needs systemd's CREDENTIALS_DIRECTORY "
        "(LoadCredential= in the unit; outside systemd, as root, set CREDENTIALS_DIRECTORY to "
        "the folder of the credential files)")


@pytest.mark.parametrize("content, needle", [
    (None, "cannot be read (No such file or directory)"),
    ("mysql://root:s3cret-pw@db/x", "must hold one postgresql://... URL"),
])
def test_a_bad_store_url_credential_is_named_without_its_content(
        tmp_path: Path, creds: Path, content: str | None, needle: str) -> None:
    if content is None:
        (creds / "store-url").unlink()
    else:
        (creds / "store-url").write_text(content)
    with pytest.raises(ConfigError) as e:
        C.load(example(tmp_path))
    assert e.value.message == f"config: store.url: the credential {creds / 'store-url'} {needle}"
    assert "s3cret" not in e.value.message


def test_a_credential_name_is_a_file_name(tmp_path: Path, creds: Path) -> None:
    with pytest.raises(ConfigError) as e:
        C.load(example(tmp_path, **{"credential:hsm-pin": "credential:../hsm-pin"}))
    assert e.value.message == ("config: hsm.pin_file = 'credential:../hsm-pin': '../hsm-pin' "
                               "is not a credential name")


def test_relative_paths_resolve_under_the_configs_folder(tmp_path: Path) -> None:
    """A development state folder: everything relative to its signerd.toml, so it can move."""
    path = tmp_path / "signerd.toml"
    path.write_text('instance_id = "i"\n[server]\ninsecure = true\n[hsm]\n'
                    'softhsm_conf = "hsm/softhsm2.conf"\n')
    cfg = C.load(path)
    assert cfg.store_url == f"sqlite:///{tmp_path / 'signerd.db'}"
    assert cfg.hsm.pin_file == tmp_path / "hsm" / "pin"
    assert cfg.hsm.softhsm_conf == tmp_path / "hsm" / "softhsm2.conf"
