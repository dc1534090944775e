//! A test of the layout: no import circle between the top-level modules of
//! `src/` (the simulator aside, which stands apart from the rest). It reads
//! the `use crate::…` declarations of every file, and the `crate::…` paths
//! written inline, with plain std, so CI needs no tool for it.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

/// Top-level module → the top-level modules its files `use`, each with one
/// file that does (for the message).
type Graph = BTreeMap<String, BTreeMap<String, String>>;

/// Modules left out of the check.
const APART: &[&str] = &["sim"];

/// The top-level modules named by the `use crate::…` declarations of
/// `text` and by the `crate::…` paths in its code (comments left out).
fn used_modules(text: &str) -> BTreeSet<String> {
    let code: String = text
        .lines()
        .filter(|l| !l.trim_start().starts_with("//"))
        .collect::<Vec<_>>()
        .join("\n");
    let mut found = BTreeSet::new();
    let mut rest = code.as_str();
    while let Some(at) = rest.find("crate::") {
        let before = rest[..at].chars().last();
        let tail = &rest[at + "crate::".len()..];
        // A group (`crate::{a, b::C}`) runs to its `;`; a path to its end.
        let end = if tail.starts_with('{') {
            tail.find(';').unwrap_or(tail.len())
        } else {
            tail.find(|c: char| !(c.is_alphanumeric() || c == '_'))
                .unwrap_or(tail.len())
        };
        rest = &tail[end..];
        if before.is_some_and(|c| c.is_alphanumeric() || c == '_') {
            continue;
        }
        let path = &tail[..end];
        match path.strip_prefix('{') {
            Some(group) => {
                let mut depth = 0;
                let mut item = String::new();
                for c in group.chars() {
                    match c {
                        '{' => depth += 1,
                        '}' if depth == 0 => break,
                        '}' => depth -= 1,
                        ',' if depth == 0 => {
                            found.insert(first_segment(&item));
                            item.clear();
                            continue;
                        }
                        _ => {}
                    }
                    item.push(c);
                }
                found.insert(first_segment(&item));
            }
            None => {
                found.insert(first_segment(path));
            }
        }
    }
    found.remove("");
    found.remove("self");
    found
}

fn first_segment(path: &str) -> String {
    path.trim()
        .split(|c: char| !(c.is_alphanumeric() || c == '_'))
        .next()
        .unwrap_or_default()
        .to_owned()
}

fn add_file(graph: &mut Graph, module: &str, shown: &str, text: &str) {
    let edges = graph.entry(module.to_owned()).or_default();
    for used in used_modules(text) {
        if used != module && !APART.contains(&used.as_str()) {
            edges.entry(used).or_insert_with(|| shown.to_owned());
        }
    }
}

fn read_tree(graph: &mut Graph, dir: &Path, module: &str, root: &Path) {
    let mut entries: Vec<_> = std::fs::read_dir(dir)
        .expect("read src/")
        .map(|e| e.expect("read src/").path())
        .collect();
    entries.sort();
    for path in entries {
        let shown = path
            .strip_prefix(root)
            .unwrap_or(&path)
            .display()
            .to_string();
        if path.is_dir() {
            read_tree(graph, &path, module, root);
        } else if path.extension().is_some_and(|x| x == "rs") {
            let text = std::fs::read_to_string(&path).expect("read a source file");
            add_file(graph, module, &shown, &text);
        }
    }
}

/// The graph of `src/`'s top-level modules.
fn src_graph() -> Graph {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let src = root.join("src");
    let mut graph = Graph::new();
    for entry in std::fs::read_dir(&src).expect("read src/") {
        let path = entry.expect("read src/").path();
        let name = path
            .file_stem()
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_default();
        // lib.rs and main.rs only list and start modules; this file quotes paths.
        if ["lib", "main", "import_circles"].contains(&name.as_str())
            || APART.contains(&name.as_str())
        {
            continue;
        }
        if path.is_dir() {
            read_tree(&mut graph, &path, &name, root);
        } else if path.extension().is_some_and(|x| x == "rs") {
            let text = std::fs::read_to_string(&path).expect("read a source file");
            let shown = path
                .strip_prefix(root)
                .unwrap_or(&path)
                .display()
                .to_string();
            add_file(&mut graph, &name, &shown, &text);
        }
    }
    graph
}

/// One circle of `graph`, as the modules along it with the first back at
/// the end, or `None`.
fn find_circle(graph: &Graph) -> Option<Vec<String>> {
    // 0 unseen, 1 on the current path, 2 done.
    fn visit(
        graph: &Graph,
        node: &str,
        state: &mut BTreeMap<String, u8>,
        path: &mut Vec<String>,
    ) -> Option<Vec<String>> {
        state.insert(node.to_owned(), 1);
        path.push(node.to_owned());
        for next in graph.get(node).into_iter().flat_map(|e| e.keys()) {
            match state.get(next).copied().unwrap_or(0) {
                1 => {
                    let from = path.iter().position(|m| m == next).unwrap_or(0);
                    let mut circle = path[from..].to_vec();
                    circle.push(next.clone());
                    return Some(circle);
                }
                0 => {
                    if let Some(circle) = visit(graph, next, state, path) {
                        return Some(circle);
                    }
                }
                _ => {}
            }
        }
        path.pop();
        state.insert(node.to_owned(), 2);
        None
    }
    let mut state = BTreeMap::new();
    for node in graph.keys() {
        if state.get(node).copied().unwrap_or(0) == 0
            && let Some(circle) = visit(graph, node, &mut state, &mut Vec::new())
        {
            return Some(circle);
        }
    }
    None
}

#[test]
fn no_import_circle_between_top_level_modules() {
    let graph = src_graph();
    assert!(graph.contains_key("store") && graph.contains_key("queue"));
    if let Some(circle) = find_circle(&graph) {
        let steps: Vec<String> = circle
            .windows(2)
            .map(|w| format!("{} -> {} ({})", w[0], w[1], graph[&w[0]][&w[1]]))
            .collect();
        panic!("import circle between modules:\n{}", steps.join("\n"));
    }
}

#[test]
fn the_reader_sees_groups_nested_paths_and_circles() {
    let text = "use crate::a::B;\n// use crate::ignored::X;\npub(crate) use crate::{\n    b::{C, d::E},\n    c,\n};\nuse std::x;\nfn f() { crate::inline::g(); my_crate::no::h(); }\n";
    let used: Vec<String> = used_modules(text).into_iter().collect();
    assert_eq!(used, ["a", "b", "c", "inline"]);
    let mut graph = Graph::new();
    add_file(&mut graph, "a", "a.rs", "use crate::b::X;");
    add_file(&mut graph, "b", "b.rs", "use crate::{c::Y};");
    add_file(&mut graph, "c", "c.rs", "use crate::a;");
    assert_eq!(find_circle(&graph).unwrap(), ["a", "b", "c", "a"]);
    add_file(&mut graph, "d", "d.rs", "use crate::sim::S;");
    graph.get_mut("c").unwrap().clear();
    assert_eq!(find_circle(&graph), None);
}
