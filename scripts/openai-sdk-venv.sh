#!/usr/bin/env bash
# Install the official OpenAI and Anthropic Python SDKs in a virtual
# environment for tests/gateway/openai_sdk.rs and anthropic_sdk.rs, which
# drive the gateway's OpenAI-compatible API and its Messages API with them.
#
# Usage (from the repository root, or anywhere):
#   eval "$(scripts/openai-sdk-venv.sh)"
#   cargo test --test openai_sdk
#
# On success it prints two shell lines for the caller to evaluate:
#   export OPENAI_SDK_PYTHON=<repo>/target/openai-sdk-venv/bin/python
#   export ANTHROPIC_SDK_PYTHON=<the same interpreter>
# On failure (no python3, no venv module, no network) it prints nothing and
# exits 1; the SDK tests then say they are skipped. Everything else goes to
# stderr. Running it again reuses the environment when the pinned version is
# already installed, so it is cheap.
#
# PYTHON picks the interpreter (default python3, 3.9 or newer);
# OPENAI_SDK_VENV the folder (default target/openai-sdk-venv, which the
# `/target` line of .gitignore already covers).
set -euo pipefail

# The SDK version the tests are written against. Bump deliberately: the
# streaming error behaviour the tests assert lives in openai/_streaming.py.
OPENAI_VERSION=3.57.0
# The Anthropic SDK version the Messages API tests are written against.
ANTHROPIC_VERSION=2.16.0

log() { printf 'openai-sdk-venv: %s\n' "$*" >&2; }

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
venv=${OPENAI_SDK_VENV:-$root/target/openai-sdk-venv}
python=${PYTHON:-python3}

installed_version() {
    "$venv/bin/python" -c 'import openai, anthropic; print(openai.__version__, anthropic.__version__)' \
        2>/dev/null || true
}

if [[ "$(installed_version)" != "$OPENAI_VERSION $ANTHROPIC_VERSION" ]]; then
    if ! command -v "$python" >/dev/null 2>&1; then
        log "no $python on PATH"
        exit 1
    fi
    log "creating $venv with $("$python" --version 2>&1)"
    if "$python" -m venv --clear "$venv" >&2; then
        pip=("$venv/bin/python" -m pip)
    else
        # Debian's python3 has no ensurepip without the python3-venv
        # package: make the environment without pip and install into it
        # with the system's pip (22.3 or newer for --python).
        log "python3 -m venv failed; trying without pip, installing with $python -m pip"
        "$python" -m venv --clear --without-pip "$venv" >&2
        pip=("$python" -m pip --python "$venv/bin/python")
    fi
    log "installing openai==$OPENAI_VERSION anthropic==$ANTHROPIC_VERSION"
    "${pip[@]}" install --quiet --disable-pip-version-check \
        "openai==$OPENAI_VERSION" "anthropic==$ANTHROPIC_VERSION" >&2
    if [[ "$(installed_version)" != "$OPENAI_VERSION $ANTHROPIC_VERSION" ]]; then
        log "openai $OPENAI_VERSION and anthropic $ANTHROPIC_VERSION are not importable in $venv after installing"
        exit 1
    fi
fi

log "openai $OPENAI_VERSION and anthropic $ANTHROPIC_VERSION ready in $venv"
printf 'export OPENAI_SDK_PYTHON=%q\n' "$venv/bin/python"
printf 'export ANTHROPIC_SDK_PYTHON=%q\n' "$venv/bin/python"
