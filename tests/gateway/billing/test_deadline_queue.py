"""The queue a tenant's waiting requests are kept in: earliest deadline first, arrival order among equals."""

from __future__ import annotations

import math

from gateway.billing.deadline_queue import DeadlineQueue


def test_the_earliest_deadline_leaves_first_and_equal_deadlines_keep_their_arrival_order() -> None:
    queue: DeadlineQueue[str] = DeadlineQueue()
    queue.push("flex", 130.0)
    queue.push("default-1", 20.0)
    queue.push("no-slo")
    queue.push("default-2", 20.0)
    queue.push("priority", 12.0)
    assert [queue.popleft() for _ in range(len(queue))] == [
        "priority",
        "default-1",
        "default-2",
        "flex",
        "no-slo",
    ]
    assert not queue


def test_the_latest_deadline_is_the_one_given_up_and_the_newest_among_equals() -> None:
    queue: DeadlineQueue[str] = DeadlineQueue()
    for name, deadline in [("a", 5.0), ("b", math.inf), ("c", 1.0), ("d", math.inf)]:
        queue.push(name, deadline)
    assert queue.pop_latest() == "d"
    assert queue.pop_latest() == "b"
    assert list(queue) == ["c", "a"]


def test_a_removed_item_is_gone_and_removing_it_twice_says_so() -> None:
    queue: DeadlineQueue[object] = DeadlineQueue()
    first, second = object(), object()
    queue.push(first, 2.0)
    queue.push(second, 1.0)
    assert queue.remove(first) and not queue.remove(first)
    assert len(queue) == 1 and queue.popleft() is second
