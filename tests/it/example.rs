//! The repository's own `config.toml` and `jobs/` (what the README runs) do real work offline.

use crate::support::helpers::eventually;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let target = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            copy_dir(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), target).unwrap();
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_example_catalog_imports_the_sample_price_file() {
    let repo = Path::new(env!("CARGO_MANIFEST_DIR"));
    let dir = tempfile::tempdir().unwrap();
    std::fs::copy(repo.join("config.toml"), dir.path().join("config.toml")).unwrap();
    copy_dir(&repo.join("jobs"), &dir.path().join("jobs"));
    let syncd = |args: &[&str]| {
        let mut cmd = Command::new(crate::support::helpers::syncd_bin());
        cmd.args(args)
            .current_dir(dir.path())
            .env_remove("RUST_LOG");
        cmd
    };
    let check = syncd(&["check-config"]).output().unwrap();
    assert!(
        check.status.success(),
        "{}",
        String::from_utf8_lossy(&check.stderr)
    );

    // As the README runs it: from the directory holding config.toml, no --config.
    let mut daemon = syncd(&["run"]).stderr(Stdio::null()).spawn().unwrap();
    let status = eventually(Duration::from_secs(30), "the sample feed to import", || {
        let out = syncd(&["status", "--json"]).output().unwrap();
        let rows: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap_or_default();
        let row = rows
            .get(0)
            .cloned()
            .filter(|r| r["last_outcome"] == "success");
        async move { row }
    })
    .await;
    daemon.kill().unwrap();
    daemon.wait().unwrap();
    assert_eq!(status["tenant"], "acme");
    assert_eq!(status["items"], 5);
    let store = syncd::store::Store::open_sqlite(&dir.path().join("syncd.db"))
        .await
        .unwrap();
    let prices = store.prices("acme", "sample-prices").await.unwrap();
    let mouse = prices.iter().find(|p| p.sku == "LOG-910-005").unwrap();
    assert_eq!((mouse.price.as_str(), mouse.stock), ("89.50", Some(143)));
}
