//! The generic "settings" form the registry uses for networkd and nspawn
//! settings (`network.host`, zone files, `extraNspawn`, `extraService`):
//!
//! ```json
//! { "Network": { "Address": ["10.0.0.1/24"], "DHCPServer": false, "LLDP": null },
//!   "IPv6Prefix": [ { "Prefix": "fd00::/64", "Assign": true } ] }
//! ```
//!
//! A section given as an object is merged over the defaults key by key: a value
//! replaces the default, `null` removes it, a list becomes one line per element.
//! For keys systemd itself accumulates (nspawn's `Bind=`, `Port=`, … — the
//! renderer names them), the given values are appended to the defaults, as in a
//! systemd drop-in; a list starting with `""` replaces them instead.
//! A section given as a list of objects adds that many repeated sections.

use serde::Serialize;
use serde_json::Value;

use crate::unit::{check_name, check_value, IniFile};

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(untagged)]
pub enum Scalar {
    Str(String),
    Num(serde_json::Number),
    Bool(bool),
}

impl Scalar {
    /// How the value is written after `Key=`: booleans as `yes`/`no`.
    pub fn to_unit_string(&self) -> String {
        self.as_unit_str().into_owned()
    }

    /// [`Scalar::to_unit_string`] without a copy for strings.
    pub fn as_unit_str(&self) -> std::borrow::Cow<'_, str> {
        match self {
            Scalar::Str(s) => std::borrow::Cow::Borrowed(s),
            Scalar::Num(n) => std::borrow::Cow::Owned(n.to_string()),
            Scalar::Bool(true) => std::borrow::Cow::Borrowed("yes"),
            Scalar::Bool(false) => std::borrow::Cow::Borrowed("no"),
        }
    }
}

impl From<&str> for Scalar {
    fn from(s: &str) -> Self {
        Scalar::Str(s.to_owned())
    }
}
impl From<bool> for Scalar {
    fn from(b: bool) -> Self {
        Scalar::Bool(b)
    }
}

/// The values of one key: one line per element. `None` (JSON `null`) removes a
/// default.
pub type KeyValues = Option<Vec<Scalar>>;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SectionBody {
    /// Merged over a default section of the same name.
    Single(Vec<(String, KeyValues)>),
    /// Extra repeated sections, appended.
    Repeated(Vec<Vec<(String, Vec<Scalar>)>>),
}

/// Settings in the order given (JSON objects are read with sorted keys, so the
/// order is deterministic).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Settings {
    pub sections: Vec<(String, SectionBody)>,
}

impl Serialize for Settings {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeMap;
        fn keys(entries: &[(String, KeyValues)]) -> serde_json::Map<String, Value> {
            entries
                .iter()
                .map(|(k, v)| {
                    let v = match v {
                        None => Value::Null,
                        Some(vals) if vals.len() == 1 => serde_json::to_value(&vals[0]).unwrap(),
                        Some(vals) => serde_json::to_value(vals).unwrap(),
                    };
                    (k.clone(), v)
                })
                .collect()
        }
        let mut map = s.serialize_map(Some(self.sections.len()))?;
        for (name, body) in &self.sections {
            match body {
                SectionBody::Single(entries) => map.serialize_entry(name, &keys(entries))?,
                SectionBody::Repeated(list) => {
                    let objs: Vec<_> = list
                        .iter()
                        .map(|entries| {
                            let as_opt: Vec<(String, KeyValues)> = entries
                                .iter()
                                .map(|(k, v)| (k.clone(), Some(v.clone())))
                                .collect();
                            keys(&as_opt)
                        })
                        .collect();
                    map.serialize_entry(name, &objs)?
                }
            }
        }
        map.end()
    }
}

/// A problem at a JSON path below the settings value.
pub type FieldError = (String, String);

impl Settings {
    /// Builder for defaults written in code.
    pub fn single(mut self, section: &str, entries: &[(&str, &[&str])]) -> Self {
        let entries = entries
            .iter()
            .map(|(k, vals)| {
                (
                    k.to_string(),
                    Some(vals.iter().map(|v| Scalar::from(*v)).collect()),
                )
            })
            .collect();
        self.sections
            .push((section.to_owned(), SectionBody::Single(entries)));
        self
    }

    pub fn is_empty(&self) -> bool {
        self.sections.is_empty()
    }

    /// The values given for `key` in the (single) section `section`:
    /// `Some(None)` for `null`, `None` when the key is not mentioned.
    pub fn value(&self, section: &str, key: &str) -> Option<&KeyValues> {
        self.sections.iter().find_map(|(n, b)| match b {
            SectionBody::Single(entries) if n == section => {
                entries.iter().find(|(k, _)| k == key).map(|(_, v)| v)
            }
            _ => None,
        })
    }

    /// Whether `key` of `section` is set to `null` (removes a generated line).
    pub fn removes(&self, section: &str, key: &str) -> bool {
        matches!(self.value(section, key), Some(None))
    }

    /// Parse and validate a settings value found at JSON path `path`.
    pub fn from_json(value: &Value, path: &str) -> Result<Settings, Vec<FieldError>> {
        let mut errors = Vec::new();
        let mut settings = Settings::default();
        let Value::Object(map) = value else {
            return Err(vec![(
                path.to_owned(),
                format!(
                    "expected an object of sections, found {}",
                    crate::error::show_value(value)
                ),
            )]);
        };
        for_each_named(
            map,
            path,
            &mut errors,
            |section, body, spath, errors| match body {
                Value::Object(keys) => {
                    let mut entries = Vec::new();
                    for_each_named(keys, &spath, errors, |key, v, kpath, errors| match v {
                        Value::Null => entries.push((key.clone(), None)),
                        other => match values(other, &kpath) {
                            Ok(vals) => entries.push((key.clone(), Some(vals))),
                            Err(e) => errors.push(e),
                        },
                    });
                    settings
                        .sections
                        .push((section.clone(), SectionBody::Single(entries)));
                }
                Value::Array(list) => {
                    let mut repeated = Vec::new();
                    for (i, item) in list.iter().enumerate() {
                        let ipath = format!("{spath}[{i}]");
                        let Value::Object(keys) = item else {
                            errors.push((
                                ipath,
                                format!(
                                    "expected an object of keys, found {}",
                                    crate::error::show_value(item)
                                ),
                            ));
                            continue;
                        };
                        let mut entries = Vec::new();
                        for_each_named(keys, &ipath, errors, |key, v, kpath, errors| match values(
                            v, &kpath,
                        ) {
                            Ok(vals) => entries.push((key.clone(), vals)),
                            Err(e) => errors.push(e),
                        });
                        repeated.push(entries);
                    }
                    settings
                        .sections
                        .push((section.clone(), SectionBody::Repeated(repeated)));
                }
                other => errors.push((
                    spath,
                    format!(
                        "expected an object of keys or a list of them, found {}",
                        crate::error::show_value(other)
                    ),
                )),
            },
        );
        if errors.is_empty() {
            Ok(settings)
        } else {
            Err(errors)
        }
    }

    /// `self` (the defaults) with `over` merged on top, see the module docs.
    pub fn merged(&self, over: Option<&Settings>) -> Settings {
        self.clone().merge(over)
    }

    /// [`Settings::merged`] of defaults that are not needed afterwards (no copy).
    pub fn merge(self, over: Option<&Settings>) -> Settings {
        self.merge_appending(over, &[])
    }

    /// Like [`Settings::merged`], but for the `(section, key)` pairs in
    /// `accumulating` the values are appended to the defaults (a leading `""`
    /// drops the defaults instead, and is itself dropped).
    pub fn merged_appending(
        &self,
        over: Option<&Settings>,
        accumulating: &[(&str, &str)],
    ) -> Settings {
        self.clone().merge_appending(over, accumulating)
    }

    /// [`Settings::merged_appending`] consuming the defaults.
    pub fn merge_appending(
        self,
        over: Option<&Settings>,
        accumulating: &[(&str, &str)],
    ) -> Settings {
        let mut out = self;
        let Some(over) = over else { return out };
        for (name, body) in &over.sections {
            match body {
                SectionBody::Single(entries) => {
                    let existing = out.sections.iter_mut().find_map(|(n, b)| match b {
                        SectionBody::Single(e) if n == name => Some(e),
                        _ => None,
                    });
                    let target = match existing {
                        Some(t) => t,
                        None => {
                            out.sections
                                .push((name.clone(), SectionBody::Single(Vec::new())));
                            match &mut out.sections.last_mut().unwrap().1 {
                                SectionBody::Single(e) => e,
                                SectionBody::Repeated(_) => unreachable!(),
                            }
                        }
                    };
                    let accumulates =
                        |key: &str| accumulating.iter().any(|(s, k)| s == name && *k == key);
                    for (key, vals) in entries {
                        match target.iter_mut().find(|(k, _)| k == key) {
                            Some(slot) => match (vals, &mut slot.1) {
                                (Some(new), Some(old)) if accumulates(key) => {
                                    if new.first() == Some(&Scalar::Str(String::new())) {
                                        *old = new[1..].to_vec();
                                    } else {
                                        old.extend(new.iter().cloned());
                                    }
                                }
                                _ => slot.1 = vals.clone(),
                            },
                            None => target.push((key.clone(), vals.clone())),
                        }
                    }
                }
                SectionBody::Repeated(_) => out.sections.push((name.clone(), body.clone())),
            }
        }
        out
    }

    /// Append these settings to an INI file (removed keys and empty sections
    /// are skipped).
    pub fn write_to(&self, file: &mut IniFile) -> Result<(), String> {
        for (name, body) in &self.sections {
            match body {
                SectionBody::Single(entries) => {
                    if entries.iter().all(|(_, v)| v.is_none()) {
                        continue;
                    }
                    file.section(name)?;
                    for (key, vals) in entries {
                        for v in vals.iter().flatten() {
                            file.set(key, &v.as_unit_str())?;
                        }
                    }
                }
                SectionBody::Repeated(list) => {
                    for entries in list {
                        file.section(name)?;
                        for (key, vals) in entries {
                            for v in vals {
                                file.set(key, &v.as_unit_str())?;
                            }
                        }
                    }
                }
            }
        }
        Ok(())
    }

    /// The value of `section.key` after merging, for code that needs to look
    /// at a setting (e.g. a zone's netdev kind).
    pub fn get(&self, section: &str, key: &str) -> Option<&[Scalar]> {
        self.sections.iter().rev().find_map(|(n, b)| match b {
            SectionBody::Single(e) if n == section => e
                .iter()
                .find(|(k, _)| k == key)
                .and_then(|(_, v)| v.as_deref()),
            _ => None,
        })
    }
}

fn scalar(v: &Value, path: &str) -> Result<Scalar, FieldError> {
    match v {
        Value::String(s) => {
            check_value(s).map_err(|e| (path.to_owned(), e))?;
            Ok(Scalar::Str(s.clone()))
        }
        Value::Number(n) => {
            // serde_json reads long or large floats to within an ULP, not
            // exactly, so such a number would change each time an entry is
            // written back (the CLI does) and read again: refuse it.
            if n.is_f64()
                && serde_json::from_str::<serde_json::Number>(&n.to_string())
                    .ok()
                    .as_ref()
                    != Some(n)
            {
                return Err((
                    path.to_owned(),
                    format!("{n} has no exact floating-point form; write the value as a string"),
                ));
            }
            Ok(Scalar::Num(n.clone()))
        }
        Value::Bool(b) => Ok(Scalar::Bool(*b)),
        other => Err((
            path.to_owned(),
            format!(
                "expected a string, number or boolean, found {}",
                crate::error::show_value(other)
            ),
        )),
    }
}

/// `each` member of the JSON object `map` at `path` whose name is a valid
/// section or key name, with its path `PATH.NAME`, in order; an invalid
/// name is an error at its path instead.
fn for_each_named(
    map: &serde_json::Map<String, Value>,
    path: &str,
    errors: &mut Vec<FieldError>,
    mut each: impl FnMut(&String, &Value, String, &mut Vec<FieldError>),
) {
    for (name, value) in map {
        let npath = format!("{path}.{name}");
        match check_name(name) {
            Ok(()) => each(name, value, npath, errors),
            Err(e) => errors.push((npath, e)),
        }
    }
}

fn values(v: &Value, path: &str) -> Result<Vec<Scalar>, FieldError> {
    match v {
        Value::Array(items) => items
            .iter()
            .enumerate()
            .map(|(i, item)| scalar(item, &format!("{path}[{i}]")))
            .collect(),
        other => Ok(vec![scalar(other, path)?]),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::unit::Dialect;
    use serde_json::json;

    fn render(s: &Settings) -> String {
        let mut f = IniFile::new(Dialect::Plain);
        s.write_to(&mut f).unwrap();
        f.render()
    }

    #[test]
    fn merge_replaces_removes_and_appends() {
        let defaults = Settings::default()
            .single("Match", &[("Name", &["ve-web"])])
            .single("Network", &[("DHCPServer", &["yes"]), ("LLDP", &["yes"])]);
        let user = Settings::from_json(
            &json!({
                "Network": { "DHCPServer": false, "LLDP": null, "Address": ["", "10.0.0.1/24"] },
                "IPv6Prefix": [ { "Prefix": "fd00::/64", "Assign": true } ],
                "DHCPServer": { "PoolSize": 20 }
            }),
            "network.host",
        )
        .unwrap();
        assert_eq!(
            render(&defaults.merged(Some(&user))),
            "[Match]\nName=ve-web\n\n[Network]\nDHCPServer=no\nAddress=\nAddress=10.0.0.1/24\n\n\
             [DHCPServer]\nPoolSize=20\n\n[IPv6Prefix]\nAssign=yes\nPrefix=fd00::/64\n"
        );
    }

    #[test]
    fn accumulating_keys_append_unless_reset() {
        let defaults = Settings::default().single(
            "Files",
            &[("BindReadOnly", &["/nix/store"]), ("Volatile", &["no"])],
        );
        let acc = &[("Files", "BindReadOnly")];
        let user = Settings::from_json(
            &json!({ "Files": { "BindReadOnly": ["/usr"], "Volatile": "state" } }),
            "x",
        )
        .unwrap();
        assert_eq!(
            render(&defaults.merged_appending(Some(&user), acc)),
            "[Files]\nBindReadOnly=/nix/store\nBindReadOnly=/usr\nVolatile=state\n"
        );
        let reset = Settings::from_json(&json!({ "Files": { "BindReadOnly": ["", "/usr"] } }), "x")
            .unwrap();
        assert_eq!(
            render(&defaults.merged_appending(Some(&reset), acc)),
            "[Files]\nBindReadOnly=/usr\nVolatile=no\n"
        );
        let single =
            Settings::from_json(&json!({ "Files": { "BindReadOnly": "/usr" } }), "x").unwrap();
        assert_eq!(
            render(&defaults.merged_appending(Some(&single), acc)),
            "[Files]\nBindReadOnly=/nix/store\nBindReadOnly=/usr\nVolatile=no\n"
        );
    }

    #[test]
    fn errors_name_the_field() {
        let errs = Settings::from_json(
            &json!({ "Network": { "Address": ["ok", "bad\nline"], "Bad Key": 1, "X": {} },
                      "Section]": {}, "Route": 3 }),
            "extraNspawn",
        )
        .unwrap_err();
        let fields: Vec<_> = errs.iter().map(|(f, _)| f.as_str()).collect();
        assert_eq!(
            fields,
            vec![
                "extraNspawn.Network.Address[1]",
                "extraNspawn.Network.Bad Key",
                "extraNspawn.Network.X",
                "extraNspawn.Route",
                "extraNspawn.Section]",
            ]
        );
        assert!(errs[0].1.contains("line break"), "{}", errs[0].1);
    }

    #[test]
    fn numbers_read_back_exactly_or_are_refused() {
        // Found by fuzzing: this parses to a float that prints as
        // 9.99992e34, which parses to a different float.
        let v: Value = serde_json::from_str(
            r#"{"Service": {"X": [1, 1.5, 18446744073709551615, -3, 1e300, 99999199999999999994999999999999999]}}"#,
        )
        .unwrap();
        let errs = Settings::from_json(&v, "extraService").unwrap_err();
        assert_eq!(errs.len(), 1, "{errs:?}");
        assert_eq!(errs[0].0, "extraService.Service.X[5]");
        let ok: Value = serde_json::from_str(
            r#"{"Service": {"X": [1, 1.5, 18446744073709551615, -3, 1e300]}}"#,
        )
        .unwrap();
        let s = Settings::from_json(&ok, "x").unwrap();
        let back = serde_json::to_value(&s).unwrap();
        assert_eq!(Settings::from_json(&back, "x").unwrap(), s);
    }

    #[test]
    fn serializes_back_to_the_same_json() {
        let v = json!({ "Network": { "A": "x", "B": ["1", "2"], "C": null, "D": true, "E": 5 },
                        "Route": [ { "Gateway": "10.0.0.1" } ] });
        let s = Settings::from_json(&v, "x").unwrap();
        assert_eq!(serde_json::to_value(&s).unwrap(), v);
    }
}
