//! TLS and mutual TLS on loopback, with a CA, a server and a client certificate made
//! here by rcgen (docs/security.md shows the same with openssl).

use super::{clients, config, security, token, RUNFILE};
use expcluster_proto::v1;
use expcluster_tests::{expcluster, start_coordinator, submit_to, token_file, TestWorkspace};
use expcluster_worker::client::{ClientSecurity, ClientTlsFiles};
use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, DnType, IsCa, KeyPair, KeyUsagePurpose,
    SanType,
};
use std::path::{Path, PathBuf};

pub struct Pki {
    _dir: tempfile::TempDir,
    pub ca: PathBuf,
    pub server_cert: PathBuf,
    pub server_key: PathBuf,
    pub client_cert: PathBuf,
    pub client_key: PathBuf,
    /// A client certificate from another CA: must be refused under mutual TLS.
    pub stranger_cert: PathBuf,
    pub stranger_key: PathBuf,
}

fn ca(name: &str) -> CertifiedIssuer<'static, KeyPair> {
    let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.distinguished_name.push(DnType::CommonName, name);
    params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    CertifiedIssuer::self_signed(params, KeyPair::generate().unwrap()).unwrap()
}

fn leaf(
    issuer: &CertifiedIssuer<'static, KeyPair>,
    name: &str,
    server: bool,
    dir: &Path,
) -> (PathBuf, PathBuf) {
    let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
    params.distinguished_name.push(DnType::CommonName, name);
    if server {
        params.subject_alt_names = vec![
            SanType::DnsName("localhost".try_into().unwrap()),
            SanType::IpAddress(std::net::IpAddr::from([127, 0, 0, 1])),
        ];
    }
    let key = KeyPair::generate().unwrap();
    let cert = params.signed_by(&key, issuer).unwrap();
    let (cert_path, key_path) = (
        dir.join(format!("{name}.pem")),
        dir.join(format!("{name}.key")),
    );
    std::fs::write(&cert_path, cert.pem()).unwrap();
    std::fs::write(&key_path, key.serialize_pem()).unwrap();
    (cert_path, key_path)
}

impl Pki {
    pub fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let authority = ca("expcluster test CA");
        let ca = dir.path().join("ca.pem");
        std::fs::write(&ca, authority.pem()).unwrap();
        let (server_cert, server_key) = leaf(&authority, "coordinator", true, dir.path());
        let (client_cert, client_key) = leaf(&authority, "node1", false, dir.path());
        let (stranger_cert, stranger_key) =
            leaf(&self::ca("another CA"), "stranger", false, dir.path());
        Self {
            _dir: dir,
            ca,
            server_cert,
            server_key,
            client_cert,
            client_key,
            stranger_cert,
            stranger_key,
        }
    }

    fn tls(&self, cert: Option<(&Path, &Path)>) -> ClientTlsFiles {
        ClientTlsFiles {
            ca: self.ca.clone(),
            cert: cert.map(|(c, _)| c.to_owned()),
            key: cert.map(|(_, k)| k.to_owned()),
            domain: None,
        }
    }
}

fn s(path: &Path) -> &str {
    path.to_str().unwrap()
}

impl Pki {
    /// The coordinator's flags to serve TLS with the server certificate.
    fn server_args(&self) -> [&str; 4] {
        [
            "--tls-cert",
            s(&self.server_cert),
            "--tls-key",
            s(&self.server_key),
        ]
    }

    /// A worker's or the CLI's flags to connect with the cluster's client certificate.
    fn client_args(&self) -> [&str; 6] {
        [
            "--tls-ca",
            s(&self.ca),
            "--tls-cert",
            s(&self.client_cert),
            "--tls-key",
            s(&self.client_key),
        ]
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stage_runs_over_tls_and_plaintext_callers_get_nothing() {
    let pki = Pki::new();
    let ws = TestWorkspace::new("tls", &config("tls"), &[("runfile.py", RUNFILE)]);
    let (_coordinator, address) = start_coordinator(&ws.root, &pki.server_args());
    let client_token = token(&ws.root, "client");

    // Plain gRPC to a TLS port: no answer, not even from Health.
    let (_, mut plain) = clients(&address, &security(Some(&client_token)));
    assert!(plain.health(v1::HealthRequest {}).await.is_err());

    // A worker and the CLI over TLS run a whole stage.
    let scratch = tempfile::tempdir().unwrap();
    let worker = std::process::Command::new(expcluster_tests::expcluster_bin())
        .args([
            "worker",
            "--coordinator",
            &address,
            "--slots",
            "1",
            "--tls-ca",
            s(&pki.ca),
            "--work-dir",
            s(scratch.path()),
        ])
        .arg("--token-file")
        .arg(token_file(&ws.root, "worker"))
        .env("PATH", expcluster_tests::path_with_venv())
        .spawn()
        .unwrap();
    let _worker = expcluster_tests::Proc { child: worker };
    submit_to(&address, "implementation", &["--tls-ca", s(&pki.ca)]);
    assert_eq!(ws.events_of("job_completed").len(), 1);
    assert_eq!(ws.events_of("job_completed")[0]["status"], "succeeded");

    // TLS does not replace the token.
    let tls = ClientSecurity::none().with_tls(&pki.tls(None)).unwrap();
    let (_, mut anonymous) = clients(&address, &tls);
    anonymous.health(v1::HealthRequest {}).await.unwrap();
    let err = anonymous
        .list_workers(v1::ListWorkersRequest {})
        .await
        .unwrap_err();
    assert_eq!(err.code(), tonic::Code::Unauthenticated);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mutual_tls_refuses_a_client_without_a_certificate_of_its_ca() {
    let pki = Pki::new();
    let ws = TestWorkspace::new("mtls", &config("mtls"), &[("runfile.py", RUNFILE)]);
    let (_coordinator, address) = start_coordinator(
        &ws.root,
        &[
            pki.server_args().as_slice(),
            &["--tls-client-ca", s(&pki.ca)],
        ]
        .concat(),
    );
    let client_token = token(&ws.root, "client");
    let with = |cert: Option<(&Path, &Path)>| {
        ClientSecurity::none()
            .with_token(&client_token)
            .unwrap()
            .with_tls(&pki.tls(cert))
            .unwrap()
    };
    // No certificate, or one of another CA: the handshake fails, so not even Health answers.
    for (what, security) in [
        ("no certificate", with(None)),
        (
            "a stranger's certificate",
            with(Some((&pki.stranger_cert, &pki.stranger_key))),
        ),
    ] {
        let (_, mut client) = clients(&address, &security);
        let err = client.health(v1::HealthRequest {}).await.expect_err(what);
        // A transport failure, never an answer from the service: with TLS 1.3 the client
        // may finish its side before the server's alert arrives, so the call ends as
        // Unavailable, Unknown (carrying the alert) or Cancelled (connection closed).
        assert!(
            matches!(
                err.code(),
                tonic::Code::Unavailable | tonic::Code::Unknown | tonic::Code::Cancelled
            ),
            "{what}: {err:?}"
        );
        assert!(
            client
                .list_workers(v1::ListWorkersRequest {})
                .await
                .is_err(),
            "{what}"
        );
    }
    // The CLI with no certificate fails too.
    let output = expcluster(&["workers", "--coordinator", &address, "--tls-ca", s(&pki.ca)]);
    assert!(!output.status.success());

    // With the cluster's certificate: a worker registers, the CLI sees it.
    let (_, mut client) = clients(&address, &with(Some((&pki.client_cert, &pki.client_key))));
    client.health(v1::HealthRequest {}).await.unwrap();
    let scratch = tempfile::tempdir().unwrap();
    let worker = std::process::Command::new(expcluster_tests::expcluster_bin())
        .args([
            "worker",
            "--coordinator",
            &address,
            "--slots",
            "1",
            "--work-dir",
            s(scratch.path()),
        ])
        .args(pki.client_args())
        .env("EXPCLUSTER_TOKEN_FILE", token_file(&ws.root, "worker"))
        .env("PATH", expcluster_tests::path_with_venv())
        .spawn()
        .unwrap();
    let _worker = expcluster_tests::Proc { child: worker };
    submit_to(&address, "implementation", &pki.client_args());
    assert_eq!(ws.events_of("job_completed")[0]["status"], "succeeded");
}
