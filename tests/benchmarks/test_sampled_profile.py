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
        "thread (2): maas-ledger;Thread.run (/py/lib/python3.11/threading.py:982);"
        "Condition.wait (/py/lib/python3.11/threading.py:327) 500",
        "thread (1): MainThread;Runner.run (/py/lib/python3.11/asyncio/runners.py:118) 20",
        "not a sample line",
    ]
)


def test_samples_are_grouped_by_thread_package_and_stage() -> None:
    report = summarize(RAW, "# title")
    assert report.startswith("# title\n")
    assert "samples on the CPU: 80" in report  # the writer's 500 idle samples left out
    assert "     60   75.0 %  event loop" in report and "     20   25.0 %  maas-ledger" in report
    # The loop's samples by their innermost frame: dispatch's 30, the log line's 10, uvloop's 20.
    assert "     30   50.0 %  gateway.api" in report and "     10   16.7 %  logging" in report
    assert "     20   33.3 %  the loop itself (uvloop" in report
    assert "     40   50.0 %  run_call" in report  # inclusive: two loop stacks pass through it
    assert "     10   12.5 %  metering (record, metrics, log)" in report
    assert "     20   25.0 %  ledger writer thread" in report
