//! Label and field selectors from query strings: parsing (with upstream's grammar, including
//! set-based label requirements) and matching. Parsers never panic on any input.

use std::collections::BTreeMap;

use capstan_api::validation::{label_value, qualified_name};

/// One label requirement.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum LabelRequirement {
    Equals(String, String),
    NotEquals(String, String),
    In(String, Vec<String>),
    NotIn(String, Vec<String>),
    Exists(String),
    DoesNotExist(String),
    GreaterThan(String, i64),
    LessThan(String, i64),
}

/// A parsed label selector: all requirements must hold. Empty selects everything.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct LabelSelector(pub Vec<LabelRequirement>);

impl LabelSelector {
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    pub fn matches(&self, labels: &BTreeMap<&str, &str>) -> bool {
        self.0.iter().all(|r| match r {
            LabelRequirement::Equals(k, v) => labels.get(k.as_str()) == Some(&v.as_str()),
            LabelRequirement::NotEquals(k, v) => labels.get(k.as_str()) != Some(&v.as_str()),
            LabelRequirement::In(k, vs) => labels
                .get(k.as_str())
                .is_some_and(|l| vs.iter().any(|v| v == l)),
            LabelRequirement::NotIn(k, vs) => labels
                .get(k.as_str())
                .is_none_or(|l| !vs.iter().any(|v| v == l)),
            LabelRequirement::Exists(k) => labels.contains_key(k.as_str()),
            LabelRequirement::DoesNotExist(k) => !labels.contains_key(k.as_str()),
            LabelRequirement::GreaterThan(k, n) => labels
                .get(k.as_str())
                .and_then(|l| l.parse::<i64>().ok())
                .is_some_and(|l| l > *n),
            LabelRequirement::LessThan(k, n) => labels
                .get(k.as_str())
                .and_then(|l| l.parse::<i64>().ok())
                .is_some_and(|l| l < *n),
        })
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
enum Token {
    Ident(String),
    Comma,
    Eq,
    DoubleEq,
    NotEq,
    Gt,
    Lt,
    Not,
    Open,
    Close,
}

fn tokenize(s: &str) -> Result<Vec<Token>, String> {
    let mut out = Vec::new();
    let chars: Vec<char> = s.chars().collect();
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        match c {
            ' ' | '\t' | '\n' | '\r' => i += 1,
            ',' => {
                out.push(Token::Comma);
                i += 1
            }
            '(' => {
                out.push(Token::Open);
                i += 1
            }
            ')' => {
                out.push(Token::Close);
                i += 1
            }
            '>' => {
                out.push(Token::Gt);
                i += 1
            }
            '<' => {
                out.push(Token::Lt);
                i += 1
            }
            '=' => {
                if chars.get(i + 1) == Some(&'=') {
                    out.push(Token::DoubleEq);
                    i += 2
                } else {
                    out.push(Token::Eq);
                    i += 1
                }
            }
            '!' => {
                if chars.get(i + 1) == Some(&'=') {
                    out.push(Token::NotEq);
                    i += 2
                } else {
                    out.push(Token::Not);
                    i += 1
                }
            }
            _ => {
                let start = i;
                while i < chars.len() && !" \t\n\r,()=!<>".contains(chars[i]) {
                    i += 1;
                }
                out.push(Token::Ident(chars[start..i].iter().collect()));
            }
        }
    }
    Ok(out)
}

fn check_key(k: &str) -> Result<(), String> {
    match qualified_name(k).first() {
        Some(e) => Err(format!("unable to parse requirement: key {k:?}: {e}")),
        None => Ok(()),
    }
}

fn check_value(k: &str, v: &str) -> Result<(), String> {
    match label_value(v).first() {
        Some(e) => Err(format!(
            "unable to parse requirement: values[0][{k}]: Invalid value: {v:?}: {e}"
        )),
        None => Ok(()),
    }
}

/// Parses a label selector such as `app=web,tier!=db,env in (a,b),!legacy`.
pub fn parse_label_selector(s: &str) -> Result<LabelSelector, String> {
    let tokens = tokenize(s)?;
    let mut reqs = Vec::new();
    let mut i = 0;
    let ident = |t: Option<&Token>| match t {
        Some(Token::Ident(s)) => Some(s.clone()),
        _ => None,
    };
    while i < tokens.len() {
        if tokens[i] == Token::Not {
            let key = ident(tokens.get(i + 1)).ok_or_else(|| {
                format!(
                    "found '{}', expected: identifier after '!'",
                    describe(tokens.get(i + 1))
                )
            })?;
            check_key(&key)?;
            reqs.push(LabelRequirement::DoesNotExist(key));
            i += 2;
        } else {
            let key = ident(tokens.get(i)).ok_or_else(|| {
                format!(
                    "found '{}', expected: !, identifier, or 'end of string'",
                    describe(tokens.get(i))
                )
            })?;
            check_key(&key)?;
            i += 1;
            match tokens.get(i) {
                None | Some(Token::Comma) => reqs.push(LabelRequirement::Exists(key)),
                Some(Token::Eq) | Some(Token::DoubleEq) | Some(Token::NotEq) => {
                    let negate = tokens[i] == Token::NotEq;
                    i += 1;
                    // An empty value is allowed: `a=` selects a label with an empty value.
                    let value = match tokens.get(i) {
                        Some(Token::Ident(v)) => {
                            i += 1;
                            v.clone()
                        }
                        None | Some(Token::Comma) => String::new(),
                        other => {
                            return Err(format!(
                                "found '{}', expected: identifier",
                                describe(other)
                            ))
                        }
                    };
                    check_value(&key, &value)?;
                    reqs.push(if negate {
                        LabelRequirement::NotEquals(key, value)
                    } else {
                        LabelRequirement::Equals(key, value)
                    });
                }
                Some(Token::Gt) | Some(Token::Lt) => {
                    let gt = tokens[i] == Token::Gt;
                    i += 1;
                    let v = ident(tokens.get(i)).ok_or_else(|| {
                        format!("found '{}', expected: identifier", describe(tokens.get(i)))
                    })?;
                    let n: i64 = v
                        .parse()
                        .map_err(|_| format!("unable to parse requirement: for 'Gt', 'Lt' operators, the value must be an integer, got {v:?}"))?;
                    i += 1;
                    reqs.push(if gt {
                        LabelRequirement::GreaterThan(key, n)
                    } else {
                        LabelRequirement::LessThan(key, n)
                    });
                }
                Some(Token::Ident(op)) if op == "in" || op == "notin" => {
                    let notin = op == "notin";
                    i += 1;
                    if tokens.get(i) != Some(&Token::Open) {
                        return Err(format!(
                            "found '{}', expected: '('",
                            describe(tokens.get(i))
                        ));
                    }
                    i += 1;
                    let mut values = Vec::new();
                    loop {
                        match tokens.get(i) {
                            Some(Token::Ident(v)) => {
                                check_value(&key, v)?;
                                values.push(v.clone());
                                i += 1;
                            }
                            Some(Token::Comma) => {
                                // `(a,,b)` and `(,a)` carry an empty value, as upstream allows.
                                if matches!(
                                    tokens.get(i - 1),
                                    Some(Token::Comma) | Some(Token::Open)
                                ) {
                                    values.push(String::new());
                                }
                                i += 1;
                            }
                            Some(Token::Close) => {
                                if matches!(tokens.get(i - 1), Some(Token::Comma)) {
                                    values.push(String::new());
                                }
                                i += 1;
                                break;
                            }
                            other => {
                                return Err(format!(
                                    "found '{}', expected: ',' or ')'",
                                    describe(other)
                                ))
                            }
                        }
                    }
                    if values.is_empty() {
                        return Err("unable to parse requirement: for 'in', 'notin' operators, values set can't be empty".into());
                    }
                    values.sort();
                    values.dedup();
                    reqs.push(if notin {
                        LabelRequirement::NotIn(key, values)
                    } else {
                        LabelRequirement::In(key, values)
                    });
                }
                other => {
                    return Err(format!(
                        "found '{}', expected: in, notin, =, ==, !=, gt, lt",
                        describe(other)
                    ))
                }
            }
        }
        match tokens.get(i) {
            None => break,
            Some(Token::Comma) => {
                i += 1;
                if i >= tokens.len() {
                    return Err("found '', expected: identifier after ','".into());
                }
            }
            other => {
                return Err(format!(
                    "found '{}', expected: ',' or 'end of string'",
                    describe(other)
                ))
            }
        }
    }
    Ok(LabelSelector(reqs))
}

fn describe(t: Option<&Token>) -> String {
    match t {
        None => String::new(),
        Some(Token::Ident(s)) => s.clone(),
        Some(Token::Comma) => ",".into(),
        Some(Token::Eq) => "=".into(),
        Some(Token::DoubleEq) => "==".into(),
        Some(Token::NotEq) => "!=".into(),
        Some(Token::Gt) => ">".into(),
        Some(Token::Lt) => "<".into(),
        Some(Token::Not) => "!".into(),
        Some(Token::Open) => "(".into(),
        Some(Token::Close) => ")".into(),
    }
}

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

/// Parses a field selector such as `metadata.name=x,status.phase!=Running`.
pub fn parse_field_selector(s: &str) -> Result<FieldSelector, String> {
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

    fn labels<'a>(pairs: &[(&'a str, &'a str)]) -> BTreeMap<&'a str, &'a str> {
        pairs.iter().copied().collect()
    }

    #[test]
    fn equality_selectors_match() {
        let s = parse_label_selector("app=web,tier!=db").expect("parses");
        assert!(s.matches(&labels(&[("app", "web")])));
        assert!(!s.matches(&labels(&[("app", "web"), ("tier", "db")])));
        assert!(!s.matches(&labels(&[("app", "api")])));
    }

    #[test]
    fn set_based_selectors_match() {
        let s = parse_label_selector("env in (prod, staging),!legacy,tier notin (db),team")
            .expect("parses");
        assert_eq!(s.0.len(), 4);
        assert!(s.matches(&labels(&[("env", "prod"), ("team", "a")])));
        assert!(!s.matches(&labels(&[("env", "dev"), ("team", "a")])));
        assert!(!s.matches(&labels(&[("env", "prod"), ("team", "a"), ("legacy", "")])));
        assert!(!s.matches(&labels(&[("env", "prod")])));
    }

    #[test]
    fn double_equals_and_gt_work() {
        let s = parse_label_selector("a==b,n>3").expect("parses");
        assert!(s.matches(&labels(&[("a", "b"), ("n", "4")])));
        assert!(!s.matches(&labels(&[("a", "b"), ("n", "3")])));
    }

    #[test]
    fn malformed_label_selectors_are_errors() {
        for bad in [
            "a in b", "a in (", "=b", "a=b,", "a b", "-a=b", "a=-b", "a in ()",
        ] {
            assert!(parse_label_selector(bad).is_err(), "{bad} should not parse");
        }
        assert!(parse_label_selector("").expect("empty").is_empty());
    }

    #[test]
    fn field_selectors_parse_with_escapes() {
        let s = parse_field_selector("metadata.name=a\\,b,status.phase!=Running").expect("parses");
        assert_eq!(s.0[0].value, "a,b");
        assert!(s.0[1].negate);
        assert_eq!(s.exact("metadata.name"), Some("a,b"));
        assert!(parse_field_selector("nooperator").is_err());
    }

    #[test]
    fn field_selectors_match_on_values() {
        let s = parse_field_selector("spec.nodeName=n1,status.phase!=Failed").expect("parses");
        assert!(s.matches(|f| match f {
            "spec.nodeName" => Some("n1".into()),
            "status.phase" => Some("Running".into()),
            _ => None,
        }));
        assert!(!s.matches(|_| None));
    }

    proptest! {
        #[test]
        fn label_selector_parser_never_panics(s in ".{0,64}") {
            let _ = parse_label_selector(&s);
        }

        #[test]
        fn field_selector_parser_never_panics(s in ".{0,64}") {
            let _ = parse_field_selector(&s);
        }

        #[test]
        fn label_selectors_roundtrip_simple_equalities(k in "[a-z]{1,10}", v in "[a-z0-9]{0,10}") {
            let s = parse_label_selector(&format!("{k}={v}")).expect("parses");
            prop_assert_eq!(s.0, vec![LabelRequirement::Equals(k, v)]);
        }
    }
}
