"""TLS for the tests: throwaway certificate authorities, and Temporal's dev server (which has no
TLS of its own) behind a proxy that terminates TLS and requires a client certificate, as a
frontend configured for mutual TLS does."""

from __future__ import annotations

import asyncio
import ipaddress
import ssl
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import TracebackType

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
from hpack import Decoder


@dataclass(frozen=True)
class Issued:
    """A certificate and its private key, as PEM files."""

    cert: Path
    key: Path


def _name(common_name: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])


def _key_usage(*, signs_certificates: bool) -> x509.KeyUsage:
    return x509.KeyUsage(
        digital_signature=not signs_certificates,
        content_commitment=False,
        key_encipherment=False,
        data_encipherment=False,
        key_agreement=False,
        key_cert_sign=signs_certificates,
        crl_sign=signs_certificates,
        encipher_only=False,
        decipher_only=False,
    )


class CertificateAuthority:
    """A CA of the test's own, writing what it issues under ``directory``."""

    def __init__(self, name: str, directory: Path) -> None:
        self.name = name
        self.directory = directory
        self._key = ec.generate_private_key(ec.SECP256R1())
        subject = _name(f"{name} test CA")
        self._cert = (
            self._builder(subject, self._key.public_key())
            .issuer_name(subject)
            .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
            .add_extension(_key_usage(signs_certificates=True), critical=True)
            .sign(self._key, hashes.SHA256())
        )
        self.cert = directory / f"{name}-ca.pem"
        self.cert.write_bytes(self._cert.public_bytes(serialization.Encoding.PEM))

    @staticmethod
    def _builder(subject: x509.Name, key: ec.EllipticCurvePublicKey) -> x509.CertificateBuilder:
        now = datetime.now(UTC)
        return (
            x509.CertificateBuilder()
            .subject_name(subject)
            .public_key(key)
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - timedelta(minutes=5))
            .not_valid_after(now + timedelta(days=1))
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(key), critical=False)
        )

    def issue(self, name: str, *, server: bool) -> Issued:
        """A leaf certificate: a server's, for ``localhost`` and ``127.0.0.1``, or a client's."""
        key = ec.generate_private_key(ec.SECP256R1())
        usage = ExtendedKeyUsageOID.SERVER_AUTH if server else ExtendedKeyUsageOID.CLIENT_AUTH
        names: list[x509.GeneralName] = [x509.DNSName(name)]
        if server:
            names = [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
        cert = (
            self._builder(_name(name), key.public_key())
            .issuer_name(self._cert.subject)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(_key_usage(signs_certificates=False), critical=True)
            .add_extension(x509.ExtendedKeyUsage([usage]), critical=False)
            .add_extension(x509.SubjectAlternativeName(names), critical=False)
            .add_extension(
                x509.AuthorityKeyIdentifier.from_issuer_public_key(self._key.public_key()),
                critical=False,
            )
            .sign(self._key, hashes.SHA256())
        )
        issued = Issued(self.directory / f"{name}.pem", self.directory / f"{name}-key.pem")
        issued.cert.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
        issued.key.touch(mode=0o600)
        issued.key.write_bytes(
            key.private_bytes(
                serialization.Encoding.PEM,
                serialization.PrivateFormat.PKCS8,
                serialization.NoEncryption(),
            )
        )
        return issued


def mtls_server_context(server: Issued, client_ca: Path) -> ssl.SSLContext:
    """What a frontend configured for mutual TLS checks: a client certificate is required and
    must chain to ``client_ca``; gRPC runs over HTTP/2 (ALPN ``h2``)."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(server.cert, server.key)
    context.verify_mode = ssl.CERT_REQUIRED
    context.load_verify_locations(client_ca)
    context.set_alpn_protocols(["h2"])
    return context


class TLSProxy:
    """Terminates TLS on a free port of 127.0.0.1 and forwards the bytes to ``upstream_port``.

    ``refused`` collects why handshakes failed (the OpenSSL reason, such as
    ``PEER_DID_NOT_RETURN_A_CERTIFICATE``): proof that the proxy, not something else, said no.
    ``requests`` collects the HTTP/2 request headers that clients sent, decrypted."""

    def __init__(self, context: ssl.SSLContext, upstream_port: int) -> None:
        self.context = context
        self.upstream_port = upstream_port
        self.refused: list[str] = []
        self.requests: list[dict[str, str]] = []
        self._writers: set[asyncio.StreamWriter] = set()
        self._server: asyncio.Server | None = None

    @property
    def address(self) -> str:
        assert self._server is not None
        return f"127.0.0.1:{self._server.sockets[0].getsockname()[1]}"

    async def __aenter__(self) -> TLSProxy:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        return self

    async def __aexit__(
        self, kind: type[BaseException] | None, err: BaseException | None, tb: TracebackType | None
    ) -> None:
        assert self._server is not None
        self._server.close()
        for writer in self._writers:
            writer.close()

    async def _serve(self, client_r: asyncio.StreamReader, client_w: asyncio.StreamWriter) -> None:
        self._writers.add(client_w)
        try:
            # The handshake here rather than in start_server, so that its failure is seen.
            await client_w.start_tls(self.context)
        except (ssl.SSLError, ConnectionError) as err:
            self.refused.append(getattr(err, "reason", None) or repr(err))
            client_w.close()
            return
        upstream_r, upstream_w = await asyncio.open_connection("127.0.0.1", self.upstream_port)
        self._writers.add(upstream_w)
        headers = _RequestHeaders(self.requests)
        await asyncio.gather(
            _pipe(client_r, upstream_w, headers.feed), _pipe(upstream_r, client_w, None)
        )


async def _pipe(
    source: asyncio.StreamReader,
    sink: asyncio.StreamWriter,
    watch: Callable[[bytes], None] | None,
) -> None:
    try:
        while data := await source.read(65536):
            if watch is not None:
                watch(data)
            sink.write(data)
            await sink.drain()
    except (ConnectionError, ssl.SSLError):
        pass
    finally:
        sink.close()


class _RequestHeaders:
    """The header blocks of an HTTP/2 client's byte stream (RFC 9113 section 4), decoded."""

    PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"
    HEADERS, CONTINUATION = 0x1, 0x9
    END_HEADERS, PADDED, PRIORITY = 0x4, 0x8, 0x20

    def __init__(self, sink: list[dict[str, str]]) -> None:
        self.sink = sink
        self.buffer = b""
        self.preface = False
        self.block = b""
        self.decoder = Decoder()  # one per connection: HPACK's table spans its requests

    def feed(self, data: bytes) -> None:
        self.buffer += data
        if not self.preface:
            if len(self.buffer) < len(self.PREFACE):
                return
            assert self.buffer.startswith(self.PREFACE), "not an HTTP/2 client"
            self.buffer, self.preface = self.buffer[len(self.PREFACE) :], True
        while len(self.buffer) >= 9:
            length = int.from_bytes(self.buffer[:3], "big")
            kind, flags = self.buffer[3], self.buffer[4]
            if len(self.buffer) < 9 + length:
                return
            payload, self.buffer = self.buffer[9 : 9 + length], self.buffer[9 + length :]
            if kind == self.HEADERS:
                if flags & self.PADDED:
                    payload = payload[1 : len(payload) - payload[0]]
                if flags & self.PRIORITY:
                    payload = payload[5:]
                self.block = payload
            elif kind == self.CONTINUATION:
                self.block += payload
            else:
                continue
            if flags & self.END_HEADERS:
                self.sink.append(dict(self.decoder.decode(self.block)))
                self.block = b""
