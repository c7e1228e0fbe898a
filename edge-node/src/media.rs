//! What the node lends its in-process dispatcher's apps (`dispatch::apps::Media`): the
//! snapshots, event clips and live pictures it keeps, faces pixelated like everything it
//! publishes.

use std::sync::Arc;

/// The node's pictures, for the orders of this node's cameras.
pub struct NodeMedia {
    pub node: String,
    pub alerts: Arc<crate::alert::AlertSink>,
    pub clips: Arc<crate::clips::Clips>,
    pub live: Arc<crate::live::LiveFrames>,
}

impl crate::dispatch::apps::Media for NodeMedia {
    fn snapshot(&self, node: &str, alert: &str) -> Option<Vec<u8>> {
        (node == self.node).then(|| self.alerts.snapshot_file(alert)).flatten()
    }

    fn clip(&self, node: &str, path: &str) -> Option<Vec<u8>> {
        let id = path.strip_prefix("/clips/")?.strip_suffix(".mp4")?;
        (node == self.node).then(|| self.clips.file(id)).flatten().and_then(|p| std::fs::read(p).ok())
    }

    fn live(&self, node: &str, camera: &str) -> Result<Vec<u8>, String> {
        if node != self.node {
            return Err(format!("the camera is on node {node}"));
        }
        self.live.snapshot(camera, 640).map(|s| s.jpeg).map_err(|e| e.to_string())
    }
}
