"""STARTTLS for the SMTP emulator: a snakeoil certificate made at first start, and a TLS
layer over memory buffers that the session glue puts between the socket and the machine.

The certificate is what a fresh Debian install has (``make-ssl-cert generate-default-snakeoil``
in ssl-cert: RSA 2048, SHA-256, ten years, self-signed, CN = the host name, the same name as a
DNS subjectAltName), generated once in the data dir before privileges are dropped, never
shipped. The layer is an :class:`ssl.SSLObject` on two :class:`ssl.MemoryBIO`: it works the
same on a direct connection and inside a proxy tunnel (the tunnel is just bytes on the same
TCP connection), and the glue keeps counting raw bytes and controlling reads as before.
"""

from __future__ import annotations

import datetime
import os
import ssl
from pathlib import Path

from spampot.layout import SensorLayout
from spampot.protocols.smtp import TlsInfo

#: Handshake bytes a client may send before it is cut off (a ClientHello with every
#: extension is a few KiB; OpenSSL's own limit on a handshake message is far above any real one).
MAX_HANDSHAKE_BYTES = 64 * 1024


def ensure_certificate(data_dir: Path, hostname: str) -> tuple[Path, Path]:
    """The certificate and key files, made now if absent. Returns (cert, key) paths."""
    layout = SensorLayout(data_dir)
    cert_path, key_path = layout.tls_certificate, layout.tls_key
    if cert_path.exists() and key_path.exists():
        return cert_path, key_path
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import rsa
    from cryptography.x509.oid import NameOID

    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, hostname[:64])])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now)
        .not_valid_after(now + datetime.timedelta(days=3650))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName(hostname[:253])]), False)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert_path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    pem_key = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.TraditionalOpenSSL,
        serialization.NoEncryption(),
    )
    _write_new(key_path, pem_key, 0o600)
    _write_new(cert_path, cert.public_bytes(serialization.Encoding.PEM), 0o644)
    return cert_path, key_path


def _write_new(path: Path, data: bytes, mode: int) -> None:
    """Write whole or not at all: a torn key would stop every later start."""
    tmp = path.with_suffix(path.suffix + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    try:
        os.write(fd, data)
        os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(tmp, path)


def server_context(cert: Path, key: Path) -> ssl.SSLContext:
    """A server context as a default OpenSSL build offers it (TLS 1.2 and 1.3)."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.load_cert_chain(cert, key)
    # SNI is recorded, never acted on: the same certificate answers every name.
    context.sni_callback = _remember_sni
    return context


def _remember_sni(sslobj: ssl.SSLObject, name: str | None, _ctx: ssl.SSLContext) -> None:
    layer = getattr(sslobj, "_spampot_layer", None)
    if isinstance(layer, TlsLayer) and name is not None:
        layer.sni = name[:255]


class TlsError(Exception):
    """The client broke the TLS handshake or record layer; the connection ends."""


class TlsLayer:
    """One server-side TLS connection over memory: raw bytes in, plaintext out, and back."""

    __slots__ = ("_in", "_obj", "_out", "_raw_in", "established", "sni")

    def __init__(self, context: ssl.SSLContext) -> None:
        self._in = ssl.MemoryBIO()
        self._out = ssl.MemoryBIO()
        self._obj = context.wrap_bio(self._in, self._out, server_side=True)
        # The SNI callback gets the SSLObject only; it finds this layer through it.
        self._obj._spampot_layer = self  # type: ignore[attr-defined]
        self.sni: str | None = None
        self.established = False
        self._raw_in = 0

    def receive(self, raw: bytes) -> bytes:
        """Feed bytes from the socket; returns the plaintext they complete (maybe b"")."""
        self._in.write(raw)
        if not self.established:
            self._raw_in += len(raw)
            if self._raw_in > MAX_HANDSHAKE_BYTES:
                raise TlsError("handshake too long")
            try:
                self._obj.do_handshake()
            except ssl.SSLWantReadError:
                return b""
            except (ssl.SSLError, ValueError) as exc:
                raise TlsError(_reason(exc)) from None
            self.established = True
        chunks = []
        while True:
            try:
                chunk = self._obj.read(65536)
            except ssl.SSLWantReadError:
                break
            except ssl.SSLZeroReturnError:
                break  # close_notify: the socket's EOF follows
            except ssl.SSLError as exc:
                raise TlsError(_reason(exc)) from None
            if not chunk:
                break
            chunks.append(chunk)
        return b"".join(chunks)

    def send(self, plaintext: bytes) -> None:
        """Encrypt ``plaintext`` (only once established); collect with :meth:`outgoing`."""
        if plaintext:
            self._obj.write(plaintext)

    def outgoing(self) -> bytes:
        """Bytes for the socket: handshake messages and records."""
        return self._out.read()

    def info(self) -> TlsInfo:
        cipher = self._obj.cipher()
        return TlsInfo(
            version=self._obj.version() or "",
            cipher=cipher[0] if cipher else "",
            sni=self.sni,
        )


def _reason(exc: Exception) -> str:
    reason = getattr(exc, "reason", None)
    return str(reason or exc)[:200]
