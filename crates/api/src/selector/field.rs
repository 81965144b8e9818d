//! Field selectors (`fieldSelector=`): `field=value` and `field!=value` requirements with
//! upstream's escapes. Which fields a kind supports is the kind's strategy's business.

/// One field requirement: `field=value` or `field!=value`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FieldRequirement {
    pub field: String,
    pub value: String,
    pub negate: bool,
}

/// A parsed field selector; all requirements must hold.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct FieldSelector(pub Vec<FieldRequirement>);

impl FieldSelector {
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Matches using `get` to read a field's value (None: unknown field, which never matches).
    pub fn matches(&self, get: impl Fn(&str) -> Option<String>) -> bool {
        self.0.iter().all(|r| {
            let v = get(&r.field).unwrap_or_default();
            (v == r.value) != r.negate
        })
    }

    /// The value required for `field` by an `=` requirement, if any (lets a get-by-name shortcut
    /// replace a scan when the selector is `metadata.name=x`).
    pub fn exact(&self, field: &str) -> Option<&str> {
        self.0
            .iter()
            .find(|r| r.field == field && !r.negate)
            .map(|r| r.value.as_str())
    }
}

/// Splits on an unescaped separator, keeping escapes for the next stage.
fn split_unescaped(s: &str, sep: char) -> Vec<String> {
    let mut out = Vec::new();
    let mut cur = String::new();
    let mut escaped = false;
    for c in s.chars() {
        if escaped {
            cur.push('\\');
            cur.push(c);
            escaped = false;
        } else if c == '\\' {
            escaped = true;
        } else if c == sep {
            out.push(std::mem::take(&mut cur));
        } else {
            cur.push(c);
        }
    }
    if escaped {
        cur.push('\\');
    }
    out.push(cur);
    out
}

fn unescape(s: &str) -> Result<String, String> {
    let mut out = String::new();
    let mut chars = s.chars();
    while let Some(c) = chars.next() {
        if c == '\\' {
            match chars.next() {
                Some(e @ ('\\' | ',' | '=' | '!')) => out.push(e),
                Some(other) => {
                    return Err(format!(
                        "invalid field selector: invalid escape sequence: \\{other}"
                    ))
                }
                None => {
                    return Err("invalid field selector: invalid trailing escape sequence".into())
                }
            }
        } else {
            out.push(c);
        }
    }
    Ok(out)
}

impl FieldSelector {
    /// Parses a field selector such as `metadata.name=x,status.phase!=Running`.
    pub fn parse(s: &str) -> Result<FieldSelector, String> {
        parse_field_selector(s)
    }
}

fn parse_field_selector(s: &str) -> Result<FieldSelector, String> {
    let mut reqs = Vec::new();
    if s.trim().is_empty() {
        return Ok(FieldSelector(reqs));
    }
    for part in split_unescaped(s, ',') {
        if part.is_empty() {
            continue;
        }
        // Find the first unescaped operator.
        let bytes: Vec<char> = part.chars().collect();
        let mut idx = None;
        let mut i = 0;
        while i < bytes.len() {
            if bytes[i] == '\\' {
                i += 2;
                continue;
            }
            if bytes[i] == '!' && bytes.get(i + 1) == Some(&'=') {
                idx = Some((i, 2, true));
                break;
            }
            if bytes[i] == '=' {
                let len = if bytes.get(i + 1) == Some(&'=') { 2 } else { 1 };
                idx = Some((i, len, false));
                break;
            }
            i += 1;
        }
        let Some((pos, len, negate)) = idx else {
            return Err(format!(
                "invalid selector: '{part}'; can't understand '{part}'"
            ));
        };
        let field: String = bytes[..pos].iter().collect();
        let value: String = bytes[pos + len..].iter().collect();
        reqs.push(FieldRequirement {
            field: unescape(field.trim())?,
            value: unescape(&value)?,
            negate,
        });
    }
    Ok(FieldSelector(reqs))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn field_selectors_parse_with_escapes() {
        let s = FieldSelector::parse("metadata.name=a\\,b,status.phase!=Running").expect("parses");
        assert_eq!(s.0[0].value, "a,b");
        assert!(s.0[1].negate);
        assert_eq!(s.exact("metadata.name"), Some("a,b"));
        assert!(FieldSelector::parse("nooperator").is_err());
    }

    #[test]
    fn field_selectors_match_on_values() {
        let s = FieldSelector::parse("spec.nodeName=n1,status.phase!=Failed").expect("parses");
        assert!(s.matches(|f| match f {
            "spec.nodeName" => Some("n1".into()),
            "status.phase" => Some("Running".into()),
            _ => None,
        }));
        assert!(!s.matches(|_| None));
    }

    proptest! {
        #[test]
        fn field_selector_parser_never_panics(s in ".{0,64}") {
            let _ = FieldSelector::parse(&s);
        }
    }
}
