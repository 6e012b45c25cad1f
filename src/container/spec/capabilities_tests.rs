//! Capability sets from the CRI security context, on a host whose bounding set lacks
//! SYS_RESOURCE (the fixture's, like this machine's).

use k8s_cri::v1::Capability as CriCapability;
use oci_spec::runtime::{Capabilities, Capability, LinuxCapabilities, Spec};

use super::SpecError;
use super::tests::{Fixture, strings};

fn caps(spec: &Spec) -> LinuxCapabilities {
    spec.process()
        .as_ref()
        .and_then(|p| p.capabilities().clone())
        .expect("capabilities")
}

fn effective(f: &Fixture) -> Capabilities {
    caps(&f.generate().expect("spec"))
        .effective()
        .clone()
        .unwrap_or_default()
}

fn with(add: &[&str], drop: &[&str], ambient: &[&str]) -> Fixture {
    let mut f = Fixture::new();
    f.security().capabilities = Some(CriCapability {
        add_capabilities: strings(add),
        drop_capabilities: strings(drop),
        add_ambient_capabilities: strings(ambient),
    });
    f
}

#[test]
fn default_set_is_containerds_and_nothing_inheritable() {
    let c = caps(&Fixture::new().generate().expect("spec"));
    let eff = c.effective().clone().unwrap_or_default();
    assert_eq!(eff.len(), 14);
    assert!(eff.contains(&Capability::NetRaw) && !eff.contains(&Capability::SysAdmin));
    assert_eq!(c.bounding(), c.effective());
    assert_eq!(c.permitted(), c.effective());
    assert_eq!(c.inheritable().clone().unwrap_or_default().len(), 0);
    assert_eq!(c.ambient().clone().unwrap_or_default().len(), 0);
}

#[test]
fn adds_and_drops_in_containerds_order() {
    let got = effective(&with(
        &["NET_ADMIN", "cap_sys_time"],
        &["NET_RAW", "CAP_KILL"],
        &[],
    ));
    assert!(got.contains(&Capability::NetAdmin) && got.contains(&Capability::SysTime));
    assert!(!got.contains(&Capability::NetRaw) && !got.contains(&Capability::Kill));

    // The restricted pod security standard's pattern: drop ALL, add one back.
    let got = effective(&with(&["NET_BIND_SERVICE"], &["ALL"], &[]));
    assert_eq!(got, Capabilities::from([Capability::NetBindService]));

    let got = effective(&with(&["ALL"], &["CHOWN"], &[]));
    assert!(got.contains(&Capability::SysAdmin) && !got.contains(&Capability::Chown));
}

#[test]
fn everything_is_limited_to_the_hosts_bounding_set() {
    let f = with(&["ALL"], &[], &[]);
    assert_eq!(effective(&f), f.host.capabilities);
    assert!(!effective(&f).contains(&Capability::SysResource));
    assert!(!effective(&with(&["SYS_RESOURCE"], &[], &[])).contains(&Capability::SysResource));

    let mut f = Fixture::new();
    f.security().privileged = true;
    let c = caps(&f.generate().expect("spec"));
    assert_eq!(c.bounding().as_ref(), Some(&f.host.capabilities));
    assert_eq!(c.effective().as_ref(), Some(&f.host.capabilities));
}

#[test]
fn ambient_capabilities_are_also_permitted_and_inheritable() {
    let c = caps(
        &with(&[], &[], &["NET_BIND_SERVICE", "SYS_RESOURCE"])
            .generate()
            .expect("spec"),
    );
    let one = Capabilities::from([Capability::NetBindService]);
    assert_eq!(c.ambient().as_ref(), Some(&one));
    assert_eq!(c.inheritable().as_ref(), Some(&one));
    let c = caps(
        &with(&[], &["ALL"], &["NET_ADMIN"])
            .generate()
            .expect("spec"),
    );
    let one = Capabilities::from([Capability::NetAdmin]);
    assert_eq!(c.ambient().as_ref(), Some(&one));
    assert_eq!(c.effective().as_ref(), Some(&one));
    let c = caps(
        &with(&[], &["NET_ADMIN"], &["NET_ADMIN"])
            .generate()
            .expect("spec"),
    );
    assert_eq!(
        c.ambient().clone().unwrap_or_default().len(),
        0,
        "drops win"
    );
}

#[test]
fn unknown_names_are_invalid() {
    for (add, ambient) in [(&["NOT_A_CAP"][..], &[][..]), (&[][..], &["CAP_NOPE"][..])] {
        assert!(matches!(
            with(add, &[], ambient).generate(),
            Err(SpecError::Input(
                crate::validation::InputError::Invalid { .. }
            ))
        ));
    }
}
