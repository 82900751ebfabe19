"""``restorever compare RUN_DIR RUN_DIR ... --out DIR``: paired statistics across runs made separately."""
from __future__ import annotations

import click

from . import figure_formats, handle_errors
from .options import SEED

EPILOG = """\b
Examples:
  restorever compare runs/vqfr runs/codeformer --out runs/compare
  restorever compare runs/seed0 runs/seed1 --out runs/seeds --allow-different-degradation
  restorever compare runs/vqfr runs/codeformer --out paper/cmp --format pdf,png
"""


@click.command("compare", epilog=EPILOG)
@click.argument("run_dirs", nargs=-1, required=True, type=click.Path(exists=True))
@click.option("--out", required=True, type=click.Path(), help="Output folder for comparison.json, comparison.md, "
              "tables.csv, tables.tex and the accuracy-against-scale figure scales.png (see --format).")
@click.option("--allow-different-degradation", is_flag=True,
              help="Compare runs whose degradation, seed or degraded side differ (their degraded inputs differ: "
                   "the comparison is then unpaired in its inputs).")
@click.option("--score-tolerance", type=click.FloatRange(min=0), default=1e-6, show_default=True,
              help="Largest difference between the runs' clean scores taken as float rounding.")
@click.option("--bootstrap", "n_boot", type=click.IntRange(min=100, max=100_000), default=None,
              help="Bootstrap replicates of each accuracy-difference interval [the runs' own, as in their "
                   "results.md, when they agree; else 2000, said in comparison.md].")
@click.option("--bootstrap-seed", type=SEED, default=None,
              help="Seed of every bootstrap [each run's own --seed, as in its results.md].")
@click.option("--format", "formats", default="png", show_default=True,
              help="Formats of the accuracy-against-scale figure, comma-separated (png, pdf, svg): scales.png, "
                   "scales.pdf, scales.svg.")
@handle_errors
def compare_command(run_dirs, out, allow_different_degradation, score_tolerance, n_boot, bootstrap_seed, formats):
    """Compare restorers evaluated in separate runs (each RUN_DIR a `restorever eval` output folder) pair by pair:
    the runs must have scored the same pairs with the same recognizer, alignment and degradation."""
    from ..reports.compare import write_comparison

    fmts = figure_formats(formats)
    if len(run_dirs) < 2:
        raise click.UsageError("give at least two run folders")
    written = write_comparison(run_dirs, out, allow_different_degradation=allow_different_degradation,
                               atol=score_tolerance, n_boot=n_boot, seed=bootstrap_seed, formats=fmts)
    click.echo("wrote " + ", ".join(str(p) for p in written.values()))
