"""``restorever validate``: check finished runs, or protocol files, without computing anything new."""
from __future__ import annotations

import sys

import click

from . import handle_errors
from .options import plugin_option

EPILOG = """\b
Examples:
  restorever validate runs/lfw                      results.json, recomputed metrics, cached embeddings
  restorever validate runs/lfw --cache-dir /data/cache
  restorever validate --protocols                   every protocol `restorever protocols` lists
  restorever validate --protocols my_protocol.yaml  (or a protocol name: lfw)
Exit status: 0 when everything is valid, 2 with the problems listed otherwise.
"""


@click.command("validate", epilog=EPILOG)
@click.argument("paths", nargs=-1, type=click.Path())
@click.option("--protocols", "protocols", is_flag=True,
              help="Validate protocol YAML files (all known ones when none are given) instead of run folders.")
@click.option("--cache-dir", type=click.Path(), default=None,
              help="The run's cache folder, if it moved (default: the one results.json records).")
@click.option("--no-cache", is_flag=True, help="Skip the cached-embedding checks.")
@plugin_option
@handle_errors
def validate_command(paths, protocols, cache_dir, no_cache):
    """Check RUN_DIR(s): results.json against its schema, every metric recomputed from the stored scores, and the
    cached embeddings the run scored (present, intact, reproducing the scores). With --protocols, check protocol
    files without reading any data."""
    from ..validate import check_run, validate_protocols

    if protocols:
        problems, notes = validate_protocols(list(paths) or None)
        n_bad = 0
        for path, found in problems.items():
            click.echo(f"{path}: {'valid' if not found else f'{len(found)} problem(s)'}")
            for line in found:
                click.echo(f"  - {line}")
            for line in notes.get(path, []):
                click.echo(f"  note: {line}")
            n_bad += bool(found)
        if not problems:
            raise click.UsageError("no protocol files found")
        if n_bad:
            click.echo(f"error: {n_bad} of {len(problems)} protocol file(s) invalid", err=True)
            sys.exit(2)
        return
    if not paths:
        raise click.UsageError("give a RUN_DIR (or --protocols)")
    n_bad = 0
    for path in paths:
        report = check_run(path, check_cache=not no_cache, cache_dir=cache_dir)
        click.echo(report.summary())
        for line in report.problems:
            click.echo(f"  - {line}")
        for line in report.notes:
            click.echo(f"  note: {line}")
        n_bad += not report.ok
    if n_bad:
        click.echo(f"error: {n_bad} of {len(paths)} run(s) invalid", err=True)
        sys.exit(2)
