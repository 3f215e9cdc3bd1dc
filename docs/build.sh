#!/usr/bin/env bash
# Build the documentation: `bash docs/build.sh` from anywhere, on a fresh machine.
#
# Sets up a virtual environment `.venv-docs` in the repository root with the package and its
# `docs` extra (Sphinx, furo), the `trio` extra (the trio transport's reference imports it)
# and the `testing` extra (Hypothesis, which the testing toolkit's strategies import), then
# builds the HTML into docs/_build/html with warnings as errors, and runs every
# example in the pages (the doctest builder). Extra arguments go to both sphinx-build runs.
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

if ! usable .venv-docs/bin/python; then
    "$python" -m venv --clear .venv-docs
fi
.venv-docs/bin/python -m pip install -q --upgrade pip
.venv-docs/bin/python -m pip install -q -e ".[docs,trio,testing]"

# -E: read every page again, since the tables come from the engine's code, which Sphinx
# does not watch for changes.
.venv-docs/bin/sphinx-build -E -W --keep-going -b html docs docs/_build/html "$@"
.venv-docs/bin/sphinx-build -E -W --keep-going -b doctest docs docs/_build/doctest "$@"
echo "documentation built: docs/_build/html/index.html"
