"""The exit codes and the one error style of the `ingest`, `catalog` and `train` CLIs.

Every mistake prints one line on stderr, `<tool>: <problem>; <fix>`, and no traceback (`--debug`, anywhere on
the command line, or `EI_FORGE_DEBUG=1` re-raises it). The exit code says what happened:

- 0 `OK`: done;
- 1 `REJECTS`: finished, but with too many rejects (or `ingest validate` found problems);
- 2 `REFUSED`: refused before starting (a wrong option, input, name or state): nothing was written;
- 3 `FAILED`: failed during the run (disk full, a bug, a killed worker): the same command resumes;
- 130: interrupted (Ctrl-C).

The CLIs raise `Refused` / `Failed` (or let a known exception through: a pydantic `ValidationError` is a
refused option, `FileNotFoundError` a missing input, `ENOSPC` a full disk) and `main` turns them into the
line and the code. This module sits with the schemas so that all three tools can import it."""

from __future__ import annotations

import errno
import os
import sys
from collections.abc import Callable, Sequence
from enum import IntEnum
from typing import Any, NoReturn

DEBUG_FLAG = "--debug"
DEBUG_ENV = "EI_FORGE_DEBUG"
DEBUG_HINT = f"run again with {DEBUG_FLAG} for the traceback"


class ExitCode(IntEnum):
    OK = 0
    REJECTS = 1
    REFUSED = 2
    FAILED = 3
    INTERRUPTED = 130


class CliError(Exception):
    """A mistake with its fix: `str(e)` is the one line `<problem>; <fix>`."""

    code = ExitCode.FAILED

    def __init__(self, problem: str, fix: str = "") -> None:
        self.problem, self.fix = problem, fix
        super().__init__(f"{problem}; {fix}" if fix else problem)


class Refused(CliError, ValueError):
    """Refused before starting: nothing was written (exit 2)."""

    code = ExitCode.REFUSED


class Failed(CliError, RuntimeError):
    """Failed during the run: what was published stays, the same command resumes (exit 3)."""

    code = ExitCode.FAILED


def _validation_line(exc: Any) -> str:
    parts = []
    for err in exc.errors():
        loc = ".".join(str(x) for x in err.get("loc", ())) or exc.title
        parts.append(f"{loc}: {err.get('msg', '')}")
    return "; ".join(parts)


def _os_error(exc: OSError) -> tuple[ExitCode, str]:
    where = exc.filename or ""
    if exc.errno == errno.ENOSPC:
        return ExitCode.FAILED, f"disk full writing {where}; free space and run the same command again"
    if exc.errno in (errno.EROFS, errno.EACCES, errno.EPERM):
        return ExitCode.REFUSED, f"cannot write {where}: {exc.strerror}; pick a writable folder"
    if isinstance(exc, FileNotFoundError):
        return ExitCode.REFUSED, f"{where}: no such file or folder; check the path"
    if isinstance(exc, FileExistsError):
        return ExitCode.REFUSED, f"{where} already exists; pick another path or remove it"
    return ExitCode.FAILED, f"{where}: {exc.strerror or exc}; {DEBUG_HINT}"


def describe(exc: BaseException) -> tuple[ExitCode, str]:
    """The exit code and the one line (without the tool's name) for an exception that reached the CLI."""
    from pydantic import ValidationError

    if isinstance(exc, CliError):
        return exc.code, str(exc)
    if isinstance(exc, ValidationError):
        return ExitCode.REFUSED, f"{_validation_line(exc)}; see --help"
    if isinstance(exc, OSError) and (exc.errno is not None or exc.filename):
        return _os_error(exc)
    if isinstance(exc, FileNotFoundError | FileExistsError):  # raised with a message of ours
        return ExitCode.REFUSED, f"{exc}; check the path"
    if isinstance(exc, ImportError):
        return ExitCode.REFUSED, f"{exc}; install it (see README.md, Setup)"
    message = exc.args[0] if isinstance(exc, KeyError) and len(exc.args) == 1 else exc  # no repr quotes
    text = " ".join(str(message).split()) or "(no message)"
    return ExitCode.FAILED, f"{type(exc).__name__}: {text}; {DEBUG_HINT}"


def _is(exc: BaseException, name: str) -> bool:
    """Whether `exc` is click's (or typer's vendored click's) exception class `name`, without importing it."""
    return any(cls.__name__ == name for cls in type(exc).__mro__)


def run_app(app: Callable[..., Any], prog: str, argv: Sequence[str] | None = None) -> int:
    """Run a typer app the shared way and return its exit code (see the module's docstring)."""
    args = list(sys.argv[1:] if argv is None else argv)
    debug = DEBUG_FLAG in args or os.environ.get(DEBUG_ENV) == "1"
    args = [a for a in args if a != DEBUG_FLAG]
    try:
        rv = app(args=args, prog_name=prog, standalone_mode=False)
    except KeyboardInterrupt:
        print(f"{prog}: interrupted", file=sys.stderr)
        return ExitCode.INTERRUPTED
    except Exception as e:
        if _is(e, "NoArgsIsHelpError"):  # `ingest` alone: the help, as click prints it
            print(e.format_message(), file=sys.stderr)  # type: ignore[attr-defined]
            return ExitCode.REFUSED
        if _is(e, "UsageError"):  # a misspelled option, a missing argument
            ctx = getattr(e, "ctx", None)
            command = ctx.command_path if ctx is not None else prog
            problem = e.format_message().rstrip(".")  # type: ignore[attr-defined]
            print(f"{prog}: {problem}; see `{command} --help`", file=sys.stderr)
            return ExitCode.REFUSED
        if _is(e, "Abort"):
            print(f"{prog}: interrupted", file=sys.stderr)
            return ExitCode.INTERRUPTED
        if debug:
            raise
        code, line = describe(e)
        print(f"{prog}: {line}", file=sys.stderr)
        return code
    return rv if isinstance(rv, int) else ExitCode.OK


def main_of(app: Callable[..., Any], prog: str) -> Callable[[], NoReturn]:
    """The console-script entry point of a typer app: `ingest = "ingest.cli:entry"`."""

    def main() -> NoReturn:
        sys.exit(int(run_app(app, prog)))

    return main
