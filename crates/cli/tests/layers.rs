//! The layering ARCHITECTURE.md promises, checked on the source: in every crate, at every
//! folder, no module imports one that imports it back (directly or through others); and every
//! file of an integration-test folder is a module of its one binary.
//!
//! Cheap on purpose (no compiler, no dependency): imports are read from the text (`use` paths and
//! `crate::`/`super::`/`self::` paths in code, comments and strings left out) and resolved to the
//! module that defines their longest prefix. Test-only modules (`#[cfg(test)] mod …;`) are left
//! out: a test may use whatever it tests.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use crate::support::cli::root;

type ModPath = Vec<String>;

/// The crates' source folders.
const CRATES: [&str; 5] = ["protocol", "runtime", "relay", "cli", "testkit"];

#[test]
fn no_module_imports_one_that_imports_it_back() {
    let mut circles = Vec::new();
    for krate in CRATES {
        let src = root().join("crates").join(krate).join("src");
        let modules = modules_of(&src);
        assert!(
            modules.len() > 1 || krate == "testkit",
            "{krate}: no modules read"
        );
        let edges = imports(&modules);
        // At every folder: its own file and its children (each child folder as one).
        let folders: BTreeSet<ModPath> = modules
            .keys()
            .flat_map(|m| (0..m.len()).map(|n| m[..n].to_vec()))
            .collect();
        for folder in folders {
            let node = |m: &ModPath| -> Option<String> {
                if !m.starts_with(&folder) {
                    return None;
                }
                Some(
                    m.get(folder.len())
                        .cloned()
                        .unwrap_or_else(|| "(mod)".into()),
                )
            };
            let mut graph: BTreeMap<String, BTreeMap<String, String>> = BTreeMap::new();
            for ((from, to), why) in &edges {
                if let (Some(a), Some(b)) = (node(from), node(to)) {
                    if a != b {
                        graph
                            .entry(a)
                            .or_default()
                            .entry(b)
                            .or_insert_with(|| why.clone());
                    }
                }
            }
            if let Some(cycle) = find_cycle(&graph) {
                let place = if folder.is_empty() {
                    format!("crates/{krate}/src")
                } else {
                    format!("crates/{krate}/src/{}", folder.join("/"))
                };
                let steps: Vec<String> = cycle
                    .windows(2)
                    .map(|w| format!("{} -> {} ({})", w[0], w[1], graph[&w[0]][&w[1]]))
                    .collect();
                circles.push(format!("{place}: {}", steps.join(", ")));
            }
        }
    }
    assert!(
        circles.is_empty(),
        "module circles (make the lower module not import the higher one; ARCHITECTURE.md gives the layers):\n{}",
        circles.join("\n")
    );
}

#[test]
fn every_integration_test_file_is_a_module_of_the_one_binary() {
    for krate in ["cli", "relay"] {
        let tests = root().join("crates").join(krate).join("tests");
        let main = std::fs::read_to_string(tests.join("main.rs")).expect("tests/main.rs");
        for entry in std::fs::read_dir(&tests).expect("tests folder") {
            let path = entry.expect("entry").path();
            let Some(name) = path.file_stem().and_then(|n| n.to_str()) else {
                continue;
            };
            if path.extension().is_some_and(|e| e == "rs") && name != "main" {
                assert!(
                    main.lines().any(|l| l.trim_end() == format!("mod {name};")),
                    "crates/{krate}/tests/{name}.rs is not declared in tests/main.rs: it would never run (autotests is off)"
                );
            }
        }
    }
}

/// Every module of a crate (not test-only), by path, with its file's text.
fn modules_of(src: &Path) -> BTreeMap<ModPath, String> {
    let mut out = BTreeMap::new();
    let root_file = if src.join("lib.rs").exists() {
        src.join("lib.rs")
    } else {
        src.join("main.rs")
    };
    walk(&root_file, Vec::new(), &mut out);
    out
}

fn walk(file: &Path, path: ModPath, out: &mut BTreeMap<ModPath, String>) {
    let text = std::fs::read_to_string(file).unwrap_or_default();
    let dir: PathBuf = match file.file_name().and_then(|n| n.to_str()) {
        Some("lib.rs" | "main.rs" | "mod.rs") => file.parent().expect("parent").to_path_buf(),
        _ => file.with_extension(""),
    };
    let lines: Vec<&str> = text.lines().collect();
    for (i, line) in lines.iter().enumerate() {
        let l = line.trim();
        let decl = l
            .strip_prefix("pub(crate) mod ")
            .or_else(|| l.strip_prefix("pub(super) mod "))
            .or_else(|| l.strip_prefix("pub mod "))
            .or_else(|| l.strip_prefix("mod "));
        let Some(name) = decl.and_then(|d| d.strip_suffix(';')) else {
            continue;
        };
        if i > 0 && lines[i - 1].trim() == "#[cfg(test)]" {
            continue;
        }
        let mut child = path.clone();
        child.push(name.to_string());
        let file = [
            dir.join(format!("{name}.rs")),
            dir.join(name).join("mod.rs"),
        ]
        .into_iter()
        .find(|f| f.exists());
        if let Some(f) = file {
            walk(&f, child, out);
        }
    }
    out.insert(path, text);
}

/// (importer, imported) → an example of the import.
fn imports(modules: &BTreeMap<ModPath, String>) -> BTreeMap<(ModPath, ModPath), String> {
    let mut edges = BTreeMap::new();
    for (own, text) in modules {
        let code = without_inline_tests(&strip(text));
        let children: BTreeSet<&str> = modules
            .keys()
            .filter(|m| m.len() == own.len() + 1 && m.starts_with(own))
            .map(|m| m[own.len()].as_str())
            .collect();
        for path in paths(&code) {
            let (mut base, rest): (ModPath, &[String]) = match path.first().map(String::as_str) {
                Some("crate") => (Vec::new(), &path[1..]),
                Some("self") => (own.clone(), &path[1..]),
                Some("super") => {
                    let ups = path.iter().take_while(|s| *s == "super").count();
                    if ups > own.len() {
                        continue;
                    }
                    (own[..own.len() - ups].to_vec(), &path[ups..])
                }
                Some(first) if children.contains(first) => (own.clone(), &path[..]),
                _ => continue,
            };
            // The longest prefix that is a module.
            let mut target = base.clone();
            for seg in rest {
                base.push(seg.clone());
                if modules.contains_key(&base) {
                    target = base.clone();
                } else {
                    break;
                }
            }
            if &target != own {
                edges
                    .entry((own.clone(), target))
                    .or_insert_with(|| path.join("::"));
            }
        }
    }
    edges
}

/// The code without its inline `#[cfg(test)] mod … { … }` blocks.
fn without_inline_tests(code: &str) -> String {
    let mut out = String::with_capacity(code.len());
    let mut rest = code;
    while let Some(at) = rest.find("#[cfg(test)]") {
        out.push_str(&rest[..at]);
        let after = &rest[at + "#[cfg(test)]".len()..];
        let head = after.trim_start();
        let Some(open) = head.find('{').filter(|&o| {
            let decl = head[..o].trim();
            (decl.starts_with("mod ") || decl.contains(" mod ")) && !decl.contains(';')
        }) else {
            out.push_str("#[cfg(test)]");
            rest = after;
            continue;
        };
        let body = &head[open..];
        let mut depth = 0usize;
        let mut end = body.len();
        for (i, c) in body.char_indices() {
            match c {
                '{' => depth += 1,
                '}' => {
                    depth -= 1;
                    if depth == 0 {
                        end = i + 1;
                        break;
                    }
                }
                _ => {}
            }
        }
        rest = &body[end..];
    }
    out.push_str(rest);
    out
}

/// The text without comments and string contents.
fn strip(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '/' if chars.peek() == Some(&'/') => {
                for n in chars.by_ref() {
                    if n == '\n' {
                        out.push('\n');
                        break;
                    }
                }
            }
            '"' => {
                let mut escaped = false;
                for n in chars.by_ref() {
                    if escaped {
                        escaped = false;
                    } else if n == '\\' {
                        escaped = true;
                    } else if n == '"' {
                        break;
                    }
                }
                out.push_str("\"\"");
            }
            '\'' => {
                // A char literal ('"', '\'') or a lifetime: keep lifetimes, drop chars.
                let mut look = chars.clone();
                let a = look.next();
                let b = look.next();
                let c2 = look.next();
                match (a, b, c2) {
                    (Some('\\'), Some(_), Some('\'')) => {
                        chars.next();
                        chars.next();
                        chars.next();
                    }
                    (Some(_), Some('\''), _) => {
                        chars.next();
                        chars.next();
                    }
                    _ => out.push(c),
                }
            }
            _ => out.push(c),
        }
    }
    out
}

/// Every path in code that may name a module: `a::b::c`, with `use` groups (`a::{b, c::d}`)
/// expanded.
fn paths(code: &str) -> Vec<Vec<String>> {
    let bytes: Vec<char> = code.chars().collect();
    let mut out = Vec::new();
    let mut i = 0;
    let is_ident = |c: char| c.is_ascii_alphanumeric() || c == '_';
    while i < bytes.len() {
        if is_ident(bytes[i]) && (i == 0 || !(is_ident(bytes[i - 1]) || bytes[i - 1] == ':')) {
            let mut prefix = Vec::new();
            let mut j = i;
            read_path(&bytes, &mut j, &mut prefix, &mut out);
            i = j.max(i + 1);
        } else {
            i += 1;
        }
    }
    out
}

fn read_path(b: &[char], j: &mut usize, prefix: &mut Vec<String>, out: &mut Vec<Vec<String>>) {
    let is_ident = |c: char| c.is_ascii_alphanumeric() || c == '_';
    let start_len = prefix.len();
    loop {
        let s = *j;
        while *j < b.len() && is_ident(b[*j]) {
            *j += 1;
        }
        if *j == s {
            break;
        }
        prefix.push(b[s..*j].iter().collect());
        if *j + 1 < b.len() && b[*j] == ':' && b[*j + 1] == ':' {
            *j += 2;
            if *j < b.len() && b[*j] == '{' {
                *j += 1;
                loop {
                    while *j < b.len() && b[*j].is_whitespace() {
                        *j += 1;
                    }
                    if *j >= b.len() || b[*j] == '}' {
                        *j += 1;
                        break;
                    }
                    let mut inner = prefix.clone();
                    read_path(b, j, &mut inner, out);
                    while *j < b.len() && b[*j] != ',' && b[*j] != '}' {
                        *j += 1;
                    }
                    if *j < b.len() && b[*j] == ',' {
                        *j += 1;
                    }
                }
                prefix.truncate(start_len);
                return;
            }
            continue;
        }
        break;
    }
    if prefix.len() > 1 {
        out.push(prefix.clone());
    }
    prefix.truncate(start_len);
}

/// A cycle in the graph, as its nodes with the first repeated at the end.
fn find_cycle(graph: &BTreeMap<String, BTreeMap<String, String>>) -> Option<Vec<String>> {
    fn visit(
        n: &str,
        graph: &BTreeMap<String, BTreeMap<String, String>>,
        stack: &mut Vec<String>,
        done: &mut BTreeSet<String>,
    ) -> Option<Vec<String>> {
        if let Some(at) = stack.iter().position(|s| s == n) {
            let mut cycle = stack[at..].to_vec();
            cycle.push(n.to_string());
            return Some(cycle);
        }
        if done.contains(n) {
            return None;
        }
        stack.push(n.to_string());
        for next in graph.get(n).into_iter().flat_map(|m| m.keys()) {
            if let Some(c) = visit(next, graph, stack, done) {
                return Some(c);
            }
        }
        stack.pop();
        done.insert(n.to_string());
        None
    }
    let mut done = BTreeSet::new();
    for n in graph.keys() {
        if let Some(c) = visit(n, graph, &mut Vec::new(), &mut done) {
            return Some(c);
        }
    }
    None
}
