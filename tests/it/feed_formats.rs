//! The formats distributors really send, one fixture per feature, checked for the exact
//! values stored; and the guards that keep the previous prices byte-for-byte.

use crate::support::helpers::*;
use std::io::Write;
use syncd::store::prices::{PriceChange, PriceRow};

/// A feed `acme/{name}` reading `file` (relative to the catalog) with extra catalog text.
fn file_feed(env: &TestEnv, name: &str, file: &str, format_and_columns: &str) {
    env.write_catalog(
        "acme",
        &format!(
            "tenant = \"acme\"\n[[feed]]\nname = \"{name}\"\nurl = \"file:{file}\"\nschedule = \"every 24h\"\n{format_and_columns}"
        ),
    );
}

fn put(env: &TestEnv, file: &str, bytes: &[u8]) {
    std::fs::write(env.dir.path().join("jobs/acme").join(file), bytes).unwrap();
}

fn zip_of(members: &[(&str, &[u8])]) -> Vec<u8> {
    let mut out = std::io::Cursor::new(Vec::new());
    let mut zip = zip::ZipWriter::new(&mut out);
    for (name, data) in members {
        zip.start_file(*name, zip::write::SimpleFileOptions::default())
            .unwrap();
        zip.write_all(data).unwrap();
    }
    zip.finish().unwrap();
    out.into_inner()
}

fn gzip_of(data: &[u8]) -> Vec<u8> {
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    gz.write_all(data).unwrap();
    gz.finish().unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_zipped_latin1_positional_file_with_decimal_commas_is_read_exactly() {
    let env = TestEnv::sqlite();
    // Ingram-style: no header, positional, `;`, Latin-1 (é is one byte, 0xE9), decimal comma,
    // zero-padded prices, space-padded part numbers, a trailing extra field.
    let text = b"  IM-1001  ;Souris sans fil \xe9l\xe9gante;0000123,45;12;EUR;x\nIM-1002;C\xe2ble HDMI;0000007,50;0;EUR;x\n";
    let archive = zip_of(&[
        ("README.TXT", b"not the prices"),
        ("PRICE_20261129.TXT", text),
    ]);
    put(&env, "PRICE.ZIP", &archive);
    file_feed(
        &env,
        "ingram",
        "PRICE.ZIP",
        r#"
[feed.format]
header = false
delimiter = ";"
decimal = ","
encoding = "latin1"
member = "PRICE*.TXT"
[feed.columns]
sku = 1
description = 2
price = 3
stock = 4
currency = 5
"#,
    );
    import_once(&env, "ingram", false, false).await;
    let rows = env.store().await.prices("acme", "ingram").await.unwrap();
    assert_eq!(
        rows[0],
        PriceRow {
            sku: "IM-1001".into(),
            price: "123.45".into(),
            stock: Some(12),
            description: Some("Souris sans fil élégante".into()),
            currency: Some("EUR".into()),
            ..PriceRow::default()
        }
    );
    assert_eq!(rows[1].description.as_deref(), Some("Câble HDMI"));
    assert_eq!(rows[1].price, "7.50");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_gzipped_windows_1252_pipe_file_with_a_header_is_read_exactly() {
    let env = TestEnv::sqlite();
    // 0x80 is € in Windows-1252; header names in another case than configured.
    let text = b"ARTNR|EAN|MPN|OMSCHRIJVING|PRIJS|VOORRAAD\nTD-77|8712345678901|X1-C-G12|Docking \x80 promo|1.299,00|>100\n";
    put(&env, "stock.csv.gz", &gzip_of(text));
    file_feed(
        &env,
        "techdata",
        "stock.csv.gz",
        r#"
[feed.format]
delimiter = "|"
decimal = ","
encoding = "windows-1252"
[feed.columns]
sku = "artnr"
ean = "EAN"
mpn = "MPN"
description = "Omschrijving"
price = "Prijs"
stock = "Voorraad"
"#,
    );
    import_once(&env, "techdata", false, false).await;
    let rows = env.store().await.prices("acme", "techdata").await.unwrap();
    assert_eq!(
        rows,
        vec![PriceRow {
            sku: "TD-77".into(),
            price: "1299.00".into(),
            stock: Some(100),
            mpn: Some("X1-C-G12".into()),
            ean: Some("8712345678901".into()),
            description: Some("Docking € promo".into()),
            ..PriceRow::default()
        }]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fixed_width_file_and_a_tilde_file_with_bom_are_read_exactly() {
    let env = TestEnv::sqlite();
    put(
        &env,
        "fixed.txt",
        b"SKU       PRICE     STOCK\nFW-1      0000012.5000003\nFW-2      0000100.0000000\n",
    );
    file_feed(
        &env,
        "fixed",
        "fixed.txt",
        r#"
[feed.format]
layout = "fixed"
header = true
[feed.columns]
sku = { start = 1, length = 10 }
price = { start = 11, length = 9 }
stock = { start = 20, length = 6 }
"#,
    );
    import_once(&env, "fixed", false, false).await;
    let rows = env.store().await.prices("acme", "fixed").await.unwrap();
    let got: Vec<(&str, &str, Option<i64>)> = rows
        .iter()
        .map(|r| (r.sku.as_str(), r.price.as_str(), r.stock))
        .collect();
    assert_eq!(
        got,
        vec![("FW-1", "12.50", Some(3)), ("FW-2", "100.00", Some(0))]
    );

    put(
        &env,
        "tilde.csv",
        "\u{feff}sku~price\nT-1~\"4.20\"\n".as_bytes(),
    );
    file_feed(
        &env,
        "tilde",
        "tilde.csv",
        "[feed.format]\ndelimiter = \"~\"\n[feed.columns]\nsku = \"sku\"\nprice = \"price\"\n",
    );
    import_once(&env, "tilde", false, false).await;
    let rows = env.store().await.prices("acme", "tilde").await.unwrap();
    assert_eq!(
        (rows[0].sku.as_str(), rows[0].price.as_str()),
        ("T-1", "4.20")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn delta_files_add_change_and_delete_rows_and_record_the_changes() {
    let env = TestEnv::sqlite();
    let columns = "[feed.format]\nheader = false\n[feed.columns]\naction = 1\nsku = 2\nprice = 3\nstock = 4\n";
    file_feed(&env, "delta", "delta.csv", columns);
    put(
        &env,
        "delta.csv",
        b"A,D-1,10.00,5\nA,D-2,20.00,1\nA,D-3,30.00,0\n",
    );
    import_once(&env, "delta", false, false).await;
    put(
        &env,
        "delta.csv",
        b"C,D-1,11.00,5\nD,D-2,,\nA,D-4,40.00,9\n",
    );
    import_once(&env, "delta", false, false).await;

    let store = env.store().await;
    let skus: Vec<(String, String)> = store
        .prices("acme", "delta")
        .await
        .unwrap()
        .into_iter()
        .map(|r| (r.sku, r.price))
        .collect();
    assert_eq!(
        skus,
        vec![
            ("D-1".into(), "11.00".into()),
            ("D-3".into(), "30.00".into()),
            ("D-4".into(), "40.00".into())
        ]
    );
    let changes = store.price_changes("acme", "delta").await.unwrap();
    let change = |sku: &str| changes.iter().find(|c| c.sku == sku).cloned();
    assert_eq!(
        change("D-1"),
        Some(PriceChange {
            sku: "D-1".into(),
            change: "changed".into(),
            old_price: Some("10.00".into()),
            new_price: Some("11.00".into()),
            old_stock: Some(5),
            new_stock: Some(5)
        })
    );
    assert_eq!(change("D-2").unwrap().change, "removed");
    assert_eq!(change("D-4").unwrap().change, "added");
    let status = env.status_of("delta");
    assert_eq!(status["items"], 3);
    assert_eq!(status["changes"]["removed"], 1);
    assert_eq!(status["changes"]["price_changed"], 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_file_records_added_removed_and_changed_parts_and_status_counts_them() {
    let env = TestEnv::sqlite();
    file_feed(
        &env,
        "full",
        "full.csv",
        "[feed.columns]\nsku = \"sku\"\nprice = \"price\"\nstock = \"stock\"\n",
    );
    put(
        &env,
        "full.csv",
        b"sku,price,stock\nF-1,1.00,1\nF-2,2.00,2\nF-3,3.00,3\n",
    );
    import_once(&env, "full", false, false).await;
    assert!(
        env.store()
            .await
            .price_changes("acme", "full")
            .await
            .unwrap()
            .is_empty(),
        "a first import records no per-part changes"
    );
    put(
        &env,
        "full.csv",
        b"sku,price,stock\nF-1,1.00,1\nF-2,2.50,2\nF-3,3.00,0\nF-4,4.00,4\n",
    );
    import_once(&env, "full", false, false).await;
    put(
        &env,
        "full.csv",
        b"sku,price,stock\nF-1,1.00,1\nF-2,2.50,2\nF-4,4.00,4\n",
    );
    import_once(&env, "full", false, false).await;

    let changes = env
        .store()
        .await
        .price_changes("acme", "full")
        .await
        .unwrap();
    let summary: Vec<(&str, &str)> = changes
        .iter()
        .map(|c| (c.sku.as_str(), c.change.as_str()))
        .collect();
    assert_eq!(
        summary,
        vec![
            ("F-2", "changed"),
            ("F-3", "changed"),
            ("F-4", "added"),
            ("F-3", "removed")
        ]
    );
    let status = env.status_of("full");
    assert_eq!(status["items"], 3);
    assert_eq!(
        status["changes"],
        serde_json::json!({"added": 0, "removed": 1, "price_changed": 0, "stock_changed": 0})
    );
}

/// Imports a good file, then `bad` (written by `write_bad`), and checks the issue and that
/// every stored column is exactly as before.
async fn guard(
    env: &TestEnv,
    name: &str,
    write_bad: impl FnOnce(&TestEnv),
    kind: &str,
    message_part: &str,
) {
    import_once(env, name, false, false).await;
    let store = env.store().await;
    let before = store.prices("acme", name).await.unwrap();
    assert!(!before.is_empty());
    write_bad(env);
    import_once(env, name, true, false).await;
    let issues = open_issues(env, name, kind);
    assert_eq!(issues.len(), 1, "{:?}", env.issues(true));
    let message = issues[0]["message"].as_str().unwrap();
    assert!(message.contains(message_part), "{message}");
    assert_eq!(
        store.prices("acme", name).await.unwrap(),
        before,
        "previous rows intact"
    );
}

const GOOD_CSV: &[u8] = b"sku,price,stock\nG-1,1.00,1\nG-2,2.00,2\nG-3,3.00,3\nG-4,4.00,4\n";
const COLUMNS: &str = "[feed.columns]\nsku = \"sku\"\nprice = \"price\"\nstock = \"stock\"\n";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_truncated_gzip_is_invalid_and_keeps_the_prices() {
    let env = TestEnv::sqlite();
    file_feed(&env, "gz", "p.csv.gz", COLUMNS);
    put(&env, "p.csv.gz", &gzip_of(GOOD_CSV));
    let truncate = |env: &TestEnv| {
        let full = gzip_of(&GOOD_CSV.repeat(50));
        put(env, "p.csv.gz", &full[..full.len() / 2]);
    };
    guard(&env, "gz", truncate, "invalid_feed", "/p.csv.gz").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_corrupt_zip_is_invalid_and_keeps_the_prices() {
    let env = TestEnv::sqlite();
    file_feed(&env, "zip", "P.ZIP", COLUMNS);
    put(&env, "P.ZIP", &zip_of(&[("P.TXT", GOOD_CSV)]));
    let corrupt = |env: &TestEnv| {
        put(
            env,
            "P.ZIP",
            b"PK\x03\x04 this is not really a zip archive at all",
        )
    };
    guard(
        &env,
        "zip",
        corrupt,
        "invalid_feed",
        "not a readable zip archive",
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_zip_bomb_stops_at_the_decompressed_limit_and_keeps_the_prices() {
    let env = TestEnv::sqlite().with_config("[feeds]\nmax_decompressed_bytes = 4096");
    file_feed(&env, "bomb", "B.ZIP", COLUMNS);
    put(&env, "B.ZIP", &zip_of(&[("B.TXT", GOOD_CSV)]));
    let bomb = |env: &TestEnv| {
        let mut big = GOOD_CSV.to_vec();
        big.extend(std::iter::repeat_n(b"G-9,9.00,9\n".as_slice(), 10_000).flatten());
        put(env, "B.ZIP", &zip_of(&[("B.TXT", &big)]));
    };
    guard(&env, "bomb", bomb, "invalid_feed", "max_decompressed_bytes").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_file_that_shrinks_too_much_is_refused_unless_the_operator_accepts_it() {
    let env = TestEnv::sqlite();
    file_feed(&env, "shrink", "s.csv", COLUMNS);
    put(&env, "s.csv", GOOD_CSV);
    let partial = |env: &TestEnv| put(env, "s.csv", b"sku,price,stock\nG-1,1.00,1\n");
    guard(&env, "shrink", partial, "invalid_feed", "a drop of 75%").await;
    let hint = &open_issues(&env, "shrink", "invalid_feed")[0];
    assert!(
        hint["message"]
            .as_str()
            .unwrap()
            .contains("--accept-shrink")
    );

    import_once(&env, "shrink", true, true).await;
    assert_eq!(
        env.store()
            .await
            .prices("acme", "shrink")
            .await
            .unwrap()
            .len(),
        1
    );
    assert!(
        env.issues(false).is_empty(),
        "the accepted import resolved the issue"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_download_over_the_size_limit_is_invalid_and_keeps_the_prices() {
    let env = TestEnv::sqlite().with_config("[feeds]\nmax_download_bytes = 200");
    file_feed(&env, "big", "big.csv", COLUMNS);
    put(&env, "big.csv", GOOD_CSV);
    let big = |env: &TestEnv| put(env, "big.csv", &GOOD_CSV.repeat(10));
    guard(&env, "big", big, "invalid_feed", "max_download_bytes").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_line_or_record_longer_than_max_line_bytes_is_invalid_and_keeps_the_prices() {
    // Memory stays bounded by the shape of the file, not only its size: one endless line,
    // or a quote that never closes over many short lines, stops at the limit.
    let env = TestEnv::sqlite().with_config("[feeds]\nmax_line_bytes = 4096");
    file_feed(&env, "long", "l.csv.gz", COLUMNS);
    put(&env, "l.csv.gz", &gzip_of(GOOD_CSV));
    let one_line = |env: &TestEnv| {
        let mut text = GOOD_CSV.to_vec();
        text.extend(std::iter::repeat_n(b'9', 1 << 20));
        put(env, "l.csv.gz", &gzip_of(&text));
    };
    guard(&env, "long", one_line, "invalid_feed", "max_line_bytes").await;

    let env = TestEnv::sqlite().with_config("[feeds]\nmax_line_bytes = 4096");
    file_feed(&env, "open", "o.csv", COLUMNS);
    put(&env, "o.csv", GOOD_CSV);
    let open_quote = |env: &TestEnv| {
        let mut text = GOOD_CSV.to_vec();
        text.extend_from_slice(b"G-5,\"5.00");
        text.extend(std::iter::repeat_n(b"1,2,3\n".as_slice(), 10_000).flatten());
        put(env, "o.csv", &text);
    };
    guard(&env, "open", open_quote, "invalid_feed", "max_line_bytes").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn more_rows_than_max_rows_is_invalid_and_keeps_the_prices() {
    let env = TestEnv::sqlite().with_config("[feeds]\nmax_rows = 4");
    file_feed(&env, "rows", "r.csv", COLUMNS);
    put(&env, "r.csv", GOOD_CSV);
    let more = |env: &TestEnv| {
        let mut text = GOOD_CSV.to_vec();
        text.extend_from_slice(b"G-5,5.00,5\n");
        put(env, "r.csv", &text);
    };
    guard(&env, "rows", more, "invalid_feed", "max_rows").await;
}
