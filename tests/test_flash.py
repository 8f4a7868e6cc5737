"""scripts/flash on an image file CI builds itself (a DOS table, a FAT boot partition, an ext4 root), read back
with mtools; the --device refusals against this host's own mounted disk (the refusal path only: never a write)."""

from __future__ import annotations

import contextlib
import hashlib
import importlib.machinery
import importlib.util
import io
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.test_provisioning import make_bundle

ROOT = Path(__file__).resolve().parents[1]
FLASH = ROOT / "scripts" / "flash"
SECTOR = 512
BOOT_START, BOOT_SECTORS = 2048, 32768  # a 16 MiB FAT partition at 1 MiB, as Raspberry Pi OS lays it out
ROOT_START = BOOT_START + BOOT_SECTORS
CMDLINE = "console=serial0,115200 console=tty1 root=PARTUUID=1234abcd-02 rootfstype=ext4 fsck.repair=yes rootwait\n"
SSH_KEY = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIE0b3VyIGtleSBmb3IgdGVzdHM= engineer@bench\n"
os.environ["PATH"] = os.pathsep.join([os.environ.get("PATH", ""), "/usr/sbin", "/sbin"])  # sfdisk, mkfs.*
MTOOLS = {**os.environ, "MTOOLS_SKIP_CHECK": "1"}

pytestmark = pytest.mark.skipif(not all(shutil.which(t) for t in ("mcopy", "sfdisk", "mkfs.vfat", "mkfs.ext4")),
                                reason="needs mtools, fdisk, dosfstools and e2fsprogs (.ci/run installs them)")


def load_flash():
    loader = importlib.machinery.SourceFileLoader("flash", str(FLASH))
    spec = importlib.util.spec_from_loader("flash", loader)
    module = importlib.util.module_from_spec(spec)
    sys.modules["flash"] = module
    loader.exec_module(module)
    return module


def build_image(path: Path) -> Path:
    """A 48 MiB Raspberry Pi OS look-alike: FAT boot partition with cmdline.txt and config.txt, ext4 root."""
    subprocess.run(["truncate", "-s", "48M", path], check=True)
    table = f"label: dos\nstart={BOOT_START}, size={BOOT_SECTORS}, type=c\nstart={ROOT_START}, type=83\n"
    subprocess.run(["sfdisk", "-q", path], input=table, text=True, check=True)
    subprocess.run(["mkfs.vfat", "-n", "bootfs", "--offset", str(BOOT_START), path, str(BOOT_SECTORS // 2)],
                   check=True, capture_output=True)
    root_kib = (48 * 1024 * 1024 - ROOT_START * SECTOR) // 1024
    subprocess.run(["mkfs.ext4", "-q", "-F", "-L", "rootfs", "-E", f"offset={ROOT_START * SECTOR}", path,
                    f"{root_kib}k"], check=True, capture_output=True)
    for name, text in (("cmdline.txt", CMDLINE), ("config.txt", "arm_64bit=1\n")):
        local = path.parent / name
        local.write_text(text)
        subprocess.run(["mcopy", "-i", f"{path}@@{BOOT_START * SECTOR}", local, f"::/{name}"], check=True, env=MTOOLS)
    return path


FLASH_MODULE = load_flash()


def boot_file(image: Path, name: str) -> bytes:
    return subprocess.run(["mtype", "-i", f"{image}@@{BOOT_START * SECTOR}", f"::/{name}"], check=True,
                          capture_output=True, env=MTOOLS).stdout


def boot_listing(image: Path) -> set[str]:
    out = subprocess.run(["mdir", "-i", f"{image}@@{BOOT_START * SECTOR}", "-/", "-b", "::/"], check=True,
                         capture_output=True, text=True, env=MTOOLS).stdout
    return {line.strip().removeprefix("::/") for line in out.splitlines() if line.strip()}


def root_partition_sha(image: Path) -> str:
    with image.open("rb") as stream:
        stream.seek(ROOT_START * SECTOR)
        return hashlib.sha256(stream.read()).hexdigest()


def flash(*args, check_ok: bool = True, as_program: bool = False) -> subprocess.CompletedProcess:
    """scripts/flash, run as a program, or (faster: no interpreter start) its main() in this process."""
    argv = [str(arg) for arg in args]
    if as_program:
        result = subprocess.run([sys.executable, FLASH, *argv], capture_output=True, text=True, timeout=120)
    else:
        out, err = io.StringIO(), io.StringIO()
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            code = FLASH_MODULE.main(argv)
        result = subprocess.CompletedProcess(argv, code, out.getvalue(), err.getvalue())
    if check_ok:
        assert result.returncode == 0, result.stderr
    return result


@pytest.fixture(scope="module")
def image_template(tmp_path_factory) -> Path:
    return build_image(tmp_path_factory.mktemp("image") / "template.img")


@pytest.fixture
def parts(tmp_path, image_template):
    ssh_key = tmp_path / "engineer.pub"
    ssh_key.write_text(SSH_KEY)
    base = tmp_path / "base.img"
    shutil.copyfile(image_template, base)
    return make_bundle(tmp_path), base, ssh_key


def test_prepare_writes_first_boot_settings_and_the_bundle_to_the_boot_partition(parts, tmp_path):
    bundle, base, ssh_key = parts
    untouched_root = root_partition_sha(base)
    unit = tmp_path / "pid-0042.img"
    flash("prepare", base, "--bundle", bundle, "--ssh-key", ssh_key, "--out", unit, "--wifi-ssid", "Site Wi-Fi",
          "--wifi-psk", "correct horse", "--wifi-country", "GB", "--apn", "internet.example", as_program=True)
    files = boot_listing(unit)
    assert {"firstrun.sh", "cmdline.txt", "config.txt", "pid-agent/authorized_keys",
            "pid-agent/network/wifi.nmconnection", "pid-agent/network/modem.nmconnection",
            "pid-agent/bundle/unit.toml", "pid-agent/bundle/keys/signing.key",
            "pid-agent/bundle/wheels/pid_agent-0.1.0-py3-none-any.whl"} <= files
    for name in ("unit.toml", "keys/signing.key", "certs/ca.pem", "wheels/pid_agent-0.1.0-py3-none-any.whl"):
        assert boot_file(unit, f"pid-agent/bundle/{name}") == (bundle / name).read_bytes(), name
    assert boot_file(unit, "pid-agent/authorized_keys").decode() == SSH_KEY
    firstrun = boot_file(unit, "firstrun.sh").decode()
    assert "HOST=pid-0042\n" in firstrun and "FIRSTUSER=engineer\n" in firstrun
    assert "tools/scripts/provision" in firstrun and "do_wifi_country GB" in firstrun
    assert subprocess.run(["bash", "-n"], input=firstrun, text=True).returncode == 0  # it parses as bash
    wifi = boot_file(unit, "pid-agent/network/wifi.nmconnection").decode()
    assert "ssid=Site Wi-Fi\n" in wifi and "psk=correct horse\n" in wifi
    assert "apn=internet.example\n" in boot_file(unit, "pid-agent/network/modem.nmconnection").decode()
    cmdline = boot_file(unit, "cmdline.txt").decode()
    assert cmdline.startswith(CMDLINE.strip() + " systemd.run=/boot/firmware/firstrun.sh ") and cmdline.count("\n") == 1
    assert boot_file(unit, "config.txt") == b"arm_64bit=1\n"
    assert root_partition_sha(unit) == untouched_root  # only the boot partition is written
    assert "firstrun.sh" not in boot_listing(base)  # --out: the base image is left as it was


def test_a_compressed_base_image_is_expanded_into_the_units_copy(parts, tmp_path):
    import lzma

    bundle, base, ssh_key = parts
    packed = tmp_path / "raspios.img.xz"
    with lzma.open(packed, "wb", preset=0) as stream:
        stream.write(base.read_bytes())
    result = flash("prepare", packed, "--bundle", bundle, "--ssh-key", ssh_key, check_ok=False)
    assert result.returncode == 2 and "--out" in result.stderr  # never prepared in place
    flash("prepare", packed, "--bundle", bundle, "--ssh-key", ssh_key, "--out", tmp_path / "unit.img")
    assert (tmp_path / "unit.img").stat().st_size == base.stat().st_size
    assert "HOST=pid-0042\n" in boot_file(tmp_path / "unit.img", "firstrun.sh").decode()


def test_preparing_twice_adds_the_first_boot_option_once_and_drops_old_files(parts, tmp_path):
    bundle, image, ssh_key = parts
    flash("prepare", image, "--bundle", bundle, "--ssh-key", ssh_key, "--wifi-ssid", "x" * 32, "--wifi-psk",
          "12345678", "--wifi-country", "SE")
    flash("prepare", image, "--bundle", bundle, "--ssh-key", ssh_key)  # again, now without Wi-Fi
    cmdline = boot_file(image, "cmdline.txt").decode()
    assert cmdline.count("systemd.run=") == 1 and cmdline.count("systemd.unit=") == 1
    files = boot_listing(image)
    assert "pid-agent/network/wifi.nmconnection" not in files and "pid-agent/authorized_keys" in files


@pytest.mark.parametrize("options, reason", [
    (["--wifi-ssid", "site"], "both an SSID and a passphrase"),
    (["--wifi-ssid", "site", "--wifi-psk", "short", "--wifi-country", "GB"], "8 to 63"),
    (["--wifi-ssid", "site", "--wifi-psk", "longenough"], "two capital letters"),
    (["--apn", "bad apn;reboot"], "APN"),
    (["--user", "Root Admin"], "Linux user name"),
])
def test_bad_first_boot_settings_are_refused_before_the_image_is_touched(parts, options, reason):
    bundle, image, ssh_key = parts
    before = hashlib.sha256(image.read_bytes()).hexdigest()
    result = flash("prepare", image, "--bundle", bundle, "--ssh-key", ssh_key, *options, check_ok=False)
    assert result.returncode == 2 and reason in result.stderr
    assert hashlib.sha256(image.read_bytes()).hexdigest() == before


def test_a_device_id_that_cannot_be_a_hostname_is_refused(parts):
    bundle, image, ssh_key = parts
    text = (bundle / "unit.toml").read_text().replace('device_id = "pid-0042"', 'device_id = "pid_0042.a"')
    (bundle / "unit.toml").write_text(text)
    result = flash("prepare", image, "--bundle", bundle, "--ssh-key", ssh_key, check_ok=False)
    assert result.returncode == 2 and "cannot be the unit's hostname" in result.stderr


def test_a_private_key_a_foreign_image_and_a_bad_bundle_are_refused(parts, tmp_path):
    bundle, image, ssh_key = parts
    private = tmp_path / "id_ed25519"
    private.write_text("-----BEGIN OPENSSH PRIVATE KEY-----\nb3BlbnNzaC1rZXktdjEAAAAA\n")
    result = flash("prepare", image, "--bundle", bundle, "--ssh-key", private, check_ok=False)
    assert result.returncode == 2 and "not an OpenSSH public key" in result.stderr
    blank = tmp_path / "blank.img"
    blank.write_bytes(b"\0" * (1 << 20))
    result = flash("prepare", blank, "--bundle", bundle, "--ssh-key", ssh_key, check_ok=False)
    assert result.returncode == 2 and "partition" in result.stderr
    (bundle / "unit.toml").write_text('device_id = "pid 42"\n')
    result = flash("prepare", image, "--bundle", bundle, "--ssh-key", ssh_key, check_ok=False)
    assert result.returncode == 2 and "bad bundle" in result.stderr and "device_id" in result.stderr


def test_batch_prepares_one_image_per_row_of_the_units_csv(parts, tmp_path):
    bundle, base, ssh_key = parts
    units = tmp_path / "units.csv"
    units.write_text("device_id,site_ref,username,password,wifi_ssid,wifi_psk,wifi_country\n"
                     "pid-0101,WM-1,u1,p1,,,\npid-0102,WM-2,u2,p2,Farm,farmpass1,IE\npid-0103,WM-3,u3,p3,,,\n")
    out, keys = tmp_path / "batch", tmp_path / "unit-keys"
    (keys / "pid-0102").mkdir(parents=True)
    (keys / "pid-0102" / "signing.key").write_text("pid-0102's own\n")
    flash("batch", "--image", base, "--units", units, "--template", ROOT / "config/unit.example.toml",
          "--wheels", bundle / "wheels", "--certs", bundle / "certs", "--keys", keys, "--ssh-key", ssh_key,
          "--out", out)
    assert boot_file(out / "pid-0102.img", "pid-agent/bundle/keys/signing.key") == b"pid-0102's own\n"
    assert "pid-agent/bundle/keys/signing.key" not in boot_listing(out / "pid-0101.img")  # only its own keys
    for device_id, site in (("pid-0101", "WM-1"), ("pid-0102", "WM-2"), ("pid-0103", "WM-3")):
        image = out / f"{device_id}.img"
        assert f"HOST={device_id}\n" in boot_file(image, "firstrun.sh").decode()
        unit_toml = boot_file(image, "pid-agent/bundle/unit.toml").decode()
        assert f'device_id = "{device_id}"' in unit_toml and f'site_ref = "{site}"' in unit_toml
    assert "ssid=Farm\n" in boot_file(out / "pid-0102.img", "pid-agent/network/wifi.nmconnection").decode()
    assert "pid-agent/network/wifi.nmconnection" not in boot_listing(out / "pid-0101.img")


def test_batch_with_bad_wi_fi_in_its_last_row_makes_no_image(parts, tmp_path):
    bundle, base, ssh_key = parts
    units = tmp_path / "units.csv"
    units.write_text("device_id,site_ref,wifi_ssid,wifi_psk,wifi_country\npid-0101,WM-1,,,\n"
                     "pid-0102,WM-2,Farm,short,IE\n")
    result = flash("batch", "--image", base, "--units", units, "--template", ROOT / "config/unit.example.toml",
                   "--wheels", bundle / "wheels", "--certs", bundle / "certs", "--ssh-key", ssh_key,
                   "--out", tmp_path / "batch", check_ok=False)
    assert result.returncode == 2 and "units.csv:3" in result.stderr and "8 to 63" in result.stderr
    assert not list(tmp_path.glob("batch/*.img"))
    units.write_text("id,site\npid-0101,WM-1\n")
    result = flash("batch", "--image", base, "--units", units, "--template", ROOT / "config/unit.example.toml",
                   "--wheels", bundle / "wheels", "--ssh-key", ssh_key, "--out", tmp_path / "batch", check_ok=False)
    assert result.returncode == 2 and "no device_id, site_ref column" in result.stderr


def test_batch_with_a_bad_row_makes_no_image(parts, tmp_path):
    bundle, base, ssh_key = parts
    units = tmp_path / "units.csv"
    units.write_text("device_id,site_ref\npid-0101,WM-1\nbad id!,WM-2\n")
    result = flash("batch", "--image", base, "--units", units, "--template", ROOT / "config/unit.example.toml",
                   "--wheels", bundle / "wheels", "--certs", bundle / "certs", "--ssh-key", ssh_key,
                   "--out", tmp_path / "batch", check_ok=False)
    assert result.returncode == 2 and "units.csv:3" in result.stderr
    assert not list(tmp_path.glob("batch/*.img"))


# --device: refusals only. Nothing here may ever reach a write. ----------------------------------------------
def mounted_block_device() -> tuple[str, str]:
    """The block device holding / (or another mounted one) on this host, from /proc/mounts."""
    for line in Path("/proc/mounts").read_text().splitlines():
        source, point = line.split()[:2]
        if source.startswith("/dev/") and Path(source).is_block_device():
            if point == "/":
                return source, point
    pytest.skip("no block device holds / here (an overlay or network root)")


def test_the_disk_holding_the_hosts_root_is_refused():
    device, _ = mounted_block_device()
    result = flash("check-device", device, check_ok=False, as_program=True)
    assert result.returncode == 2 and "refusing to write" in result.stderr
    assert "own disk" in result.stderr or "mounted" in result.stderr, result.stderr


@pytest.mark.parametrize("device, reason", [("/dev/pid-no-such-card", "No such file"),
                                            ("/dev/null", "not a block device")])
def test_a_bad_device_path_is_refused(device, reason):
    result = flash("check-device", device, check_ok=False)
    assert result.returncode == 2 and reason in result.stderr


def test_prepare_with_a_refused_device_leaves_the_device_alone(parts, tmp_path):
    bundle, image, ssh_key = parts
    device, _ = mounted_block_device()
    result = flash("prepare", image, "--bundle", bundle, "--ssh-key", ssh_key, "--device", device, check_ok=False)
    assert result.returncode == 2 and "refusing to write" in result.stderr and "wrote" not in result.stdout


MOUNTS = ("/dev/mmcblk0p2 / ext4 rw 0 0\n/dev/mmcblk0p1 /boot/firmware vfat rw 0 0\n"
          "/dev/sdb1 /media/engineer/bootfs vfat rw,nosuid 0 0\ntmpfs /run tmpfs rw 0 0\n")
SWAPS = "Filename\tType\tSize\tUsed\tPriority\n/dev/sdc2 partition 1024 0 -2\n"


def card(name: str, *partitions: tuple[str, list]) -> list[dict]:
    return [{"name": name, "type": "disk", "pkname": None, "mountpoints": [None]},
            *({"name": part, "type": "part", "pkname": name, "mountpoints": points} for part, points in partitions)]


@pytest.mark.parametrize("device, nodes, reason", [
    ("/dev/mmcblk0", card("/dev/mmcblk0", ("/dev/mmcblk0p1", ["/boot/firmware"])), "own disk"),
    ("/dev/sdb", card("/dev/sdb", ("/dev/sdb1", [None]), ("/dev/sdb2", [None])), "/dev/sdb1 is mounted on /media"),
    ("/dev/sdd", card("/dev/sdd", ("/dev/sdd1", ["/mnt/x"])), "/dev/sdd1 is mounted on /mnt/x"),
    ("/dev/sdc", card("/dev/sdc", ("/dev/sdc1", [None]), ("/dev/sdc2", [None])), "swap"),
    ("/dev/sdb1", [{"name": "/dev/sdb1", "type": "part", "pkname": "/dev/sdb", "mountpoints": [None]}],
     "not a whole card"),
    ("/dev/sde", card("/dev/sde", ("/dev/sde1", [None])), None),
])
def test_refusal_reads_the_hosts_tables(device, nodes, reason):
    """The decision on real-format /proc/mounts, /proc/swaps and lsblk --json text of a bench laptop: its own
    SD card, an auto-mounted card, a card lsblk sees mounted elsewhere, a swap partition, and a blank card."""
    found = FLASH_MODULE.refusal(device, MOUNTS, SWAPS, json.loads(json.dumps(nodes)), {"/dev/mmcblk0"})
    assert (found is None) if reason is None else (reason in found), found


def test_the_hosts_disk_is_found_by_lsblk_when_proc_mounts_says_dev_root():
    """A Raspberry Pi used as the bench: /proc/mounts names / as /dev/root, lsblk knows the partition."""
    flash_module = FLASH_MODULE
    forest = [{"name": "/dev/mmcblk0", "type": "disk", "mountpoints": [None], "children": [
        {"name": "/dev/mmcblk0p1", "type": "part", "mountpoints": ["/boot/firmware"]},
        {"name": "/dev/mmcblk0p2", "type": "part", "mountpoints": ["/"]}]},
        {"name": "/dev/sda", "type": "disk", "mountpoints": [None], "children": [
            {"name": "/dev/sda1", "type": "part", "mountpoints": [None]}]}]
    mounted = flash_module.mounted_sources("/dev/root / ext4 rw 0 0\n")
    assert flash_module.host_disks(mounted, forest) >= {"/dev/mmcblk0"}
    assert "/dev/sda" not in flash_module.host_disks(mounted, forest)


def test_write_copies_the_image_and_flushes(parts, tmp_path):
    """The copy itself, onto a file standing in for an opened card (a block device is never opened here)."""
    _, image, _ = parts
    flash_module = FLASH_MODULE
    target = tmp_path / "card"
    written = flash_module._copy_to(image, os.open(target, os.O_WRONLY | os.O_CREAT))
    assert written == image.stat().st_size and target.read_bytes() == image.read_bytes()
