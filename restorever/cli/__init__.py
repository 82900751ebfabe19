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
    """Turn errors into one line on stderr: exit status 2 for what a user can fix (bad input, missing files, a
    full disk), 1 for anything unexpected (a bug; ``-vv`` shows its traceback), 130 on Ctrl-C, 143 on SIGTERM (a
    batch scheduler's time limit, ``kill``), 141 when stdout is closed early (``restorever restorers | head -1``),
    silently."""

    @functools.wraps(func)
    def wrapper(*args, **kwargs):
        import signal

        def _terminate(signum, frame):  # SIGTERM unwinds as Ctrl-C does, keeping finished cache entries
            raise _Terminated

        try:
            previous = signal.signal(signal.SIGTERM, _terminate)
        except ValueError:  # not the main thread
            previous = None
        import warnings

        def _one_line(message, category, filename, lineno, file=None, line=None):  # no source line, no path
            if logging.getLogger("restorever").isEnabledFor(logging.WARNING):  # -q: errors only
                click.echo(f"warning: {str(message).splitlines()[0] if str(message) else category.__name__}",
                           err=True)

        try:
            with warnings.catch_warnings():
                warnings.showwarning = _one_line
                return func(*args, **kwargs)
        except (click.exceptions.ClickException, click.exceptions.Exit, click.exceptions.Abort):
            raise  # usage errors and deliberate exits: click prints and exits as usual
        except ConfigError as exc:  # library errors name the argument; the CLI names its flag
            _fail(f"{cli_flag(exc.argument)} {exc.problem}")
        except (RestoreverError, ValueError, KeyError) as exc:
            if not isinstance(exc, RestoreverError) and _user_code_frame(exc):  # a plugin's own KeyError: its line
                _unexpected(exc)
            _fail(str(exc.args[0]) if isinstance(exc, KeyError) and exc.args else str(exc))
        except RuntimeError as exc:
            if "out of memory" not in str(exc).lower():
                _unexpected(exc)
            _fail("out of memory even for a single face (after halving the batch down to 1); use a device with "
                  "more memory, --device cpu, or a lower-precision option of the backend")
        except BrokenPipeError:  # the reader of stdout went away (`| head`): stop quietly, as a killed writer does
            _silence_stdout()
            sys.exit(141)
        except OSError as exc:  # a path the user named that cannot be read or written: one line, no traceback
            where = f"{exc.filename}: " if exc.filename else ""
            _fail(f"{where}{exc.strerror or exc}{_os_error_hint(exc)}")
        except KeyboardInterrupt as exc:
            terminated = isinstance(exc, _Terminated)
            what = "terminated (SIGTERM)" if terminated else "interrupted"
            click.echo(f"{what}{_RESUME.get(click.get_current_context().command.name, '')}", err=True)
            sys.exit(143 if terminated else 130)  # 128 + the signal's number, as a shell reports
        except Exception as exc:  # noqa: BLE001 -- a bug: one line unless -vv asks for the traceback
            _unexpected(exc)
        finally:
            if previous is not None:
                signal.signal(signal.SIGTERM, previous)

    return wrapper


class _Terminated(KeyboardInterrupt):
    """SIGTERM, raised where the process is, so that it unwinds exactly as Ctrl-C does (exit status 143, not 130)."""


def figure_formats(text: str) -> list[str]:
    """``--format`` of the commands that draw figures: ``"png, .PDF,svg"`` -> ``["png", "pdf", "svg"]``, each once, in
    the given order; :class:`click.BadParameter` naming the option for a format matplotlib is not asked to write
    here, or for none at all."""
    fmts = list(dict.fromkeys(f.strip().lower().lstrip(".") for f in (text or "").split(",") if f.strip()))
    bad = [f for f in fmts if f not in ("png", "pdf", "svg")]
    if bad or not fmts:
        raise click.BadParameter(f"unsupported format(s) {bad or [text]}; use png, pdf, svg (comma-separated)",
                                 param_hint="--format")
    return fmts


#: what an interrupted command leaves to resume from, by command name (others: just "interrupted")
_RESUME = {name: ": finished cache entries are kept; rerun the same command to resume"
           for name in ("eval", "ident", "fit")}
_RESUME.update({name: f": the outputs finished are recorded in OUT/{name}.json; rerun the same command to resume"
                for name in ("degrade", "restore")})


def _debugging() -> bool:
    """``-vv`` was given (the root logger admits debug messages)."""
    return logging.getLogger().isEnabledFor(logging.DEBUG)


def _fail(message: str, status: int = 2) -> None:
    """Print ``error: message`` and exit with ``status``; with ``-vv`` the traceback of the error being handled is
    logged first (at debug level)."""
    if _debugging():
        logging.getLogger(__name__).debug("traceback of the error below", exc_info=True)
    click.echo(f"error: {message}", err=True)
    sys.exit(status)


def _unexpected(exc: BaseException) -> None:
    """An error no check anticipated: with ``-vv`` re-raised (Python prints the traceback), else one line naming
    its type, exit status 1."""
    import traceback

    if _debugging():
        raise exc
    text = str(exc).strip().splitlines()
    where = _user_code_frame(exc)
    if where:  # raised in the user's own file (a plugin, a helper of it): point there, not at restorever's issues
        inner = traceback.extract_tb(exc.__traceback__)[-1]
        how = "raised in" if where == f"{inner.filename}:{inner.lineno}" else "raised by a library called from"
        _fail(f"unexpected {type(exc).__name__}{': ' + text[0] if text else ''}, {how} {where}: your code, not "
              f"restorever's (rerun with -vv for the traceback)", status=1)
    _fail(f"unexpected {type(exc).__name__}{': ' + text[0] if text else ''} (rerun with -vv for the traceback, and "
          f"please report it)", status=1)


def _user_code_frame(exc: BaseException) -> str | None:
    """``FILE:LINE`` of the user's own file (a ``--plugin`` module, a helper of it) that raised ``exc`` or called
    the installed package that raised it; None when the nearest frame outside the installed packages and the
    standard library is restorever's own (a bug to report).

    The traceback is walked from the innermost frame outwards past library frames: a plugin's network that fails
    inside torch is the plugin's line that called it. Installed means in the standard library or in a
    ``site-packages`` / ``dist-packages`` folder, not merely under ``sys.prefix``: a project folder that holds its
    own venv (``python -m venv .``) is still the user's."""
    import site
    import sysconfig
    import traceback
    from pathlib import Path

    own = Path(__file__).resolve().parents[1]  # the restorever package (installed, editable or a checkout)
    library = {Path(p).resolve() for key in ("stdlib", "platstdlib", "purelib", "platlib")
               if (p := sysconfig.get_paths().get(key))}
    library |= {Path(p).resolve() for p in getattr(site, "getsitepackages", list)()}
    if site.ENABLE_USER_SITE:
        library.add(Path(site.getusersitepackages()).resolve())
    for frame in reversed(traceback.extract_tb(exc.__traceback__)):
        if frame.filename.startswith("<"):  # <frozen importlib._bootstrap>, <string>: no file of anyone's
            continue
        path = Path(frame.filename).resolve()
        if path.is_relative_to(own):
            return None
        if {"site-packages", "dist-packages"} & set(path.parts) or any(path.is_relative_to(r) for r in library):
            continue
        return f"{frame.filename}:{frame.lineno}"
    return None


def _silence_stdout() -> None:
    """Point stdout at the null device, so that Python's final flush does not fail again on the closed pipe."""
    import os

    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    except (OSError, ValueError, AttributeError):  # no real file descriptor (a test runner's stream)
        pass


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


#: ``--no-progress`` help, the same on every command that draws bars
NO_PROGRESS_HELP = ("Hide the progress bars (a bar on a terminal; in a log file, a line a minute for a stage "
                    "that lasts longer; -q hides them too).")

_VERBOSITY = "restorever.verbosity"


def _set_verbosity(ctx: click.Context, param: click.Parameter, value) -> None:
    """Callback of ``-v`` / ``-q``, given before or after the subcommand (``restorever -v eval`` = ``restorever eval
    -v``; the counts add up): sets the root logging level, restored when the command ends."""
    if not value:
        return
    root = ctx.find_root()
    state = root.meta.get(_VERBOSITY)
    if state is None:
        state = root.meta[_VERBOSITY] = {"verbose": 0, "quiet": False}
        previous = logging.getLogger().level
        root.call_on_close(lambda: logging.getLogger().setLevel(previous))
    if param.name == "quiet":
        state["quiet"] = True
    else:
        state["verbose"] += value
    if state["quiet"] and state["verbose"]:
        raise click.UsageError("-q (errors only) and -v (more output) contradict each other: give one of them")
    logging.getLogger().setLevel(logging.ERROR if state["quiet"] else logging.WARNING - 10 * min(state["verbose"], 2))


def _verbosity_options() -> list[click.Option]:
    return [click.Option(["-v", "--verbose"], count=True, expose_value=False, is_eager=True, callback=_set_verbosity,
                         help="More log output (-vv: debug, and the traceback of an error)."),
            click.Option(["-q", "--quiet"], is_flag=True, expose_value=False, is_eager=True, callback=_set_verbosity,
                         help="No logged warnings or progress bars on stderr: errors only (and the notes "
                              "degrade and restore give on their outputs).")]


def _with_verbosity(command: click.Command) -> click.Command:
    """``command`` (and, for a group, every subcommand) taking ``-v`` and ``-q`` itself."""
    if not any(p.name in ("verbose", "quiet") for p in command.params):
        command.params.extend(_verbosity_options())
    for sub in getattr(command, "commands", {}).values():
        _with_verbosity(sub)
    return command


class _Group(click.Group):
    """The top-level group: every command added to it takes ``-v`` / ``-q`` after its name too."""

    def add_command(self, cmd: click.Command, name: str | None = None) -> None:
        super().add_command(_with_verbosity(cmd), name)


@click.group(cls=_Group, context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 110})
@click.version_option(package_name="restorever", message="%(prog)s %(version)s")
def cli() -> None:
    """restorever: does face restoration preserve identity?

    \b
    A first run (40 balanced LFW pairs, about a minute on a CPU; drop --limit-pairs for all 6,000):
      restorever eval --protocol lfw --data-root DIR --recognizer dlib --scales 8,16 --limit-pairs 40 --out runs/try
      restorever report runs/try

    \b
    Exit status: 0 done; 2 a usage or input error (one line on stderr naming the fix); 1 an unexpected error (one
    line; -vv prints its traceback); 130 interrupted (Ctrl-C); 143 terminated (SIGTERM: a scheduler's time limit,
    kill); 141 stdout closed early (| head)."""
    logging.basicConfig(format="%(levelname)s %(name)s: %(message)s")  # the level: -v / -q (_set_verbosity)


cli.params.extend(_verbosity_options())


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
