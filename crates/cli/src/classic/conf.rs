//! A classic container's settings file, `/etc/nixos-containers/NAME.conf`
//! (`nixos-container create` and the classic module write it; the classic
//! `container@.service` reads it with systemd's `EnvironmentFile=`), and the
//! nspawn flags of its `EXTRA_NSPAWN_FLAGS`. Pure: text in, values out.

use std::collections::BTreeMap;

/// The keys the classic module and `nixos-container` write.
const KNOWN: &[&str] = &[
    "SYSTEM_PATH",
    "FLAKE",
    "COPY_RESOLV_CONF",
    "PRIVATE_NETWORK",
    "HOST_BRIDGE",
    "HOST_PORT",
    "HOST_ADDRESS",
    "HOST_ADDRESS6",
    "LOCAL_ADDRESS",
    "LOCAL_ADDRESS6",
    "LOCAL_MAC_ADDRESS",
    "NETWORK_NAMESPACE_PATH",
    "PRIVATE_USERS",
    "INTERFACES",
    "MACVLANS",
    "AUTO_START",
    "EXTRA_NSPAWN_FLAGS",
];

/// The assignments of a `.conf` file.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Conf {
    values: BTreeMap<String, String>,
}

impl Conf {
    /// `KEY=VALUE` lines as systemd's `EnvironmentFile=` reads them: leading
    /// whitespace skipped, one pair of surrounding quotes removed, lines that
    /// are not assignments of a valid name ignored; the last assignment of a
    /// key wins.
    pub fn parse(text: &str) -> Conf {
        let mut values = BTreeMap::new();
        for line in text.split('\n') {
            let l = line.trim_start_matches(|c: char| c.is_ascii_whitespace());
            let Some((key, value)) = l.split_once('=') else {
                continue;
            };
            let mut chars = key.chars();
            let valid = chars
                .next()
                .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
                && chars.all(|c| c.is_ascii_alphanumeric() || c == '_');
            if valid {
                values.insert(key.to_owned(), unquote(value));
            }
        }
        Conf { values }
    }

    /// The value of `key`; empty when it is not set (as the classic start
    /// script reads an unset variable).
    pub fn get(&self, key: &str) -> &str {
        self.values.get(key).map_or("", String::as_str)
    }

    /// The value of `key` split on whitespace (`INTERFACES`, `MACVLANS`).
    pub fn words(&self, key: &str) -> Vec<String> {
        words(self.get(key))
    }

    /// Assignments of keys the classic module does not write.
    pub fn unknown(&self) -> impl Iterator<Item = (&str, &str)> {
        self.values
            .iter()
            .filter(|(k, _)| !KNOWN.contains(&k.as_str()))
            .map(|(k, v)| (k.as_str(), v.as_str()))
    }

    /// `EXTRA_NSPAWN_FLAGS` as (flag, value) pairs.
    pub fn extra_flags(&self) -> Vec<(String, Option<String>)> {
        flag_pairs(&self.words("EXTRA_NSPAWN_FLAGS"))
    }
}

fn unquote(v: &str) -> String {
    let t = v.trim_end_matches(|c: char| c.is_ascii_whitespace());
    for q in ['"', '\''] {
        if t.len() >= 2 && t.starts_with(q) && t.ends_with(q) {
            return t[1..t.len() - 1].to_owned();
        }
    }
    if !t.contains(|c: char| c.is_ascii_whitespace()) {
        return t.to_owned();
    }
    v.to_owned()
}

fn words(s: &str) -> Vec<String> {
    s.split(|c: char| c.is_ascii_whitespace())
        .filter(|w| !w.is_empty())
        .map(str::to_owned)
        .collect()
}

/// `--flag VALUE` and `--flag=VALUE` pairs; a value flag at the very end is dropped.
fn flag_pairs(tokens: &[String]) -> Vec<(String, Option<String>)> {
    let mut out = Vec::new();
    let mut pending: Option<&str> = None;
    for t in tokens {
        if let Some(flag) = pending.take() {
            out.push((flag.to_owned(), Some(t.clone())));
            continue;
        }
        if let Some((flag, value)) = t.split_once('=') {
            let f = flag.strip_prefix("--").or_else(|| flag.strip_prefix('-'));
            if f.is_some_and(|f| {
                !f.is_empty() && f.chars().all(|c| c.is_ascii_alphabetic() || c == '-')
            }) {
                out.push((flag.to_owned(), Some(value.to_owned())));
                continue;
            }
        }
        if super::flags::takes_value(t) {
            pending = Some(t);
        } else {
            out.push((t.clone(), None));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn assignments_as_environment_file_reads_them() {
        let table: &[(&str, &str, &str)] = &[
            ("A=1\n", "A", "1"),
            ("  A=1\n", "A", "1"),
            ("A=\"x y\"\n", "A", "x y"),
            ("A='x y'\n", "A", "x y"),
            ("A=x y\n", "A", "x y"),
            ("A=\"\"\n", "A", ""),
            ("A=1   \n", "A", "1"),
            ("A=1\nA=2\n", "A", "2"),
            ("# A=1\n", "A", ""),
            ("1A=1\n", "1A", ""),
            ("A-B=1\n", "A-B", ""),
            ("A\n", "A", ""),
            ("_A=v=w\n", "_A", "v=w"),
        ];
        for (text, key, want) in table {
            assert_eq!(Conf::parse(text).get(key), *want, "{text:?}");
        }
    }

    #[test]
    fn unknown_keys_and_words() {
        let c = Conf::parse("INTERFACES=\"eth1  eth2\"\nWEIRD=1\nAUTO_START=1\n");
        assert_eq!(c.words("INTERFACES"), ["eth1", "eth2"]);
        assert!(c.words("MACVLANS").is_empty());
        assert_eq!(c.unknown().collect::<Vec<_>>(), [("WEIRD", "1")]);
    }

    #[test]
    fn flags_with_and_without_equals() {
        let c = Conf::parse(
            "EXTRA_NSPAWN_FLAGS=\"--bind=/a:/b --bind-ro /c -x --port 80 -E K=V --setenv=A=B --private-network --tmpfs\"\n",
        );
        let s = |f: &str, v: Option<&str>| (f.to_owned(), v.map(str::to_owned));
        assert_eq!(
            c.extra_flags(),
            [
                s("--bind", Some("/a:/b")),
                s("--bind-ro", Some("/c")),
                s("-x", None),
                s("--port", Some("80")),
                s("-E", Some("K=V")),
                s("--setenv", Some("A=B")),
                s("--private-network", None),
            ]
        );
    }
}
