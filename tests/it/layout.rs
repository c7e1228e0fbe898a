//! Inside each crate, the top-level modules depend on each other one way only: a module
//! that names another (`crate::other`, `use crate::{other, …}`) may not be named back,
//! directly or through others. The crates themselves cannot form a cycle (Cargo refuses);
//! this test keeps the modules inside them from forming one again. Comments and unit tests
//! do not count.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use crate::common::root;

/// Top-level module → the top-level modules its code names.
fn imports(src: &Path) -> BTreeMap<String, BTreeSet<String>> {
    let mut files: BTreeMap<String, Vec<std::path::PathBuf>> = BTreeMap::new();
    for e in std::fs::read_dir(src).unwrap() {
        let p = e.unwrap().path();
        let name = p.file_stem().unwrap().to_string_lossy().to_string();
        if p.is_dir() {
            let mut all = Vec::new();
            let mut stack = vec![p];
            while let Some(d) = stack.pop() {
                for e in std::fs::read_dir(d).unwrap() {
                    let p = e.unwrap().path();
                    if p.is_dir() {
                        stack.push(p);
                    } else if p.extension().is_some_and(|x| x == "rs") {
                        all.push(p);
                    }
                }
            }
            files.insert(name, all);
        } else if p.extension().is_some_and(|x| x == "rs") && name != "lib" && name != "main" {
            files.insert(name, vec![p]);
        }
    }
    let modules: BTreeSet<String> = files.keys().cloned().collect();
    let word = |s: &str| s.chars().take_while(|c| c.is_alphanumeric() || *c == '_').collect::<String>();
    files
        .iter()
        .map(|(m, paths)| {
            let mut named = BTreeSet::new();
            for p in paths.iter().filter(|p| !p.file_stem().unwrap().to_string_lossy().ends_with("tests")) {
                let text = std::fs::read_to_string(p).unwrap();
                let code = text.split("#[cfg(test)]\nmod tests").next().unwrap();
                for line in code.lines().map(str::trim_start).filter(|l| !l.starts_with("//")) {
                    let line = line.split("//").next().unwrap();
                    for (i, _) in line.match_indices("crate::") {
                        let rest = &line[i + "crate::".len()..];
                        let names: Vec<String> = match rest.strip_prefix('{') {
                            Some(list) => list.split(',').map(|n| word(n.trim())).collect(),
                            None => vec![word(rest)],
                        };
                        named.extend(names.into_iter().filter(|n| n != m && modules.contains(n)));
                    }
                }
            }
            (m.clone(), named)
        })
        .collect()
}

/// A cycle among the modules, if there is one (as the path around it).
fn cycle(graph: &BTreeMap<String, BTreeSet<String>>) -> Option<Vec<String>> {
    fn visit(
        m: &str,
        graph: &BTreeMap<String, BTreeSet<String>>,
        path: &mut Vec<String>,
        done: &mut BTreeSet<String>,
    ) -> Option<Vec<String>> {
        if let Some(at) = path.iter().position(|p| p == m) {
            let mut c = path[at..].to_vec();
            c.push(m.to_string());
            return Some(c);
        }
        if done.contains(m) {
            return None;
        }
        path.push(m.to_string());
        for next in graph.get(m).into_iter().flatten() {
            if let Some(c) = visit(next, graph, path, done) {
                return Some(c);
            }
        }
        path.pop();
        done.insert(m.to_string());
        None
    }
    let mut done = BTreeSet::new();
    graph.keys().find_map(|m| visit(m, graph, &mut Vec::new(), &mut done))
}

#[test]
fn modules_depend_one_way_in_every_crate() {
    for src in ["edge-node/src", "crates/base/src", "crates/dispatch/src", "crates/contract/src"] {
        let graph = imports(&root().join(src));
        if let Some(c) = cycle(&graph) {
            panic!("{src}: modules import each other in a cycle: {}", c.join(" → "));
        }
    }
}

#[test]
fn the_check_finds_a_cycle() {
    let g: BTreeMap<String, BTreeSet<String>> = [("a", "b"), ("b", "c"), ("c", "a"), ("d", "a")]
        .into_iter()
        .map(|(m, n)| (m.to_string(), BTreeSet::from([n.to_string()])))
        .collect();
    assert_eq!(cycle(&g).unwrap(), ["a", "b", "c", "a"]);
    let mut acyclic = g.clone();
    acyclic.remove("c");
    assert_eq!(cycle(&acyclic), None);
    // And it reads the real sources: the node's graph module names the camera module.
    let node = imports(&root().join("edge-node/src"));
    assert!(node["graph"].contains("camera") && node["node"].contains("graph"), "{node:?}");
}
