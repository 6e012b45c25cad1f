//! Bringing `lo` up in a new network namespace with one rtnetlink request, so pods have
//! a working loopback whether or not the CNI config runs the `loopback` plugin.

use std::os::fd::AsRawFd;

use nix::errno::Errno;
use nix::sys::socket::{self, AddressFamily, MsgFlags, SockFlag, SockProtocol, SockType};

use crate::sandbox::SandboxError;

/// The kernel always gives `lo` this index in a new network namespace.
const LOOPBACK_IFINDEX: i32 = 1;
const RTM_NEWLINK: u16 = 16;
const NLMSG_ERROR: u16 = 2;
const NLM_F_REQUEST: u16 = 1;
const NLM_F_ACK: u16 = 4;
const IFF_UP: u32 = 1;

/// Sets IFF_UP on `lo` of the calling thread's netns with one RTM_NEWLINK request.
pub(super) fn bring_loopback_up() -> Result<(), SandboxError> {
    let sys = |op| move |source| SandboxError::Sys { op, source };
    let fd = socket::socket(
        AddressFamily::Netlink,
        SockType::Raw,
        SockFlag::SOCK_CLOEXEC,
        SockProtocol::NetlinkRoute,
    )
    .map_err(sys("opening rtnetlink socket"))?;
    let request = link_up_request(LOOPBACK_IFINDEX);
    socket::send(fd.as_raw_fd(), &request, MsgFlags::empty())
        .map_err(sys("sending RTM_NEWLINK for lo"))?;
    let mut reply = [0u8; 512];
    let n = socket::recv(fd.as_raw_fd(), &mut reply, MsgFlags::empty())
        .map_err(sys("receiving RTM_NEWLINK ack"))?;
    match ack_errno(&reply[..n]) {
        Some(0) => Ok(()),
        Some(errno) => Err(SandboxError::Sys {
            op: "setting lo up",
            source: Errno::from_raw(-errno),
        }),
        None => Err(SandboxError::Sys {
            op: "setting lo up: unexpected rtnetlink reply",
            source: Errno::EPROTO,
        }),
    }
}

/// `struct nlmsghdr` + `struct ifinfomsg` asking to set IFF_UP on `ifindex`.
fn link_up_request(ifindex: i32) -> [u8; 32] {
    let mut m = [0u8; 32];
    m[0..4].copy_from_slice(&32u32.to_ne_bytes()); // nlmsg_len
    m[4..6].copy_from_slice(&RTM_NEWLINK.to_ne_bytes());
    m[6..8].copy_from_slice(&(NLM_F_REQUEST | NLM_F_ACK).to_ne_bytes());
    m[8..12].copy_from_slice(&1u32.to_ne_bytes()); // nlmsg_seq; pid 0 = kernel assigns
    // ifinfomsg: family AF_UNSPEC, pad, type 0 (bytes 16..20 stay zero).
    m[20..24].copy_from_slice(&ifindex.to_ne_bytes());
    m[24..28].copy_from_slice(&IFF_UP.to_ne_bytes()); // ifi_flags
    m[28..32].copy_from_slice(&IFF_UP.to_ne_bytes()); // ifi_change
    m
}

/// The (negative or zero) error of an NLMSG_ERROR reply; `None` for anything else.
fn ack_errno(reply: &[u8]) -> Option<i32> {
    let ty = u16::from_ne_bytes(reply.get(4..6)?.try_into().ok()?);
    if ty != NLMSG_ERROR {
        return None;
    }
    Some(i32::from_ne_bytes(reply.get(16..20)?.try_into().ok()?))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn netlink_messages() {
        let m = link_up_request(1);
        assert_eq!(u32::from_ne_bytes(m[0..4].try_into().unwrap()), 32);
        assert_eq!(i32::from_ne_bytes(m[20..24].try_into().unwrap()), 1);
        let mut ack = [0u8; 36];
        ack[4..6].copy_from_slice(&NLMSG_ERROR.to_ne_bytes());
        assert_eq!(ack_errno(&ack), Some(0));
        ack[16..20].copy_from_slice(&(-1i32).to_ne_bytes());
        assert_eq!(ack_errno(&ack), Some(-1));
        assert_eq!(ack_errno(&ack[..10]), None);
        ack[4..6].copy_from_slice(&3u16.to_ne_bytes());
        assert_eq!(ack_errno(&ack), None);
    }
}
