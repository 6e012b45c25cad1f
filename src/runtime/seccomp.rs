//! `linux.seccomp`: the OCI profile compiled to a BPF filter with libseccomp, and the
//! filter installed into the calling process, with runc's semantics (unknown syscall
//! names skipped, rules whose action is the default skipped, several conditions on one
//! argument meaning "any of them", `SCMP_CMP_MASKED_EQ` taking the mask from `value`).
//!
//! Without no_new_privs the kernel only lets a process holding CAP_SYS_ADMIN install a
//! filter, so the caller installs it before dropping capabilities in that case, and as
//! late as possible (just before execve) otherwise: see `init::prepare_process`.

use libseccomp::ScmpSyscall;
use libseccomp::error::SeccompError;
use libseccomp::{ScmpAction, ScmpArch, ScmpArgCompare, ScmpCompareOp, ScmpFilterContext};
use oci_spec::runtime::{
    Arch, LinuxSeccomp, LinuxSeccompAction, LinuxSeccompArg, LinuxSeccompFilterFlag,
    LinuxSeccompOperator, LinuxSyscall,
};

use super::RuntimeError;

/// The errno of `SCMP_ACT_ERRNO` and `SCMP_ACT_TRACE` when the profile names none.
const DEFAULT_ERRNO: u32 = libc::EPERM as u32;

/// A compiled filter, not yet installed.
pub(super) struct Filter(ScmpFilterContext);

impl Filter {
    pub(super) fn compile(spec: &LinuxSeccomp) -> Result<Filter, RuntimeError> {
        let errno = spec.default_errno_ret().unwrap_or(DEFAULT_ERRNO);
        let default = action(spec.default_action(), Some(errno))?;
        let mut ctx = ScmpFilterContext::new(default).map_err(err("create the filter"))?;
        // The caller decides about no_new_privs (the spec's process.noNewPrivileges).
        ctx.set_ctl_nnp(false).map_err(err("unset no_new_privs"))?;
        for arch in spec.architectures().iter().flatten() {
            ctx.add_arch(scmp_arch(*arch)?)
                .map_err(err("add an architecture"))?;
        }
        for flag in spec.flags().iter().flatten() {
            set_flag(&mut ctx, *flag)?;
        }
        for rule in spec.syscalls().iter().flatten() {
            add_rule(&mut ctx, spec, rule)?;
        }
        Ok(Filter(ctx))
    }

    /// Installs the filter into the calling process; it survives execve and is inherited
    /// by every child.
    pub(super) fn install(&self) -> Result<(), RuntimeError> {
        self.0
            .load()
            .map_err(|source| RuntimeError::SeccompInstall { source })
    }
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

fn set_flag(ctx: &mut ScmpFilterContext, flag: LinuxSeccompFilterFlag) -> Result<(), RuntimeError> {
    let set = match flag {
        LinuxSeccompFilterFlag::SeccompFilterFlagLog => ctx.set_ctl_log(true),
        LinuxSeccompFilterFlag::SeccompFilterFlagTsync => ctx.set_ctl_tsync(true),
        LinuxSeccompFilterFlag::SeccompFilterFlagSpecAllow => ctx.set_ctl_ssb(true),
    };
    set.map(drop).map_err(err("set a filter flag"))
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
