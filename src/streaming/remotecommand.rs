//! kubelet's remotecommand protocol, the part that does not depend on the transport:
//! which subprotocol a client and crius agree on, what each stream is for, how the
//! exit code travels on the error stream, how resize events are read, and WebSocket's
//! channel-byte framing. Written from kubelet's `pkg/kubelet/cri/streaming/remotecommand`
//! and client-go's `tools/remotecommand`.

use serde::{Deserialize, Serialize};

/// SPDY subprotocols, newest first: the order crius prefers them in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Protocol {
    /// Exit code as a metav1.Status JSON on the error stream; resize stream.
    V4,
    /// Resize stream; the error stream carries only a failure's text.
    V3,
    /// stdin, stdout, stderr and error streams, each created by the client.
    V2,
    /// The first form (`channel.k8s.io`).
    V1,
}

pub const SPDY_PROTOCOLS: [Protocol; 4] = [Protocol::V4, Protocol::V3, Protocol::V2, Protocol::V1];

impl Protocol {
    pub fn name(self) -> &'static str {
        match self {
            Protocol::V4 => "v4.channel.k8s.io",
            Protocol::V3 => "v3.channel.k8s.io",
            Protocol::V2 => "v2.channel.k8s.io",
            Protocol::V1 => "channel.k8s.io",
        }
    }

    /// Whether a terminal's size changes arrive on a resize stream.
    pub fn resizes(self) -> bool {
        matches!(self, Protocol::V4 | Protocol::V3)
    }

    /// What the error stream carries once the process exited with `code`: v4 always
    /// a Status JSON; older protocols the text of a failure and nothing on success.
    pub fn exit_message(self, code: i32) -> Vec<u8> {
        match (self, code) {
            (Protocol::V4, _) => exit_status(code),
            (_, 0) => Vec::new(),
            _ => exit_text(code).into_bytes(),
        }
    }

    /// What the error stream carries when the process could not be run at all.
    pub fn failure_message(self, message: &str) -> Vec<u8> {
        match self {
            Protocol::V4 => internal_status(message),
            _ => message.as_bytes().to_vec(),
        }
    }
}

/// The first protocol the client offers (in its order, as kubelet negotiates) that
/// crius speaks. Values may hold several protocols separated by commas.
pub fn negotiate<'a>(offered: impl IntoIterator<Item = &'a str>) -> Option<Protocol> {
    offered
        .into_iter()
        .flat_map(|v| v.split(','))
        .map(str::trim)
        .find_map(|p| SPDY_PROTOCOLS.into_iter().find(|s| s.name() == p))
}

/// The role of a SPDY stream, from its `streamType` header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StreamType {
    Stdin,
    Stdout,
    Stderr,
    Error,
    Resize,
}

impl StreamType {
    pub fn parse(header: &str) -> Option<StreamType> {
        Some(match header {
            "stdin" => StreamType::Stdin,
            "stdout" => StreamType::Stdout,
            "stderr" => StreamType::Stderr,
            "error" => StreamType::Error,
            "resize" => StreamType::Resize,
            _ => return None,
        })
    }
}

#[derive(Serialize)]
struct Cause {
    reason: &'static str,
    message: String,
}

#[derive(Serialize)]
struct Details {
    causes: Vec<Cause>,
}

/// The fields of metav1.Status that remotecommand uses.
#[derive(Serialize)]
struct Status {
    metadata: serde_json::Map<String, serde_json::Value>,
    status: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    message: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    reason: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    details: Option<Details>,
    #[serde(skip_serializing_if = "Option::is_none")]
    code: Option<u16>,
}

fn exit_text(code: i32) -> String {
    format!("command terminated with non-zero exit code: exit status {code}")
}

/// v4's Status for an exit: Success, or Failure with reason NonZeroExitCode and the
/// code as the message of an ExitCode cause (which client-go turns back into a code).
pub fn exit_status(code: i32) -> Vec<u8> {
    let status = if code == 0 {
        Status {
            metadata: Default::default(),
            status: "Success",
            message: None,
            reason: None,
            details: None,
            code: None,
        }
    } else {
        Status {
            metadata: Default::default(),
            status: "Failure",
            message: Some(exit_text(code)),
            reason: Some("NonZeroExitCode"),
            details: Some(Details {
                causes: vec![Cause {
                    reason: "ExitCode",
                    message: code.to_string(),
                }],
            }),
            code: None,
        }
    };
    serde_json::to_vec(&status).unwrap_or_default()
}

/// v4's Status for a process that could not be run: an internal error, as kubelet's.
pub fn internal_status(message: &str) -> Vec<u8> {
    let status = Status {
        metadata: Default::default(),
        status: "Failure",
        message: Some(format!("Internal error occurred: {message}")),
        reason: Some("InternalError"),
        details: None,
        code: Some(500),
    };
    serde_json::to_vec(&status).unwrap_or_default()
}

/// A terminal size, as client-go's TerminalSize encodes it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
pub struct Size {
    #[serde(rename = "Width")]
    pub width: u16,
    #[serde(rename = "Height")]
    pub height: u16,
}

/// A resize stream is a sequence of JSON objects with no separator required.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ResizeError {
    #[error("a resize event is not valid JSON: {0}")]
    Json(String),
    #[error("a resize event is longer than {MAX_RESIZE} bytes")]
    TooLong,
}

/// Bytes a single pending resize event may take.
const MAX_RESIZE: usize = 4096;

/// Reads resize events from a stream that may cut them anywhere.
#[derive(Debug, Default)]
pub struct ResizeDecoder {
    pending: Vec<u8>,
}

impl ResizeDecoder {
    /// The complete events `data` finishes; a partial one waits for the next call.
    pub fn feed(&mut self, data: &[u8]) -> Result<Vec<Size>, ResizeError> {
        self.pending.extend_from_slice(data);
        let mut sizes = Vec::new();
        let mut stream = serde_json::Deserializer::from_slice(&self.pending).into_iter::<Size>();
        let mut used = 0;
        while let Some(item) = stream.next() {
            match item {
                Ok(size) => {
                    sizes.push(size);
                    used = stream.byte_offset();
                }
                Err(e) if e.is_eof() => break,
                Err(e) => return Err(ResizeError::Json(e.to_string())),
            }
        }
        self.pending.drain(..used);
        if self.pending.len() > MAX_RESIZE {
            return Err(ResizeError::TooLong);
        }
        Ok(sizes)
    }
}

/// WebSocket channels: what the first byte (or digit, in base64) of every message names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Channel {
    Stdin = 0,
    Stdout = 1,
    Stderr = 2,
    Error = 3,
    Resize = 4,
    /// v5: the payload's one byte names a channel the sender closed.
    Close = 255,
}

impl Channel {
    pub fn from_byte(b: u8) -> Option<Channel> {
        Some(match b {
            0 => Channel::Stdin,
            1 => Channel::Stdout,
            2 => Channel::Stderr,
            3 => Channel::Error,
            4 => Channel::Resize,
            255 => Channel::Close,
            _ => return None,
        })
    }
}

#[cfg(test)]
#[path = "remotecommand_tests.rs"]
mod tests;
