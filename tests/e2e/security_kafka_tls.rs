//! Issue 21, hole 3: the broker connection over TLS, from outside. tansu 0.6 (the test broker)
//! serves plaintext only: its `--cert` option takes no effect, and SASL needs a storage engine
//! that keeps users. So the test does what a TLS-terminating proxy in front of a broker does: it
//! terminates TLS itself (rustls, with a certificate from a CA the test makes with the `openssl`
//! command) and forwards to tansu, which advertises the terminator's port in its metadata. Every
//! client of every role then reaches the broker through TLS only, verifying the certificate
//! against `kafka.security.ssl_ca_location`.

use std::path::Path;
use std::process::Command;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::producer::BaseProducer;
use roar::stack::{find_tansu, free_port, Broker, Postgres, TansuFlavor};
use roar_common::config::{KafkaSecurity, Secret};
use roar_common::kafka::client_config;
use roar_common::Config;
use serde_json::Value;
use tokio::net::{TcpListener, TcpStream};
use tokio_rustls::rustls;
use tokio_rustls::rustls::pki_types::pem::PemObject;
use tokio_rustls::rustls::pki_types::{CertificateDer, PrivateKeyDer};

use crate::support::{fixture, Infra, Services};

fn openssl(dir: &Path, args: &[&str]) {
    let out = Command::new("openssl")
        .args(args)
        .current_dir(dir)
        .output()
        .expect("the openssl command (the README's test command installs it)");
    assert!(
        out.status.success(),
        "openssl {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A certificate authority `<name>.pem` / `<name>.key` in `dir`.
fn make_ca(dir: &Path, name: &str) {
    let (key, pem, subject) = (
        format!("{name}.key"),
        format!("{name}.pem"),
        format!("/CN={name}"),
    );
    openssl(
        dir,
        &[
            "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", &key, "-out", &pem,
            "-days", "2", "-subj", &subject,
        ],
    );
}

/// `server.pem` / `server.key` for 127.0.0.1 (librdkafka checks the address against the
/// certificate's names), signed by the CA `ca`.
fn make_server_cert(dir: &Path, ca: &str) {
    std::fs::write(dir.join("san.cnf"), "subjectAltName=IP:127.0.0.1\n").unwrap();
    openssl(
        dir,
        &[
            "req",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-keyout",
            "server.key",
            "-out",
            "server.csr",
            "-subj",
            "/CN=127.0.0.1",
        ],
    );
    let (ca_pem, ca_key) = (format!("{ca}.pem"), format!("{ca}.key"));
    openssl(
        dir,
        &[
            "x509",
            "-req",
            "-in",
            "server.csr",
            "-CA",
            &ca_pem,
            "-CAkey",
            &ca_key,
            "-CAcreateserial",
            "-out",
            "server.pem",
            "-days",
            "2",
            "-extfile",
            "san.cnf",
        ],
    );
}

/// The TLS terminator: accepts TLS on its listener, forwards the plaintext to the broker. It runs
/// on a thread and a runtime of its own: the services under test share the test's runtime, and a
/// proxy waiting behind their work delays the broker's answers until librdkafka's group
/// requests time out (the whole test then took 85 s instead of a few).
struct Terminator {
    port: u16,
    handshakes: Arc<AtomicUsize>,
    refused: Arc<AtomicUsize>,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
}

impl Terminator {
    fn start(pki: &Path, broker_port: u16) -> Terminator {
        let certs: Vec<CertificateDer<'static>> =
            CertificateDer::pem_slice_iter(&std::fs::read(pki.join("server.pem")).unwrap())
                .collect::<Result<_, _>>()
                .unwrap();
        let key =
            PrivateKeyDer::from_pem_slice(&std::fs::read(pki.join("server.key")).unwrap()).unwrap();
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let server = rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_no_client_auth()
            .with_single_cert(certs, key)
            .unwrap();
        let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(server));
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.set_nonblocking(true).unwrap();
        let port = listener.local_addr().unwrap().port();
        let handshakes = Arc::new(AtomicUsize::new(0));
        let refused = Arc::new(AtomicUsize::new(0));
        let (ok, bad) = (handshakes.clone(), refused.clone());
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            runtime.block_on(async move {
                let listener = TcpListener::from_std(listener).unwrap();
                let serve = async {
                    while let Ok((tcp, _)) = listener.accept().await {
                        let (acceptor, ok, bad) = (acceptor.clone(), ok.clone(), bad.clone());
                        tokio::spawn(async move {
                            let Ok(mut tls) = acceptor.accept(tcp).await else {
                                bad.fetch_add(1, Ordering::SeqCst);
                                return;
                            };
                            ok.fetch_add(1, Ordering::SeqCst);
                            if let Ok(mut up) = TcpStream::connect(("127.0.0.1", broker_port)).await
                            {
                                let _ = tokio::io::copy_bidirectional(&mut tls, &mut up).await;
                            }
                        });
                    }
                };
                tokio::select! {
                    _ = serve => {}
                    _ = stopped => {}
                }
            });
        });
        Terminator {
            port,
            handshakes,
            refused,
            stop: Some(stop),
        }
    }

    fn handshakes(&self) -> usize {
        self.handshakes.load(Ordering::SeqCst)
    }

    fn refused(&self) -> usize {
        self.refused.load(Ordering::SeqCst)
    }
}

impl Drop for Terminator {
    /// Ends the terminator's runtime, and with it every connection it forwards.
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }
}

/// tansu on a port of its own, advertising the terminator's; the terminator in front of it.
fn broker_behind_tls(dir: &Path, pki: &Path) -> (Broker, Terminator) {
    let tansu = find_tansu("", TansuFlavor::Memory).expect("tansu (the README's test command)");
    let broker_port = free_port().unwrap();
    let terminator = Terminator::start(pki, broker_port);
    let broker = Broker::start_advertising(
        &tansu,
        broker_port,
        terminator.port,
        "memory://tansu/",
        &dir.join("tansu.log"),
    )
    .unwrap();
    (broker, terminator)
}

fn tls(ca: &Path) -> KafkaSecurity {
    KafkaSecurity {
        protocol: "ssl".into(),
        ssl_ca_location: ca.display().to_string(),
        ..KafkaSecurity::default()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn every_role_reaches_the_broker_over_tls_and_a_song_gets_probed() {
    let dir = tempfile::tempdir().unwrap();
    let pki = dir.path().join("pki");
    std::fs::create_dir(&pki).unwrap();
    make_ca(&pki, "roar-ca");
    make_server_cert(&pki, "roar-ca");
    let (broker, terminator) = broker_behind_tls(dir.path(), &pki);
    let pg = Postgres::start(&dir.path().join("pg"), free_port().unwrap()).unwrap();
    pg.ensure_database("roar").await.unwrap();
    let infra = Infra { pg, broker, dir };

    let mut cfg = infra.config();
    cfg.kafka.brokers = format!("127.0.0.1:{}", terminator.port);
    cfg.kafka.security = tls(&pki.join("roar-ca.pem"));
    cfg.validate().expect("a TLS config is valid");
    let svc = Services::start(cfg).await;
    let alice = svc.token("alice", &[]);
    let r = svc.upload(&alice, "sine.wav", fixture("sine.wav")).await;
    assert_eq!(r.status(), 201);
    let file_id = r.json::<Value>().await.unwrap()["file_id"]
        .as_str()
        .unwrap()
        .to_string();
    // Upload → FileUploaded → the probe → FileProbed → the projector: every hop crossed TLS.
    let v = svc
        .wait_for(&alice, &file_id, |v| v["file"]["status"] == "ready")
        .await;
    assert_eq!(v["file"]["metadata"]["sample_rate"], 22050);
    assert!(
        terminator.handshakes() >= 3,
        "producer, probe and projector each connect: {} TLS handshakes",
        terminator.handshakes()
    );
    assert_eq!(terminator.refused(), 0, "a client failed its TLS handshake");
    svc.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_broker_certificate_another_ca_signed_or_a_plaintext_client_gets_nowhere() {
    let dir = tempfile::tempdir().unwrap();
    make_ca(dir.path(), "roar-ca");
    make_ca(dir.path(), "other-ca");
    make_server_cert(dir.path(), "roar-ca");
    let (_broker, terminator) = broker_behind_tls(dir.path(), dir.path());

    let tls_port = terminator.port;
    let brokers_seen = move |security: KafkaSecurity| {
        tokio::task::spawn_blocking(move || {
            let mut kafka = Config::default().kafka;
            kafka.brokers = format!("127.0.0.1:{tls_port}");
            kafka.security = security;
            let c: BaseConsumer = client_config(&kafka).create().map_err(|e| e.to_string())?;
            c.fetch_metadata(None, Duration::from_secs(5))
                .map(|m| m.brokers().len())
                .map_err(|e| e.to_string())
        })
    };

    let trusted = brokers_seen(tls(&dir.path().join("roar-ca.pem")))
        .await
        .unwrap();
    assert_eq!(trusted, Ok(1), "the broker through TLS with the right CA");
    let before = terminator.refused();
    let other = brokers_seen(tls(&dir.path().join("other-ca.pem")))
        .await
        .unwrap();
    assert!(other.is_err(), "a certificate from another CA: {other:?}");
    let plain = brokers_seen(KafkaSecurity::default()).await.unwrap();
    assert!(plain.is_err(), "plaintext to a TLS listener: {plain:?}");
    assert!(
        terminator.refused() >= before + 2,
        "both bad clients failed the handshake ({} refused)",
        terminator.refused() - before
    );

    // SCRAM needs librdkafka built with SSL: a build without it refuses this configuration
    // when the client is created, before any connection.
    let mut kafka = Config::default().kafka;
    kafka.brokers = format!("127.0.0.1:{}", terminator.port);
    kafka.security = KafkaSecurity {
        protocol: "sasl_ssl".into(),
        sasl_mechanism: "SCRAM-SHA-512".into(),
        sasl_username: "roar".into(),
        sasl_password: Secret::new("a-scram-password"),
        ssl_ca_location: dir.path().join("roar-ca.pem").display().to_string(),
        ..KafkaSecurity::default()
    };
    kafka.security.validate().unwrap();
    let created = client_config(&kafka).create::<BaseProducer>();
    assert!(created.is_ok(), "SCRAM over TLS: {:?}", created.err());
}
