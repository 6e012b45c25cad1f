//! The CRI gRPC layer: thin translation between CRI messages and domain calls.
