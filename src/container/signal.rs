//! The container's stop signal: CRI `stop_signal` (kubelet's ContainerStopSignals) wins
//! over the image's STOPSIGNAL, and SIGTERM is the default. Names are accepted in the
//! forms images and CRI use: `SIGTERM`, `TERM`, `15`, `SIGRTMIN+3`, `SIGRTMINPLUS3`.

use k8s_cri::v1::{ContainerConfig, Signal};

use super::error::SpecError;

/// The signal StopContainer sends first.
pub fn resolve(
    config: &ContainerConfig,
    image_stop_signal: Option<&str>,
) -> Result<i32, SpecError> {
    let cri = Signal::try_from(config.stop_signal).map_err(|_| {
        SpecError::invalid(
            "stop_signal",
            config.stop_signal.to_string(),
            "unknown signal",
        )
    })?;
    if cri != Signal::RuntimeDefault {
        return number(cri.as_str_name()).ok_or_else(|| {
            SpecError::invalid(
                "stop_signal",
                cri.as_str_name(),
                "not a signal on this host",
            )
        });
    }
    Ok(image_stop_signal.and_then(number).unwrap_or(libc::SIGTERM))
}

/// A signal number from its name or number.
pub fn number(s: &str) -> Option<i32> {
    if let Ok(n) = s.parse::<i32>() {
        return (1..=libc::SIGRTMAX()).contains(&n).then_some(n);
    }
    let name = s.trim().to_ascii_uppercase();
    let name = name.strip_prefix("SIG").unwrap_or(&name);
    if let Some(n) = realtime(name) {
        return Some(n);
    }
    // Linux aliases that CRI lists by their own names.
    let name = match name {
        "CLD" => "CHLD",
        "POLL" => "IO",
        "IOT" => "ABRT",
        other => other,
    };
    format!("SIG{name}")
        .parse::<nix::sys::signal::Signal>()
        .ok()
        .map(|s| s as i32)
}

/// `RTMIN`, `RTMIN+3`/`RTMINPLUS3`, `RTMAX-1`/`RTMAXMINUS1`, `RTMAX`.
fn realtime(name: &str) -> Option<i32> {
    let (min, max) = (libc::SIGRTMIN(), libc::SIGRTMAX());
    let offset = |rest: &str, sep: &[&str]| -> Option<i32> {
        if rest.is_empty() {
            return Some(0);
        }
        let digits = sep.iter().find_map(|p| rest.strip_prefix(p))?;
        digits.parse().ok()
    };
    let n = if let Some(rest) = name.strip_prefix("RTMIN") {
        min + offset(rest, &["+", "PLUS"])?
    } else if let Some(rest) = name.strip_prefix("RTMAX") {
        max - offset(rest, &["-", "MINUS"])?
    } else {
        return None;
    };
    (min..=max).contains(&n).then_some(n)
}

/// The CRI enum for a signal number, for ContainerStatus.
pub fn to_cri(n: i32) -> Signal {
    let (min, max) = (libc::SIGRTMIN(), libc::SIGRTMAX());
    let name = match n {
        n if n == min => "SIGRTMIN".to_string(),
        n if n == max => "SIGRTMAX".to_string(),
        n if n > min && n - min <= 15 => format!("SIGRTMINPLUS{}", n - min),
        n if n < max && max - n <= 14 && n > min => format!("SIGRTMAXMINUS{}", max - n),
        n => match nix::sys::signal::Signal::try_from(n) {
            Ok(s) => s.as_str().to_string(),
            Err(_) => return Signal::RuntimeDefault,
        },
    };
    Signal::from_str_name(&name).unwrap_or(Signal::RuntimeDefault)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_numbers() {
        assert_eq!(number("SIGTERM"), Some(libc::SIGTERM));
        assert_eq!(number("quit"), Some(libc::SIGQUIT));
        assert_eq!(number("9"), Some(9));
        assert_eq!(number("SIGRTMIN+3"), Some(libc::SIGRTMIN() + 3));
        assert_eq!(number("SIGRTMAXMINUS1"), Some(libc::SIGRTMAX() - 1));
        for bad in ["SIGNOPE", "0", "999", "SIGRTMIN+99", "RTMINX"] {
            assert_eq!(number(bad), None, "{bad}");
        }
    }

    #[test]
    fn cri_wins_over_the_image_and_sigterm_is_the_default() {
        let mut c = ContainerConfig::default();
        assert_eq!(resolve(&c, None).unwrap(), libc::SIGTERM);
        assert_eq!(resolve(&c, Some("SIGQUIT")).unwrap(), libc::SIGQUIT);
        assert_eq!(resolve(&c, Some("bogus")).unwrap(), libc::SIGTERM);
        c.stop_signal = Signal::Sigusr1 as i32;
        assert_eq!(resolve(&c, Some("SIGQUIT")).unwrap(), libc::SIGUSR1);
        c.stop_signal = 999;
        assert!(resolve(&c, None).is_err());
    }

    #[test]
    fn every_cri_signal_round_trips() {
        for v in 1..=65 {
            let s = Signal::try_from(v).expect("enum value");
            let n = number(s.as_str_name()).unwrap_or_else(|| panic!("{s:?}"));
            // SIGCLD, SIGIOT and SIGPOLL are aliases of SIGCHLD, SIGABRT and SIGIO.
            let back = to_cri(n);
            assert_eq!(number(back.as_str_name()), Some(n), "{s:?}");
        }
    }
}
