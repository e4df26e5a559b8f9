//! The command line as an operator meets it: help with examples on every command, shell
//! completions, exit statuses.

use std::process::{Command, Output};

/// Runs the binary in an empty directory: no config file, no catalog.
fn syncd(args: &[&str]) -> Output {
    let dir = tempfile::tempdir().unwrap();
    Command::new(env!("CARGO_BIN_EXE_syncd"))
        .args(args)
        .current_dir(dir.path())
        .env_remove("RUST_LOG")
        .output()
        .unwrap()
}

/// Every subcommand path (`run`, `companies import`, …) except clap's own `help`, and
/// whether it has a long description besides its one-line summary.
fn paths(cmd: &clap::Command, parent: &[String], out: &mut Vec<(Vec<String>, bool)>) {
    for sub in cmd.get_subcommands().filter(|s| s.get_name() != "help") {
        let mut path = parent.to_vec();
        path.push(sub.get_name().to_string());
        out.push((path.clone(), sub.get_long_about().is_some()));
        paths(sub, &path, out);
    }
}

#[test]
fn shell_completions_for_bash_zsh_and_fish_are_generated_without_a_config_file() {
    for shell in ["bash", "zsh", "fish"] {
        let out = syncd(&["completions", shell]);
        assert!(
            out.status.success(),
            "{shell}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let script = String::from_utf8(out.stdout).unwrap();
        assert!(!script.trim().is_empty(), "{shell}: empty script");
        for word in ["syncd", "test-connection", "refetch", "completions"] {
            assert!(script.contains(word), "{shell}: no {word} in the script");
        }
    }
    // Where bash is installed, the script loads and registers a completion.
    let script = syncd(&["completions", "bash"]).stdout;
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("syncd.bash");
    std::fs::write(&file, script).unwrap();
    if let Ok(out) = Command::new("bash")
        .arg("-c")
        .arg(format!("source {} && complete -p syncd", file.display()))
        .output()
    {
        assert!(
            out.status.success() && String::from_utf8_lossy(&out.stdout).contains("syncd"),
            "bash cannot load the completion: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

#[test]
fn every_command_has_a_long_help_with_examples_and_the_exit_status() {
    let top = syncd(&["--help"]);
    assert!(top.status.success());
    let text = String::from_utf8(top.stdout).unwrap();
    for needle in [
        "Examples:",
        "Exit status:",
        "SYNCD__SECTION__KEY",
        "2  `syncd test-connection`",
    ] {
        assert!(
            text.contains(needle),
            "syncd --help lacks {needle}:\n{text}"
        );
    }
    let mut all = Vec::new();
    paths(&syncd::cli::command(), &[], &mut all);
    assert!(all.len() >= 9, "{all:?}");
    for (path, long_about) in all {
        assert!(
            long_about,
            "`syncd {}` has no long description",
            path.join(" ")
        );
        let mut args: Vec<&str> = path.iter().map(String::as_str).collect();
        args.push("--help");
        let out = syncd(&args);
        let help = String::from_utf8(out.stdout).unwrap();
        assert!(out.status.success(), "syncd {args:?}");
        assert!(
            help.contains("Examples:\n  syncd "),
            "`syncd {}` has no examples:\n{help}",
            path.join(" ")
        );
        assert!(
            help.contains("Exit status:"),
            "`syncd {}` does not state its exit status:\n{help}",
            path.join(" ")
        );
    }
}

#[test]
fn a_command_line_that_cannot_be_parsed_exits_1_and_help_and_version_exit_0() {
    for args in [
        &["no-such-command"][..],
        &["refetch"],
        &["completions", "tcsh"],
    ] {
        let out = syncd(args);
        assert_eq!(out.status.code(), Some(1), "syncd {args:?}");
        assert!(
            String::from_utf8_lossy(&out.stderr).contains("error:"),
            "syncd {args:?} says why"
        );
    }
    for args in [&["--help"][..], &["-h"], &["--version"], &["help", "run"]] {
        let out = syncd(args);
        assert_eq!(out.status.code(), Some(0), "syncd {args:?}");
        assert!(!out.stdout.is_empty(), "syncd {args:?}");
    }
}
