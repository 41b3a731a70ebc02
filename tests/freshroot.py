"""A pristine Debian 12 to install and deploy spampot in, as a new user would.

``debootstrap --variant=minbase bookworm`` makes the base once per machine (about a minute,
kept under /var/tmp): no Python, no venv, no OpenSSH, only what every Debian has. Each test
works in an overlay on top of it (the base is never changed), chrooted, with its own network
namespace when it runs servers. The mirror is the one this machine's apt uses.

What is handed into the root from the machine, and why: ``/etc/resolv.conf`` (name service for
apt and pip) and the machine's CA bundle as ``PIP_CERT`` (pip inside must trust what the
machine trusts, which on some networks includes a proxy's CA). Nothing else: the Python, pip
configuration, packages and accounts inside are the root's own.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import re
import shutil
import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path

from conftest import need_root, need_tool

BASE = Path("/var/tmp/spampot-test-bookworm")
SOURCE = Path(__file__).resolve().parent.parent
README = SOURCE / "README.md"
ROOT_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
HOST_CA = Path("/etc/ssl/certs/ca-certificates.crt")


def apt_mirror() -> str:
    """The Debian mirror this machine's apt uses (deb822 or one-line sources)."""
    for path in [Path("/etc/apt/sources.list"), *Path("/etc/apt/sources.list.d").glob("*")]:
        with contextlib.suppress(OSError):
            text = path.read_text()
            found = re.search(r"^URIs:\s*(\S+/debian)\s*$", text, re.M) or re.search(
                r"^deb\s+(?:\[[^]]*\]\s+)?(\S+/debian)\s+\S+", text, re.M
            )
            if found:
                return found.group(1)
    raise RuntimeError("no Debian mirror in /etc/apt/sources.list*")


def pristine_base() -> Path:
    """The minbase bookworm tree, made once (a lock keeps two builders apart)."""
    need_root()
    need_tool("debootstrap")
    BASE.parent.mkdir(parents=True, exist_ok=True)
    with open(f"{BASE}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        done = BASE / ".spampot-test-complete"
        if not done.exists():
            shutil.rmtree(BASE, ignore_errors=True)
            subprocess.run(
                ["debootstrap", "--variant=minbase", "bookworm", str(BASE), apt_mirror()],
                check=True,
                capture_output=True,
                timeout=900,
            )
            done.write_text("")
    return BASE


def readme_section(heading: str) -> str:
    """The README's text under ``heading`` (a whole line, e.g. ``## Quick start``)."""
    text = README.read_text()
    start = text.index(f"\n{heading}\n")
    level = heading.split(" ", 1)[0]
    end = re.compile(rf"^#{{1,{len(level)}}} ", re.M).search(text, start + len(heading) + 2)
    return text[start : end.start() if end else len(text)]


def sh_blocks(section: str) -> list[str]:
    """The ```sh code blocks of a README section, in order."""
    return re.findall(r"^```sh\n(.*?)^```", section, re.M | re.S)


def commands(block: str) -> list[str]:
    """A shell block as the commands a person types: comments dropped, continuations joined."""
    joined = re.sub(r"\\\n\s*", "", block)
    out = []
    for line in joined.splitlines():
        line = re.sub(r"\s+#.*$", "", line).strip()
        if line and not line.startswith("#"):
            out.append(line)
    return out


class Root:
    """An overlay of ``lowers`` (top first) with its own upper dir, mounted at ``path``."""

    def __init__(self, work: Path, lowers: list[Path]) -> None:
        self.work = work
        self.upper = work / "upper"
        self.path = work / "root"
        for d in (self.upper, work / "work", self.path):
            d.mkdir(parents=True, exist_ok=True)
        lower = ":".join(str(p) for p in lowers)
        self._mounts: list[Path] = []
        self._mount(
            ["-t", "overlay", "overlay", "-o",
             f"lowerdir={lower},upperdir={self.upper},workdir={work / 'work'}"],
            self.path,
        )  # fmt: skip
        self._mount(["-t", "proc", "proc"], self.path / "proc")
        self._mount(["--rbind", "/dev"], self.path / "dev")
        shutil.copyfile("/etc/resolv.conf", self.path / "etc/resolv.conf")
        if HOST_CA.exists():
            shutil.copyfile(HOST_CA, self.path / "root/host-ca.pem")

    def _mount(self, args: list[str], target: Path) -> None:
        target.mkdir(parents=True, exist_ok=True)
        subprocess.run(["mount", *args, str(target)], check=True, capture_output=True)
        self._mounts.append(target)

    def env(self) -> dict[str, str]:
        env = {"PATH": ROOT_PATH, "HOME": "/root", "LANG": "C.UTF-8", "TERM": "dumb"}
        if (self.path / "root/host-ca.pem").exists():
            env["PIP_CERT"] = "/root/host-ca.pem"
        return env

    def copy_source(self, dest: str = "/root/spampot") -> str:
        """The source tree as a person would have it (its files, not build or VCS leftovers)."""
        target = self.path / dest.lstrip("/")
        shutil.rmtree(target, ignore_errors=True)
        shutil.copytree(
            SOURCE,
            target,
            ignore=shutil.ignore_patterns(
                ".git", "__pycache__", "*.egg-info", "build", ".venv", ".*_cache"
            ),
        )
        return dest

    def argv(self, command: str, netns: str | None = None, cwd: str = "/") -> list[str]:
        inner = ["chroot", str(self.path), "/usr/bin/env", "-i",
                 *(f"{k}={v}" for k, v in self.env().items()),
                 "/bin/sh", "-c", f"cd {cwd} && {command}"]  # fmt: skip
        return ["ip", "netns", "exec", netns, *inner] if netns else inner

    def run(
        self, command: str, netns: str | None = None, cwd: str = "/", timeout: float = 600
    ) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            self.argv(command, netns, cwd),
            capture_output=True,
            text=True,
            timeout=timeout,
            stdin=subprocess.DEVNULL,
        )

    def check(
        self, command: str, netns: str | None = None, cwd: str = "/", timeout: float = 600
    ) -> str:
        done = self.run(command, netns, cwd, timeout)
        assert done.returncode == 0, (command, done.stdout[-2000:], done.stderr[-6000:])
        return done.stdout

    def close(self) -> None:
        for target in reversed(self._mounts):
            subprocess.run(["umount", "-R", "-l", str(target)], capture_output=True)
        self._mounts.clear()


class Netns:
    """Network namespaces joined by veth pairs, addresses from TEST-NET-1 (RFC 5737)."""

    def __init__(self) -> None:
        self.names: list[str] = []

    def add(self, role: str) -> str:
        name = f"sp-{role}-{uuid.uuid4().hex[:6]}"
        subprocess.run(["ip", "netns", "add", name], check=True)
        self.names.append(name)
        self.ip(name, "link", "set", "lo", "up")
        return name

    def ip(self, ns: str, *args: str) -> None:
        subprocess.run(["ip", "-n", ns, *args], check=True, capture_output=True)

    def link(self, a: str, a_addr: str, b: str, b_addr: str) -> None:
        tag = uuid.uuid4().hex[:6]
        va, vb = f"va{tag}", f"vb{tag}"
        subprocess.run(
            ["ip", "link", "add", va, "netns", a, "type", "veth", "peer", vb, "netns", b],
            check=True,
        )
        for ns, dev, addr in ((a, va, a_addr), (b, vb, b_addr)):
            self.ip(ns, "addr", "add", f"{addr}/24", "dev", dev)
            self.ip(ns, "link", "set", dev, "up")

    def close(self) -> None:
        for name in self.names:
            pids = subprocess.run(
                ["ip", "netns", "pids", name], capture_output=True, text=True
            ).stdout.split()
            for pid in pids:
                with contextlib.suppress(ProcessLookupError, ValueError):
                    os.kill(int(pid), 9)
            subprocess.run(["ip", "netns", "del", name], capture_output=True)


@contextlib.contextmanager
def netns() -> Iterator[Netns]:
    nets = Netns()
    try:
        yield nets
    finally:
        nets.close()
