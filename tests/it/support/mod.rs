//! What the scenarios share: the test environment and daemon helpers, the headless
//! browser driver, and the fakes of third parties (from the `syncd-testkit` crate, which
//! the benchmarks use too).

pub mod cdp;
pub mod helpers;

pub use syncd_testkit::{fake_apollo, fake_distributor, fake_hubspot};
