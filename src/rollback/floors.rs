//! The version floors and their state-file format (pure core).
//!
//! The file is JSON, versioned by a `schema` number, with one entry per (class, name):
//!
//! ```json
//! {"schema": 1, "floors": [{"class": "sysext", "name": "foo", "version": "2.1"}]}
//! ```
//!
//! The reader fails closed: anything it does not fully understand (another schema, an unknown
//! field, a duplicate entry, an invalid name or version, trailing bytes) is an error, never a
//! partial set of floors, because a floor silently dropped is a rollback silently allowed.

use super::{name_problem, Class};
use crate::image::version::strverscmp_improved;
use crate::image::version::version_problem;
use serde::{Deserialize, Serialize};
use std::cmp::Ordering;
use std::collections::BTreeMap;
use thiserror::Error;

/// The schema this code reads and writes.
pub const SCHEMA: u64 = 1;

/// A state file larger than this is refused unread (a floor is a few dozen bytes).
pub const MAX_STATE_SIZE: usize = 4 << 20;

/// Why the bytes of a state file, or a requested change, were refused.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum FloorsError {
    #[error("is {0} bytes, more than the {MAX_STATE_SIZE}-byte limit")]
    TooLarge(usize),
    #[error("is not valid JSON: {0}")]
    Json(String),
    #[error("is not a JSON object with a \"schema\" number")]
    NoSchema,
    #[error(
        "has schema {0}; this verity reads schema {SCHEMA} (written by a newer verity? refusing \
         rather than guessing)"
    )]
    UnknownSchema(u64),
    #[error("does not match schema {SCHEMA}: {0}")]
    Shape(String),
    #[error("entry {index}: unknown class {class:?} (sysext, confext or root)")]
    BadClass { index: usize, class: String },
    #[error("entry {index}: name {name:?} {why}")]
    BadName {
        index: usize,
        name: String,
        why: &'static str,
    },
    #[error("entry {index} ({class} {name}): version {version:?} {why}")]
    BadVersion {
        index: usize,
        class: Class,
        name: String,
        version: String,
        why: String,
    },
    #[error("entry {index}: a second floor for {class} {name}")]
    Duplicate {
        index: usize,
        class: Class,
        name: String,
    },
    #[error("{class} name {name:?} {why}")]
    Name {
        class: Class,
        name: String,
        why: &'static str,
    },
    #[error("version {version:?} {why}")]
    Version { version: String, why: String },
    #[error(
        "the floor of {class} {name} is {floor}; {version} is lower, and raising never lowers a \
         floor (use `verity rollback lower ... --dangerous-lower-floor`)"
    )]
    WouldLower {
        class: Class,
        name: String,
        floor: String,
        version: String,
    },
    #[error("there is no floor for {class} {name}; nothing to lower")]
    NoFloor { class: Class, name: String },
    #[error("the floor of {class} {name} is {floor}; {version} is not lower (use `verity rollback raise`)")]
    NotLower {
        class: Class,
        name: String,
        floor: String,
        version: String,
    },
}

/// What a raise or lower did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Change {
    /// A floor where there was none.
    Set { to: String },
    /// A floor moved up.
    Raised { from: String, to: String },
    /// A floor moved down (only through the dangerous path).
    Lowered { from: String, to: String },
    /// The floor already was at (or above, for a ratchet) the version.
    Unchanged { floor: String },
}

impl Change {
    /// Whether the floors changed.
    pub fn changed(&self) -> bool {
        !matches!(self, Change::Unchanged { .. })
    }
}

/// The floors, keyed by (class, name). Versions are valid ([`crate::image::version::version_is_valid`]).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Floors {
    map: BTreeMap<(Class, String), String>,
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileV1 {
    schema: u64,
    floors: Vec<EntryV1>,
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct EntryV1 {
    class: String,
    name: String,
    version: String,
}

fn check_name(class: Class, name: &str) -> Result<(), FloorsError> {
    match name_problem(class, name) {
        None => Ok(()),
        Some(why) => Err(FloorsError::Name {
            class,
            name: name.to_string(),
            why,
        }),
    }
}

fn check_version(version: &str) -> Result<(), FloorsError> {
    match version_problem(version) {
        None => Ok(()),
        Some(why) => Err(FloorsError::Version {
            version: version.to_string(),
            why,
        }),
    }
}

impl Floors {
    /// No floors (what a missing state file means).
    pub fn new() -> Self {
        Self::default()
    }

    /// Parses a state file's bytes, refusing anything not exactly schema 1.
    pub fn parse(bytes: &[u8]) -> Result<Self, FloorsError> {
        if bytes.len() > MAX_STATE_SIZE {
            return Err(FloorsError::TooLarge(bytes.len()));
        }
        let v: serde_json::Value =
            serde_json::from_slice(bytes).map_err(|e| FloorsError::Json(e.to_string()))?;
        let schema = v
            .get("schema")
            .and_then(serde_json::Value::as_u64)
            .ok_or(FloorsError::NoSchema)?;
        if schema != SCHEMA {
            return Err(FloorsError::UnknownSchema(schema));
        }
        // Read again straight from the bytes: unlike a `Value`, the typed reader refuses a field
        // given twice instead of keeping the last one.
        let file: FileV1 =
            serde_json::from_slice(bytes).map_err(|e| FloorsError::Shape(e.to_string()))?;
        let mut map = BTreeMap::new();
        for (index, e) in file.floors.into_iter().enumerate() {
            let class = Class::from_name(&e.class).ok_or_else(|| FloorsError::BadClass {
                index,
                class: e.class.clone(),
            })?;
            if let Some(why) = name_problem(class, &e.name) {
                return Err(FloorsError::BadName {
                    index,
                    name: e.name,
                    why,
                });
            }
            if let Some(why) = version_problem(&e.version) {
                return Err(FloorsError::BadVersion {
                    index,
                    class,
                    name: e.name,
                    version: e.version,
                    why,
                });
            }
            if map.contains_key(&(class, e.name.clone())) {
                return Err(FloorsError::Duplicate {
                    index,
                    class,
                    name: e.name,
                });
            }
            map.insert((class, e.name), e.version);
        }
        Ok(Self { map })
    }

    /// The file's bytes: schema 1, entries sorted by class then name, a final newline.
    pub fn to_json(&self) -> Vec<u8> {
        let file = FileV1 {
            schema: SCHEMA,
            floors: self
                .map
                .iter()
                .map(|((c, n), v)| EntryV1 {
                    class: c.name().to_string(),
                    name: n.clone(),
                    version: v.clone(),
                })
                .collect(),
        };
        let mut out = serde_json::to_vec_pretty(&file).expect("plain structs serialize");
        out.push(b'\n');
        out
    }

    /// The floor for (class, name), if there is one.
    pub fn get(&self, class: Class, name: &str) -> Option<&str> {
        self.map.get(&(class, name.to_string())).map(String::as_str)
    }

    /// Every floor, sorted by class then name.
    pub fn iter(&self) -> impl Iterator<Item = (Class, &str, &str)> {
        self.map
            .iter()
            .map(|((c, n), v)| (*c, n.as_str(), v.as_str()))
    }

    /// How many floors there are.
    pub fn len(&self) -> usize {
        self.map.len()
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.map.is_empty()
    }

    /// `verity rollback raise`: sets the floor to `version`; refuses to lower it.
    pub fn raise(
        &mut self,
        class: Class,
        name: &str,
        version: &str,
    ) -> Result<Change, FloorsError> {
        self.up(class, name, version, true)
    }

    /// `--ratchet` after an admission: raises the floor to `version` when that is higher, and
    /// otherwise leaves it (an admitted image is never below its floor, but an equal or lower
    /// one admitted before the floor moved must not fail the ratchet).
    pub fn ratchet(
        &mut self,
        class: Class,
        name: &str,
        version: &str,
    ) -> Result<Change, FloorsError> {
        self.up(class, name, version, false)
    }

    fn up(
        &mut self,
        class: Class,
        name: &str,
        version: &str,
        refuse_lower: bool,
    ) -> Result<Change, FloorsError> {
        check_name(class, name)?;
        check_version(version)?;
        let key = (class, name.to_string());
        match self.map.get(&key) {
            None => {
                self.map.insert(key, version.to_string());
                Ok(Change::Set {
                    to: version.to_string(),
                })
            }
            Some(floor) => match strverscmp_improved(version, floor) {
                Ordering::Greater => {
                    let from = self.map.insert(key, version.to_string()).expect("present");
                    Ok(Change::Raised {
                        from,
                        to: version.to_string(),
                    })
                }
                Ordering::Less if refuse_lower => Err(FloorsError::WouldLower {
                    class,
                    name: name.to_string(),
                    floor: floor.clone(),
                    version: version.to_string(),
                }),
                _ => Ok(Change::Unchanged {
                    floor: floor.clone(),
                }),
            },
        }
    }

    /// Checks that lowering (class, name) to `version` is a real lowering, and returns the
    /// current floor, without changing anything (the caller records the change first).
    pub fn plan_lower(
        &self,
        class: Class,
        name: &str,
        version: &str,
    ) -> Result<String, FloorsError> {
        check_name(class, name)?;
        check_version(version)?;
        let floor = self.get(class, name).ok_or_else(|| FloorsError::NoFloor {
            class,
            name: name.to_string(),
        })?;
        if strverscmp_improved(version, floor) != Ordering::Less {
            return Err(FloorsError::NotLower {
                class,
                name: name.to_string(),
                floor: floor.to_string(),
                version: version.to_string(),
            });
        }
        Ok(floor.to_string())
    }

    /// Lowers the floor (after [`Floors::plan_lower`] and the event-log record).
    pub fn lower(
        &mut self,
        class: Class,
        name: &str,
        version: &str,
    ) -> Result<Change, FloorsError> {
        let from = self.plan_lower(class, name, version)?;
        self.map
            .insert((class, name.to_string()), version.to_string());
        Ok(Change::Lowered {
            from,
            to: version.to_string(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_sorted() {
        let mut f = Floors::new();
        f.raise(Class::Root, "os", "5").unwrap();
        f.raise(Class::Sysext, "zz", "1.0").unwrap();
        f.raise(Class::Sysext, "aa", "2").unwrap();
        f.raise(Class::Confext, "c", "0.1~rc1").unwrap();
        let bytes = f.to_json();
        let back = Floors::parse(&bytes).unwrap();
        assert_eq!(back, f);
        let order: Vec<_> = back.iter().map(|(c, n, _)| format!("{c}/{n}")).collect();
        assert_eq!(order, ["sysext/aa", "sysext/zz", "confext/c", "root/os"]);
        // The written form is the documented one.
        let v: serde_json::Value = serde_json::from_slice(&bytes).unwrap();
        assert_eq!(v["schema"], 1);
        assert_eq!(
            v["floors"][0],
            serde_json::json!({"class": "sysext", "name": "aa", "version": "2"})
        );
        assert_eq!(
            Floors::parse(br#"{"schema":1,"floors":[]}"#).unwrap().len(),
            0
        );
    }

    #[test]
    fn raise_ratchet_lower_use_systemd_ordering() {
        let mut f = Floors::new();
        assert_eq!(
            f.raise(Class::Sysext, "foo", "1.9").unwrap(),
            Change::Set { to: "1.9".into() }
        );
        // 1.10 > 1.9 by strverscmp (a string compare would say otherwise).
        assert_eq!(
            f.raise(Class::Sysext, "foo", "1.10").unwrap(),
            Change::Raised {
                from: "1.9".into(),
                to: "1.10".into()
            }
        );
        let e = f.raise(Class::Sysext, "foo", "1.9").unwrap_err();
        assert!(matches!(e, FloorsError::WouldLower { .. }), "{e}");
        assert!(e.to_string().contains("--dangerous-lower-floor"), "{e}");
        // A pre-release sorts below its release.
        assert!(f.raise(Class::Sysext, "foo", "1.10~rc1").is_err());
        assert_eq!(
            f.ratchet(Class::Sysext, "foo", "1.2").unwrap(),
            Change::Unchanged {
                floor: "1.10".into()
            }
        );
        assert!(!f.raise(Class::Sysext, "foo", "1.10").unwrap().changed());
        assert!(f.ratchet(Class::Sysext, "foo", "2").unwrap().changed());
        // Other classes are separate.
        assert_eq!(f.get(Class::Confext, "foo"), None);
        assert!(matches!(
            f.plan_lower(Class::Confext, "foo", "1"),
            Err(FloorsError::NoFloor { .. })
        ));
        assert!(matches!(
            f.plan_lower(Class::Sysext, "foo", "2"),
            Err(FloorsError::NotLower { .. })
        ));
        assert_eq!(
            f.lower(Class::Sysext, "foo", "1.0").unwrap(),
            Change::Lowered {
                from: "2".into(),
                to: "1.0".into()
            }
        );
        assert_eq!(f.get(Class::Sysext, "foo"), Some("1.0"));
        assert!(matches!(
            f.raise(Class::Sysext, "foo_2", "3"),
            Err(FloorsError::Name { .. })
        ));
        assert!(matches!(
            f.raise(Class::Sysext, "foo", "3 beta"),
            Err(FloorsError::Version { .. })
        ));
    }

    #[test]
    fn refuses_anything_it_does_not_fully_understand() {
        let cases: &[(&str, &str)] = &[
            ("", "not valid JSON"),
            ("{", "not valid JSON"),
            ("[]", "\"schema\""),
            (r#"{"floors":[]}"#, "\"schema\""),
            (r#"{"schema":"1","floors":[]}"#, "\"schema\""),
            (r#"{"schema":2,"floors":[]}"#, "schema 2"),
            (r#"{"schema":1}"#, "missing field"),
            (r#"{"schema":1,"floors":[],"x":1}"#, "unknown field"),
            (
                r#"{"schema":1,"floors":[{"class":"sysext","name":"a","version":"1","x":0}]}"#,
                "unknown field",
            ),
            (
                r#"{"schema":1,"floors":[{"class":"nextroot","name":"a","version":"1"}]}"#,
                "unknown class",
            ),
            (
                r#"{"schema":1,"floors":[{"class":"sysext","name":"a/b","version":"1"}]}"#,
                "entry 0: name",
            ),
            (
                r#"{"schema":1,"floors":[{"class":"sysext","name":"a","version":""}]}"#,
                "is empty",
            ),
            (
                r#"{"schema":1,"floors":[{"class":"sysext","name":"a","version":"1"},
                   {"class":"sysext","name":"a","version":"2"}]}"#,
                "entry 1: a second floor for sysext a",
            ),
            (r#"{"schema":1,"floors":[]} x"#, "not valid JSON"),
            (
                r#"{"schema":1,"floors":[{"class":"sysext","name":"a","version":"9"}],"floors":[]}"#,
                "duplicate field",
            ),
        ];
        for (text, want) in cases {
            let e = Floors::parse(text.as_bytes()).unwrap_err().to_string();
            assert!(e.contains(want), "{text}: {e}");
        }
        let big = vec![b' '; MAX_STATE_SIZE + 1];
        assert_eq!(
            Floors::parse(&big),
            Err(FloorsError::TooLarge(MAX_STATE_SIZE + 1))
        );
    }
}
