#!/usr/bin/env bash
# The whole test suite: installs what it needs, then runs every test against a real SoftHSM
# token, real daemons on loopback, SQLite and a throwaway PostgreSQL cluster.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install.sh --test
export PYTHONHASHSEED=0
exec .venv/bin/python -m pytest -q -p no:cacheprovider "$@"
