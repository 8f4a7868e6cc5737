"""The [arc] config section, the link set it builds, and `pid-agent arc-test` against real receivers."""

from __future__ import annotations

import pytest
from aiosmtpd.controller import Controller

from agent.arc.runner import ArcLinks
from agent.arc.settings import ArcSettings, Dc09Settings, EmailSettings
from agent.cli import main
from agent.config import load_config, parse_config
from agent.storage.outbox import Outbox
from common.clock import ManualClock
from common.errors import ConfigError
from tests.test_arc_dc09 import ACCOUNT, KEY, Receiver, ReceiverClock, free_port
from tests.test_arc_email import Inbox

ARC_TOML = """
device_id = "pid-test-001"
site_ref = "SITE-7"

[arc.dc09]
enabled = true
primary = "127.0.0.1:{dc09_port}"
account = "{account}"
key_hex = "{key_hex}"
zones = {{ gate = 5 }}
supervision_s = 90

[arc.email]
enabled = true
host = "127.0.0.1"
port = {smtp_port}
starttls = false
sender = "unit@pid.example"
to = ["alarms@arc.example"]
subject = "{{site_ref}} {{zone}}"
"""


def test_arc_is_off_by_default_and_a_full_section_parses(tmp_path):
    assert not load_config(None).arc.dc09.enabled and not load_config(None).arc.email.enabled
    path = tmp_path / "agent.toml"
    path.write_text(ARC_TOML.format(dc09_port=7000, smtp_port=2525, account=ACCOUNT, key_hex=KEY.hex()))
    config = load_config(path)
    assert config.arc.dc09.key == KEY and config.arc.dc09.zones == {"gate": 5}
    assert config.arc.dc09.paths() == [("127.0.0.1", 7000)] and config.arc.email.to == ("alarms@arc.example",)
    assert main(["check-config", str(path)]) == 0


@pytest.mark.parametrize("arc,names", [
    ({"dc09": {"enabled": True, "primary": "x:1", "account": "1234", "colour": 1}}, "arc.dc09.colour: unknown key"),
    ({"dc09": {"key_hex": "00" * 10}}, "arc.dc09.key_hex"),
    ({"dc09": {"enabled": True}}, "dc09.enabled needs primary"),
    ({"dc09": {"account": "XYZ!"}}, "arc.dc09.account"),
    ({"dc09": {"primary": "no-port"}}, "arc.dc09.primary"),
    ({"dc09": {"codes": {"intrusion_begin": "BA"}}}, "unknown signal name"),
    ({"dc09": {"media_url": "https://x/[{event_id}]"}}, "arc.dc09.media_url"),
    ({"email": {"subject": "{site} alarm"}}, "arc.email.subject"),
    ({"email": {"enabled": True, "host": "smtp"}}, "email.enabled needs host, sender and to"),
])
def test_bad_arc_settings_are_refused_naming_the_key(arc, names):
    with pytest.raises(ConfigError) as caught:
        parse_config({"arc": arc})
    assert names in str(caught.value)


def test_disabled_links_release_what_they_held(tmp_path):
    box = Outbox(tmp_path / "data", 1 << 20, ManualClock())
    box.register_link("dc09", ("intrusion",))
    box.put_message("event", {"kind": "intrusion"}, "event")
    for row in box.pending(0, 10):
        box.ack(row.id)
    assert box.size_bytes() > 0
    links = ArcLinks(parse_config({}).arc, box, ManualClock(), {})
    assert links.links == [] and box.size_bytes() == 0
    box.close()


def test_arc_test_command_gets_an_ack_and_an_accepted_email(tmp_path, capsys):
    receiver = Receiver(free_port(), KEY).start()
    inbox, smtp_port = Inbox(), free_port()
    smtp = Controller(inbox, hostname="127.0.0.1", port=smtp_port)
    smtp.start()
    try:
        path = tmp_path / "agent.toml"
        path.write_text(ARC_TOML.format(dc09_port=receiver.port, smtp_port=smtp_port, account=ACCOUNT,
                                        key_hex=KEY.hex()))
        assert main(["arc-test", "--config", str(path)]) == 0
        out = capsys.readouterr().out
        assert f"DC-09 127.0.0.1:{receiver.port}: ACK" in out and "accepted" in out
        assert [e.code for e in receiver.wait_for(1)] == ["RX"] and len(inbox.wait_for(1)) == 1
    finally:
        smtp.stop()
        receiver.stop()
    assert main(["arc-test", "--config", str(path)]) == 1  # both receivers gone: the engineer sees it failed


def test_one_links_outage_blocks_neither_the_other_link_nor_mqtt(tmp_path):
    receiver = Receiver(free_port(), KEY)  # the ARC's DC-09 receiver is down
    inbox, smtp_port = Inbox(), free_port()
    smtp = Controller(inbox, hostname="127.0.0.1", port=smtp_port)
    smtp.start()
    clock = ReceiverClock()
    box = Outbox(tmp_path / "data", 1 << 24, clock)
    settings = ArcSettings(
        dc09=Dc09Settings(enabled=True, primary=f"127.0.0.1:{receiver.port}", account=ACCOUNT, key_hex=KEY.hex()),
        email=EmailSettings(enabled=True, host="127.0.0.1", port=smtp_port, starttls=False, sender="u@pid.example",
                            to=("arc@arc.example",)))
    links = ArcLinks(settings, box, clock, {})
    try:
        box.put_message("event", {"event_id": "ev1", "kind": "intrusion", "phase": "start", "zone": "gate"},
                        "event")
        snapshot = box.media_dir / "ev1" / "snapshot.jpg"
        snapshot.parent.mkdir()
        snapshot.write_bytes(b"\xff\xd8jpeg")
        box.put_media("ev1", "snapshot.jpg", snapshot, "image/jpeg", 1024)
        for row in box.pending(0, 100):  # MQTT delivers regardless
            box.ack(row.id)
        assert links.dc09.poll() is True and box.link_depth("dc09") == 1  # refused: stays queued
        while links.email.poll():
            pass
        assert len(inbox.wait_for(1)) == 1 and box.link_depth("email") == 0
        assert box.depth() == 0 and not snapshot.exists()  # the file had no other holder
        receiver.start()
        clock.advance(60.0)
        assert links.dc09.poll() is True and box.link_depth("dc09") == 0
        assert [e.code for e in receiver.wait_for(1)] == ["BA"] and box.size_bytes() == 0
    finally:
        smtp.stop()
        receiver.stop()
        box.close()
