//! A JSON document described in parts, so that it can be written out one part at a
//! time: the JSON view of a plan of thousands of tenants is written tenant by tenant
//! and resource by resource ([`super::render::write_json`]) instead of being built
//! whole in memory first. The same description also builds the whole [`Value`]
//! ([`Part::into_value`]), so the streamed bytes are those of
//! `serde_json::to_string` of that value by construction.

use std::io::{self, Write};

use serde_json::{Map, Value};

use crate::resource::iam::with_account;

/// One part of a JSON document.
pub enum Part<'a> {
    /// A value small enough to build whole.
    Whole(Value),
    /// An array whose items are made one at a time, as they are written.
    Items(Box<dyn Iterator<Item = Value> + 'a>),
    /// An object of parts. Written with its keys sorted, as a `serde_json` map is.
    Object(Vec<(&'static str, Part<'a>)>),
}

impl Part<'_> {
    /// The whole value the part describes.
    pub fn into_value(self) -> Value {
        match self {
            Part::Whole(v) => v,
            Part::Items(items) => Value::Array(items.collect()),
            Part::Object(entries) => Value::Object(
                entries
                    .into_iter()
                    .map(|(k, p)| (k.to_owned(), p.into_value()))
                    .collect::<Map<String, Value>>(),
            ),
        }
    }

    /// Writes the part as `serde_json::to_writer` writes [`Part::into_value`], with
    /// the account placeholder replaced by `account` in every string, when given.
    pub fn write(self, out: &mut dyn Write, account: Option<&str>) -> io::Result<()> {
        match self {
            Part::Whole(v) => match account {
                Some(a) => serde_json::to_writer(&mut *out, &with_account(&v, a)),
                None => serde_json::to_writer(&mut *out, &v),
            }
            .map_err(io::Error::from),
            Part::Items(items) => {
                out.write_all(b"[")?;
                for (i, v) in items.enumerate() {
                    if i > 0 {
                        out.write_all(b",")?;
                    }
                    Part::Whole(v).write(out, account)?;
                }
                out.write_all(b"]")
            }
            Part::Object(mut entries) => {
                entries.sort_by(|a, b| a.0.cmp(b.0));
                out.write_all(b"{")?;
                for (i, (k, p)) in entries.into_iter().enumerate() {
                    if i > 0 {
                        out.write_all(b",")?;
                    }
                    serde_json::to_writer(&mut *out, k).map_err(io::Error::from)?;
                    out.write_all(b":")?;
                    p.write(out, account)?;
                }
                out.write_all(b"}")
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn doc() -> Part<'static> {
        Part::Object(vec![
            (
                "zeta",
                Part::Whole(json!({"b": 1, "a": "x {aws_account_id} y"})),
            ),
            (
                "items",
                Part::Items(Box::new(
                    (0..3).map(|i| json!({"n": i, "arn": "{aws_account_id}"})),
                )),
            ),
            ("empty", Part::Items(Box::new(std::iter::empty()))),
            (
                "nested",
                Part::Object(vec![
                    ("b", Part::Whole(json!(null))),
                    ("a", Part::Whole(json!([1.5]))),
                ]),
            ),
        ])
    }

    #[test]
    fn written_parts_are_the_bytes_of_the_whole_value() {
        for account in [None, Some("123456789012")] {
            let mut streamed = Vec::new();
            doc().write(&mut streamed, account).unwrap();
            let whole = doc().into_value();
            let whole = match account {
                Some(a) => with_account(&whole, a),
                None => whole,
            };
            assert_eq!(
                String::from_utf8(streamed).unwrap(),
                serde_json::to_string(&whole).unwrap()
            );
        }
    }
}
