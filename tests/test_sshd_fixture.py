"""The sshd fixture itself: a key logs in, a forced command replaces the client's command."""

from __future__ import annotations

import subprocess
import time


def test_login_runs_command_with_pinned_host_key(sshd):
    key = sshd.client_key()
    sshd.authorize(key)
    done = sshd.ssh(key, "echo hello")
    assert done.returncode == 0, done.stderr
    assert done.stdout == b"hello\n"


def test_forced_command_sees_original_command(sshd):
    key = sshd.client_key()
    sshd.authorize(key, command='echo "forced: $SSH_ORIGINAL_COMMAND"')
    done = sshd.ssh(key, "rm -rf /nothing")
    assert done.returncode == 0, done.stderr
    assert done.stdout == b"forced: rm -rf /nothing\n"


def test_unknown_key_and_wrong_host_key_are_refused(sshd, tmp_path):
    stranger = sshd.client_key("stranger")
    assert sshd.ssh(stranger, "true").returncode == 255
    key = sshd.client_key()
    sshd.authorize(key)
    wrong = tmp_path / "wrong_known_hosts"
    wrong.write_text(f"[127.0.0.1]:{sshd.port} {sshd.client_key().public}\n")
    done = subprocess.run(
        [*sshd.ssh_args(key, known_hosts=wrong), "127.0.0.1", "true"],
        capture_output=True,
        timeout=30,
    )
    assert done.returncode == 255
    assert b"HOST IDENTIFICATION HAS CHANGED" in done.stderr


def test_kill_sessions_cuts_a_running_command(sshd):
    key = sshd.client_key()
    sshd.authorize(key)
    proc = subprocess.Popen(
        [*sshd.ssh_args(key), "127.0.0.1", "sleep 30"],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    # Retried until a session is there to kill: on a loaded machine the connection's sshd
    # may appear (pre-auth) and be replaced by the session's between two listings.
    deadline = time.monotonic() + 30
    killed = 0
    while not killed and time.monotonic() < deadline:
        killed = sshd.kill_sessions()
        time.sleep(0.05)
    assert killed >= 1
    assert proc.wait(timeout=10) == 255


def test_two_servers_are_independent(sshd_factory):
    a, b = sshd_factory("a"), sshd_factory("b")
    assert a.port != b.port and a.host_key != b.host_key
    key = a.client_key()
    a.authorize(key)
    assert a.ssh(key, "true").returncode == 0
    b_key = b.client_key()
    assert b.ssh(b_key, "true").returncode == 255
