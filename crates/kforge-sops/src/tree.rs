//! The format-neutral document tree sops works on: ordered mappings, sequences and scalars
//! typed the way Go sees them after decoding (string, int, float64, bool, time.Time, nil),
//! plus comments where the format keeps them (dotenv). Every node remembers its source line
//! for error messages. Trees hold plaintext secrets, so they zeroize their strings on drop.

use std::borrow::Cow;

use kforge_yaml::{EmitNode, Shape};
use zeroize::Zeroize;

use crate::go_text;

/// A scalar or collection with the line it came from (0 when unknown).
pub(crate) struct Node {
    pub value: Value,
    pub line: usize,
}

pub(crate) enum Value {
    Null,
    Bool(bool),
    Int(i64),
    Float(f64),
    Str(String),
    /// A timestamp, kept as Go's `MarshalText` (RFC 3339 with nanoseconds) text.
    Time(String),
    Seq(Vec<Node>),
    Map(Vec<Item>),
}

/// One entry of a mapping.
pub(crate) enum Item {
    Pair {
        key: String,
        node: Node,
    },
    /// A comment line (without its `#`); only dotenv keeps them.
    Comment {
        text: String,
        line: usize,
    },
}

/// The documents of one file (several for multi-document YAML).
pub(crate) struct Documents(pub Vec<Vec<Item>>);

impl Node {
    pub fn new(value: Value, line: usize) -> Node {
        Node { value, line }
    }

    /// The sops type tag of a scalar (`type:` in `ENC[...]`).
    pub fn type_tag(&self) -> Option<&'static str> {
        Some(match self.value {
            Value::Str(_) => "str",
            Value::Int(_) => "int",
            Value::Float(_) => "float",
            Value::Bool(_) => "bool",
            Value::Time(_) => "time",
            Value::Null | Value::Seq(_) | Value::Map(_) => return None,
        })
    }

    pub fn kind(&self) -> &'static str {
        self.value.kind()
    }
}

impl Value {
    /// The kind of value, for messages: "a string", "a mapping", …
    pub fn kind(&self) -> &'static str {
        match self {
            Value::Null => "null",
            Value::Bool(_) => "a boolean",
            Value::Int(_) => "an integer",
            Value::Float(_) => "a number",
            Value::Str(_) => "a string",
            Value::Time(_) => "a timestamp",
            Value::Seq(_) => "a list",
            Value::Map(_) => "a mapping",
        }
    }
}

impl Node {
    /// A deep copy (for metadata, which is written into every document).
    pub fn clone_tree(&self) -> Node {
        let value = match &self.value {
            Value::Null => Value::Null,
            Value::Bool(b) => Value::Bool(*b),
            Value::Int(i) => Value::Int(*i),
            Value::Float(f) => Value::Float(*f),
            Value::Str(s) => Value::Str(s.clone()),
            Value::Time(t) => Value::Time(t.clone()),
            Value::Seq(items) => Value::Seq(items.iter().map(Node::clone_tree).collect()),
            Value::Map(items) => Value::Map(
                items
                    .iter()
                    .map(|it| match it {
                        Item::Pair { key, node } => Item::Pair {
                            key: key.clone(),
                            node: node.clone_tree(),
                        },
                        Item::Comment { text, line } => Item::Comment {
                            text: text.clone(),
                            line: *line,
                        },
                    })
                    .collect(),
            ),
        };
        Node::new(value, self.line)
    }
}

impl Value {
    /// sops' `ToBytes`: the plaintext bytes of a scalar, as encrypted and as hashed into the
    /// MAC. `None` for null and collections.
    pub fn plaintext(&self) -> Option<Cow<'_, str>> {
        Some(match self {
            Value::Str(s) | Value::Time(s) => Cow::Borrowed(s.as_str()),
            Value::Int(i) => Cow::Owned(i.to_string()),
            Value::Float(f) => Cow::Owned(go_text::float_plain(*f)),
            Value::Bool(b) => Cow::Borrowed(if *b { "True" } else { "False" }),
            Value::Null | Value::Seq(_) | Value::Map(_) => return None,
        })
    }
}

/// Returns the mapping entry under `key`.
pub(crate) fn get<'a>(items: &'a [Item], key: &str) -> Option<&'a Node> {
    items.iter().find_map(|i| match i {
        Item::Pair { key: k, node } if k == key => Some(node),
        _ => None,
    })
}

impl EmitNode for Node {
    fn shape(&self) -> Shape<'_, Self> {
        match &self.value {
            Value::Map(items) => Shape::Map(
                items
                    .iter()
                    .filter_map(|i| match i {
                        Item::Pair { key, node } => Some((key.as_str(), node)),
                        Item::Comment { .. } => None,
                    })
                    .collect(),
            ),
            Value::Seq(items) => Shape::Seq(items),
            Value::Str(s) => Shape::Str(s),
            Value::Time(t) => Shape::Plain(Cow::Borrowed(t)),
            Value::Null => Shape::Plain(Cow::Borrowed("null")),
            Value::Bool(b) => Shape::Plain(Cow::Borrowed(if *b { "true" } else { "false" })),
            Value::Int(i) => Shape::Plain(Cow::Owned(i.to_string())),
            Value::Float(f) => Shape::Plain(Cow::Owned(go_text::float_yaml(*f))),
        }
    }
}

impl Zeroize for Value {
    fn zeroize(&mut self) {
        match self {
            Value::Str(s) | Value::Time(s) => s.zeroize(),
            Value::Int(i) => i.zeroize(),
            Value::Float(f) => f.zeroize(),
            Value::Bool(b) => b.zeroize(),
            Value::Seq(items) => items.iter_mut().for_each(|n| n.value.zeroize()),
            Value::Map(items) => items.iter_mut().for_each(Item::zeroize),
            Value::Null => {}
        }
    }
}

impl Zeroize for Item {
    fn zeroize(&mut self) {
        match self {
            Item::Pair { node, .. } => node.value.zeroize(),
            Item::Comment { text, .. } => text.zeroize(),
        }
    }
}

impl Drop for Documents {
    fn drop(&mut self) {
        for doc in &mut self.0 {
            doc.iter_mut().for_each(Item::zeroize);
        }
    }
}
