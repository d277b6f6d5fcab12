#!/usr/bin/env bash
# Set up a SoftHSM2 token for signerd by hand (what `signerd init` does for its state folder).
#   setup-token.sh DIR [LABEL]
# Writes DIR/softhsm2.conf (from softhsm2.conf.template), DIR/tokens/, and random PINs in
# DIR/pin and DIR/so-pin (mode 0600). Point signerd at it with [hsm] softhsm_conf, token and
# pin_file. Refuses to touch an existing DIR/softhsm2.conf.
set -euo pipefail
dir=${1:?usage: setup-token.sh DIR [LABEL]}
label=${2:-signerd}
here=$(cd "$(dirname "$0")" && pwd)
mkdir -p "$dir/tokens"
chmod 700 "$dir" "$dir/tokens"
dir=$(cd "$dir" && pwd)
if [ -e "$dir/softhsm2.conf" ]; then
  echo "setup-token.sh: $dir/softhsm2.conf exists; refusing to overwrite" >&2
  exit 1
fi
sed "s|{tokendir}|$dir/tokens|" "$here/softhsm2.conf.template" > "$dir/softhsm2.conf"
umask 077
pin=$(od -An -N16 -tx1 /dev/urandom | tr -d ' \n')
so_pin=$(od -An -N16 -tx1 /dev/urandom | tr -d ' \n')
printf '%s\n' "$pin" > "$dir/pin"
printf '%s\n' "$so_pin" > "$dir/so-pin"
SOFTHSM2_CONF="$dir/softhsm2.conf" softhsm2-util --init-token --free --label "$label" \
  --so-pin "$so_pin" --pin "$pin" >/dev/null
echo "token '$label' ready: SOFTHSM2_CONF=$dir/softhsm2.conf, PIN in $dir/pin"
