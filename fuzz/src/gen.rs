//! Structured inputs for the fuzz targets, decoded from the fuzzer's bytes.
//!
//! This is a small, dependency-free relative of `arbitrary::Unstructured`: the
//! same bytes always decode to the same value, and running out of bytes yields
//! zeros, so every input decodes. It lives in the fuzz crate but is also
//! compiled into `crates/core/tests/fuzz_regressions.rs` (by `#[path]`), so the
//! checked-in corpus and crash reproducers replay in a plain `cargo test`
//! without adding a dependency to the library.
//!
//! Every string field gets adversarial strings: fragments that would change a
//! unit file's structure if they were written unescaped (line breaks, `%`
//! specifiers, `$` variables, quotes, backslashes, section headers, comments,
//! control and invisible characters), valid values of the field, valid values
//! with adversarial fragments spliced in, and occasionally very long runs.

use serde_json::{json, Map, Value};

/// Fragments that try to break out of a value.
pub const ADVERSARIAL: &[&str] = &[
    "\n",
    "\r",
    "\r\n",
    "\0",
    "\t",
    "\x0b",
    "\x0c",
    "\x1b[31m",
    "\x7f",
    "\u{85}",
    "\u{a0}",
    "\u{2028}",
    "\u{2029}",
    "\u{202e}",
    "\u{200b}",
    "\u{feff}",
    "\u{3000}",
    "%",
    "%%",
    "%n",
    "%i",
    "%I",
    "%h",
    "%%n",
    "%%%",
    "$",
    "$$",
    "$VAR",
    "${X}",
    "$$HOME",
    "\\",
    "\\\\",
    "\\n",
    "\\x0a",
    "\"",
    "'",
    "\"'",
    " ",
    "  ",
    ";",
    " ; ",
    "#",
    "# comment",
    "[Section]",
    "\n[Service]\nExecStartPre=/bin/sh -c evil\n",
    "[",
    "]",
    "=",
    "Key=value",
    ":",
    "::",
    ",",
    "/",
    "//",
    ".",
    "..",
    "/../",
    "*",
    "?",
    "@",
    "~",
    "-",
    "+",
    "!",
    "|",
    "&",
    "ä",
    "€",
    "𝄞",
    "\u{fffd}",
    "ZQ1QZ",
];

/// Valid-looking tokens, so that many generated entries pass validation and
/// reach the renderer.
pub const TOKENS: &[&str] = &[
    "web",
    "a",
    "db.internal",
    "x-1",
    "/nix/store/0000-nixos-system-web",
    "/srv/web",
    "/var/www",
    "/run/secrets/db",
    "90s",
    "5min 30s",
    "infinity",
    "@system-service",
    "~@mount",
    "10.0.0.1/24",
    "fd00::/64",
    "_dhcp4",
    "yes",
    "no",
    "ro",
    "rw",
    "norbind",
    "idmap",
    "lan",
    "br0",
    "db-password",
    "cred@x",
];

/// Decodes values from fuzzer bytes; exhausted input reads as zeros.
pub struct Src<'a> {
    data: &'a [u8],
    /// Chance (of 256) that a string with valid values gets an adversarial
    /// one; set per input by [`Src::set_adversity`], so that inputs range
    /// from "one hostile field" to "hostile everywhere" and many are accepted.
    adversity: u8,
}

impl<'a> Src<'a> {
    pub fn new(data: &'a [u8]) -> Self {
        Src {
            data,
            adversity: 255,
        }
    }

    /// Read this input's adversity from the next byte.
    pub fn set_adversity(&mut self) {
        self.adversity = self.byte() / 2 + 8;
    }

    pub fn is_empty(&self) -> bool {
        self.data.is_empty()
    }

    pub fn byte(&mut self) -> u8 {
        match self.data.split_first() {
            Some((b, rest)) => {
                self.data = rest;
                *b
            }
            None => 0,
        }
    }

    pub fn u16(&mut self) -> u16 {
        u16::from_le_bytes([self.byte(), self.byte()])
    }

    pub fn u32(&mut self) -> u32 {
        u32::from_le_bytes([self.byte(), self.byte(), self.byte(), self.byte()])
    }

    /// A number in `0..n` (`n > 0`).
    pub fn below(&mut self, n: usize) -> usize {
        if n <= 256 {
            self.byte() as usize % n
        } else {
            self.u32() as usize % n
        }
    }

    /// True with probability about `num/256`.
    pub fn chance(&mut self, num: u8) -> bool {
        self.byte() < num
    }

    pub fn pick<'t, T>(&mut self, items: &'t [T]) -> &'t T {
        &items[self.below(items.len())]
    }

    /// Take up to `max` raw bytes.
    pub fn bytes(&mut self, max: usize) -> &'a [u8] {
        let n = self.below(max + 1).min(self.data.len());
        let (head, rest) = self.data.split_at(n);
        self.data = rest;
        head
    }

    /// Any char, weighted towards ASCII and the interesting ranges.
    pub fn char(&mut self) -> char {
        match self.byte() % 8 {
            0..=3 => (self.byte() & 0x7f) as char,
            4 => char::from_u32(0x80 + self.u16() as u32 % 0x780).unwrap_or('x'),
            5 => char::from_u32(0x2000 + self.byte() as u32 % 0x70).unwrap_or('x'),
            6 => char::from_u32(self.u32() % 0x11_0000).unwrap_or('\u{fffd}'),
            _ => *self.pick(&['%', '$', '\\', '"', '\'', '\n', ' ', ';', '#', '[', ':']),
        }
    }

    /// An adversarial string; `valid` are good values of the field.
    pub fn string(&mut self, valid: &[&str]) -> String {
        let mut s = String::new();
        if !valid.is_empty() && !self.chance(self.adversity) {
            s.push_str(valid[self.below(valid.len())]);
            return s;
        }
        match self.byte() % 16 {
            // A valid value as is.
            0..=7 if !valid.is_empty() => s.push_str(valid[self.below(valid.len())]),
            // A valid value with fragments spliced in at char boundaries.
            8..=12 if !valid.is_empty() => {
                s.push_str(valid[self.below(valid.len())]);
                for _ in 0..1 + self.below(3) {
                    let frag = self.fragment();
                    let mut at = self.below(s.len() + 1);
                    while !s.is_char_boundary(at) {
                        at -= 1;
                    }
                    s.insert_str(at, &frag);
                }
            }
            // A very long value.
            13 => {
                let unit = self.fragment();
                let base = if valid.is_empty() {
                    String::new()
                } else {
                    self.pick(valid).to_string()
                };
                let n = 1 + self.below(4096);
                s.push_str(&base);
                s.push_str(&unit.repeat(n.min(8192 / unit.len().max(1))));
            }
            // Pieces.
            _ => {
                for _ in 0..self.below(7) {
                    let f = self.fragment();
                    s.push_str(&f);
                }
            }
        }
        s
    }

    fn fragment(&mut self) -> String {
        match self.byte() % 6 {
            0 | 1 => self.pick(ADVERSARIAL).to_string(),
            2 => self.pick(TOKENS).to_string(),
            3 => (0..1 + self.below(4)).map(|_| self.char()).collect(),
            4 => String::from_utf8_lossy(self.bytes(8)).into_owned(),
            _ => ["x", "/", "a b", "1", "%", "$"][self.below(6)].to_string(),
        }
    }

    /// A JSON value of a random type (for wrong-type checks), sometimes the
    /// expected string.
    pub fn any_value(&mut self, depth: u32) -> Value {
        match self.byte() % 10 {
            0 => Value::Null,
            1 => Value::Bool(self.byte() & 1 == 1),
            2 => json!(self.u32()),
            3 => json!(-(self.u16() as i64)),
            4 => json!(self.u16() as f64 / 7.0),
            5 if depth < 3 => Value::Array(
                (0..self.below(3))
                    .map(|_| self.any_value(depth + 1))
                    .collect(),
            ),
            6 if depth < 3 => {
                let mut m = Map::new();
                for _ in 0..self.below(3) {
                    let k = self.string(&["Key", "x"]);
                    m.insert(k, self.any_value(depth + 1));
                }
                Value::Object(m)
            }
            _ => Value::String(self.string(TOKENS)),
        }
    }

    /// A string-typed field, sometimes of the wrong type or null.
    pub fn string_field(&mut self, valid: &[&str]) -> Value {
        if !self.chance(self.adversity / 16) {
            return Value::String(self.string(valid));
        }
        match self.byte() % 2 {
            0 => Value::Null,
            _ => self.any_value(0),
        }
    }
}

pub const SECTIONS: &[&str] = &[
    "Unit",
    "Service",
    "Exec",
    "Files",
    "Network",
    "Match",
    "Address",
    "Route",
    "IPv6Prefix",
    "DHCPServer",
    "DHCPServerStaticLease",
    "NetDev",
    "Install",
    "X-Custom",
];

pub const KEYS: &[&str] = &[
    "Description",
    "ExecStartPre",
    "ExecStart",
    "Environment",
    "Address",
    "Gateway",
    "DNS",
    "Peer",
    "Destination",
    "Prefix",
    "Name",
    "Kind",
    "Bind",
    "BindReadOnly",
    "Boot",
    "Parameters",
    "Private",
    "Hostname",
    "DHCPServer",
    "LLDP",
    "Wants",
    "X-Key_1",
];

const VALUES: &[&str] = &[
    "10.0.0.1/24",
    "10.0.0.1",
    "fd00::/64",
    "fd00::1",
    "_dhcp4",
    "_ipv6ra",
    "",
    "yes",
    "/bin/true",
    "/bin/sh -c \"echo hi\"",
    "A=B",
    "100%",
    "$HOME",
];

/// A scalar of the settings form (string, number or boolean).
pub fn settings_scalar(src: &mut Src) -> Value {
    match src.byte() % 12 {
        0 => Value::Bool(src.byte() & 1 == 1),
        1 => json!(src.u16()),
        2 => json!(src.u16() as f64 / 4.0),
        3 => json!(-(src.byte() as i64)),
        4 if src.chance(16) => src.any_value(1),
        _ => Value::String(src.string(VALUES)),
    }
}

fn settings_name(src: &mut Src, valid: &[&str]) -> String {
    if src.chance(230) {
        src.pick(valid).to_string()
    } else {
        src.string(valid)
    }
}

/// Keys of one section: a value, a list of values, or `null`.
fn settings_keys(src: &mut Src, allow_null: bool) -> Value {
    let mut m = Map::new();
    for _ in 0..src.below(5) {
        let key = settings_name(src, KEYS);
        let v = match src.byte() % 8 {
            0 if allow_null => Value::Null,
            1 | 2 => Value::Array((0..src.below(4)).map(|_| settings_scalar(src)).collect()),
            _ => settings_scalar(src),
        };
        m.insert(key, v);
    }
    Value::Object(m)
}

/// A value of the generic settings form.
pub fn settings(src: &mut Src) -> Value {
    if src.chance(4) {
        return src.any_value(0);
    }
    let mut m = Map::new();
    for _ in 0..src.below(5) {
        let name = settings_name(src, SECTIONS);
        let body = match src.byte() % 6 {
            0 | 1 => Value::Array(
                (0..src.below(4))
                    .map(|_| {
                        if src.chance(8) {
                            src.any_value(1)
                        } else {
                            settings_keys(src, false)
                        }
                    })
                    .collect(),
            ),
            2 if src.chance(16) => src.any_value(1),
            _ => settings_keys(src, true),
        };
        m.insert(name, body);
    }
    Value::Object(m)
}

/// Whether a name can be a file stem (NAME_MAX is 255 bytes, with `.json`).
pub fn usable_stem(n: &str) -> bool {
    !n.is_empty() && n.len() <= 250 && !n.contains(['/', '\0']) && n != "." && n != ".."
}

/// Optionally insert `key: value` (absent, null or set).
fn maybe(
    src: &mut Src,
    m: &mut Map<String, Value>,
    key: &str,
    value: impl FnOnce(&mut Src) -> Value,
) {
    match src.byte() % 16 {
        0 | 1 => {}
        2 => {
            m.insert(key.into(), Value::Null);
        }
        _ => {
            let v = value(src);
            m.insert(key.into(), v);
        }
    }
}

fn bool_field(src: &mut Src) -> Value {
    if src.chance(2) {
        src.any_value(0)
    } else {
        Value::Bool(src.byte() & 1 == 1)
    }
}

/// A JSON list of fewer than `max` items (the count drawn first), item `i`
/// made by `item`.
fn list_of(src: &mut Src, max: usize, mut item: impl FnMut(&mut Src, usize) -> Value) -> Value {
    let n = src.below(max);
    Value::Array((0..n).map(|i| item(src, i)).collect())
}

/// How an entry and a zone file begin: a `version` (now and then any
/// value), the adversity for what follows, a name (`names`, or adversarial)
/// and the logical path the file is parsed as: `DIR/NAME.json` where the
/// name can be a file stem, `DIR/names[0].json` where not.
fn file_head(src: &mut Src, dir: &str, names: &[&str]) -> (Map<String, Value>, String, String) {
    let mut m = Map::new();
    let version = if src.chance(252) {
        json!(1)
    } else {
        src.any_value(0)
    };
    m.insert("version".into(), version);
    src.set_adversity();
    let name = src.string(names);
    let stem = if usable_stem(&name) { &name } else { names[0] };
    let file = format!("{dir}/{stem}.json");
    (m, name, file)
}

/// How they end: now and then a key the parser does not know (`key`, or
/// adversarial) with any value.
fn file_tail(src: &mut Src, mut m: Map<String, Value>, key: &str, file: String) -> (String, Value) {
    if src.chance(3) {
        let k = src.string(&[key]);
        let v = src.any_value(0);
        m.insert(k, v);
    }
    (file, Value::Object(m))
}

const MODES: &[&str] = &["veth", "zone", "bridge", "host", "none"];

/// A registry entry with adversarial strings in every string field, and the
/// file (logical path) it is parsed as: the stem is the entry's name where
/// that can be a file name, so name validation is reached.
pub fn entry(src: &mut Src) -> (String, Value) {
    let (mut m, name, file) = file_head(
        src,
        "/etc/nixos-nspawn/containers",
        &["web", "a", "db.internal", "x-1", &"a".repeat(64)],
    );
    if src.chance(250) {
        m.insert("name".into(), Value::String(name));
    }
    maybe(src, &mut m, "declarative", bool_field);
    if src.chance(250) {
        let sys = src.string_field(&["/nix/store/0000-nixos-system-web", "/nix/store/1111-x"]);
        m.insert("system".into(), sys);
    }
    for key in [
        "autoStart",
        "ephemeral",
        "userNamespacing",
        "sharedNix",
        "mountDaemonSocket",
    ] {
        maybe(src, &mut m, key, bool_field);
    }
    maybe(src, &mut m, "timeoutStartSec", |s| {
        s.string_field(&["90s", "infinity", "5min 30s", "1.5h", "0", "10"])
    });
    maybe(src, &mut m, "systemCallFilter", |s| {
        s.string_field(&[
            "@system-service",
            "~@mount @swap",
            "foo bar:EPERM",
            "keyctl",
        ])
    });
    maybe(src, &mut m, "bindMounts", |s| {
        list_of(s, 4, |s, i| {
            // Distinct targets per index: mounting twice is an error.
            let valid = [
                format!("/srv/web:/var/www{i}:ro"),
                format!("/srv/a{i}"),
                format!("/srv/b{i}::norbind"),
                format!("/srv/c:/c{i}:rw,idmap"),
                format!("/srv/100%/$x{i}"),
            ];
            s.string_field(&valid.iter().map(String::as_str).collect::<Vec<_>>())
        })
    });
    maybe(src, &mut m, "forwardPorts", |s| {
        list_of(s, 3, |s, i| {
            let mut p = Map::new();
            maybe(s, &mut p, "protocol", |s| s.string_field(&["tcp", "udp"]));
            let port = if s.chance(s.adversity) {
                json!(s.u16())
            } else {
                json!(1000 * (i + 1) + s.below(1000))
            };
            p.insert("hostPort".into(), port);
            maybe(s, &mut p, "containerPort", |s| json!(s.u16()));
            if s.chance(3) {
                let k = s.string(&["extra"]);
                p.insert(k, Value::Null);
            }
            Value::Object(p)
        })
    });
    maybe(src, &mut m, "credentials", |s| {
        list_of(s, 4, |s, i| {
            let mut c = Map::new();
            // Distinct ids per index: giving one twice is an error.
            let ids = [
                format!("db-password{i}"),
                format!("c{i}"),
                format!("a.b@c_d{i}"),
            ];
            c.insert(
                "id".into(),
                s.string_field(&ids.iter().map(String::as_str).collect::<Vec<_>>()),
            );
            c.insert(
                "path".into(),
                s.string_field(&[
                    "/run/secrets/db",
                    "cred-name",
                    "/run/secrets/100% $USER \"q\"",
                ]),
            );
            Value::Object(c)
        })
    });
    maybe(src, &mut m, "network", |s| {
        let mut n = Map::new();
        let mode = *s.pick(MODES);
        maybe(s, &mut n, "mode", |s| {
            if s.chance(8) {
                s.string_field(MODES)
            } else {
                json!(mode)
            }
        });
        if mode == "zone" || s.chance(8) {
            maybe(s, &mut n, "zone", |s| {
                s.string_field(&["lan", "abcdefghijkl", "z-1_2.3"])
            });
        }
        if mode == "bridge" || s.chance(8) {
            maybe(s, &mut n, "bridge", |s| {
                s.string_field(&["br0", "abcdefghijklmno"])
            });
        }
        if mode == "veth" || s.chance(8) {
            maybe(s, &mut n, "host", settings);
        }
        Value::Object(n)
    });
    maybe(src, &mut m, "activation", |s| {
        let mut a = Map::new();
        maybe(s, &mut a, "strategy", |s| {
            s.string_field(&["none", "reload", "restart", "dynamic"])
        });
        maybe(s, &mut a, "reloadScript", |s| {
            s.string_field(&["/nix/store/2222-reload"])
        });
        Value::Object(a)
    });
    maybe(src, &mut m, "extraNspawn", settings);
    maybe(src, &mut m, "extraService", settings);
    file_tail(src, m, "unknownKey", file)
}

/// A zone file, and the logical path it is parsed as.
pub fn zone(src: &mut Src) -> (String, Value) {
    let (mut m, name, file) = file_head(
        src,
        "/etc/nixos-nspawn/zones",
        &["lan", "abcdefghijkl", "z-1_2.3"],
    );
    if src.chance(250) {
        m.insert("name".into(), Value::String(name));
    }
    maybe(src, &mut m, "network", settings);
    maybe(src, &mut m, "netdev", settings);
    file_tail(src, m, "bridge", file)
}
