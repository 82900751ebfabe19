"""``restorever breakdown RUN_DIR --by gender`` (or ``--labels FILE``): identity preservation and verification per
group of people or images."""
from __future__ import annotations

import click

from . import handle_errors
from .options import SEED

EPILOG = """\b
Examples:
  restorever breakdown runs/lfw --by gender
  restorever breakdown runs/lfw --by gender --reference male --figure paper/gender.pdf
  restorever breakdown runs/lfw --bootstrap 5000 --level 0.9
  restorever breakdown runs/mine --labels skin_type.csv          # header person,skin_type
  restorever breakdown runs/lfw --labels ages.csv --name age_band  # header item,age
"""


@click.command("breakdown", epilog=EPILOG)
@click.argument("run_dir", type=click.Path(exists=True, file_okay=False))
@click.option("--by", type=click.Choice(["gender"]), default=None,
              help="Attribute whose groups are compared, labels from the run protocol's `labels` section "
                   "[default: gender, unless --labels is given].")
@click.option("--labels", "labels_file", type=click.Path(exists=True, dir_okay=False), default=None,
              help="Your own groups: a CSV with the header person,NAME (one row per person, the image's folder) or "
                   "item,NAME (one row per image id of results.json). See docs/attributes.md.")
@click.option("--name", default=None,
              help="Name of the --labels attribute in the output files (default: the CSV header's second column).")
@click.option("--reference", default=None,
              help="Group the others are compared with (default: the labelled group with the most probes).")
@click.option("--figure", "figure", type=click.Path(dir_okay=False), default=None,
              help="Figure file (.png, .pdf, .svg; default RUN_DIR/figures/breakdown-NAME.png).")
@click.option("--bootstrap", "n_boot", type=click.IntRange(min=100, max=100_000), default=2000, show_default=True,
              help="Bootstrap replicates (people resampled).")
@click.option("--level", type=click.FloatRange(0.5, 0.999), default=0.95, show_default=True,
              help="Coverage of the bootstrap intervals.")
@click.option("--seed", type=SEED, default=None, help="Bootstrap seed (default: the run's seed).")
@handle_errors
def breakdown_command(run_dir, by, labels_file, name, reference, figure, n_boot, level, seed):
    """Break a finished verification run in RUN_DIR down by group of people: per condition and group, the mean
    cosine of the probes to their clean embeddings (people-resampling bootstrap CI), and accuracy, FNMR, FMR and
    AUC on the group's pairs at the run's own thresholds; and each group's identity drop minus the reference
    group's. Groups come from the protocol (--by) or from your CSV (--labels). Writes RUN_DIR/breakdown-NAME.json and
    .md and a figure; results.json is not changed."""
    from ..reports.breakdown import breakdown, breakdown_markdown, check_record, load_person_groups, write_breakdown
    from ..reports.group_labels import check_group_name, read_labels_csv, resolve_labels
    from ..reports.results import load_results

    if labels_file and by:
        raise click.UsageError("--by reads the protocol's label lists and --labels your CSV: give one of them")
    if name and not labels_file:
        raise click.UsageError("--name names the attribute of a --labels file; --by gender needs no name")
    record = load_results(run_dir)
    source = f"{run_dir}/results.json"
    # before reading any labels: a run that cannot be broken down says so first
    check_record(record, source, lfw_names=not labels_file)
    if labels_file:
        labels = read_labels_csv(labels_file)
        by = check_group_name(name, "--name") if name else check_group_name(labels.name, f"{labels_file}: header")
        classes, info = resolve_labels(labels, record, source)
        groups, key = labels.groups, labels.key
    else:
        by, key = by or "gender", "lfw-name"
        groups, classes, info = load_person_groups(record, run_dir, by)
    result = breakdown(record, groups, classes, by=by, reference=reference, n_boot=n_boot, level=level, seed=seed,
                       source=source, key=key)
    result["labels"] = info
    paths = write_breakdown(result, run_dir, figure=figure)
    click.echo(breakdown_markdown(result))
    figure_note = (f" and {paths['figure']}" if paths["figure"] else
                   " (no figure: more groups than its colours tell apart)")
    click.echo(f"wrote {paths['json']}, {paths['markdown']}{figure_note}")
