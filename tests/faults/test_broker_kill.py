"""Broker SIGKILLed and restarted during every alarm of a recording played in real time (tests/faults/broker_kills.py),
and the same check run once against a deliberately broken build to show it reports the loss."""

from __future__ import annotations

import pytest

from tests.faults.broken import AgentDeletingBeforePuback
from tests.faults.broker_kills import run_broker_kills
from tests.faults.harness import long_or_short, record


@pytest.mark.faults
@pytest.mark.broker
@pytest.mark.slow
def test_broker_sigkilled_during_alarms_loses_and_duplicates_nothing(mosquitto_persistent, tmp_path):
    walks = long_or_short(long=10, short=2)  # one kill per alarm
    run = run_broker_kills(mosquitto_persistent, tmp_path, walks)
    record(run.result)
    assert run.alarms == walks and run.result.injected == walks, [(e["kind"], e.get("phase")) for e in run.expected]
    assert run.summary.delivered and run.summary.outbox_depth == 0
    assert not run.problems, run.problems


@pytest.mark.faults
@pytest.mark.broker
@pytest.mark.slow
def test_the_broker_kill_check_reports_the_loss_of_an_outbox_that_deletes_before_puback(mosquitto_persistent,
                                                                                        tmp_path):
    """The suite can fail: the same check, one alarm, against an outbox that forgets a row once it is sent."""
    run = run_broker_kills(mosquitto_persistent, tmp_path, walks=1, agent_type=AgentDeletingBeforePuback,
                           settle_s=10, label="self-test: outbox deleting before PUBACK")
    run.result.self_test = True
    run.result.note += f"; the check caught it: {len(run.problems)} problem(s) reported"
    record(run.result)
    assert run.result.injected == 1 and run.alarms == 1
    assert run.result.lost > 0, f"the check missed the broken build's loss: {run.problems}"
    assert any("lost" in problem or "missing" in problem for problem in run.problems), run.problems
