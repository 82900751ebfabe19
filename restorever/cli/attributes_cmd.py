"""``restorever attributes fit|show``: fit the gender/age probe (+ re-weighting module) and inspect it."""
from __future__ import annotations

import json
from pathlib import Path

import click

from . import NO_PROGRESS_HELP, handle_errors
from .options import HELP, plugin_option

EPILOG = """\b
Examples:
  restorever attributes fit --data-root ../shared/data/lfw --recognizer dlib --min-images 10 \\
      --max-probes-per-person 19 --max-distractors 2000 --out runs/attributes/dlib_probe.pt
  restorever attributes show runs/attributes/dlib_probe.pt
"""


@click.group("attributes", epilog=EPILOG)
def attributes() -> None:
    """Gender and age-group predictors over recognizer embeddings."""


def _floats(text: str | None) -> list[float] | None:
    if not text:
        return None
    try:
        return [float(t) for t in text.split(",") if t.strip()]
    except ValueError:
        raise click.BadParameter(f"{text!r}: expected numbers like 13,20,60", param_hint="--age-bins") from None


@attributes.command("fit", epilog=EPILOG)
@click.option("--protocol", default="lfw-ident", show_default=True, help="Identification protocol (its images).")
@click.option("--data-root", type=click.Path(), help="Folder holding the protocol's data.")
@click.option("--recognizer", default="dlib", show_default=True, help="Recognizer whose embeddings the probe reads.")
@click.option("--recognizer-weights", default=None, help=HELP["recognizer-weights"])
@click.option("--detector", default=None, help="Landmark detector [protocol's alignment.landmarks].")
@click.option("--device", default="auto", show_default=True, envvar="RESTOREVER_DEVICE", help=HELP["device"])
@click.option("--batch-size", type=int, default=16, show_default=True, help=HELP["batch-size"])
@click.option("--on-error", type=click.Choice(["error", "skip"]), default=None,
              help="Images without a face: stop, or leave them out (recorded) [protocol's on_error].")
@click.option("--min-images", type=int, default=None, help="Use people with at least N images (protocol: 2).")
@click.option("--max-probes-per-person", type=int, default=None, help="Use at most 1+N images per person.")
@click.option("--max-distractors", type=int, default=None, help="Use at most N one-image people.")
@click.option("--age-bins", default=None, help="Age group edges in years (protocol: 13,20,60).")
@click.option("--folds", type=int, default=5, show_default=True, help="Person-disjoint cross-validation folds.")
@click.option("--hidden", type=int, default=0, show_default=True, help="Probe hidden units (0 = linear).")
@click.option("--l2", type=float, default=1e-2, show_default=True, help="Probe L2 penalty.")
@click.option("--reweight-hidden", type=int, default=16, show_default=True,
              help="Re-weighting MLP hidden units (0 = one linear layer, as in APR).")
@click.option("--reweight-l2", type=float, default=1e-3, show_default=True, help="Re-weighting module L2 penalty.")
@click.option("--no-reweight", is_flag=True, help="Do not fit the re-weighting module.")
@click.option("--seed", type=int, default=0, show_default=True, help="Seed of the folds and the fitting.")
@click.option("--cache-dir", type=click.Path(), default=None, help=HELP["cache-dir"])
@click.option("--out", type=click.Path(), required=True, help="Checkpoint to write (.pt); the report goes beside it.")
@click.option("--no-progress", is_flag=True, help=NO_PROGRESS_HELP)
@plugin_option
@handle_errors
def fit_command(protocol, data_root, recognizer, recognizer_weights, detector, device, batch_size, on_error,
                min_images, max_probes_per_person, max_distractors, age_bins, folds, hidden, l2, reweight_hidden,
                reweight_l2, no_reweight, seed, cache_dir, out, no_progress):
    """Fit the probe on clean embeddings of the protocol's labelled images; report held-out accuracy and ECE."""
    from ..attributes.predictor import FitOptions, report_table
    from ..hub import parse_weights_option
    from ..files import atomic_write_text
    from ..pipeline.identification import IdentConfig, fit_attributes, json_safe

    config = IdentConfig(protocol=protocol, data_root=data_root, recognizer=recognizer,
                         recognizer_weights=parse_weights_option(recognizer_weights), detector=detector,
                         device=device, batch_size=batch_size, on_error=on_error, min_images=min_images,
                         max_probes_per_person=max_probes_per_person, max_distractors=max_distractors,
                         age_bins=_floats(age_bins), cache_dir=cache_dir, seed=seed)
    options = FitOptions(folds=folds, hidden=hidden, l2=l2, reweight_hidden=reweight_hidden,
                         reweight_l2=reweight_l2, seed=seed)
    predictor, report = fit_attributes(config, options, reweight=not no_reweight, progress=not no_progress)
    path = predictor.save(out)
    report_path = Path(out).with_suffix(".json")
    atomic_write_text(report_path, json.dumps(json_safe(predictor.describe()), indent=1, default=str, allow_nan=False))
    click.echo(report_table(report))
    click.echo(f"wrote {path} and {report_path}")


@attributes.command("show")
@click.argument("path", type=click.Path(exists=True))
@handle_errors
def show_command(path):
    """Print the held-out report stored in a fitted attribute model."""
    from ..attributes.predictor import EmbeddingAttributePredictor, report_table

    model = EmbeddingAttributePredictor.load(path)
    click.echo(f"{path}: recognizer {model.recognizer}, classes {model.schema.sizes}, "
               f"re-weighting {'yes' if model.has_reweighting else 'no'}, {len(model.folds)} fold models")
    fitted = model.meta.get("recognizer_weights")
    click.echo("recognizer weights: " + ("not recorded (fitted before restorever stored them)" if fitted is None
                                         else ", ".join(f"{role} sha256 {sha}" for role, sha in fitted) or "none"))
    click.echo(report_table(model.meta.get("report") or {}, order=list(model.schema.sizes)))
