#!/usr/bin/env bash
# Installs the system libraries Vaultline links against, when they are missing.
# Used by the README's two commands and by .ci/run; safe to run again.
set -euo pipefail
need=()
for pkg in libzstd-dev liblz4-dev libssl-dev libsqlite3-dev pkg-config; do
    dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || need+=("$pkg")
done
if [ ${#need[@]} -gt 0 ]; then
    SUDO=""
    [ "$(id -u)" -ne 0 ] && SUDO="sudo"
    echo "installing: ${need[*]}" >&2
    $SUDO apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${need[@]}" >&2
fi
