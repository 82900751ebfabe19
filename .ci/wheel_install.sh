#!/usr/bin/env bash
# Install restorever as users do (a wheel, not editable) into a fresh environment and use it from a folder outside
# the checkout: every shipped protocol must be listed and a small pairs-csv eval must run (issue 13).
# Usage: .ci/wheel_install.sh [SHARED_DIR]   (default: ../shared beside the checkout)
set -euo pipefail
repo="$(cd "$(dirname "$0")/.." && pwd)"
shared="$(cd "${1:-$repo/../shared}" && pwd)"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
export RESTOREVER_HOME="$work/home"  # the weights/data cache of this check only
echo "== wheel: build ($(date -u +%FT%TZ))"
python3 -m pip wheel -q --no-deps "$repo" -w "$work/dist"
wheel=$(ls "$work"/dist/restorever-*.whl)
python3 -m venv "$work/env"
"$work/env/bin/python" -m pip install -q "${wheel}[dlib,mtcnn]"
cd "$work"  # nothing of the checkout is importable from here
echo "== wheel: restorever protocols"
"$work/env/bin/restorever" protocols | tee protocols.txt
for name in $(ls "$repo/protocols" | sed -n 's/\.yaml$//p'); do
    grep -q "^$name " protocols.txt || { echo "wheel install does not list protocol $name" >&2; exit 1; }
done
echo "== wheel: pairs-csv eval on ../shared/data/faces"
faces="$shared/data/faces"
python3 - "$faces" > pairs.csv <<'PY'
import sys
from pathlib import Path
root = Path(sys.argv[1])
people = sorted(p for p in root.iterdir() if p.is_dir())
rows = []
for i, person in enumerate(people):
    imgs = sorted(f.relative_to(root).as_posix() for f in person.glob("*.jpg"))[:4]
    other = sorted(f.relative_to(root).as_posix() for f in people[(i + 1) % len(people)].glob("*.jpg"))[:2]
    rows += [f"{imgs[0]},{imgs[1]},1", f"{imgs[2]},{imgs[3]},1", f"{imgs[0]},{other[0]},0", f"{imgs[1]},{other[1]},0"]
print("\n".join(rows))
PY
"$work/env/bin/restorever" eval --protocol pairs-csv --pairs pairs.csv --data-root "$faces" --recognizer dlib \
    --restorer none --scales 8 --device cpu --out run
"$work/env/bin/restorever" validate run
test -s run/results.json && test -s run/results.md
python3 - run/results.json <<'PY'
import json, sys
record = json.load(open(sys.argv[1]))
conds = record["conditions"]
assert len(conds) == 2, conds
clean = next(c for c in conds if c["scale"] is None)
assert clean["verification"]["accuracy_mean"] >= 0.9, clean["verification"]["accuracy_mean"]
print("wheel install: eval ok, clean accuracy", clean["verification"]["accuracy_mean"])
PY
echo "== wheel: done ($(date -u +%FT%TZ))"
