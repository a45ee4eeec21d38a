#!/usr/bin/env bash
# The README's main-job command: installs what is missing, builds, and runs `vaultline demo`.
set -euo pipefail
cd "$(dirname "$0")/.."
tools/setup.sh
VL=$(tools/release-binary)
exec "$VL" demo "$@"
