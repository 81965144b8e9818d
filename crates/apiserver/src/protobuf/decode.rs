//! Table-driven decoding of one message's bytes into its JSON value. Entry point:
//! [`Decoder::message`].
//!
//! What is written, field by field, mirrors what Go's JSON encoding of the same object writes:
//! - a field absent from the wire is absent from the JSON;
//! - a number or boolean on the wire is written even when zero: Go writes pointer fields
//!   (`replicas: 0`, `automountServiceAccountToken: false`) only when set, so dropping a zero
//!   could change meaning; non-pointer zeros mean "unset" to the API either way;
//! - an empty string (or empty bytes) is dropped unless the property is required: Go writes
//!   every non-pointer string, so kubectl's bodies carry `protocol: ""`, `dnsPolicy: ""` and
//!   the like, which its JSON would have omitted and defaulting expects absent;
//! - messages are written even when empty (`strategy: {}`, `resources: {}`), as Go does for
//!   struct fields; the special forms (Time, IntOrString, ...) are in [`super::special`].

use base64::Engine as _;
use serde_json::{Map, Number, Value};

use super::schema::{self, Field, Label, Message, Special, Type};
use super::wire::{Raw, Reader};
use super::{special, Error};

/// The deepest nesting of messages decoded (CRD schemas nest, hostile input nests more).
pub(crate) const MAX_DEPTH: usize = 100;

/// One segment of the JSON path reported in errors.
#[derive(Debug)]
enum Segment {
    Field(&'static str),
    Index(usize),
    Key(String),
}

/// Decodes messages, tracking the JSON path and nesting depth for errors and limits.
#[derive(Default)]
pub(crate) struct Decoder {
    path: Vec<Segment>,
    depth: usize,
}

impl Decoder {
    /// The JSON value of the message at `index` encoded in `bytes`.
    pub fn message(&mut self, index: u16, bytes: &[u8]) -> Result<Value, Error> {
        let msg = self.lookup(index)?;
        self.enter()?;
        let value = match msg.special {
            Special::Plain => {
                let mut out = Map::new();
                self.fields_into(msg, bytes, &mut out)
                    .map(|()| Value::Object(out))
            }
            s => special::decode(self, msg, s, bytes),
        };
        self.depth -= 1;
        value
    }

    /// The current JSON path, e.g. `spec.template.spec.containers[0].ports[1]`.
    pub fn path(&self) -> String {
        let mut out = String::new();
        for seg in &self.path {
            match seg {
                Segment::Field(name) => {
                    if !out.is_empty() {
                        out.push('.');
                    }
                    out.push_str(name);
                }
                Segment::Index(i) => out.push_str(&format!("[{i}]")),
                Segment::Key(k) => out.push_str(&format!("[{k:?}]")),
            }
        }
        if out.is_empty() {
            out.push_str("<root>");
        }
        out
    }

    /// An error at the current path.
    pub fn invalid(&self, what: impl Into<String>) -> Error {
        Error::Invalid {
            path: self.path(),
            what: what.into(),
        }
    }

    fn lookup(&self, index: u16) -> Result<&'static Message, Error> {
        schema::message(index)
            .ok_or_else(|| self.invalid(format!("the field table has no message {index}")))
    }

    fn enter(&mut self) -> Result<(), Error> {
        if self.depth >= MAX_DEPTH {
            return Err(self.invalid(format!("messages nested deeper than {MAX_DEPTH}")));
        }
        self.depth += 1;
        Ok(())
    }

    /// Decodes a plain message's fields into `out` (a fresh object, the object of an earlier
    /// occurrence being merged into, or the enclosing object for inline fields).
    fn fields_into(
        &mut self,
        msg: &'static Message,
        bytes: &[u8],
        out: &mut Map<String, Value>,
    ) -> Result<(), Error> {
        let mut reader = Reader::new(bytes);
        while let Some((tag, raw)) = reader.field().map_err(|e| self.invalid(e.to_string()))? {
            let field = msg.field(tag).ok_or_else(|| Error::UnknownField {
                path: self.path(),
                message: msg.name,
                tag,
            })?;
            let named = field.label != Label::Inline;
            if named {
                self.path.push(Segment::Field(field.json));
            }
            let result = self.field(msg, field, raw, out);
            if named {
                self.path.pop();
            }
            result?;
        }
        Ok(())
    }

    fn field(
        &mut self,
        msg: &'static Message,
        f: &'static Field,
        raw: Raw<'_>,
        out: &mut Map<String, Value>,
    ) -> Result<(), Error> {
        match (f.label, f.ty) {
            (Label::Optional, Type::Msg(index)) => {
                let bytes = self.len(msg, f, raw)?;
                let target = self.lookup(index)?;
                // A message field seen twice merges, as protobuf specifies.
                if let (Special::Plain, Some(Value::Object(existing))) =
                    (target.special, out.get_mut(f.json))
                {
                    self.enter()?;
                    let result = self.fields_into(target, bytes, existing);
                    self.depth -= 1;
                    return result;
                }
                let value = self.message(index, bytes)?;
                out.insert(f.json.to_string(), value);
            }
            (Label::Optional, _) => {
                let value = self.scalar(msg, f, raw)?;
                if !f.required && value.as_str() == Some("") {
                    out.remove(f.json);
                } else {
                    out.insert(f.json.to_string(), value);
                }
            }
            (Label::Inline, Type::Msg(index)) => {
                let bytes = self.len(msg, f, raw)?;
                let target = self.lookup(index)?;
                if target.special != Special::Plain {
                    return Err(self.invalid(format!("{} cannot be inlined", target.name)));
                }
                self.enter()?;
                let result = self.fields_into(target, bytes, out);
                self.depth -= 1;
                result?;
            }
            (Label::Inline, _) => {
                return Err(self.invalid(format!("inline field {} is not a message", f.tag)));
            }
            (Label::Repeated, _) => {
                let mut items = match out.remove(f.json) {
                    Some(Value::Array(items)) => items,
                    _ => Vec::new(),
                };
                let result = self.repeated(msg, f, raw, &mut items);
                out.insert(f.json.to_string(), Value::Array(items));
                result?;
            }
            (Label::Map, _) => {
                let mut entries = match out.remove(f.json) {
                    Some(Value::Object(entries)) => entries,
                    _ => Map::new(),
                };
                let result = self.map_entry(msg, f, raw, &mut entries);
                out.insert(f.json.to_string(), Value::Object(entries));
                result?;
            }
        }
        Ok(())
    }

    /// One occurrence of a repeated field: one element, or a packed run of numbers.
    fn repeated(
        &mut self,
        msg: &'static Message,
        f: &'static Field,
        raw: Raw<'_>,
        items: &mut Vec<Value>,
    ) -> Result<(), Error> {
        match (f.ty, raw) {
            (Type::I32 | Type::I64 | Type::Bool, Raw::Len(bytes)) => {
                let mut r = Reader::new(bytes);
                while !r.is_empty() {
                    let v = r.varint().map_err(|e| self.invalid(e.to_string()))?;
                    items.push(self.scalar(msg, f, Raw::Varint(v))?);
                }
            }
            (Type::F64, Raw::Len(bytes)) => {
                let mut r = Reader::new(bytes);
                while !r.is_empty() {
                    let v = r.fixed64().map_err(|e| self.invalid(e.to_string()))?;
                    items.push(self.scalar(msg, f, Raw::Fixed64(v))?);
                }
            }
            (Type::Msg(index), raw) => {
                let bytes = self.len(msg, f, raw)?;
                self.path.push(Segment::Index(items.len()));
                let value = self.message(index, bytes);
                self.path.pop();
                items.push(value?);
            }
            (_, raw) => {
                self.path.push(Segment::Index(items.len()));
                let value = self.scalar(msg, f, raw);
                self.path.pop();
                items.push(value?);
            }
        }
        Ok(())
    }

    /// One map entry {key=1, value=2}; a missing value is the type's zero value.
    fn map_entry(
        &mut self,
        msg: &'static Message,
        f: &'static Field,
        raw: Raw<'_>,
        entries: &mut Map<String, Value>,
    ) -> Result<(), Error> {
        let bytes = self.len(msg, f, raw)?;
        let mut reader = Reader::new(bytes);
        let mut key = String::new();
        let mut value = None;
        while let Some((tag, raw)) = reader.field().map_err(|e| self.invalid(e.to_string()))? {
            match (tag, raw) {
                (1, Raw::Len(k)) => key = self.utf8(k)?.to_string(),
                (2, raw) => value = Some(raw),
                (tag, raw) => {
                    return Err(self.invalid(format!(
                        "map entry field {tag} ({}) is neither key (1) nor value (2)",
                        raw.wire_type().name()
                    )))
                }
            }
        }
        self.path.push(Segment::Key(key.clone()));
        let decoded = match (f.ty, value) {
            (Type::Msg(index), Some(raw)) => self
                .len(msg, f, raw)
                .and_then(|bytes| self.message(index, bytes)),
            (Type::Msg(index), None) => self.message(index, &[]),
            (_, Some(raw)) => self.scalar(msg, f, raw),
            (ty, None) => Ok(zero(ty)),
        };
        self.path.pop();
        entries.insert(key, decoded?);
        Ok(())
    }

    /// A scalar value of a field's type.
    fn scalar(&self, msg: &Message, f: &Field, raw: Raw<'_>) -> Result<Value, Error> {
        Ok(match (f.ty, raw) {
            (Type::Str, Raw::Len(b)) => Value::String(self.utf8(b)?.to_string()),
            (Type::Bytes, Raw::Len(b)) => {
                Value::String(base64::engine::general_purpose::STANDARD.encode(b))
            }
            (Type::Bool, Raw::Varint(v)) => Value::Bool(v != 0),
            // int32 travels sign-extended to 64 bits; the low 32 bits are the value.
            (Type::I32, Raw::Varint(v)) => Value::from(v as u32 as i32),
            (Type::I64, Raw::Varint(v)) => Value::from(v as i64),
            (Type::F64, Raw::Fixed64(v)) => {
                let x = f64::from_bits(v);
                Value::Number(
                    Number::from_f64(x)
                        .ok_or_else(|| self.invalid(format!("{x} is not a JSON number")))?,
                )
            }
            (_, raw) => return Err(self.mismatch(msg, f, raw)),
        })
    }

    /// The bytes of a length-delimited field.
    fn len<'a>(&self, msg: &Message, f: &Field, raw: Raw<'a>) -> Result<&'a [u8], Error> {
        match raw {
            Raw::Len(bytes) => Ok(bytes),
            raw => Err(self.mismatch(msg, f, raw)),
        }
    }

    pub fn utf8<'a>(&self, bytes: &'a [u8]) -> Result<&'a str, Error> {
        std::str::from_utf8(bytes).map_err(|e| self.invalid(format!("string is not UTF-8: {e}")))
    }

    fn mismatch(&self, msg: &Message, f: &Field, raw: Raw<'_>) -> Error {
        Error::Invalid {
            path: self.path(),
            what: format!(
                "field {} of {} is {:?} but arrived as {}",
                f.tag,
                msg.name,
                f.ty,
                raw.wire_type().name()
            ),
        }
    }
}

/// The zero value of a scalar type (a map entry without its value).
fn zero(ty: Type) -> Value {
    match ty {
        Type::Str | Type::Bytes => Value::String(String::new()),
        Type::Bool => Value::Bool(false),
        Type::I32 | Type::I64 | Type::F64 | Type::Msg(_) => Value::from(0),
    }
}
