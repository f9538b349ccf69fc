"""Real peers: the real tools a chapter's model is checked against, when the machine has them.

The x509 chapter's "twin" is OpenSSL itself: :func:`openssl_agreement` writes the model's certificates
to a folder, asks `openssl verify` about them, and lets `openssl s_client` talk mutual TLS to the
model's server on 127.0.0.1. It reports, line by line, whether OpenSSL agrees with the model.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

from labsupport import tls, x509

TIMEOUT = 20


def _openssl(*args: str, cwd: Path, data: bytes | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(["openssl", *args], cwd=cwd, input=data, capture_output=True, timeout=TIMEOUT, check=False)


def _write(folder: Path, name: str, data: bytes, private: bool = False) -> None:
    path = folder / name
    path.write_bytes(data)
    if private:
        path.chmod(0o600)


def openssl_agreement(pki: x509.Pki, folder: Path) -> str:
    """Check the model against the real `openssl`, in `folder` (keys written there with mode 0600):

    - `openssl verify -CAfile root.pem -untrusted intermediate.pem server.pem` (and the client, and the
      server checked for the wrong host) against :func:`labsupport.x509.verify`;
    - `openssl s_client -cert client.pem -key client.key [-cert_chain intermediate.pem]` against the model's mutual-TLS server, with and
      without the client certificate.

    Without `openssl` on the machine, says what it would do and why it did not.
    """
    if shutil.which("openssl") is None:
        return ("Real openssl: skipped — `openssl` is not installed here. It would check the lab's chain with "
                "`openssl verify` and talk mutual TLS to the lab's server with `openssl s_client`.")
    folder = Path(folder)
    _write(folder, "root.pem", pki.root.cert_pem())
    intermediates = [pki.intermediate.cert] if pki.intermediate is not None else []
    _write(folder, "intermediate.pem", b"".join(x509.to_pem(c) for c in intermediates))
    for name in ("server", "client"):
        identity = getattr(pki, name)
        _write(folder, f"{name}.pem", identity.cert_pem())
        _write(folder, f"{name}.key", identity.key_pem(), private=True)
    version = _openssl("version", cwd=folder).stdout.decode().strip()
    lines = [f"Real openssl ({version}) against the model:"]
    for name, hostname, purpose in (("server", None, "sslserver"), ("client", None, "sslclient"),
                                    ("server", "wrong.example", "sslserver")):
        identity = getattr(pki, name)
        args = ["verify", "-attime", str(int(x509.LAB_NOW.timestamp())), "-CAfile", "root.pem", "-purpose", purpose]
        args += ["-untrusted", "intermediate.pem"] if intermediates else []
        args += ["-verify_hostname", hostname] if hostname else []
        real = _openssl(*args, f"{name}.pem", cwd=folder)
        real_lines = (real.stdout + real.stderr).decode().strip().splitlines()
        model = x509.verify(identity.cert, [pki.root.cert], identity.chain, hostname=hostname, purpose=purpose,
                            at=x509.LAB_NOW).lines()
        model = [line.replace("cert.pem", f"{name}.pem") for line in model]
        verdict = "agrees" if real_lines == model else f"DIFFERS: openssl says {real_lines}, the model {model}"
        lines.append(f"  openssl verify {name}.pem{' for ' + hostname if hostname else ''}: {real_lines[-1]} — {verdict}")
    for with_cert in (True, False):
        with tls.TLSServer(pki.server, client_ca=[pki.root]) as server:
            args = ["s_client", "-connect", f"127.0.0.1:{server.port}", "-CAfile", "root.pem",
                    "-verify_return_error", "-verify_hostname", "localhost", "-ign_eof"]
            args += ["-cert", "client.pem", "-key", "client.key"] if with_cert else []
            args += ["-cert_chain", "intermediate.pem"] if with_cert and intermediates else []
            real = _openssl(*args, cwd=folder, data=b"ping\n")
            served = server.wait()
        side = served[0] if served else None
        accepted = real.returncode == 0 and side is not None and side.ok
        expected = with_cert
        label = "with the client certificate" if with_cert else "without a client certificate"
        outcome = f"the model's server {'accepted' if accepted else 'refused'} it"
        if side is not None and side.error:
            outcome += f" ({tls.normalise_error(side.error)})"
        lines.append(f"  openssl s_client {label}: {outcome} — {'as expected' if accepted == expected else 'UNEXPECTED'}")
    return "\n".join(lines)
