"""``restorever ident`` (closed-set identification with attribute filtering) and ``restorever plot cmc``.

``restorever eval --protocol lfw-ident ...`` is meant to route here: :func:`run_ident` takes the same option names as
``eval`` plus the identification ones.
"""
from __future__ import annotations

from pathlib import Path

import click

from . import NO_PROGRESS_HELP, handle_errors
from .options import (HELP, parse_key_values, plugin_option, recognizer_options_option, restorer_options,
                      restorer_options_option)

EPILOG = """\b
Examples:
  restorever ident --data-root ../shared/data/lfw --recognizer dlib --min-images 10 --max-probes-per-person 9 \\
      --max-distractors 2000 --scales 8,16,32 --out runs/ident
  restorever ident --data-root ../shared/data/lfw --scales 16 --attribute-model runs/attributes/dlib_probe.pt \\
      --attribute-filter gender,age --threshold 0.9 --age-tolerance 1 --out runs/ident-filtered
  restorever plot cmc runs/ident-filtered/results.json -o cmc.pdf
"""


_COMMON_OPTIONS = [
    click.option("--protocol", default="lfw-ident", show_default=True, help="Identification protocol or YAML."),
    click.option("--data-root", type=click.Path(), help=HELP["data-root"]),
    click.option("--restorer", "restorers", default="none", show_default=True, help="Restorer(s), comma-separated."),
    click.option("--recognizer", default="dlib", show_default=True, help=HELP["recognizer"]),
    click.option("--scales", default="", help="Degradation scales of the probes, e.g. 8,16,32."),
    click.option("--degradation", default="difface-test", show_default=True, help=HELP["degradation"]),
    click.option("--seed", type=int, default=None, help="Seed of the probes' degradation [protocol's seed, else 0]."),
    click.option("--detector", default=None, help="Landmark detector [protocol's alignment.landmarks]."),
    click.option("--device", default="auto", show_default=True, envvar="RESTOREVER_DEVICE", help=HELP["device"]),
    click.option("--batch-size", type=int, default=16, show_default=True, help=HELP["batch-size"]),
    click.option("--on-error", type=click.Choice(["error", "skip"]), default=None,
                 help="Images without a face: stop, or drop them from the split (recorded) [protocol's on_error "
                      "(lfw-ident: skip), else error]."),
    click.option("--flip-test", is_flag=True, help=HELP["flip-test"]),
    click.option("--weights", "restorer_weights", default=None,
                 help="Restorer weights: FILE or ROLE=FILE,...; with several restorers NAME:FILE,NAME:ROLE=FILE,..."),
    click.option("--recognizer-weights", default=None, help=HELP["recognizer-weights"]),
    click.option("--cache-dir", type=click.Path(), default=None, help=HELP["cache-dir"]),
    click.option("--out", type=click.Path(), default="runs/ident", show_default=True,
                 help="Output folder: results.json, results.md, cmc.png. A rerun into it resumes from the cache and "
                      "replaces the run there."),
    click.option("--no-progress", is_flag=True, help=NO_PROGRESS_HELP),
    click.option("--dry-run", is_flag=True, help="Print the work plan (split, cached entries, estimate) only."),
]

#: the options only identification has; ``restorever eval`` can take them too (decorate it with
#: :func:`ident_only_options`) and hand them to :func:`run_ident` when ``--protocol`` is an identification protocol
IDENT_ONLY_OPTIONS = [
    click.option("--min-images", type=int, default=None, help="Enrol people with at least N images (protocol: 2)."),
    click.option("--max-probes-per-person", type=int, default=None, help="At most N probes per person."),
    click.option("--max-distractors", type=int, default=None, help="At most N one-image distractors."),
    click.option("--attribute-model", default=None,
                 help="Fitted probe .pt (`restorever attributes fit`) or insightface-genderage."),
    click.option("--attribute-weights", default=None, help="Weights of a pixel attribute model (FILE)."),
    click.option("--attribute-filter", default=None,
                 help="Filter the gallery by gender,age (comma list; 'none' = report attributes only)."),
    click.option("--threshold", "filter_threshold", type=float, default=None,
                 help="Probe confidence needed to filter by an attribute (protocol: 0.9)."),
    click.option("--age-tolerance", type=int, default=None, help="Neighbouring age groups searched (protocol: 1)."),
    click.option("--age-bins", default=None, help="Age group edges for a pixel model (protocol: 13,20,60)."),
    click.option("--reweight", default=None,
                 help="Re-weighting module: auto (the attribute model's own), none, or a checkpoint PATH (its "
                      "modules, cross-fitted: a person it was fitted on goes through the fold module that did not "
                      "see them)."),
    click.option("--top-k", type=int, default=10, show_default=True, help=HELP["top-k"]),
    click.option("--search-backend", type=click.Choice(["auto", "faiss", "numpy"]), default="auto",
                 show_default=True, help=HELP["search-backend"]),
    click.option("--index", type=click.Choice(["flat", "ivf"]), default="flat", show_default=True,
                 help=HELP["index"]),
    click.option("--ivf-nlist", type=int, default=64, show_default=True, help=HELP["ivf-nlist"]),
    click.option("--nprobe", type=int, default=16, show_default=True, help=HELP["nprobe"]),
    click.option("--filter-mode", type=click.Choice(["partition", "selector"]), default="partition",
                 show_default=True, help="Sub-index per attribute cell, or a faiss IDSelector."),
]
IDENT_ONLY_NAMES = ("min_images", "max_probes_per_person", "max_distractors", "attribute_model", "attribute_weights",
                    "attribute_filter", "filter_threshold", "age_tolerance", "age_bins", "reweight", "top_k",
                    "search_backend", "index", "ivf_nlist", "nprobe", "filter_mode")


def _apply(options, func):
    for option in reversed(options):
        func = option(func)
    return func


def ident_only_options(func):
    """Add the identification-only options to a click command."""
    return _apply(IDENT_ONLY_OPTIONS, func)


def _ident_options(func):
    return _apply(_COMMON_OPTIONS[:-4] + IDENT_ONLY_OPTIONS + _COMMON_OPTIONS[-4:], func)


def run_ident(*, protocol="lfw-ident", data_root=None, restorers="none", recognizer="dlib", scales="",
              degradation="difface-test", seed=None, detector=None, device="auto", batch_size=16, on_error=None,
              flip_test=False, restorer_weights=None, recognizer_weights=None, min_images=None,
              max_probes_per_person=None, max_distractors=None, attribute_model=None, attribute_weights=None,
              attribute_filter=None, filter_threshold=None, age_tolerance=None, age_bins=None, reweight=None,
              top_k=10, search_backend="auto", index="flat", ivf_nlist=64, nprobe=16, filter_mode="partition",
              cache_dir=None, out="runs/ident", no_progress=False, restorer_options=None, recognizer_options=None,
              dry_run=False) -> dict | None:
    """Build the config from CLI-style values, run the evaluation, write the outputs, echo the tables (with
    ``dry_run``, echo the work plan only and return None). ``None`` for ``seed``, ``detector`` or ``on_error``
    takes the protocol's value."""
    from ..hub import parse_weights_option
    from ..restorers import list_restorers
    from .options import parse_scales, split_list
    from ..pipeline.identification import IdentConfig, evaluate_identification
    from ..reports.ident import ident_tables, write_ident_run
    from ..reports.results import run_folder

    flt = None
    if attribute_filter is not None:
        flt = [] if attribute_filter.strip().lower() in ("", "none") else split_list(attribute_filter)
    config = IdentConfig(
        protocol=protocol, data_root=data_root, restorers=split_list(restorers) if isinstance(restorers, str)
        else list(restorers), recognizer=recognizer, scales=parse_scales(scales) if isinstance(scales, str)
        else list(scales), degradation=degradation, seed=seed, detector=detector, device=device,
        batch_size=batch_size, on_error=on_error, flip_test=flip_test,
        restorer_weights=parse_weights_option(restorer_weights, backends=list_restorers()),
        recognizer_weights=parse_weights_option(recognizer_weights), restorer_options=dict(restorer_options or {}),
        recognizer_options=dict(recognizer_options or {}),
        min_images=min_images, max_probes_per_person=max_probes_per_person, max_distractors=max_distractors,
        attribute_model=attribute_model, attribute_weights=parse_weights_option(attribute_weights),
        attribute_filter=flt if attribute_model else ([] if flt is None else flt), filter_threshold=filter_threshold,
        age_tolerance=age_tolerance,
        age_bins=_age_bins(age_bins),
        reweight=reweight, top_k=top_k, search_backend=search_backend, index=index, ivf_nlist=ivf_nlist,
        nprobe=nprobe, filter_mode=filter_mode, cache_dir=cache_dir, out=str(Path(out)))
    if dry_run:
        from ..pipeline.plan import describe_plan

        click.echo(describe_plan(config))
        return None
    with run_folder(out):  # one writer per folder; a run that fails before writing anything leaves no folder
        record = evaluate_identification(config, progress=not no_progress)
        paths = write_ident_run(record, out)
    click.echo(ident_tables(record))
    skipped = len(record["protocol"]["skipped"])
    if skipped:
        click.echo(f"left out {skipped} image(s)/people without a usable face; reasons in {paths['results']}")
    click.echo(f"wrote {paths['results']}, {paths['markdown']}, {paths['cmc']}")
    return record


@click.command("ident", epilog=EPILOG)
@_ident_options
@restorer_options_option
@recognizer_options_option
@plugin_option
@handle_errors
def ident_command(restorer_option, recognizer_option, **options):
    """Closed-set identification (rank-k, mAP, CMC) of clean, degraded and restored probes, optionally searching
    only the gallery entries whose predicted gender/age group match the probe's."""
    run_ident(restorer_options=restorer_options(restorer_option),
              recognizer_options=parse_key_values(recognizer_option), **options)


def register(cli: click.Group) -> None:
    """Add ``ident`` and ``attributes`` to the command line (``plot cmc`` lives in plot_cmd)."""
    from .attributes_cmd import attributes

    cli.add_command(ident_command)
    cli.add_command(attributes)


def _age_bins(text: str | None) -> list[float] | None:
    """``"13,30,50"`` -> ``[13.0, 30.0, 50.0]``; a value that is not a number is a usage error naming the flag."""
    if not isinstance(text, str) or not text:
        return None
    try:
        return [float(b) for b in text.split(",")]
    except ValueError:
        raise click.BadParameter(f"{text!r} is not a comma list of ages (e.g. 13,30,50)",
                                 param_hint="--age-bins") from None
