//! A strict YAML reader that keeps the line and column of every node, so that every diagnostic about a
//! register can point at the exact place in the user's file.
//!
//! Registers are plain data: anchors, aliases, tags and multiple documents are refused (which also
//! makes "billion laughs" alias bombs impossible), duplicate keys are refused, and input size, nesting
//! depth and node count are bounded. Scalars stay strings here; the register decoder gives them types.

use std::collections::HashMap;

use yaml_rust2::parser::{Event, Parser};
use yaml_rust2::scanner::{Marker, TScalarStyle};

/// Largest register accepted, in bytes.
pub const MAX_INPUT_BYTES: usize = 4 << 20;
/// Deepest nesting of sequences and mappings.
pub const MAX_DEPTH: usize = 64;
/// Most nodes in one document.
pub const MAX_NODES: usize = 1_000_000;

/// A place in the source: 1-based line and column.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Default)]
pub struct Pos {
    pub line: usize,
    pub col: usize,
}

impl From<Marker> for Pos {
    fn from(m: Marker) -> Pos {
        Pos {
            line: m.line(),
            col: m.col() + 1,
        }
    }
}

/// A YAML node and where it starts.
#[derive(Debug, Clone, PartialEq)]
pub struct Node {
    pub pos: Pos,
    pub value: Value,
}

/// What a node holds.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    /// A scalar, as written; `plain` is false for quoted and block scalars (so `"10"` stays a string).
    Scalar {
        text: String,
        plain: bool,
    },
    Seq(Vec<Node>),
    /// Key-value pairs in document order; keys are scalars and unique.
    Map(Vec<(Node, Node)>),
}

impl Node {
    /// True for a plain `null`, `~` or empty scalar.
    pub fn is_null(&self) -> bool {
        matches!(&self.value, Value::Scalar { text, plain: true } if matches!(text.as_str(), "" | "~" | "null" | "Null" | "NULL"))
    }

    /// The scalar text, if this is a scalar.
    pub fn as_str(&self) -> Option<&str> {
        match &self.value {
            Value::Scalar { text, .. } => Some(text),
            _ => None,
        }
    }

    /// A short name of the node's kind, for messages.
    pub fn kind(&self) -> &'static str {
        match &self.value {
            Value::Scalar { .. } if self.is_null() => "null",
            Value::Scalar { .. } => "a scalar",
            Value::Seq(_) => "a list",
            Value::Map(_) => "a mapping",
        }
    }
}

/// Why a document could not be read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct YamlError {
    pub pos: Pos,
    pub message: String,
}

impl std::fmt::Display for YamlError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}:{}: {}", self.pos.line, self.pos.col, self.message)
    }
}

impl std::error::Error for YamlError {}

enum Frame {
    Seq(Pos, Vec<Node>),
    /// Position, pairs so far, a key waiting for its value, and the keys seen (for duplicates).
    Map(Pos, Vec<(Node, Node)>, Option<Node>, HashMap<String, usize>),
}

/// Reads one YAML document from bytes (which must be UTF-8).
pub fn parse(bytes: &[u8]) -> Result<Node, YamlError> {
    let at = |line, col, message: String| YamlError {
        pos: Pos { line, col },
        message,
    };
    if bytes.len() > MAX_INPUT_BYTES {
        return Err(at(
            1,
            1,
            format!(
                "file is {} bytes; the limit is {MAX_INPUT_BYTES}",
                bytes.len()
            ),
        ));
    }
    let text = match std::str::from_utf8(bytes) {
        Ok(t) => t,
        Err(e) => {
            let before = &bytes[..e.valid_up_to()];
            let line = 1 + before.iter().filter(|&&b| b == b'\n').count();
            let col = 1 + before.iter().rev().take_while(|&&b| b != b'\n').count();
            return Err(at(line, col, "file is not valid UTF-8".into()));
        }
    };
    // A UTF-8 byte order mark (Windows editors write one) is not part of the document.
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    // YAML allows no C0 control characters but tab, line feed and carriage return (YAML 1.2, 5.1).
    if let Some(i) = text
        .bytes()
        .position(|b| (b < 0x20 && !matches!(b, b'\t' | b'\n' | b'\r')) || b == 0x7f)
    {
        let before = &text.as_bytes()[..i];
        let line = 1 + before.iter().filter(|&&b| b == b'\n').count();
        let col = 1 + before.iter().rev().take_while(|&&b| b != b'\n').count();
        return Err(at(
            line,
            col,
            format!(
                "control character U+{:04X} is not allowed in YAML",
                text.as_bytes()[i]
            ),
        ));
    }
    parse_str(text)
}

/// Reads one YAML document.
pub fn parse_str(text: &str) -> Result<Node, YamlError> {
    let mut parser = Parser::new_from_str(text);
    let mut stack: Vec<Frame> = Vec::new();
    let mut root: Option<Node> = None;
    let mut documents = 0;
    let mut nodes = 0usize;
    loop {
        let (event, mark) = parser.next_token().map_err(|e| YamlError {
            pos: Pos::from(*e.marker()),
            message: format!("invalid YAML: {}", e.info()),
        })?;
        let pos = Pos::from(mark);
        let refuse = |what: &str| YamlError {
            pos,
            message: format!("{what} are not supported in a register; write the value out in full"),
        };
        let node = match event {
            Event::StreamStart | Event::Nothing | Event::DocumentEnd => continue,
            Event::StreamEnd => break,
            Event::DocumentStart => {
                documents += 1;
                if documents > 1 {
                    return Err(YamlError {
                        pos,
                        message: "expected one YAML document, found more".into(),
                    });
                }
                continue;
            }
            Event::Alias(_) => return Err(refuse("aliases")),
            Event::Scalar(text, style, anchor, tag) => {
                if anchor != 0 {
                    return Err(refuse("anchors"));
                }
                if tag.is_some() {
                    return Err(refuse("tags"));
                }
                Node {
                    pos,
                    value: Value::Scalar {
                        text,
                        plain: style == TScalarStyle::Plain,
                    },
                }
            }
            Event::SequenceStart(anchor, tag) | Event::MappingStart(anchor, tag)
                if anchor != 0 || tag.is_some() =>
            {
                return Err(refuse(if anchor != 0 { "anchors" } else { "tags" }));
            }
            Event::SequenceStart(..) => {
                if stack.len() >= MAX_DEPTH {
                    return Err(YamlError {
                        pos,
                        message: format!("nesting is deeper than {MAX_DEPTH} levels"),
                    });
                }
                stack.push(Frame::Seq(pos, Vec::new()));
                continue;
            }
            Event::MappingStart(..) => {
                if stack.len() >= MAX_DEPTH {
                    return Err(YamlError {
                        pos,
                        message: format!("nesting is deeper than {MAX_DEPTH} levels"),
                    });
                }
                stack.push(Frame::Map(pos, Vec::new(), None, HashMap::new()));
                continue;
            }
            Event::SequenceEnd => match stack.pop() {
                Some(Frame::Seq(p, items)) => Node {
                    pos: p,
                    value: Value::Seq(items),
                },
                _ => {
                    return Err(YamlError {
                        pos,
                        message: "invalid YAML: unbalanced sequence".into(),
                    });
                }
            },
            Event::MappingEnd => match stack.pop() {
                Some(Frame::Map(p, pairs, None, _)) => Node {
                    // A block mapping's start event comes after its first key; point at that key.
                    pos: pairs.first().map_or(p, |(k, _)| k.pos.min(p)),
                    value: Value::Map(pairs),
                },
                _ => {
                    return Err(YamlError {
                        pos,
                        message: "invalid YAML: unbalanced mapping".into(),
                    });
                }
            },
        };
        nodes += 1;
        if nodes > MAX_NODES {
            return Err(YamlError {
                pos,
                message: format!("more than {MAX_NODES} nodes"),
            });
        }
        match stack.last_mut() {
            None => root = Some(node),
            Some(Frame::Seq(_, items)) => items.push(node),
            Some(Frame::Map(_, pairs, pending, seen)) => match pending.take() {
                None => {
                    let Some(key) = node.as_str() else {
                        return Err(YamlError {
                            pos: node.pos,
                            message: "mapping keys must be plain text".into(),
                        });
                    };
                    if let Some(first_line) = seen.get(key) {
                        return Err(YamlError {
                            pos: node.pos,
                            message: format!("duplicate key `{key}` (first at line {first_line})"),
                        });
                    }
                    seen.insert(key.to_owned(), node.pos.line);
                    *pending = Some(node);
                }
                Some(key) => pairs.push((key, node)),
            },
        }
    }
    root.ok_or(YamlError {
        pos: Pos { line: 1, col: 1 },
        message: "the file is empty; expected a register".into(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn positions_are_one_based_lines_and_columns() {
        let n = parse_str("a: 1\nb:\n  - x\n  - \"y\"\n").unwrap();
        let Value::Map(pairs) = &n.value else {
            panic!()
        };
        assert_eq!(pairs[0].0.pos, Pos { line: 1, col: 1 });
        assert_eq!(pairs[0].1.pos, Pos { line: 1, col: 4 });
        let Value::Seq(items) = &pairs[1].1.value else {
            panic!()
        };
        assert_eq!(items[0].pos, Pos { line: 3, col: 5 });
        assert_eq!(
            items[1].value,
            Value::Scalar {
                text: "y".into(),
                plain: false
            }
        );
    }

    #[test]
    fn hostile_inputs_get_clean_errors() {
        let bomb = "a: &a [\"lol\",\"lol\"]\nb: &b [*a,*a,*a,*a]\nc: [*b,*b,*b,*b]\n";
        assert!(
            parse_str(bomb)
                .unwrap_err()
                .message
                .contains("not supported")
        );
        let deep = format!("{}1{}", "[".repeat(10_000), "]".repeat(10_000));
        let e = parse_str(&deep).unwrap_err().message;
        assert!(
            e.contains("deeper than 64") || e.contains("recursion"),
            "{e}"
        );
        let deep_map = (0..200)
            .map(|i| format!("{}k:", " ".repeat(i * 2)))
            .collect::<Vec<_>>()
            .join("\n");
        assert!(parse_str(&deep_map).is_err());
        assert!(
            parse_str("a: 1\na: 2\n")
                .unwrap_err()
                .message
                .contains("duplicate key `a`")
        );
        assert!(
            parse_str("--- 1\n--- 2\n")
                .unwrap_err()
                .message
                .contains("one YAML document")
        );
        assert!(
            parse_str("a: !!binary aGk=\n")
                .unwrap_err()
                .message
                .contains("tags")
        );
        assert!(
            parse_str("? [a, b]\n: 1\n")
                .unwrap_err()
                .message
                .contains("plain text")
        );
        assert_eq!(
            parse(b"a: \xff\n").unwrap_err().pos,
            Pos { line: 1, col: 4 }
        );
        assert!(parse_str("").unwrap_err().message.contains("empty"));
        assert!(parse_str("a: [1, 2\n").is_err());
        let huge = format!("a: {}\n", "9".repeat(100_000));
        assert!(
            parse_str(&huge).is_ok(),
            "huge numbers stay text here; the decoder bounds them"
        );
    }
}
