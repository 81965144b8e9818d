//! The shape of the generated field table ([`super::table`]): what the decoder knows about each
//! message and field. Entry points: [`message`], [`kind`].

use super::table;

/// A message: its fields sorted by tag, or a special JSON form.
#[derive(Debug)]
pub(crate) struct Message {
    /// Package and name, e.g. `api.apps.v1.Deployment` (for error messages).
    pub name: &'static str,
    pub special: Special,
    pub fields: &'static [Field],
}

impl Message {
    /// The field with a tag, by binary search (the generator sorts them).
    pub fn field(&self, tag: u32) -> Option<&'static Field> {
        self.fields
            .binary_search_by_key(&tag, |f| f.tag)
            .ok()
            .and_then(|i| self.fields.get(i))
    }
}

/// Messages whose JSON form is not an object with a property per field. The generator checks
/// each one's wire layout (tags and types) against k8s-pb; see [`super::special`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Special {
    /// An object with a property per field.
    Plain,
    /// intstr.IntOrString {type=1, intVal=2, strVal=3}: a number or a string.
    IntOrString,
    /// resource.Quantity {string=1}: a string.
    Quantity,
    /// meta/v1 Time {seconds=1, nanos=2}: RFC 3339 to the second, null when zero.
    Time,
    /// meta/v1 MicroTime: RFC 3339 with microseconds, null when zero.
    MicroTime,
    /// meta/v1 Duration {duration=1 (ns)}: Go's duration string ("1h0m0s"). No GA kind
    /// reaches it today; the generator emits it when one does.
    #[allow(dead_code)]
    Duration,
    /// {raw=1}: embedded JSON (RawExtension, FieldsV1, apiextensions JSON).
    RawJson,
    /// {items=1}: a Go named string slice (ExtraValue), a JSON array.
    StringList,
    /// JSONSchemaPropsOrArray {schema=1, jSONSchemas=2}.
    SchemaOrArray,
    /// JSONSchemaPropsOrBool {allows=1, schema=2}.
    SchemaOrBool,
    /// JSONSchemaPropsOrStringArray {schema=1, property=2}.
    SchemaOrStringArray,
}

#[derive(Debug)]
pub(crate) struct Field {
    pub tag: u32,
    /// The JSON property name ("" for an inline field).
    pub json: &'static str,
    pub ty: Type,
    pub label: Label,
    /// Required in the OpenAPI schema (Go: no `omitempty`): written even when empty.
    pub required: bool,
}

/// What each value of a field is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Type {
    Str,
    /// Base64 in JSON.
    Bytes,
    Bool,
    I32,
    I64,
    F64,
    /// A message, by index into the table.
    Msg(u16),
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Label {
    /// At most one value; a repeated occurrence overrides (scalars) or merges (messages).
    Optional,
    Repeated,
    /// `map<string, V>`: entries {key=1, value=2}, a JSON object.
    Map,
    /// A Go embedded struct (`json:",inline"`): a message whose properties belong to the
    /// enclosing object.
    Inline,
}

/// The message at an index of the table.
pub(crate) fn message(index: u16) -> Option<&'static Message> {
    table::MESSAGES.get(usize::from(index))
}

/// The message index of a kind by the envelope's apiVersion and kind.
pub(crate) fn kind(api_version: &str, kind: &str) -> Option<u16> {
    table::KINDS
        .binary_search_by(|(v, k, _)| (*v, *k).cmp(&(api_version, kind)))
        .ok()
        .and_then(|i| table::KINDS.get(i))
        .map(|(_, _, index)| *index)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_table_reference_is_in_range_and_fields_are_sorted() {
        for m in table::MESSAGES {
            assert!(
                m.fields.windows(2).all(|w| w[0].tag < w[1].tag),
                "{}",
                m.name
            );
            for f in m.fields {
                if let Type::Msg(i) = f.ty {
                    assert!(
                        message(i).is_some(),
                        "{}.{} points past the table",
                        m.name,
                        f.json
                    );
                }
            }
        }
        assert!(table::KINDS
            .windows(2)
            .all(|w| (w[0].0, w[0].1) < (w[1].0, w[1].1)));
    }

    #[test]
    fn kinds_resolve_to_their_messages() {
        let name = |v, k| kind(v, k).and_then(message).map(|m| m.name);
        assert_eq!(
            name("apps/v1", "Deployment"),
            Some("api.apps.v1.Deployment")
        );
        assert_eq!(name("v1", "ConfigMap"), Some("api.core.v1.ConfigMap"));
        assert_eq!(
            name("policy/v1", "Eviction"),
            Some("api.policy.v1.Eviction")
        );
        assert_eq!(
            name("authentication.k8s.io/v1", "TokenRequest"),
            Some("api.authentication.v1.TokenRequest")
        );
        assert_eq!(name("apps/v1beta1", "Deployment"), None);
    }
}
