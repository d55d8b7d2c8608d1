"""The process's log lines are written by a thread of their own, formatted as before, none lost at exit."""

from __future__ import annotations

import io
import logging
import queue
import threading
import time

from gateway.cli.logs import BatchWriter, log_off_the_loop


def test_records_are_written_by_the_listener_with_their_arguments_merged_and_the_original_untouched() -> None:
    root = logging.getLogger()
    saved = (list(root.handlers), root.level)
    out = io.StringIO()
    try:
        listener = log_off_the_loop(logging.INFO, out)
        assert listener is not None
        assert log_off_the_loop(logging.INFO, out) is None  # once per process
        seen: list[logging.LogRecord] = []

        class Keep(logging.Handler):
            def emit(self, record: logging.LogRecord) -> None:
                seen.append(record)

        logger = logging.getLogger("maas.test.logs")
        keep = Keep()
        logger.addHandler(keep)
        try:
            values = ["a"]
            logger.info("usage model=%s tokens=%d", values, 3)
            values.append("b")  # changed after the call: the line shows the value at the call
            logger.debug("not at this level")
        finally:
            logger.removeHandler(keep)
        listener.stop()  # drains the queue, as at exit
        lines = out.getvalue().splitlines()
        assert len(lines) == 1 and lines[0].endswith(" INFO maas.test.logs usage model=['a'] tokens=3")
        assert seen[0].args == (values, 3)  # the caller's own handlers got the record as it was
    finally:
        for handler in list(root.handlers):
            root.removeHandler(handler)
        for handler in saved[0]:
            root.addHandler(handler)
        root.setLevel(saved[1])


def test_lines_that_follow_within_the_gather_time_are_written_in_the_same_wake_up_in_order() -> None:
    records: queue.SimpleQueue[logging.LogRecord | None] = queue.SimpleQueue()
    queued_all = threading.Event()
    written: list[tuple[str, bool, str]] = []

    class Note(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            written.append((record.getMessage(), queued_all.is_set(), threading.current_thread().name))

    def line(text: str) -> logging.LogRecord:
        return logging.LogRecord("maas.test", logging.INFO, __file__, 1, text, None, None)

    writer = BatchWriter(records, Note(), gather_s=1.0)
    records.put(line("first"))
    time.sleep(0.05)  # the writer has woken for the first line and is gathering
    records.put(line("second"))
    records.put(line("third"))
    queued_all.set()
    writer.stop()  # writes the batch, then ends
    # The first line was written only after the others were queued: one wake-up wrote all three.
    assert written == [(text, True, "maas-logs") for text in ("first", "second", "third")]
    assert not writer._thread.is_alive()


def test_a_line_made_in_the_writer_reads_as_the_logger_would_write_it_at_the_time_of_the_call() -> None:
    records: queue.SimpleQueue[logging.LogRecord | tuple[str, int, float, str, tuple[object, ...]] | None] = (
        queue.SimpleQueue()
    )
    handler = logging.StreamHandler(out := io.StringIO())
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s %(message)s"))
    writer = BatchWriter(records, handler, gather_s=0.0)
    logger = logging.getLogger("maas.test.lines")
    logger.setLevel(logging.INFO)
    try:
        called = time.time()
        writer.line(logger, logging.INFO, "usage model=%s tokens=%d", ("m", 3))
        writer.line(logger, logging.DEBUG, "below the logger's level: %s", ("dropped",))
        time.sleep(0.01)
        writer.stop()
    finally:
        logger.setLevel(logging.NOTSET)
    lines = out.getvalue().splitlines()
    assert len(lines) == 1 and lines[0].endswith(" INFO maas.test.lines usage model=m tokens=3")
    stamped = time.strptime(lines[0][:19], "%Y-%m-%d %H:%M:%S")
    assert abs(time.mktime(stamped) - int(called)) <= 1  # the time of the call, not of the writing
