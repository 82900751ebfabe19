"""Build every figure and the report of one run into ``docs/figures/`` (for the README and the docs).

    python scripts/make_figures.py RUN_DIR [--out docs/figures] [--formats png,pdf]

Writes ``OUT/{roc,scales,similarity,grid,cmc}.{png,pdf,...}`` (figures a run cannot have, such as ``cmc`` without
retrieval results, are skipped with the reason), ``OUT/report.html`` (self-contained) and ``OUT/report.md``. Every
number comes from ``RUN_DIR/results.json``; the grid reads ``RUN_DIR/examples/``.
"""
from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

from restorever.errors import RestoreverError
from restorever.reports.html import build_report

DOCS_FIGURES = Path(__file__).resolve().parent.parent / "docs" / "figures"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run_dir", type=Path, help="run folder holding results.json (and examples/)")
    parser.add_argument("--out", type=Path, default=DOCS_FIGURES, help=f"output folder (default {DOCS_FIGURES})")
    parser.add_argument("--formats", default="png,pdf", help="figure formats: png, pdf, svg (default png,pdf)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    formats = [f.strip() for f in args.formats.split(",") if f.strip()]
    try:
        out = build_report(args.run_dir, html_path=args.out / "report.html", markdown_path=args.out / "report.md",
                           figures_dir=args.out, formats=formats)
    except (RestoreverError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    for name, paths in out["figures"].items():
        print(f"{name}: {', '.join(str(p) for p in paths)}")
    for name, reason in out["skipped_figures"].items():
        print(f"{name}: skipped ({reason})")
    print(f"report: {out['html']}, {out['markdown']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
