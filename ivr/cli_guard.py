"""What every `ivr` command shares around it: stdout errors named "standard output", and
SIGTERM read as Ctrl-C by one-shot commands (ivr/cli.py's IvrGroup uses both)."""
from __future__ import annotations

import io
import signal
import threading
from typing import Any

import click


def _named(call: Any, *args: Any) -> Any:
    """call(*args), an OSError it raises naming "standard output"."""
    try:
        return call(*args)
    except OSError as exc:
        raise OSError(exc.errno, exc.strerror, "standard output") from None


class NamedBuffer:
    """sys.stdout.buffer during a command (bytes written as they are: `ivr report --format
    csv`), its errors named as NamedStdout's."""

    def __init__(self, raw: Any) -> None:
        self.raw = raw

    def write(self, data: bytes) -> int:
        return int(_named(self.raw.write, data))

    def flush(self) -> None:
        _named(self.raw.flush)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.raw, name)


class NamedStdout(io.TextIOBase):
    """sys.stdout during a command: an OSError writing it (`ivr report > /dev/full`, a closed
    pipe) names "standard output", as one on a file names the file (IvrGroup.invoke)."""

    def __init__(self, stream: Any) -> None:
        super().__init__()
        self.stream = stream

    def write(self, text: str) -> int:
        return int(_named(self.stream.write, text))

    def flush(self) -> None:
        _named(self.stream.flush)

    def writable(self) -> bool:
        return True

    def isatty(self) -> bool:
        return bool(self.stream.isatty())

    def fileno(self) -> int:
        return int(self.stream.fileno())

    @property
    def encoding(self) -> str:  # type: ignore[override]
        return str(self.stream.encoding)

    @property
    def errors(self) -> str | None:  # type: ignore[override]
        return self.stream.errors  # type: ignore[no-any-return]

    @property
    def buffer(self) -> NamedBuffer:
        return NamedBuffer(self.stream.buffer)

    def __getattr__(self, name: str) -> Any:  # mode, name...
        return getattr(self.stream, name)


# Commands that run until stopped handle SIGTERM themselves (campaign/stopping.py; ivr.callback_line.install_signals).
SERVING = frozenset({"run", "serve", "web", "demo"})


def _sigterm(signum: int, frame: Any) -> None:
    raise KeyboardInterrupt  # one path for Ctrl-C and SIGTERM: an import ends as a partial one


def sigterm_as_interrupt(ctx: click.Context) -> None:
    """A one-shot command stopped by SIGTERM ends as on Ctrl-C (an import writes its audit
    row and says what it kept) instead of dying silently; restored when the command ends."""
    if ctx.invoked_subcommand in SERVING or \
            threading.current_thread() is not threading.main_thread():
        return
    previous = signal.signal(signal.SIGTERM, _sigterm)
    ctx.call_on_close(lambda: signal.signal(signal.SIGTERM, previous))


class Seconds(click.FloatRange):
    """A --timeout in seconds within [low, high]: FloatRange lets nan through (no comparison
    holds), and inf, which later failed as tracebacks (int(nan))."""

    def __init__(self, low: float = 1, high: float = 3600) -> None:
        super().__init__(low, high)

    def convert(self, value: Any, param: Any, ctx: Any) -> Any:
        seconds = super().convert(value, param, ctx)
        if seconds != seconds:  # nan
            self.fail(f"{value!r} is not in the range {self.min:g}<=x<={self.max:g}.", param, ctx)
        return seconds
