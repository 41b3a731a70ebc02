"""The real software the sensor imitates, from Debian 12's packages, run in network namespaces.

Postfix, Exim 4 (exim4-daemon-light), Sendmail, Squid and Dante are *not installed*: installing
a Debian server package starts its daemon on the host (postfix on :25, squid on :3128) and the
MTAs conflict with each other. :func:`prepare` fetches them with ``apt-get download``, unpacks
each into its own tree under the cache directory with ``dpkg -x`` and installs only the
libraries they link against (and m4, openssl). Run it ahead of the tests (``.ci/run`` does):

    python3 tests/differential/realservers.py prepare

Each server then runs in a network namespace of its own (``netns.py``: only loopback, no route
out) and in a private mount namespace where its package tree and a configuration written here
are laid over ``/usr``, ``/etc`` and ``/var`` with overlayfs, so the binaries find the fixed
paths they were built with (``/etc/exim4``, ``/var/spool/postfix``, ``/usr/lib/squid``) and
nothing on the host changes. Every server is configured *open*, as a spammer would find it,
and can deliver nothing: the MTAs queue only (or discard), and there is nowhere to go.

One context manager per server yields a :class:`Server`, whose ``connect()`` opens a socket
to it inside its namespace; :func:`sensor` runs our own sensor the same way.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import textwrap
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))

from netns import Netns

# Not under /usr, /etc or /var: those are overlaid, and overlayfs refuses a layer inside the
# directory it covers.
CACHE = Path(os.environ.get("SPAMPOT_DIFF_CACHE", Path.home() / ".cache" / "spampot-differential"))

# The name every server (and the sensor) gives itself (127.0.0.1 in its /etc/hosts).
HOSTNAME = "mail.example.com"
# Where the probes come from: an address with no name, as most spammers' are. (From
# 127.0.0.1, Sendmail's banner would name the client after the server itself.)
CLIENT = "127.0.0.2"

# Debian 12 binary packages per server (versions: whatever bookworm's archive serves).
PACKAGES: dict[str, tuple[str, ...]] = {
    "postfix": ("postfix",),
    "exim4": ("exim4-daemon-light", "exim4-base", "exim4-config"),
    "sendmail": ("sendmail-bin", "sendmail-base", "sendmail-cf"),
    "squid": ("squid", "squid-common", "squid-langpack"),
    "dante": ("dante-server",),
    "dnsmasq": ("dnsmasq-base",),  # each namespace's name server (a binary; no daemon starts)
}
# Tools run here besides the servers (sendmail.cf is built with m4; a snakeoil cert with openssl).
TOOLS = ("m4", "openssl")
# Dependencies that are not libraries the binaries load (maintainer-script tools, other
# servers' packages, init glue): not installed.
_NOT_LIBRARIES = re.compile(r"^(?!lib)|^libdbi-perl$")

PORTS = {"postfix": 25, "exim4": 25, "sendmail": 25, "squid": 3128, "dante": 1080}
SQUID_PORTS = (3128, 8080)

# The proxies' namespace is the world the sensor describes (README, "A destination the proxy
# cannot reach"): the mail hosts resolve (from /etc/hosts and its name server) to addresses
# routed to loopback there, where a real Postfix is the upstream MX and every other port
# refuses; the web host's name does not resolve (NXDOMAIN), as every name but a tunnel to an
# SMTP port fails on the sensor, which resolves nothing.
RESOLVED_TARGETS = {
    "mx.example.org": "192.0.2.25",
    "mail.example.net": "198.51.100.25",
}
UNRESOLVED_TARGETS = ("www.example.org",)
# Every host name the probes ask proxies to reach (normalise.py writes them all <HOST>).
PROBE_TARGETS = (*RESOLVED_TARGETS, *UNRESOLVED_TARGETS)
# The MTA behind the proxies there (proxies()): the sensor's tunnelled servers are told to be
# the same software (smtp.tunnel_dialects), as its direct port is told which MTA it is compared
# with, so a tunnel probe compares the proxies and what they relay, not which MTA a name has.
UPSTREAM_DIALECT = "postfix"


# --- fetch and unpack ---------------------------------------------------------------------------


def tree(server: str, cache: Path = CACHE) -> Path:
    return cache / server / "root"


def prepared(cache: Path = CACHE) -> bool:
    return all((cache / server / "complete").exists() for server in PACKAGES)


def _apt(*args: str) -> None:
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    subprocess.run(["apt-get", "-qq", *args], check=True, env=env, stdout=subprocess.DEVNULL)


def _depends(deb: Path) -> set[str]:
    out = subprocess.run(
        ["dpkg-deb", "-f", str(deb), "Depends", "Pre-Depends"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    names = set()
    for line in out.splitlines():
        _, _, value = line.partition(":")
        for dep in value.split(","):
            first = dep.split("|")[0].strip()
            name = re.split(r"[\s(:]", first, maxsplit=1)[0]
            if name:
                names.add(name)
    return names


def _merge_usr(root: Path) -> None:
    """Debian 12 is usr-merged (/lib -> usr/lib): move what a package puts in /lib under /usr."""
    for top in ("bin", "sbin", "lib"):
        src = root / top
        if src.is_dir() and not src.is_symlink():
            dest = root / "usr" / top
            dest.mkdir(parents=True, exist_ok=True)
            shutil.copytree(src, dest, symlinks=True, dirs_exist_ok=True)
            shutil.rmtree(src)


def prepare(cache: Path = CACHE) -> Path:
    """Download and unpack every server (once; the cache is kept); install their libraries."""
    if prepared(cache):
        return cache
    debs = cache / "debs"
    debs.mkdir(parents=True, exist_ok=True)
    for old in debs.glob("*.deb"):
        old.unlink()  # one version of each package: whatever the archive serves now
    wanted = [p for pkgs in PACKAGES.values() for p in pkgs]
    # Root downloads into the cache itself (apt's _apt user cannot write there).
    download = ["apt-get", "-qq", "-o", "APT::Sandbox::User=root", "download", *wanted]
    try:
        subprocess.run(download, cwd=debs, check=True)
    except subprocess.CalledProcessError:
        _apt("update")  # a fresh machine has no package lists yet
        subprocess.run(download, cwd=debs, check=True)
    libraries: set[str] = set()
    for server, pkgs in PACKAGES.items():
        root = tree(server, cache)
        if root.exists():
            shutil.rmtree(root)
        root.mkdir(parents=True)
        for pkg in pkgs:
            (deb,) = debs.glob(f"{pkg}_*.deb")
            subprocess.run(["dpkg-deb", "-x", str(deb), str(root)], check=True)
            libraries |= {d for d in _depends(deb) if not _NOT_LIBRARIES.search(d)}
        _merge_usr(root)
    missing = [
        p
        for p in sorted(libraries | set(TOOLS))
        if subprocess.run(["dpkg", "-s", p], capture_output=True, check=False).returncode != 0
    ]
    if missing:
        _apt("install", "-y", "--no-install-recommends", *missing)
    for server in PACKAGES:
        (cache / server / "complete").write_text("\n".join(PACKAGES[server]) + "\n")
    return cache


# --- one server in its namespaces ---------------------------------------------------------------


@dataclass
class Server:
    """A running server: talk to it with ``connect(port)`` (a socket in its namespace)."""

    name: str
    netns: Netns
    ports: tuple[int, ...]
    host: str = "127.0.0.1"
    logs: list[Path] = field(default_factory=list)
    proc: subprocess.Popen | None = None

    @property
    def port(self) -> int:
        return self.ports[0]

    def connect(self, port: int | None = None, timeout: float = 10.0) -> socket.socket:
        """A connection from ``CLIENT`` to the server (its first port unless ``port``)."""
        port = self.port if port is None else port
        return self.netns.connect(port, self.host, timeout, source=CLIENT)

    def log_text(self) -> str:
        parts = []
        files = [f for p in self.logs for f in (sorted(p.rglob("*")) if p.is_dir() else [p])]
        for path in files:
            if path.is_file():
                parts.append(f"--- {path.name}\n{path.read_text(errors='replace')[-4000:]}")
        return "\n".join(parts)


def _passwd_overlay(etc: Path, users: dict[str, tuple[int, int]], groups: dict[str, int]) -> None:
    """The host's passwd and group plus the system accounts a package's postinst would add."""
    passwd = Path("/etc/passwd").read_text()
    group = Path("/etc/group").read_text()
    have_users = {line.split(":")[0] for line in passwd.splitlines()}
    have_groups = {line.split(":")[0] for line in group.splitlines()}
    for name, gid in groups.items():
        if name not in have_groups:
            group += f"{name}:x:{gid}:\n"
    for name, (uid, gid) in users.items():
        if name not in have_users:
            passwd += f"{name}:x:{uid}:{gid}::/nonexistent:/usr/sbin/nologin\n"
    (etc / "passwd").write_text(passwd)
    (etc / "group").write_text(group)


def _common_etc(etc: Path, extra_hosts: dict[str, str]) -> None:
    etc.mkdir(parents=True, exist_ok=True)
    hosts = f"127.0.0.1\t{HOSTNAME} {HOSTNAME.split('.')[0]} localhost\n::1\tlocalhost\n"
    hosts += "".join(f"{addr}\t{name}\n" for name, addr in extra_hosts.items())
    (etc / "hosts").write_text(hosts)
    (etc / "hostname").write_text(HOSTNAME.split(".")[0] + "\n")
    (etc / "mailname").write_text(HOSTNAME + "\n")
    # A name server in the namespace's own loopback, where nothing listens: a look-up fails
    # at once instead of waiting, and no query can leave.
    (etc / "resolv.conf").write_text("nameserver 127.0.0.1\noptions timeout:1 attempts:1\n")


def _snakeoil(etc: Path) -> None:
    """Debian's ssl-cert makes this at install time: a self-signed cert for the host name."""
    (etc / "ssl" / "certs").mkdir(parents=True, exist_ok=True)
    (etc / "ssl" / "private").mkdir(parents=True, exist_ok=True)
    subprocess.run(
        [
            "openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "3650",
            "-subj", f"/CN={HOSTNAME}",
            "-keyout", str(etc / "ssl/private/ssl-cert-snakeoil.key"),
            "-out", str(etc / "ssl/certs/ssl-cert-snakeoil.pem"),
        ],
        check=True,
        capture_output=True,
    )  # fmt: skip


_MOUNT_SCRIPT = """\
set -e
R={root} C={conf} U={up} W={work}
mount -t overlay overlay -o lowerdir=$R/usr:/usr /usr
mount -t overlay overlay -o lowerdir=$C/etc:$R/etc:/etc,upperdir=$U/etc,workdir=$W/etc /etc
mount -t overlay overlay -o lowerdir=$R/var:/var,upperdir=$U/var,workdir=$W/var /var
mount -t tmpfs -o mode=0755 tmpfs /run
mount -t tmpfs -o mode=1777 tmpfs /dev/shm
hostname {short}
"""


def _launch(
    netns: Netns,
    instance: Path,
    root: Path,
    script: str,
    log: Path,
) -> subprocess.Popen:
    """Run ``script`` (sh) in ``netns`` and a new mount and UTS namespace over the layers."""
    for layer in ("usr", "etc", "var"):
        (root / layer).mkdir(exist_ok=True)  # overlayfs needs every lower layer to exist
    for part in ("up/etc", "up/var", "work/etc", "work/var"):
        (instance / part).mkdir(parents=True, exist_ok=True)
    mounts = _MOUNT_SCRIPT.format(
        root=root,
        conf=instance / "conf",
        up=instance / "up",
        work=instance / "work",
        short=HOSTNAME.split(".")[0],
    )
    out = open(log, "ab")  # noqa: SIM115 - the child keeps it
    try:
        return subprocess.Popen(
            [
                *netns.prefix,
                "unshare", "--mount", "--uts", "--propagation", "private", "--",
                "sh", "-c", mounts + script,
            ],
            stdout=out,
            stderr=out,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )  # fmt: skip
    finally:
        out.close()


@contextlib.contextmanager
def _running(
    name: str,
    ports: tuple[int, ...],
    write_conf: Callable[[Path, Path], str],  # (etc layer, package tree) -> start script
    users: dict[str, tuple[int, int]] | None = None,
    groups: dict[str, int] | None = None,
    netns: Netns | None = None,
    extra_hosts: dict[str, str] | None = None,
    cache: Path = CACHE,
    wait_banner: bool = False,
) -> Iterator[Server]:
    prepare(cache)
    own_netns = netns is None
    ns = netns if netns is not None else Netns(name)
    instance = Path(tempfile.mkdtemp(prefix=f"spampot-diff-{name}-"))
    proc: subprocess.Popen | None = None
    resolver = contextlib.ExitStack()
    try:
        if own_netns:
            # A name server, as every server on the Internet has: a client without a name
            # (CLIENT) is then "unknown" (NXDOMAIN), not "resolver down" (Sendmail's banner
            # says which), and a look-up is answered at once.
            resolver.enter_context(dnsmasq(ns, cache))
        etc = instance / "conf" / "etc"
        _common_etc(etc, extra_hosts or {})
        _passwd_overlay(etc, users or {}, groups or {})
        script = write_conf(etc, tree(name, cache))
        log = instance / f"{name}.out"
        proc = _launch(ns, instance, tree(name, cache), script, log)
        server = Server(name, ns, ports, logs=[log, instance / "up/var/log"])
        server.proc = proc
        try:
            for port in ports:
                ns.wait_port(port, timeout=60, alive=proc)
            if wait_banner:
                _wait_banner(server)
        except Exception as exc:
            raise RuntimeError(f"{name} did not start: {exc}\n{server.log_text()}") from exc
        yield server
    finally:
        if own_netns:
            resolver.close()
            ns.close()
        elif proc is not None:
            _kill_group(proc)
        if proc is not None:
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(timeout=10)
        shutil.rmtree(instance, ignore_errors=True)


def _kill_group(proc: subprocess.Popen) -> None:
    """The server's own process group (it was started in a session of its own)."""
    for sig in (signal.SIGTERM, signal.SIGKILL):
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, sig)
        try:
            proc.wait(timeout=5)
            return
        except subprocess.TimeoutExpired:
            continue


def _wait_banner(server: Server, timeout: float = 60.0) -> None:
    """An MTA accepts before it is ready (sendmail reads its maps): wait for a 220."""
    deadline = time.monotonic() + timeout
    last = b""
    while time.monotonic() < deadline:
        try:
            with server.connect(timeout=15) as sock:
                last = sock.recv(512)
                if last.startswith(b"220"):
                    sock.sendall(b"QUIT\r\n")
                    return
        except OSError:
            pass
        time.sleep(0.5)
    raise TimeoutError(f"no 220 from {server.name}: {last!r}")


# --- Postfix ------------------------------------------------------------------------------------


def _postfix_conf(etc: Path, root: Path) -> str:
    """Debian's "Internet Site" main.cf (postinst: main.cf.debian + main.cf.tls + answers),
    with the relay opened to everyone and every transport discarding."""
    pf = etc / "postfix"
    pf.mkdir(parents=True)
    shutil.copy(root / "usr/share/postfix/master.cf.dist", pf / "master.cf")
    shutil.copy(root / "usr/share/postfix/dynamicmaps.cf", pf / "dynamicmaps.cf")
    main = (root / "usr/share/postfix/main.cf.debian").read_text()
    main += (root / "usr/share/postfix/main.cf.tls").read_text()
    main += textwrap.dedent(
        f"""
        myhostname = {HOSTNAME}
        alias_maps = hash:/etc/aliases
        alias_database = hash:/etc/aliases
        myorigin = /etc/mailname
        mydestination = $myhostname, {HOSTNAME.split(".")[0]}, localhost.localdomain, localhost
        relayhost =
        mailbox_size_limit = 0
        recipient_delimiter = +
        inet_interfaces = all
        inet_protocols = all
        # The open relay a spammer finds: every client is "my network".
        mynetworks = 0.0.0.0/0 [::]/0
        smtpd_relay_restrictions = permit_mynetworks permit_sasl_authenticated
            defer_unauth_destination
        # Nothing is ever delivered: every transport discards (and the namespace has no way out).
        default_transport = discard:differential test
        relay_transport = discard:differential test
        local_transport = discard:differential test
        virtual_transport = discard:differential test
        maillog_file = /var/log/postfix.log
        """
    )
    (pf / "main.cf").write_text(main)
    (etc / "aliases").write_text("postmaster: root\n")
    _snakeoil(etc)
    return textwrap.dedent(
        """
        mkdir -p /var/spool/postfix/etc /var/log
        for f in hosts resolv.conf services nsswitch.conf localtime host.conf; do
            [ -e /etc/$f ] && cp -L /etc/$f /var/spool/postfix/etc/ || true
        done
        postalias /etc/aliases
        postfix set-permissions >/dev/null 2>&1 || true
        exec postfix start-fg
        """
    )


@contextlib.contextmanager
def postfix(netns: Netns | None = None, cache: Path = CACHE) -> Iterator[Server]:
    """Postfix 3.7 as Debian 12 ships it, relaying for everyone, on port 25."""
    with _running(
        "postfix",
        (25,),
        _postfix_conf,
        users={"postfix": (990, 990)},
        groups={"postfix": 990, "postdrop": 991},
        netns=netns,
        cache=cache,
        wait_banner=True,
    ) as server:
        yield server


# --- Exim 4 -------------------------------------------------------------------------------------


def _exim4_conf(etc: Path, root: Path) -> str:
    """debconf's answers for an "internet site" (update-exim4.conf.conf), relaying for all."""
    exim = etc / "exim4"
    exim.mkdir(parents=True)
    (exim / "update-exim4.conf.conf").write_text(
        textwrap.dedent(
            """\
            dc_eximconfig_configtype='internet'
            dc_other_hostnames=''
            dc_local_interfaces=''
            dc_readhost=''
            dc_relay_domains='*'
            dc_minimaldns='false'
            dc_relay_nets='0.0.0.0/0'
            dc_smarthost=''
            CFILEMODE='644'
            dc_use_split_config='false'
            dc_hide_mailname=''
            dc_mailname_in_oh='true'
            dc_localdelivery='mail_spool'
            """
        )
    )
    # update-exim4.conf writes /var/lib/exim4/config.autogenerated; -odq queues every message
    # (no delivery attempt), and the namespace has nowhere to deliver to anyway.
    return textwrap.dedent(
        """
        mkdir -p /var/lib/exim4 /var/spool/exim4 /var/log/exim4 /run/exim4
        chown Debian-exim:Debian-exim /var/spool/exim4 /var/log/exim4 /run/exim4
        update-exim4.conf
        exec exim4 -bdf -odq
        """
    )


@contextlib.contextmanager
def exim4(netns: Netns | None = None, cache: Path = CACHE) -> Iterator[Server]:
    """Exim 4.96 (exim4-daemon-light) as Debian 12 configures an internet site, open relay."""
    with _running(
        "exim4",
        (25,),
        _exim4_conf,
        users={"Debian-exim": (989, 989)},
        groups={"Debian-exim": 989},
        netns=netns,
        cache=cache,
        wait_banner=True,
    ) as server:
        yield server


# --- Sendmail -----------------------------------------------------------------------------------


def _sendmail_conf(etc: Path, root: Path) -> str:
    """Debian's sendmail.mc (cf/debian/sendmail.mc, as sendmailconfig installs it) with
    FEATURE(promiscuous_relay): relaying for anyone to anywhere. Debian's greet_pause (1 s
    before the banner) stays: it is what a client of a Debian Sendmail meets."""
    mail = etc / "mail"
    (mail / "m4").mkdir(parents=True)
    mc = (root / "usr/share/sendmail/cf/debian/sendmail.mc").read_text()
    # The namespace's name server knows no sender domain, so every one would be "unresolvable"
    # (451 4.1.8), unlike on the Internet where the spammer's domains resolve: accept them.
    features = "FEATURE(`promiscuous_relay')dnl\nFEATURE(`accept_unresolvable_domains')dnl\n"
    mc = mc.replace("MAILER_DEFINITIONS", features + "MAILER_DEFINITIONS")
    (mail / "sendmail.mc").write_text(mc)
    for name in ("m4/dialup.m4", "m4/provider.m4", "access", "local-host-names", "relay-domains"):
        (mail / name).write_text("")
    (mail / "local-host-names").write_text(f"{HOSTNAME}\nlocalhost\n")
    (etc / "aliases").write_text("postmaster: root\nMAILER-DAEMON: postmaster\n")
    return textwrap.dedent(
        """
        mkdir -p /run/sendmail/mta /var/spool/mqueue /var/spool/mqueue-client
        mkdir -p /var/lib/sendmail/host_status
        chown smmsp:smmsp /var/spool/mqueue-client
        chmod 2750 /var/spool/mqueue /var/spool/mqueue-client
        m4 /etc/mail/sendmail.mc > /etc/mail/sendmail.cf
        makemap hash /etc/mail/access < /etc/mail/access
        /usr/libexec/sendmail/sendmail -bi >/dev/null 2>&1 || true
        # As Debian's init script starts it (sendmail-mta -L sm-mta -bd), in the foreground
        # (-bD) and queueing only (-odq).
        exec /usr/libexec/sendmail/sendmail -L sm-mta -bD -odq
        """
    )


@contextlib.contextmanager
def sendmail(netns: Netns | None = None, cache: Path = CACHE) -> Iterator[Server]:
    """Sendmail 8.17 with Debian's sendmail.mc and promiscuous relay."""
    with _running(
        "sendmail",
        (25,),
        _sendmail_conf,
        users={"smmta": (987, 987), "smmsp": (988, 988)},
        groups={"smmta": 987, "smmsp": 988},
        netns=netns,
        cache=cache,
        wait_banner=True,
    ) as server:
        yield server


# --- Squid --------------------------------------------------------------------------------------


def _squid_conf(etc: Path, root: Path) -> str:
    """Debian's squid.conf with ``http_access allow all`` ahead of every other rule (the open
    proxy of a thousand tutorials), also on 8080; logs in /var/log/squid."""
    squid = etc / "squid"
    (squid / "conf.d").mkdir(parents=True)
    conf = (root / "etc/squid/squid.conf").read_text()
    first_rule = "http_access deny !Safe_ports"
    if first_rule not in conf:
        raise RuntimeError("squid.conf has changed: no 'http_access deny !Safe_ports'")
    conf = conf.replace(first_rule, "http_access allow all\n" + first_rule, 1)
    conf += textwrap.dedent(
        f"""
        http_port 8080
        visible_hostname {HOSTNAME}
        pid_filename /run/squid.pid
        # The namespace's name server (dnsmasq, in proxies()).
        dns_nameservers 127.0.0.1
        # ICMP sockets are not permitted here; the pinger only measures network distances.
        pinger_enable off
        """
    )
    (squid / "squid.conf").write_text(conf)
    return textwrap.dedent(
        """
        mkdir -p /var/log/squid /var/spool/squid
        chown proxy:proxy /var/log/squid /var/spool/squid
        exec squid -N -f /etc/squid/squid.conf
        """
    )


@contextlib.contextmanager
def squid(netns: Netns | None = None, cache: Path = CACHE) -> Iterator[Server]:
    """Squid 5.7 as Debian 12 ships it plus ``http_access allow all``, on 3128 and 8080."""
    with _running(
        "squid", SQUID_PORTS, _squid_conf, netns=netns, extra_hosts=RESOLVED_TARGETS, cache=cache
    ) as server:
        yield server


# --- Dante --------------------------------------------------------------------------------------


def _dante_conf(etc: Path, root: Path) -> str:
    """No authentication, and pass rules for every client, destination and command."""
    (etc / "danted.conf").write_text(
        textwrap.dedent(
            """\
            logoutput: /var/log/danted.log
            internal: 127.0.0.1 port = 1080
            external: lo
            clientmethod: none
            socksmethod: none
            user.privileged: root
            user.unprivileged: nobody
            client pass {
                from: 0/0 to: 0/0
            }
            socks pass {
                from: 0/0 to: 0/0
                command: bind connect udpassociate bindreply udpreply
            }
            """
        )
    )
    return "mkdir -p /var/log\nexec danted -f /etc/danted.conf\n"


@contextlib.contextmanager
def dante(netns: Netns | None = None, cache: Path = CACHE) -> Iterator[Server]:
    """Dante 1.4.2 (danted) without authentication, passing everything, on 1080."""
    with _running(
        "dante", (1080,), _dante_conf, netns=netns, extra_hosts=RESOLVED_TARGETS, cache=cache
    ) as server:
        yield server


# --- the proxies' name server -------------------------------------------------------------------


def _dnsmasq_conf(etc: Path, root: Path) -> str:
    """Answers the resolved probe targets from /etc/hosts and NXDOMAIN for every other name,
    as the Internet's DNS does for a name that does not exist: Squid 5.7 then gives
    ERR_READ_ERROR (its FwdState drops the ERR_DNS_FAIL it built) and Dante "host
    unreachable", not the errors of a resolver that refuses."""
    return textwrap.dedent(
        """
        exec dnsmasq --keep-in-foreground --no-resolv --no-poll --listen-address=127.0.0.1 \\
            --bind-interfaces --address=/#/ --user=nobody --pid-file=/run/dnsmasq.pid \\
            --log-facility=/var/log/dnsmasq.log
        """
    )


@contextlib.contextmanager
def dnsmasq(netns: Netns, cache: Path = CACHE) -> Iterator[Server]:
    with _running(
        "dnsmasq", (53,), _dnsmasq_conf, netns=netns, extra_hosts=RESOLVED_TARGETS, cache=cache
    ) as server:
        yield server


@contextlib.contextmanager
def proxies(cache: Path = CACHE) -> Iterator[tuple[Server, Server, Server]]:
    """Squid and Dante in one namespace where every address is local and a real Postfix
    listens on port 25 as the upstream MX: a tunnel to "mx.example.org:25" reaches it, and
    any other address or port is refused, as a dead upstream would. A name server there knows
    the mail targets and no other name (RESOLVED_TARGETS)."""
    with (
        Netns("proxies", local_everything=True) as ns,
        dnsmasq(ns, cache),
        postfix(ns, cache) as mx,
        squid(ns, cache) as sq,
        dante(ns, cache) as dn,
    ):
        yield sq, dn, mx


# --- our sensor, the same way ---------------------------------------------------------------------

SENSOR_PORTS = {"smtp": (25,), "http": SQUID_PORTS, "socks": (1080,)}


@contextlib.contextmanager
def sensor(
    dialect: str = "postfix",
    ports: dict[str, tuple[int, ...]] | None = None,
    extra: str = "",
    netns: Netns | None = None,
) -> Iterator[Server]:
    """Our sensor (this checkout, ``python -m spampot``) in a namespace of its own, with the
    SMTP dialect ``dialect`` and the ports ``ports`` (default: 25, HTTP 3128 and 8080, SOCKS
    1080, as the real servers); ``extra`` is more TOML appended to its configuration."""
    ports = ports or SENSOR_PORTS
    own_netns = netns is None
    ns = netns if netns is not None else Netns(f"sensor-{dialect}")
    instance = Path(tempfile.mkdtemp(prefix="spampot-diff-sensor-"))
    proc: subprocess.Popen | None = None
    try:
        config = instance / "sensor.toml"

        def toml_list(values: tuple[int, ...]) -> str:
            return "[" + ", ".join(str(v) for v in values) + "]"

        config.write_text(
            f"""
[sensor]
name = "differential"
hostname = "{HOSTNAME}"
data_dir = "{instance / "data"}"
bind = ["127.0.0.1"]
user = ""
allow_root = true

[smtp]
dialect = "{dialect}"
tunnel_dialects = ["{UPSTREAM_DIALECT}"]

[ports]
smtp = {toml_list(ports.get("smtp", ()))}
http = {toml_list(ports.get("http", ()))}
socks = {toml_list(ports.get("socks", ()))}
{extra}
"""
        )
        log = instance / "sensor.stderr"
        with open(log, "ab") as out:
            proc = subprocess.Popen(
                [*ns.prefix, sys.executable, "-m", "spampot", "sensor", "--config", str(config)],
                stdout=out,
                stderr=out,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
            )
        all_ports = tuple(p for group in ports.values() for p in group)
        server = Server(f"sensor-{dialect}", ns, all_ports, logs=[log])
        server.proc = proc
        try:
            for port in dict.fromkeys(all_ports):
                ns.wait_port(port, timeout=60, alive=proc)
        except Exception as exc:
            raise RuntimeError(f"the sensor did not start: {exc}\n{server.log_text()}") from exc
        yield server
    finally:
        if proc is not None:
            _kill_group(proc)
        if own_netns:
            ns.close()
        shutil.rmtree(instance, ignore_errors=True)


if __name__ == "__main__":
    if sys.argv[1:] == ["prepare"]:
        print(prepare())
    else:
        sys.exit(f"usage: {sys.argv[0]} prepare")
