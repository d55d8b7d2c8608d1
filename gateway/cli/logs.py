"""The log format of every ``maas`` command, and the serving process's set-up: one line per event on
stderr, written by a thread of its own.

A request's events are logged from the event loop (its usage line, above all). Formatting the time and
writing the line to stderr cost the loop about a tenth of a millisecond a request at one request at a
time, as much as some of the request path itself; here the loop only queues the record, and a writer
thread formats and writes it while the loop waits on the network.

The writer gathers lines for ``GATHER_S`` after the first of a batch, then writes them together: one
wake-up of the thread per batch, not per line. Each wake-up is a few tens of microseconds of a core on a
small VM, and a contender for the interpreter's lock with the event loop, at every request otherwise.
"""

from __future__ import annotations

import atexit
import logging
import queue
import sys
import threading
import time
from logging.handlers import QueueHandler
from typing import TextIO

LOG_FORMAT = "%(asctime)s %(levelname)s %(name)s %(message)s"
GATHER_S = 0.05
"""How long the writer waits after a batch's first line for the rest (the most a line is delayed)."""


class _HandOver(QueueHandler):
    """Queues a record with its message merged (its arguments may change later); the rest, the time and
    a traceback, is formatted by the listener's handler."""

    def prepare(self, record: logging.LogRecord) -> logging.LogRecord:
        queued = logging.LogRecord.__new__(logging.LogRecord)  # a shallow copy, without copy's protocol:
        queued.__dict__.update(record.__dict__)  # the caller's other handlers still see the original
        queued.msg = record.getMessage()
        queued.args = None
        return queued


_Deferred = tuple[str, int, float, str, tuple[object, ...]]
"""A line whose record the writer makes: logger name, level, time, format and its arguments."""


class BatchWriter:
    """A thread that writes queued records to ``handler`` in batches (see the module's text)."""

    def __init__(
        self,
        records: queue.SimpleQueue[logging.LogRecord | _Deferred | None],
        handler: logging.Handler,
        gather_s: float,
    ) -> None:
        self.records = records
        self.handler = handler
        self.gather_s = gather_s
        self._thread = threading.Thread(target=self._run, name="maas-logs", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while True:
            first = self.records.get()
            batch = [first]
            if first is not None:
                time.sleep(self.gather_s)  # the lines that follow join this batch
            while batch[-1] is not None:
                try:
                    batch.append(self.records.get_nowait())
                except queue.Empty:
                    break
            for item in batch:
                if isinstance(item, tuple):
                    item = _record(*item)
                if item is not None:
                    self.handler.handle(item)
            if batch[-1] is None:
                return

    def line(self, logger: logging.Logger, level: int, fmt: str, args: tuple[object, ...]) -> None:
        """Log ``fmt % args`` for ``logger`` at ``level``, with the record made and formatted in the writer's
        thread: a ``LogRecord`` made on the event loop (the caller's frame found, its file's name split,
        the thread named) is some thirty Python calls, and the usage line is written for every request.
        The logger's level applies; the line goes to the writer's handler, where the process's records
        go (a filter or a handler of the logger's own is not consulted)."""
        if logger.isEnabledFor(level):
            self.records.put((logger.name, level, time.time(), fmt, args))

    def stop(self) -> None:
        """Write what is queued, then end the thread."""
        if self._thread.is_alive():
            self.records.put(None)
            self._thread.join(timeout=5)


def _record(name: str, level: int, created: float, fmt: str, args: tuple[object, ...]) -> logging.LogRecord:
    record = logging.LogRecord(name, level, "", 0, fmt % args, None, None)
    record.created, record.msecs = created, (created - int(created)) * 1000
    return record


def log_off_the_loop(level: int = logging.INFO, stream: TextIO | None = None) -> BatchWriter | None:
    """Route the root logger through a queue to a writer thread, stopped (and drained) at exit; None if
    this process's logs already go that way."""
    root = logging.getLogger()
    if any(isinstance(handler, _HandOver) for handler in root.handlers):
        root.setLevel(level)
        return None
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.setFormatter(logging.Formatter(LOG_FORMAT))
    records: queue.SimpleQueue[logging.LogRecord | _Deferred | None] = queue.SimpleQueue()
    writer = BatchWriter(records, handler, GATHER_S)
    atexit.register(writer.stop)
    for handler_before in list(root.handlers):
        root.removeHandler(handler_before)
    root.addHandler(_HandOver(records))  # type: ignore[arg-type]  # the writer's None ends it
    root.setLevel(level)
    return writer
