"""A real OpenSSH server on a loopback port, for tests that talk to sensors over SSH.

Everything is generated in the test's tmp dir: the host key, the client keys (ssh-keygen), the
``sshd_config`` and the ``authorized_keys`` file. ``/usr/sbin/sshd -D -e -f <config>`` runs in
the foreground on a free 127.0.0.1 port and accepts the user running the tests (as root it logs
in as root with keys only; as another user it can log in only as that user). Nothing touches the
machine's own SSH configuration.
"""

from __future__ import annotations

import contextlib
import os
import pwd
import shlex
import signal
import socket
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

SSHD = "/usr/sbin/sshd"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def keygen(path: Path, comment: str = "spampot-test") -> Path:
    """An ed25519 key pair without passphrase at ``path`` and ``path.pub``; returns ``path``."""
    subprocess.run(
        ["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", comment, "-f", str(path)],
        check=True,
        stdin=subprocess.DEVNULL,
    )
    return path


@dataclass
class ClientKey:
    """A client key pair; ``public`` is the ``ssh-ed25519 AAAA… comment`` line."""

    path: Path

    @property
    def public(self) -> str:
        return self.path.with_suffix(".pub").read_text().strip()


@dataclass
class SshServer:
    """One sshd process. Create with :meth:`start`; :meth:`stop` when done (fixtures do)."""

    root: Path
    port: int
    host_key_path: Path
    config_path: Path
    authorized_keys: Path
    log_path: Path
    user: str
    proc: subprocess.Popen | None = None
    _keys: int = field(default=0)

    # -- set-up -------------------------------------------------------------------------

    @classmethod
    def create(cls, root: Path) -> SshServer:
        """Keys, config and an empty authorized_keys under ``root``; not started yet."""
        root.mkdir(parents=True, exist_ok=True)
        host_key = keygen(root / "ssh_host_ed25519_key", "spampot-test-host")
        server = cls(
            root=root,
            port=free_port(),
            host_key_path=host_key,
            config_path=root / "sshd_config",
            authorized_keys=root / "authorized_keys",
            log_path=root / "sshd.log",
            user=pwd.getpwuid(os.geteuid()).pw_name,
        )
        server.authorized_keys.write_text("")
        server.authorized_keys.chmod(0o600)
        server.write_config()
        return server

    def write_config(self, extra: str = "") -> None:
        # StrictModes off: pytest's tmp dirs are not owned the way sshd wants for ~/.ssh.
        # UsePAM off: no PAM session (and no need for a password database entry beyond passwd).
        self.config_path.write_text(
            f"""\
Port {self.port}
ListenAddress 127.0.0.1
HostKey {self.host_key_path}
PidFile {self.root / "sshd.pid"}
AuthorizedKeysFile {self.authorized_keys}
AllowUsers {self.user}
PermitRootLogin prohibit-password
PubkeyAuthentication yes
PasswordAuthentication no
KbdInteractiveAuthentication no
UsePAM no
StrictModes no
PermitUserEnvironment no
AllowTcpForwarding no
X11Forwarding no
PrintMotd no
MaxStartups 100:30:200
MaxSessions 50
LogLevel VERBOSE
Subsystem sftp internal-sftp
{extra}"""
        )

    def client_key(self, name: str = "central") -> ClientKey:
        """A new client key pair under the server's root (not yet authorised)."""
        self._keys += 1
        return ClientKey(keygen(self.root / f"{name}-{self._keys}_ed25519", f"{name}@test"))

    def authorize(
        self, key: ClientKey | str, command: str | None = None, options: str = ""
    ) -> None:
        """Add a key to authorized_keys, with a forced command and options if given.

        ``command`` is what sshd runs instead of the client's command (the client's request is
        in ``SSH_ORIGINAL_COMMAND``); it is written quoted as ``command="…"``. sshd reads the
        file at every login, so keys may be added while it runs.
        """
        public = key.public if isinstance(key, ClientKey) else key.strip()
        opts = [o for o in options.split(",") if o]
        if command is not None:
            opts.insert(0, 'command="' + command.replace("\\", "\\\\").replace('"', '\\"') + '"')
        line = (",".join(opts) + " " if opts else "") + public
        with self.authorized_keys.open("a") as f:
            f.write(line + "\n")

    def sensor_dir(self, name: str) -> Path:
        """A sensor data dir (``spool/``, ``tmp/``, ``events/``, ``state/``) under the root."""
        path = self.root / "sensors" / name
        for sub in ("spool/events", "tmp", "events", "state"):
            (path / sub).mkdir(parents=True, exist_ok=True)
        return path

    # -- what a client needs ------------------------------------------------------------

    @property
    def host_key(self) -> str:
        """The pinned public host key line, ``ssh-ed25519 AAAA…`` (without the comment)."""
        kind, blob, *_ = self.host_key_path.with_suffix(".pub").read_text().split()
        return f"{kind} {blob}"

    def known_hosts(self, path: Path | None = None) -> Path:
        """A known_hosts file that pins this server's host key for ``[127.0.0.1]:port``."""
        path = path or self.root / "known_hosts"
        path.write_text(f"[127.0.0.1]:{self.port} {self.host_key}\n")
        return path

    def ssh_args(self, key: ClientKey, known_hosts: Path | None = None) -> list[str]:
        """``ssh`` options to reach this server with ``key``, strictly checking its host key
        (pinned in ``known_hosts``, by default a file made by :meth:`known_hosts`)."""
        return [
            "ssh",
            "-F",
            "/dev/null",
            "-p",
            str(self.port),
            "-i",
            str(key.path),
            "-o",
            "IdentitiesOnly=yes",
            "-o",
            "BatchMode=yes",
            "-o",
            "StrictHostKeyChecking=yes",
            "-o",
            f"UserKnownHostsFile={known_hosts or self.known_hosts()}",
            "-o",
            "ConnectTimeout=10",
            "-l",
            self.user,
        ]

    def ssh(
        self, key: ClientKey, command: str, timeout: float = 30, input: bytes | None = None
    ) -> subprocess.CompletedProcess[bytes]:
        """Run ``command`` on the server with ``key``; returns the completed ssh process."""
        return subprocess.run(
            [*self.ssh_args(key), "127.0.0.1", command],
            capture_output=True,
            timeout=timeout,
            input=input,
            stdin=None if input is not None else subprocess.DEVNULL,
        )

    # -- life cycle ---------------------------------------------------------------------

    def start(self, timeout: float = 10.0) -> None:
        if os.geteuid() == 0:
            # sshd's privilege separation directory, normally made by the package's tmpfiles.
            os.makedirs("/run/sshd", mode=0o755, exist_ok=True)
        log = self.log_path.open("ab")
        self.proc = subprocess.Popen(
            [SSHD, "-D", "-e", "-f", str(self.config_path)],
            stdout=log,
            stderr=log,
            stdin=subprocess.DEVNULL,
        )
        log.close()
        deadline = time.monotonic() + timeout
        while True:
            if self.proc.poll() is not None:
                raise RuntimeError(f"sshd exited with {self.proc.returncode}: {self.log()}")
            with (
                contextlib.suppress(OSError),
                socket.create_connection(("127.0.0.1", self.port), timeout=1) as s,
            ):
                if s.recv(64).startswith(b"SSH-2.0-"):
                    return
            if time.monotonic() > deadline:
                raise TimeoutError(f"sshd did not answer on {self.port}: {self.log()}")
            time.sleep(0.05)

    def stop(self) -> None:
        """Stop the listener and every session it started."""
        self.kill_sessions()
        if self.proc is not None:
            if self.proc.poll() is None:
                self.proc.terminate()
                try:
                    self.proc.wait(timeout=10)
                except subprocess.TimeoutExpired:
                    self.proc.kill()
                    self.proc.wait()
            self.proc = None

    def session_pids(self) -> list[int]:
        """Processes sshd started for connections (its children), newest last."""
        if self.proc is None:
            return []
        return children(self.proc.pid)

    def kill_sessions(self, sig: int = signal.SIGKILL) -> int:
        """Cut every open connection by killing the per-connection sshd processes.

        Killing the connection's sshd closes the TCP connection at once, as a line going down
        would; the forced command's processes lose their stdin/stdout. Returns how many.
        """
        pids = self.session_pids()
        for pid in pids:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, sig)
        return len(pids)

    def log(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-4000:]
        except OSError:
            return ""

    def __str__(self) -> str:
        return f"sshd on 127.0.0.1:{self.port} (user {self.user}, config {self.config_path})"


def descendants(parent: int) -> list[int]:
    """Every process below ``parent`` (children first, then theirs)."""
    found: list[int] = []
    todo = [parent]
    while todo and len(found) < 10_000:
        kids = children(todo.pop(0))
        found += kids
        todo += kids
    return found


def process_name(pid: int) -> str:
    try:
        with open(f"/proc/{pid}/comm") as f:
            return f.read().strip()
    except OSError:
        return ""


def children(parent: int) -> list[int]:
    """The processes whose parent is ``parent``, oldest first."""
    found: list[tuple[int, int]] = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat", "rb") as f:
                stat = f.read()
        except OSError:
            continue
        # Fields after the command name, which is in parentheses and may hold spaces.
        rest = stat[stat.rindex(b")") + 2 :].split()
        if int(rest[1]) == parent:
            found.append((int(rest[19]), int(entry)))  # (start time, pid)
    return [pid for _, pid in sorted(found)]


def quote(argv: list[str]) -> str:
    return shlex.join(argv)
