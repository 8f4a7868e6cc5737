"""GPIO drivers and sensor events: scripted pins, debounce, active-low, output history, backend selection."""

import importlib.util
import json

import pytest
from pydantic import ValidationError

from agent.reactions import sensor_message
from agent.sensors import PirEvent, PowerEvent, Sensors, TamperEvent, TriggerEvent
from common.clock import ManualClock
from common.errors import ConfigError, HardwareError, SourceError
from drivers.gpio import GpioSettings, InputChange, OutputChange, SimulatedGpio, make_gpio, parse_script, sidecar_script

INPUTS = [
    {"id": "pir-east", "pin": 17, "kind": "pir", "zone": "east", "debounce_ms": 100},
    {"id": "pir-west", "pin": 27, "kind": "pir", "zone": "west", "debounce_ms": 0, "active_low": True, "pull": "up"},
    {"id": "trig", "pin": 5, "kind": "trigger", "debounce_ms": 0},
    {"id": "lid", "pin": 6, "kind": "tamper", "debounce_ms": 0, "active_low": True, "pull": "up"},
    {"id": "mains", "pin": 13, "kind": "power", "debounce_ms": 0},
]
OUTPUTS = [
    {"id": "strobe", "pin": 22, "kind": "strobe"},
    {"id": "siren", "pin": 23, "kind": "siren", "active_low": True},
]


def settings(**overrides) -> GpioSettings:
    return GpioSettings(**{"inputs": INPUTS, "outputs": OUTPUTS, **overrides})


def opened(script=None) -> SimulatedGpio:
    gpio = make_gpio(settings(), ManualClock(), script=script)
    assert isinstance(gpio, SimulatedGpio)
    gpio.open()
    return gpio


def test_script_csv_drives_pins_and_changes_come_at_their_time(tmp_path):
    script = tmp_path / "clip.mp4.pir.csv"
    script.write_text("ts,input,level\n# a person walks past the east PIR\n1.0,pir-east,1\n4.0,17,0\n")
    gpio = opened(script)
    clock = ManualClock(monotonic_start=0.0)
    seen = []
    for _ in range(60):  # 6 s of 10 fps frames
        clock.advance(0.1)
        seen += gpio.poll(clock.monotonic())
    assert seen == [InputChange(1.0, "pir-east", True), InputChange(4.0, "pir-east", False)]
    assert not gpio.is_active("pir-east")


def test_debounce_ignores_glitches_shorter_than_the_hold_time():
    gpio = opened()
    gpio.drive(1.00, "pir-east", 1)
    gpio.drive(1.05, "pir-east", 0)  # a 50 ms spike on a 100 ms debounce: noise
    gpio.drive(2.00, "pir-east", 1)
    assert gpio.poll(2.05) == []       # held only 50 ms so far
    assert gpio.poll(2.10) == [InputChange(2.0, "pir-east", True)]  # dated at the edge, reported once held
    assert gpio.poll(3.0) == []


def test_debounce_is_applied_between_script_entries_polled_together():
    gpio = opened()
    for ts, level in [(1.0, 1), (1.5, 0), (1.52, 1), (1.54, 0)]:  # a real pulse, then a chatter while releasing
        gpio.drive(ts, "pir-east", level)
    assert gpio.poll(10.0) == [InputChange(1.0, "pir-east", True), InputChange(1.54, "pir-east", False)]


def test_active_low_inputs_assert_at_zero_volts():
    gpio = opened()
    gpio.drive(0.0, "pir-west", 1)   # idle level of a pulled-up, active-low PIR: nothing to report
    gpio.drive(1.0, 27, 0)           # by pin number
    gpio.drive(2.0, "pir-west", 1)
    assert gpio.poll(5.0) == [InputChange(1.0, "pir-west", True), InputChange(2.0, "pir-west", False)]


def test_jsonl_script_and_changes_of_several_inputs_in_time_order(tmp_path):
    script = tmp_path / "clip.mp4.pir.jsonl"
    rows = [{"ts": 2.0, "input": "lid", "level": 1}, {"ts": 0.5, "input": "trig", "level": 1},
            {"ts": 2.0, "input": "lid", "level": 0}, {"ts": 3.0, "input": "mains", "level": 1}]
    script.write_text("".join(json.dumps(row) + "\n" for row in rows))
    gpio = opened(script)
    assert gpio.poll(5.0) == [InputChange(0.5, "trig", True), InputChange(2.0, "lid", True),
                              InputChange(3.0, "mains", True)]


def test_sidecar_script_found_beside_a_recording(tmp_path):
    video = tmp_path / "clip.mp4"
    assert sidecar_script(video) is None
    (tmp_path / "clip.mp4.pir.jsonl").write_text("")
    assert sidecar_script(video) == tmp_path / "clip.mp4.pir.jsonl"
    (tmp_path / "clip.mp4.pir.csv").write_text("ts,input,level\n")
    assert sidecar_script(video) == tmp_path / "clip.mp4.pir.csv"


@pytest.mark.parametrize("text, message", [
    ("time,pin,level\n1,pir-east,1\n", "x.csv:1: CSV header must be 'ts,input,level'"),
    ("ts,input,level\n1,pir-east,2\n", "x.csv:2: level must be 0 or 1"),
    ("ts,input,level\n-1,pir-east,1\n", "x.csv:2: ts must be a finite number >= 0"),
    ("ts,input,level\nsoon,pir-east,1\n", "x.csv:2: ts must be a number of seconds"),
    ("ts,input,level\n1,pir-east\n", "x.csv:2: expected 3 columns"),
    ('{"ts": 1, "input": "pir-east"}\n', "x.csv:1: expected an object with exactly the keys ts, input, level"),
    ('{"ts": 1, "input": "pir-east", "level": 1}\n{oops\n', "x.csv:2: not valid JSON"),
])
def test_bad_script_lines_are_named(text, message):
    with pytest.raises(SourceError, match=message.replace(".", r"\.").replace("(", r"\(")):
        parse_script(text, "x.csv")


def test_script_naming_an_unknown_input_fails_at_open(tmp_path):
    script = tmp_path / "s.csv"
    script.write_text("ts,input,level\n1,pir-north,1\n")
    with pytest.raises(SourceError, match=r"s\.csv: no GPIO input 'pir-north'; configured inputs: \['pir-east"):
        opened(script)
    with pytest.raises(SourceError, match="GPIO input script not found"):
        opened(tmp_path / "missing.csv")


def test_inputs_cannot_be_driven_in_the_past():
    gpio = opened()
    gpio.poll(5.0)
    with pytest.raises(SourceError, match="before time already polled"):
        gpio.drive(4.0, "trig", 1)


def test_outputs_record_history_and_pin_levels_and_close_leaves_them_off():
    gpio = opened()
    assert gpio.pin_levels == {22: 0, 23: 1}  # both off after open; the siren's relay is active-low
    gpio.set("strobe", True, 1.0)
    gpio.set("siren", True, 1.5)
    assert gpio.pin_levels == {22: 1, 23: 0}
    assert gpio.is_on("siren")
    gpio.close(2.0)
    gpio.close(3.0)  # twice is harmless
    assert gpio.history == [OutputChange(1.0, "strobe", True), OutputChange(1.5, "siren", True),
                            OutputChange(2.0, "strobe", False), OutputChange(2.0, "siren", False)]
    assert gpio.pin_levels == {22: 0, 23: 1}
    with pytest.raises(ConfigError, match=r"no GPIO output 'bell'; configured outputs: \['siren', 'strobe'\]"):
        gpio.set("bell", True, 4.0)


def test_config_rejects_duplicate_pins_and_ids_and_unknown_keys():
    with pytest.raises(ValidationError, match="gpio pin 17 is used by more than one"):
        GpioSettings(inputs=INPUTS, outputs=[{"id": "led", "pin": 17, "kind": "led"}])
    with pytest.raises(ValidationError, match="gpio id 'pir-east' is used by more than one"):
        GpioSettings(inputs=[INPUTS[0], {**INPUTS[1], "id": "pir-east"}])
    with pytest.raises(ValidationError, match="Extra inputs are not permitted"):
        GpioSettings(inputs=[{**INPUTS[0], "bounce": 5}])
    with pytest.raises(ValidationError, match="less than or equal to 27"):
        GpioSettings(inputs=[{**INPUTS[0], "pin": 40}])


@pytest.mark.skipif(importlib.util.find_spec("RPi") is not None, reason="RPi.GPIO is installed here")
def test_rpi_backend_without_the_library_is_a_clear_hardware_error():
    gpio = make_gpio(settings(backend="rpi"), ManualClock())  # choosing it is fine; opening needs the library
    with pytest.raises(HardwareError, match="needs the RPi.GPIO module.*rpi-lgpio.*gpio.backend = 'simulated'"):
        gpio.open()
    gpio.close()  # nothing was acquired: nothing to do, no error


ENVELOPE = {"device_id": "u1", "site_ref": "S", "event_id": "e1", "seq": 1, "ts": "2026-01-01T00:00:00.000Z",
            "frame": 3}


def body_of(event) -> dict:
    """The event message's body: what the unit sends for this input change, without the envelope."""
    wire = sensor_message(event, ENVELOPE).wire()
    return {key: value for key, value in wire.items() if key not in ENVELOPE}


def test_sensors_give_one_typed_event_per_detector():
    gpio = opened()
    for ts, ref, level in [(1.0, "pir-east", 1), (1.0, "pir-west", 0), (2.0, "trig", 1), (3.0, "lid", 1),
                           (3.0, "lid", 0), (4.0, "mains", 1)]:
        gpio.drive(ts, ref, level)
    sensors = Sensors(gpio)
    events = sensors.poll(5.0)
    assert events == [PirEvent(1.0, "pir-east", "east", True), PirEvent(1.0, "pir-west", "west", True),
                      TriggerEvent(2.0, "trig", "default", True), TamperEvent(3.0, "lid", "default", open=True),
                      PowerEvent(4.0, "mains", mains_ok=False)]
    assert [body_of(e) for e in events[3:]] == [
        {"kind": "tamper", "input": "lid", "zone": "default", "open": True},
        {"kind": "power", "input": "mains", "mains_ok": False}]
    assert body_of(events[0]) == {"kind": "pir", "input": "pir-east", "zone": "east", "active": True}
    assert sensors.state() == {"pir_active": ["pir-east", "pir-west"], "triggers_active": ["trig"],
                               "tamper_open": ["lid"], "mains_ok": False}
    assert sensors.pir_zones() == {"pir-east": "east", "pir-west": "west"}


def test_polling_a_closed_or_unopened_simulator_is_an_error():
    gpio = make_gpio(settings(), ManualClock())
    with pytest.raises(HardwareError, match="polled before open"):
        gpio.poll(1.0)
    gpio.open()
    gpio.close(2.0)
    with pytest.raises(HardwareError, match="polled before open"):
        gpio.poll(3.0)
