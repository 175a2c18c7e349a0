//! The house rules of CONTRIBUTING.md that a machine can check: no source
//! file over 800 lines, no function over 120 lines without a comment saying
//! why it stays whole, no import circle between a crate's modules.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

const FILE_LINES_MAX: usize = 800;
const FN_LINES_MAX: usize = 120;
/// What a comment above a long function says to keep it whole.
const WHOLE: &str = "stays whole";

fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// Every `.rs` file under `dir`, sorted.
fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    let mut entries: Vec<PathBuf> = entries.flatten().map(|e| e.path()).collect();
    entries.sort();
    for p in entries {
        if p.is_dir() {
            rust_files(&p, out);
        } else if p.extension().is_some_and(|e| e == "rs") {
            out.push(p);
        }
    }
}

/// Each crate's `src` directory and its source files (test files apart).
fn crates() -> Vec<(String, PathBuf, Vec<PathBuf>)> {
    let mut out = Vec::new();
    let mut dirs: Vec<PathBuf> = std::fs::read_dir(workspace().join("crates"))
        .expect("crates/")
        .flatten()
        .map(|e| e.path())
        .collect();
    dirs.sort();
    for d in dirs {
        let src = d.join("src");
        let mut files = Vec::new();
        rust_files(&src, &mut files);
        files.retain(|f| !is_test_file(f));
        let name = d.file_name().unwrap().to_string_lossy().into_owned();
        out.push((name, src, files));
    }
    out
}

fn is_test_file(f: &Path) -> bool {
    f.file_name().is_some_and(|n| n == "tests.rs")
        || f.components().any(|c| c.as_os_str() == "tests")
}

/// A line with string and char literals emptied and `//` comments cut, so
/// that braces inside them are not counted. Raw strings that span lines
/// are tracked by the caller (`in_raw`).
fn code_of(line: &str, in_raw: &mut Option<usize>) -> String {
    let b = line.as_bytes();
    let mut out = String::new();
    let mut i = 0;
    while i < b.len() {
        if let Some(hashes) = *in_raw {
            // Inside r#"...", until `"` followed by the same number of `#`.
            if b[i] == b'"'
                && b[i + 1..]
                    .iter()
                    .take(hashes)
                    .filter(|&&c| c == b'#')
                    .count()
                    == hashes
            {
                *in_raw = None;
                i += 1 + hashes;
            } else {
                i += 1;
            }
            continue;
        }
        match b[i] {
            b'/' if b.get(i + 1) == Some(&b'/') => break,
            b'r' if matches!(b.get(i + 1), Some(b'"') | Some(b'#'))
                && (i == 0 || !(b[i - 1].is_ascii_alphanumeric() || b[i - 1] == b'_')) =>
            {
                let hashes = b[i + 1..].iter().take_while(|&&c| c == b'#').count();
                if b.get(i + 1 + hashes) == Some(&b'"') {
                    *in_raw = Some(hashes);
                    i += 2 + hashes;
                } else {
                    out.push('r');
                    i += 1;
                }
            }
            b'"' => {
                i += 1;
                while i < b.len() && b[i] != b'"' {
                    i += if b[i] == b'\\' { 2 } else { 1 };
                }
                // A string left open continues on the next line: rare in
                // this tree, and only ever without braces.
                i += 1;
                out.push_str("\"\"");
            }
            b'\'' if b.get(i + 2) == Some(&b'\'') => i += 3,
            b'\'' if b.get(i + 1) == Some(&b'\\') => {
                i += 2;
                while i < b.len() && b[i] != b'\'' {
                    i += 1;
                }
                i += 1;
            }
            c => {
                out.push(c as char);
                i += 1;
            }
        }
    }
    out
}

/// The name of the function a line declares, if it does.
fn fn_name(code: &str) -> Option<&str> {
    let t = code.trim_start();
    let mut words = t.split_whitespace().peekable();
    while let Some(w) = words.next() {
        match w {
            "pub" | "async" | "unsafe" | "const" | "extern" => continue,
            w if w.starts_with("pub(") => continue,
            "fn" => {
                let name = words.next()?;
                let end = name.find(|c: char| !(c.is_alphanumeric() || c == '_'));
                return Some(&name[..end.unwrap_or(name.len())]);
            }
            _ => return None,
        }
    }
    None
}

/// Functions over the bound without a comment above saying why they stay
/// whole, as "file:line name (n lines)".
fn long_functions(file: &Path) -> Vec<String> {
    let text = std::fs::read_to_string(file).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    let mut raw = None;
    let code: Vec<String> = lines.iter().map(|l| code_of(l, &mut raw)).collect();
    let mut out = Vec::new();
    for (start, c) in code.iter().enumerate() {
        let Some(name) = fn_name(c) else { continue };
        let (mut depth, mut opened, mut end) = (0i64, false, None);
        for (j, c) in code.iter().enumerate().skip(start) {
            for ch in c.chars() {
                match ch {
                    '{' => {
                        depth += 1;
                        opened = true;
                    }
                    '}' => depth -= 1,
                    _ => {}
                }
            }
            if opened && depth <= 0 {
                end = Some(j);
                break;
            }
            if !opened && c.trim_end().ends_with(';') {
                break;
            }
        }
        let Some(end) = end else { continue };
        let n = end - start + 1;
        let explained = lines[..start]
            .iter()
            .rev()
            .take_while(|l| {
                let t = l.trim_start();
                t.starts_with("//") || t.starts_with("#[")
            })
            .any(|l| l.contains(WHOLE));
        if n > FN_LINES_MAX && !explained {
            out.push(format!(
                "{}:{} {name} ({n} lines)",
                file.display(),
                start + 1
            ));
        }
    }
    out
}

#[test]
fn no_source_file_is_over_800_lines() {
    let mut long = Vec::new();
    for (_, _, files) in crates() {
        for f in files {
            let n = std::fs::read_to_string(&f).unwrap().lines().count();
            if n > FILE_LINES_MAX {
                long.push(format!("{} ({n} lines)", f.display()));
            }
        }
    }
    assert!(long.is_empty(), "split these by concern: {long:#?}");
}

#[test]
fn no_function_is_over_120_lines_without_saying_why() {
    let long: Vec<String> = crates()
        .into_iter()
        .flat_map(|(_, _, files)| files)
        .flat_map(|f| long_functions(&f))
        .collect();
    assert!(
        long.is_empty(),
        "split these into named steps, or say above one why it {WHOLE}: {long:#?}"
    );
}

/// The crate's top-level module a file belongs to (`""` for the root).
fn top_module(src: &Path, file: &Path) -> String {
    let rel = file.strip_prefix(src).unwrap();
    let first = rel
        .components()
        .next()
        .unwrap()
        .as_os_str()
        .to_string_lossy();
    let m = first.trim_end_matches(".rs");
    match m {
        "lib" | "main" => String::new(),
        m => m.to_owned(),
    }
}

/// Top-level modules each top-level module names with `crate::`.
fn import_graph(src: &Path, files: &[PathBuf]) -> BTreeMap<String, BTreeSet<String>> {
    let mut graph: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for f in files {
        let me = top_module(src, f);
        let text = std::fs::read_to_string(f).unwrap();
        let mut raw = None;
        let mut deps = BTreeSet::new();
        for line in text.lines() {
            let code = code_of(line, &mut raw);
            let mut rest = code.as_str();
            while let Some(i) = rest.find("crate::") {
                rest = &rest[i + "crate::".len()..];
                let name: String = rest
                    .chars()
                    .take_while(|c| c.is_alphanumeric() || *c == '_')
                    .collect();
                if !name.is_empty() && name != me {
                    deps.insert(name);
                }
            }
        }
        graph.entry(me).or_default().extend(deps);
    }
    let modules: BTreeSet<String> = graph.keys().cloned().collect();
    for deps in graph.values_mut() {
        deps.retain(|d| modules.contains(d));
    }
    graph
}

/// A circle through `from`, if there is one: the modules along it.
fn circle_through(graph: &BTreeMap<String, BTreeSet<String>>, from: &str) -> Option<Vec<String>> {
    let mut stack = vec![(from.to_owned(), vec![from.to_owned()])];
    let mut seen = BTreeSet::new();
    while let Some((m, path)) = stack.pop() {
        for d in graph.get(&m).into_iter().flatten() {
            if d == from {
                let mut p = path.clone();
                p.push(from.to_owned());
                return Some(p);
            }
            if d.is_empty() || !seen.insert(d.clone()) {
                continue;
            }
            let mut p = path.clone();
            p.push(d.clone());
            stack.push((d.clone(), p));
        }
    }
    None
}

#[test]
fn no_import_circle_between_a_crates_modules() {
    let mut circles = Vec::new();
    for (name, src, files) in crates() {
        let graph = import_graph(&src, &files);
        for m in graph.keys().filter(|m| !m.is_empty()) {
            if let Some(c) = circle_through(&graph, m) {
                circles.push(format!("{name}: {}", c.join(" -> ")));
            }
        }
    }
    assert!(circles.is_empty(), "import circles: {circles:#?}");
}

#[test]
fn the_checks_can_fail() {
    // A function of 121 lines and a circle are caught; a comment saying
    // why keeps a long function whole.
    let dir = tempfile::tempdir().unwrap();
    let f = dir.path().join("a.rs");
    let body = "    let _ = 1;\n".repeat(FN_LINES_MAX - 1);
    std::fs::write(&f, format!("fn long() {{\n{body}}}\n")).unwrap();
    assert_eq!(long_functions(&f).len(), 1);
    std::fs::write(
        &f,
        format!("// It {WHOLE}: one table.\nfn long() {{\n{body}}}\n"),
    )
    .unwrap();
    assert!(long_functions(&f).is_empty());
    let short = "    let _ = 1;\n".repeat(FN_LINES_MAX - 2);
    std::fs::write(&f, format!("fn short() {{\n{short}}}\n")).unwrap();
    assert!(long_functions(&f).is_empty());
    let b = dir.path().join("b.rs");
    std::fs::write(&f, "use crate::b::X;\nconst S: &str = \"crate::c\";\n").unwrap();
    std::fs::write(&b, "use crate::a::Y;\n").unwrap();
    let graph = import_graph(dir.path(), &[f, b]);
    assert_eq!(circle_through(&graph, "a").unwrap(), ["a", "b", "a"]);
}
