//! FTP and FTPS feeds against a real FTP server in the test process (libunftp with a
//! filesystem back end and password authentication).
//!
//! A dropped connection is made by the server itself: a thin storage back end around the
//! filesystem one can fail the first RETR's reader part-way with a connection reset, and
//! libunftp then closes the data connection and answers 426, as a server that loses its
//! data connection mid-transfer does.

use crate::support::helpers::*;
use libunftp::ServerBuilder;
use std::fmt::Debug;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;
use unftp_core::auth::{AuthenticationError, Authenticator, Credentials, Principal, UserDetail};
use unftp_core::storage::{Fileinfo, StorageBackend};
use unftp_sbe_fs::Filesystem;

/// Accepts `acme` with the test environment's feed password; counts logins.
#[derive(Debug)]
struct Passwords {
    logins: Arc<AtomicUsize>,
}

#[async_trait::async_trait]
impl Authenticator for Passwords {
    async fn authenticate(
        &self,
        username: &str,
        creds: &Credentials,
    ) -> Result<Principal, AuthenticationError> {
        self.logins.fetch_add(1, Ordering::SeqCst);
        match (username, creds.password.as_deref()) {
            ("acme", Some("s3cret-feed-password")) => Ok(Principal {
                username: username.into(),
            }),
            ("acme", _) => Err(AuthenticationError::BadPassword),
            _ => Err(AuthenticationError::BadUser),
        }
    }
}

/// The filesystem back end, except that while `cut_first_retr` is set the first file read
/// delivers that many bytes and then fails with a connection reset.
#[derive(Debug)]
struct Flaky {
    fs: Filesystem,
    cut_first_retr: Option<u64>,
    retrs: Arc<AtomicUsize>,
}

/// A reader whose connection is gone.
struct Reset;

impl tokio::io::AsyncRead for Reset {
    fn poll_read(
        self: Pin<&mut Self>,
        _: &mut Context<'_>,
        _: &mut tokio::io::ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        Poll::Ready(Err(std::io::ErrorKind::ConnectionReset.into()))
    }
}

type SbeResult<T> = unftp_core::storage::Result<T>;

#[async_trait::async_trait]
impl<User: UserDetail> StorageBackend<User> for Flaky {
    type Metadata = <Filesystem as StorageBackend<User>>::Metadata;

    fn enter(&mut self, user: &User) -> std::io::Result<()> {
        StorageBackend::<User>::enter(&mut self.fs, user)
    }

    fn supported_features(&self) -> u32 {
        StorageBackend::<User>::supported_features(&self.fs)
    }

    async fn metadata<P: AsRef<Path> + Send + Debug>(
        &self,
        user: &User,
        path: P,
    ) -> SbeResult<Self::Metadata> {
        self.fs.metadata(user, path).await
    }

    async fn list<P: AsRef<Path> + Send + Debug>(
        &self,
        user: &User,
        path: P,
    ) -> SbeResult<Vec<Fileinfo<PathBuf, Self::Metadata>>> {
        self.fs.list(user, path).await
    }

    async fn get<P: AsRef<Path> + Send + Debug>(
        &self,
        user: &User,
        path: P,
        start_pos: u64,
    ) -> SbeResult<Box<dyn tokio::io::AsyncRead + Send + Sync + Unpin>> {
        use tokio::io::AsyncReadExt;
        let reader = self.fs.get(user, path, start_pos).await?;
        let first = self.retrs.fetch_add(1, Ordering::SeqCst) == 0;
        Ok(match self.cut_first_retr {
            Some(cut) if first => Box::new(reader.take(cut).chain(Reset)),
            _ => reader,
        })
    }

    async fn put<
        P: AsRef<Path> + Send + Debug,
        R: tokio::io::AsyncRead + Send + Sync + Unpin + 'static,
    >(
        &self,
        user: &User,
        input: R,
        path: P,
        start_pos: u64,
    ) -> SbeResult<u64> {
        self.fs.put(user, input, path, start_pos).await
    }

    async fn del<P: AsRef<Path> + Send + Debug>(&self, user: &User, path: P) -> SbeResult<()> {
        self.fs.del(user, path).await
    }

    async fn mkd<P: AsRef<Path> + Send + Debug>(&self, user: &User, path: P) -> SbeResult<()> {
        self.fs.mkd(user, path).await
    }

    async fn rename<P: AsRef<Path> + Send + Debug>(
        &self,
        user: &User,
        from: P,
        to: P,
    ) -> SbeResult<()> {
        self.fs.rename(user, from, to).await
    }

    async fn rmd<P: AsRef<Path> + Send + Debug>(&self, user: &User, path: P) -> SbeResult<()> {
        self.fs.rmd(user, path).await
    }

    async fn cwd<P: AsRef<Path> + Send + Debug>(&self, user: &User, path: P) -> SbeResult<()> {
        self.fs.cwd(user, path).await
    }
}

pub struct FtpServer {
    pub port: u16,
    pub root: tempfile::TempDir,
    pub logins: Arc<AtomicUsize>,
    /// File reads (RETR) started.
    pub retrs: Arc<AtomicUsize>,
    /// PEM of the server certificate (FTPS only), to trust as the feed's `ca_file`.
    pub ca_pem: Option<String>,
}

impl FtpServer {
    pub async fn start(tls: bool) -> FtpServer {
        Self::start_with(tls, None).await
    }

    /// A server whose first RETR breaks off after `cut_first_retr` bytes, if given.
    pub async fn start_with(tls: bool, cut_first_retr: Option<u64>) -> FtpServer {
        let root = tempfile::tempdir().unwrap();
        let logins = Arc::new(AtomicUsize::new(0));
        let retrs = Arc::new(AtomicUsize::new(0));
        let home: PathBuf = root.path().to_path_buf();
        let counter = retrs.clone();
        let mut builder = ServerBuilder::with_authenticator(
            Box::new(move || Flaky {
                fs: Filesystem::new(home.clone()).unwrap(),
                cut_first_retr,
                retrs: counter.clone(),
            }),
            Arc::new(Passwords {
                logins: logins.clone(),
            }),
        )
        .greeting("Distributor FTP - authorised partners only")
        .passive_ports(50000..=50999);
        let mut ca_pem = None;
        if tls {
            let cert = rcgen::generate_simple_self_signed(vec!["127.0.0.1".to_string()]).unwrap();
            let cert_file = root.path().join("server.pem");
            let key_file = root.path().join("server.key");
            std::fs::write(&cert_file, cert.cert.pem()).unwrap();
            std::fs::write(&key_file, cert.signing_key.serialize_pem()).unwrap();
            ca_pem = Some(cert.cert.pem());
            builder = builder.ftps(cert_file, key_file);
        }
        let server = builder.build().unwrap();
        let port = free_port();
        tokio::spawn(server.listen(format!("127.0.0.1:{port}")));
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while tokio::net::TcpStream::connect(("127.0.0.1", port))
            .await
            .is_err()
        {
            assert!(
                std::time::Instant::now() < deadline,
                "the FTP server did not start"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        FtpServer {
            port,
            root,
            logins,
            retrs,
            ca_pem,
        }
    }

    pub fn put(&self, name: &str, bytes: &[u8]) {
        std::fs::write(self.root.path().join(name), bytes).unwrap();
    }
}

pub fn zipped(name: &str, data: &[u8]) -> Vec<u8> {
    let mut out = std::io::Cursor::new(Vec::new());
    let mut zip = zip::ZipWriter::new(&mut out);
    zip.start_file(name, zip::write::SimpleFileOptions::default())
        .unwrap();
    zip.write_all(data).unwrap();
    zip.finish().unwrap();
    out.into_inner()
}

const PRICES: &[u8] = b"\"IM-1\";\"0000010,00\";\"5\"\n\"IM-2\";\"0000020,50\";\"0\"\n\"IM-3\";\"0000300,00\";\"12\"\n";

fn ftp_catalog(env: &TestEnv, url: &str, extra: &str) {
    env.write_catalog(
        "acme",
        &format!(
            r#"tenant = "acme"
[[feed]]
name = "prices"
url = "{url}"
schedule = "every 24h"
auth = {{ kind = "basic", username = "acme", password_env = "ACME_FEED_PASSWORD" }}
{extra}
[feed.format]
header = false
delimiter = ";"
decimal = ","
[feed.columns]
sku = 1
price = 2
stock = 3
"#
        ),
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_zipped_feed_downloads_over_ftp_and_an_unchanged_file_is_not_downloaded_again() {
    let server = FtpServer::start(false).await;
    server.put("PRICE.ZIP", &zipped("PRICE.TXT", PRICES));
    let env = TestEnv::sqlite();
    ftp_catalog(
        &env,
        &format!("ftp://127.0.0.1:{}/PRICE.ZIP", server.port),
        "",
    );
    let _daemon = env.spawn();
    let status =
        wait_for_outcome(&env, "prices", Duration::from_secs(20), |o| o == "success").await;
    assert_eq!(status["items"], 3);
    let prices = env.store().await.prices("acme", "prices").await.unwrap();
    assert_eq!(
        (
            prices[1].sku.as_str(),
            prices[1].price.as_str(),
            prices[1].stock
        ),
        ("IM-2", "20.50", Some(0))
    );

    // Same SIZE and MDTM: recorded as unchanged, nothing imported.
    assert!(env.run(&["refetch", "acme/prices"]).status.success());
    wait_for_outcome(&env, "prices", Duration::from_secs(20), |o| {
        o == "unchanged"
    })
    .await;

    let out = env.run(&["test-connection", "acme/prices"]);
    let line = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{line}");
    assert!(
        line.contains("ok: ftp://127.0.0.1")
            && line.contains("logged in")
            && line.contains("bytes"),
        "{line}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_ftp_login_is_tried_once_and_pauses_the_feed() {
    let server = FtpServer::start(false).await;
    server.put("PRICE.ZIP", &zipped("PRICE.TXT", PRICES));
    let env = TestEnv::sqlite();
    ftp_catalog(
        &env,
        &format!("ftp://127.0.0.1:{}/PRICE.ZIP", server.port),
        "",
    );
    let _daemon = env.spawn_with_env(&[("ACME_FEED_PASSWORD", "expired-password")]);
    let status =
        wait_for_outcome(&env, "prices", Duration::from_secs(20), |o| o == "rejected").await;
    assert_eq!(status["paused"], true);
    let issue = &open_issues(&env, "prices", "credentials_rejected")[0];
    let message = issue["message"].as_str().unwrap();
    assert!(
        message.contains("530") && message.contains("login as acme"),
        "{message}"
    );
    assert!(!message.contains("expired-password"));
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(
        server.logins.load(Ordering::SeqCst),
        1,
        "a refused login is never retried"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_missing_ftp_file_is_misconfigured_with_its_path() {
    let server = FtpServer::start(false).await;
    let env = TestEnv::sqlite();
    ftp_catalog(
        &env,
        &format!("ftp://127.0.0.1:{}/out/PRICE.ZIP", server.port),
        "",
    );
    let _daemon = env.spawn();
    wait_for_outcome(&env, "prices", Duration::from_secs(20), |o| {
        o == "misconfigured"
    })
    .await;
    let issue = &open_issues(&env, "prices", "misconfigured")[0];
    let message = issue["message"].as_str().unwrap();
    assert!(
        message.contains("/out/PRICE.ZIP") && message.contains("550"),
        "{message}"
    );

    let out = env.run(&["test-connection", "acme/prices"]);
    let line = String::from_utf8_lossy(&out.stdout);
    assert!(!out.status.success());
    assert!(line.starts_with("acme/prices: file missing: "), "{line}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn explicit_ftps_with_a_self_signed_certificate_trusted_by_ca_file() {
    let server = FtpServer::start(true).await;
    server.put("PRICE.ZIP", &zipped("PRICE.TXT", PRICES));
    let env = TestEnv::sqlite();
    std::fs::write(
        env.dir.path().join("jobs/acme/distributor-ca.pem"),
        server.ca_pem.as_deref().unwrap(),
    )
    .unwrap();
    ftp_catalog(
        &env,
        &format!("ftps://127.0.0.1:{}/PRICE.ZIP", server.port),
        "ca_file = \"distributor-ca.pem\"",
    );
    let _daemon = env.spawn();
    let status =
        wait_for_outcome(&env, "prices", Duration::from_secs(20), |o| o == "success").await;
    assert_eq!(status["items"], 3);

    // Without the CA the certificate is not trusted: a configuration problem, named.
    ftp_catalog(
        &env,
        &format!("ftps://127.0.0.1:{}/PRICE.ZIP", server.port),
        "",
    );
    let out = env.run(&["test-connection", "acme/prices"]);
    let line = String::from_utf8_lossy(&out.stdout);
    assert!(!out.status.success());
    assert!(
        line.contains("certificate") && line.contains("ca_file"),
        "{line}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_ftp_transfer_cut_off_mid_file_is_retried_and_then_succeeds_without_an_issue() {
    // Big enough that the first RETR really stops part-way through the file.
    let rows: String = (0..20_000)
        .map(|i| format!("\"IM-{i}\";\"{:010},{:02}\";\"{}\"\n", i, i % 100, i % 7))
        .collect();
    let zip = zipped("PRICE.TXT", rows.as_bytes());
    let server = FtpServer::start_with(false, Some(zip.len() as u64 / 2)).await;
    server.put("PRICE.ZIP", &zip);
    let env = TestEnv::sqlite();
    ftp_catalog(
        &env,
        &format!("ftp://127.0.0.1:{}/PRICE.ZIP", server.port),
        "",
    );
    let daemon = env.spawn();
    let status =
        wait_for_outcome(&env, "prices", Duration::from_secs(30), |o| o == "success").await;
    assert_eq!(status["items"], 20_000);
    assert_eq!(
        server.retrs.load(Ordering::SeqCst),
        2,
        "one cut-off, one complete"
    );
    assert_eq!(server.logins.load(Ordering::SeqCst), 2);
    let prices = env.store().await.prices("acme", "prices").await.unwrap();
    assert_eq!(prices.len(), 20_000);
    let last = prices.iter().find(|p| p.sku == "IM-19999").unwrap();
    assert_eq!(
        (last.price.as_str(), last.stock),
        ("19999.99", Some(19_999 % 7))
    );

    // The first attempt was a transient failure with a durable retry, not an issue.
    let log = daemon.log();
    let retries: Vec<&str> = log.lines().filter(|l| l.contains("will retry")).collect();
    assert_eq!(retries.len(), 1, "{log}");
    assert!(
        retries[0].contains("PRICE.ZIP")
            && (retries[0].contains("426") || retries[0].contains("broke off")),
        "the cut-off is named: {}",
        retries[0]
    );
    assert!(env.issues(false).is_empty(), "no issue stays open");
}
