//! `linux.seccomp`: the OCI profile compiled to a BPF program with libseccomp, with
//! runc's semantics (unknown syscall names skipped, rules whose action is the default
//! skipped, several conditions on one argument meaning "any of them",
//! `SCMP_CMP_MASKED_EQ` taking the mask from `value`), and the program installed into
//! the calling process with seccomp(2).
//!
//! Without no_new_privs the kernel only lets a process holding CAP_SYS_ADMIN install a
//! filter, so the caller installs it before dropping capabilities in that case, and as
//! late as possible (just before execve) otherwise: see `init::prepare_process`.

use std::io::{Read, Seek, Write};
use std::os::fd::OwnedFd;

use libseccomp::error::SeccompError;
use libseccomp::{
    ScmpAction, ScmpArch, ScmpArgCompare, ScmpCompareOp, ScmpFilterContext, ScmpSyscall,
};
use nix::sys::memfd::{MFdFlags, memfd_create};
use nix::sys::wait::{WaitStatus, waitpid};
use nix::unistd::ForkResult;
use oci_spec::runtime::{
    Arch, LinuxSeccomp, LinuxSeccompAction, LinuxSeccompArg, LinuxSeccompFilterFlag,
    LinuxSeccompOperator, LinuxSyscall,
};

use super::child::{exit_now, fork_child};
use super::{RuntimeError, io_err, sys_err};

/// The errno of `SCMP_ACT_ERRNO` and `SCMP_ACT_TRACE` when the profile names none.
const DEFAULT_ERRNO: u32 = libc::EPERM as u32;

/// A filter compiled to BPF, not yet installed: kept as the kernel takes it, so that
/// installing it (in init, or in every exec'd process) costs one syscall and no
/// recompilation, which for the default profile takes libseccomp milliseconds.
#[derive(Debug, Clone)]
pub(super) struct Filter {
    program: Vec<libc::sock_filter>,
    /// `SECCOMP_FILTER_FLAG_*` from `linux.seccomp.flags`.
    flags: libc::c_uint,
}

impl Filter {
    pub(super) fn compile(spec: &LinuxSeccomp) -> Result<Filter, RuntimeError> {
        let memfd = memfd()?;
        context(spec)?
            .export_bpf(&memfd)
            .map_err(err("export the filter"))?;
        let flags = spec
            .flags()
            .iter()
            .flatten()
            .fold(0, |acc, f| acc | flag(*f));
        Ok(Filter {
            program: decode(&read_all(memfd)?),
            flags,
        })
    }

    /// [`Filter::compile`] in a short-lived child. libseccomp works in about 1 MiB of
    /// heap for the default profile; in a long-lived caller (the monitor) the pages that
    /// later allocations pin stayed dirty: +70 KiB per monitor, measured.
    pub(super) fn compile_apart(spec: &LinuxSeccomp) -> Result<Filter, RuntimeError> {
        let memfd = memfd()?;
        let child = match fork_child()? {
            ForkResult::Child => {
                let written = Filter::compile(spec).and_then(|f| f.write_to(&memfd));
                exit_now(if written.is_ok() { 0 } else { 1 })
            }
            ForkResult::Parent { child } => child,
        };
        let status = loop {
            match waitpid(child, None) {
                Err(nix::Error::EINTR) => continue,
                other => break other.map_err(sys_err("wait for the seccomp compiler"))?,
            }
        };
        if status != WaitStatus::Exited(child, 0) {
            return Err(RuntimeError::Init(format!(
                "compiling the seccomp filter failed: {status:?}"
            )));
        }
        let bytes = read_all(memfd)?;
        let (flags, program) = bytes.split_at(bytes.len().min(4));
        let flags = u32::from_ne_bytes(flags.try_into().unwrap_or_default());
        Ok(Filter {
            program: decode(program),
            flags,
        })
    }

    /// The flags (4 bytes), then the program, as [`Filter::compile_apart`] reads them.
    fn write_to(&self, memfd: &OwnedFd) -> Result<(), RuntimeError> {
        let mut bytes = self.flags.to_ne_bytes().to_vec();
        for i in &self.program {
            bytes.extend_from_slice(&i.code.to_ne_bytes());
            bytes.extend_from_slice(&[i.jt, i.jf]);
            bytes.extend_from_slice(&i.k.to_ne_bytes());
        }
        let mut file = std::fs::File::from(memfd.try_clone().map_err(memfd_err)?);
        file.write_all(&bytes).map_err(memfd_err)
    }

    /// Installs the filter into the calling process; it survives execve and is inherited
    /// by every child. Needs no_new_privs or CAP_SYS_ADMIN.
    #[allow(unsafe_code)]
    pub(super) fn install(&self) -> Result<(), RuntimeError> {
        let len = u16::try_from(self.program.len())
            .map_err(|_| invalid(format!("{} BPF instructions", self.program.len())))?;
        let prog = libc::sock_fprog {
            len,
            filter: self.program.as_ptr().cast_mut(),
        };
        // SAFETY: `prog` points at `len` initialized sock_filter structs that outlive the
        // call; the kernel only reads (copies) them.
        let rc = unsafe {
            libc::syscall(
                libc::SYS_seccomp,
                libc::SECCOMP_SET_MODE_FILTER,
                self.flags,
                &prog as *const libc::sock_fprog,
            )
        };
        if rc != 0 {
            return Err(RuntimeError::Sys {
                op: "install the seccomp filter",
                source: nix::Error::last(),
            });
        }
        Ok(())
    }
}

/// Where libseccomp writes the BPF program (version 2.5 exports only to an fd).
fn memfd() -> Result<OwnedFd, RuntimeError> {
    memfd_create(c"seccomp-bpf", MFdFlags::MFD_CLOEXEC).map_err(sys_err("memfd_create"))
}

fn read_all(memfd: OwnedFd) -> Result<Vec<u8>, RuntimeError> {
    let mut file = std::fs::File::from(memfd);
    let mut bytes = Vec::new();
    file.rewind()
        .and_then(|_| file.read_to_end(&mut bytes))
        .map_err(memfd_err)?;
    Ok(bytes)
}

fn memfd_err(e: std::io::Error) -> RuntimeError {
    io_err(
        "the exported seccomp filter",
        "memfd:seccomp-bpf".as_ref(),
        e,
    )
}

/// struct sock_filter, 8 bytes each in native byte order.
fn decode(bytes: &[u8]) -> Vec<libc::sock_filter> {
    bytes
        .chunks_exact(8)
        .map(|i| libc::sock_filter {
            code: u16::from_ne_bytes([i[0], i[1]]),
            jt: i[2],
            jf: i[3],
            k: u32::from_ne_bytes([i[4], i[5], i[6], i[7]]),
        })
        .collect()
}

/// libseccomp's filter for `spec`, from which the BPF is exported.
fn context(spec: &LinuxSeccomp) -> Result<ScmpFilterContext, RuntimeError> {
    let errno = spec.default_errno_ret().unwrap_or(DEFAULT_ERRNO);
    let default = action(spec.default_action(), Some(errno))?;
    let mut ctx = ScmpFilterContext::new(default).map_err(err("create the filter"))?;
    for arch in spec.architectures().iter().flatten() {
        ctx.add_arch(scmp_arch(*arch)?)
            .map_err(err("add an architecture"))?;
    }
    for rule in spec.syscalls().iter().flatten() {
        add_rule(&mut ctx, spec, rule)?;
    }
    Ok(ctx)
}

/// Whether `spec` compiles; what the daemon checks at CreateContainer.
pub(super) fn check(spec: &LinuxSeccomp) -> Result<(), RuntimeError> {
    Filter::compile(spec).map(drop)
}

fn add_rule(
    ctx: &mut ScmpFilterContext,
    spec: &LinuxSeccomp,
    rule: &LinuxSyscall,
) -> Result<(), RuntimeError> {
    // A rule that does what the default does is redundant, and libseccomp refuses it.
    let same_errno = rule.errno_ret().is_none() || rule.errno_ret() == spec.default_errno_ret();
    if rule.action() == spec.default_action() && same_errno {
        return Ok(());
    }
    let act = action(rule.action(), rule.errno_ret())?;
    let conditions = conditions(rule.args().as_deref().unwrap_or_default())?;
    for name in rule.names() {
        // Names this libseccomp does not know, on any architecture, are skipped as runc
        // does: profiles list syscalls of other architectures and newer kernels.
        let Ok(nr) = ScmpSyscall::from_name(name) else {
            continue;
        };
        for group in &conditions {
            ctx.add_rule_conditional(act, nr, group)
                .map_err(rule_err(name))?;
        }
    }
    Ok(())
}

/// The rules to add for one syscall, each a list of ANDed comparisons: one rule with all
/// of them, or, when an argument is compared more than once, one rule per comparison
/// (libseccomp allows an argument once per rule; runc reads such a list as OR).
fn conditions(args: &[LinuxSeccompArg]) -> Result<Vec<Vec<ScmpArgCompare>>, RuntimeError> {
    let cmps = args.iter().map(compare).collect::<Result<Vec<_>, _>>()?;
    let repeated = args
        .iter()
        .enumerate()
        .any(|(i, a)| args[..i].iter().any(|b| b.index() == a.index()));
    Ok(if repeated {
        cmps.into_iter().map(|c| vec![c]).collect()
    } else {
        vec![cmps]
    })
}

fn compare(arg: &LinuxSeccompArg) -> Result<ScmpArgCompare, RuntimeError> {
    let index = u32::try_from(arg.index())
        .ok()
        .filter(|i| *i < 6)
        .ok_or_else(|| invalid(format!("syscall argument index {} (0 to 5)", arg.index())))?;
    let (op, datum) = match arg.op() {
        LinuxSeccompOperator::ScmpCmpNe => (ScmpCompareOp::NotEqual, arg.value()),
        LinuxSeccompOperator::ScmpCmpLt => (ScmpCompareOp::Less, arg.value()),
        LinuxSeccompOperator::ScmpCmpLe => (ScmpCompareOp::LessOrEqual, arg.value()),
        LinuxSeccompOperator::ScmpCmpEq => (ScmpCompareOp::Equal, arg.value()),
        LinuxSeccompOperator::ScmpCmpGe => (ScmpCompareOp::GreaterEqual, arg.value()),
        LinuxSeccompOperator::ScmpCmpGt => (ScmpCompareOp::Greater, arg.value()),
        LinuxSeccompOperator::ScmpCmpMaskedEq => (
            ScmpCompareOp::MaskedEqual(arg.value()),
            arg.value_two().unwrap_or(0),
        ),
    };
    Ok(ScmpArgCompare::new(index, op, datum))
}

fn action(act: LinuxSeccompAction, ret: Option<u32>) -> Result<ScmpAction, RuntimeError> {
    let ret = ret.unwrap_or(DEFAULT_ERRNO);
    Ok(match act {
        LinuxSeccompAction::ScmpActKill | LinuxSeccompAction::ScmpActKillThread => {
            ScmpAction::KillThread
        }
        LinuxSeccompAction::ScmpActKillProcess => ScmpAction::KillProcess,
        LinuxSeccompAction::ScmpActTrap => ScmpAction::Trap,
        LinuxSeccompAction::ScmpActErrno => ScmpAction::Errno(
            i32::try_from(ret)
                .ok()
                .filter(|e| *e <= i32::from(u16::MAX))
                .ok_or_else(|| invalid(format!("errnoRet {ret}")))?,
        ),
        LinuxSeccompAction::ScmpActTrace => {
            ScmpAction::Trace(u16::try_from(ret).map_err(|_| invalid(format!("errnoRet {ret}")))?)
        }
        LinuxSeccompAction::ScmpActLog => ScmpAction::Log,
        LinuxSeccompAction::ScmpActAllow => ScmpAction::Allow,
        LinuxSeccompAction::ScmpActNotify => {
            return Err(invalid(
                "SCMP_ACT_NOTIFY (a seccomp agent) is not supported".into(),
            ));
        }
    })
}

fn flag(flag: LinuxSeccompFilterFlag) -> libc::c_uint {
    // The constants are c_ulong in libc; the kernel's flags argument is unsigned int.
    let flag = match flag {
        LinuxSeccompFilterFlag::SeccompFilterFlagLog => libc::SECCOMP_FILTER_FLAG_LOG,
        LinuxSeccompFilterFlag::SeccompFilterFlagTsync => libc::SECCOMP_FILTER_FLAG_TSYNC,
        LinuxSeccompFilterFlag::SeccompFilterFlagSpecAllow => libc::SECCOMP_FILTER_FLAG_SPEC_ALLOW,
    };
    libc::c_uint::try_from(flag).unwrap_or_default()
}

fn scmp_arch(arch: Arch) -> Result<ScmpArch, RuntimeError> {
    Ok(match arch {
        Arch::ScmpArchNative => ScmpArch::Native,
        Arch::ScmpArchX86 => ScmpArch::X86,
        Arch::ScmpArchX86_64 => ScmpArch::X8664,
        Arch::ScmpArchX32 => ScmpArch::X32,
        Arch::ScmpArchArm => ScmpArch::Arm,
        Arch::ScmpArchAarch64 => ScmpArch::Aarch64,
        Arch::ScmpArchMips => ScmpArch::Mips,
        Arch::ScmpArchMips64 => ScmpArch::Mips64,
        Arch::ScmpArchMips64n32 => ScmpArch::Mips64N32,
        Arch::ScmpArchMipsel => ScmpArch::Mipsel,
        Arch::ScmpArchMipsel64 => ScmpArch::Mipsel64,
        Arch::ScmpArchMipsel64n32 => ScmpArch::Mipsel64N32,
        Arch::ScmpArchPpc => ScmpArch::Ppc,
        Arch::ScmpArchPpc64 => ScmpArch::Ppc64,
        Arch::ScmpArchPpc64le => ScmpArch::Ppc64Le,
        Arch::ScmpArchS390 => ScmpArch::S390,
        Arch::ScmpArchS390x => ScmpArch::S390X,
        Arch::ScmpArchRiscv64 => ScmpArch::Riscv64,
    })
}

fn invalid(what: String) -> RuntimeError {
    RuntimeError::SeccompProfile { what }
}

fn err(what: &'static str) -> impl FnOnce(SeccompError) -> RuntimeError {
    move |source| RuntimeError::Seccomp {
        what: what.to_string(),
        source,
    }
}

fn rule_err(name: &str) -> impl FnOnce(SeccompError) -> RuntimeError {
    let what = format!("add the rule for {name}");
    move |source| RuntimeError::Seccomp { what, source }
}

#[cfg(test)]
#[path = "seccomp_tests.rs"]
mod tests;
