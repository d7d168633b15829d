//! ID-token claims as a JSON-like value, so the policy crate needs no JSON
//! library. The gateway deserializes the token's claims straight into
//! [`Claims`] (any serde format works) or converts them itself.

use std::collections::BTreeMap;
use std::fmt;

use serde::de::{Deserialize, Deserializer, MapAccess, SeqAccess, Visitor};

/// All claims of an ID token, by name.
pub type Claims = BTreeMap<String, ClaimValue>;

/// One claim value: the JSON data model.
#[derive(Debug, Clone, PartialEq, Default)]
pub enum ClaimValue {
    /// JSON `null`.
    #[default]
    Null,
    /// `true` or `false`.
    Bool(bool),
    /// Any JSON number; compared as `f64`.
    Number(f64),
    /// A string.
    String(String),
    /// An array; matchers other than `is` apply to its elements.
    List(Vec<ClaimValue>),
    /// An object; `claim.a.b` walks into it.
    Map(BTreeMap<String, ClaimValue>),
}

impl ClaimValue {
    /// The string, when this is a string.
    pub fn as_str(&self) -> Option<&str> {
        match self {
            ClaimValue::String(s) => Some(s),
            _ => None,
        }
    }

    /// Walks a path of object keys (`["org", "team"]` for `claim.org.team`).
    pub fn get_path<S: AsRef<str>>(&self, path: &[S]) -> Option<&ClaimValue> {
        let mut here = self;
        for key in path {
            match here {
                ClaimValue::Map(map) => here = map.get(key.as_ref())?,
                _ => return None,
            }
        }
        Some(here)
    }
}

/// Looks up `claim.<path>` in a token's claims.
pub fn lookup<'c, S: AsRef<str>>(claims: &'c Claims, path: &[S]) -> Option<&'c ClaimValue> {
    let (first, rest) = path.split_first()?;
    claims.get(first.as_ref())?.get_path(rest)
}

impl fmt::Display for ClaimValue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ClaimValue::Null => f.write_str("null"),
            ClaimValue::Bool(b) => write!(f, "{b}"),
            ClaimValue::Number(n) => write!(f, "{n}"),
            ClaimValue::String(s) => f.write_str(s),
            ClaimValue::List(items) => {
                f.write_str("[")?;
                for (i, item) in items.iter().enumerate() {
                    if i > 0 {
                        f.write_str(", ")?;
                    }
                    write!(f, "{item}")?;
                }
                f.write_str("]")
            }
            ClaimValue::Map(_) => f.write_str("{…}"),
        }
    }
}

impl From<&str> for ClaimValue {
    fn from(s: &str) -> Self {
        ClaimValue::String(s.to_owned())
    }
}
impl From<String> for ClaimValue {
    fn from(s: String) -> Self {
        ClaimValue::String(s)
    }
}
impl From<bool> for ClaimValue {
    fn from(b: bool) -> Self {
        ClaimValue::Bool(b)
    }
}
impl From<f64> for ClaimValue {
    fn from(n: f64) -> Self {
        ClaimValue::Number(n)
    }
}
impl From<i64> for ClaimValue {
    fn from(n: i64) -> Self {
        ClaimValue::Number(n as f64)
    }
}
impl<T: Into<ClaimValue>> From<Vec<T>> for ClaimValue {
    fn from(items: Vec<T>) -> Self {
        ClaimValue::List(items.into_iter().map(Into::into).collect())
    }
}

impl<'de> Deserialize<'de> for ClaimValue {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(ClaimVisitor)
    }
}

struct ClaimVisitor;

impl<'de> Visitor<'de> for ClaimVisitor {
    type Value = ClaimValue;
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a claim value")
    }
    fn visit_unit<E>(self) -> Result<ClaimValue, E> {
        Ok(ClaimValue::Null)
    }
    fn visit_none<E>(self) -> Result<ClaimValue, E> {
        Ok(ClaimValue::Null)
    }
    fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<ClaimValue, D::Error> {
        ClaimValue::deserialize(d)
    }
    fn visit_bool<E>(self, v: bool) -> Result<ClaimValue, E> {
        Ok(ClaimValue::Bool(v))
    }
    fn visit_i64<E>(self, v: i64) -> Result<ClaimValue, E> {
        Ok(ClaimValue::Number(v as f64))
    }
    fn visit_u64<E>(self, v: u64) -> Result<ClaimValue, E> {
        Ok(ClaimValue::Number(v as f64))
    }
    fn visit_f64<E>(self, v: f64) -> Result<ClaimValue, E> {
        Ok(ClaimValue::Number(v))
    }
    fn visit_str<E>(self, v: &str) -> Result<ClaimValue, E> {
        Ok(ClaimValue::String(v.to_owned()))
    }
    fn visit_string<E>(self, v: String) -> Result<ClaimValue, E> {
        Ok(ClaimValue::String(v))
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<ClaimValue, A::Error> {
        let mut out = Vec::new();
        while let Some(v) = seq.next_element()? {
            out.push(v);
        }
        Ok(ClaimValue::List(out))
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<ClaimValue, A::Error> {
        let mut out = BTreeMap::new();
        while let Some((k, v)) = map.next_entry::<String, ClaimValue>()? {
            out.insert(k, v);
        }
        Ok(ClaimValue::Map(out))
    }
}
