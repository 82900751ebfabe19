"""``restorever plot ...``: figures from results.json files."""
from __future__ import annotations

import click

from . import handle_errors


@click.group()
def plot() -> None:
    """Figures from one or more results.json files."""


def _int_list(text: str, option: str) -> list[int]:
    try:
        return [int(t.strip().lower().lstrip("x")) for t in (text or "").split(",") if t.strip()]
    except ValueError:
        raise click.BadParameter(f"{text!r}: use integers, e.g. 8,32", param_hint=option) from None


def _name_list(text: str) -> list[str]:
    return [t.strip() for t in (text or "").split(",") if t.strip()]


def _run_name(path: str) -> str:
    """The run's name in a legend: the run folder's name (``runs/lfw`` or ``runs/lfw/results.json`` -> ``lfw``),
    or the file's stem for a results file with another name."""
    from pathlib import Path

    resolved = Path(path).resolve()
    if resolved.is_dir():
        return resolved.name
    return resolved.parent.name if resolved.name == "results.json" else resolved.stem


@plot.command("roc")
@click.argument("results", nargs=-1, required=True, type=click.Path(exists=True))
@click.option("-o", "--output", default="roc.png", show_default=True, help="PNG, PDF or SVG file.")
@click.option("--scales", default="", help="Only these scales, e.g. 8,32 (the clean curve is always drawn).")
@click.option("--restorers", default="", help="Only these restorers, e.g. none,vqfr-v2.")
@handle_errors
def plot_roc_command(results, output, scales, restorers):
    """ROC curves (log-scale FAR) of every condition in RESULTS."""
    from ..reports.plots import plot_roc
    from ..reports.results import load_results

    path = plot_roc([load_results(r) for r in results], output, scales=_int_list(scales, "--scales") or None,
                    restorers=_name_list(restorers) or None, names=[_run_name(r) for r in results])
    click.echo(f"wrote {path}")


@plot.command("scales")
@click.argument("results", nargs=-1, required=True, type=click.Path(exists=True))
@click.option("-o", "--output", default="scales.png", show_default=True, help="PNG, PDF or SVG file.")
@handle_errors
def plot_scales_command(results, output):
    """Accuracy (± std over folds) against degradation scale, one line per restorer."""
    from ..reports.plots import plot_scales
    from ..reports.results import load_results

    path = plot_scales([load_results(r) for r in results], output, names=[_run_name(r) for r in results])
    click.echo(f"wrote {path}")


@plot.command("similarity")
@click.argument("results", type=click.Path(exists=True))
@click.option("-o", "--output", default="similarity.png", show_default=True, help="PNG, PDF or SVG file.")
@click.option("--bins", type=click.IntRange(min=1), default=40, show_default=True,
              help="Histogram bins over the score range.")
@handle_errors
def plot_similarity_command(results, output, bins):
    """Genuine vs impostor pair-score distributions, one panel per scale."""
    from ..reports.plots import plot_similarity
    from ..reports.results import load_results

    click.echo(f"wrote {plot_similarity(load_results(results), output, bins=bins)}")


GRID_EPILOG = """\b
Examples:
  restorever plot grid runs/lfw -o grid.pdf
  restorever plot grid runs/lfw/results.json --item Abel_Pacheco --item Dean_Barker --scales 8,32 -o grid.png
"""


@plot.command("grid", epilog=GRID_EPILOG)
@click.argument("results", type=click.Path(exists=True))
@click.option("-o", "--output", default="grid.png", show_default=True, help="PNG, PDF or SVG file.")
@click.option("--item", "items", multiple=True, help="Example image id, or part of it (a person's name); repeatable.")
@click.option("--max-items", type=click.IntRange(min=1), default=3, show_default=True,
              help="Examples shown when no --item is given.")
@click.option("--scales", default="", help="Scales to show, e.g. 8,32 (default: all of the run's).")
@handle_errors
def plot_grid_command(results, output, items, max_items, scales):
    """Clean | degraded | each restorer for saved example probes, with each face's cosine to its clean face.

    RESULTS is a run folder or its results.json; the example PNGs are read from the run folder."""
    from pathlib import Path

    from ..reports.plots import plot_grid
    from ..reports.results import load_results

    wanted = _int_list(scales, "--scales")
    run_dir = Path(results) if Path(results).is_dir() else Path(results).parent
    path = plot_grid(load_results(results), run_dir, output, items=list(items) or None, max_items=max_items,
                     scales=wanted or None)
    click.echo(f"wrote {path}")


@plot.command("cmc")
@click.argument("results", nargs=-1, required=True, type=click.Path(exists=True))
@click.option("-o", "--output", default="cmc.png", show_default=True, help="PNG, PDF or SVG file.")
@click.option("--max-rank", type=click.IntRange(min=1), default=None,
              help="Last rank drawn (default: all stored ranks).")
@click.option("--scales", default="", help="Only these scales, e.g. 8,32 (the clean curve is always drawn).")
@click.option("--restorers", default="", help="Only these restorers, e.g. none,vqfr-v2.")
@handle_errors
def plot_cmc_command(results, output, max_rank, scales, restorers):
    """CMC curves (identification rate against rank; attribute-filtered searches with hollow markers) of every
    condition with retrieval results."""
    from ..reports.plots import plot_cmc
    from ..reports.results import load_results

    path = plot_cmc([load_results(r) for r in results], output, max_rank=max_rank,
                    scales=_int_list(scales, "--scales") or None, restorers=_name_list(restorers) or None,
                    names=[_run_name(r) for r in results])
    click.echo(f"wrote {path}")
