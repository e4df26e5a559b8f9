//! Bad configuration and catalog files: a non-zero exit and a message naming file and key.

use crate::support::helpers::*;

fn check(env: &TestEnv) -> (bool, String) {
    let out = env.run(&["check-config"]);
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}

#[test]
fn check_config_summarises_a_good_setup() {
    let env = TestEnv::sqlite();
    env.write_catalog(
        "acme",
        &format!(
            "tenant = \"acme\"\n{}",
            env.http_feed("prices", "https://feeds.example.com/p.csv")
        ),
    );
    let (ok, text) = check(&env);
    assert!(ok, "{text}");
    assert!(text.contains("1 tenant, 1 integration"), "{text}");
    assert!(text.contains("queue backend:   sqlite"), "{text}");
    assert!(text.contains("acme/prices: feed, every 1h"), "{text}");
}

#[test]
fn an_unknown_config_key_names_the_file_and_the_key() {
    let env = TestEnv::sqlite().with_config("[issues]\ntransient_treshold = 3");
    let (ok, text) = check(&env);
    assert!(!ok);
    assert!(
        text.contains("config.toml") && text.contains("transient_treshold"),
        "{text}"
    );
}

#[test]
fn a_bad_config_value_names_the_file_and_the_key() {
    let env = TestEnv::sqlite().with_config("[retry]\nmax_attempts = 0");
    let (ok, text) = check(&env);
    assert!(!ok);
    assert!(
        text.contains("config.toml") && text.contains("[retry] max_attempts"),
        "{text}"
    );

    let env = TestEnv::sqlite().with_config("[http]\nread_timeout = \"a while\"");
    let (ok, text) = check(&env);
    assert!(!ok);
    assert!(
        text.contains("http.read_timeout") && text.contains("a while"),
        "{text}"
    );
}

#[test]
fn an_environment_override_is_validated_like_the_file() {
    let env = TestEnv::sqlite();
    let out = std::process::Command::new(crate::support::helpers::syncd_bin())
        .args(["--config"])
        .arg(env.config_path())
        .arg("check-config")
        .env("SYNCD__QUEUE__BACKEND", "kafka")
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        text.contains("queue.backend") && text.contains("kafka"),
        "{text}"
    );
}

#[test]
fn an_unknown_catalog_key_names_the_file_and_the_key() {
    let env = TestEnv::sqlite();
    env.write_catalog("acme", "tenant = \"acme\"\n[[feed]]\nname = \"p\"\nurll = \"https://x.example/p.csv\"\nschedule = \"every 1h\"\n");
    let (ok, text) = check(&env);
    assert!(!ok);
    assert!(
        text.contains("acme.toml") && text.contains("urll"),
        "{text}"
    );
}

#[test]
fn a_duplicate_integration_name_names_the_file_and_the_key() {
    let env = TestEnv::sqlite();
    let feed = env.http_feed("prices", "https://feeds.example.com/p.csv");
    env.write_catalog("acme", &format!("tenant = \"acme\"\n{feed}{feed}"));
    let (ok, text) = check(&env);
    assert!(!ok);
    assert!(
        text.contains("acme.toml") && text.contains("key `name`") && text.contains("prices"),
        "{text}"
    );
}

#[test]
fn a_bad_schedule_and_a_header_name_without_header_are_named() {
    let env = TestEnv::sqlite();
    let feed = env
        .http_feed("prices", "https://feeds.example.com/p.csv")
        .replace("every 1h", "every blue moon");
    env.write_catalog("acme", &format!("tenant = \"acme\"\n{feed}"));
    let (ok, text) = check(&env);
    assert!(!ok);
    assert!(
        text.contains("acme.toml") && text.contains("schedule") && text.contains("blue moon"),
        "{text}"
    );

    let feed = env
        .http_feed("prices", "https://feeds.example.com/p.csv")
        .replace(
            "[feed.columns]",
            "[feed.format]\nheader = false\n[feed.columns]",
        );
    env.write_catalog("acme", &format!("tenant = \"acme\"\n{feed}"));
    let (ok, text) = check(&env);
    assert!(!ok);
    assert!(
        text.contains("columns.sku") && text.contains("format.header = false"),
        "{text}"
    );
}

#[test]
fn a_second_refetch_while_one_is_pending_says_so() {
    let env = TestEnv::sqlite();
    env.write_catalog(
        "acme",
        &format!(
            "tenant = \"acme\"\n{}",
            env.http_feed("prices", "https://feeds.example.com/p.csv")
        ),
    );
    let first = env.run(&["refetch", "acme/prices"]);
    assert!(
        first.status.success(),
        "{}",
        String::from_utf8_lossy(&first.stderr)
    );
    assert!(String::from_utf8_lossy(&first.stdout).contains("queued a re-fetch of acme/prices"));
    let second = env.run(&["refetch", "acme/prices", "--force"]);
    assert!(second.status.success());
    assert!(
        String::from_utf8_lossy(&second.stdout).contains("already queued"),
        "{}",
        String::from_utf8_lossy(&second.stdout)
    );

    let unknown = env.run(&["refetch", "acme/nope"]);
    assert!(!unknown.status.success());
    assert!(String::from_utf8_lossy(&unknown.stderr).contains("no integration named `nope`"));
}

#[test]
fn an_unreachable_postgresql_state_says_why_without_the_password() {
    // Port 1 on loopback: nothing listens there.
    let env = TestEnv::sqlite()
        .with_config("[state]\nurl = \"postgres://syncd:hunter2-secret@127.0.0.1:1/syncd\"");
    let out = env.run(&["status"]);
    let text = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        text.contains("127.0.0.1:1/syncd") && text.contains("refused"),
        "{text}"
    );
    assert!(!text.contains("hunter2-secret"), "{text}");
}

#[test]
fn a_missing_postgresql_database_is_named_with_what_to_do() {
    let server = postgres_server();
    let env = TestEnv::sqlite().with_config(&format!(
        "[state]\nurl = \"{server}/syncd_no_such_database\""
    ));
    let out = env.run(&["status"]);
    let text = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        text.contains("syncd_no_such_database") && text.contains("createdb"),
        "{text}"
    );
}

#[test]
fn a_state_url_of_another_database_is_refused_by_check_config() {
    let env = TestEnv::sqlite().with_config("[state]\nurl = \"mysql://127.0.0.1/syncd\"");
    let (ok, text) = check(&env);
    assert!(!ok);
    assert!(
        text.contains("config.toml") && text.contains("[state] url"),
        "{text}"
    );
}
