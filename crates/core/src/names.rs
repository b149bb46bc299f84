//! Names that end up in file names, unit names and interface names.

/// A machine name as systemd accepts it (hostname rules, at most 64 characters),
/// restricted further so it is safe as a file stem, a unit instance and a glob:
/// labels of ASCII letters, digits and `-`, separated by single dots, no label
/// starting or ending with `-`, and no label longer than 63 characters (a DNS
/// label: NixOS's `networking.hostName`, which the container's first label
/// becomes, accepts no more).
pub fn check_machine_name(name: &str) -> Result<(), String> {
    not_empty_at_most(name, 64, |n| {
        format!("is {n} characters long; machine names have at most 64")
    })?;
    for label in name.split('.') {
        if label.is_empty() {
            return Err("has an empty label (leading, trailing or double dot)".into());
        }
        only_ascii_alnum_and(label, &['-'], "'-' and '.'")?;
        if label.starts_with('-') || label.ends_with('-') {
            return Err(format!("label {label:?} starts or ends with '-'"));
        }
    }
    if let Some(label) = name.split('.').find(|l| l.len() > 63) {
        return Err(format!(
            "has a label of {} characters; each label (the parts between dots) has at most 63, \
             as in a host name (the first label becomes the container's host name)",
            label.len()
        ));
    }
    Ok(())
}

/// A network interface name as the kernel accepts it (at most 15 bytes, no `/`,
/// `:`, whitespace or control characters), restricted to characters that are not
/// glob syntax in networkd's `Name=`.
pub fn check_ifname(name: &str) -> Result<(), String> {
    not_empty_at_most(name, 15, |n| {
        format!("is {n} bytes long; interface names have at most 15")
    })?;
    not_dot_or_dot_dot(name, "interface name")?;
    only_ascii_alnum_and(name, &['-', '_', '.'], "'-', '_' and '.'")
}

/// A zone name: nspawn names the bridge `vz-ZONE`, which must be a valid
/// interface name, so a zone has at most 12 characters.
pub fn check_zone_name(zone: &str) -> Result<(), String> {
    if zone.len() > 12 {
        // The name is not quoted here, so bound it: it may be megabytes long.
        let shown: String = if zone.chars().count() > 40 {
            zone.chars().take(37).chain("...".chars()).collect()
        } else {
            zone.to_owned()
        };
        return Err(format!(
            "is {} characters long; the bridge vz-{shown} would exceed the 15-byte interface name limit (zones have at most 12)",
            zone.len()
        ));
    }
    check_ifname(zone)
}

/// A credential id as `systemd-nspawn --load-credential=ID:PATH` accepts it.
pub fn check_credential_id(id: &str) -> Result<(), String> {
    not_empty_at_most(id, 255, |_| "is longer than 255 bytes".into())?;
    not_dot_or_dot_dot(id, "credential id")?;
    only_ascii_alnum_and(id, &['-', '_', '.', '@'], "'-', '_', '.' and '@'")
}

/// `name` is not empty and has at most `max` bytes (else `too_long` of its
/// length says so).
fn not_empty_at_most(
    name: &str,
    max: usize,
    too_long: impl FnOnce(usize) -> String,
) -> Result<(), String> {
    if name.is_empty() {
        return Err("must not be empty".into());
    }
    if name.len() > max {
        return Err(too_long(name.len()));
    }
    Ok(())
}

/// `name` is not `.` or `..` (it names a file or directory).
fn not_dot_or_dot_dot(name: &str, what: &str) -> Result<(), String> {
    if name == "." || name == ".." {
        return Err(format!("is not a valid {what}"));
    }
    Ok(())
}

/// `s` holds only ASCII letters, digits and the `extra` characters (the
/// error names the first other one; `listed` ends the list of the allowed).
fn only_ascii_alnum_and(s: &str, extra: &[char], listed: &str) -> Result<(), String> {
    match s
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || extra.contains(c)))
    {
        Some(c) => Err(format!(
            "contains {c:?}; only ASCII letters, digits, {listed} are allowed"
        )),
        None => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn machine_names() {
        let two_labels = format!("{}.{}", "a".repeat(31), "b".repeat(32));
        for ok in [
            "web",
            "a",
            "web-1",
            "db.internal",
            &"a".repeat(63),
            &two_labels,
        ] {
            assert_eq!(check_machine_name(ok), Ok(()), "{ok}");
        }
        for bad in [
            "",
            ".",
            "..",
            "a..b",
            ".a",
            "a.",
            "-a",
            "a-",
            "a_b",
            "a b",
            "a/b",
            "ä",
            "a%b",
            &"a".repeat(65),
            &"a".repeat(64),
            &format!("{}.b", "a".repeat(64)),
        ] {
            assert!(check_machine_name(bad).is_err(), "{bad:?}");
        }
        // One label of 64: the length of the whole name is fine, the label is not.
        let e = check_machine_name(&"a".repeat(64)).unwrap_err();
        assert!(
            e.contains("label of 64 characters") && e.contains("at most 63"),
            "{e}"
        );
    }

    #[test]
    fn zone_interface_and_credential_names() {
        type Check = fn(&str) -> Result<(), String>;
        let cases: [(Check, &str, bool); 11] = [
            (check_zone_name, "lan", true),
            (check_zone_name, "abcdefghijkl", true),
            (check_zone_name, "abcdefghijklm", false),
            (check_zone_name, "a*", false),
            (check_ifname, "br0", true),
            (check_ifname, "br:0", false),
            (check_credential_id, "db-password", true),
            (check_credential_id, "a:b", false),
            (check_credential_id, "a/b", false),
            (check_credential_id, "..", false),
            (check_credential_id, "", false),
        ];
        for (check, name, ok) in cases {
            assert_eq!(check(name).is_ok(), ok, "{name:?}");
        }
    }
}
