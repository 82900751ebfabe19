"""``restorever eval``."""
from __future__ import annotations

from pathlib import Path

import click

from . import NO_PROGRESS_HELP, handle_errors
from .ident_cmd import ident_only_options
from .options import (HELP, plugin_option, parse_key_values, parse_scales, recognizer_options_option, restorer_options,
                      restorer_options_option, split_list)


EPILOG = """\b
Examples:
  restorever eval --protocol lfw --data-root DIR --recognizer dlib --scales 8,16 --limit-pairs 40 --out runs/try
  torchrun --nproc-per-node 4 -m restorever eval --protocol lfw --restorer difface --scales 8,16 --out runs/d
  restorever eval --protocol lfw --data-root ../shared/data/lfw --restorer none --recognizer dlib
  restorever eval --protocol lfw --restorer none,vqfr-v2 --scales 4,8,16,24,32 --out runs/vqfr
  restorever eval --protocol lfw --recognizer dlib --scales 4,16 --align-on degraded --out runs/realistic
  restorever eval --protocol pairs-csv --pairs pairs.csv --data-root faces/ --recognizer dlib --on-error skip
"""


@click.command("eval", epilog=EPILOG)
@click.option("--protocol", default="lfw", show_default=True, help="Protocol name or YAML file.")
@click.option("--data-root", type=click.Path(), help=HELP["data-root"])
@click.option("--pairs", type=click.Path(), help=HELP["pairs"])
@click.option("--restorer", "restorers", default="none", show_default=True, help="Restorer name(s), comma-separated.")
@click.option("--recognizer", default="dlib", show_default=True, help=HELP["recognizer"])
@click.option("--scales", default="",
              help="Degradation scales, e.g. 4,8,16,24,32 (the study's set); default none: the clean condition only, "
                   "which every run includes.")
@click.option("--degradation", default="difface-test", show_default=True, help=HELP["degradation"])
@click.option("--degrade-side", type=click.Choice(["probe", "both"]), default="probe", show_default=True,
              help=HELP["degrade-side"])
@click.option("--align-on", type=click.Choice(["clean", "degraded"]), default="clean", show_default=True,
              help="Landmarks of degraded faces: from the clean photo (oracle alignment), or detected on each "
                   "degraded crop, which is aligned again (the realistic front end; verification protocols only).")
@click.option("--seed", type=int, default=None,
              help="Seed of the degradation and restorer noise [protocol's seed, else 0].")
@click.option("--detector", default=None,
              help="Landmark detector: mtcnn, mtcnn-batched (faster on a GPU) or scrfd [protocol's "
                   "alignment.landmarks].")
@click.option("--limit-pairs", type=int, default=None, help=HELP["limit-pairs"])
@click.option("--device", default="auto", show_default=True, envvar="RESTOREVER_DEVICE", help=HELP["device"])
@click.option("--batch-size", type=int, default=16, show_default=True, help=HELP["batch-size"])
@click.option("--on-error", type=click.Choice(["error", "skip"]), default=None,
              help="Missing/undecodable images and faces not found: stop, or skip their pairs (recorded) "
                   "[protocol's on_error, else error].")
@click.option("--flip-test", is_flag=True, help=HELP["flip-test"])
@click.option("--weights", "restorer_weights", default=None,
              help="Restorer weights: FILE or ROLE=FILE,ROLE=FILE (e.g. unet=U.pth,estimator=E.pth for difface); "
                   "with several restorers, prefix each with its name: vqfr-v2:V.pth,difface:unet=U.pth,...")
@click.option("--recognizer-weights", default=None, help=HELP["recognizer-weights"])
@restorer_options_option
@recognizer_options_option
@click.option("--cache-dir", type=click.Path(), default=None, help=HELP["cache-dir"])
@click.option("--out", type=click.Path(), default="runs/latest", show_default=True,
              help="Output folder: results.json, results.md, roc.png, examples/. A rerun into it resumes from the "
                   "cache and replaces the run there (a warning names the options that differ).")
@click.option("--examples", type=click.IntRange(min=0), default=4, show_default=True,
              help="Save the clean/degraded/restored faces of N probes under OUT/examples (for `plot grid`).")
@click.option("--no-progress", is_flag=True, help=NO_PROGRESS_HELP)
@click.option("--dry-run", is_flag=True,
              help="Print the work plan (conditions, images, cached entries, estimate) only.")
@ident_only_options
@plugin_option
@handle_errors
def eval_command(protocol, data_root, pairs, restorers, recognizer, scales, degradation, degrade_side, align_on, seed,
                 detector,
                 limit_pairs, device, batch_size, on_error, flip_test, restorer_weights, recognizer_weights,
                 restorer_option, recognizer_option, cache_dir, out, examples, no_progress, dry_run, **ident):
    """Evaluate verification accuracy of clean, degraded and restored faces."""
    from ..hub import parse_weights_option
    from ..restorers import list_restorers
    from ..pipeline.evaluate import EvalConfig, evaluate
    from ..reports.results import EXAMPLES_STAGING, results_table, run_folder, write_run

    names = split_list(restorers)
    options = restorer_options(restorer_option)
    rec_options = parse_key_values(recognizer_option)
    from ..datasets_ident import is_ident_protocol

    ident_protocol = is_ident_protocol(protocol)
    _refuse_options_of_the_other_task(["pairs", "limit_pairs", "degrade_side", "examples", "align_on"] if ident_protocol
                                      else list(ident), protocol, ident_protocol)
    if ident_protocol:
        from .ident_cmd import run_ident

        run_ident(protocol=protocol, data_root=data_root, restorers=restorers, recognizer=recognizer, scales=scales,
                  degradation=degradation, seed=seed, detector=detector, device=device, batch_size=batch_size,
                  on_error=on_error, flip_test=flip_test, restorer_weights=restorer_weights,
                  recognizer_weights=recognizer_weights, restorer_options=options, recognizer_options=rec_options,
                  cache_dir=cache_dir, out=out, no_progress=no_progress, dry_run=dry_run, **ident)
        return
    config = EvalConfig(
        protocol=protocol, data_root=data_root, pairs=pairs, restorers=names, recognizer=recognizer,
        scales=parse_scales(scales), degradation=degradation, degrade_side=degrade_side, align_on=align_on, seed=seed,
        limit_pairs=limit_pairs, device=device, batch_size=batch_size, detector=detector, on_error=on_error,
        flip_test=flip_test, restorer_weights=parse_weights_option(restorer_weights, backends=list_restorers()),
        recognizer_weights=parse_weights_option(recognizer_weights), restorer_options=options,
        recognizer_options=rec_options, cache_dir=cache_dir, out=str(Path(out)))
    config.validate()  # before the run folder and its lock are created
    from ..pipeline import distributed

    if dry_run:
        from ..pipeline.plan import describe_plan

        click.echo(describe_plan(config))
        return
    if distributed.from_env().is_main:
        with run_folder(out):  # a run that fails before writing anything leaves no folder
            staging = Path(out) / EXAMPLES_STAGING  # moved into examples/ by write_run, with the other outputs
            record = evaluate(config, progress=not no_progress, examples=examples, examples_dir=staging)
            paths = write_run(record, out, staged_examples=staging)
    else:
        evaluate(config, progress=False)
        return
    click.echo(results_table(record))
    fallbacks = record["protocol"].get("landmark_fallbacks", [])
    if fallbacks:
        click.echo(f"no face found in {len(fallbacks)} image(s); aligned with the protocol's fallback landmarks "
                   f"(listed in results.json): {', '.join(fallbacks[:3])}{' ...' if len(fallbacks) > 3 else ''}")
    skipped = len(record["protocol"]["skipped"])
    if skipped:
        click.echo(f"skipped {skipped} pair(s) ({len(record['protocol']['failed_images'])} image(s) failed); "
                   f"reasons in {paths['results']}")
    click.echo(f"wrote {paths['results']}, {paths['markdown']}, {paths['roc']}")


def _refuse_options_of_the_other_task(names: list[str], protocol: str, identification: bool) -> None:
    """`eval` takes the options of both tasks; one given on the command line that the protocol's task does not use
    (``--top-k`` for lfw, ``--limit-pairs`` for lfw-ident) is a usage error, not silently ignored."""
    from click.core import ParameterSource

    ctx = click.get_current_context()
    given = [p.opts[0] for p in ctx.command.params
             if p.name in names and ctx.get_parameter_source(p.name) not in (None, ParameterSource.DEFAULT)]
    if given:
        task, other = ("an identification", "verification") if identification else ("a verification", "identification")
        verb = "applies" if len(given) == 1 else "apply"
        raise click.UsageError(f"{', '.join(given)} {verb} only to {other} protocols; {protocol} is {task} protocol")
