"""Per-job TLS material: a throwaway CA, one certificate for the cluster (scheduler and
workers) and one for clients, all in `<state dir>/tls/`, owner-only.

The CA's private key is never written anywhere: once `up` has issued the two certificates,
nobody (the owner included) can mint another one that this cluster would accept. Dask checks
the chain, not host names, so one cluster certificate serves every node.
"""

from __future__ import annotations

import datetime
from dataclasses import dataclass
from pathlib import Path

from .state import StateDir

TLS_DIR = "tls"
VALID_DAYS = 30


@dataclass(frozen=True)
class TLSFiles:
    ca: Path
    cert: Path
    key: Path
    client_cert: Path
    client_key: Path

    @classmethod
    def in_state_dir(cls, state: StateDir) -> TLSFiles:
        base = state.path / TLS_DIR
        return cls(ca=base / "ca.pem", cert=base / "cluster.pem", key=base / "cluster-key.pem",
                   client_cert=base / "client.pem", client_key=base / "client-key.pem")

    def exists(self) -> bool:
        return all(p.exists() for p in (self.ca, self.cert, self.key, self.client_cert,
                                        self.client_key))

    def server_env(self, role: str) -> dict[str, str]:
        """Dask config for the scheduler (role "scheduler") or workers and nannies ("worker").

        Given as config rather than --tls-* flags because `dask scheduler --tls-cert ...`
        also sets its host to "tls://", which it then refuses together with --interface."""
        return {
            "DASK_DISTRIBUTED__COMM__TLS__CA_FILE": str(self.ca),
            f"DASK_DISTRIBUTED__COMM__TLS__{role.upper()}__CERT": str(self.cert),
            f"DASK_DISTRIBUTED__COMM__TLS__{role.upper()}__KEY": str(self.key),
            "DASK_DISTRIBUTED__COMM__REQUIRE_ENCRYPTION": "True",
        }

    def client_env(self) -> dict[str, str]:
        """What `Client(scheduler_file=...)` needs, as Dask config environment variables."""
        return {
            "DASK_DISTRIBUTED__COMM__TLS__CA_FILE": str(self.ca),
            "DASK_DISTRIBUTED__COMM__TLS__CLIENT__CERT": str(self.client_cert),
            "DASK_DISTRIBUTED__COMM__TLS__CLIENT__KEY": str(self.client_key),
            "DASK_DISTRIBUTED__COMM__REQUIRE_ENCRYPTION": "True",
        }


def create(state: StateDir, common_name: str) -> TLSFiles:
    """Issue fresh material for one cluster; returns the paths (every file 0600)."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    files = TLSFiles.in_state_dir(state)
    now = datetime.datetime.now(datetime.timezone.utc)
    start, end = now - datetime.timedelta(minutes=5), now + datetime.timedelta(days=VALID_DAYS)

    def name(text: str) -> x509.Name:
        return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, text)])

    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = name(f"dasklaunch CA {common_name}")
    ca_cert = (x509.CertificateBuilder().subject_name(ca_name).issuer_name(ca_name)
               .public_key(ca_key.public_key()).serial_number(x509.random_serial_number())
               .not_valid_before(start).not_valid_after(end)
               .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
               .sign(ca_key, hashes.SHA256()))

    def issue(subject: str, usages: list) -> tuple[bytes, bytes]:
        key = ec.generate_private_key(ec.SECP256R1())
        cert = (x509.CertificateBuilder().subject_name(name(subject)).issuer_name(ca_name)
                .public_key(key.public_key()).serial_number(x509.random_serial_number())
                .not_valid_before(start).not_valid_after(end)
                .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
                .add_extension(x509.ExtendedKeyUsage(usages), critical=False)
                .sign(ca_key, hashes.SHA256()))
        key_pem = key.private_bytes(serialization.Encoding.PEM,
                                    serialization.PrivateFormat.PKCS8,
                                    serialization.NoEncryption())
        return cert.public_bytes(serialization.Encoding.PEM), key_pem

    both = [ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH]
    cluster_cert, cluster_key = issue(f"dasklaunch cluster {common_name}", both)
    client_cert, client_key = issue(f"dasklaunch client {common_name}",
                                    [ExtendedKeyUsageOID.CLIENT_AUTH])
    state.make_subdir(TLS_DIR)
    for path, data in ((files.ca, ca_cert.public_bytes(serialization.Encoding.PEM)),
                       (files.cert, cluster_cert), (files.key, cluster_key),
                       (files.client_cert, client_cert), (files.client_key, client_key)):
        state.write_text(f"{TLS_DIR}/{path.name}", data.decode())
    return files
