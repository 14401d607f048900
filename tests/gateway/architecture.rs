//! The crate's module graph has one direction: no module, and no two
//! sibling modules, import each other, directly or around a loop. Read from
//! the source with `syn`, so the check sees every `use` and every path in
//! code, as the compiler does; test-only code (`#[cfg(test)]`) may reach
//! anywhere and is left out.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use syn::visit::{self, Visit};

/// Module path (`["providers", "http"]`) of each source file.
fn modules(src: &Path) -> BTreeMap<Vec<String>, PathBuf> {
    let mut out = BTreeMap::new();
    let mut stack = vec![src.to_path_buf()];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir).expect("read src") {
            let path = entry.expect("entry").path();
            if path.is_dir() {
                stack.push(path);
                continue;
            }
            if path.extension().is_none_or(|e| e != "rs") {
                continue;
            }
            let rel = path.strip_prefix(src).expect("under src");
            let mut parts: Vec<String> = rel
                .iter()
                .map(|p| p.to_string_lossy().trim_end_matches(".rs").to_owned())
                .collect();
            if parts.last().is_some_and(|l| l == "mod") {
                parts.pop();
            }
            if parts == ["main"] {
                continue;
            }
            if parts == ["lib"] {
                parts.clear();
            }
            out.insert(parts, path);
        }
    }
    out
}

fn is_test_only(attrs: &[syn::Attribute]) -> bool {
    attrs.iter().any(|a| {
        a.path().is_ident("cfg")
            && a.meta.require_list().is_ok_and(|l| {
                let tokens = l.tokens.to_string();
                tokens == "test" || tokens.starts_with("test ") || tokens.contains("(test")
            })
    })
}

/// Every absolute path (`crate::…` or resolved `super::…`/`self::…`) one file names.
struct Paths<'a> {
    module: &'a [String],
    found: Vec<Vec<String>>,
}

impl Paths<'_> {
    fn resolve(&mut self, segments: Vec<String>) {
        let Some(first) = segments.first() else {
            return;
        };
        let mut base: Vec<String> = match first.as_str() {
            "crate" => Vec::new(),
            "self" | "super" => self.module.to_vec(),
            _ => return,
        };
        let mut rest = &segments[..];
        if first == "crate" {
            rest = &rest[1..];
        }
        while let Some(s) = rest.first() {
            match s.as_str() {
                "super" => {
                    base.pop();
                }
                "self" => {}
                _ => break,
            }
            rest = &rest[1..];
        }
        base.extend(rest.iter().cloned());
        self.found.push(base);
    }

    fn use_tree(&mut self, prefix: &mut Vec<String>, tree: &syn::UseTree) {
        match tree {
            syn::UseTree::Path(p) => {
                prefix.push(p.ident.to_string());
                self.use_tree(prefix, &p.tree);
                prefix.pop();
            }
            syn::UseTree::Name(n) => {
                let mut full = prefix.clone();
                full.push(n.ident.to_string());
                self.resolve(full);
            }
            syn::UseTree::Rename(r) => {
                let mut full = prefix.clone();
                full.push(r.ident.to_string());
                self.resolve(full);
            }
            syn::UseTree::Glob(_) => self.resolve(prefix.clone()),
            syn::UseTree::Group(g) => {
                for t in &g.items {
                    self.use_tree(prefix, t);
                }
            }
        }
    }
}

impl<'ast> Visit<'ast> for Paths<'_> {
    fn visit_item_mod(&mut self, m: &'ast syn::ItemMod) {
        if !is_test_only(&m.attrs) {
            visit::visit_item_mod(self, m);
        }
    }
    fn visit_item_fn(&mut self, f: &'ast syn::ItemFn) {
        if !is_test_only(&f.attrs) {
            visit::visit_item_fn(self, f);
        }
    }
    fn visit_item_use(&mut self, u: &'ast syn::ItemUse) {
        if !is_test_only(&u.attrs) {
            self.use_tree(&mut Vec::new(), &u.tree);
        }
    }
    fn visit_path(&mut self, p: &'ast syn::Path) {
        self.resolve(p.segments.iter().map(|s| s.ident.to_string()).collect());
        visit::visit_path(self, p);
    }
}

type Graph = BTreeMap<String, BTreeSet<String>>;

/// The edges of the crate: between top-level modules, and between siblings
/// under each parent (`providers/http -> providers/stream`).
fn graph() -> (Graph, BTreeMap<String, Graph>) {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let modules = modules(&src);
    let mut top = Graph::new();
    let mut siblings: BTreeMap<String, Graph> = BTreeMap::new();
    for (module, path) in &modules {
        let text = std::fs::read_to_string(path).expect("read source");
        let file = syn::parse_file(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        let mut paths = Paths {
            module,
            found: Vec::new(),
        };
        paths.visit_file(&file);
        for target in paths.found {
            // The longest module the path lies in.
            let Some(to) = (0..=target.len())
                .rev()
                .map(|n| &target[..n])
                .find(|p| modules.contains_key(*p))
            else {
                continue;
            };
            if let (Some(a), Some(b)) = (module.first(), to.first())
                && a != b
            {
                top.entry(a.clone()).or_default().insert(b.clone());
            }
            // Siblings: same parent, different child.
            let common = module.iter().zip(to).take_while(|(a, b)| a == b).count();
            if common > 0 && common < module.len() && common < to.len() {
                let parent = module[..common].join("::");
                siblings
                    .entry(parent)
                    .or_default()
                    .entry(module[common].clone())
                    .or_default()
                    .insert(to[common].clone());
            }
        }
    }
    (top, siblings)
}

/// A cycle of `graph`, if it has one.
fn cycle(graph: &Graph) -> Option<Vec<String>> {
    fn walk(
        node: &str,
        graph: &Graph,
        path: &mut Vec<String>,
        done: &mut BTreeSet<String>,
    ) -> Option<Vec<String>> {
        if let Some(start) = path.iter().position(|n| n == node) {
            let mut cycle = path[start..].to_vec();
            cycle.push(node.to_owned());
            return Some(cycle);
        }
        if done.contains(node) {
            return None;
        }
        path.push(node.to_owned());
        for next in graph.get(node).into_iter().flatten() {
            if let Some(c) = walk(next, graph, path, done) {
                return Some(c);
            }
        }
        path.pop();
        done.insert(node.to_owned());
        None
    }
    let mut done = BTreeSet::new();
    graph
        .keys()
        .find_map(|n| walk(n, graph, &mut Vec::new(), &mut done))
}

#[test]
fn top_level_modules_import_one_way() {
    let (top, _) = graph();
    assert!(
        top.get("decision").is_some_and(|t| t.contains("compiler")),
        "the check must see the decision's use of the compiler: {top:#?}"
    );
    if let Some(c) = cycle(&top) {
        panic!("modules import each other: {}", c.join(" -> "));
    }
}

#[test]
fn sibling_modules_import_one_way() {
    let (_, siblings) = graph();
    assert!(
        siblings
            .get("providers")
            .and_then(|g| g.get("http"))
            .is_some_and(|t| t.contains("stream")),
        "the check must see providers::http's use of providers::stream: {siblings:#?}"
    );
    for (parent, graph) in &siblings {
        if let Some(c) = cycle(graph) {
            panic!(
                "modules of `{parent}` import each other: {}",
                c.join(" -> ")
            );
        }
    }
}

#[test]
fn the_shared_names_and_the_environment_are_leaves() {
    let (top, _) = graph();
    for leaf in ["names", "env"] {
        assert_eq!(
            top.get(leaf),
            None,
            "`{leaf}` must import nothing of the crate"
        );
    }
    assert!(
        top.values().filter(|t| t.contains("names")).count() >= 5,
        "the shared names are used across the crate: {top:#?}"
    );
}
