"""The process's log lines are written by a thread of their own, formatted as before, none lost at exit."""

from __future__ import annotations

import io
import logging

from gateway.cli.logs import log_off_the_loop


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
