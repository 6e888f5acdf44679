#!/usr/bin/env bash
# Installs everything kiln needs on a fresh Debian/Ubuntu machine with Node 20, as root, and builds it.
# Idempotent: a second run installs nothing new and only rebuilds.
set -euo pipefail
cd "$(dirname "$0")/.."

# System packages: the sandbox (bubblewrap, libseccomp for the filter compiler), the C toolchain for
# our init and for c/cpp jobs, the language runtimes the catalog offers, PostgreSQL for the tests, and
# Chromium for the browser tests (playwright-core drives it; no browser is downloaded).
APT_PACKAGES=(
  bubblewrap libseccomp-dev gcc g++ make util-linux iproute2
  python3 bash dash perl tcl default-jdk-headless ruby php-cli lua5.4
  postgresql chromium
)
missing=()
for p in "${APT_PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  if [ "$(id -u)" -ne 0 ]; then
    echo "setup: these packages are missing and installing them needs root: ${missing[*]}" >&2
    exit 1
  fi
  echo "setup: installing ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  # Debian starts a cluster when it installs postgresql; the tests make their own databases anyway.
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

npm ci --no-audit --no-fund --loglevel=error
npm run build --silent
if [ -f packages/runner/native/Makefile ]; then
  make -s -C packages/runner/native
fi
echo "setup: done"
