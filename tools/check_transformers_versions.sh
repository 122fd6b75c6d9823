#!/usr/bin/env bash
# Which transformers 5.x releases does hftk work with? For each version: a fresh venv (no system
# site-packages), torch 2.13.0 first (the local CPU build), then hftk's dependencies with that
# transformers pinned, then the model-family tests (tests/models, transformers' own common model
# and generation tests among them).
#
#   tools/check_transformers_versions.sh                # oldest and newest release pyproject.toml allows
#   tools/check_transformers_versions.sh 5.10.4 5.24.0  # chosen versions
#   tools/check_transformers_versions.sh --allowed      # list the allowed releases pip offers, oldest first
#
# Version policy. pyproject.toml pins `transformers>=LOW,<HIGH`:
# - HIGH is the minor release after the newest one the whole suite passed on. A new release is let in
#   by: vendoring its sdist's test_modeling_common.py / test_configuration_common.py into
#   tests/models/conformance/upstream (provenance in its README.md), running this script on it, then
#   the whole suite (`pytest`) in an environment that has it, and raising HIGH to the next minor.
#   Until then pip keeps users on the last release that passed, even where a newer one is installed.
# - LOW is the oldest release the model tests pass on, vendored tests included: those are the newest
#   release's and call its API (5.18-5.22 lack `activation_checkpointing_enable`, and 5.18 the
#   testing helpers they import and the `Pipeline._prepare_generate_kwargs` hftk's seq2seq pipeline
#   calls), so LOW moves up when a refresh of the vendored tests needs it; raising LOW is the way to
#   drop a release, never a silent break.
# - hftk's models follow the installed release's names (the KV cache is `cache` from 5.24 on,
#   `past_key_values` before), so no deprecation warning comes from hftk's code on any allowed release.
# - CI (.ci/run) runs the whole suite on the default install and the model tests once more on the
#   newest allowed release, with this script, when the default install has another one.
#
# pip cannot install hftk itself with another transformers than pyproject.toml allows, so the
# dependency list is read from pyproject.toml with the transformers entry replaced by `==VERSION`
# and hftk goes in with --no-deps. Older releases may not agree with hftk's pins of shared
# dependencies (huggingface-hub, tokenizers, ...): the script first tries hftk's pins as they are
# ("strict") and, when pip finds them in conflict, once more with only torch and transformers
# pinned ("relaxed"), and reports what pip chose. Results go to $WORKDIR/results.md; the exit
# status is 1 when a version did not install or its tests did not all pass.
#
# Environment: WORKDIR (default ${TMPDIR:-/tmp}/hftk-transformers-check), PYTHON (default
# python3), PYTEST_ARGS (default "-q -p no:cacheprovider"), HFTK_SHARED_DIR (passed to the tests).
set -uo pipefail
repo="$(cd "$(dirname "$0")/.." && pwd)"
workdir="${WORKDIR:-${TMPDIR:-/tmp}/hftk-transformers-check}"
python="${PYTHON:-python3}"
mkdir -p "$workdir"
results="$workdir/results.md"

# The 5.x final releases pip offers that pyproject.toml's transformers pin allows, oldest first.
allowed_versions() {
    "$python" -m pip index versions transformers 2>/dev/null | sed -n 's/^Available versions: //p' \
        | "$python" -c '
import re, sys, tomllib
from packaging.specifiers import SpecifierSet
from packaging.version import Version
dependencies = tomllib.load(open(sys.argv[1], "rb"))["project"]["dependencies"]
pin = next(d for d in dependencies if re.match(r"transformers\b", d))
allowed = SpecifierSet(pin.removeprefix("transformers"))
versions = {Version(v.strip()) for v in sys.stdin.read().split(",") if re.fullmatch(r"5\.\d+\.\d+", v.strip())}
print("\n".join(str(v) for v in sorted(versions) if v in allowed))
' "$repo/pyproject.toml"
}

if [ "${1:-}" = "--allowed" ]; then
    allowed_versions
    exit
elif [ $# -gt 0 ]; then
    versions=("$@")
else
    mapfile -t all < <(allowed_versions)
    if [ ${#all[@]} -eq 0 ]; then
        echo "pip index versions transformers listed no release that pyproject.toml allows" >&2
        exit 2
    fi
    versions=("${all[0]}" "${all[-1]}")
fi

# hftk's runtime + test requirements from pyproject.toml; $1 = transformers version, $2 = strict|relaxed.
requirements() {
    "$python" - "$repo/pyproject.toml" "$1" "$2" <<'EOF'
import re, sys, tomllib
project = tomllib.load(open(sys.argv[1], "rb"))["project"]
version, mode = sys.argv[2], sys.argv[3]
extras = project["optional-dependencies"]


def expand(requirements):
    """hftk's own extras named inside another (`hftk[onnx]` in `test`) stand for their requirements."""
    for requirement in requirements:
        own = re.fullmatch(r"hftk\[([A-Za-z0-9_,-]+)\]", requirement)
        if own:
            for extra in own.group(1).split(","):
                yield from expand(extras[extra])
        else:
            yield requirement


for requirement in expand(project["dependencies"] + extras["test"]):
    name = re.match(r"[A-Za-z0-9_.-]+", requirement).group(0)
    if name.lower() == "transformers":
        print(f"transformers=={version}")
    elif mode == "relaxed" and name.lower() not in ("torch",):
        print(name)
    else:
        print(requirement)
EOF
}

status=0
echo "# transformers versions checked $(date -u +%Y-%m-%dT%H:%MZ) on $(git -C "$repo" rev-parse --short HEAD)" >>"$results"
for version in "${versions[@]}"; do
    log="$workdir/transformers-$version.log"
    : >"$log"
    modes=(strict relaxed)
    venv="$workdir/venv-$version"
    rm -rf "$venv"
    "$python" -m venv "$venv"
    pip=("$venv/bin/python" -m pip install -q --disable-pip-version-check)
    outcome="torch install failed"
    "${pip[@]}" torch==2.13.0 >>"$log" 2>&1 || modes=()
    # A resolution that fails installs nothing, so the relaxed try reuses the venv.
    for mode in "${modes[@]}"; do
        requirements "$version" "$mode" >"$workdir/requirements-$version-$mode.txt"
        echo "== $mode: $(tr '\n' ' ' <"$workdir/requirements-$version-$mode.txt")" >>"$log"
        if "${pip[@]}" -r "$workdir/requirements-$version-$mode.txt" >>"$log" 2>&1 \
            && "${pip[@]}" --no-deps -e "$repo" >>"$log" 2>&1; then
            outcome="installed ($mode pins)"
            break
        fi
        outcome="pip could not install with $mode pins (see $log)"
    done
    if [[ "$outcome" != installed* ]]; then
        echo "| $version | $outcome | not run |" | tee -a "$results"
        status=1
        continue
    fi
    chosen=$("$venv/bin/python" -m pip freeze 2>/dev/null \
        | grep -iE '^(torch|transformers|accelerate|peft|datasets|tokenizers|huggingface-hub|huggingface_hub|safetensors)==' \
        | tr '\n' ' ')
    # Run from the venv, in the repository, without the caller's PYTHONPATH (it may point at another hftk).
    summary=$(cd "$repo" && env -u PYTHONPATH HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1 TOKENIZERS_PARALLELISM=false \
        OMP_NUM_THREADS="${OMP_NUM_THREADS:-1}" "$venv/bin/python" -m pytest tests/models ${PYTEST_ARGS:--q -p no:cacheprovider} \
        2>&1 | tee -a "$log" | tail -n 1) || status=1  # pipefail: pytest's own exit status
    echo "| $version | $outcome: $chosen | $summary |" | tee -a "$results"
done
exit $status
