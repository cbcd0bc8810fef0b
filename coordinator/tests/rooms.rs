//! The coordinator's rooms stay as docs/architecture.md draws them: a file imports
//! only from its own room or the rooms below it, and no circle of imports joins more
//! than two files.
//!
//! Read from the source, not from the compiler: a path is a `crate::…` or `super::…`
//! path in code (comments and `#[cfg(test)]` modules left out, since tests may reach
//! anywhere). Each path is resolved to the file that defines the deepest module it
//! names.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// From the bottom up; a file may import from its own room and any before it.
const ROOMS: [&str; 6] = ["error", "state", "store", "stage", "ops", "service"];

#[test]
fn every_file_imports_only_its_own_room_or_the_rooms_below() {
    let graph = import_graph();
    let mut upward = Vec::new();
    for (file, imports) in &graph {
        for imported in imports {
            if rank(imported) > rank(file) {
                upward.push(format!("{file} imports {imported}"));
            }
        }
    }
    assert!(
        upward.is_empty(),
        "imports that go up a room:\n{}",
        upward.join("\n")
    );
}

#[test]
fn no_circle_of_imports_joins_more_than_two_files() {
    let graph = import_graph();
    let circles: Vec<Vec<String>> = strongly_connected(&graph)
        .into_iter()
        .filter(|files| files.len() > 2)
        .collect();
    assert!(circles.is_empty(), "circles of imports: {circles:?}");
}

#[test]
fn the_state_room_reads_no_file_socket_or_clock() {
    let src = src_dir();
    let mut found = Vec::new();
    let not_tests = rust_files(&src.join("state"))
        .into_iter()
        .filter(|f| !f.to_string_lossy().ends_with("_tests.rs"));
    for file in not_tests {
        let code = code_of(&std::fs::read_to_string(&file).expect("read"));
        for banned in ["std::fs", "tokio", "std::net", "Instant::now", "SystemTime"] {
            if code.contains(banned) {
                found.push(format!("{}: {banned}", file.display()));
            }
        }
    }
    assert!(
        found.is_empty(),
        "I/O or a clock in state/:\n{}",
        found.join("\n")
    );
}

#[test]
fn the_checker_sees_imports_through_groups_super_and_inline_paths() {
    let code = "use crate::{state::gang::{Gang, place}, store};\nuse super::convert;\n\
                fn f() { crate::ops::CoordinatorState::new(); }\n// crate::service::x\n";
    let paths = paths_in(
        &code_of(code),
        &["service".to_owned(), "client_views".to_owned()],
    );
    let known = ["state::gang", "store", "service::convert", "ops"];
    for module in known {
        assert!(
            paths.iter().any(|p| p.join("::").starts_with(module)),
            "{module} missing from {paths:?}"
        );
    }
    assert!(!paths
        .iter()
        .any(|p| p.first().map(String::as_str) == Some("service")
            && p.get(1).map(String::as_str) == Some("x")));
}

fn rank(file: &str) -> usize {
    let room = file
        .split('/')
        .next()
        .unwrap_or(file)
        .trim_end_matches(".rs");
    ROOMS.iter().position(|r| *r == room).unwrap_or(ROOMS.len())
}

fn src_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("src")
}

fn rust_files(dir: &Path) -> Vec<PathBuf> {
    let mut files = Vec::new();
    for entry in std::fs::read_dir(dir).expect("read dir") {
        let path = entry.expect("entry").path();
        if path.is_dir() {
            files.extend(rust_files(&path));
        } else if path.extension().is_some_and(|e| e == "rs") {
            files.push(path);
        }
    }
    files.sort();
    files
}

/// File (relative to src/, e.g. `ops/gang.rs`) → the files it imports from.
fn import_graph() -> BTreeMap<String, BTreeSet<String>> {
    let src = src_dir();
    let files: Vec<String> = rust_files(&src)
        .iter()
        .map(|p| {
            p.strip_prefix(&src)
                .expect("under src")
                .to_string_lossy()
                .into_owned()
        })
        .filter(|f| !f.ends_with("_tests.rs") && f != "lib.rs")
        .collect();
    let modules: BTreeMap<Vec<String>, String> =
        files.iter().map(|f| (module_of(f), f.clone())).collect();
    let mut graph = BTreeMap::new();
    for file in &files {
        let code = code_of(&std::fs::read_to_string(src.join(file)).expect("read"));
        let mut imports = BTreeSet::new();
        for path in paths_in(&code, &module_of(file)) {
            // The deepest module the path names.
            let target = (1..=path.len())
                .rev()
                .find_map(|len| modules.get(&path[..len]));
            if let Some(target) = target.filter(|t| *t != file) {
                imports.insert(target.clone());
            }
        }
        graph.insert(file.clone(), imports);
    }
    graph
}

/// `ops/mod.rs` → [ops]; `stage/summary/text.rs` → [stage, summary, text].
fn module_of(file: &str) -> Vec<String> {
    let mut parts: Vec<String> = file
        .trim_end_matches(".rs")
        .split('/')
        .map(str::to_owned)
        .collect();
    if parts.last().map(String::as_str) == Some("mod") {
        parts.pop();
    }
    parts
}

/// The code of a file without comments and without its `#[cfg(test)]` modules.
fn code_of(text: &str) -> String {
    let mut code = String::new();
    let mut lines = text.lines().peekable();
    while let Some(line) = lines.next() {
        let trimmed = line.trim_start();
        if trimmed == "#[cfg(test)]" {
            let next = lines.peek().map(|l| l.trim_start()).unwrap_or("");
            let next = if next.starts_with("#[path") {
                lines.next();
                lines.peek().map(|l| l.trim_start()).unwrap_or("")
            } else {
                next
            };
            if next.starts_with("mod ") && next.ends_with('{') {
                // A test module runs to the end of the file in this crate's style.
                break;
            }
            continue;
        }
        let without_comment = match line.find("//") {
            Some(at) => &line[..at],
            None => line,
        };
        code.push_str(without_comment);
        code.push('\n');
    }
    code
}

/// Every `crate::…` and `super::…` path in `code`, as absolute module paths;
/// `use` groups (`crate::{a::B, c}`) are expanded.
fn paths_in(code: &str, module: &[String]) -> Vec<Vec<String>> {
    let mut paths = Vec::new();
    let bytes = code.as_bytes();
    let mut at = 0;
    while at < bytes.len() {
        let rest = &code[at..];
        let preceded_by_ident = at > 0 && is_ident(bytes[at - 1] as char);
        let base: Option<(Vec<String>, usize)> = if preceded_by_ident {
            None
        } else if rest.starts_with("crate::") {
            Some((Vec::new(), "crate::".len()))
        } else if rest.starts_with("super::") {
            // `super` of a file's module: a mod.rs's module is its directory.
            let parent = module[..module.len().saturating_sub(1)].to_vec();
            Some((parent, "super::".len()))
        } else {
            None
        };
        match base {
            Some((prefix, skip)) => {
                let consumed = parse_tree(&code[at + skip..], prefix, &mut paths);
                at += skip + consumed.max(1);
            }
            None => at += rest.chars().next().map_or(1, char::len_utf8),
        }
    }
    paths
}

/// Parses `a::b::{c, d::e}` from the start of `text` under `prefix`; pushes each full
/// path and returns the bytes consumed.
fn parse_tree(text: &str, prefix: Vec<String>, out: &mut Vec<Vec<String>>) -> usize {
    let mut path = prefix;
    let mut at = 0;
    loop {
        let rest = &text[at..];
        if let Some(group) = rest.strip_prefix('{') {
            let close = matching_brace(group);
            let mut start = 0;
            let mut depth = 0;
            let inner = &group[..close];
            for (i, ch) in inner.char_indices() {
                match ch {
                    '{' => depth += 1,
                    '}' => depth -= 1,
                    ',' if depth == 0 => {
                        parse_tree(inner[start..i].trim_start(), path.clone(), out);
                        start = i + 1;
                    }
                    _ => {}
                }
            }
            parse_tree(inner[start..].trim_start(), path.clone(), out);
            return at + 1 + close + 1;
        }
        let ident: String = rest.chars().take_while(|c| is_ident(*c)).collect();
        if ident.is_empty() {
            break;
        }
        at += ident.len();
        if ident != "self" {
            path.push(ident);
        }
        if text[at..].starts_with("::") {
            at += 2;
        } else {
            break;
        }
    }
    if !path.is_empty() {
        out.push(path);
    }
    at
}

fn matching_brace(text: &str) -> usize {
    let mut depth = 0;
    for (i, ch) in text.char_indices() {
        match ch {
            '{' => depth += 1,
            '}' if depth == 0 => return i,
            '}' => depth -= 1,
            _ => {}
        }
    }
    text.len()
}

fn is_ident(c: char) -> bool {
    c.is_ascii_alphanumeric() || c == '_'
}

/// Tarjan's strongly connected components of the import graph.
fn strongly_connected(graph: &BTreeMap<String, BTreeSet<String>>) -> Vec<Vec<String>> {
    struct Walk<'a> {
        graph: &'a BTreeMap<String, BTreeSet<String>>,
        index: BTreeMap<&'a str, usize>,
        low: BTreeMap<&'a str, usize>,
        stack: Vec<&'a str>,
        on_stack: BTreeSet<&'a str>,
        components: Vec<Vec<String>>,
    }
    fn visit<'a>(walk: &mut Walk<'a>, node: &'a str) {
        let next = walk.index.len();
        walk.index.insert(node, next);
        walk.low.insert(node, next);
        walk.stack.push(node);
        walk.on_stack.insert(node);
        let graph = walk.graph;
        for target in graph.get(node).into_iter().flatten() {
            let target = target.as_str();
            if !graph.contains_key(target) {
                continue;
            }
            if !walk.index.contains_key(target) {
                visit(walk, target);
                let low = walk.low[target].min(walk.low[node]);
                walk.low.insert(node, low);
            } else if walk.on_stack.contains(target) {
                let low = walk.index[target].min(walk.low[node]);
                walk.low.insert(node, low);
            }
        }
        if walk.low[node] == walk.index[node] {
            let mut component = Vec::new();
            while let Some(top) = walk.stack.pop() {
                walk.on_stack.remove(top);
                component.push(top.to_owned());
                if top == node {
                    break;
                }
            }
            walk.components.push(component);
        }
    }
    let mut walk = Walk {
        graph,
        index: BTreeMap::new(),
        low: BTreeMap::new(),
        stack: Vec::new(),
        on_stack: BTreeSet::new(),
        components: Vec::new(),
    };
    for node in graph.keys() {
        if !walk.index.contains_key(node.as_str()) {
            visit(&mut walk, node);
        }
    }
    walk.components
}
