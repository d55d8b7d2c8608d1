"""The native profile's report: perf's samples as CPU a request by shared object and by system call."""

from __future__ import annotations

import collections

from benchmarks.native_profile import breakdown, report

SCRIPT = """    500000 
\t           fa8f6 unicodekeys_lookup_unicode (/py/lib/libpython3.11.so.1.0)

    500000 
\tffffffff813aecd3 finish_task_switch.isra.0 ([kernel.kallsyms])
\tffffffff8175aa2c __x64_sys_epoll_pwait ([kernel.kallsyms])
\tffffffff8223df91 do_syscall_64 ([kernel.kallsyms])
\t          108cae epoll_pwait (/usr/lib/x86_64-linux-gnu/libc.so.6)

   1000000 
\tffffffff817d87f6 ext4_sync_file ([kernel.kallsyms])
\tffffffff8175bbbb __x64_sys_fdatasync ([kernel.kallsyms])

    250000 
\tffffffff81000001 handle_softirqs ([kernel.kallsyms])
\tffffffff81000002 irq_exit_rcu ([kernel.kallsyms])

    125000 
\tffffffff81000003 tcp_sendmsg ([kernel.kallsyms])
\t          10e2b0 __GI___libc_write (/usr/lib/x86_64-linux-gnu/libc.so.6)

    250000 
\t            1234 sqlite3VdbeExec (/usr/lib/x86_64-linux-gnu/libsqlite3.so.0.8.6)

not a sample
"""


def test_samples_are_charged_to_their_shared_object_or_the_system_call_they_ran_for() -> None:
    spent = breakdown(SCRIPT)
    assert spent == collections.Counter(
        {
            "U libpython3.11.so.1.0": 500_000,
            "K __x64_sys_epoll_pwait": 500_000,
            "K __x64_sys_fdatasync": 1_000_000,
            "K interrupts and kernel work outside a call": 250_000,
            "K via __GI___libc_write": 125_000,
            "U libsqlite3.so.0.8.6": 250_000,
        }
    )


def test_the_report_gives_microseconds_a_request_and_shares_per_cell() -> None:
    text = report("# title", {"gateway, round 1": (breakdown(SCRIPT), 10)})
    assert text.startswith("# title\n")
    assert "## gateway, round 1: 10 requests, 262.5 us of CPU each" in text
    assert "   100.0 us   38.1 %  K __x64_sys_fdatasync" in text
    assert "    50.0 us   19.0 %  U libpython3.11.so.1.0" in text
