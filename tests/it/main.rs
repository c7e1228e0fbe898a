//! Every integration test, in one binary (one link of the library with GStreamer, ONNX
//! Runtime and the broker client instead of one per scenario). A module per scenario;
//! `cargo test --test it <module>::` runs one of them.

mod common;

mod absence;
mod alerts_e2e;
mod bridge_e2e;
mod cadence;
mod clips_e2e;
mod config_errors;
mod config_example;
mod daemon;
mod decode_reference;
mod detect_media;
mod disk_full;
mod dispatch_e2e;
mod ha_discovery;
mod inference_pool;
mod ingest_failures;
mod ingest_modes;
mod ingest_recovery;
mod ingest_third_party;
mod inspector_app;
mod k8s_manifests;
mod layout;
mod left_object;
mod live_snapshot;
mod live_video;
mod mqtt_control;
mod mqtt_outage;
mod mqtt_tls;
mod ort_models;
mod package;
mod reports_e2e;
mod resident_app;
mod shard_e2e;
mod snapshot_privacy;
mod status_page;
