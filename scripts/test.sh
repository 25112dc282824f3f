#!/usr/bin/env bash
# The whole test suite: set-up check, lint, types, then every test (as root: the kernel
# tests build network namespaces and run real traffic).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
echo "== ruff"; .venv/bin/ruff check common npc router tests bench
echo "== mypy"; .venv/bin/mypy
echo "== pytest"; .venv/bin/pytest -q -p no:cacheprovider "$@"
