//! Static sharding of one district camera list over `shard.count` nodes: each camera runs on
//! the node with the highest rendezvous weight for it (highest-random-weight hashing), unless
//! it is pinned (`node = "..."`). Changing the number of nodes moves only the cameras whose
//! highest weight is now on a new node; removing a node moves only its own cameras.

/// A 64-bit hash stable across builds and machines (FNV-1a, then a SplitMix64 finaliser so
/// that similar ids spread well).
fn weight(camera: &str, node: &str) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in camera.bytes().chain([0u8]).chain(node.bytes()) {
        h ^= b as u64;
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    h = (h ^ (h >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    h = (h ^ (h >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    h ^ (h >> 31)
}

/// The index in `nodes` of the node that runs `camera`.
pub fn owner(camera: &str, nodes: &[String]) -> usize {
    nodes.iter().enumerate().max_by_key(|(i, n)| (weight(camera, n), std::cmp::Reverse(*i))).map_or(0, |(i, _)| i)
}

/// The node names of a shard of `count` nodes without explicit names: `<id>-0` … (the
/// names a Kubernetes StatefulSet gives its pods).
pub fn default_names(id: &str, count: usize) -> Vec<String> {
    (0..count).map(|i| format!("{id}-{i}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cams(n: usize) -> Vec<String> {
        (0..n).map(|i| format!("cam-{i:04}")).collect()
    }

    #[test]
    fn every_camera_has_one_owner_and_the_load_is_even() {
        let nodes = default_names("edge", 3);
        let mut load = [0usize; 3];
        for c in cams(3000) {
            load[owner(&c, &nodes)] += 1;
        }
        assert_eq!(load.iter().sum::<usize>(), 3000);
        assert!(load.iter().all(|&n| (850..=1150).contains(&n)), "{load:?}");
    }

    #[test]
    fn a_new_node_takes_cameras_only_from_the_others_and_removing_it_gives_them_back() {
        let (three, four) = (default_names("edge", 3), default_names("edge", 4));
        let mut moved = 0;
        for c in cams(2000) {
            let (a, b) = (owner(&c, &three), owner(&c, &four));
            if a != b {
                assert_eq!(b, 3, "{c} moved between old nodes ({a} → {b})");
                moved += 1;
            }
        }
        // About a quarter moves to the new node.
        assert!((380..=620).contains(&moved), "{moved} of 2000 moved");
    }

    /// `weight("cam-1", "edge-0")` as first computed: a change of the hash would move
    /// cameras between nodes in a running district.
    const GOLDEN: u64 = 18_253_903_957_748_967_241;

    #[test]
    fn weights_are_stable() {
        // Placement must not change between builds: a fixed value.
        assert_ne!(weight("ab", "c"), weight("a", "bc"));
        assert_eq!(weight("cam-1", "edge-0"), GOLDEN);
    }
}

#[cfg(test)]
mod config_tests {
    fn config(index: usize, count: usize, extra: &str) -> crate::config::Config {
        let models = concat!(env!("CARGO_MANIFEST_DIR"), "/../../models");
        let mut text = format!(
            "version = 1\n[node]\nid = \"edge\"\n[storage]\nmodels_dir = \"{models}\"\n[shard]\ncount = {count}\nindex = {index}\n[models.objects]\nfile = \"yolox_nano.onnx\"\n"
        );
        for i in 0..12 {
            text += &format!("[[cameras]]\nid = \"cam-{i:02}\"\nurl = \"rtsp://10.0.0.{i}/s\"\n");
            if i == 5 {
                text += extra;
            }
        }
        crate::config::parse(&text, std::path::Path::new("/")).unwrap_or_else(|e| panic!("{e:?}"))
    }

    fn here(c: &crate::config::Config) -> Vec<String> {
        c.cameras.iter().filter(|c| c.here).map(|c| c.id.clone()).collect()
    }

    #[test]
    fn three_nodes_share_twelve_cameras_and_a_fourth_takes_only_its_own() {
        let three: Vec<Vec<String>> = (0..3).map(|i| here(&config(i, 3, ""))).collect();
        let mut all: Vec<String> = three.concat();
        all.sort();
        assert_eq!(all.len(), 12, "each camera on exactly one node: {three:?}");
        all.dedup();
        assert_eq!(all.len(), 12);
        assert!(three.iter().all(|n| !n.is_empty()), "{three:?}");
        let four: Vec<Vec<String>> = (0..4).map(|i| here(&config(i, 4, ""))).collect();
        for i in 0..3 {
            assert!(four[i].iter().all(|c| three[i].contains(c)), "node {i} gained a camera it did not have");
        }
        assert_eq!(four.concat().len(), 12);
        // The node's id is its entry in the shard.
        assert_eq!(config(2, 3, "").node.id, "edge-2");
        let c = config(0, 3, "");
        assert_eq!(c.shard.as_ref().map(|s| (s.index, s.nodes.len())), Some((0, 3)));
    }

    #[test]
    fn a_pinned_camera_runs_on_its_node() {
        for i in 0..3 {
            let c = config(i, 3, "node = \"edge-1\"\n");
            assert_eq!(c.cameras[5].here, i == 1, "node {i}");
        }
    }
}
