"""The log format of every ``maas`` command, and the serving process's set-up: one line per event on
stderr, written by a thread of its own.

A request's events are logged from the event loop (its usage line, above all). Formatting the time and
writing the line to stderr cost the loop about a tenth of a millisecond a request at one request at a
time, as much as some of the request path itself; here the loop only queues the record, and a listener
thread formats and writes it while the loop waits on the network.
"""

from __future__ import annotations

import atexit
import logging
import queue
import sys
from logging.handlers import QueueHandler, QueueListener
from typing import TextIO

LOG_FORMAT = "%(asctime)s %(levelname)s %(name)s %(message)s"


class _HandOver(QueueHandler):
    """Queues a record with its message merged (its arguments may change later); the rest, the time and
    a traceback, is formatted by the listener's handler."""

    def prepare(self, record: logging.LogRecord) -> logging.LogRecord:
        queued = logging.LogRecord.__new__(logging.LogRecord)  # a shallow copy, without copy's protocol:
        queued.__dict__.update(record.__dict__)  # the caller's other handlers still see the original
        queued.msg = record.getMessage()
        queued.args = None
        return queued


def log_off_the_loop(level: int = logging.INFO, stream: TextIO | None = None) -> QueueListener | None:
    """Route the root logger through a queue to a writer thread, stopped (and drained) at exit; None if
    this process's logs already go that way."""
    root = logging.getLogger()
    if any(isinstance(handler, _HandOver) for handler in root.handlers):
        root.setLevel(level)
        return None
    writer = logging.StreamHandler(stream or sys.stderr)
    writer.setFormatter(logging.Formatter(LOG_FORMAT))
    records: queue.SimpleQueue[logging.LogRecord] = queue.SimpleQueue()
    listener = QueueListener(records, writer, respect_handler_level=True)
    listener.start()
    atexit.register(_stop, listener)
    for handler in list(root.handlers):
        root.removeHandler(handler)
    root.addHandler(_HandOver(records))
    root.setLevel(level)
    return listener


def _stop(listener: QueueListener) -> None:
    if listener._thread is not None:  # not stopped already
        listener.stop()
