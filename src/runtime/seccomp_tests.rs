//! Compiling OCI profiles with libseccomp, and a filter installed in a forked child.

use nix::sys::wait::{WaitStatus, waitpid};
use nix::unistd::ForkResult;
use oci_spec::runtime::{LinuxSeccompArgBuilder, LinuxSyscallBuilder};

use super::*;
use crate::runtime::child::{exit_now, fork_child};

fn rule(names: &[&str], action: LinuxSeccompAction) -> LinuxSyscall {
    LinuxSyscallBuilder::default()
        .names(names.iter().map(|n| n.to_string()).collect::<Vec<_>>())
        .action(action)
        .build()
        .unwrap()
}

fn arg(index: usize, value: u64, op: LinuxSeccompOperator) -> LinuxSeccompArg {
    LinuxSeccompArgBuilder::default()
        .index(index)
        .value(value)
        .op(op)
        .build()
        .unwrap()
}

fn profile(default: LinuxSeccompAction, rules: Vec<LinuxSyscall>) -> LinuxSeccomp {
    let mut p = LinuxSeccomp::default();
    p.set_default_action(default);
    p.set_syscalls(Some(rules));
    p
}

#[test]
fn conditions_on_one_argument_are_alternatives() {
    let distinct = [
        arg(0, 1, LinuxSeccompOperator::ScmpCmpEq),
        arg(1, 2, LinuxSeccompOperator::ScmpCmpEq),
    ];
    assert_eq!(
        conditions(&distinct)
            .unwrap()
            .iter()
            .map(Vec::len)
            .collect::<Vec<_>>(),
        [2]
    );
    let repeated = [
        arg(0, 1, LinuxSeccompOperator::ScmpCmpEq),
        arg(0, 2, LinuxSeccompOperator::ScmpCmpEq),
    ];
    assert_eq!(
        conditions(&repeated)
            .unwrap()
            .iter()
            .map(Vec::len)
            .collect::<Vec<_>>(),
        [1, 1]
    );
    let err = conditions(&[arg(6, 0, LinuxSeccompOperator::ScmpCmpEq)]).unwrap_err();
    assert!(err.to_string().contains("argument index 6"), "{err}");
}

#[test]
fn compiles_like_runc() {
    use LinuxSeccompAction::*;
    let mut masked = rule(&["clone"], ScmpActAllow);
    masked.set_args(Some(vec![arg(
        0,
        0x7E02_0000,
        LinuxSeccompOperator::ScmpCmpMaskedEq,
    )]));
    let mut p = profile(
        ScmpActErrno,
        vec![
            rule(
                &["read", "write", "no_such_syscall", "chown32"],
                ScmpActAllow,
            ),
            // The default action again: skipped, where libseccomp would refuse it.
            rule(&["mount"], ScmpActErrno),
            masked,
        ],
    );
    p.set_architectures(Some(vec![
        Arch::ScmpArchX86_64,
        Arch::ScmpArchX86,
        Arch::ScmpArchX32,
    ]));
    p.set_flags(Some(vec![LinuxSeccompFilterFlag::SeccompFilterFlagLog]));
    check(&p).unwrap();

    let notify = profile(ScmpActAllow, vec![rule(&["mkdir"], ScmpActNotify)]);
    let err = check(&notify).unwrap_err();
    assert!(matches!(err, RuntimeError::SeccompProfile { .. }), "{err}");
    let mut huge = rule(&["mkdir"], ScmpActErrno);
    huge.set_errno_ret(Some(1 << 20));
    let err = check(&profile(ScmpActAllow, vec![huge])).unwrap_err();
    assert!(err.to_string().contains("errnoRet 1048576"), "{err}");
}

#[test]
fn an_installed_filter_blocks_its_syscalls() {
    let dir = tempfile::tempdir().unwrap();
    let target = dir.path().join("blocked");
    let p = profile(
        LinuxSeccompAction::ScmpActAllow,
        vec![rule(
            &["mkdir", "mkdirat"],
            LinuxSeccompAction::ScmpActErrno,
        )],
    );
    let filter = Filter::compile(&p).unwrap();
    match fork_child().unwrap() {
        ForkResult::Child => {
            let ok = nix::sys::prctl::set_no_new_privs().is_ok()
                && filter.install().is_ok()
                && matches!(
                    nix::unistd::mkdir(&target, nix::sys::stat::Mode::S_IRWXU),
                    Err(nix::Error::EPERM)
                );
            exit_now(if ok { 0 } else { 1 })
        }
        ForkResult::Parent { child } => {
            assert_eq!(waitpid(child, None).unwrap(), WaitStatus::Exited(child, 0));
            assert!(!target.exists());
        }
    }
}

#[test]
fn compiling_apart_gives_the_same_program() {
    let mut p = profile(
        LinuxSeccompAction::ScmpActErrno,
        vec![rule(
            &["read", "write", "exit_group"],
            LinuxSeccompAction::ScmpActAllow,
        )],
    );
    p.set_flags(Some(vec![LinuxSeccompFilterFlag::SeccompFilterFlagLog]));
    let here = Filter::compile(&p).unwrap();
    let apart = Filter::compile_apart(&p).unwrap();
    assert!(!here.program.is_empty());
    assert_eq!(u64::from(here.flags), libc::SECCOMP_FILTER_FLAG_LOG);
    assert_eq!(apart.flags, here.flags);
    let words = |f: &Filter| -> Vec<(u16, u8, u8, u32)> {
        f.program
            .iter()
            .map(|i| (i.code, i.jt, i.jf, i.k))
            .collect()
    };
    assert_eq!(words(&apart), words(&here));
}
