//! The query-string grammar of label selectors (`labelSelector=`), with upstream's checks and
//! error wording. The parser never panics on any input.

use super::{Op, Requirement};
use crate::validation::{label_value, qualified_name};

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
pub(super) fn parse_label_selector(s: &str) -> Result<Vec<Requirement>, String> {
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
            reqs.push(Requirement::new(key, Op::DoesNotExist, vec![]));
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
                None | Some(Token::Comma) => reqs.push(Requirement::new(key, Op::Exists, vec![])),
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
                    let op = if negate { Op::NotEquals } else { Op::Equals };
                    reqs.push(Requirement::new(key, op, vec![value]));
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
                    let op = if gt { Op::Gt(n) } else { Op::Lt(n) };
                    reqs.push(Requirement::new(key, op, vec![]));
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
                    let op = if notin { Op::NotIn } else { Op::In };
                    reqs.push(Requirement::new(key, op, values));
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
    Ok(reqs)
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

#[cfg(test)]
mod tests {
    use super::super::Selector;
    use super::*;
    use proptest::prelude::*;
    use std::collections::BTreeMap;

    fn labels<'a>(pairs: &[(&'a str, &'a str)]) -> BTreeMap<&'a str, &'a str> {
        pairs.iter().copied().collect()
    }

    #[test]
    fn equality_selectors_match() {
        let s = Selector::parse("app=web,tier!=db").expect("parses");
        assert!(s.matches(&labels(&[("app", "web")])));
        assert!(!s.matches(&labels(&[("app", "web"), ("tier", "db")])));
        assert!(!s.matches(&labels(&[("app", "api")])));
    }

    #[test]
    fn set_based_selectors_match() {
        let s =
            Selector::parse("env in (prod, staging),!legacy,tier notin (db),team").expect("parses");
        assert_eq!(s.requirements().len(), 4);
        assert!(s.matches(&labels(&[("env", "prod"), ("team", "a")])));
        assert!(!s.matches(&labels(&[("env", "dev"), ("team", "a")])));
        assert!(!s.matches(&labels(&[("env", "prod"), ("team", "a"), ("legacy", "")])));
        assert!(!s.matches(&labels(&[("env", "prod")])));
    }

    #[test]
    fn double_equals_and_gt_work() {
        let s = Selector::parse("a==b,n>3").expect("parses");
        assert!(s.matches(&labels(&[("a", "b"), ("n", "4")])));
        assert!(!s.matches(&labels(&[("a", "b"), ("n", "3")])));
    }

    #[test]
    fn parsed_selectors_print_back() {
        let s = Selector::parse("a=b,c!=d,e in (y,x),f notin (z),g,!h,n>3,m<2").expect("parses");
        assert_eq!(
            s.to_string(),
            "a=b,c!=d,e in (x,y),f notin (z),g,!h,n>3,m<2"
        );
    }

    #[test]
    fn malformed_label_selectors_are_errors() {
        for bad in [
            "a in b", "a in (", "=b", "a=b,", "a b", "-a=b", "a=-b", "a in ()",
        ] {
            assert!(Selector::parse(bad).is_err(), "{bad} should not parse");
        }
        assert!(Selector::parse("").expect("empty").is_empty());
    }

    proptest! {
        #[test]
        fn label_selector_parser_never_panics(s in ".{0,64}") {
            let _ = Selector::parse(&s);
        }

        #[test]
        fn label_selectors_roundtrip_simple_equalities(k in "[a-z]{1,10}", v in "[a-z0-9]{0,10}") {
            let s = Selector::parse(&format!("{k}={v}")).expect("parses");
            prop_assert_eq!(s.requirements(), &[Requirement::new(k, Op::Equals, vec![v])][..]);
        }
    }
}
