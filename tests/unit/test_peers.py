"""The x509 lab's real-peer check: the real openssl agrees with the model, or it says why it did not run."""

from __future__ import annotations

from labsupport import peers, x509


def test_openssl_agrees_with_the_model(requires_openssl, tmp_path) -> None:
    report = peers.openssl_agreement(x509.build_pki(intermediate=True), tmp_path)
    lines = report.splitlines()
    assert lines[0].startswith("Real openssl (OpenSSL ") and lines[0].endswith("against the model:")
    checks = lines[1:]
    assert len(checks) == 5
    assert [c.rsplit(" — ", 1)[1] for c in checks] == ["agrees"] * 3 + ["as expected"] * 2, report
    assert "server.pem for wrong.example: error server.pem: verification failed" in checks[2]
    assert "peer did not return a certificate" in checks[4]
    assert (tmp_path / "client.key").stat().st_mode & 0o777 == 0o600


def test_without_openssl_it_says_what_it_would_do(monkeypatch, tmp_path) -> None:
    monkeypatch.setattr(peers.shutil, "which", lambda name: None)
    report = peers.openssl_agreement(x509.build_pki(), tmp_path)
    assert report.startswith("Real openssl: skipped — `openssl` is not installed here.")
    assert "openssl verify" in report and "openssl s_client" in report
    assert list(tmp_path.iterdir()) == []
