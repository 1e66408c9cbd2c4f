"""Mutual TLS client authentication (RFC 8705 §2.1, tls_client_auth) against the real provider
serving https and verifying client certificates against a CA made here with trustme."""

from __future__ import annotations

import pytest
import trustme
from cryptography import x509

from keyturn import ClientCredentials, ConfigError, InvalidClient, MemoryStore
from tests.support.providerfixture import make_client, start_provider


@pytest.fixture(scope="module")
def pki(tmp_path_factory):
    work = tmp_path_factory.mktemp("pki")
    server_ca, client_ca, stranger_ca = trustme.CA(), trustme.CA(), trustme.CA()
    server = server_ca.issue_cert("127.0.0.1")
    paths = {"dir": work}
    server.private_key_pem.write_to_path(work / "server.key")
    server.cert_chain_pems[0].write_to_path(work / "server.crt")
    server_ca.cert_pem.write_to_path(work / "server-ca.pem")
    client_ca.cert_pem.write_to_path(work / "client-ca.pem")
    for name, ca in (("client", client_ca), ("stranger", stranger_ca)):
        # trustme names the subject by its SAN; set the CN that the client registered.
        cert = ca.issue_cert("batch-mtls.example", common_name="batch-mtls")
        cert.private_key_pem.write_to_path(work / f"{name}.key")
        cert.cert_chain_pems[0].write_to_path(work / f"{name}.crt")
        paths[name] = (str(work / f"{name}.crt"), str(work / f"{name}.key"))
        paths[f"{name}_dn"] = x509.load_pem_x509_certificate(
            cert.cert_chain_pems[0].bytes()).subject.rfc4514_string()
    paths["ca"] = str(work / "server-ca.pem")
    return paths


@pytest.fixture(scope="module")
def mtls_provider(pki, tmp_path_factory):
    work = pki["dir"]
    client = make_client("batch-mtls", "tls_client_auth", grant_types=["client_credentials"],
                         tls_client_auth_subject_dn=pki["client_dn"])
    client.pop("client_secret", None)
    provider = start_provider([client], tmp_path_factory.mktemp("mtls-provider"), tls={
        "cert": str(work / "server.crt"), "key": str(work / "server.key"),
        "client_ca": str(work / "client-ca.pem"), "ca": pki["ca"]})
    yield provider
    provider.stop()


def source(provider, pki, cert):
    return ClientCredentials(issuer=provider.issuer, client_id="batch-mtls",
                             auth_method="tls_client_auth", cert=cert, verify=pki["ca"],
                             store=MemoryStore())


def test_client_certificate_authenticates(mtls_provider, pki, mode):
    assert mtls_provider.issuer.startswith("https://")
    mtls_provider.reset_stats()  # the provider is the module's: count this run's requests only
    mtls = source(mtls_provider, pki, pki["client"])
    assert mode.access_token(mtls)
    assert mode.access_token(mtls) == mode.access_token(mtls)
    assert mtls_provider.token_requests("batch-mtls") == 1


def test_certificate_from_another_ca_is_invalid_client(mtls_provider, pki, mode):
    with pytest.raises(InvalidClient):
        mode.access_token(source(mtls_provider, pki, pki["stranger"]))


def test_tls_client_auth_needs_a_certificate(mtls_provider, pki):
    with pytest.raises(ConfigError, match="cert="):
        ClientCredentials(issuer=mtls_provider.issuer, client_id="batch-mtls",
                          auth_method="tls_client_auth", verify=pki["ca"])


def test_an_unknown_server_ca_is_refused(mtls_provider, pki, mode):
    from keyturn import TransportError

    stranger = ClientCredentials(issuer=mtls_provider.issuer, client_id="batch-mtls",
                                 auth_method="tls_client_auth", cert=pki["client"],
                                 store=MemoryStore())  # default CAs: the test CA is unknown
    with pytest.raises(TransportError, match=r"TLS|connect"):
        mode.access_token(stranger)
