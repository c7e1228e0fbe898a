//! Why a camera is not streaming, in words an operator understands, mapped from
//! GStreamer's error domains and codes.

use std::fmt;

use gstreamer as gst;

use crate::config::Transport;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FailReason {
    /// TCP connection refused, or the host cannot be reached or resolved.
    HostUnreachable,
    /// RTSP 401: wrong or missing credentials.
    Unauthorized,
    /// RTSP 404: the path does not exist on the camera.
    NoSuchStream,
    /// The camera did not answer in time.
    Timeout,
    /// The camera offers no H.264/H.265 video (e.g. MJPEG), or no decoder exists for it.
    UnsupportedCodec(String),
    /// The server answered `461 Unsupported Transport` to every `SETUP` over this transport
    /// (a UDP-only or TCP-only camera).
    /// `both`: the other transport was refused as well.
    TransportRefused { tried: Transport, both: bool },
    /// The camera ended the stream or closed the connection.
    StreamEnded,
    /// Frames stopped arriving while the connection stayed up.
    Stalled,
    /// Anything else, with GStreamer's message (never containing credentials: the
    /// location handed to GStreamer has none).
    Other(String),
}

impl FailReason {
    /// Errors that a retry is unlikely to fix soon (shown as `failed`, still retried).
    pub fn is_hard(&self) -> bool {
        matches!(
            self,
            Self::Unauthorized | Self::NoSuchStream | Self::UnsupportedCodec(_) | Self::TransportRefused { .. }
        )
    }

    /// rtspsrc reports "No supported stream was found. You might need to allow more
    /// transport protocols …" both when the server refused every `SETUP` with `461
    /// Unsupported Transport` and when there was no video track to set up: `offered_video`
    /// (a video track was offered) tells them apart.
    pub fn nothing_set_up(self, tried: Transport, offered_video: bool) -> Self {
        match self {
            Self::UnsupportedCodec(m) if m.contains("transport protocols") => {
                if offered_video {
                    Self::TransportRefused { tried, both: false }
                } else {
                    Self::UnsupportedCodec("the camera offers no video track".into())
                }
            }
            other => other,
        }
    }

    /// Maps a GStreamer error message to a reason.
    pub fn from_gst(error: &gst::glib::Error, debug: Option<&str>) -> Self {
        let debug = debug.unwrap_or("");
        if let Some(kind) = error.kind::<gst::ResourceError>() {
            return match kind {
                gst::ResourceError::NotAuthorized => Self::Unauthorized,
                gst::ResourceError::NotFound => Self::NoSuchStream,
                _ if debug.contains("Timeout") || debug.contains("timed out") => Self::Timeout,
                gst::ResourceError::OpenReadWrite | gst::ResourceError::OpenRead if debug.contains("connect") => {
                    Self::HostUnreachable
                }
                gst::ResourceError::Read | gst::ResourceError::Write => Self::StreamEnded,
                _ => Self::Other(error.message().to_string()),
            };
        }
        if let Some(kind) = error.kind::<gst::StreamError>() {
            return match kind {
                gst::StreamError::CodecNotFound | gst::StreamError::WrongType | gst::StreamError::TypeNotFound => {
                    Self::UnsupportedCodec(error.message().to_string())
                }
                _ => Self::Other(error.message().to_string()),
            };
        }
        if let Some(gst::CoreError::MissingPlugin) = error.kind::<gst::CoreError>() {
            return Self::UnsupportedCodec(error.message().to_string());
        }
        Self::Other(error.message().to_string())
    }
}

impl fmt::Display for FailReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::HostUnreachable => f.write_str("host unreachable (connection refused or no route)"),
            Self::Unauthorized => f.write_str("unauthorized (check username and password)"),
            Self::NoSuchStream => f.write_str("no such stream (check the url path)"),
            Self::Timeout => f.write_str("timeout (the camera did not answer)"),
            Self::UnsupportedCodec(what) => write!(f, "unsupported codec: {what}"),
            Self::TransportRefused { both: true, .. } => f.write_str(
                "transport refused by the server (461 Unsupported Transport over tcp and udp): the camera offers neither unicast transport",
            ),
            Self::TransportRefused { tried, both: false } => {
                let (name, other) = match tried {
                    Transport::Tcp => ("tcp", "udp"),
                    Transport::Udp => ("udp", "tcp"),
                };
                write!(f, "transport refused by the server (461 Unsupported Transport over {name}): try transport = \"{other}\"")
            }
            Self::StreamEnded => f.write_str("stream ended by the camera"),
            Self::Stalled => f.write_str("stalled (no frames)"),
            Self::Other(what) => f.write_str(what),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn err(kind: impl gst::glib::error::ErrorDomain) -> gst::glib::Error {
        gst::glib::Error::new(kind, "x")
    }

    #[test]
    fn maps_rtspsrc_errors() {
        assert_eq!(FailReason::from_gst(&err(gst::ResourceError::NotAuthorized), None), FailReason::Unauthorized);
        assert_eq!(FailReason::from_gst(&err(gst::ResourceError::NotFound), None), FailReason::NoSuchStream);
        assert_eq!(
            FailReason::from_gst(&err(gst::ResourceError::OpenReadWrite), Some("Failed to connect. (Generic error)")),
            FailReason::HostUnreachable
        );
        assert_eq!(
            FailReason::from_gst(
                &err(gst::ResourceError::Read),
                Some("Could not receive message. (Timeout while waiting for server response)")
            ),
            FailReason::Timeout
        );
        assert!(FailReason::Unauthorized.is_hard() && !FailReason::Timeout.is_hard());
    }

    #[test]
    fn nothing_to_set_up_is_a_refused_transport_only_when_video_was_offered() {
        let gst_text = "No supported stream was found. You might need to allow more transport protocols or may otherwise be missing the right GStreamer RTSP extension plugin.";
        let e = gst::glib::Error::new(gst::StreamError::CodecNotFound, gst_text);
        let r = FailReason::from_gst(&e, None);
        assert_eq!(
            r.clone().nothing_set_up(Transport::Tcp, true),
            FailReason::TransportRefused { tried: Transport::Tcp, both: false }
        );
        assert_eq!(
            FailReason::TransportRefused { tried: Transport::Tcp, both: false }.to_string(),
            "transport refused by the server (461 Unsupported Transport over tcp): try transport = \"udp\""
        );
        assert!(
            matches!(r.nothing_set_up(Transport::Tcp, false), FailReason::UnsupportedCodec(m) if m.contains("no video track"))
        );
        let other = FailReason::UnsupportedCodec("no decoder".into());
        assert_eq!(other.clone().nothing_set_up(Transport::Tcp, true), other);
    }
}
