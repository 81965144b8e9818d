//! Messages whose JSON form is not an object of their fields: IntOrString, Quantity, Time,
//! MicroTime, Duration, embedded JSON, string lists and the JSONSchemaPropsOr* unions. Entry
//! point: [`decode`]. The tags used here are the ones the generator checked against k8s-pb.

use serde_json::Value;

use super::decode::Decoder;
use super::schema::{Message, Special, Type};
use super::wire::{Raw, Reader};
use super::{format, Error, MAGIC};

/// The fields of a small message, last occurrence winning for singular reads.
struct Fields<'a> {
    all: Vec<(u32, Raw<'a>)>,
}

impl<'a> Fields<'a> {
    fn read(dec: &Decoder, bytes: &'a [u8]) -> Result<Self, Error> {
        let mut reader = Reader::new(bytes);
        let mut all = Vec::new();
        while let Some(field) = reader.field().map_err(|e| dec.invalid(e.to_string()))? {
            all.push(field);
        }
        Ok(Fields { all })
    }

    fn last(&self, tag: u32) -> Option<Raw<'a>> {
        self.all
            .iter()
            .rev()
            .find(|(t, _)| *t == tag)
            .map(|(_, r)| *r)
    }

    fn varint(&self, dec: &Decoder, tag: u32) -> Result<Option<u64>, Error> {
        match self.last(tag) {
            None => Ok(None),
            Some(Raw::Varint(v)) => Ok(Some(v)),
            Some(raw) => Err(dec.invalid(format!(
                "field {tag} should be a varint, got {}",
                raw.wire_type().name()
            ))),
        }
    }

    fn bytes(&self, dec: &Decoder, tag: u32) -> Result<Option<&'a [u8]>, Error> {
        match self.last(tag) {
            None => Ok(None),
            Some(raw) => one_len(dec, tag, raw).map(Some),
        }
    }

    /// Every length-delimited occurrence of a repeated field.
    fn all_bytes(&self, dec: &Decoder, tag: u32) -> Result<Vec<&'a [u8]>, Error> {
        self.all
            .iter()
            .filter(|(t, _)| *t == tag)
            .map(|(_, raw)| one_len(dec, tag, *raw))
            .collect()
    }

    /// Rejects tags the special form does not have, as plain messages do.
    fn only(&self, msg: &Message, dec: &Decoder, tags: &[u32]) -> Result<(), Error> {
        match self.all.iter().find(|(t, _)| !tags.contains(t)) {
            None => Ok(()),
            Some((tag, _)) => Err(Error::UnknownField {
                path: dec.path(),
                message: msg.name,
                tag: *tag,
            }),
        }
    }
}

fn one_len<'a>(dec: &Decoder, tag: u32, raw: Raw<'a>) -> Result<&'a [u8], Error> {
    match raw {
        Raw::Len(b) => Ok(b),
        raw => Err(dec.invalid(format!(
            "field {tag} should be length-delimited, got {}",
            raw.wire_type().name()
        ))),
    }
}

/// The JSON value of a special message.
pub(crate) fn decode(
    dec: &mut Decoder,
    msg: &'static Message,
    special: Special,
    bytes: &[u8],
) -> Result<Value, Error> {
    let fields = Fields::read(dec, bytes)?;
    match special {
        Special::Plain => Err(dec.invalid(format!("{} is not special", msg.name))),
        Special::IntOrString => {
            fields.only(msg, dec, &[1, 2, 3])?;
            match fields.varint(dec, 1)?.unwrap_or(0) {
                0 => Ok(Value::from(
                    fields.varint(dec, 2)?.unwrap_or(0) as u32 as i32
                )),
                1 => {
                    let s = fields.bytes(dec, 3)?.unwrap_or_default();
                    Ok(Value::String(dec.utf8(s)?.to_string()))
                }
                other => Err(dec.invalid(format!("IntOrString type {other} is neither 0 nor 1"))),
            }
        }
        Special::Quantity => {
            fields.only(msg, dec, &[1])?;
            // An empty message is the zero Quantity, which Go writes as "0".
            let s = fields.bytes(dec, 1)?.unwrap_or(b"0");
            Ok(Value::String(dec.utf8(s)?.to_string()))
        }
        Special::Time | Special::MicroTime => {
            fields.only(msg, dec, &[1, 2])?;
            // Go writes the zero time as an empty message, and its JSON as null.
            if bytes.is_empty() {
                return Ok(Value::Null);
            }
            let seconds = fields.varint(dec, 1)?.unwrap_or(0) as i64;
            let nanos = fields.varint(dec, 2)?.unwrap_or(0) as u32 as i32;
            let text = if special == Special::Time {
                format::time(seconds)
            } else {
                format::micro_time(seconds, nanos)
            };
            text.map(Value::String)
                .ok_or_else(|| dec.invalid(format!("time {seconds}s {nanos}ns is out of range")))
        }
        Special::Duration => {
            fields.only(msg, dec, &[1])?;
            let nanos = fields.varint(dec, 1)?.unwrap_or(0) as i64;
            Ok(Value::String(format::duration(nanos)))
        }
        Special::RawJson => {
            fields.only(msg, dec, &[1])?;
            match fields.bytes(dec, 1)? {
                None | Some([]) => Ok(Value::Null),
                // An embedded object in protobuf: another envelope.
                Some(raw) if raw.starts_with(MAGIC) => super::envelope(dec, raw),
                Some(raw) => serde_json::from_slice(raw)
                    .map_err(|e| dec.invalid(format!("embedded JSON is invalid: {e}"))),
            }
        }
        Special::StringList => {
            fields.only(msg, dec, &[1])?;
            let items = fields
                .all_bytes(dec, 1)?
                .into_iter()
                .map(|b| dec.utf8(b).map(|s| Value::String(s.to_string())))
                .collect::<Result<Vec<_>, _>>()?;
            Ok(Value::Array(items))
        }
        Special::SchemaOrArray => {
            fields.only(msg, dec, &[1, 2])?;
            let index = schema_index(dec, msg)?;
            let array = fields.all_bytes(dec, 2)?;
            if !array.is_empty() {
                let items = array
                    .into_iter()
                    .map(|b| dec.message(index, b))
                    .collect::<Result<Vec<_>, _>>()?;
                return Ok(Value::Array(items));
            }
            match fields.bytes(dec, 1)? {
                Some(b) => dec.message(index, b),
                None => Ok(Value::Null),
            }
        }
        Special::SchemaOrBool => {
            fields.only(msg, dec, &[1, 2])?;
            let index = schema_index(dec, msg)?;
            match fields.bytes(dec, 2)? {
                Some(b) => dec.message(index, b),
                None => Ok(Value::Bool(fields.varint(dec, 1)?.unwrap_or(0) != 0)),
            }
        }
        Special::SchemaOrStringArray => {
            fields.only(msg, dec, &[1, 2])?;
            let index = schema_index(dec, msg)?;
            let property = fields.all_bytes(dec, 2)?;
            if !property.is_empty() {
                let items = property
                    .into_iter()
                    .map(|b| dec.utf8(b).map(|s| Value::String(s.to_string())))
                    .collect::<Result<Vec<_>, _>>()?;
                return Ok(Value::Array(items));
            }
            match fields.bytes(dec, 1)? {
                Some(b) => dec.message(index, b),
                None => Ok(Value::Null),
            }
        }
    }
}

/// The JSONSchemaProps message a JSONSchemaPropsOr* refers to (its field 1 or 2).
fn schema_index(dec: &Decoder, msg: &Message) -> Result<u16, Error> {
    msg.fields
        .iter()
        .find_map(|f| match f.ty {
            Type::Msg(i) => Some(i),
            _ => None,
        })
        .ok_or_else(|| dec.invalid(format!("{} names no schema message", msg.name)))
}
