//! Faithful fakes of syncd's third parties, served on loopback: a distributor's download
//! server, HubSpot's CRM API and Apollo.io's enrichment API, each with its real answers,
//! paging, limits and bad days. The integration tests (`tests/it`) and the benchmarks
//! (`examples/`) use the same fakes; they depend on crates only, never on syncd.

pub mod fake_apollo;
pub mod fake_distributor;
pub mod fake_hubspot;
