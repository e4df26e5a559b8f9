//! The feed parser must never panic, whatever the bytes and whatever the layout:
//! `cargo fuzz run parse` (see README, "Fuzzing").
#![no_main]

use libfuzzer_sys::fuzz_target;
use syncd::catalog::{ColumnRef, Columns, FeedFormat, Layout};

fuzz_target!(|data: &[u8]| {
    // The first byte picks the layout and options, the rest is the file.
    let Some((&knobs, text)) = data.split_first() else { return };
    let format = FeedFormat {
        delimiter: [b',', b';', b'|', b'~', b'\t'][usize::from(knobs % 5)],
        header: knobs & 0x08 != 0,
        decimal: if knobs & 0x10 != 0 { b',' } else { b'.' },
        layout: if knobs & 0x20 != 0 { Layout::Fixed } else { Layout::Delimited },
        ..FeedFormat::default()
    };
    let fixed = format.layout == Layout::Fixed;
    let col = |n: usize| if fixed { ColumnRef::Span { start: n * 4 + 1, length: 4 } } else { ColumnRef::Position(n + 1) };
    let columns = Columns {
        sku: col(0),
        price: col(1),
        stock: Some(col(2)),
        mpn: None,
        ean: None,
        description: Some(col(3)),
        currency: None,
        action: (knobs & 0x40 != 0).then(|| col(4)),
    };
    let _ = syncd::feeds::parse::parse(text, &format, &columns, 64, |_| true);
});
