//! Duplicate-field detection for strict field validation: serde_json keeps the last of a
//! repeated key silently, so the raw JSON is scanned once for keys repeated within one object.

use crate::codec::BodyType;

#[derive(Debug)]
enum Frame {
    Object {
        path: String,
        keys: Vec<String>,
        key: Option<String>,
    },
    Array {
        path: String,
        index: usize,
    },
}

fn child_path(parent: &str, key: &str) -> String {
    if parent.is_empty() {
        key.to_string()
    } else {
        format!("{parent}.{key}")
    }
}

/// Paths (e.g. `metadata.name`, `spec.containers[0].image`) of keys repeated in one object.
/// Malformed JSON yields whatever was found before the error; the parser reports the error.
pub fn duplicate_fields(raw: &[u8], kind: BodyType) -> Vec<String> {
    if kind != BodyType::Json {
        return Vec::new();
    }
    let mut out = Vec::new();
    let mut stack: Vec<Frame> = Vec::new();
    let mut i = 0;
    // Whether the next string in an object is a key.
    let mut expect_key = false;
    while i < raw.len() {
        match raw[i] {
            b'{' => {
                let path = current_path(&stack);
                stack.push(Frame::Object {
                    path,
                    keys: Vec::new(),
                    key: None,
                });
                expect_key = true;
                i += 1;
            }
            b'[' => {
                let path = current_path(&stack);
                stack.push(Frame::Array { path, index: 0 });
                i += 1;
            }
            b'}' | b']' => {
                stack.pop();
                expect_key = false;
                i += 1;
            }
            b',' => {
                match stack.last_mut() {
                    Some(Frame::Object { key, .. }) => {
                        *key = None;
                        expect_key = true;
                    }
                    Some(Frame::Array { index, .. }) => *index += 1,
                    None => {}
                }
                i += 1;
            }
            b':' => {
                expect_key = false;
                i += 1;
            }
            b'"' => {
                let (s, next) = read_string(raw, i + 1);
                i = next;
                if expect_key {
                    if let Some(Frame::Object { path, keys, key }) = stack.last_mut() {
                        if keys.contains(&s) {
                            out.push(child_path(path, &s));
                        } else {
                            keys.push(s.clone());
                        }
                        *key = Some(s);
                    }
                    expect_key = false;
                }
            }
            _ => i += 1,
        }
    }
    out
}

fn current_path(stack: &[Frame]) -> String {
    match stack.last() {
        None => String::new(),
        Some(Frame::Object { path, key, .. }) => child_path(path, key.as_deref().unwrap_or("")),
        Some(Frame::Array { path, index }) => format!("{path}[{index}]"),
    }
}

/// Reads a JSON string starting after its opening quote; returns it (escapes kept simple:
/// only what key names need) and the index after the closing quote.
fn read_string(raw: &[u8], mut i: usize) -> (String, usize) {
    let mut s = Vec::new();
    while i < raw.len() {
        match raw[i] {
            b'\\' => {
                if let Some(&c) = raw.get(i + 1) {
                    s.push(c);
                }
                i += 2;
            }
            b'"' => return (String::from_utf8_lossy(&s).into_owned(), i + 1),
            c => {
                s.push(c);
                i += 1;
            }
        }
    }
    (String::from_utf8_lossy(&s).into_owned(), i)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn repeated_keys_are_reported_with_paths() {
        let raw = br#"{"metadata":{"name":"a","name":"b"},"spec":{"containers":[{"image":"x"},{"image":"y","image":"z"}]}}"#;
        assert_eq!(
            duplicate_fields(raw, BodyType::Json),
            vec![
                "metadata.name".to_string(),
                "spec.containers[1].image".to_string()
            ]
        );
    }

    #[test]
    fn same_key_in_sibling_objects_is_fine() {
        let raw = br#"{"a":{"x":1},"b":{"x":{"x":2}},"c":"{\"x\":1,\"x\":2}"}"#;
        assert!(duplicate_fields(raw, BodyType::Json).is_empty());
    }

    proptest! {
        #[test]
        fn scanner_never_panics(raw in proptest::collection::vec(any::<u8>(), 0..256)) {
            let _ = duplicate_fields(&raw, BodyType::Json);
        }
    }
}
