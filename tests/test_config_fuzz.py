"""Hypothesis fuzzing of agent.config.parse_config: generated configs (real keys with hostile values, unknown keys,
wrong shapes) give an AgentConfig or a ConfigError naming a key, never another exception."""

from __future__ import annotations

import math
import tempfile

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.configuration import set_hypothesis_home_dir
from pydantic import BaseModel

from agent.config import AgentConfig, parse_config
from common.errors import ConfigError
from common.settings import shown_key

# hypothesis caches Unicode tables under its home dir (./.hypothesis by default): keep them out of the checkout
set_hypothesis_home_dir(tempfile.mkdtemp(prefix="pid-hypothesis-"))


def _leaf_keys(model: type[BaseModel], prefix: str = "") -> list[str]:
    """Every dotted key of the config model, sections walked into (a tuple of sections counts as a leaf)."""
    keys = []
    for name, field in model.model_fields.items():
        annotation = field.annotation
        nested = annotation if isinstance(annotation, type) and issubclass(annotation, BaseModel) else None
        keys += _leaf_keys(nested, f"{prefix}{name}.") if nested else [f"{prefix}{name}"]
        if nested:
            keys.append(f"{prefix}{name}")  # the section itself, given a wrong shape
    return keys


KEYS = _leaf_keys(AgentConfig)

_hostile_text = st.one_of(
    st.text(max_size=30),
    st.sampled_from(["", "..", "a/#", "+", "{x}", "pids/{device_id}/", "mqtt://u:p@h:1883", "mqtt://h:0",
                     "mqtt://h:99999", "mqtts://h", "\0", "a\0b", "\ud800", "/etc/passwd", "../../x", "nan", "1e999",
                     "10", "true", " " * 5, "é" * 70]),
)
_scalars = st.one_of(
    st.none(), st.booleans(), st.integers(), st.integers(min_value=-(10**30), max_value=10**30),
    st.just(4300).map(lambda digits: 10**digits), st.floats(),
    st.sampled_from([math.inf, -math.inf, math.nan, 0.0, -0.0, 1e308]), _hostile_text,
)
_values = st.recursive(_scalars, lambda inner: st.lists(inner, max_size=3)
                       | st.dictionaries(_hostile_text, inner, max_size=3), max_leaves=6)


def _set(config: dict, dotted: str, value) -> None:
    *sections, leaf = dotted.split(".")
    node = config
    for section in sections:
        node = node.setdefault(section, {})
        if not isinstance(node, dict):
            return  # an earlier assignment made the section a scalar: that is its own test case
    node[leaf] = value


@st.composite
def configs(draw) -> tuple[dict, list[str]]:
    chosen = draw(st.lists(st.sampled_from(KEYS) | _hostile_text.map(lambda key: f"unknown.{key}" if key else "x"),
                           min_size=1, max_size=6, unique=True))
    config: dict = {}
    for dotted in chosen:
        _set(config, dotted, draw(_values))
    return config, chosen


@settings(max_examples=2000, deadline=None, suppress_health_check=[HealthCheck.too_slow], database=None)
@given(configs())
def test_a_generated_config_is_valid_or_a_config_error_naming_a_key(generated):
    config, chosen = generated
    try:
        parse_config(config, origin="fuzz.toml")
    except ConfigError as refused:
        message = str(refused)
        assert message.startswith("invalid config fuzz.toml")
        lines = message.split("\n")[1:]
        assert lines, message
        for line in lines:
            where = line.strip().split(":", 1)[0].split(" (")[0]
            named = [".".join(shown_key(part) for part in key.split(".")) for key in chosen]
            related = [key for key in named if where == key or where.startswith(key + ".")
                       or key.startswith(where + ".")]
            assert related or where == "(top level)", f"{line!r} names no key of {named}"
            assert len(line) < 400, f"an error line echoes too much: {line[:100]}..."


def test_a_key_holding_a_newline_is_named_escaped_on_one_line():
    with pytest.raises(ConfigError) as refused:
        parse_config({"broker": {"\n": None, "a\u2028b": 1}}, origin="x.toml")
    assert str(refused.value).split("\n")[1:] == ["  broker.\\n: unknown key", "  broker.a\\u2028b: unknown key"]
