#!/usr/bin/env bash
# Install what signerd needs on Debian 12, as root: system packages (SoftHSM2, OpenSC's
# pkcs11-tool, libsecp256k1) and a virtual environment in .venv with signerd and its test
# dependencies, editable. With --test, also what only the test suite uses: PostgreSQL (replica
# tests), Prometheus' promtool (alert rules), systemd-analyze (unit check), Chromium (the
# holdings page rendered headless) and, with npm, tests/node from its package-lock.json: bip322-js
# (an independent BIP-322 verifier), anvil (a local EVM node), solc-js with OpenZeppelin's sources
# and Safe v1.4.1's build artifacts (Node.js from Debian when none is installed). With
# --production (deploy/DEPLOY.md: the checkout the unit runs), signerd alone, not editable and
# without the test dependencies. Idempotent.
set -euo pipefail
cd "$(dirname "$0")/.."

PKGS=(softhsm2 opensc libsecp256k1-1 python3-venv python3-pip)
TARGET='.[test]'
case "${1:-}" in
  # prometheus: promtool; systemd: systemd-analyze; chromium: the holdings page test
  --test) PKGS+=(postgresql prometheus systemd chromium fonts-dejavu-core)
          command -v npm >/dev/null 2>&1 || PKGS+=(nodejs npm) ;;
  --production) TARGET=. ;;
  "") ;;
  *) echo "usage: install.sh [--test | --production]" >&2; exit 2 ;;
esac
missing=()
for p in "${PKGS[@]}"; do
  dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  if [ "$(id -u)" -ne 0 ]; then
    echo "install.sh: needs root to install ${missing[*]}" >&2
    exit 1
  fi
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

PY=${PYTHON:-python3}
if [ "$TARGET" = . ]; then
  # The daemon runs the venv's interpreter as the signerd user under ProtectHome=yes: it must
  # be the system's python3 (found on the system's default PATH, `getconf PATH`), not one in a
  # home folder (pyenv and the like).
  PY=${PYTHON:-$(PATH=$(getconf PATH) command -v python3)}
  "$PY" - <<'HOMECHECK' || exit 1
import os, pwd, sys
exe = os.path.realpath(sys.executable)
# What ProtectHome=yes hides: root's home, the folders users' homes are in, the runtime folders.
hidden = {p.pw_dir for p in pwd.getpwall() if p.pw_uid == 0}
hidden |= {os.path.dirname(p.pw_dir) for p in pwd.getpwall()
           if 1000 <= p.pw_uid < 65534 and os.path.isdir(p.pw_dir)}
if os.environ.get("XDG_RUNTIME_DIR"):
    hidden.add(os.path.dirname(os.environ["XDG_RUNTIME_DIR"]))
for folder in sorted(h for h in hidden if h and h != os.sep):
    if exe.startswith(folder.rstrip(os.sep) + os.sep):
        sys.exit(f"install.sh: {sys.executable} is {exe}, in {folder}, which the signerd user "
                 "cannot reach (ProtectHome=yes); use the system's python3 (PYTHON=...)")
HOMECHECK
fi
"$PY" - <<'PYCHECK'
import sys
if sys.version_info < (3, 11):
    sys.exit(f"signerd needs Python 3.11 or newer, found {sys.version.split()[0]}")
PYCHECK
if [ -x .venv/bin/python ] && [ "$TARGET" = . ] && \
   [ "$(readlink -f .venv/bin/python)" != "$(readlink -f "$(command -v "$PY")")" ]; then
  echo "install.sh: .venv was made with $(readlink -f .venv/bin/python), not $PY; remove .venv" \
       "and run this again" >&2
  exit 1
fi
if [ ! -x .venv/bin/python ]; then
  "$PY" -m venv .venv
fi
.venv/bin/python -m pip install -q --upgrade pip >/dev/null
if [ "$TARGET" = . ]; then
  # pip builds the wheel in this checkout's build/, which setuptools never empties: after an
  # upgrade (DEPLOY.md, section 9) a module the new version deleted would still be in build/lib,
  # so in the wheel and installed. Build from a clean build/ every time.
  rm -rf build
  .venv/bin/python -m pip install -q .
else
  # An editable install is what development wants; setuptools says so at length on every one.
  PYTHONWARNINGS="ignore::UserWarning:setuptools.command.editable_wheel" \
    .venv/bin/python -m pip install -q -e "$TARGET"
fi
if [ "${1:-}" = --test ]; then
  (cd tests/node && npm ci --no-audit --no-fund --silent)
fi
echo "install.sh: ready (.venv/bin/signerd, .venv/bin/signerctl)"
