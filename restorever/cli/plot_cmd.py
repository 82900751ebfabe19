"""``restorever plot ...``: figures from results.json files."""
from __future__ import annotations

import click

from . import handle_errors


@click.group()
def plot() -> None:
    """Figures from one or more results.json files."""


@plot.command("roc")
@click.argument("results", nargs=-1, required=True, type=click.Path(exists=True))
@click.option("-o", "--output", default="roc.png", show_default=True, help="PNG, PDF or SVG file.")
@handle_errors
def plot_roc_command(results, output):
    """ROC curves (log-scale FAR) of every condition in RESULTS."""
    from ..reports.plots import plot_roc
    from ..reports.results import load_results

    click.echo(f"wrote {plot_roc([load_results(r) for r in results], output)}")


@plot.command("scales")
@click.argument("results", nargs=-1, required=True, type=click.Path(exists=True))
@click.option("-o", "--output", default="scales.png", show_default=True, help="PNG, PDF or SVG file.")
@handle_errors
def plot_scales_command(results, output):
    """Accuracy (± std over folds) against degradation scale, one line per restorer."""
    from ..reports.plots import plot_scales
    from ..reports.results import load_results

    click.echo(f"wrote {plot_scales([load_results(r) for r in results], output)}")
