"""``restorever report RUN_DIR``: a self-contained HTML page and a markdown summary of one run."""
from __future__ import annotations

import click

from . import figure_formats, handle_errors

EPILOG = """\b
Examples:
  restorever report runs/lfw
  restorever report runs/lfw --format png,pdf,svg --figures-dir paper/figures
  restorever report runs/lfw --csv paper/lfw.csv --latex paper/lfw_table.tex
  restorever report runs/lfw --methods-dir paper
"""


@click.command("report", epilog=EPILOG)
@click.argument("run_dir", type=click.Path(exists=True))
@click.option("--html", "html_path", type=click.Path(), default=None, help="HTML page (default RUN_DIR/report.html).")
@click.option("--markdown", "markdown_path", type=click.Path(), default=None,
              help="Markdown summary (default RUN_DIR/report.md).")
@click.option("--csv", "csv_path", type=click.Path(), default=None,
              help="Tidy table, one row per condition, numbers as in results.json (default RUN_DIR/tables.csv).")
@click.option("--latex", "latex_path", type=click.Path(), default=None,
              help="booktabs LaTeX table of accuracy ± SEM, restorers x scales (default RUN_DIR/tables.tex).")
@click.option("--methods-dir", type=click.Path(), default=None,
              help="Folder for methods.md and methods.tex (an experimental-setup text read from results.json) and "
                   "the references.bib their citations use (default RUN_DIR).")
@click.option("--figures-dir", type=click.Path(), default=None, help="Figure files (default RUN_DIR/figures).")
@click.option("--format", "formats", default="png,pdf", show_default=True,
              help="Figure formats written (png, pdf, svg); the page embeds the PNGs.")
@click.option("--bootstrap", "n_boot", type=click.IntRange(min=100, max=100_000), default=2000, show_default=True,
              help="Bootstrap replicates, used only when results.json lacks the paired statistics.")
@handle_errors
def report_command(run_dir, html_path, markdown_path, csv_path, latex_path, methods_dir, figures_dir, formats, n_boot):
    """Write one self-contained HTML report (tables, all figures, configuration, versions, weight hashes,
    references) and a markdown summary of the run in RUN_DIR, and for a paper its main table as CSV and LaTeX and a
    methods text (markdown, LaTeX and BibTeX)."""
    from ..reports.html import build_report

    fmts = figure_formats(formats)
    out = build_report(run_dir, html_path=html_path, markdown_path=markdown_path, figures_dir=figures_dir,
                       formats=fmts, n_boot=n_boot, csv_path=csv_path, latex_path=latex_path, methods_dir=methods_dir)
    for name, reason in out["skipped_figures"].items():
        click.echo(f"figure {name} skipped: {reason}")
    if out["skipped_tables"]:
        also = "" if out["methods"] else " and the methods text"
        click.echo(f"tables.csv, tables.tex{also} skipped: {out['skipped_tables']}")
    tables = f", {out['csv']}, {out['latex']}" if out["csv"] else ""
    tables += "".join(f", {path}" for path in out["methods"].values())
    n_figures = sum(map(len, out["figures"].values()))
    click.echo(f"wrote {out['html']}{tables} and {out['markdown']} ({n_figures} figure files "
               f"in {next(iter(out['figures'].values()))[0].parent if out['figures'] else '-'})")
