//! The `getEntries` answer decoded straight from its text into rows.
//!
//! A whole Active List comes in one answer (no paging). Parsed into a `serde_json::Value` tree
//! first, every `{"entry": [...]}` is a map of its own, ~850 B of heap an entry: 800 MiB at
//! 900,000 entries. Here the text drives hand-written visitors instead (no `untagged` enum:
//! those buffer every item into serde's `Content`, as costly as a `Value`), so only the rows
//! are built. What is accepted is exactly what `unwrap_answer` and the `Value` decoder accept:
//! either dialect's keys (`act.getEntriesResponse` / `getEntriesResponse`, `act.return` /
//! `return`, any `<prefix>.columns` ...), every empty rendering, one row as a bare object, one
//! value as a bare string.

use std::cell::Cell;
use std::fmt;

use serde::de::{DeserializeSeed, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};
use serde_json::{Number, Value};

use super::active_lists::ListEntries;
use crate::client::MAX_STRING_LEN;
use crate::decode;
use crate::error::EsmError;
use crate::model::is_null_sentinel;

const NO_RESPONSE: &str = "no getEntriesResponse in the answer";
const NOT_AN_OBJECT: &str = "expected an object with getEntriesResponse";
const NOT_A_LIST: &str = "the answer is not an entry list object";

/// The entries of a 2xx, non-HTML `getEntries` answer (empty text: an empty list). Invalid
/// JSON is repaired once, as every other answer is.
pub(crate) fn decode_body(
    op: &'static str,
    status: u16,
    text: &str,
) -> Result<ListEntries, EsmError> {
    let error = |message: String| EsmError::Decode {
        operation: op,
        status,
        message,
    };
    if text.trim().is_empty() {
        return Ok(ListEntries::default());
    }
    match parse(text) {
        Ok(e) => Ok(e),
        Err(Failure::Shape(m)) => Err(error(m.to_owned())),
        Err(Failure::Json(first)) => match decode::repair_json(text).as_deref().map(parse) {
            Some(Ok(e)) => Ok(e),
            Some(Err(Failure::Shape(m))) => Err(error(m.to_owned())),
            // serde_json's message names a position, never the input.
            Some(Err(Failure::Json(_))) | None => Err(error(first.to_string())),
        },
    }
}

enum Failure {
    /// Valid JSON, not an entry list (the message names no data).
    Shape(&'static str),
    Json(serde_json::Error),
}

/// Shape errors travel beside serde's error, so their message carries no parser position.
type Shape = Cell<Option<&'static str>>;

fn shape_error<E: serde::de::Error>(shape: &Shape, message: &'static str) -> E {
    shape.set(Some(message));
    E::custom(message)
}

fn parse(text: &str) -> Result<ListEntries, Failure> {
    let shape = Shape::new(None);
    let mut de = serde_json::Deserializer::from_str(text);
    let got = AnswerSeed { shape: &shape }
        .deserialize(&mut de)
        .and_then(|raw| de.end().map(|()| raw));
    match (got, shape.get()) {
        (_, Some(m)) => Err(Failure::Shape(m)),
        (Ok(raw), None) => Ok(finish(raw.unwrap_or_default())),
        (Err(e), None) => Err(Failure::Json(e)),
    }
}

/// Rows as read, before the width of the columns (which may come after them) is applied.
#[derive(Default)]
struct Raw {
    columns: Vec<String>,
    rows: Vec<Vec<String>>,
    skipped: usize,
}

fn finish(raw: Raw) -> ListEntries {
    let Raw {
        columns,
        mut rows,
        mut skipped,
    } = raw;
    let width = columns.len();
    if width > 0 {
        let before = rows.len();
        rows.retain(|r| r.len() <= width);
        skipped += before - rows.len();
        for r in &mut rows {
            r.resize(width, String::new());
        }
    }
    if skipped > 0 {
        tracing::warn!(
            skipped,
            "getEntries: entries left out (more values than columns, oversized, or not an entry)"
        );
    }
    ListEntries {
        columns,
        rows,
        skipped,
    }
}

/// How a key names a field: itself, `<prefix>.name`, or not at all.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Match {
    Exact,
    Prefixed,
}

/// Reads a key (without keeping it) as the position in `names` of the field it names.
struct KeySeed(&'static [&'static str]);

impl<'de> DeserializeSeed<'de> for KeySeed {
    type Value = Option<(usize, Match)>;
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        d.deserialize_str(self)
    }
}

impl Visitor<'_> for KeySeed {
    type Value = Option<(usize, Match)>;
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a key")
    }
    fn visit_str<E>(self, key: &str) -> Result<Self::Value, E> {
        Ok(self.0.iter().enumerate().find_map(|(i, name)| {
            if key == *name {
                Some((i, Match::Exact))
            } else if key.rsplit_once('.').is_some_and(|(_, n)| n == *name) {
                Some((i, Match::Prefixed))
            } else {
                None
            }
        }))
    }
}

/// Whether a field's value found under a key should replace what an earlier key gave: the
/// key itself wins over a prefixed one, else the first one wins (as `field()` chooses).
fn takes(seen: Option<Match>, now: Match) -> bool {
    match seen {
        None => true,
        Some(Match::Prefixed) => now == Match::Exact,
        Some(Match::Exact) => false,
    }
}

fn skip_seq<'de, A: SeqAccess<'de>>(mut seq: A) -> Result<(), A::Error> {
    while seq.next_element::<IgnoredAny>()?.is_some() {}
    Ok(())
}

fn skip_map<'de, A: MapAccess<'de>>(mut map: A) -> Result<(), A::Error> {
    while map.next_entry::<IgnoredAny, IgnoredAny>()?.is_some() {}
    Ok(())
}

/// Implements the scalar visits of a visitor whose `Value` is built from a scalar's text
/// (`""` for null) by `$f`.
macro_rules! scalar_visits {
    ($f:ident) => {
        fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<Self::Value, E> {
            self.$f(Text::Str(v))
        }
        fn visit_string<E: serde::de::Error>(self, v: String) -> Result<Self::Value, E> {
            self.$f(Text::String(v))
        }
        fn visit_unit<E: serde::de::Error>(self) -> Result<Self::Value, E> {
            self.$f(Text::Null)
        }
        fn visit_none<E: serde::de::Error>(self) -> Result<Self::Value, E> {
            self.$f(Text::Null)
        }
        fn visit_bool<E: serde::de::Error>(self, v: bool) -> Result<Self::Value, E> {
            self.$f(Text::Other(Value::Bool(v)))
        }
        fn visit_i64<E: serde::de::Error>(self, v: i64) -> Result<Self::Value, E> {
            self.$f(Text::Other(Value::Number(v.into())))
        }
        fn visit_u64<E: serde::de::Error>(self, v: u64) -> Result<Self::Value, E> {
            self.$f(Text::Other(Value::Number(v.into())))
        }
        fn visit_f64<E: serde::de::Error>(self, v: f64) -> Result<Self::Value, E> {
            // JSON has no NaN or infinity: the parser never hands one over.
            let n = Number::from_f64(v).map_or(Value::Null, Value::Number);
            self.$f(Text::Other(n))
        }
    };
}

/// A scalar as the parser gave it. Numbers and booleans go through `Value`, so their text is
/// the one the `Value` decoder produced (`Number`'s `Display`).
enum Text<'a> {
    Str(&'a str),
    String(String),
    Null,
    Other(Value),
}

impl Text<'_> {
    fn is_blank(&self) -> bool {
        match self {
            Text::Str(s) => s.trim().is_empty(),
            Text::String(s) => s.trim().is_empty(),
            Text::Null => true,
            Text::Other(_) => false,
        }
    }

    fn len(&self) -> usize {
        match self {
            Text::Str(s) => s.len(),
            Text::String(s) => s.len(),
            Text::Null | Text::Other(_) => 0,
        }
    }

    fn is_sentinel(&self) -> bool {
        match self {
            Text::Null => true,
            Text::Other(v) => is_null_sentinel(v),
            Text::Str(_) | Text::String(_) => false,
        }
    }

    fn into_string(self) -> String {
        match self {
            Text::Str(s) => s.to_owned(),
            Text::String(s) => s,
            Text::Null => String::new(),
            Text::Other(Value::Bool(b)) => b.to_string(),
            Text::Other(Value::Number(n)) => n.to_string(),
            Text::Other(_) => String::new(),
        }
    }

    /// An entry's value: `None` when beyond [`MAX_STRING_LEN`] (its row is left out), checked
    /// before it is copied.
    fn into_value(self) -> Option<String> {
        (self.len() <= MAX_STRING_LEN).then(|| self.into_string())
    }
}

/// The whole body: `{"<p>.getEntriesResponse": ...}`, or an empty rendering (`None`).
struct AnswerSeed<'s> {
    shape: &'s Shape,
}

impl<'de> DeserializeSeed<'de> for AnswerSeed<'_> {
    type Value = Option<Raw>;
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        d.deserialize_any(self)
    }
}

impl AnswerSeed<'_> {
    fn scalar<E: serde::de::Error>(self, t: Text) -> Result<Option<Raw>, E> {
        if t.is_blank() {
            Ok(None)
        } else {
            Err(shape_error(self.shape, NOT_AN_OBJECT))
        }
    }
}

impl<'de> Visitor<'de> for AnswerSeed<'_> {
    type Value = Option<Raw>;
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a getEntries answer")
    }
    scalar_visits!(scalar);
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
        match seq.next_element::<IgnoredAny>()? {
            None => Ok(None),
            Some(_) => Err(shape_error(self.shape, NOT_AN_OBJECT)),
        }
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let (mut any_key, mut seen, mut got) = (false, None, None);
        while let Some(key) = map.next_key_seed(KeySeed(&["getEntriesResponse"]))? {
            any_key = true;
            match key {
                Some((_, m)) if takes(seen, m) => {
                    seen = Some(m);
                    got = map.next_value_seed(ResponseSeed { shape: self.shape })?;
                }
                _ => {
                    map.next_value::<IgnoredAny>()?;
                }
            }
        }
        if any_key && seen.is_none() {
            return Err(shape_error(self.shape, NO_RESPONSE));
        }
        Ok(got)
    }
}

/// `{"<p>.return": ...}` (missing or empty: `None`), or the payload itself when a renderer
/// dropped the `return` level (then it must be an entry list object, which it cannot be
/// without its keys: an error).
struct ResponseSeed<'s> {
    shape: &'s Shape,
}

impl<'de> DeserializeSeed<'de> for ResponseSeed<'_> {
    type Value = Option<Raw>;
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        d.deserialize_any(self)
    }
}

impl ResponseSeed<'_> {
    fn scalar<E: serde::de::Error>(self, t: Text) -> Result<Option<Raw>, E> {
        if t.is_blank() {
            Ok(None)
        } else {
            Err(shape_error(self.shape, NOT_A_LIST))
        }
    }
}

impl<'de> Visitor<'de> for ResponseSeed<'_> {
    type Value = Option<Raw>;
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a getEntriesResponse")
    }
    scalar_visits!(scalar);
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
        match seq.next_element::<IgnoredAny>()? {
            None => Ok(None),
            Some(_) => Err(shape_error(self.shape, NOT_A_LIST)),
        }
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let (mut seen, mut got) = (None, None);
        while let Some(key) = map.next_key_seed(KeySeed(&["return"]))? {
            match key {
                Some((_, m)) if takes(seen, m) => {
                    seen = Some(m);
                    got = map.next_value_seed(ReturnSeed { shape: self.shape })?;
                }
                _ => {
                    map.next_value::<IgnoredAny>()?;
                }
            }
        }
        Ok(got)
    }
}

/// The `return`: `{columns, entryList}`; empty renderings mean an empty list.
struct ReturnSeed<'s> {
    shape: &'s Shape,
}

impl<'de> DeserializeSeed<'de> for ReturnSeed<'_> {
    type Value = Option<Raw>;
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        d.deserialize_any(self)
    }
}

impl ReturnSeed<'_> {
    fn scalar<E: serde::de::Error>(self, t: Text) -> Result<Option<Raw>, E> {
        if t.is_blank() {
            Ok(None)
        } else {
            Err(shape_error(self.shape, NOT_A_LIST))
        }
    }
}

impl<'de> Visitor<'de> for ReturnSeed<'_> {
    type Value = Option<Raw>;
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("an entry list")
    }
    scalar_visits!(scalar);
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
        match seq.next_element::<IgnoredAny>()? {
            None => Ok(None),
            Some(_) => Err(shape_error(self.shape, NOT_A_LIST)),
        }
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        const COLUMNS: usize = 0;
        let mut raw = Raw::default();
        let mut seen = [None, None];
        while let Some(key) = map.next_key_seed(KeySeed(&["columns", "entryList"]))? {
            match key {
                Some((i, m)) if takes(seen[i], m) => {
                    seen[i] = Some(m);
                    if i == COLUMNS {
                        raw.columns = map.next_value_seed(ColumnsSeed)?;
                    } else {
                        let (rows, skipped) = map.next_value_seed(EntryListSeed)?;
                        (raw.rows, raw.skipped) = (rows, skipped);
                    }
                }
                _ => {
                    map.next_value::<IgnoredAny>()?;
                }
            }
        }
        Ok(Some(raw))
    }
}

/// `columns`: a list of names or one bare name (null sentinels and non-scalars dropped).
struct ColumnsSeed;

impl<'de> DeserializeSeed<'de> for ColumnsSeed {
    type Value = Vec<String>;
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        d.deserialize_any(self)
    }
}

impl ColumnsSeed {
    fn scalar<E: serde::de::Error>(self, t: Text) -> Result<Vec<String>, E> {
        if t.is_blank() || t.is_sentinel() {
            Ok(Vec::new())
        } else {
            Ok(vec![t.into_string()])
        }
    }
}

impl<'de> Visitor<'de> for ColumnsSeed {
    type Value = Vec<String>;
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("column names")
    }
    scalar_visits!(scalar);
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
        let mut out = Vec::new();
        while let Some(name) = seq.next_element_seed(ColumnSeed)? {
            out.extend(name);
        }
        Ok(out)
    }
    fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<Self::Value, A::Error> {
        skip_map(map)?;
        Ok(Vec::new())
    }
}

/// One item of a `columns` list.
struct ColumnSeed;

impl<'de> DeserializeSeed<'de> for ColumnSeed {
    type Value = Option<String>;
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        d.deserialize_any(self)
    }
}

impl ColumnSeed {
    fn scalar<E: serde::de::Error>(self, t: Text) -> Result<Option<String>, E> {
        Ok((!t.is_sentinel()).then(|| t.into_string()))
    }
}

impl<'de> Visitor<'de> for ColumnSeed {
    type Value = Option<String>;
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a column name")
    }
    scalar_visits!(scalar);
    fn visit_seq<A: SeqAccess<'de>>(self, seq: A) -> Result<Self::Value, A::Error> {
        skip_seq(seq).map(|()| None)
    }
    fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<Self::Value, A::Error> {
        skip_map(map).map(|()| None)
    }
}

/// `entryList`: the rows and how many items were not entries. A list of items, or one bare
/// item; null, a blank string and `{}` mean no entries.
struct EntryListSeed;

type Rows = (Vec<Vec<String>>, usize);

impl<'de> DeserializeSeed<'de> for EntryListSeed {
    type Value = Rows;
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        d.deserialize_any(self)
    }
}

impl EntryListSeed {
    fn scalar<E: serde::de::Error>(self, t: Text) -> Result<Rows, E> {
        if matches!(t, Text::Null) || t.is_blank() {
            return Ok((Vec::new(), 0));
        }
        Ok(one(ItemSeed { nested: false }.scalar(t)?))
    }
}

fn one(item: Item) -> Rows {
    match item {
        Item::Row(r) => (vec![r], 0),
        Item::Bad => (Vec::new(), 1),
        Item::EmptyObject => (Vec::new(), 0),
    }
}

impl<'de> Visitor<'de> for EntryListSeed {
    type Value = Rows;
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("entries")
    }
    scalar_visits!(scalar);
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
        let mut rows = Vec::with_capacity(seq.size_hint().unwrap_or(0));
        let mut skipped = 0;
        while let Some(item) = seq.next_element_seed(ItemSeed { nested: false })? {
            match item {
                Item::Row(r) => rows.push(r),
                Item::Bad | Item::EmptyObject => skipped += 1,
            }
        }
        Ok((rows, skipped))
    }
    fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<Self::Value, A::Error> {
        ItemSeed { nested: false }.visit_map(map).map(one)
    }
}

/// One `entryList` item, or the value of its `entry` key.
enum Item {
    Row(Vec<String>),
    /// Not an entry, or a value beyond the accepted size.
    Bad,
    /// `{}`: an entry without values, or (as the whole `entryList`) no entries at all.
    EmptyObject,
}

/// `{"entry": [...]}`, `{"entry": "v"}`, or a bare list or value. `nested`: the value of an
/// `entry` key, where an object is not an entry.
struct ItemSeed {
    nested: bool,
}

impl<'de> DeserializeSeed<'de> for ItemSeed {
    type Value = Item;
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        d.deserialize_any(self)
    }
}

impl ItemSeed {
    fn scalar<E: serde::de::Error>(self, t: Text) -> Result<Item, E> {
        Ok(t.into_value().map_or(Item::Bad, |v| Item::Row(vec![v])))
    }
}

impl<'de> Visitor<'de> for ItemSeed {
    type Value = Item;
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("an entry")
    }
    scalar_visits!(scalar);
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
        let mut row = Vec::with_capacity(seq.size_hint().unwrap_or(0));
        let mut good = true;
        while let Some(v) = seq.next_element_seed(ValueSeed)? {
            match v {
                // Once one value is bad the row is left out: the rest is read, not kept.
                Some(v) if good => row.push(v),
                Some(_) => {}
                None => {
                    good = false;
                    row = Vec::new();
                }
            }
        }
        Ok(if good { Item::Row(row) } else { Item::Bad })
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        if self.nested {
            skip_map(map)?;
            return Ok(Item::Bad);
        }
        let (mut any_key, mut seen, mut got) = (false, None, Item::Bad);
        while let Some(key) = map.next_key_seed(KeySeed(&["entry"]))? {
            any_key = true;
            match key {
                Some((_, m)) if takes(seen, m) => {
                    seen = Some(m);
                    got = map.next_value_seed(ItemSeed { nested: true })?;
                }
                _ => {
                    map.next_value::<IgnoredAny>()?;
                }
            }
        }
        Ok(if any_key { got } else { Item::EmptyObject })
    }
}

/// One value of an entry's list: `None` for a list or an object, or a string too long.
struct ValueSeed;

impl<'de> DeserializeSeed<'de> for ValueSeed {
    type Value = Option<String>;
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        d.deserialize_any(self)
    }
}

impl ValueSeed {
    fn scalar<E: serde::de::Error>(self, t: Text) -> Result<Option<String>, E> {
        Ok(t.into_value())
    }
}

impl<'de> Visitor<'de> for ValueSeed {
    type Value = Option<String>;
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("an entry value")
    }
    scalar_visits!(scalar);
    fn visit_seq<A: SeqAccess<'de>>(self, seq: A) -> Result<Self::Value, A::Error> {
        skip_seq(seq).map(|()| None)
    }
    fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<Self::Value, A::Error> {
        skip_map(map).map(|()| None)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn decode(text: &str) -> Result<ListEntries, String> {
        decode_body("getEntries", 200, text).map_err(|e| e.to_string())
    }

    fn rows(e: &ListEntries) -> Vec<Vec<&str>> {
        e.rows
            .iter()
            .map(|r| r.iter().map(String::as_str).collect())
            .collect()
    }

    #[test]
    fn both_dialects_and_every_key_prefix_are_read() {
        for text in [
            r#"{"getEntriesResponse":{"return":{"columns":["value"],"entryList":[{"entry":["a"]}]}}}"#,
            r#"{"act.getEntriesResponse":{"act.return":{"act.columns":"value","act.entryList":{"act.entry":"a"}}}}"#,
            // The columns after the rows: the width is applied once both are read.
            r#"{"getEntriesResponse":{"return":{"entryList":[{"entry":"a"}],"columns":["value"]}}}"#,
        ] {
            let e = decode(text).unwrap();
            assert_eq!(e.columns, ["value"], "{text}");
            assert_eq!(rows(&e), [["a"]], "{text}");
        }
        // The key itself wins over a prefixed one, wherever it comes.
        let e =
            decode(r#"{"getEntriesResponse":{"return":{"x.columns":["p"],"columns":["value"]}}}"#)
                .unwrap();
        assert_eq!(e.columns, ["value"]);
    }

    #[test]
    fn every_empty_rendering_is_an_empty_list() {
        for text in [
            "",
            "  ",
            "null",
            "{}",
            "[]",
            r#""""#,
            r#"{"getEntriesResponse":""}"#,
            r#"{"getEntriesResponse":null}"#,
            r#"{"getEntriesResponse":{}}"#,
            r#"{"getEntriesResponse":[]}"#,
            r#"{"getEntriesResponse":{"other":1}}"#,
            r#"{"act.getEntriesResponse":{"act.return":null}}"#,
            r#"{"act.getEntriesResponse":{"act.return":" "}}"#,
            r#"{"act.getEntriesResponse":{"act.return":{}}}"#,
            r#"{"act.getEntriesResponse":{"act.return":[]}}"#,
            r#"{"getEntriesResponse":{"return":{"columns":"value","entryList":null}}}"#,
            r#"{"getEntriesResponse":{"return":{"columns":"value","entryList":{}}}}"#,
            r#"{"getEntriesResponse":{"return":{"columns":"value","entryList":" "}}}"#,
        ] {
            let e = decode(text).unwrap_or_else(|m| panic!("{text}: {m}"));
            assert!(e.rows.is_empty() && e.skipped == 0, "{text}");
        }
    }

    #[test]
    fn shapes_that_are_not_entry_lists_are_errors_naming_the_operation() {
        for (text, says) in [
            (r#"{"somethingElse":1}"#, "no getEntriesResponse"),
            ("[1]", "expected an object"),
            ("42", "expected an object"),
            (r#"{"getEntriesResponse":[1]}"#, "not an entry list"),
            (
                r#"{"getEntriesResponse":{"return":"x"}}"#,
                "not an entry list",
            ),
            (
                r#"{"getEntriesResponse":{"return":["x"]}}"#,
                "not an entry list",
            ),
            (r#"{"getEntriesResponse":{"return":{"entryList":[]}"#, "EOF"),
            ("{\"getEntriesResponse\":{}} trailing", "trailing"),
        ] {
            let m = decode(text).unwrap_err();
            assert!(m.contains("getEntries") && m.contains(says), "{text}: {m}");
        }
    }

    #[test]
    fn scalars_odd_items_and_oversized_values() {
        let big = "x".repeat(MAX_STRING_LEN + 1);
        let text = format!(
            r#"{{"getEntriesResponse":{{"return":{{"columns":["value","n"],"entryList":[
            {{"entry":[1.5,true]}},{{"entry":["{big}","a"]}},{{}},["bare","list"],"bare",null,
            {{"other":1}},{{"entry":[["nested"]]}},{{"entry":[-7,{{"x":1}}]}},{{"entry":["ok",18446744073709551615]}}]}}}}}}"#
        );
        let e = decode(&text).unwrap();
        assert_eq!(
            rows(&e),
            [
                vec!["1.5", "true"],
                vec!["bare", "list"],
                vec!["bare", ""],
                vec!["", ""],
                vec!["ok", "18446744073709551615"],
            ]
        );
        // The oversized row, `{}`, `{"other":1}`, the nested list, the object value.
        assert_eq!(e.skipped, 5);
        // One bare entry beyond the size is skipped too, not an error.
        let text = format!(r#"{{"getEntriesResponse":{{"return":{{"entryList":"{big}"}}}}}}"#);
        let e = decode(&text).unwrap();
        assert!(e.rows.is_empty() && e.skipped == 1);
    }

    #[test]
    fn columns_drop_null_sentinels_and_non_scalars() {
        let text = r#"{"getEntriesResponse":{"return":{"columns":["value",null,-9223372036854775808,["x"],7]}}}"#;
        assert_eq!(decode(text).unwrap().columns, ["value", "7"]);
        for none in [r#""""#, "null", "{}", "-2147483648"] {
            let text = format!(r#"{{"getEntriesResponse":{{"return":{{"columns":{none}}}}}}}"#);
            assert!(decode(&text).unwrap().columns.is_empty(), "{none}");
        }
    }

    #[test]
    fn invalid_json_is_repaired_once() {
        let text = r#"{"getEntriesResponse":{"return":{"columns":"value","entryList":{"entry":"C:\Users\x"}}}}"#;
        assert_eq!(rows(&decode(text).unwrap()), [[r"C:\Users\x"]]);
    }
}
