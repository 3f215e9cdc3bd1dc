#!/usr/bin/env bash
# The main job of the quick start: `bash docs/demo.sh` from anywhere.
#
# Sets up a virtual environment `.venv-demo` in the repository root with the package and
# the demo's server (aiosmtpd, trustme) installed, then runs docs/demo.py: a real message
# through each of the three transports to an SMTP server on loopback, the conversation
# printed with secrets redacted, and each recipient's outcome.
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."
export PIP_NO_INPUT=1 PIP_DISABLE_PIP_VERSION_CHECK=1

usable() {
    "$1" -c 'import sys; sys.exit(sys.version_info < (3, 10))' >/dev/null 2>&1
}

python=""
for candidate in "${SMTP_PROTO_PYTHON:-}" python3 python3.13 python3.12 python3.11 python3.10; do
    if [ -n "$candidate" ] && usable "$candidate"; then
        python=$candidate
        break
    fi
done
if [ -z "$python" ] && command -v pyenv >/dev/null 2>&1; then
    # pyenv's shims run only the versions PYENV_VERSION selects: select the newest 3.10+.
    export PYENV_VERSION
    PYENV_VERSION=$(pyenv versions --bare | grep -E '^3\.[1-9][0-9]\.[0-9]+$' | sort -V | tail -n 1)
    usable python3 && python=python3
fi
if [ -z "$python" ]; then
    echo "error: no Python 3.10 or later found" >&2
    exit 2
fi

if ! usable .venv-demo/bin/python; then
    "$python" -m venv --clear .venv-demo
fi
.venv-demo/bin/python -m pip install -q --upgrade pip
.venv-demo/bin/python -m pip install -q -e ".[demo]"
exec .venv-demo/bin/python docs/demo.py
