//! SFTP feeds against a real SSH server in the test process (russh's server side with
//! russh-sftp's server side serving a temporary directory), with password and public-key
//! authentication and a host key of its own.

use crate::ftp::zipped;
use crate::support::helpers::*;
use russh::keys::ssh_key::LineEnding;
use russh::keys::{Algorithm, HashAlg, PrivateKey};
use russh::server::{Auth, ChannelOpenHandle, Msg, Server as _, Session, VerifiedPublicKey};
use russh::{Channel, ChannelId};
use russh_sftp::protocol::{
    Attrs, Data, File, FileAttributes, Handle, Name, OpenFlags, Status, StatusCode, Version,
};
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

const PASSWORD: &str = "s3cret-feed-password";

/// What the server counts: logins tried (password or key) and files opened for reading.
#[derive(Default)]
struct Counters {
    logins: AtomicUsize,
    opens: AtomicUsize,
    /// When set, the first file opened fails every read past this offset with
    /// `SSH_FX_CONNECTION_LOST`, as a server whose connection broke mid-transfer.
    cut_first_open: Option<u64>,
}

pub struct SftpServer {
    pub port: u16,
    pub root: tempfile::TempDir,
    counters: Arc<Counters>,
    /// The server's host key.
    host_key: PrivateKey,
    /// The one client key the server accepts for `acme`.
    client_key: PrivateKey,
}

impl SftpServer {
    pub async fn start() -> SftpServer {
        Self::start_with(None).await
    }

    /// A server whose first download breaks off after `cut_first_open` bytes, if given.
    pub async fn start_with(cut_first_open: Option<u64>) -> SftpServer {
        let root = tempfile::tempdir().unwrap();
        let host_key = PrivateKey::random(&mut rand::rng(), Algorithm::Ed25519).unwrap();
        let client_key = PrivateKey::random(&mut rand::rng(), Algorithm::Ed25519).unwrap();
        let counters = Arc::new(Counters {
            cut_first_open,
            ..Default::default()
        });
        let config = Arc::new(russh::server::Config {
            keys: vec![host_key.clone()],
            auth_rejection_time: Duration::from_millis(10),
            auth_rejection_time_initial: Some(Duration::ZERO),
            ..Default::default()
        });
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let mut server = SshServer {
            root: root.path().to_path_buf(),
            counters: counters.clone(),
            authorized: client_key.public_key().clone(),
        };
        tokio::spawn(async move { server.run_on_socket(config, &listener).await });
        SftpServer {
            port,
            root,
            counters,
            host_key,
            client_key,
        }
    }

    pub fn put(&self, name: &str, bytes: &[u8]) {
        let path = self.root.path().join(name);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, bytes).unwrap();
    }

    fn logins(&self) -> usize {
        self.counters.logins.load(Ordering::SeqCst)
    }

    fn opens(&self) -> usize {
        self.counters.opens.load(Ordering::SeqCst)
    }

    /// The host key as a `known_hosts` entry.
    fn host_key_line(&self) -> String {
        self.host_key.public_key().to_openssh().unwrap()
    }

    fn host_key_fingerprint(&self) -> String {
        self.host_key
            .public_key()
            .fingerprint(HashAlg::Sha256)
            .to_string()
    }

    fn url(&self, path: &str) -> String {
        format!("sftp://127.0.0.1:{}{path}", self.port)
    }
}

#[derive(Clone)]
struct SshServer {
    root: PathBuf,
    counters: Arc<Counters>,
    authorized: russh::keys::PublicKey,
}

impl russh::server::Server for SshServer {
    type Handler = SshConnection;

    fn new_client(&mut self, _: Option<std::net::SocketAddr>) -> SshConnection {
        SshConnection {
            server: self.clone(),
            channels: HashMap::new(),
        }
    }
}

struct SshConnection {
    server: SshServer,
    channels: HashMap<ChannelId, Channel<Msg>>,
}

impl russh::server::Handler for SshConnection {
    type Error = anyhow::Error;

    async fn auth_password(&mut self, user: &str, password: &str) -> Result<Auth, Self::Error> {
        self.server.counters.logins.fetch_add(1, Ordering::SeqCst);
        Ok(if user == "acme" && password == PASSWORD {
            Auth::Accept
        } else {
            Auth::reject()
        })
    }

    async fn auth_publickey(
        &mut self,
        user: &str,
        key: VerifiedPublicKey<'_>,
    ) -> Result<Auth, Self::Error> {
        self.server.counters.logins.fetch_add(1, Ordering::SeqCst);
        Ok(
            if user == "acme" && key.public_key.key_data() == self.server.authorized.key_data() {
                Auth::Accept
            } else {
                Auth::reject()
            },
        )
    }

    async fn channel_open_session(
        &mut self,
        channel: Channel<Msg>,
        reply: ChannelOpenHandle,
        _session: &mut Session,
    ) -> Result<(), Self::Error> {
        self.channels.insert(channel.id(), channel);
        reply.accept().await;
        Ok(())
    }

    async fn channel_eof(
        &mut self,
        channel: ChannelId,
        session: &mut Session,
    ) -> Result<(), Self::Error> {
        session.close(channel)?;
        Ok(())
    }

    async fn subsystem_request(
        &mut self,
        channel_id: ChannelId,
        name: &str,
        session: &mut Session,
    ) -> Result<(), Self::Error> {
        match self.channels.remove(&channel_id) {
            Some(channel) if name == "sftp" => {
                session.channel_success(channel_id)?;
                let fs = SftpFs {
                    root: self.server.root.clone(),
                    counters: self.server.counters.clone(),
                    open: HashMap::new(),
                    next: 0,
                    cut: None,
                };
                russh_sftp::server::run(channel.into_stream(), fs).await;
            }
            _ => session.channel_failure(channel_id)?,
        }
        Ok(())
    }
}

/// A read-only SFTP file system over a directory: `/` is the directory.
struct SftpFs {
    root: PathBuf,
    counters: Arc<Counters>,
    open: HashMap<String, std::fs::File>,
    next: u64,
    /// The handle whose reads break off past the cut.
    cut: Option<(String, u64)>,
}

impl SftpFs {
    fn local(&self, path: &str) -> PathBuf {
        let rel = Path::new(path.trim_start_matches('/'));
        if rel
            .components()
            .any(|c| matches!(c, std::path::Component::ParentDir))
        {
            return self.root.join("not-there");
        }
        self.root.join(rel)
    }

    fn attrs(id: u32, meta: std::io::Result<std::fs::Metadata>) -> Result<Attrs, StatusCode> {
        match meta {
            Ok(meta) => Ok(Attrs {
                id,
                attrs: FileAttributes::from(&meta),
            }),
            Err(_) => Err(StatusCode::NoSuchFile),
        }
    }
}

impl russh_sftp::server::Handler for SftpFs {
    type Error = StatusCode;

    fn unimplemented(&self) -> StatusCode {
        StatusCode::OpUnsupported
    }

    async fn init(
        &mut self,
        _version: u32,
        _extensions: HashMap<String, String>,
    ) -> Result<Version, StatusCode> {
        Ok(Version::new())
    }

    async fn realpath(&mut self, id: u32, path: String) -> Result<Name, StatusCode> {
        let shown = if path.starts_with('/') {
            path
        } else {
            format!("/{path}")
        };
        Ok(Name {
            id,
            files: vec![File::dummy(shown)],
        })
    }

    async fn stat(&mut self, id: u32, path: String) -> Result<Attrs, StatusCode> {
        Self::attrs(id, std::fs::metadata(self.local(&path)))
    }

    async fn lstat(&mut self, id: u32, path: String) -> Result<Attrs, StatusCode> {
        Self::attrs(id, std::fs::symlink_metadata(self.local(&path)))
    }

    async fn open(
        &mut self,
        id: u32,
        filename: String,
        pflags: OpenFlags,
        _attrs: FileAttributes,
    ) -> Result<Handle, StatusCode> {
        if pflags.intersects(OpenFlags::WRITE | OpenFlags::CREATE | OpenFlags::TRUNCATE) {
            return Err(StatusCode::PermissionDenied);
        }
        let file = std::fs::File::open(self.local(&filename)).map_err(|e| match e.kind() {
            std::io::ErrorKind::NotFound => StatusCode::NoSuchFile,
            _ => StatusCode::PermissionDenied,
        })?;
        let first = self.counters.opens.fetch_add(1, Ordering::SeqCst) == 0;
        self.next += 1;
        let handle = format!("h{}", self.next);
        if let Some(cut) = self.counters.cut_first_open.filter(|_| first) {
            self.cut = Some((handle.clone(), cut));
        }
        self.open.insert(handle.clone(), file);
        Ok(Handle { id, handle })
    }

    async fn read(
        &mut self,
        id: u32,
        handle: String,
        offset: u64,
        len: u32,
    ) -> Result<Data, StatusCode> {
        use std::os::unix::fs::FileExt;
        if let Some((cut_handle, cut)) = &self.cut
            && *cut_handle == handle
            && offset + u64::from(len) > *cut
        {
            return Err(StatusCode::ConnectionLost);
        }
        let file = self.open.get(&handle).ok_or(StatusCode::Failure)?;
        let mut data = vec![0u8; len.min(256 * 1024) as usize];
        let n = file
            .read_at(&mut data, offset)
            .map_err(|_| StatusCode::Failure)?;
        if n == 0 {
            return Err(StatusCode::Eof);
        }
        data.truncate(n);
        Ok(Data { id, data })
    }

    async fn fstat(&mut self, id: u32, handle: String) -> Result<Attrs, StatusCode> {
        let file = self.open.get(&handle).ok_or(StatusCode::Failure)?;
        Self::attrs(id, file.metadata())
    }

    async fn close(&mut self, id: u32, handle: String) -> Result<Status, StatusCode> {
        self.open.remove(&handle);
        Ok(Status {
            id,
            status_code: StatusCode::Ok,
            error_message: "Ok".into(),
            language_tag: "en-US".into(),
        })
    }
}

const PRICES: &[u8] = b"\"IM-1\";\"0000010,00\";\"5\"\n\"IM-2\";\"0000020,50\";\"0\"\n\"IM-3\";\"0000300,00\";\"12\"\n";

fn password_auth() -> String {
    r#"auth = { kind = "basic", username = "acme", password_env = "ACME_FEED_PASSWORD" }"#.into()
}

fn sftp_catalog(env: &TestEnv, url: &str, auth: &str, host_key: Option<&str>) {
    let pin = host_key
        .map(|k| format!("host_key = \"{k}\""))
        .unwrap_or_default();
    env.write_catalog(
        "acme",
        &format!(
            r#"tenant = "acme"
[[feed]]
name = "prices"
url = "{url}"
schedule = "every 24h"
{auth}
{pin}
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

async fn stored_prices(env: &TestEnv) -> Vec<(String, String, Option<i64>)> {
    env.store()
        .await
        .prices("acme", "prices")
        .await
        .unwrap()
        .into_iter()
        .map(|p| (p.sku, p.price, p.stock))
        .collect()
}

fn expected_prices() -> Vec<(String, String, Option<i64>)> {
    vec![
        ("IM-1".into(), "10.00".into(), Some(5)),
        ("IM-2".into(), "20.50".into(), Some(0)),
        ("IM-3".into(), "300.00".into(), Some(12)),
    ]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_zipped_feed_downloads_over_sftp_with_a_password_and_an_unchanged_file_is_not_downloaded_again()
 {
    let server = SftpServer::start().await;
    server.put("out/PRICE.ZIP", &zipped("PRICE.TXT", PRICES));
    let env = TestEnv::sqlite();
    sftp_catalog(
        &env,
        &server.url("/out/PRICE.ZIP"),
        &password_auth(),
        Some(&server.host_key_line()),
    );
    let _daemon = env.spawn();
    let status =
        wait_for_outcome(&env, "prices", Duration::from_secs(20), |o| o == "success").await;
    assert_eq!(status["items"], 3);
    assert_eq!(stored_prices(&env).await, expected_prices());
    assert_eq!(server.opens(), 1);

    // Same size and modification time: recorded as unchanged, the file is not opened again.
    assert!(env.run(&["refetch", "acme/prices"]).status.success());
    wait_for_outcome(&env, "prices", Duration::from_secs(20), |o| {
        o == "unchanged"
    })
    .await;
    assert_eq!(server.opens(), 1, "an unchanged file is not downloaded");
    assert_eq!(stored_prices(&env).await, expected_prices());

    let out = env.run(&["test-connection", "acme/prices"]);
    let line = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{line}");
    assert!(
        line.contains("ok: sftp://127.0.0.1")
            && line.contains("logged in as acme")
            && line.contains("bytes"),
        "{line}"
    );
    let log = _daemon.log();
    assert!(!log.contains(PASSWORD), "the password reached the log");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_sftp_password_is_tried_once_and_pauses_the_feed() {
    let server = SftpServer::start().await;
    server.put("PRICE.ZIP", &zipped("PRICE.TXT", PRICES));
    let env = TestEnv::sqlite();
    sftp_catalog(
        &env,
        &server.url("/PRICE.ZIP"),
        &password_auth(),
        Some(&server.host_key_line()),
    );
    let _daemon = env.spawn_with_env(&[("ACME_FEED_PASSWORD", "expired-password")]);
    let status =
        wait_for_outcome(&env, "prices", Duration::from_secs(20), |o| o == "rejected").await;
    assert_eq!(status["paused"], true);
    let issue = &open_issues(&env, "prices", "credentials_rejected")[0];
    let message = issue["message"].as_str().unwrap();
    assert!(
        message.contains("login as acme") && message.contains("refused the password"),
        "{message}"
    );
    assert!(!message.contains("expired-password"));
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(server.logins(), 1, "a refused login is never retried");
    assert!(!_daemon.log().contains("expired-password"));

    let out = env.run_with_env(
        &["test-connection", "acme/prices"],
        &[("ACME_FEED_PASSWORD", "expired-password")],
    );
    let line = String::from_utf8_lossy(&out.stdout);
    assert!(!out.status.success());
    assert!(
        line.starts_with("acme/prices: credentials rejected: "),
        "{line}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_missing_sftp_file_is_misconfigured_with_its_path() {
    let server = SftpServer::start().await;
    let env = TestEnv::sqlite();
    sftp_catalog(
        &env,
        &server.url("/out/PRICE.ZIP"),
        &password_auth(),
        Some(&server.host_key_line()),
    );
    let daemon = env.spawn();
    wait_for_outcome(&env, "prices", Duration::from_secs(20), |o| {
        o == "misconfigured"
    })
    .await;
    drop(daemon);
    let issue = &open_issues(&env, "prices", "misconfigured")[0];
    let message = issue["message"].as_str().unwrap();
    assert!(
        message.contains("/out/PRICE.ZIP") && message.contains("NoSuchFile"),
        "{message}"
    );

    let out = env.run(&["test-connection", "acme/prices"]);
    let line = String::from_utf8_lossy(&out.stdout);
    assert!(!out.status.success());
    assert!(line.starts_with("acme/prices: file missing: "), "{line}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_sftp_host_key_that_does_not_match_the_pin_is_refused_before_logging_in() {
    let server = SftpServer::start().await;
    server.put("PRICE.ZIP", &zipped("PRICE.TXT", PRICES));
    let env = TestEnv::sqlite();
    let other = PrivateKey::random(&mut rand::rng(), Algorithm::Ed25519).unwrap();
    let other_fingerprint = other.public_key().fingerprint(HashAlg::Sha256).to_string();
    sftp_catalog(
        &env,
        &server.url("/PRICE.ZIP"),
        &password_auth(),
        Some(&other.public_key().to_openssh().unwrap()),
    );
    let daemon = env.spawn();
    wait_for_outcome(&env, "prices", Duration::from_secs(20), |o| {
        o == "misconfigured"
    })
    .await;
    drop(daemon);
    let issue = &open_issues(&env, "prices", "misconfigured")[0];
    let message = issue["message"].as_str().unwrap();
    assert!(
        message.contains(&server.host_key_fingerprint()) && message.contains(&other_fingerprint),
        "both fingerprints are named: {message}"
    );
    assert_eq!(server.logins(), 0, "no credentials go to an unknown server");
    assert_eq!(
        env.store()
            .await
            .prices("acme", "prices")
            .await
            .unwrap()
            .len(),
        0
    );

    // Without a pin the connection is refused too, and the server's key is shown to pin.
    sftp_catalog(&env, &server.url("/PRICE.ZIP"), &password_auth(), None);
    let out = env.run(&["check-config"]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("no `host_key` is pinned"), "{text}");
    let out = env.run(&["test-connection", "acme/prices"]);
    let line = String::from_utf8_lossy(&out.stdout);
    assert!(!out.status.success());
    assert!(
        line.contains("not pinned")
            && line.contains(&server.host_key_fingerprint())
            && line.contains(&format!("host_key = \"{}\"", server.host_key_line())),
        "{line}"
    );
    assert_eq!(server.logins(), 0);

    // Pinned by fingerprint, as `ssh-keygen -l` prints it: accepted.
    sftp_catalog(
        &env,
        &server.url("/PRICE.ZIP"),
        &password_auth(),
        Some(&server.host_key_fingerprint()),
    );
    let out = env.run(&["test-connection", "acme/prices"]);
    let line = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{line}");
    assert!(line.contains("logged in as acme"), "{line}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_sftp_feed_logs_in_with_a_private_key_read_relative_to_the_catalog() {
    let server = SftpServer::start().await;
    server.put("PRICE.ZIP", &zipped("PRICE.TXT", PRICES));
    let env = TestEnv::sqlite();
    let key_pem = server.client_key.to_openssh(LineEnding::LF).unwrap();
    std::fs::write(
        env.dir.path().join("jobs/acme/acme_sftp_key"),
        key_pem.as_bytes(),
    )
    .unwrap();
    let key_auth = r#"auth = { kind = "ssh_key", username = "acme", key_file = "acme_sftp_key" }"#;
    sftp_catalog(
        &env,
        &server.url("/PRICE.ZIP"),
        key_auth,
        Some(&server.host_key_line()),
    );
    import_once(&env, "prices", false, false).await;
    assert_eq!(env.status_of("prices")["last_outcome"], "success");
    assert_eq!(stored_prices(&env).await, expected_prices());

    // A key the server does not know is refused like a wrong password.
    let stranger = PrivateKey::random(&mut rand::rng(), Algorithm::Ed25519).unwrap();
    std::fs::write(
        env.dir.path().join("jobs/acme/acme_sftp_key"),
        stranger.to_openssh(LineEnding::LF).unwrap().as_bytes(),
    )
    .unwrap();
    let out = env.run(&["test-connection", "acme/prices"]);
    let line = String::from_utf8_lossy(&out.stdout);
    assert!(!out.status.success());
    assert!(
        line.starts_with("acme/prices: credentials rejected: ") && line.contains("refused the key"),
        "{line}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sftp_secrets_come_from_the_credential_store_a_password_and_a_key_passphrase() {
    let server = SftpServer::start().await;
    server.put("PRICE.ZIP", &zipped("PRICE.TXT", PRICES));
    let env = TestEnv::sqlite();
    let set = |secret: &str| {
        let out = env.run_with_stdin(
            &["credentials", "set", "acme/sftp"],
            &format!("{secret}\n"),
            &[],
        );
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    };

    // The password login resolves its secret through the store (field `password`).
    sftp_catalog(
        &env,
        &server.url("/PRICE.ZIP"),
        r#"auth = { kind = "basic", username = "acme", credential = "acme/sftp" }"#,
        Some(&server.host_key_line()),
    );
    assert!(set(PASSWORD).contains("`password` stored encrypted"));
    import_once(&env, "prices", false, false).await;
    assert_eq!(env.status_of("prices")["last_outcome"], "success");
    assert_eq!(stored_prices(&env).await, expected_prices());

    // An encrypted private key: its passphrase is the credential's `passphrase` field.
    const PASSPHRASE: &str = "key-passphrase-from-the-store";
    let encrypted = server
        .client_key
        .encrypt(&mut rand::rng(), PASSPHRASE)
        .unwrap();
    std::fs::write(
        env.dir.path().join("jobs/acme/acme_sftp_key"),
        encrypted.to_openssh(LineEnding::LF).unwrap().as_bytes(),
    )
    .unwrap();
    sftp_catalog(
        &env,
        &server.url("/PRICE.ZIP"),
        r#"auth = { kind = "ssh_key", username = "acme", key_file = "acme_sftp_key", credential = "acme/sftp" }"#,
        Some(&server.host_key_line()),
    );
    let out = env.run(&["test-connection", "acme/prices"]);
    let line = String::from_utf8_lossy(&out.stdout);
    assert!(!out.status.success(), "no passphrase stored yet: {line}");
    assert!(
        line.starts_with("acme/prices: misconfigured: ") && line.contains("--field passphrase"),
        "{line}"
    );
    assert!(set(PASSPHRASE).contains("`passphrase` stored encrypted"));
    let out = env.run(&["test-connection", "acme/prices"]);
    let line = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{line}");
    assert!(line.contains("logged in as acme"), "{line}");

    // Both fields are listed masked; neither secret reaches an output.
    let listing = String::from_utf8_lossy(&env.run(&["credentials", "list"]).stdout).into_owned();
    for secret in [PASSWORD, PASSPHRASE] {
        assert!(!listing.contains(secret) && !line.contains(secret));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_ssh_key_passphrase_comes_from_one_source_and_only_from_the_tenants_own_credentials() {
    let env = TestEnv::sqlite();
    std::fs::write(env.dir.path().join("jobs/acme/k"), b"").unwrap();
    for (auth, words) in [
        (
            r#"auth = { kind = "ssh_key", username = "u", key_file = "k", credential = "acme/f", passphrase_env = "X" }"#,
            "not both",
        ),
        (
            r#"auth = { kind = "ssh_key", username = "u", key_file = "k", credential = "globex/f" }"#,
            "tenant `acme` may only use its own credentials",
        ),
    ] {
        sftp_catalog(&env, "sftp://127.0.0.1/p.csv", auth, None);
        let out = env.run(&["check-config"]);
        let t = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(!out.status.success(), "{t}");
        assert!(t.contains("acme.toml") && t.contains(words), "{t}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_sftp_transfer_cut_off_mid_file_is_retried_and_then_succeeds_without_an_issue() {
    let rows: String = (0..20_000)
        .map(|i| format!("\"IM-{i}\";\"{:010},{:02}\";\"{}\"\n", i, i % 100, i % 7))
        .collect();
    let zip = zipped("PRICE.TXT", rows.as_bytes());
    let server = SftpServer::start_with(Some(zip.len() as u64 / 2)).await;
    server.put("PRICE.ZIP", &zip);
    let env = TestEnv::sqlite();
    sftp_catalog(
        &env,
        &server.url("/PRICE.ZIP"),
        &password_auth(),
        Some(&server.host_key_line()),
    );
    let daemon = env.spawn();
    let status =
        wait_for_outcome(&env, "prices", Duration::from_secs(30), |o| o == "success").await;
    assert_eq!(status["items"], 20_000);
    assert_eq!(server.opens(), 2, "one cut-off, one complete");
    let prices = env.store().await.prices("acme", "prices").await.unwrap();
    assert_eq!(prices.len(), 20_000);
    let last = prices.iter().find(|p| p.sku == "IM-19999").unwrap();
    assert_eq!(
        (last.price.as_str(), last.stock),
        ("19999.99", Some(19_999 % 7))
    );

    let log = daemon.log();
    let retries: Vec<&str> = log.lines().filter(|l| l.contains("will retry")).collect();
    assert_eq!(retries.len(), 1, "{log}");
    assert!(
        retries[0].contains("PRICE.ZIP") && retries[0].contains("broke off"),
        "the cut-off is named: {}",
        retries[0]
    );
    assert!(env.issues(false).is_empty(), "no issue stays open");
}
