"""A self-signed certificate for TLS tests, made by the openssl command (skipped where there is none)."""

from __future__ import annotations

import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

import pytest


@dataclass(frozen=True)
class Certificate:
    cert: Path  # PEM: the certificate (its own CA: trust it with --ca-cert)
    key: Path  # PEM: its private key


def make_certificate(folder: Path) -> Certificate:
    """A certificate for 127.0.0.1, ::1 and localhost, valid two days, in ``folder``."""
    if shutil.which("openssl") is None:
        pytest.skip("the openssl command is not installed")
    cert, key = folder / "cert.pem", folder / "key.pem"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
         "-keyout", str(key), "-out", str(cert), "-days", "2", "-subj", "/CN=perfbench-test",
         "-addext", "subjectAltName=IP:127.0.0.1,IP:::1,DNS:localhost"],
        check=True, capture_output=True, timeout=60,
    )
    return Certificate(cert, key)
