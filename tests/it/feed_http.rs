//! The HTTP feed job end to end: download, parse, replace, and the guards that keep the
//! previous prices when a feed comes back empty or as a web page.

use crate::support::fake_distributor::{FakeDistributor, Reply};
use crate::support::helpers::*;
use std::time::Duration;
use syncd::store::prices::PriceRow;

pub const GOOD: &str = "sku,price,stock\nA-1,10.00,5\nB-2,20.5,0\n  C-3  ,0003.10,12\n";

fn row(sku: &str, price: &str, stock: i64) -> PriceRow {
    PriceRow {
        sku: sku.into(),
        price: price.into(),
        stock: Some(stock),
        ..PriceRow::default()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_feed_is_imported_end_to_end_and_status_shows_when_and_how_many() {
    let fake = FakeDistributor::start(Reply::csv(GOOD)).await;
    let env = TestEnv::sqlite();
    env.write_catalog(
        "acme",
        &format!(
            "tenant = \"acme\"\n{}",
            env.http_feed("prices", &fake.url("/acme/price.csv"))
        ),
    );
    let _daemon = env.spawn();

    let status =
        wait_for_outcome(&env, "prices", Duration::from_secs(20), |o| o == "success").await;
    assert_eq!(status["items"], 3);
    assert_eq!(status["paused"], false);
    assert_eq!(status["last_error"], serde_json::Value::Null);
    let success_at = status["last_success_at"].as_str().unwrap();
    assert!(
        success_at.ends_with('Z') && success_at.contains('T'),
        "RFC 3339 UTC: {success_at}"
    );

    let prices = env.store().await.prices("acme", "prices").await.unwrap();
    assert_eq!(
        prices,
        vec![
            row("A-1", "10.00", 5),
            row("B-2", "20.50", 0),
            row("C-3", "3.10", 12)
        ]
    );

    // The configured credentials were sent; the fake saw Basic auth for acme.
    let first = &fake.seen()[0];
    assert_eq!(first.path, "/acme/price.csv");
    assert!(
        first.headers["authorization"]
            .to_str()
            .unwrap()
            .starts_with("Basic ")
    );

    // A re-fetch sends the ETag; the 304 is a success recorded as unchanged.
    let out = env.run(&["refetch", "acme/prices"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let status = wait_for_outcome(&env, "prices", Duration::from_secs(20), |o| {
        o == "unchanged"
    })
    .await;
    assert_eq!(status["items"], 3, "an unchanged source keeps the count");
    let seen = fake.seen();
    assert!(seen[0].headers.get("if-none-match").is_none());
    assert_eq!(
        seen[1].headers["if-none-match"],
        Reply::csv(GOOD).etag.unwrap().as_str()
    );
    assert!(env.issues(true).is_empty());
}

/// Imports GOOD, then serves `bad` to a forced re-fetch and checks the issue and the prices.
/// Returns the issue's message.
async fn bad_feed_keeps_previous_prices(bad: Reply, kind: &str, message_part: &str) -> String {
    let fake = FakeDistributor::start(Reply::csv(GOOD)).await;
    let env = TestEnv::sqlite();
    env.write_catalog(
        "acme",
        &format!(
            "tenant = \"acme\"\n{}",
            env.http_feed("prices", &fake.url("/p.csv"))
        ),
    );
    let _daemon = env.spawn();
    wait_for_outcome(&env, "prices", Duration::from_secs(20), |o| o == "success").await;
    let store = env.store().await;
    let before = store.prices("acme", "prices").await.unwrap();
    assert_eq!(before.len(), 3);

    fake.set_fallback(bad);
    assert!(
        env.run(&["refetch", "acme/prices", "--force"])
            .status
            .success()
    );
    let status =
        wait_for_outcome(&env, "prices", Duration::from_secs(20), |o| o == "invalid").await;
    assert_eq!(
        status["items"], 3,
        "the stored count still describes the kept prices"
    );

    let issues = open_issues(&env, "prices", kind);
    assert_eq!(issues.len(), 1, "{:?}", env.issues(true));
    let message = issues[0]["message"].as_str().unwrap();
    assert!(message.contains(message_part), "{message}");
    assert!(
        message.contains("/p.csv"),
        "the message names the file: {message}"
    );
    assert!(!issues[0]["hint"].as_str().unwrap().is_empty());
    assert_eq!(
        store.prices("acme", "prices").await.unwrap(),
        before,
        "previous prices intact"
    );
    assert_eq!(fake.count(), 2, "an invalid feed is not retried");
    message.to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_empty_file_opens_empty_feed_and_keeps_the_prices() {
    bad_feed_keeps_previous_prices(Reply::csv(""), "empty_feed", "no rows at all").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_header_only_file_opens_empty_feed_and_keeps_the_prices() {
    bad_feed_keeps_previous_prices(
        Reply::csv("sku,price,stock\n"),
        "empty_feed",
        "only a header row",
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_html_login_page_opens_invalid_feed_and_keeps_the_prices() {
    // Sent as text/html and, worse, mislabelled as CSV: both are caught.
    bad_feed_keeps_previous_prices(
        Reply::login_page("text/html; charset=utf-8"),
        "invalid_feed",
        "HTML page",
    )
    .await;
    bad_feed_keeps_previous_prices(Reply::login_page("text/csv"), "invalid_feed", "HTML page")
        .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_file_of_garbage_rows_is_rejected_with_line_numbers() {
    let garbage = "sku,price,stock\nA-1,10.00,5\nB-2,ten,1\nC-3,??,2\n";
    bad_feed_keeps_previous_prices(
        Reply::csv(garbage),
        "invalid_feed",
        "line 3: part B-2: price \"ten\"",
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_huge_or_hostile_value_is_quoted_short_and_escaped_in_the_issue() {
    // A price field of 5,000 characters carrying terminal escape sequences and a newline:
    // the issue quotes at most 40 characters of it, with its control characters escaped.
    let hostile = format!("\u{1b}[2J\u{1b}[31m{}\nnext", "9".repeat(5000));
    let garbage =
        format!("sku,price,stock\nA-1,10.00,5\nB-2,\"{hostile}\",1\nC-3,??,2\nD-4,!!,3\n");
    let message =
        bad_feed_keeps_previous_prices(Reply::csv(&garbage), "invalid_feed", "line 3: part B-2")
            .await;
    assert!(
        !message.contains('\u{1b}') && !message.contains('\n'),
        "{message:?}"
    );
    assert!(
        message.contains("\\u{1b}[2J"),
        "escaped, still readable: {message}"
    );
    assert!(!message.contains(&"9".repeat(41)), "cut short: {message}");
    assert!(message.len() < 1000, "{} bytes", message.len());
}
