#!/usr/bin/env bash
# System packages the test suite needs beyond Python: Debian's chromium, which the browser tests drive
# (Playwright never downloads a browser), and PostGIS for PostgreSQL 15 (geo matching's scale-out index). Idempotent and quiet when they are already installed; without
# root or apt-get it says what is missing and carries on (the browser tests then skip with a reason).
set -euo pipefail
missing=()
[ -x /usr/bin/chromium ] || missing+=(chromium)
[ -f /usr/share/postgresql/15/extension/postgis.control ] || missing+=(postgresql-15-postgis-3)
[ ${#missing[@]} -eq 0 ] && exit 0
if [ "$(id -u)" -eq 0 ] && command -v apt-get >/dev/null; then
    echo "installing ${missing[*]} (apt-get)"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
else
    echo "note: ${missing[*]} not installed (needs root and apt-get); the browser tests (chromium) or PostGIS matching tests will fail or be skipped" >&2
fi
