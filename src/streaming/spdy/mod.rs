//! SPDY/3.1, server side, as Kubernetes streaming uses it: frames (`frame`), header
//! blocks and their zlib stream (`headers`, `dictionary`), flow-control windows (`flow`)
//! and one connection's reader and writer (`session`). No crate implements SPDY's
//! server side, so it is written here and tested against recorded frames.

pub mod dictionary;
pub mod flow;
pub mod frame;
pub mod headers;
pub mod session;

pub use session::{Options, Stream, StreamReader, StreamWriter, serve};

#[derive(Debug, thiserror::Error)]
pub enum SpdyError {
    #[error("SPDY protocol error: {0}")]
    Protocol(String),
    #[error("SPDY header compression: {0}")]
    Compression(String),
    #[error("SPDY flow control: {0}")]
    Flow(String),
    #[error("the SPDY stream was reset")]
    Reset,
    #[error("the SPDY connection is closed")]
    Closed,
    #[error("SPDY connection: {0}")]
    Io(std::io::Error),
}
