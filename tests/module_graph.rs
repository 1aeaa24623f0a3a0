//! The library's top-level modules (`proto`, `server`, `cluster`, `chat`,
//! ...) form no circle: no module names one that, directly or through
//! others, names it back. Read from the source: every `crate::NAME` path
//! outside comments is an edge from the module whose file holds it to
//! `NAME` (a name re-exported at the crate root, such as `crate::Context`,
//! counts as the module it comes from).

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

type Graph = BTreeMap<String, BTreeSet<String>>;

/// The code of `text` without `//` comments (doc comments included).
fn code(text: &str) -> String {
    text.lines()
        .map(|line| line.split("//").next().unwrap_or(""))
        .collect::<Vec<_>>()
        .join("\n")
}

/// Each identifier that follows `crate::` (the first segment of each path
/// in `crate::{a, b::c}` too).
fn crate_paths(code: &str) -> Vec<String> {
    let ident = |s: &str| -> String {
        s.trim_start()
            .chars()
            .take_while(|c| c.is_alphanumeric() || *c == '_')
            .collect()
    };
    let mut out = Vec::new();
    for (at, _) in code.match_indices("crate::") {
        let rest = &code[at + "crate::".len()..];
        if let Some(group) = rest.strip_prefix('{') {
            let group = group.split('}').next().unwrap_or("");
            out.extend(group.split(',').map(ident).filter(|s| !s.is_empty()));
        } else {
            out.push(ident(rest));
        }
    }
    out
}

/// The crate root's re-exports: `pub use MODULE::...{Name, ...}` maps each
/// name after MODULE to it (a root name is never a module's name).
fn root_names(lib: &str) -> BTreeMap<String, String> {
    let mut names = BTreeMap::new();
    for stmt in code(lib).split(';') {
        let Some(path) = stmt.trim().strip_prefix("pub use ") else {
            continue;
        };
        let module: String = path
            .chars()
            .take_while(|c| c.is_alphanumeric() || *c == '_')
            .collect();
        for word in path[module.len()..].split(|c: char| !(c.is_alphanumeric() || c == '_')) {
            if !word.is_empty() {
                names.entry(word.to_string()).or_insert(module.clone());
            }
        }
    }
    names
}

fn collect(dir: &Path, files: &mut Vec<std::path::PathBuf>) {
    for entry in std::fs::read_dir(dir).expect("read src") {
        let path = entry.expect("entry").path();
        if path.is_dir() {
            collect(&path, files);
        } else if path.extension().is_some_and(|e| e == "rs") {
            files.push(path);
        }
    }
}

/// The graph of the library's top-level modules.
fn graph(src: &Path) -> Graph {
    let lib = std::fs::read_to_string(src.join("lib.rs")).expect("lib.rs");
    let names = root_names(&lib);
    let mut files = Vec::new();
    collect(src, &mut files);
    let mut graph = Graph::new();
    for file in files {
        let rel = file.strip_prefix(src).expect("under src");
        let first = rel.components().next().expect("a component");
        let module = first.as_os_str().to_string_lossy();
        let module = module.trim_end_matches(".rs").to_string();
        // The crate root, and the `rookery` program's own files (another
        // crate: it names the library as `rookery::`).
        if ["lib", "main", "cli"].contains(&module.as_str()) {
            continue;
        }
        let text = std::fs::read_to_string(&file).expect("source");
        let edges = graph.entry(module.clone()).or_default();
        for name in crate_paths(&code(&text)) {
            let target = names.get(&name).cloned().unwrap_or(name);
            if target != module && !target.is_empty() {
                edges.insert(target);
            }
        }
    }
    graph
}

/// A circle through `graph`, if there is one.
fn circle(graph: &Graph) -> Option<Vec<String>> {
    fn visit(
        graph: &Graph,
        node: &str,
        path: &mut Vec<String>,
        done: &mut BTreeSet<String>,
    ) -> Option<Vec<String>> {
        if let Some(at) = path.iter().position(|n| n == node) {
            let mut found = path[at..].to_vec();
            found.push(node.to_string());
            return Some(found);
        }
        if done.contains(node) {
            return None;
        }
        path.push(node.to_string());
        for next in graph.get(node).into_iter().flatten() {
            if let Some(found) = visit(graph, next, path, done) {
                return Some(found);
            }
        }
        path.pop();
        done.insert(node.to_string());
        None
    }
    let mut done = BTreeSet::new();
    graph
        .keys()
        .find_map(|node| visit(graph, node, &mut Vec::new(), &mut done))
}

#[test]
fn no_two_modules_name_each_other() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let graph = graph(&src);
    for (module, edges) in &graph {
        println!("{module} -> {edges:?}");
    }
    // The layers the architecture names, as a floor on what is read.
    assert!(graph["server"].contains("proto"), "{graph:?}");
    assert!(graph["chat"].contains("server"), "{graph:?}");
    if let Some(found) = circle(&graph) {
        panic!("modules in a circle: {}", found.join(" -> "));
    }
}

#[test]
fn a_circle_is_found() {
    let graph: Graph = [
        ("a", vec!["b"]),
        ("b", vec!["c"]),
        ("c", vec!["a"]),
        ("d", vec!["a"]),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v.into_iter().map(String::from).collect()))
    .collect();
    let found = circle(&graph).expect("a circle");
    assert_eq!(found.first(), found.last());
    assert_eq!(found.len(), 4, "{found:?}");
    let mut acyclic = graph;
    acyclic.remove("c");
    assert_eq!(circle(&acyclic), None);
}

#[test]
fn paths_and_root_names_are_read() {
    let text =
        "use crate::proto::frame::OpCode; // crate::cluster\nuse crate::{server::X, Context};";
    assert_eq!(
        crate_paths(&code(text)),
        ["proto", "server", "Context"].map(String::from)
    );
    let names = root_names("pub use server::{Config, Context};\npub use signals::stop_on_signals;");
    assert_eq!(names.get("Context").map(String::as_str), Some("server"));
    assert_eq!(
        names.get("stop_on_signals").map(String::as_str),
        Some("signals")
    );
}
