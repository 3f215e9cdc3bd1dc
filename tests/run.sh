#!/usr/bin/env bash
# The project's test command: `bash tests/run.sh` from anywhere.
#
# For each interpreter (python3.10 and python3.13 unless SMTP_PROTO_PYTHONS names others) it
# creates or reuses a virtual environment `.venv-X.Y` in the repository root, installs the
# package in editable mode with its test and lint extras, and runs the test suite with branch
# coverage, failing below 100%. Then, in the environment of the last interpreter, it runs
# ruff (lint and format check) and mypy, whose strict settings live in pyproject.toml.
#
# pytest is run through the environment's own script, not `python -m pytest`, so the
# repository root is not put on sys.path: the tests import the installed package, which is
# the only way to see that `transports/` really is installed as `smtp_proto.transports`.
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."

# Never stop to ask anything: CI has no stdin.
export PIP_NO_INPUT=1 PIP_DISABLE_PIP_VERSION_CHECK=1

header() {
    printf '\n==> %s\n' "$*"
}

# True if "$1" runs and is a Python this project supports.
usable() {
    "$1" -c 'import sys; sys.exit(sys.version_info < (3, 10))' >/dev/null 2>&1
}

# The tests of the transports talk to a real Postfix: a private instance that
# tests/postfix.py starts on loopback with a configuration of its own. Only the package's
# programs are needed. Where Postfix is missing and we may install it (root, apt-get), do;
# otherwise those tests are skipped, or fail on CI (CI set), where a skip would hide a gap.
postfix_installed() {
    # Postfix's commands live in sbin, which not every user has on PATH.
    PATH="$PATH:/usr/sbin:/sbin" command -v postfix >/dev/null 2>&1
}
if ! postfix_installed; then
    if [[ $(id -u) == 0 ]] && command -v apt-get >/dev/null 2>&1; then
        header "Installing Postfix for the real-server tests (apt-get)"
        # "No configuration": Debian's package then writes no main.cf, and neither its init
        # script nor its systemd unit starts a system instance without one.
        echo "postfix postfix/main_mailer_type select No configuration" | debconf-set-selections
        apt-get update -qq
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postfix
        # Belt and braces: should a system instance be running after all, stop it; the
        # tests use only their own.
        if postfix status >/dev/null 2>&1; then
            postfix stop
        fi
    else
        echo "note: postfix is not installed and cannot be installed here (needs root and" \
            "apt-get); the tests that use a real Postfix will be skipped (fail under CI)" >&2
    fi
fi

read -r -a pythons <<<"${SMTP_PROTO_PYTHONS:-python3.10 python3.13}"
if ((${#pythons[@]} == 0)); then
    echo "error: SMTP_PROTO_PYTHONS names no interpreter" >&2
    exit 2
fi

# pyenv installs several versions side by side but its shims only run the versions that
# PYENV_VERSION (or a .python-version file) selects. If an interpreter is missing and pyenv
# is there, select every installed CPython from 3.10 on, after whatever was selected.
for python in "${pythons[@]}"; do
    if ! usable "$python" && command -v pyenv >/dev/null 2>&1; then
        installed=$(pyenv versions --bare | grep -E '^3\.[1-9][0-9]\.[0-9]+$' | paste -sd: -) || true
        export PYENV_VERSION="${PYENV_VERSION:+$PYENV_VERSION:}$installed"
        break
    fi
done

for python in "${pythons[@]}"; do
    if ! usable "$python"; then
        echo "error: $python is not an installed Python 3.10 or later" >&2
        exit 2
    fi
done

venv=""
for python in "${pythons[@]}"; do
    version=$("$python" -c 'import sys; print("%d.%d" % sys.version_info[:2])')
    venv=".venv-$version"

    header "Python $version: virtual environment $venv"
    # Reuse an environment only if it still runs the same minor version; an interpreter
    # upgraded or removed under it leaves a broken one behind.
    if ! "$venv/bin/python" -c "import sys; sys.exit('%d.%d' % sys.version_info[:2] != '$version')" \
        >/dev/null 2>&1; then
        "$python" -m venv --clear "$venv"
    fi
    "$venv/bin/python" -m pip install -q --upgrade pip
    "$venv/bin/python" -m pip install -q -e ".[test,lint,docs]"

    header "Python $version: pytest with branch coverage (100% required)"
    status=0
    "$venv/bin/pytest" --cov --cov-branch --cov-report=term-missing --cov-fail-under=100 \
        || status=$?
    if ((status == 5)); then
        echo "error: pytest collected no tests" >&2
    fi
    if ((status != 0)); then
        exit "$status"
    fi
done

# The linters judge source code, not the interpreter, so one environment is enough.
header "ruff check (in $venv)"
"$venv/bin/ruff" check .

header "ruff format --check (in $venv)"
"$venv/bin/ruff" format --check .

header "mypy --strict (in $venv)"
"$venv/bin/mypy"

# The suite above replays the whole fuzz corpus through each harness's checks; this runs
# each harness under libFuzzer for a bounded number of inputs (fuzz/README.md), so that a
# harness that no longer starts, or an input mutated from the corpus that breaks an
# invariant, fails the tests. atheris publishes wheels for some interpreters only, and
# building it needs clang: where no wheel fits the smoke is skipped, except under CI.
header "fuzz smoke: every harness for a bounded number of inputs (in $venv)"
if "$venv/bin/python" -m pip install -q --only-binary=:all: atheris >/dev/null 2>&1; then
    PYTHON="$venv/bin/python" bash fuzz/run.sh --smoke >fuzz/smoke.log 2>&1 || {
        tail -n 40 fuzz/smoke.log
        echo "error: the fuzz smoke failed (whole output in fuzz/smoke.log)" >&2
        exit 1
    }
    grep -E '^== |stat::number_of_executed_units' fuzz/smoke.log
elif [[ -n ${CI:-} ]]; then
    echo "error: atheris has no wheel for $venv's Python; the fuzz smoke cannot run" >&2
    exit 1
else
    echo "note: atheris has no wheel for $venv's Python; fuzz smoke skipped" >&2
fi

header "all checks passed"
