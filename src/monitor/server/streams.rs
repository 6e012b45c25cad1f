//! Requests that turn a connection into a stream's: a streaming exec and an attachment,
//! whose stdio fds go to the daemon with the start reply.

use std::os::fd::OwnedFd;

use super::super::exec_stream;
use super::super::frame;
use super::super::proto::{self, response::Kind as Resp};
use super::{Monitor, MonitorError};

impl Monitor {
    /// Starts a streaming exec and hands its stdio to the daemon on `conn`.
    pub(super) fn exec_stream(
        &mut self,
        conn: u64,
        req: proto::ExecStream,
    ) -> Result<(), MonitorError> {
        let target = self.containers.exec_target(&req.id, &self.cgroup_root)?;
        let started = exec_stream::spawn(target, &req.args, req.stdin, req.tty)?;
        self.stream_execs.add(started.pid, conn);
        let pid = started.pid.as_raw();
        let started_resp = Resp::ExecStarted(proto::ExecStarted { pid });
        if !self.send_with_fds(conn, started_resp, &started.fds) {
            self.stream_execs.hang_up(conn);
        }
        Ok(())
    }

    /// Attaches `conn` to a container's stdio and hands the daemon its pipes.
    pub(super) fn attach(&mut self, conn: u64, req: &proto::Attach) -> Result<(), MonitorError> {
        let (started, fds) = self.containers.attach(conn, req)?;
        if !self.send_with_fds(conn, Resp::AttachStarted(started), &fds) {
            self.containers.detach(conn);
        }
        Ok(())
    }

    /// Sends a start reply with `fds` on a connection that turns into a stream's. A
    /// connection it cannot be sent on is dead (nothing more is owed on it).
    fn send_with_fds(&mut self, conn: u64, kind: Resp, fds: &[OwnedFd]) -> bool {
        let frame = frame::encode(&proto::Response { kind: Some(kind) });
        let Some(c) = self.conn_mut(conn) else {
            return false;
        };
        c.streaming = true;
        let sent = exec_stream::send_with_fds(&c.stream, &frame, fds).is_ok();
        c.dead |= !sent;
        sent
    }

    /// Deletes an exited container; attachers still on it are told it ended.
    pub(super) fn delete(&mut self, id: &str) -> Result<(), MonitorError> {
        for conn in self.containers.delete(id, &self.cgroup_root)? {
            self.respond(conn, Resp::AttachEnded(proto::AttachEnded {}));
            self.resume(conn);
        }
        Ok(())
    }
}
