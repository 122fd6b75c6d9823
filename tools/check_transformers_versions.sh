#!/usr/bin/env bash
# Which transformers 5.x releases does hftk work with? For each version: a fresh venv (no system
# site-packages), torch 2.13.0 first (the local CPU build), then hftk's dependencies with that
# transformers pinned, then the model-family tests (tests/models).
#
#   tools/check_transformers_versions.sh                # oldest and newest 5.x that pip offers
#   tools/check_transformers_versions.sh 5.10.4 5.24.0  # chosen versions
#
# pip cannot install hftk itself with another transformers than pyproject.toml allows, so the
# dependency list is read from pyproject.toml with the transformers entry replaced by `==VERSION`
# and hftk goes in with --no-deps. Older releases may not agree with hftk's pins of shared
# dependencies (huggingface-hub, tokenizers, ...): the script first tries hftk's pins as they are
# ("strict") and, when pip finds them in conflict, once more with only torch and transformers
# pinned ("relaxed"), and reports what pip chose. Results go to $WORKDIR/results.md.
#
# Environment: WORKDIR (default ${TMPDIR:-/tmp}/hftk-transformers-check), PYTHON (default
# python3), PYTEST_ARGS (default "-q -p no:cacheprovider"), HFTK_SHARED_DIR (passed to the tests).
set -uo pipefail
repo="$(cd "$(dirname "$0")/.." && pwd)"
workdir="${WORKDIR:-${TMPDIR:-/tmp}/hftk-transformers-check}"
python="${PYTHON:-python3}"
mkdir -p "$workdir"
results="$workdir/results.md"

if [ $# -gt 0 ]; then
    versions=("$@")
else
    # `pip index versions` lists newest first; keep the 5.x final releases.
    mapfile -t all < <("$python" -m pip index versions transformers 2>/dev/null \
        | sed -n 's/^Available versions: //p' | tr ',' '\n' | tr -d ' ' | grep -E '^5\.[0-9]+\.[0-9]+$')
    if [ ${#all[@]} -eq 0 ]; then
        echo "pip index versions transformers listed no 5.x release" >&2
        exit 2
    fi
    versions=("${all[-1]}" "${all[0]}")
fi

# hftk's runtime + test requirements from pyproject.toml; $1 = transformers version, $2 = strict|relaxed.
requirements() {
    "$python" - "$repo/pyproject.toml" "$1" "$2" <<'EOF'
import re, sys, tomllib
project = tomllib.load(open(sys.argv[1], "rb"))["project"]
version, mode = sys.argv[2], sys.argv[3]
for requirement in project["dependencies"] + project["optional-dependencies"]["test"]:
    name = re.match(r"[A-Za-z0-9_.-]+", requirement).group(0)
    if name.lower() == "transformers":
        print(f"transformers=={version}")
    elif mode == "relaxed" and name.lower() not in ("torch",):
        print(name)
    else:
        print(requirement)
EOF
}

echo "# transformers versions checked $(date -u +%Y-%m-%dT%H:%MZ) on $(git -C "$repo" rev-parse --short HEAD)" >>"$results"
for version in "${versions[@]}"; do
    log="$workdir/transformers-$version.log"
    : >"$log"
    outcome=""
    for mode in strict relaxed; do
        venv="$workdir/venv-$version"
        rm -rf "$venv"
        "$python" -m venv "$venv"
        pip=("$venv/bin/python" -m pip install -q --disable-pip-version-check)
        requirements "$version" "$mode" >"$workdir/requirements-$version-$mode.txt"
        echo "== $mode: $(tr '\n' ' ' <"$workdir/requirements-$version-$mode.txt")" >>"$log"
        if ! "${pip[@]}" torch==2.13.0 >>"$log" 2>&1; then
            outcome="torch install failed"
            break
        fi
        if "${pip[@]}" -r "$workdir/requirements-$version-$mode.txt" >>"$log" 2>&1 \
            && "${pip[@]}" --no-deps -e "$repo" >>"$log" 2>&1; then
            outcome="installed ($mode pins)"
            break
        fi
        outcome="pip could not install with $mode pins (see $log)"
    done
    if [[ "$outcome" != installed* ]]; then
        echo "| $version | $outcome | not run |" | tee -a "$results"
        continue
    fi
    chosen=$("$venv/bin/python" -m pip freeze 2>/dev/null \
        | grep -iE '^(torch|transformers|accelerate|peft|datasets|tokenizers|huggingface-hub|huggingface_hub|safetensors)==' \
        | tr '\n' ' ')
    # Run from the venv, in the repository, without the caller's PYTHONPATH (it may point at another hftk).
    summary=$(cd "$repo" && env -u PYTHONPATH HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1 TOKENIZERS_PARALLELISM=false \
        OMP_NUM_THREADS="${OMP_NUM_THREADS:-1}" "$venv/bin/python" -m pytest tests/models ${PYTEST_ARGS:--q -p no:cacheprovider} \
        2>&1 | tee -a "$log" | tail -n 1)
    echo "| $version | $outcome: $chosen | $summary |" | tee -a "$results"
done
