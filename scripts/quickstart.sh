#!/usr/bin/env bash
# Quick start: install everything, create ./signerd-state on first run (SoftHSM token, SQLite,
# development PKI, demo operators and policies), and run signerd in the foreground.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install.sh
STATE=${SIGNERD_STATE:-signerd-state}
if [ ! -f "$STATE/signerd.toml" ]; then
  .venv/bin/signerd init "$STATE"
fi
exec .venv/bin/signerd run --config "$STATE/signerd.toml"
