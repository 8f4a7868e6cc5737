"""Hypothesis fuzzing of the command parser and the gate: any bytes give a typed command or a CommandError, never
another exception, and nothing invalid is accepted."""

from __future__ import annotations

import json

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from nacl.signing import SigningKey

from agent.commands import Arm, CommandError, Disarm, Gate, Received, SetMode, Silence, parse_command
from agent.storage.nonces import CommandStore
from tests.test_security import DEVICE, NOW, settings_for, signed

_json = st.recursive(st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
                     lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner,
                                                                                  max_size=4), max_leaves=5)
_commandish = st.fixed_dictionaries({"cmd": st.sampled_from(["arm", "disarm", "set_mode", "silence", "x"])},
                                    optional={"id": st.text(max_size=70), "mode": st.sampled_from(["overt", "loud"]),
                                              "extra": st.integers() | st.text(max_size=10)})
_payloads = st.one_of(
    st.binary(max_size=300),
    _json.map(lambda value: json.dumps(value).encode()),
    _commandish.map(lambda value: json.dumps(value).encode()),
    st.text(alphabet='[]{}":,0123456789e.-\\u', max_size=200).map(str.encode),
)


# 8,000 parser examples + 2,000 gate examples: the 10,000 generated command payloads per CI run
@settings(max_examples=8000, deadline=None, suppress_health_check=[HealthCheck.too_slow], database=None)
@given(_payloads)
def test_parse_command_refuses_or_returns_a_valid_command(payload):
    try:
        command = parse_command(payload)
    except CommandError as refused:
        assert str(refused) and len(str(refused)) <= 200
        return
    assert isinstance(command, Arm | Disarm | SetMode | Silence)
    assert type(command).model_validate(command.model_dump()) == command


_WRONG_KEY = SigningKey(b"\x02" * 32)


@pytest.fixture(scope="module")
def gate(tmp_path_factory):
    """One gate for every example: none may be accepted, so the nonces it remembers cannot change the outcome."""
    return Gate(settings_for(), DEVICE, CommandStore(tmp_path_factory.mktemp("nonces")))


@settings(max_examples=2000, deadline=None, suppress_health_check=[HealthCheck.too_slow], database=None)
@given(payload=st.one_of(_payloads, _commandish.map(lambda cmd: signed(cmd, key=_WRONG_KEY))), retained=st.booleans())
def test_the_gate_never_accepts_an_unsigned_or_broken_envelope(gate, payload, retained):
    try:
        gate.admit(Received(payload, retained=retained), NOW)
    except CommandError:
        return
    raise AssertionError(f"accepted without a valid signature: {payload[:80]!r}")
