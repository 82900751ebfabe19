"""Fuzz every restorever parser with generated inputs and count the outcomes.

For each target of ``tests/reliability/fuzz_targets.py`` (LFW pairs, pairs CSV, insightface .bin, protocol YAML and
its validator, people files, attribute label files, image decoding, checkpoints, results.json validation, the
--weights option) hypothesis generates ``--examples`` inputs (random text/bytes, valid files, and mutations of valid
files). Each input must be accepted or refused with the parser's typed error; anything else is an unhandled
exception. Known bugs (reported, fixed elsewhere) are counted apart.

    nice -n 10 python scripts/fuzz_parsers.py --examples 10000 [--only pairs-csv,insightface-bin] [--json out.json]

Prints one line per target (inputs, accepted, refused, known bugs, unhandled) and exits 1 when any input caused an
unhandled exception (the first few are printed).
"""
from __future__ import annotations

import argparse
import collections
import json
import logging
import sys
import time
import warnings
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))


def fuzz_target(target, n: int, seed: int) -> dict:
    from hypothesis import HealthCheck, Phase, given, seed as hseed, settings

    counts: collections.Counter = collections.Counter()
    failures: list[str] = []

    @hseed(seed)
    @settings(max_examples=n, database=None, deadline=None, phases=[Phase.generate],
              suppress_health_check=list(HealthCheck))
    @given(target.strategy)
    def run(value):
        counts["inputs"] += 1
        try:
            outcome = target.check(value)
        except Exception as exc:  # noqa: BLE001 - Unhandled, or a crash of the harness itself
            counts["unhandled"] += 1
            if len(failures) < 5:
                failures.append(f"{exc} <- input {value!r:.300}")
            return
        counts[outcome.split(":")[0]] += 1
        if outcome.startswith("known:"):
            counts[outcome] += 1

    started = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        run()
    return {"counts": dict(counts), "seconds": round(time.perf_counter() - started, 1), "failures": failures}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--examples", type=int, default=10_000, help="generated inputs per target")
    parser.add_argument("--only", default="", help="comma-separated target names")
    parser.add_argument("--seed", type=int, default=20261124)
    parser.add_argument("--json", type=Path, default=None, help="write the counts here")
    args = parser.parse_args(argv)
    logging.disable(logging.WARNING)  # parsers log warnings for refused inputs; the counts are the output here
    from tests.reliability.fuzz_targets import TARGETS

    names = [n for n in args.only.split(",") if n] or list(TARGETS)
    unknown = [n for n in names if n not in TARGETS]
    if unknown:
        parser.error(f"unknown target(s) {unknown}; known: {', '.join(TARGETS)}")
    sys.path.insert(0, str(REPO / "scripts"))
    from _benchinfo import header

    print(header({"script": "fuzz_parsers", "examples per target": args.examples, "seed": args.seed}))
    print(f"{'target':20s} {'inputs':>8s} {'accepted':>9s} {'refused':>8s} {'known':>6s} {'unhandled':>9s} {'s':>7s}")
    results = {}
    total_unhandled = 0
    for name in names:
        res = fuzz_target(TARGETS[name], args.examples, args.seed)
        c = res["counts"]
        known = sum(v for k, v in c.items() if k.startswith("known:"))
        print(f"{name:20s} {c.get('inputs', 0):8d} {c.get('accepted', 0):9d} {c.get('refused', 0):8d} {known:6d} "
              f"{c.get('unhandled', 0):9d} {res['seconds']:7.1f}", flush=True)
        for k, v in sorted(c.items()):
            if k.startswith("known:"):
                print(f"{'':20s}   known bug {k[6:]}: {v}")
        for f in res["failures"]:
            print(f"{'':20s}   UNHANDLED {f}")
        total_unhandled += c.get("unhandled", 0)
        results[name] = res
    total = sum(r["counts"].get("inputs", 0) for r in results.values())
    print(f"total: {total} inputs, {total_unhandled} unhandled")
    if args.json:
        args.json.write_text(json.dumps({"examples": args.examples, "seed": args.seed, "targets": results},
                                        indent=1))
    return 1 if total_unhandled else 0


if __name__ == "__main__":
    sys.exit(main())
