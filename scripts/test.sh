#!/usr/bin/env bash
# The whole test suite: installs and builds everything first, then runs every test on SQLite and
# PostgreSQL. Ends with `N passed, N failed` and exits non-zero on any failure.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
npx vitest run "$@"
