"""``restorever breakdown RUN_DIR --by gender``: identity preservation and verification per group of people."""
from __future__ import annotations

import click

from . import handle_errors

EPILOG = """\b
Examples:
  restorever breakdown runs/lfw --by gender
  restorever breakdown runs/lfw --by gender --reference male --figure paper/gender.pdf
  restorever breakdown runs/lfw --bootstrap 5000 --level 0.9
"""


@click.command("breakdown", epilog=EPILOG)
@click.argument("run_dir", type=click.Path(exists=True, file_okay=False))
@click.option("--by", type=click.Choice(["gender"]), default="gender", show_default=True,
              help="Attribute whose groups are compared (labels from the run protocol's `labels` section).")
@click.option("--reference", default=None,
              help="Group the others are compared with (default: the labelled group with the most probes).")
@click.option("--figure", "figure", type=click.Path(dir_okay=False), default=None,
              help="Figure file (.png, .pdf, .svg; default RUN_DIR/figures/breakdown-BY.png).")
@click.option("--bootstrap", "n_boot", type=click.IntRange(min=100), default=2000, show_default=True,
              help="Bootstrap replicates (people resampled).")
@click.option("--level", type=click.FloatRange(0.5, 0.999), default=0.95, show_default=True,
              help="Coverage of the bootstrap intervals.")
@click.option("--seed", type=int, default=None, help="Bootstrap seed (default: the run's seed).")
@handle_errors
def breakdown_command(run_dir, by, reference, figure, n_boot, level, seed):
    """Break a finished verification run in RUN_DIR down by group of people: per condition and group, the mean
    cosine of the probes to their clean embeddings (people-resampling bootstrap CI), and accuracy, FNMR, FMR and
    AUC on the group's pairs at the run's own thresholds; and each group's identity drop minus the reference
    group's. Writes RUN_DIR/breakdown-BY.json and .md and a figure; results.json is not changed."""
    from ..reports.breakdown import (breakdown, breakdown_markdown, check_record, load_person_groups,
                                     write_breakdown)
    from ..reports.results import load_results

    record = load_results(run_dir)
    source = f"{run_dir}/results.json"
    check_record(record, source)  # before reading the protocol: a run that cannot be broken down says so first
    groups, classes, labels = load_person_groups(record, run_dir, by)
    result = breakdown(record, groups, classes, by=by, reference=reference, n_boot=n_boot, level=level, seed=seed,
                       source=source)
    result["labels"] = labels
    paths = write_breakdown(result, run_dir, figure=figure)
    click.echo(breakdown_markdown(result))
    click.echo(f"wrote {paths['json']}, {paths['markdown']} and {paths['figure']}")
