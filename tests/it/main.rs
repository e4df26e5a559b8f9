//! Integration tests: the real `syncd` binary against real SQLite, a real Redis and fake
//! third parties on loopback. One binary, so the build links once.

mod admin;
mod cli_help;
mod config_errors;
mod connection_tests;
mod credentials;
mod crm;
mod example;
mod fakes_selftest;
mod feed_formats;
mod feed_http;
mod ftp;
mod layout;
mod lifecycle;
mod maintenance;
mod metrics;
mod multinode;
mod redis_nodes;
mod retries;
mod sftp;
mod support;
mod systemd;
mod webhooks;
