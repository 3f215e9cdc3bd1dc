#!/usr/bin/env bash
# Mutation testing of the engine: `bash tests/mutation.sh` from anywhere.
#
# mutmut (settings in the [tool.mutmut] table of pyproject.toml) makes small changes to the
# code of smtp_proto/ (not smtp_proto/testing/), one at a time, and runs the engine's unit
# tests against each: a change no test notices ("survived") is a behaviour nothing asserts.
# The score is the share of changes some test noticed ("killed"); below
# SMTP_PROTO_MUTATION_MIN percent (90 unless set) the script fails. docs/how-it-is-tested.rst
# records the last score and why the survivors that remain are harmless.
#
# It is slow, so it is not part of tests/run.sh or CI: about 3,100 mutants took 25 to 40
# minutes on one core of a 2-core machine. SMTP_PROTO_MUTATION_JOBS (1 unless set) is the
# number of mutants tested at once.
#
# It creates or reuses a virtual environment `.venv-mutation` in the repository root (Python
# 3.13, or SMTP_PROTO_MUTATION_PYTHON), installs the package with its test extra and mutmut,
# and starts afresh: the mutants/ directory of a previous run is removed. Afterwards, in
# the repository root, `.venv-mutation/bin/mutmut results` lists the survivors and
# `.venv-mutation/bin/mutmut show NAME` shows one.
#
# mutmut copies the code into mutants/ and puts that directory first on sys.path, so the
# tests import the mutated copy, not the editable install; before it starts, it checks that
# a mutant forced to fail does make the tests fail, and stops if not.
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."

export PIP_NO_INPUT=1 PIP_DISABLE_PIP_VERSION_CHECK=1
# Hypothesis's "ci" profile (tests/conftest.py) derandomizes the property tests, so that a
# mutant is judged by the same examples on every run.
export HYPOTHESIS_PROFILE=ci

python=${SMTP_PROTO_MUTATION_PYTHON:-python3.13}
jobs=${SMTP_PROTO_MUTATION_JOBS:-1}
minimum=${SMTP_PROTO_MUTATION_MIN:-90}
venv=.venv-mutation

usable() {
    "$1" -c 'import sys; sys.exit(sys.version_info < (3, 10))' >/dev/null 2>&1
}

# As in tests/run.sh: pyenv's shims run only the versions PYENV_VERSION selects.
if ! usable "$python" && command -v pyenv >/dev/null 2>&1; then
    installed=$(pyenv versions --bare | grep -E '^3\.[1-9][0-9]\.[0-9]+$' | paste -sd: -) || true
    export PYENV_VERSION="${PYENV_VERSION:+$PYENV_VERSION:}$installed"
fi
if ! usable "$python"; then
    echo "error: $python is not an installed Python 3.10 or later" >&2
    exit 2
fi

version=$("$python" -c 'import sys; print("%d.%d" % sys.version_info[:2])')
if ! "$venv/bin/python" -c "import sys; sys.exit('%d.%d' % sys.version_info[:2] != '$version')" \
    >/dev/null 2>&1; then
    "$python" -m venv --clear "$venv"
fi
"$venv/bin/python" -m pip install -q --upgrade pip
"$venv/bin/python" -m pip install -q -e ".[test]" "mutmut>=3.8,<4"

rm -rf mutants
start=$SECONDS
"$venv/bin/mutmut" run --max-children "$jobs"
elapsed=$((SECONDS - start))

"$venv/bin/mutmut" export-cicd-stats >/dev/null
"$venv/bin/python" - "$minimum" "$elapsed" <<'EOF'
import json
import sys

minimum, elapsed = float(sys.argv[1]), int(sys.argv[2])
with open("mutants/mutmut-cicd-stats.json") as file:
    stats = json.load(file)
total, killed = stats["total"], stats["killed"]
score = 100 * killed / total if total else 0.0
print()
print(f"mutants: {total}, killed: {killed} ({score:.1f}%)")
others = ("survived", "timeout", "suspicious", "no_tests", "skipped", "segfault")
print(", ".join(f"{name.replace('_', ' ')}: {stats[name]}" for name in others))
print(f"time: {elapsed // 60} min {elapsed % 60} s")
if score < minimum:
    print(f"error: the score is below {minimum:g}%", file=sys.stderr)
    sys.exit(1)
EOF
