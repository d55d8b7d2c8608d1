"""The sampled profile's report: py-spy's collapsed stacks grouped by thread, package and request stage."""

from __future__ import annotations

from benchmarks.sampled_profile import summarize

RAW = "\n".join(
    [
        "thread (1): MainThread;run (/v/site-packages/uvicorn/protocols/http/httptools_impl.py:418);"
        "FastAPI.__call__ (/v/site-packages/fastapi/applications.py:1156);"
        "run_call (/repo/gateway/api/generation.py:170);dispatch (/repo/gateway/api/dispatch.py:80) 30",
        "thread (1): MainThread;run (/v/site-packages/uvicorn/protocols/http/httptools_impl.py:418);"
        "FastAPI.__call__ (/v/site-packages/fastapi/applications.py:1156);"
        "run_call (/repo/gateway/api/generation.py:170);"
        "Meter._hand_over (/repo/gateway/billing/metering.py:125);"
        "Logger.info (/py/lib/python3.11/logging/__init__.py:1489) 10",
        "thread (2): maas-ledger;Thread.run (/py/lib/python3.11/threading.py:982);"
        "LedgerWriter._run (/repo/gateway/billing/ledger/writer.py:60) 20",
        "not a sample line",
    ]
)


def test_samples_are_grouped_by_thread_package_and_stage() -> None:
    report = summarize(RAW, "# title")
    assert report.startswith("# title\n")
    assert "samples on the CPU: 60" in report
    assert "     40   66.7 %  event loop" in report and "     20   33.3 %  maas-ledger" in report
    # The loop's samples by their innermost frame: dispatch's 30, the log line's 10.
    assert "     30   75.0 %  gateway.api" in report and "     10   25.0 %  logging" in report
    assert "     40   66.7 %  run_call" in report  # inclusive: both loop stacks pass through it
    assert "     10   16.7 %  metering (record, metrics, log)" in report
    assert "     20   33.3 %  ledger writer thread" in report
