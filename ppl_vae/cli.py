"""The ``ppl-vae`` command line: one sub-command per module in :mod:`ppl_vae.commands`.

Each command module defines ``register(subparsers)``, which adds its parser and sets
``func`` (called with the parsed arguments, returning an exit code). Heavy imports
(torch, jax) happen inside the commands, so ``ppl-vae --help`` stays fast.

Errors a user can fix (:func:`user_error_types`: a bad spec, data, run folder, checkpoint,
argument or output path; a training run that stopped on a bad step) end here in one line,
``ppl-vae COMMAND: error: ...`` on stderr, with exit code 2, as argparse's own errors do;
``--debug`` shows the traceback instead.
"""

from __future__ import annotations

import argparse
import errno
import importlib
import pkgutil
import sys

from ppl_vae import __version__, commands

_OS_HINTS = {
    errno.EACCES: "make it writable or choose another output folder",
    errno.EPERM: "make it writable or choose another output folder",
    errno.EROFS: "the filesystem is read-only; choose another output folder",
    errno.ENOSPC: "the disk is full; free space or choose another output folder",
    errno.ENOTDIR: "a part of this path is a file, not a folder; choose another path",
    errno.EISDIR: "it is a folder; pass a file",
    errno.ENOENT: "check the path",
}


class _Parser(argparse.ArgumentParser):
    """argparse with one-line errors: the message and where to read the usage."""

    def error(self, message: str):
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="ppl-vae", description="Variational autoencoders with Pyro and NumPyro.")
    parser.add_argument("--version", action="version", version=f"ppl_vae {__version__}")
    parser.add_argument("--debug", action="store_true",
                        help="show the traceback of an error instead of its one-line message")
    parser.add_argument("--threads", type=_threads, default="auto",
                        help="CPU threads for torch and XLA: a number, or auto (default: the "
                             "cores the rest of the machine leaves free; see ppl-vae bench)")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for info in sorted(pkgutil.iter_modules(commands.__path__), key=lambda m: m.name):
        if info.name.startswith("_"):  # shared helpers of the commands, not commands
            continue
        importlib.import_module(f"ppl_vae.commands.{info.name}").register(sub)
    for command in sub.choices.values():
        command.add_argument("--debug", action="store_true", default=argparse.SUPPRESS,
                             help="show the traceback of an error instead of its message")
        command.set_defaults(prog=command.prog)
    return parser


def user_error_types() -> tuple[type[BaseException], ...]:
    """The exceptions that mean "fix the input", not "ppl_vae has a bug".

    ``ValueError`` covers the package's argument checks and its :class:`SpecError`,
    :class:`DataError` and the commands' :class:`UsageError`; ``OSError`` an unreadable
    input or unwritable output.
    """
    from ppl_vae.io import FileReadError
    from ppl_vae.models._core import DeviceError
    from ppl_vae.runs import RunError
    from ppl_vae.training.loop import TrainingStoppedError

    return (ValueError, OSError, FileReadError, RunError, TrainingStoppedError, DeviceError)


def describe(err: BaseException) -> str:
    """One line for ``err``: its message, or for a file-system error the path, the reason and
    what to do."""
    from ppl_vae.runs import RunError

    if isinstance(err, OSError) and not isinstance(err, RunError) and err.filename:
        reason = (err.strerror or str(err)).lower()
        hint = _OS_HINTS.get(err.errno)
        text = f"{err.filename}: {reason}" + (f"; {hint}" if hint else "")
    else:
        text = str(err) or type(err).__name__
    return " ".join(text.split())


def _threads(text: str) -> int | str:
    if text == "auto":
        return text
    if not text.isdigit() or int(text) < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer or auto, got {text!r}")
    return int(text)


def main(argv: list[str] | None = None) -> int:
    from ppl_vae.threads import set_threads

    args = build_parser().parse_args(argv)
    set_threads(args.threads)
    try:
        return int(args.func(args) or 0)
    except Exception as err:
        if args.debug or not isinstance(err, user_error_types()):
            raise
        print(f"{args.prog}: error: {describe(err)}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
