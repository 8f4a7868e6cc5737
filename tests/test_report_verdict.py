"""The operator's `verdict` command: signed, schema-checked, recorded in the unit's audit log and answered."""

from __future__ import annotations

import json

import pytest

from agent.commands import CommandError, Verdict, command_from
from tests.test_loan import run

VERDICT = {"cmd": "verdict", "id": "v1", "event_id": "evt-1", "verdict": "genuine", "police_dispatched": True,
           "note": "two men at the shed door"}


def test_a_signed_verdict_is_audited_and_answered(tmp_path):
    _, data_dir = run(tmp_path, "keep", {2: [VERDICT, json.dumps(VERDICT).encode()]}, days=2)
    audited = [json.loads(line) for line in (data_dir / "audit.jsonl").read_text().splitlines()]
    verdicts = [e["data"] for e in audited if e["kind"] == "verdict"]
    assert verdicts == [{"id": "v1", "event_id": "evt-1", "verdict": "genuine", "police_dispatched": True,
                         "note": "two men at the shed door"}]
    results = [e["data"] for e in audited if e["kind"] == "command_result"]
    assert [r["ok"] for r in results] == [True, True, False]  # start_loan, the verdict; the unsigned copy refused
    assert results[1]["detail"] == "verdict recorded" and results[1]["cmd"] == "verdict"
    assert "unsigned" in results[2]["reason"]


@pytest.mark.parametrize("change", [{"verdict": "maybe"}, {"note": "x" * 201}, {"police_dispatched": "yes"},
                                    {"event_id": "../x"}])
def test_a_bad_verdict_is_refused_with_the_field_named(change):
    with pytest.raises(CommandError):
        command_from({**VERDICT, **change})


def test_a_note_of_200_characters_is_kept():
    assert command_from({**VERDICT, "note": "n" * 200}) == Verdict(**{**VERDICT, "note": "n" * 200})
