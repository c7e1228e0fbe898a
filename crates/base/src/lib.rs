//! What the gridsight node (`edge-node run`) and the dispatcher (`edge-node dispatch`)
//! share, and nothing that needs GStreamer or ONNX Runtime. Dependencies point down this
//! list, never up:
//!
//! - leaves: [`clock`] (the one clock, which tests pause), [`geometry`] (zones and lines),
//!   [`backoff`], [`labels`] (the model families and their class names), [`spelling`], [`http`] (axum helpers: replies,
//!   bearer tokens, the listener);
//! - [`config`] (the TOML file: raw serde types → `validate()` with path, line and column →
//!   [`config::Config`]), [`localtime`] (the node's calendar for schedules);
//! - [`outbox`] (SQLite: what must reach the broker, and the disk reserve), [`telemetry`]
//!   (logs, `/metrics` families, probes);
//! - [`mqtt`] (the link that publishes outbox rows at QoS 1 and deletes each on its PUBACK).
//!
//! The MQTT payloads themselves are the [`contract`] crate.

pub use gridsight_contract as contract;

pub mod backoff;
pub mod clock;
pub mod config;
pub mod geometry;
pub mod http;
pub mod labels;
pub mod localtime;
pub mod mqtt;
pub mod outbox;
pub mod spelling;
pub mod telemetry;

/// Locks that outlive a panic elsewhere. A panic is caught where it happens (one camera's
/// frame, one worker's batch) and logged there; a lock its thread held is still consistent
/// enough to go on with (every critical section here is short and leaves no half-written
/// state), so the others take the lock instead of panicking in turn.
pub trait Locked<T: ?Sized> {
    fn locked(&self) -> std::sync::MutexGuard<'_, T>;
}

impl<T: ?Sized> Locked<T> for std::sync::Mutex<T> {
    fn locked(&self) -> std::sync::MutexGuard<'_, T> {
        self.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

/// [`Locked`] for readers-writer locks.
pub trait RwLocked<T: ?Sized> {
    fn read_locked(&self) -> std::sync::RwLockReadGuard<'_, T>;
    fn write_locked(&self) -> std::sync::RwLockWriteGuard<'_, T>;
}

impl<T: ?Sized> RwLocked<T> for std::sync::RwLock<T> {
    fn read_locked(&self) -> std::sync::RwLockReadGuard<'_, T> {
        self.read().unwrap_or_else(std::sync::PoisonError::into_inner)
    }
    fn write_locked(&self) -> std::sync::RwLockWriteGuard<'_, T> {
        self.write().unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}
