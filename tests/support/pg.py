"""A throwaway PostgreSQL cluster for the tests: a real server, never a mock.

``PgCluster.start()`` runs Debian's ``initdb`` in a fresh temporary folder as an unprivileged OS
user (``postgres`` when the tests run as root, else the current user), starts it with ``pg_ctl``
on 127.0.0.1 at a free port with its unix socket inside that folder, and hands out one database
per test module (:meth:`PgCluster.create_database`). ``stop()`` stops the server and removes the
folder. Password (SCRAM) authentication only: the superuser's password is random and lives in a
0600 file inside the folder.

Reasons it cannot start (no PostgreSQL binaries, no unprivileged user, initdb or pg_ctl failing)
raise :class:`PgUnavailable`; the fixtures in ``tests/integration/conftest.py`` turn that into a
skip, and into a failure when ``SIGNERD_CI=1``.
"""
from __future__ import annotations

import atexit
import glob
import os
import pwd
import re
import secrets
import shutil
import socket
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any

SUPERUSER = "signerd_test"


class PgUnavailable(Exception):
    """The throwaway cluster cannot start here; the message says why."""


def _version_key(path: str) -> tuple[int, ...]:
    m = re.search(r"/postgresql/(\d+)(?:\.(\d+))?/bin", path)
    return tuple(int(x) for x in m.groups() if x) if m else (0,)


def find_bindir() -> Path:
    """The folder with initdb, pg_ctl and postgres: env PG_BINDIR, Debian's newest
    /usr/lib/postgresql/N/bin, ``pg_config --bindir``, or PATH."""
    candidates: list[str] = []
    if os.environ.get("PG_BINDIR"):
        candidates.append(os.environ["PG_BINDIR"])
    candidates += sorted(glob.glob("/usr/lib/postgresql/*/bin"), key=_version_key, reverse=True)
    pg_config = shutil.which("pg_config")
    if pg_config:
        try:
            out = subprocess.run([pg_config, "--bindir"], capture_output=True, text=True,
                                 timeout=10)
            if out.returncode == 0 and out.stdout.strip():
                candidates.append(out.stdout.strip())
        except (OSError, subprocess.SubprocessError):
            pass
    initdb = shutil.which("initdb")
    if initdb:
        candidates.append(str(Path(os.path.realpath(initdb)).parent))
    for c in candidates:
        p = Path(c)
        if all((p / b).is_file() and os.access(p / b, os.X_OK)
               for b in ("initdb", "pg_ctl", "postgres")):
            return p
    raise PgUnavailable("PostgreSQL server binaries (initdb, pg_ctl, postgres) not found: "
                        "install Debian's postgresql package (scripts/install.sh does)")


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class PgCluster:
    def __init__(self) -> None:
        self.bindir: Path | None = None
        self.root: Path | None = None
        self.port = 0
        self.password = secrets.token_hex(16)
        self.user: str | None = None  # OS user running the server (None: ourselves)
        self._started = False
        self._dbs = 0

    # ---------------------------------------------------------------- paths
    @property
    def data(self) -> Path:
        assert self.root is not None
        return self.root / "data"

    @property
    def logfile(self) -> Path:
        assert self.root is not None
        return self.root / "server.log"

    def _run(self, args: list[str], timeout: float = 120) -> subprocess.CompletedProcess[str]:
        kw: dict[str, Any] = {}
        if self.user is not None:
            pw = pwd.getpwnam(self.user)
            kw = {"user": pw.pw_uid, "group": pw.pw_gid, "extra_groups": []}
        env = {k: v for k, v in os.environ.items() if not k.startswith("PG")}
        env.update(LC_ALL="C.UTF-8", LANG="C.UTF-8", HOME=str(self.root))
        return subprocess.run(args, capture_output=True, text=True, timeout=timeout, env=env,
                              cwd=str(self.root), stdin=subprocess.DEVNULL, **kw)

    # ---------------------------------------------------------------- lifecycle
    def start(self) -> "PgCluster":
        self.bindir = find_bindir()
        atexit.register(self.stop)  # also when the session ends without its fixture teardown
        if os.geteuid() == 0:
            # the server refuses to run as root: use Debian's unprivileged postgres user
            try:
                pwd.getpwnam("postgres")
            except KeyError:
                raise PgUnavailable("running as root and there is no 'postgres' OS user to "
                                    "run the server as (Debian's postgresql package creates it)"
                                    ) from None
            self.user = "postgres"
        base = os.environ.get("SIGNERD_PG_TMP", "/tmp")
        self.root = Path(tempfile.mkdtemp(prefix="signerd-pg-", dir=base))
        if len(str(self.root)) > 80:  # unix socket paths are limited to 107 bytes
            shutil.rmtree(self.root, ignore_errors=True)
            self.root = Path(tempfile.mkdtemp(prefix="signerd-pg-", dir="/tmp"))
        try:
            self._initdb()
            last = ""
            for _ in range(5):  # a free port can be taken between the probe and the bind
                self.port = free_port()
                r = self._run([str(self.bindir / "pg_ctl"), "start", "-w", "-t", "60",
                               "-D", str(self.data), "-l", str(self.logfile), "-o",
                               f"-c listen_addresses=127.0.0.1 -c port={self.port}"
                               f" -c unix_socket_directories={self.root}"])
                if r.returncode == 0:
                    self._started = True
                    break
                last = (r.stderr or r.stdout).strip() + "\n" + self._log_tail()
                self._run([str(self.bindir / "pg_ctl"), "stop", "-m", "immediate",
                           "-D", str(self.data)])
            else:
                raise PgUnavailable(f"pg_ctl start failed: {last[-1500:]}")
            self._wait_ready()
        except PgUnavailable:
            self.stop()
            raise
        except (OSError, subprocess.SubprocessError) as e:
            self.stop()
            raise PgUnavailable(f"cannot start a PostgreSQL cluster: {e}") from None
        return self

    def _initdb(self) -> None:
        assert self.root is not None and self.bindir is not None
        pwfile = self.root / "pwfile"
        pwfile.write_text(self.password + "\n")
        os.chmod(pwfile, 0o600)
        os.chmod(self.root, 0o700)
        if self.user is not None:
            pw = pwd.getpwnam(self.user)
            os.chown(self.root, pw.pw_uid, pw.pw_gid)
            os.chown(pwfile, pw.pw_uid, pw.pw_gid)
        r = self._run([str(self.bindir / "initdb"), "-D", str(self.data), "-U", SUPERUSER,
                       "--pwfile", str(pwfile), "--auth", "scram-sha-256", "-E", "UTF8",
                       "--locale", "C.UTF-8", "--no-sync"])
        pwfile.unlink()
        if r.returncode != 0:
            raise PgUnavailable(f"initdb failed: {(r.stderr or r.stdout).strip()[-1500:]}")
        # A test cluster: durability of the throwaway data does not matter, locks and
        # transactions behave the same with fsync off. Room for two replicas' worker threads.
        with open(self.data / "postgresql.conf", "a") as f:
            f.write("\n# signerd test cluster\nfsync = off\nfull_page_writes = off\n"
                    "max_connections = 300\nshared_buffers = 64MB\n"
                    "log_min_messages = warning\nlog_lock_waits = on\ndeadlock_timeout = 1s\n")

    def _log_tail(self) -> str:
        try:
            return self.logfile.read_text(errors="replace")[-1500:]
        except OSError:
            return ""

    def _wait_ready(self, timeout: float = 30) -> None:
        import psycopg

        deadline = time.time() + timeout
        last: Exception | None = None
        while time.time() < deadline:
            try:
                with psycopg.connect(self.url("postgres"), connect_timeout=5) as c:
                    c.execute("SELECT 1")
                return
            except psycopg.Error as e:
                last = e
                time.sleep(0.2)
        raise PgUnavailable(f"the cluster started but refuses connections: {last}\n"
                            f"{self._log_tail()}")

    def url(self, dbname: str) -> str:
        return f"postgresql://{SUPERUSER}:{self.password}@127.0.0.1:{self.port}/{dbname}"

    def create_database(self, hint: str = "db") -> str:
        """A new empty database; returns its URL."""
        import psycopg

        self._dbs += 1
        name = re.sub(r"[^a-z0-9_]", "_", hint.lower())[:40] + f"_{self._dbs}"
        with psycopg.connect(self.url("postgres"), autocommit=True) as c:
            c.execute(f'CREATE DATABASE "{name}"')
        return self.url(name)

    def drop_database(self, url: str) -> None:
        import psycopg

        name = url.rsplit("/", 1)[1]
        try:
            with psycopg.connect(self.url("postgres"), autocommit=True) as c:
                c.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        except psycopg.Error:
            pass  # best effort: the whole cluster goes at the end anyway

    def stop(self) -> None:
        if self.root is None:
            return
        if self._started and self.bindir is not None:
            try:
                self._run([str(self.bindir / "pg_ctl"), "stop", "-m", "fast", "-w", "-t", "30",
                           "-D", str(self.data)], timeout=60)
            except (OSError, subprocess.SubprocessError):
                self._run([str(self.bindir / "pg_ctl"), "stop", "-m", "immediate",
                           "-D", str(self.data)], timeout=60)
            self._started = False
        shutil.rmtree(self.root, ignore_errors=True)
        self.root = None


__all__ = ["PgCluster", "PgUnavailable", "find_bindir", "free_port", "SUPERUSER"]
