#!/usr/bin/env bash
# Run every atheris harness in turn, with its seed corpus and the SMTP dictionary.
#
#   bash fuzz/run.sh            60 seconds per harness
#   bash fuzz/run.sh 600        600 seconds per harness
#   bash fuzz/run.sh --smoke    2000 runs per harness, for CI
#   bash fuzz/run.sh 600 fuzz_data fuzz_replies    only the harnesses named
#
# Crashes and other artifacts go to fuzz/findings/<harness>/; the inputs each run adds to
# the corpus go to fuzz/generated/<harness>/ (both ignored by git). The interpreter is
# $PYTHON, or the repository's .venv-3.13, which needs atheris (pip install atheris).
# Extra libFuzzer options can be passed in $FUZZ_OPTIONS. Exits non-zero if any harness
# found something.
set -uo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
root=$(dirname "$here")
python=${PYTHON:-$root/.venv-3.13/bin/python}
harnesses=(fuzz_replies fuzz_connection fuzz_data fuzz_ehlo_auth fuzz_batch)

case "${1:-60}" in
    --smoke) budget=(-runs=2000) ;;
    *[!0-9]* | "")
        echo "usage: bash fuzz/run.sh [SECONDS | --smoke]" >&2
        exit 2
        ;;
    *) budget=(-max_total_time="${1:-60}") ;;
esac
if (($# > 1)); then
    harnesses=("${@:2}")
fi

if ! "$python" -c "import atheris" 2>/dev/null; then
    echo "atheris is not installed for $python (pip install atheris)" >&2
    exit 2
fi

failed=()
for harness in "${harnesses[@]}"; do
    findings=$here/findings/$harness
    generated=$here/generated/$harness
    mkdir -p "$findings" "$generated"
    echo "== $harness (${budget[*]})"
    # libFuzzer writes new inputs to the first corpus directory and only reads the others.
    # shellcheck disable=SC2086 # FUZZ_OPTIONS is a list of options
    if ! "$python" "$here/$harness.py" \
        "${budget[@]}" \
        -dict="$here/smtp.dict" \
        -artifact_prefix="$findings/" \
        -max_len=4096 \
        -timeout=20 \
        -rss_limit_mb=2048 \
        -print_final_stats=1 \
        ${FUZZ_OPTIONS:-} \
        "$generated" "$here/corpus/$harness"; then
        failed+=("$harness")
    fi
done

if ((${#failed[@]})); then
    echo "findings in: ${failed[*]} (see fuzz/findings/)" >&2
    exit 1
fi
echo "no findings"
