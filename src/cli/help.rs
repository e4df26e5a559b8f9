//! The long help of every command: what it does in full, examples, exit status. Kept apart
//! from the argument definitions so that both stay readable; [`document`] attaches it to the
//! command tree built from [`super::Cli`].

use clap::Command;

/// Exit status, as every command's help states it.
const EXIT_STATUS: &str = "\
Exit status:
  0  success
  1  an error: bad configuration or catalog, state database or queue unreachable, a command
     line syncd cannot parse; the reason is printed on stderr
  2  `syncd test-connection` ran and the connection test did not pass";

const TOP_LONG_ABOUT: &str = "\
syncd keeps the quoting platform in sync with distributor price feeds, CRMs and webhook
receivers. `syncd run` is the daemon: the scheduler and the queue workers. Every other
command is safe while the daemon runs: they share its state database and its queue.

Configuration comes from --config (default ./config.toml; without that file the built-in
defaults apply), then from SYNCD__SECTION__KEY environment variables. The catalog of tenants
and integrations is the directory [catalog] dir (default ./jobs), one TOML file per tenant.";

const TOP_AFTER_HELP: &str = "\
Examples:
  syncd run                                     the daemon, with ./config.toml and ./jobs
  syncd --config /etc/syncd/config.toml status  the state of every integration
  syncd issues --tenant acme                    what is wrong, and what to do about it
  syncd refetch acme/ingram-prices --force      fetch a fresh copy now
  syncd test-connection acme/hubspot            are the credentials accepted?
  syncd completions bash > /etc/bash_completion.d/syncd

Environment:
  SYNCD__SECTION__KEY   overrides a config key, e.g. SYNCD__QUEUE__BACKEND=redis
  RUST_LOG              overrides [log] filter, e.g. RUST_LOG=info,syncd=debug
  NOTIFY_SOCKET, WATCHDOG_USEC
                        set by systemd for the Type=notify unit in deploy/

";

/// `(subcommand path, long about, examples)`; the exit status is appended to each. Each
/// example line is indented by two spaces when shown.
const DOCS: &[(&str, &str, &str)] = &[
    (
        "run",
        "\
Runs the daemon: the scheduler turns every integration's schedule into queued jobs, and one
queue worker per job kind runs them ([queue] concurrency at a time). Logs go to stderr.

SIGTERM or SIGINT (Ctrl-C) starts a graceful shutdown: no new job starts, jobs in flight get
shutdown_grace to finish, queued jobs stay queued for the next start, and syncd exits 0.
Under systemd (Type=notify) it reports READY=1 once the workers run, STOPPING=1 when the
shutdown begins, and pings the watchdog from the scheduler loop.",
        "\
  syncd run
  syncd --config /etc/syncd/config.toml run
  SYNCD__LOG__FORMAT=json syncd run             one JSON object per log line",
    ),
    (
        "check-config",
        "\
Validates the configuration and the whole catalog without starting anything, prints a
summary (config file, state database, queue backend, tenants and integrations with their
schedules) and warns about secret environment variables that are not set. Unknown keys and
bad values are errors naming the file and the key. The systemd unit runs it before start.",
        "\
  syncd check-config
  syncd --config /etc/syncd/config.toml check-config",
    ),
    (
        "refetch",
        "\
Queues a run of TENANT/INTEGRATION now. It runs even while the integration is paused after
rejected credentials. A second request while one is still queued says so instead of
queuing another. The daemon (this node or another sharing the queue) runs it.",
        "\
  syncd refetch acme/ingram-prices
  syncd refetch acme/ingram-prices --force            even if the source looks unchanged
  syncd refetch acme/ingram-prices --accept-shrink    the distributor really dropped parts
  syncd refetch acme/hubspot --force                  a full HubSpot pass",
    ),
    (
        "test-connection",
        "\
Proves reachability and credentials of TENANT/INTEGRATION without downloading or changing
any data: an HTTP HEAD (or a one-byte ranged GET), an FTP login with SIZE and MDTM, a local
file's stat, one HubSpot call or Apollo.io's health call. Prints one line:
`T/I: ok: …`, `credentials rejected: …`, `unreachable: …`, `file missing: …` or
`misconfigured: …`. A pass resolves credentials_rejected and connection_failed issues and
lifts the pause. Exits 0 only when the test passes, 2 when it ran and did not pass.",
        "\
  syncd test-connection acme/ingram-prices
  syncd test-connection acme/hubspot --json
  syncd test-connection acme/ingram-prices || echo \"still failing\"",
    ),
    (
        "status",
        "\
One row per integration of the catalog: kind, last success, last outcome, items stored and
state (active, paused, retry due, re-fetch queued), with the last error below it. CRM
sources also count the tenant's companies by enrichment status. --json prints an array of
objects (see the README for the fields); times are RFC 3339 in UTC.",
        "\
  syncd status
  syncd status --tenant acme
  syncd status --json | jq '.[] | select(.paused)'",
    ),
    (
        "issues",
        "\
The issues log, newest first: one open issue per (tenant, integration, kind) with what
happened, what to do next, how often it happened, and when first and last. The next
success of the integration resolves it. --all includes resolved issues.",
        "\
  syncd issues
  syncd issues --tenant acme --all
  syncd issues --json | jq -r '.[] | \"\\(.tenant)/\\(.integration) \\(.kind)\"'",
    ),
    (
        "companies",
        "\
The companies CRM sources work on: import a list of the platform's companies, or show what
is stored for a tenant (from HubSpot and Apollo.io enrichment).",
        "\
  syncd companies import customers.csv --tenant acme
  syncd companies list --tenant acme",
    ),
    (
        "companies import",
        "\
Adds companies from a CSV file with a header row: a `domain` column (URLs and www. are
normalised), optional `name` and `tenant` columns. Rows without a tenant take --tenant (or
the catalog's only tenant). Existing companies keep their data. A file with bad rows is
refused whole, naming the lines.",
        "\
  syncd companies import customers.csv
  syncd companies import customers.csv --tenant acme",
    ),
    (
        "companies list",
        "\
A tenant's companies with industry, size, contacts and enrichment status (pending, enriched,
no_data: Apollo.io knows nothing about it, expected for small or new companies).",
        "\
  syncd companies list --tenant acme
  syncd companies list --tenant acme --json",
    ),
    (
        "tokens",
        "\
Tokens for the admin API and page. An operator token reaches every tenant; a tenant token
only its own tenant (another tenant's data answers 404). A token is printed once when it is
created; only its SHA-256 is stored.",
        "\
  syncd tokens create --name ops-dashboard
  syncd tokens create --name acme-admins --tenant acme
  syncd tokens list
  syncd tokens revoke ID",
    ),
    (
        "tokens create",
        "\
Creates a token and prints it once: store it where the client keeps secrets, it cannot be
shown again. Without --tenant it is an operator token (every tenant); with --tenant it sees
and acts on that tenant only. Clients send it as `Authorization: Bearer TOKEN`.",
        "\
  syncd tokens create --name ops-dashboard
  syncd tokens create --name acme-admins --tenant acme",
    ),
    (
        "tokens list",
        "\
Lists the tokens with their id, name, tenant and times; never the tokens themselves.",
        "\
  syncd tokens list
  syncd tokens list --json",
    ),
    (
        "tokens revoke",
        "\
Revokes the token with ID (as `tokens create` and `tokens list` show it); it stops working
at once.",
        "\
  syncd tokens list
  syncd tokens revoke ID",
    ),
    (
        "deliveries",
        "\
Webhook deliveries, newest first (100 unless --limit): status (pending, delivered, failed,
held), attempts, the receiver's last answer and the next attempt. --failed shows failed ones
and those retrying after a failure; --json includes each delivery's attempt log.",
        "\
  syncd deliveries
  syncd deliveries --endpoint acme/erp --failed
  syncd deliveries --json --limit 20",
    ),
    (
        "redeliver",
        "\
Sends one delivery again now, with the same webhook-id, whatever its status; the attempt is
logged as a manual one.",
        "\
  syncd deliveries --failed
  syncd redeliver DELIVERY_ID",
    ),
    (
        "replay",
        "\
Sends every event of the endpoint's types since TIME again, as new deliveries (new
webhook-ids; data.event_id stays), e.g. after the receiver lost data. TIME is RFC 3339 or a
duration ago such as 6h.",
        "\
  syncd replay acme/erp --since 6h
  syncd replay acme/erp --since 2026-11-28T00:00:00Z",
    ),
    (
        "endpoint",
        "\
Webhook endpoint maintenance. An endpoint that failed too often is disabled and its
deliveries held; `enable` brings it back.",
        "\
  syncd endpoint enable acme/erp",
    ),
    (
        "endpoint enable",
        "\
Enables a disabled endpoint, clears its failure streak and issues, and sends its held
deliveries.",
        "\
  syncd endpoint enable acme/erp",
    ),
    (
        "credentials",
        "\
The encrypted credential store: secrets (passwords, tokens, OAuth client secrets and refresh
tokens, API keys, SSH key passphrases) sealed with XChaCha20-Poly1305 under the master key
from [credentials] key_file ($CREDENTIALS_DIRECTORY/master.key by default) or key_env. The
catalog refers to one as `credential = \"tenant/name\"` instead of a `…_env` key. A master
key other than the one the store was sealed with is refused by name; nothing is lost.",
        "\
  syncd credentials set acme/ingram < password.txt
  syncd credentials list
  syncd credentials delete acme/ingram",
    ),
    (
        "credentials set",
        "\
Stores a secret for TENANT/NAME, encrypted. The secret is read from standard input (one
trailing newline dropped), or typed at a prompt that does not echo when standard input is a
terminal; never from the command line. --field defaults to the one field the integrations
using the credential read; --expires-at raises a `token_expiring` issue [credentials]
expiry_warning before that time. Then a connection test of every integration using it is
queued: a pass resolves `credentials_rejected` and lifts the pause.",
        "\
  syncd credentials set acme/ingram                        typed at a prompt
  pass show acme/hubspot | syncd credentials set acme/hubspot --field token
  syncd credentials set acme/ingram --expires-at 2027-03-01T00:00:00Z < password.txt",
    ),
    (
        "credentials list",
        "\
Lists the stored credentials: fields masked (at most the last four characters of a long
secret), expiry, last successful use and the integrations using each. Exits 1 when the
master key cannot open a stored secret.",
        "\
  syncd credentials list
  syncd credentials list --tenant acme --json",
    ),
    (
        "credentials delete",
        "\
Deletes a stored credential, every field or only --field. A secret the configured master
key cannot decrypt is deleted only with --force (it is lost).",
        "\
  syncd credentials delete acme/ingram
  syncd credentials delete acme/hubspot --field refresh_token
  syncd credentials delete acme/ingram --force",
    ),
    (
        "completions",
        "\
Prints a completion script for SHELL on stdout: subcommands, options and their values. It
needs no configuration file, so packages can generate it at build time.",
        "\
  syncd completions bash > /etc/bash_completion.d/syncd
  syncd completions zsh > \"${fpath[1]}/_syncd\"
  syncd completions fish > ~/.config/fish/completions/syncd.fish",
    ),
];

/// The long help of the subcommand at `path` (e.g. `companies import`), if written.
fn docs(path: &str) -> Option<(&'static str, &'static str)> {
    DOCS.iter()
        .find(|(p, _, _)| *p == path)
        .map(|(_, about, examples)| (*about, *examples))
}

/// Attaches the long help, examples and exit status to `cli` and all its subcommands.
pub fn document(cli: Command) -> Command {
    cli.long_about(TOP_LONG_ABOUT)
        .after_help(format!("{TOP_AFTER_HELP}{EXIT_STATUS}"))
        .mut_subcommands(|sub| document_sub(sub, ""))
}

fn document_sub(sub: Command, parent: &str) -> Command {
    let path = if parent.is_empty() {
        sub.get_name().to_string()
    } else {
        format!("{parent} {}", sub.get_name())
    };
    let sub = match docs(&path) {
        Some((about, examples)) => {
            let examples: Vec<String> = examples
                .lines()
                .map(|l| format!("  {}", l.trim_start()))
                .collect();
            sub.long_about(about).after_help(format!(
                "Examples:\n{}\n\n{EXIT_STATUS}",
                examples.join("\n")
            ))
        }
        // A command documented where it is defined keeps its own text.
        None if sub.get_after_help().is_some() => sub,
        None => sub.after_help(EXIT_STATUS),
    };
    sub.mut_subcommands(|s| document_sub(s, &path))
}
