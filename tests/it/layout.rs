//! The code's layers, as docs/ARCHITECTURE.md states them: every module of `src/` has a
//! row in its layer table, and imports only modules of lower layers.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// `module → layer` from the table rows `| N | `module` | … |`.
fn layers() -> BTreeMap<String, u32> {
    let doc = std::fs::read_to_string(root().join("docs/ARCHITECTURE.md")).unwrap();
    let mut out = BTreeMap::new();
    for line in doc.lines() {
        let cells: Vec<&str> = line.split('|').map(str::trim).collect();
        if cells.len() < 4 {
            continue;
        }
        let (Ok(layer), Some(module)) = (
            cells[1].parse::<u32>(),
            cells[2].strip_prefix('`').and_then(|m| m.strip_suffix('`')),
        ) else {
            continue;
        };
        assert!(
            out.insert(module.to_string(), layer).is_none(),
            "{module} has two rows"
        );
    }
    out
}

/// Source text without comments and string literals (so a doc example is no import).
fn strip(src: &str) -> String {
    let b = src.as_bytes();
    let mut out = String::with_capacity(src.len());
    let mut i = 0;
    while i < b.len() {
        if b[i..].starts_with(b"//") {
            while i < b.len() && b[i] != b'\n' {
                i += 1;
            }
        } else if b[i..].starts_with(b"/*") {
            let end = src[i + 2..].find("*/").map_or(b.len(), |e| i + 2 + e + 2);
            i = end;
        } else if b[i] == b'r' && (b[i..].starts_with(b"r\"") || b[i..].starts_with(b"r#")) {
            let hashes = b[i + 1..].iter().take_while(|&&c| c == b'#').count();
            if b.get(i + 1 + hashes) == Some(&b'"') {
                let close = format!("\"{}", "#".repeat(hashes));
                let start = i + 2 + hashes;
                i = src[start..]
                    .find(&close)
                    .map_or(b.len(), |e| start + e + close.len());
                out.push_str("\"\"");
            } else {
                out.push('r');
                i += 1;
            }
        } else if b[i] == b'"' {
            i += 1;
            while i < b.len() && b[i] != b'"' {
                if b[i] == b'\\' {
                    i += 1;
                }
                i += 1;
            }
            i += 1;
            out.push_str("\"\"");
        } else if b[i] == b'\'' && i + 2 < b.len() && (b[i + 2] == b'\'' || b[i + 1] == b'\\') {
            // A char literal such as '"' or '\n'; a lifetime has no closing quote.
            let end = src[i + 1..].find('\'').map_or(b.len(), |e| i + 1 + e + 1);
            i = end;
        } else {
            let c = src[i..].chars().next().unwrap();
            out.push(c);
            i += c.len_utf8();
        }
    }
    out
}

/// The top-level modules a piece of source names as `crate::x` or `crate::{x, …}`.
fn imports(src: &str) -> BTreeSet<String> {
    let ident = |s: &str| -> String {
        s.chars()
            .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
            .collect()
    };
    let mut out = BTreeSet::new();
    for (at, _) in src.match_indices("crate::") {
        if at > 0 && src[..at].ends_with(|c: char| c.is_ascii_alphanumeric() || c == '_') {
            continue; // `syncd_crate::` and the like
        }
        let rest = &src[at + "crate::".len()..];
        if let Some(group) = rest.strip_prefix('{') {
            let group = &group[..group.find('}').unwrap_or(group.len())];
            for part in group.split(',') {
                let name = ident(part.trim());
                if !name.is_empty() {
                    out.insert(name);
                }
            }
        } else {
            let name = ident(rest);
            if !name.is_empty() {
                out.insert(name);
            }
        }
    }
    out
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// `module → the modules it imports`, for every top-level module of `src/`.
fn graph() -> BTreeMap<String, BTreeSet<String>> {
    let src = root().join("src");
    let mut files = Vec::new();
    rust_files(&src, &mut files);
    let mut out: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for file in files {
        let rel = file.strip_prefix(&src).unwrap();
        let first = rel
            .components()
            .next()
            .unwrap()
            .as_os_str()
            .to_string_lossy();
        let module = first.trim_end_matches(".rs").to_string();
        if module == "lib" || module == "main" {
            continue;
        }
        let text = std::fs::read_to_string(&file).unwrap();
        let deps = out.entry(module.clone()).or_default();
        for dep in imports(&strip(&text)) {
            if dep != module {
                deps.insert(dep);
            }
        }
    }
    out
}

#[test]
fn every_module_of_src_has_a_row_in_the_layer_table_and_every_row_a_module() {
    let layers = layers();
    let modules: BTreeSet<String> = graph().into_keys().collect();
    let listed: BTreeSet<String> = layers.into_keys().collect();
    assert_eq!(
        modules, listed,
        "docs/ARCHITECTURE.md's layer table and the modules of src/ differ"
    );
}

#[test]
fn every_module_imports_only_layers_below_it() {
    let layers = layers();
    let mut wrong = Vec::new();
    for (module, deps) in graph() {
        let Some(&own) = layers.get(&module) else {
            continue;
        };
        for dep in deps {
            // Items of the crate root (`crate::redact_url`) are below every module.
            let Some(&theirs) = layers.get(&dep) else {
                continue;
            };
            if theirs >= own {
                wrong.push(format!(
                    "{module} (layer {own}) imports {dep} (layer {theirs})"
                ));
            }
        }
    }
    assert!(
        wrong.is_empty(),
        "imports that do not point down:\n  {}",
        wrong.join("\n  ")
    );
}

#[test]
fn the_import_reader_sees_paths_and_groups_but_not_comments_or_strings() {
    let src = r#"
        use crate::store::Store;
        use crate::{config::Config, outcome};
        // crate::admin is only mentioned
        let s = "crate::cli";
        let c = '"';
        fn f<'a>(x: &'a str) -> crate::jobs::Job { todo!() }
    "#;
    let found = imports(&strip(src));
    let want: BTreeSet<String> = ["store", "config", "outcome", "jobs"]
        .into_iter()
        .map(String::from)
        .collect();
    assert_eq!(found, want);
}
