//! One district camera list on several nodes (real processes, the simulator, 127.0.0.1):
//!
//!   12 cameras, [shard] count = 3, nodes 0..2 ─► every camera streamed by exactly one node
//!   count = 4 (SIGHUP the three, start a fourth) ─► only the cameras that land on the new
//!   node move; none is streamed twice or by nobody afterwards
//!
//! Each node's file differs only in its index, data_dir and ports (on one machine they
//! cannot share those; on site boxes or in a StatefulSet the file is the same).

use std::collections::BTreeSet;
use std::time::Duration;

use crate::common::*;

/// The cameras a node runs, and whether all of them stream.
fn cameras(http: u16) -> Option<(BTreeSet<String>, bool)> {
    let s: serde_json::Value = serde_json::from_str(&http_body(http, "/status")).ok()?;
    let cams = s["cameras"].as_array()?;
    Some((
        cams.iter().filter_map(|c| c["camera"].as_str().map(str::to_string)).collect(),
        cams.iter().all(|c| c["state"] == "streaming"),
    ))
}

struct Node {
    config: std::path::PathBuf,
    http: u16,
    mqtt: u16,
}

fn write(node: &Node, dir: &std::path::Path, index: usize, count: usize, url: &str) {
    let mut text = format!(
        "version = 1\n[node]\nid = \"edge\"\n[embedded_broker]\nlisten = \"127.0.0.1:{}\"\n[http]\nlisten = \"127.0.0.1:{}\"\n[storage]\ndata_dir = \"{}\"\nmodels_dir = \"{}\"\n[shard]\ncount = {count}\nindex = {index}\n[models.objects]\nfile = \"yolox_nano_dynamic.onnx\"\n[defaults]\ndecode = \"keyframes\"\n",
        node.mqtt,
        node.http,
        dir.join(format!("data-{index}")).display(),
        root().join("models").display(),
    );
    for i in 0..12 {
        text += &format!("[[cameras]]\nid = \"cam-{i:02}\"\nurl = \"{url}\"\n");
    }
    std::fs::write(&node.config, text).unwrap();
}

#[test]
fn three_nodes_share_twelve_cameras_and_a_fourth_takes_only_its_share() {
    let _scenario = crate::common::scenario(module_path!());
    let sim = simulator(&["s=pattern:ball:4,size=320x240,keyint=2s"]);
    let url = sim.url("s");
    let dir = fresh_dir("shard");
    let nodes: Vec<Node> = (0..4)
        .map(|i| Node { config: dir.join(format!("node-{i}.toml")), http: free_port(), mqtt: free_port() })
        .collect();
    let mut running = Vec::new();
    for (i, n) in nodes.iter().take(3).enumerate() {
        write(n, &dir, i, 3, &url);
        running.push(edge_node("run", &n.config, &dir.join(format!("node-{i}.log"))));
    }
    let logs = |n: usize| {
        (0..n)
            .map(|i| std::fs::read_to_string(dir.join(format!("node-{i}.log"))).unwrap_or_default())
            .collect::<Vec<_>>()
            .join("\n")
    };
    let shares = |n: usize| -> Option<Vec<BTreeSet<String>>> {
        let got: Vec<_> = nodes.iter().take(n).map(|node| cameras(node.http)).collect::<Option<_>>()?;
        got.iter().all(|(_, streaming)| *streaming).then(|| got.into_iter().map(|(c, _)| c).collect())
    };
    let whole = |s: &[BTreeSet<String>]| {
        let total: usize = s.iter().map(|c| c.len()).sum();
        let union: BTreeSet<&String> = s.iter().flatten().collect();
        total == 12 && union.len() == 12
    };
    assert!(
        wait_until(Duration::from_secs(60), || shares(3).is_some_and(|s| whole(&s))),
        "three nodes did not share the 12 cameras: {:?}\n{}",
        shares(3),
        logs(3)
    );
    let before = shares(3).unwrap();
    assert!(before.iter().all(|c| !c.is_empty()), "{before:?}");

    // A fourth node: the three reload with count = 4, the new one starts.
    for (i, n) in nodes.iter().enumerate() {
        write(n, &dir, i, 4, &url);
    }
    for child in &running {
        let pid = child.0.id().to_string();
        assert!(std::process::Command::new("kill").args(["-HUP", &pid]).status().unwrap().success());
    }
    running.push(edge_node("run", &nodes[3].config, &dir.join("node-3.log")));
    assert!(
        wait_until(Duration::from_secs(60), || shares(4).is_some_and(|s| whole(&s) && !s[3].is_empty())),
        "four nodes did not share the 12 cameras: {:?}\n{}",
        shares(4),
        logs(4)
    );
    let after = shares(4).unwrap();
    for i in 0..3 {
        assert!(
            after[i].is_subset(&before[i]),
            "node {i} took a camera it did not have: {:?} → {:?}",
            before[i],
            after[i]
        );
    }
    let moved: usize = (0..3).map(|i| before[i].len() - after[i].len()).sum();
    assert_eq!(moved, after[3].len(), "only the cameras that land on the new node move");
    // The node status says which shard a node is.
    assert!(logs(4).contains("shard: running this node's share"));
    drop(running);
    let _ = std::fs::remove_dir_all(&dir);
}
