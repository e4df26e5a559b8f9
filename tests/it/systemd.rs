//! Running under systemd: the notification protocol of `Type=notify` (a socket of our own
//! stands in for systemd) and the shipped unit file, checked by `systemd-analyze`.

use crate::support::helpers::*;
use std::os::unix::net::UnixDatagram;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

/// Collects notification lines until one equals `want`; fails after `timeout`.
fn wait_for(sock: &UnixDatagram, want: &str, seen: &mut Vec<String>, daemon: &Daemon) {
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut buf = [0u8; 4096];
    while !seen.iter().any(|l| l == want) {
        assert!(
            Instant::now() < deadline,
            "no {want} within 30 s; got {seen:?}\n{}",
            daemon.log()
        );
        match sock.recv(&mut buf) {
            Ok(n) => seen.extend(
                String::from_utf8_lossy(&buf[..n])
                    .lines()
                    .map(str::to_string),
            ),
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) => {}
            Err(e) => panic!("notify socket: {e}"),
        }
    }
}

#[test]
fn syncd_run_sends_ready_then_watchdog_pings_then_stopping_on_sigterm() {
    let env = TestEnv::sqlite();
    env.write_catalog("acme", "tenant = \"acme\"\n");
    let socket_path = env.dir.path().join("notify.sock");
    let sock = UnixDatagram::bind(&socket_path).unwrap();
    sock.set_read_timeout(Some(Duration::from_millis(200)))
        .unwrap();
    let mut daemon = env.spawn_with_env(&[
        ("NOTIFY_SOCKET", socket_path.to_str().unwrap()),
        // What systemd sets for WatchdogSec=5s.
        ("WATCHDOG_USEC", "5000000"),
    ]);

    let mut seen = Vec::new();
    wait_for(&sock, "READY=1", &mut seen, &daemon);
    assert!(
        daemon.log().contains("workers started"),
        "READY=1 comes once the workers run:\n{}",
        daemon.log()
    );
    assert!(
        !seen.iter().any(|l| l == "STOPPING=1"),
        "not stopping yet: {seen:?}"
    );
    // The scheduler's one-second loop pings the watchdog.
    seen.retain(|l| l != "WATCHDOG=1");
    wait_for(&sock, "WATCHDOG=1", &mut seen, &daemon);

    daemon.signal("TERM");
    wait_for(&sock, "STOPPING=1", &mut seen, &daemon);
    let exit = daemon.wait_exit(Duration::from_secs(20));
    assert!(exit.success(), "exit status {exit:?}\n{}", daemon.log());
    let ready = seen.iter().position(|l| l == "READY=1").unwrap();
    let stopping = seen.iter().position(|l| l == "STOPPING=1").unwrap();
    assert!(ready < stopping, "{seen:?}");
}

#[test]
fn syncd_run_without_notify_socket_runs_as_before() {
    // No NOTIFY_SOCKET, a stray WATCHDOG_USEC meant for another process: nothing is sent,
    // nothing is complained about.
    let env = TestEnv::sqlite();
    env.write_catalog("acme", "tenant = \"acme\"\n");
    let mut daemon = env.spawn_with_env(&[("WATCHDOG_USEC", "5000000"), ("WATCHDOG_PID", "1")]);
    let deadline = Instant::now() + Duration::from_secs(30);
    while !daemon.log().contains("workers started") {
        assert!(Instant::now() < deadline, "{}", daemon.log());
        std::thread::sleep(Duration::from_millis(100));
    }
    std::thread::sleep(Duration::from_millis(1500));
    daemon.signal("TERM");
    let exit = daemon.wait_exit(Duration::from_secs(20));
    assert!(exit.success(), "{}", daemon.log());
    let log = daemon.log();
    assert!(!log.contains("systemd"), "{log}");
}

/// `systemd-analyze`, or `None` (the test says it skipped) where systemd is not installed.
fn systemd_analyze() -> Option<Command> {
    match Command::new("systemd-analyze").arg("--version").output() {
        Ok(out) if out.status.success() => Some(Command::new("systemd-analyze")),
        _ => {
            eprintln!("SKIPPED: systemd-analyze is not installed");
            None
        }
    }
}

fn repo_unit() -> String {
    let repo = Path::new(env!("CARGO_MANIFEST_DIR"));
    std::fs::read_to_string(repo.join("deploy/syncd.service")).unwrap()
}

#[test]
fn the_unit_file_passes_systemd_analyze_verify() {
    let Some(mut verify) = systemd_analyze() else {
        return;
    };
    // `verify` insists that ExecStart's binary exists: point it at the one just built.
    let dir = tempfile::tempdir().unwrap();
    let unit = dir.path().join("syncd.service");
    std::fs::write(
        &unit,
        repo_unit().replace("/usr/local/bin/syncd", env!("CARGO_BIN_EXE_syncd")),
    )
    .unwrap();
    let out = verify.arg("verify").arg(&unit).output().unwrap();
    let said = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "systemd-analyze verify:\n{said}");
    assert!(
        said.trim().is_empty(),
        "systemd-analyze verify warns:\n{said}"
    );
}

#[test]
fn the_unit_file_is_rated_2_0_or_lower_by_systemd_analyze_security() {
    let Some(mut security) = systemd_analyze() else {
        return;
    };
    let repo = Path::new(env!("CARGO_MANIFEST_DIR"));
    let out = security
        .args(["security", "--offline=true", "--no-pager"])
        .arg(repo.join("deploy/syncd.service"))
        .output()
        .unwrap();
    let said = String::from_utf8_lossy(&out.stdout);
    let score: f64 = said
        .lines()
        .find_map(|l| l.split("Overall exposure level for syncd.service:").nth(1))
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| {
            panic!(
                "no overall exposure level in:\n{said}{}",
                String::from_utf8_lossy(&out.stderr)
            )
        });
    assert!(score <= 2.0, "exposure level {score} is above 2.0:\n{said}");
}

#[test]
fn the_unit_file_uses_notify_a_watchdog_and_stops_later_than_the_shutdown_grace() {
    let unit = repo_unit();
    let setting = |key: &str| {
        unit.lines()
            .find_map(|l| l.strip_prefix(&format!("{key}=")))
            .unwrap_or_else(|| panic!("the unit has no {key}="))
            .to_string()
    };
    assert_eq!(setting("Type"), "notify");
    assert_eq!(setting("Restart"), "on-failure");
    assert_eq!(setting("StateDirectory"), "syncd");
    // No input can take the host down with the daemon.
    assert!(setting("MemoryMax").ends_with('G') || setting("MemoryMax").ends_with('M'));
    assert!(setting("TasksMax").parse::<u32>().unwrap() >= 64);
    // A broken tenant file takes out that tenant only: no check-config gate before start.
    assert!(
        !unit.contains("\nExecStartPre="),
        "check-config gates deploys, not starts"
    );
    assert!(
        unit.contains("\nDynamicUser=yes") || unit.contains("\nUser=syncd"),
        "not root"
    );
    let watchdog = humantime::parse_duration(&setting("WatchdogSec")).unwrap();
    assert!(watchdog >= Duration::from_secs(10), "{watchdog:?}");
    for credential in ["master.key", "admin.token"] {
        assert!(
            unit.contains(&format!("LoadCredential={credential}:")),
            "{credential} is loaded"
        );
    }
    let stop = humantime::parse_duration(&setting("TimeoutStopSec")).unwrap();
    let repo = Path::new(env!("CARGO_MANIFEST_DIR"));
    let production: toml::Table =
        std::fs::read_to_string(repo.join("deploy/config.production.toml"))
            .unwrap()
            .parse()
            .unwrap();
    let grace = production
        .get("shutdown_grace")
        .and_then(|v| v.as_str())
        .map(|g| humantime::parse_duration(g).unwrap())
        .unwrap_or(Duration::from_secs(30));
    assert!(
        stop > grace,
        "TimeoutStopSec {stop:?} must exceed shutdown_grace {grace:?}"
    );
}
