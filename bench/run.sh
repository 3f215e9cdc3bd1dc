#!/usr/bin/env bash
# The benchmark, in one command: `bash bench/run.sh [--quick] [--repeats N]`.
#
# It creates (or reuses) a virtual environment `.venv-bench` in the repository root with
# Python 3.13, installs the package (editable) with trio and the peers compared against
# (aiosmtplib and smtpproto), installs Debian's Postfix for smtp-sink and smtp-source if
# they are missing, and runs bench/harness.py, which starts its servers on loopback, runs
# the workloads, prints the table and writes bench/results.md.
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."

export PIP_NO_INPUT=1 PIP_DISABLE_PIP_VERSION_CHECK=1
# smtp-sink and smtp-source live in /usr/sbin, which a non-login shell may not have.
export PATH="$PATH:/usr/sbin:/usr/local/sbin"

# The interpreter: python3.13 if it runs, otherwise pyenv's newest 3.13.
python=""
if python3.13 -c 'import sys' >/dev/null 2>&1; then
    python=python3.13
elif command -v pyenv >/dev/null 2>&1; then
    version=$(pyenv versions --bare | grep '^3\.13' | tail -1 || true)
    if [ -n "$version" ]; then
        python="$(pyenv root)/versions/$version/bin/python"
    fi
fi
if [ -z "$python" ]; then
    echo "bench: Python 3.13 is needed (python3.13, or pyenv with a 3.13)" >&2
    exit 1
fi

venv=.venv-bench
if [ ! -x "$venv/bin/python" ]; then
    "$python" -m venv "$venv"
fi
if ! "$venv/bin/python" -c 'import smtp_proto, trio, aiosmtplib, smtpproto' >/dev/null 2>&1; then
    "$venv/bin/python" -m pip install --quiet --upgrade pip
    "$venv/bin/python" -m pip install --quiet -e '.[trio]' aiosmtplib smtpproto
fi

if ! command -v smtp-sink >/dev/null 2>&1 || ! command -v smtp-source >/dev/null 2>&1; then
    if [ "$(id -u)" -ne 0 ]; then
        echo "bench: smtp-sink/smtp-source missing; run as root or install postfix" >&2
        exit 1
    fi
    # Install the package without letting its configuration ask anything or start a
    # mail system: only the two test programs are used.
    export DEBIAN_FRONTEND=noninteractive
    echo "postfix postfix/main_mailer_type select No configuration" | debconf-set-selections
    apt-get update -qq
    apt-get install -y -qq postfix >/dev/null
fi

exec "$venv/bin/python" -m bench.harness "$@"
