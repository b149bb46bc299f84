//! `create --host-address H --local-address L` (and `--host-address6`,
//! `--local-address6`): classic `nixos-container`'s static address pair.
//!
//! [`apply`] is the one place that maps the pair onto a registry entry: the
//! registry's fixed pair (`network.hostAddress`/`localAddress`, `…6`), i.e.
//! the address scheme of `nixos_nspawn_core::addressing` with the given addresses
//! instead of the derived ones. The host side is rendered into `ve-NAME`
//! (without a prefix: the point-to-point `Address=H/32` + `Peer=L/32`, no DHCP
//! server, as `import-classic` writes for a classic container's
//! `HOST_ADDRESS`/`LOCAL_ADDRESS`); the container side reaches the guest as
//! the `nixos-nspawn.host0` credential, which nixos-nspawn's container profile
//! installs before networkd starts. For other guests the caller prints the
//! `nixosContainer.containerNetworkConfig` equivalent
//! ([`crate::classic::convert::container_side`]).

use std::net::IpAddr;

use anyhow::Result;
use nixos_nspawn_core::addressing::parse_pair;
use nixos_nspawn_core::registry::{Entry, NetworkMode};

use crate::classic::convert::container_side;
use crate::usage;

/// The address flags, checked: each given pair complete, each address of
/// its family (optionally with a prefix length).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct StaticAddresses {
    pub host4: String,
    pub local4: String,
    pub host6: String,
    pub local6: String,
}

fn check(flag: &str, v: &str, v6: bool) -> Result<()> {
    let (addr, prefix) = match v.split_once('/') {
        Some((a, p)) => (a, Some(p)),
        None => (v, None),
    };
    let max = if v6 { 128 } else { 32 };
    let ok = match addr.parse::<IpAddr>() {
        Ok(IpAddr::V4(_)) => !v6,
        Ok(IpAddr::V6(_)) => v6,
        Err(_) => false,
    } && prefix.is_none_or(|p| p.parse::<u8>().is_ok_and(|n| n <= max));
    if !ok {
        return Err(usage(format!(
            "{flag} {v:?} is not an {} address{}",
            if v6 { "IPv6" } else { "IPv4" },
            if v6 {
                " (e.g. fc00::2 or fc00::2/64)"
            } else {
                " (e.g. 10.231.136.2 or 10.231.136.2/24)"
            }
        )));
    }
    Ok(())
}

impl StaticAddresses {
    /// From the four flags; `None` when none is given.
    pub fn from_flags(
        host4: Option<&str>,
        local4: Option<&str>,
        host6: Option<&str>,
        local6: Option<&str>,
    ) -> Result<Option<StaticAddresses>> {
        for (h, l, hf, lf) in [
            (host4, local4, "--host-address", "--local-address"),
            (host6, local6, "--host-address6", "--local-address6"),
        ] {
            match (h, l) {
                (Some(_), None) => return Err(usage(format!("{hf} needs {lf} as well"))),
                (None, Some(_)) => return Err(usage(format!("{lf} needs {hf} as well"))),
                _ => {}
            }
        }
        if host4.is_none() && host6.is_none() {
            return Ok(None);
        }
        for (flag, v, v6) in [
            ("--host-address", host4, false),
            ("--local-address", local4, false),
            ("--host-address6", host6, true),
            ("--local-address6", local6, true),
        ] {
            if let Some(v) = v {
                check(flag, v, v6)?;
            }
        }
        // The registry's rules for a fixed pair (one home: the parser's).
        if let (Some(h), Some(l)) = (host4, local4) {
            parse_pair::<std::net::Ipv4Addr>(h, l)
                .map_err(|e| usage(format!("--host-address/--local-address: {e}")))?;
        }
        if let (Some(h), Some(l)) = (host6, local6) {
            parse_pair::<std::net::Ipv6Addr>(h, l)
                .map_err(|e| usage(format!("--host-address6/--local-address6: {e}")))?;
        }
        let s = |v: Option<&str>| v.unwrap_or_default().to_owned();
        Ok(Some(StaticAddresses {
            host4: s(host4),
            local4: s(local4),
            host6: s(host6),
            local6: s(local6),
        }))
    }
}

/// Give `entry` the static address pair: a `veth` link with the registry's
/// fixed pair (replacing whatever network the system brought along, host-side
/// settings included: they may not set addresses next to a fixed pair).
/// Returns the note for guests that do not read the address credential.
pub fn apply(entry: &mut Entry, a: &StaticAddresses) -> Result<String> {
    let opt = |v: &str| (!v.is_empty()).then(|| v.to_owned());
    entry.network.mode = NetworkMode::Veth;
    entry.network.zone = None;
    entry.network.bridge = None;
    entry.network.host = None;
    entry.network.host_address = opt(&a.host4);
    entry.network.local_address = opt(&a.local4);
    entry.network.host_address6 = opt(&a.host6);
    entry.network.local_address6 = opt(&a.local6);
    let container = container_side(&a.host4, &a.local4, &a.host6, &a.local6, "");
    Ok(format!(
        "ve-{} has the static addresses now; the container gets its side as the credential nixos-nspawn.host0, \
         which nixos-nspawn's container profile installs for host0 before networkd starts; \
         a system built otherwise configures host0 itself, e.g. nixosContainer.containerNetworkConfig = {container}",
        entry.name
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{exit_code, EXIT_USAGE};

    #[test]
    fn pairs_are_complete_and_of_their_family() {
        let ok = StaticAddresses::from_flags(
            Some("10.231.136.1/24"),
            Some("10.231.136.2/24"),
            None,
            None,
        )
        .unwrap()
        .unwrap();
        assert_eq!(ok.local4, "10.231.136.2/24");
        assert_eq!(
            StaticAddresses::from_flags(None, None, None, None).unwrap(),
            None
        );
        for (h4, l4, h6, l6, msg) in [
            (
                Some("10.0.0.1"),
                None,
                None,
                None,
                "--host-address needs --local-address",
            ),
            (
                None,
                None,
                None,
                Some("fc00::2"),
                "--local-address6 needs --host-address6",
            ),
            (
                Some("fc00::1"),
                Some("10.0.0.2"),
                None,
                None,
                "--host-address \"fc00::1\" is not an IPv4 address",
            ),
            (
                Some("10.0.0.1"),
                Some("10.0.0.2/33"),
                None,
                None,
                "--local-address \"10.0.0.2/33\" is not an IPv4",
            ),
            (
                None,
                None,
                Some("fc00::1"),
                Some("10.0.0.2"),
                "--local-address6 \"10.0.0.2\" is not an IPv6",
            ),
            (
                Some("web"),
                Some("10.0.0.2"),
                None,
                None,
                "--host-address \"web\"",
            ),
            // The registry's pair rules, as a usage error before any build.
            (
                Some("10.0.0.1"),
                Some("10.0.0.2/24"),
                None,
                None,
                "give both addresses with the same prefix length",
            ),
            (
                Some("10.0.0.1/24"),
                Some("10.0.1.2/24"),
                None,
                None,
                "not in the same /24 subnet",
            ),
            (
                None,
                None,
                Some("fc00::1"),
                Some("fc00::1"),
                "--host-address6/--local-address6: the host and container addresses are both fc00::1",
            ),
        ] {
            let e = StaticAddresses::from_flags(h4, l4, h6, l6).unwrap_err();
            assert_eq!(exit_code(&e), EXIT_USAGE);
            assert!(e.to_string().contains(msg), "{e}");
        }
    }

    #[test]
    fn flags_become_the_registry_pair() {
        let mut e = Entry::new("web", "/nix/store/x");
        e.network.mode = NetworkMode::Zone;
        e.network.zone = Some("lab".into());
        let a = StaticAddresses::from_flags(
            Some("10.231.136.1"),
            Some("10.231.136.2"),
            Some("fc00::1"),
            Some("fc00::2"),
        )
        .unwrap()
        .unwrap();
        let note = apply(&mut e, &a).unwrap();
        assert_eq!(e.network.mode, NetworkMode::Veth);
        assert_eq!(e.network.zone, None);
        assert_eq!(e.network.host, None);
        let net = serde_json::to_value(&e.network).unwrap();
        assert_eq!(net["hostAddress"], "10.231.136.1", "{net}");
        assert_eq!(net["localAddress"], "10.231.136.2", "{net}");
        assert_eq!(net["hostAddress6"], "fc00::1", "{net}");
        assert_eq!(net["localAddress6"], "fc00::2", "{net}");
        // The parser accepts it as the generator will read it, and the
        // renderer makes the classic point-to-point pair of it.
        let e = crate::edit::validate(&e).unwrap();
        let pair = nixos_nspawn_core::addressing::parse_pair::<std::net::Ipv4Addr>(
            e.network.host_address.as_deref().unwrap(),
            e.network.local_address.as_deref().unwrap(),
        )
        .unwrap();
        assert_eq!(pair.prefix_len, 32);
        assert!(
            note.contains("nixos-nspawn.host0")
                && note.contains(
                    r#""addresses":[{"Address":"10.231.136.2/32","Peer":"10.231.136.1/32"}"#
                )
                && note.contains(r#""gateway":["10.231.136.1","fc00::1"]"#),
            "{note}"
        );
    }
}
