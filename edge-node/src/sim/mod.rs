//! sim: an RTSP camera simulator (gstreamer-rtsp-server) for tests, benchmarks and the demo.
//!
//! Input: stream specs (a clip from the media folder or a test pattern, plus optional
//! size, frame rate, key-frame interval, bitrate). Each is read or encoded once at start,
//! held in memory, then served looped forever: a feeder thread per served stream pushes
//! the stored H.264 access units into the media pipeline at their own pace, so serving
//! costs no decoding or encoding. Output: `rtsp://127.0.0.1:PORT/<mount>` per stream,
//! optionally behind basic or digest authentication.
//!
//! Faults for tests: [`Simulator::stall`] stops sending while keeping the connection,
//! [`Simulator::resume`] sends again, [`Simulator::disconnect`] closes the connections of a
//! stream's clients, [`Simulator::set_available`] makes a mount answer 404 or come back.
//! Shutdown: dropping the simulator closes every connection and the listening socket.

mod clip;
mod server;

pub use clip::{Codec, EncodedClip, Encoding, MAX_PASSTHROUGH_GOP, Picture, load};
pub use server::{Auth, ServedTransport, Simulator, StreamSpec};

#[derive(Debug, thiserror::Error)]
pub enum SimError {
    #[error("simulator media: {0}")]
    Media(String),
    #[error("simulator server: {0}")]
    Server(String),
    #[error("bad stream spec \"{spec}\": {reason}")]
    Spec { spec: String, reason: String },
}
