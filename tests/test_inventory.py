"""The central inventory: one TOML file, strict about every key."""

from __future__ import annotations

from pathlib import Path

import pytest

from spampot.central.inventory import InventoryError, load_inventory

HOST_KEY = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIHm0o0eRlyR0V3tB1e8CJoN1hJ0qK6eQ2fJ3pYb5xS3w"


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "inventory.toml"
    path.write_text(text)
    return path


FULL = f"""
[central]
data_dir = "central"

[collect]
parallel = 2
io_timeout = 30
bwlimit = 1000

[defaults]
user = "collector"
key = "keys/central_ed25519"
tags = ["residential"]

[[sensor]]
name = "br-01"
host = "192.0.2.1"
host_key = "{HOST_KEY} root@br-01"
isp = "Example Telecom"

[[sensor]]
name = "br-02"
host = "sensor2.example.net"
port = 2222
known_hosts = "/etc/spampot/known_hosts"
data_dir = "/srv/spampot/"
tags = ["business", "fiber"]
enabled = false
"""


def test_full_inventory(tmp_path):
    inv = load_inventory(write(tmp_path, FULL))
    assert inv.central.data_dir == tmp_path / "central"
    assert inv.central.raw_dir == tmp_path / "central" / "raw"
    assert inv.central.state_dir == tmp_path / "central" / "state"
    assert inv.collect.parallel == 2 and inv.collect.io_timeout == 30
    assert inv.collect.bwlimit == 1000 and inv.collect.compress is False
    assert inv.names == ("br-01", "br-02")
    one, two = inv.sensors
    assert one.user == two.user == "collector"
    assert one.key == tmp_path / "keys" / "central_ed25519"
    assert one.host_key == HOST_KEY  # comment dropped
    assert one.known_hosts is None and one.port == 22
    assert one.tags == ("residential",) and one.isp == "Example Telecom"
    assert one.data_dir == "/var/lib/spampot"
    assert one.remote_spool == "/var/lib/spampot/spool/"
    assert two.port == 2222 and two.known_hosts == Path("/etc/spampot/known_hosts")
    assert two.data_dir == "/srv/spampot" and two.remote_spool == "/srv/spampot/spool/"
    assert two.tags == ("business", "fiber") and two.enabled is False
    assert inv.sensor("br-02") is two
    with pytest.raises(KeyError, match="br-03"):
        inv.sensor("br-03")


def test_defaults_when_only_sensors(tmp_path):
    inv = load_inventory(
        write(tmp_path, f'[[sensor]]\nname="a"\nhost="h"\nkey="/k"\nhost_key="{HOST_KEY}"\n')
    )
    assert inv.central.data_dir == Path("/var/lib/spampot-central")
    assert inv.collect.parallel == 4
    assert inv.sensors[0].user == "spampot"


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("[centrl]\n", "unknown section.*centrl"),
        ("[central]\ndatadir='x'\n", r"\[central\] unknown key.*datadir.*known: data_dir"),
        ("[collect]\nparallel=0\n", "parallel must be at least 1"),
        ("[collect]\nparallel='4'\n", "collect.parallel must be a non-negative integer"),
        ("[defaults]\nhots='x'\n", r"\[defaults\] unknown key.*hots"),
        ("[defaults]\nhost='x'\n", "cannot set name or host"),
        ("[[sensor]]\nname='a'\nhost='h'\nkey='/k'\n", "exactly one of host_key"),
        (
            f"[[sensor]]\nname='a'\nhost='h'\nkey='/k'\nhost_key='{HOST_KEY}'\nknown_hosts='/k'\n",
            "exactly one of host_key",
        ),
        ("[[sensor]]\nname='a'\nkey='/k'\n", "'host' is required"),
        (f"[[sensor]]\nname='a'\nhost='h'\nhost_key='{HOST_KEY}'\n", "'key' is required"),
        (f"[[sensor]]\nname='../x'\nhost='h'\nkey='/k'\nhost_key='{HOST_KEY}'\n", "sensor name"),
        (f"[[sensor]]\nname='a'\nhost='-oProxy'\nkey='/k'\nhost_key='{HOST_KEY}'\n", "host"),
        (f"[[sensor]]\nname='a'\nhost='h h'\nkey='/k'\nhost_key='{HOST_KEY}'\n", "host"),
        (f"[[sensor]]\nname='a'\nhost='h'\nkey='/k'\nhost_key='{HOST_KEY}'\nport=0\n", "port"),
        (
            f"[[sensor]]\nname='a'\nhost='h'\nkey='/k'\nhost_key='{HOST_KEY}'\nuser='-x'\n",
            "user",
        ),
        (f"[[sensor]]\nname='a'\nhost='h'\nkey='/k'\nhost_key='{HOST_KEY}'\ntags='x'\n", "tags"),
        (
            f"[[sensor]]\nname='a'\nhost='h'\nkey='/k'\nhost_key='{HOST_KEY}'\ndata_dir='rel'\n",
            "data_dir must be an absolute path",
        ),
        (f"[[sensor]]\nname='a'\nhost='h'\nkey='/k'\nhost_key='{HOST_KEY}'\nisp=3\n", "isp"),
        ("[[sensor]]\nname='a'\nhost='h'\nkey='/k'\nhost_key='ssh-ed25519 !!'\n", "base64"),
        ("[[sensor]]\nname='a'\nhost='h'\nkey='/k'\nhost_key='AAAA'\n", "public key line"),
        (
            f"[[sensor]]\nname='a'\nhost='h'\nkey='/k'\nhost_key='ssh-rsa {HOST_KEY.split()[1]}'\n",
            "does not match its type",
        ),
        (
            f"[[sensor]]\nname='a'\nhost='h'\nkey='/k'\nhost_key='{HOST_KEY}'\nextra=1\n",
            r"#1 \(a\): unknown key.*extra",
        ),
        (
            f"[[sensor]]\nname='a'\nhost='h'\nkey='/k'\nhost_key='{HOST_KEY}'\n" * 2,
            "appears twice",
        ),
        ("sensor = 3\n", r"\[\[sensor\]\]"),
        ("[central\n", "inventory.toml"),
    ],
)
def test_errors_name_the_place(tmp_path, text, message):
    with pytest.raises(InventoryError, match=message):
        load_inventory(write(tmp_path, text))


def test_missing_file(tmp_path):
    with pytest.raises(InventoryError, match="cannot read"):
        load_inventory(tmp_path / "nope.toml")


def test_frozen(tmp_path):
    inv = load_inventory(write(tmp_path, FULL))
    with pytest.raises(AttributeError):
        inv.sensors[0].host = "x"  # type: ignore[misc]
