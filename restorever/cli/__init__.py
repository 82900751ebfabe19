"""The ``restorever`` command line (click). Each subcommand parses options, calls one library function and writes
its outputs. Errors a user can cause print one line (``error: ...``) and exit with status 2."""
from __future__ import annotations

import functools
import logging
import sys

import click

from ..errors import ConfigError, RestoreverError

#: library argument -> CLI flag, where the flag is not the argument with dashes
_FLAGS = {"restorers": "--restorer", "restorer_weights": "--weights"}


def cli_flag(argument: str) -> str:
    """The command-line flag of a library argument (``batch_size`` -> ``--batch-size``)."""
    return _FLAGS.get(argument, "--" + argument.replace("_", "-"))


def handle_errors(func):
    """Turn user-facing errors into one line on stderr and exit status 2."""

    @functools.wraps(func)
    def wrapper(*args, **kwargs):
        import signal

        def _terminate(signum, frame):  # SIGTERM behaves like Ctrl-C: unwind, keep finished cache entries
            raise KeyboardInterrupt

        try:
            previous = signal.signal(signal.SIGTERM, _terminate)
        except ValueError:  # not the main thread
            previous = None
        import warnings

        def _one_line(message, category, filename, lineno, file=None, line=None):  # no source line, no path
            click.echo(f"warning: {str(message).splitlines()[0] if str(message) else category.__name__}", err=True)

        try:
            with warnings.catch_warnings():
                warnings.showwarning = _one_line
                return func(*args, **kwargs)
        except ConfigError as exc:  # library errors name the argument; the CLI names its flag
            click.echo(f"error: {cli_flag(exc.argument)} {exc.problem}", err=True)
            sys.exit(2)
        except (RestoreverError, ValueError, KeyError) as exc:
            message = str(exc.args[0]) if isinstance(exc, KeyError) and exc.args else str(exc)
            click.echo(f"error: {message}", err=True)
            sys.exit(2)
        except RuntimeError as exc:
            if "out of memory" not in str(exc).lower():
                raise
            click.echo("error: out of memory even for a single face (after halving the batch down to 1); use a "
                       "device with more memory, --device cpu, or a lower-precision option of the backend",
                       err=True)
            sys.exit(2)
        except OSError as exc:  # a path the user named that cannot be read or written: one line, no traceback
            where = f"{exc.filename}: " if exc.filename else ""
            click.echo(f"error: {where}{exc.strerror or exc}{_os_error_hint(exc)}", err=True)
            sys.exit(2)
        except KeyboardInterrupt:
            click.echo("interrupted: finished cache entries are kept; rerun the same command to resume", err=True)
            sys.exit(130)
        finally:
            if previous is not None:
                signal.signal(signal.SIGTERM, previous)

    return wrapper


def _os_error_hint(exc: OSError) -> str:
    """What to do about a file-system error on a named path ("" when there is nothing general to say)."""
    import errno

    if not exc.filename:
        return ""
    return {errno.EACCES: "; make it (or its folder) writable and readable for you, or choose another path, then "
                          "rerun",
            errno.EPERM: "; make it (or its folder) writable for you, or choose another path, then rerun",
            errno.EISDIR: "; a folder stands where a file belongs: move it away, or choose another path",
            errno.ENOTDIR: "; a file stands where a folder belongs: move it away, or choose another path",
            errno.EROFS: "; the file system is read-only: choose another path"}.get(exc.errno, "")


@click.group(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 110})
@click.version_option(package_name="restorever", message="%(prog)s %(version)s")
@click.option("-v", "--verbose", count=True, help="More log output (-vv for debug).")
def cli(verbose: int) -> None:
    """restorever: does face restoration preserve identity?"""
    level = logging.WARNING - 10 * min(verbose, 2)
    logging.basicConfig(level=level, format="%(levelname)s %(name)s: %(message)s")


def main() -> None:  # console_scripts entry point
    cli()


def _register() -> None:
    from . import breakdown_cmd, compare_cmd, eval_cmd, listing, plot_cmd, report_cmd, stages, validate_cmd

    cli.add_command(eval_cmd.eval_command)
    cli.add_command(breakdown_cmd.breakdown_command)
    cli.add_command(plot_cmd.plot)
    cli.add_command(report_cmd.report_command)
    cli.add_command(compare_cmd.compare_command)
    cli.add_command(validate_cmd.validate_command)
    for command in listing.COMMANDS:
        cli.add_command(command)
    for command in stages.COMMANDS:
        cli.add_command(command)
    from . import ident_cmd  # identification, attributes and `plot cmc`
    ident_cmd.register(cli)


_register()
