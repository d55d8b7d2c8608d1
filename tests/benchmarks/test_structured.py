"""The structured-output benchmark's own arithmetic: which answers count as bad JSON, and the ratios."""

from __future__ import annotations

from benchmarks.structured import Answer, summarise, summarise_cell


def test_bad_json_is_counted_and_ratios_compare_kinds_and_systems() -> None:
    good = '{"name": "Ada", "mood": "calm", "age": 36, "hobbies": ["math"]}'
    structured = [
        Answer(0.2, "stop", 20, good),
        Answer(0.2, "stop", 20, '{"name": "Ada"'),  # does not parse
        Answer(0.2, "stop", 20, '{"name": "Ada", "mood": "bored", "age": 3, "hobbies": []}'),  # off schema
        Answer(0.4, "length", 32, '{"name": "A'),  # cut by max_tokens: not checked
    ]
    cell = summarise_cell(structured, [], wall_s=1.0, kind="structured")
    assert (cell["checked"], cell["invalid_json"], cell["schema_mismatch"]) == (3, 1, 1)
    assert cell["finish_reasons"] == {"stop": 3, "length": 1} and cell["rps"] == 4.0

    def row(system: str, kind: str, seconds: float) -> dict[str, object]:
        answers = [Answer(seconds, "stop", 10, good)] * 3
        cell = summarise_cell(answers, [], 1.0, kind)
        return {"system": system, "concurrency": 1, "kind": kind, "round": 1, **cell}

    rows = [row("vllm-direct", "plain", 0.1), row("vllm-direct", "structured", 0.15)]
    summary = summarise([*rows, row("maas", "plain", 0.11), row("maas", "structured", 0.18)])
    assert summary["structured_over_plain"]["vllm-direct"]["c=1"]["p50_ms"] == 1.5
    assert summary["structured_over_plain"]["maas"]["c=1"]["p50_ms"] == round(0.18 / 0.11, 3)
    assert summary["gateway_over_direct"]["c=1"]["structured_p50_ms"] == 1.2
