//! Parser for the `Name[key=value, ...]` records that Copycat's `toString` methods print.
//!
//! Values may nest records and lists (`members=[ServerMember[...], ...]`), so fields are split
//! on `, ` only at bracket depth zero. A record whose brackets do not close is an error: in a
//! log that means the line was cut or the entry continues on the next line.

use std::fmt;

/// One printed record: its type name and its fields in log order, values unparsed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Record {
    pub kind: String,
    pub fields: Vec<(String, String)>,
}

/// Error of the record parser.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RecordError {
    /// The text does not start with `Name[`.
    NotARecord,
    /// The brackets never close.
    Unclosed,
}

impl fmt::Display for RecordError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RecordError::NotARecord => f.write_str("expected a record such as Name[key=value]"),
            RecordError::Unclosed => f.write_str("record brackets never close (line cut?)"),
        }
    }
}

impl Record {
    /// Parses the record at the start of `text` and returns it with the text after it.
    pub fn parse_prefix(text: &str) -> Result<(Record, &str), RecordError> {
        let open = text.find('[').ok_or(RecordError::NotARecord)?;
        let kind = &text[..open];
        if kind.is_empty()
            || !kind
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '$')
        {
            return Err(RecordError::NotARecord);
        }

        let close = matching_bracket(text, open).ok_or(RecordError::Unclosed)?;
        let body = &text[open + 1..close];
        let fields = split_top_level(body)
            .into_iter()
            .filter(|part| !part.is_empty())
            .map(|part| match part.split_once('=') {
                Some((key, value)) => (key.trim().to_string(), value.to_string()),
                None => (part.trim().to_string(), String::new()),
            })
            .collect();

        Ok((
            Record {
                kind: kind.to_string(),
                fields,
            },
            &text[close + 1..],
        ))
    }

    pub fn get(&self, key: &str) -> Option<&str> {
        self.fields
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }

    pub fn get_u64(&self, key: &str) -> Option<u64> {
        self.get(key)?.trim().parse().ok()
    }

    pub fn get_bool(&self, key: &str) -> Option<bool> {
        self.get(key)?.trim().parse().ok()
    }

    /// Parses a list value (`[a, b]`) into its top-level elements.
    pub fn get_list(&self, key: &str) -> Option<Vec<String>> {
        let value = self.get(key)?.trim();
        let inner = value.strip_prefix('[')?.strip_suffix(']')?;
        Some(
            split_top_level(inner)
                .into_iter()
                .filter(|s| !s.is_empty())
                .map(str::to_string)
                .collect(),
        )
    }

    /// Operation class of a command or query value such as
    /// `com.example.resemble.copycat.AddCommand@26c30d06`, without package and identity hash.
    pub fn operation_class(&self, key: &str) -> Option<String> {
        let value = self.get(key)?;
        let without_hash = value.split('@').next().unwrap_or(value);
        Some(
            without_hash
                .rsplit('.')
                .next()
                .unwrap_or(without_hash)
                .to_string(),
        )
    }
}

/// Server address of a printed `ServerMember[..., serverAddress=/host:port, ...]`.
pub fn member_address(text: &str) -> Option<String> {
    let (record, _) = Record::parse_prefix(text.trim()).ok()?;
    record.get("serverAddress").map(str::to_string)
}

/// Index of the `]` that closes the `[` at `open`.
fn matching_bracket(text: &str, open: usize) -> Option<usize> {
    let mut depth = 0usize;
    for (i, c) in text.char_indices().skip_while(|(i, _)| *i < open) {
        match c {
            '[' => depth += 1,
            ']' => {
                depth -= 1;
                if depth == 0 {
                    return Some(i);
                }
            }
            _ => {}
        }
    }
    None
}

/// Splits on `, ` at bracket depth zero.
fn split_top_level(body: &str) -> Vec<&str> {
    let mut parts = Vec::new();
    let mut depth = 0i32;
    let mut start = 0;
    let bytes = body.as_bytes();
    for (i, &b) in bytes.iter().enumerate() {
        match b {
            b'[' => depth += 1,
            b']' => depth -= 1,
            b',' if depth == 0 => {
                parts.push(body[start..i].trim());
                start = i + 1;
            }
            _ => {}
        }
    }
    parts.push(body[start..].trim());
    parts
}

/// Returns true when `text` has more `[` than `]`, so the record continues on the next line.
pub fn has_unclosed_bracket(text: &str) -> bool {
    let opened = text.matches('[').count();
    let closed = text.matches(']').count();
    opened > closed
}

/// Parses a `java.time.Duration` as printed by `toString` (`PT0.762S`, `PT1M2.5S`) into
/// milliseconds.
pub fn parse_java_duration_ms(text: &str) -> Option<u64> {
    let rest = text.trim().strip_prefix("PT")?;
    let mut total_ms = 0f64;
    let mut number = String::new();
    for c in rest.chars() {
        match c {
            '0'..='9' | '.' | '-' => number.push(c),
            'H' | 'M' | 'S' => {
                let value: f64 = number.parse().ok()?;
                number.clear();
                total_ms += value
                    * match c {
                        'H' => 3_600_000.0,
                        'M' => 60_000.0,
                        _ => 1_000.0,
                    };
            }
            _ => return None,
        }
    }
    if !number.is_empty() || total_ms < 0.0 {
        return None;
    }
    Some(total_ms.round() as u64)
}
