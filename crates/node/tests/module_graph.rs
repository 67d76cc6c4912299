//! The modules of the node and CLI crates import each other without a circle.
//!
//! A module's production code (everything outside `#[cfg(test)]` items) is read
//! for paths through `crate::` (and `super::` from a top-level file, which is the
//! crate root): `crate::a::X`, `use crate::{a, b::Y}`, and `crate::X` for an item
//! of the root itself. A directory module (`tun/mod.rs` and the files under it)
//! counts as one module. The root (`lib.rs`) declares and re-exports every module;
//! a module that reached back into it would close a circle, so that counts too.
//! The test fails naming each circle it finds.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// The crate root's name in the graph.
const ROOT: &str = "(root)";

/// Module name -> the modules it names.
type Graph = BTreeMap<String, BTreeSet<String>>;

/// `text` without comments and string literals (which could hold `crate::`).
fn strip(text: &str) -> String {
    let b = text.as_bytes();
    let mut out = String::with_capacity(text.len());
    let mut i = 0;
    while i < b.len() {
        if b[i..].starts_with(b"//") {
            while i < b.len() && b[i] != b'\n' {
                i += 1;
            }
        } else if b[i..].starts_with(b"/*") {
            let mut depth = 0;
            while i < b.len() {
                if b[i..].starts_with(b"/*") {
                    depth += 1;
                    i += 2;
                } else if b[i..].starts_with(b"*/") {
                    depth -= 1;
                    i += 2;
                    if depth == 0 {
                        break;
                    }
                } else {
                    i += 1;
                }
            }
        } else if b[i] == b'"' {
            // Raw strings in these crates hold no quotes; a plain scan suffices.
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
            // A char literal ('"', '\n'); lifetimes are left alone.
            let end = b[i + 1..]
                .iter()
                .position(|&c| c == b'\'')
                .map_or(b.len(), |p| i + 2 + p);
            i = end;
            out.push_str("' '");
        } else {
            let c = text[i..].chars().next().unwrap_or(' ');
            out.push(c);
            i += c.len_utf8();
        }
    }
    out
}

/// `code` without the items marked `#[cfg(test)]` (an item ends at its `;` or at
/// the brace that closes its first block).
fn without_tests(code: &str) -> String {
    let mut out = String::with_capacity(code.len());
    let mut rest = code;
    while let Some(at) = rest.find("#[cfg(test)]") {
        out.push_str(&rest[..at]);
        let item = &rest[at + "#[cfg(test)]".len()..];
        let mut depth = 0usize;
        let mut end = item.len();
        for (i, c) in item.char_indices() {
            match c {
                '{' => depth += 1,
                '}' => {
                    depth = depth.saturating_sub(1);
                    if depth == 0 {
                        end = i + 1;
                        break;
                    }
                }
                ';' if depth == 0 => {
                    end = i + 1;
                    break;
                }
                _ => {}
            }
        }
        rest = &item[end..];
    }
    out.push_str(rest);
    out
}

fn ident(s: &str) -> &str {
    let end = s
        .find(|c: char| !(c.is_alphanumeric() || c == '_'))
        .unwrap_or(s.len());
    &s[..end]
}

/// The first path segment of each item in a `{ ... }` use group (`s` starts just
/// after the brace), as long as the group reaches.
fn group_heads(s: &str) -> Vec<String> {
    let mut heads = Vec::new();
    let mut depth = 0usize;
    let mut expect_head = true;
    for (i, c) in s.char_indices() {
        match c {
            '{' => depth += 1,
            '}' if depth == 0 => break,
            '}' => depth -= 1,
            ',' if depth == 0 => expect_head = true,
            c if expect_head && depth == 0 && (c.is_alphanumeric() || c == '_') => {
                heads.push(ident(&s[i..]).to_owned());
                expect_head = false;
            }
            _ => {}
        }
    }
    heads
}

/// The top-level modules (or the root) that `code` names, given the crate's
/// top-level modules.
fn references(code: &str, modules: &BTreeSet<String>, top_level_file: bool) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    let mut heads = Vec::new();
    for prefix in ["crate::", "super::"] {
        if prefix == "super::" && !top_level_file {
            continue;
        }
        let mut rest = code;
        while let Some(at) = rest.find(prefix) {
            let before = rest[..at].chars().next_back();
            let after = &rest[at + prefix.len()..];
            rest = after;
            if before.is_some_and(|c| c.is_alphanumeric() || c == '_' || c == ':') {
                continue;
            }
            if let Some(group) = after.strip_prefix('{') {
                heads.extend(group_heads(group));
            } else {
                heads.push(ident(after).to_owned());
            }
        }
    }
    for head in heads {
        if head == "self" || head.is_empty() {
            continue;
        }
        if modules.contains(&head) {
            out.insert(head);
        } else {
            out.insert(ROOT.to_owned());
        }
    }
    out
}

/// Whether `code` holds a path through `module` (`module::`), not as part of a longer
/// name or path.
fn names(code: &str, module: &str) -> bool {
    let needle = format!("{module}::");
    code.match_indices(&needle).any(|(at, _)| {
        !code[..at]
            .chars()
            .next_back()
            .is_some_and(|c| c.is_alphanumeric() || c == '_' || c == ':')
    })
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        panic!("cannot read {}", dir.display());
    };
    for entry in entries.flatten() {
        let path = entry.path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// The import graph of the crate whose sources are in `src`, with `root` its root
/// file (`lib.rs`).
fn graph(src: &Path, root: &str) -> Graph {
    let mut files = Vec::new();
    rust_files(src, &mut files);
    // A top-level module is a file beside the root or a directory.
    let module_of = |path: &Path| -> String {
        let rel = path.strip_prefix(src).unwrap_or(path);
        let first = rel.components().next().map_or_else(String::new, |c| {
            c.as_os_str().to_string_lossy().into_owned()
        });
        if rel.components().count() == 1 {
            if first == root {
                ROOT.to_owned()
            } else {
                first.trim_end_matches(".rs").to_owned()
            }
        } else {
            first
        }
    };
    let modules: BTreeSet<String> = files
        .iter()
        .map(|f| module_of(f))
        .filter(|m| m != ROOT)
        .collect();
    let mut graph = Graph::new();
    for file in &files {
        let module = module_of(file);
        if module == "main" || module == "bin" {
            continue;
        }
        let Ok(text) = std::fs::read_to_string(file) else {
            panic!("cannot read {}", file.display());
        };
        let top_level_file = file.parent() == Some(src);
        let code = without_tests(&strip(&text));
        let mut refs = references(&code, &modules, top_level_file && module != ROOT);
        if module == ROOT {
            // The root names its modules by their bare names.
            refs.extend(modules.iter().filter(|m| names(&code, m)).cloned());
        }
        let edges = graph.entry(module.clone()).or_default();
        for r in refs {
            if r != module {
                edges.insert(r);
            }
        }
    }
    // Modules compiled only for tests are not part of the graph.
    let root_text = std::fs::read_to_string(src.join(root)).unwrap_or_default();
    let test_only: Vec<String> = root_text
        .split("#[cfg(test)]")
        .skip(1)
        .filter_map(|s| s.trim_start().strip_prefix("mod "))
        .map(|s| ident(s).to_owned())
        .collect();
    for m in &test_only {
        graph.remove(m);
    }
    for edges in graph.values_mut() {
        edges.retain(|e| !test_only.contains(e));
    }
    graph
}

/// Every elementary circle's nodes, found by a depth-first search from each node
/// (the graphs are small).
fn circles(graph: &Graph) -> Vec<Vec<String>> {
    fn walk(
        graph: &Graph,
        start: &str,
        at: &str,
        path: &mut Vec<String>,
        found: &mut BTreeSet<Vec<String>>,
    ) {
        for next in graph.get(at).into_iter().flatten() {
            if next == start {
                // Report each circle once, from its smallest name.
                let mut c = path.clone();
                let min = c
                    .iter()
                    .enumerate()
                    .min_by_key(|(_, n)| *n)
                    .map_or(0, |(i, _)| i);
                c.rotate_left(min);
                found.insert(c);
            } else if !path.contains(next) && next.as_str() > start {
                path.push(next.clone());
                walk(graph, start, next, path, found);
                path.pop();
            }
        }
    }
    let mut found = BTreeSet::new();
    for start in graph.keys() {
        let mut path = vec![start.clone()];
        walk(graph, start, start, &mut path, &mut found);
    }
    found.into_iter().collect()
}

fn check(crate_dir: &str) {
    let src = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join(crate_dir)
        .join("src");
    let graph = graph(&src, "lib.rs");
    assert!(graph.len() > 3, "read no modules from {}", src.display());
    let found = circles(&graph);
    let text: Vec<String> = found
        .iter()
        .map(|c| format!("{} -> {}", c.join(" -> "), c[0]))
        .collect();
    assert!(
        found.is_empty(),
        "{crate_dir}: modules import each other in a circle:\n  {}",
        text.join("\n  ")
    );
}

#[test]
fn the_node_crate_has_no_import_circle() {
    check(".");
}

#[test]
fn the_cli_crate_has_no_import_circle() {
    check("../cli");
}

#[test]
fn the_checker_sees_circles() {
    let dir = std::env::temp_dir().join(format!("module-graph-{}", std::process::id()));
    let src = dir.join("src");
    std::fs::create_dir_all(src.join("d")).unwrap();
    let write = |name: &str, text: &str| std::fs::write(src.join(name), text).unwrap();
    write(
        "lib.rs",
        "mod a;\nmod b;\nmod c;\nmod d;\n#[cfg(test)]\nmod t;\npub use a::A;\n",
    );
    write(
        "a.rs",
        "use crate::{b::{B, Bb}, c};\n// crate::d in a comment\n",
    );
    write(
        "b.rs",
        "use crate::d::D;\n#[cfg(test)]\nmod tests { use crate::a::A; }\n",
    );
    write("c.rs", "pub(crate) fn f() -> crate::Root { todo!() }\n");
    write("d/mod.rs", "mod e;\n");
    write("d/e.rs", "use crate::a::A; use super::E;\n");
    write("t.rs", "use crate::a::A;\n");
    let g = graph(&src, "lib.rs");
    std::fs::remove_dir_all(&dir).unwrap();
    let edges = |m: &str| g[m].iter().cloned().collect::<Vec<_>>().join(",");
    assert_eq!(edges("a"), "b,c");
    assert_eq!(edges("b"), "d");
    assert_eq!(edges("c"), ROOT);
    assert_eq!(edges("d"), "a");
    assert_eq!(edges(ROOT), "a");
    assert!(!g.contains_key("t"));
    let found = circles(&g);
    let names: Vec<String> = found.iter().map(|c| c.join(">")).collect();
    assert_eq!(names, vec!["(root)>a>c", "a>b>d"], "{names:?}");
}
