//! The lenient JSON the seed's job files are written in, read into
//! `serde_json::Value`s together with where every value and key sits in the
//! text, so that later errors can point at a line and column.
//!
//! Beyond standard JSON it accepts `#`, `//` and `/* */` comments, trailing
//! commas, numbers such as `.5`, `5.`, `+3` and `-.5`, single-quoted strings,
//! and at the top level several values separated by commas with an optional
//! trailing comma (the seed's files end in `},`).
//!
//! Paths are written the way `serde_path_to_error` displays them, so that a
//! deserialization error's path can be looked up directly: `a.b`, `a[3].b`,
//! `[1].task_configuration.mem`.

use serde_json::{Map, Number, Value};
use std::collections::HashMap;
use std::fmt;

/// Objects and arrays nested deeper than this are refused, so that hostile
/// input cannot exhaust the stack of this recursive parser.
pub const MAX_DEPTH: usize = 128;

/// A place in the text: 1-based line, and 1-based column counted in
/// characters (a tab is one column).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Position {
    pub line: usize,
    pub column: usize,
}

impl fmt::Display for Position {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.line, self.column)
    }
}

/// Where each value and each object key of a [`Document`] starts, by path.
///
/// With one top-level value its paths have no prefix (`task_configuration.cpu`,
/// and `""` for the value itself); with several, each path starts with the
/// value's index (`[1].task_configuration.cpu`, `[1]`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Positions {
    values: HashMap<String, Position>,
    keys: HashMap<String, Position>,
}

impl Positions {
    /// Where the value at `path` starts (its first character: a quote, a
    /// digit, an opening brace...).
    pub fn value(&self, path: &str) -> Option<Position> {
        self.values.get(path).copied()
    }

    /// Where the key naming the value at `path` starts (its opening quote);
    /// `None` for array elements and top-level values, which have no key.
    pub fn key(&self, path: &str) -> Option<Position> {
        self.keys.get(path).copied()
    }
}

/// A parsed text: its top-level values in order, and where everything is.
#[derive(Debug, Clone, PartialEq)]
pub struct Document {
    pub values: Vec<Value>,
    pub positions: Positions,
}

/// Text that is not lenient JSON, with the place the reader gave up.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{line}:{column}: {message}")]
pub struct SyntaxError {
    pub line: usize,
    pub column: usize,
    pub message: String,
}

/// The path of the member `key` of the object at `parent`.
pub fn child_key_path(parent: &str, key: &str) -> String {
    if parent.is_empty() {
        key.to_string()
    } else {
        format!("{parent}.{key}")
    }
}

/// The path of element `index` of the array at `parent`.
pub fn child_index_path(parent: &str, index: usize) -> String {
    format!("{parent}[{index}]")
}

/// `relative`, a path inside the value at `prefix`, as a path from the root.
pub fn join_paths(prefix: &str, relative: &str) -> String {
    if prefix.is_empty() {
        relative.to_string()
    } else if relative.is_empty() || relative.starts_with('[') {
        format!("{prefix}{relative}")
    } else {
        format!("{prefix}.{relative}")
    }
}

/// The path of the value that contains the value at `path`; `None` for the root.
///
/// A key that itself contains `.` or `[` makes this land on a path that may
/// not exist; callers walk further up until one does.
pub fn parent_path(path: &str) -> Option<&str> {
    if path.is_empty() {
        return None;
    }
    let cut = if path.ends_with(']') {
        path.rfind('[')
    } else {
        path.rfind(['.', '['])
    };
    Some(cut.map_or("", |at| &path[..at]))
}

/// Reads `text` as a comma-separated sequence of one or more lenient JSON
/// values.
pub fn parse(text: &str) -> Result<Document, SyntaxError> {
    let mut parser = Parser::new(text);
    // Editors on Windows like to start files with a byte order mark.
    if parser.peek() == Some('\u{feff}') {
        parser.offset += '\u{feff}'.len_utf8();
    }
    let mut values = Vec::new();
    loop {
        parser.skip_trivia()?;
        let start = parser.position();
        if values.is_empty() && parser.peek().is_none() {
            return Err(parser.error_here("the input is empty: expected a value"));
        }
        let path = child_index_path("", values.len());
        values.push(parser.parse_value(&path, None, 0)?);
        parser.skip_trivia()?;
        match parser.peek() {
            None => break,
            Some(',') => {
                parser.bump();
                parser.skip_trivia()?;
                if parser.peek().is_none() {
                    break;
                }
            }
            Some(found) => {
                let hint = match found {
                    '}' | ']' => format!(" (one '{found}' too many?)"),
                    _ => " (is a comma missing?)".to_string(),
                };
                return Err(parser.error_here(format!(
                    "expected ',' or the end of the input after the value that starts at {start}, found {}{hint}",
                    parser.describe_next()
                )));
            }
        }
    }
    let single = values.len() == 1;
    let rebase = |entries: Vec<(String, Position)>| -> HashMap<String, Position> {
        entries
            .into_iter()
            .map(|(path, position)| {
                let path = if single {
                    strip_single_root(&path)
                } else {
                    path
                };
                (path, position)
            })
            .collect()
    };
    let positions = Positions {
        values: rebase(parser.value_positions),
        keys: rebase(parser.key_positions),
    };
    Ok(Document { values, positions })
}

/// Every path is recorded under its top-level index while parsing, since the
/// number of top-level values is only known at the end; a lone value's paths
/// lose the `[0]` so they match what deserializing that value reports.
fn strip_single_root(path: &str) -> String {
    let rest = path.strip_prefix("[0]").unwrap_or(path);
    rest.strip_prefix('.').unwrap_or(rest).to_string()
}

struct Parser<'a> {
    text: &'a str,
    /// Byte offset of the next character; always on a character boundary.
    offset: usize,
    line: usize,
    column: usize,
    value_positions: Vec<(String, Position)>,
    key_positions: Vec<(String, Position)>,
}

impl<'a> Parser<'a> {
    fn new(text: &'a str) -> Self {
        Self {
            text,
            offset: 0,
            line: 1,
            column: 1,
            value_positions: Vec::new(),
            key_positions: Vec::new(),
        }
    }

    fn rest(&self) -> &'a str {
        self.text.get(self.offset..).unwrap_or("")
    }

    fn peek(&self) -> Option<char> {
        self.rest().chars().next()
    }

    fn peek_second(&self) -> Option<char> {
        self.rest().chars().nth(1)
    }

    fn position(&self) -> Position {
        Position {
            line: self.line,
            column: self.column,
        }
    }

    fn bump(&mut self) -> Option<char> {
        let next = self.peek()?;
        self.offset += next.len_utf8();
        match next {
            '\n' => self.new_line(),
            // A lone carriage return ends a line too (old Mac files); in
            // "\r\n" the newline that follows does it.
            '\r' if self.peek() != Some('\n') => self.new_line(),
            _ => self.column += 1,
        }
        Some(next)
    }

    fn new_line(&mut self) {
        self.line += 1;
        self.column = 1;
    }

    fn error_at(&self, at: Position, message: impl Into<String>) -> SyntaxError {
        SyntaxError {
            line: at.line,
            column: at.column,
            message: message.into(),
        }
    }

    fn error_here(&self, message: impl Into<String>) -> SyntaxError {
        self.error_at(self.position(), message)
    }

    /// The next character as a message should show it.
    fn describe_next(&self) -> String {
        match self.peek() {
            None => "the end of the input".to_string(),
            // Invisible characters are named, or the message would show nothing.
            Some(c) if c.is_control() || c.is_whitespace() || c == '\u{feff}' => {
                format!("the character U+{:04X}", u32::from(c))
            }
            Some(c) => format!("'{c}'"),
        }
    }

    /// Skips whitespace and comments.
    fn skip_trivia(&mut self) -> Result<(), SyntaxError> {
        loop {
            match (self.peek(), self.peek_second()) {
                (Some(c), _) if c.is_whitespace() => {
                    self.bump();
                }
                (Some('#'), _) | (Some('/'), Some('/')) => {
                    while self.peek().is_some_and(|c| c != '\n' && c != '\r') {
                        self.bump();
                    }
                }
                (Some('/'), Some('*')) => {
                    let start = self.position();
                    self.bump();
                    self.bump();
                    loop {
                        match (self.peek(), self.peek_second()) {
                            (None, _) => {
                                return Err(self.error_at(
                                    start,
                                    "unterminated comment: this '/*' has no closing '*/'",
                                ))
                            }
                            (Some('*'), Some('/')) => {
                                self.bump();
                                self.bump();
                                break;
                            }
                            _ => {
                                self.bump();
                            }
                        }
                    }
                }
                _ => return Ok(()),
            }
        }
    }

    /// Reads the value at `path`; `key` names it in messages when it is an
    /// object member.
    fn parse_value(
        &mut self,
        path: &str,
        key: Option<&str>,
        depth: usize,
    ) -> Result<Value, SyntaxError> {
        self.skip_trivia()?;
        let start = self.position();
        let Some(first) = self.peek() else {
            let what = match key {
                Some(key) => format!(" for the key {key:?}"),
                None => String::new(),
            };
            return Err(self.error_here(format!("unexpected end of input: expected a value{what}")));
        };
        self.value_positions.push((path.to_string(), start));
        match first {
            '{' => self.parse_object(path, depth, start),
            '[' => self.parse_array(path, depth, start),
            '"' | '\'' => self.parse_string().map(Value::String),
            '+' | '-' | '.' | '0'..='9' => self.parse_number(),
            c if c.is_alphabetic() || c == '_' => self.parse_word(),
            _ => {
                let what = match key {
                    Some(key) => format!(" for the key {key:?}"),
                    None => String::new(),
                };
                Err(self.error_here(format!(
                    "expected a value{what} (a string, number, object, array, true, false or null), found {}",
                    self.describe_next()
                )))
            }
        }
    }

    fn check_depth(&self, depth: usize, open: Position) -> Result<(), SyntaxError> {
        if depth >= MAX_DEPTH {
            Err(self.error_at(
                open,
                format!("objects and arrays are nested more than {MAX_DEPTH} deep"),
            ))
        } else {
            Ok(())
        }
    }

    fn parse_object(
        &mut self,
        path: &str,
        depth: usize,
        open: Position,
    ) -> Result<Value, SyntaxError> {
        self.check_depth(depth, open)?;
        self.bump();
        let mut members = Map::new();
        let mut key_starts: HashMap<String, Position> = HashMap::new();
        let unclosed = |parser: &Self| {
            parser.error_here(format!(
                "unexpected end of input: an object opened at {open} is not closed"
            ))
        };
        loop {
            self.skip_trivia()?;
            match self.peek() {
                None => return Err(unclosed(self)),
                Some('}') => {
                    self.bump();
                    return Ok(Value::Object(members));
                }
                Some('"' | '\'') => {}
                Some(c) if c.is_alphabetic() || c == '_' => {
                    let word = self.peek_word();
                    return Err(self.error_here(format!(
                        "expected a key or '}}', found {word}: keys must be quoted, as in \"{word}\""
                    )));
                }
                Some(_) => {
                    return Err(self.error_here(format!(
                        "expected a key or '}}', found {}",
                        self.describe_next()
                    )))
                }
            }
            let key_start = self.position();
            let key = self.parse_string()?;
            if let Some(first) = key_starts.get(&key) {
                return Err(self.error_at(
                    key_start,
                    format!("duplicate key {key:?}: it is already set at {first}"),
                ));
            }
            key_starts.insert(key.clone(), key_start);
            let member_path = child_key_path(path, &key);
            self.key_positions.push((member_path.clone(), key_start));

            self.skip_trivia()?;
            if self.peek() == Some(':') {
                self.bump();
            } else {
                return Err(self.error_here(format!(
                    "expected ':' after the key {key:?}, found {}",
                    self.describe_next()
                )));
            }
            let value = self.parse_value(&member_path, Some(&key), depth + 1)?;
            members.insert(key.clone(), value);

            self.skip_trivia()?;
            match self.peek() {
                Some(',') => {
                    self.bump();
                }
                Some('}') => {}
                None => return Err(unclosed(self)),
                Some(found) => {
                    let hint = if found == '"' || found == '\'' {
                        " (is a comma missing?)"
                    } else {
                        ""
                    };
                    return Err(self.error_here(format!(
                        "expected ',' or '}}' after the value of {key:?}, found {}{hint}",
                        self.describe_next()
                    )));
                }
            }
        }
    }

    fn parse_array(
        &mut self,
        path: &str,
        depth: usize,
        open: Position,
    ) -> Result<Value, SyntaxError> {
        self.check_depth(depth, open)?;
        self.bump();
        let mut elements = Vec::new();
        let unclosed = |parser: &Self| {
            parser.error_here(format!(
                "unexpected end of input: an array opened at {open} is not closed"
            ))
        };
        loop {
            self.skip_trivia()?;
            match self.peek() {
                None => return Err(unclosed(self)),
                Some(']') => {
                    self.bump();
                    return Ok(Value::Array(elements));
                }
                Some(',') => {
                    return Err(self.error_here(format!(
                        "expected a value or ']' in the array opened at {open}, found ','"
                    )))
                }
                Some(_) => {}
            }
            let element_path = child_index_path(path, elements.len());
            elements.push(self.parse_value(&element_path, None, depth + 1)?);

            self.skip_trivia()?;
            match self.peek() {
                Some(',') => {
                    self.bump();
                }
                Some(']') => {}
                None => return Err(unclosed(self)),
                Some(_) => {
                    return Err(self.error_here(format!(
                    "expected ',' or ']' after an element of the array opened at {open}, found {}",
                    self.describe_next()
                )))
                }
            }
        }
    }

    /// Reads a string in double or single quotes; the next character must be
    /// the opening quote.
    fn parse_string(&mut self) -> Result<String, SyntaxError> {
        let start = self.position();
        let Some(quote) = self.bump() else {
            return Err(self.error_here("unexpected end of input: expected a string"));
        };
        let mut text = String::new();
        loop {
            match self.peek() {
                None => {
                    return Err(self.error_at(
                        start,
                        format!(
                            "unterminated string: no closing {quote} before the end of the input"
                        ),
                    ))
                }
                // Strings end on their line: one missing quote should not
                // swallow the rest of the file and be reported far away.
                Some('\n' | '\r') => {
                    return Err(self.error_at(
                        start,
                        format!("unterminated string: no closing {quote} on this line"),
                    ))
                }
                Some(c) if c == quote => {
                    self.bump();
                    return Ok(text);
                }
                Some('\\') => {
                    let escape_start = self.position();
                    self.bump();
                    text.push(self.parse_escape(escape_start)?);
                }
                Some(c) if c.is_control() && c != '\t' => {
                    return Err(self.error_here(format!(
                        "the control character U+{:04X} is not allowed in a string; write it as an escape such as \\u{:04x}",
                        u32::from(c),
                        u32::from(c)
                    )))
                }
                Some(c) => {
                    self.bump();
                    text.push(c);
                }
            }
        }
    }

    /// Reads what follows a backslash in a string.
    fn parse_escape(&mut self, escape_start: Position) -> Result<char, SyntaxError> {
        let escaped = match self.bump() {
            Some('"') => '"',
            Some('\'') => '\'',
            Some('\\') => '\\',
            Some('/') => '/',
            Some('b') => '\u{8}',
            Some('f') => '\u{c}',
            Some('n') => '\n',
            Some('r') => '\r',
            Some('t') => '\t',
            Some('u') => return self.parse_unicode_escape(escape_start),
            Some(other) => {
                return Err(self.error_at(
                    escape_start,
                    format!(
                        "unknown escape '\\{}' in a string (write '\\\\' for a backslash)",
                        other.escape_debug()
                    ),
                ))
            }
            None => {
                return Err(self.error_at(
                    escape_start,
                    "unterminated string: the input ends after a backslash",
                ))
            }
        };
        Ok(escaped)
    }

    fn parse_unicode_escape(&mut self, escape_start: Position) -> Result<char, SyntaxError> {
        let first = self.read_hex4(escape_start)?;
        let code = if (0xD800..0xDC00).contains(&first) {
            // A character outside the basic plane comes as a surrogate pair.
            if self.peek() != Some('\\') || self.peek_second() != Some('u') {
                return Err(self.error_at(
                    escape_start,
                    "\\u escape of a lone high surrogate: a low surrogate \\uDC00-\\uDFFF must follow",
                ));
            }
            self.bump();
            self.bump();
            let second = self.read_hex4(escape_start)?;
            if !(0xDC00..0xE000).contains(&second) {
                return Err(self.error_at(
                    escape_start,
                    "\\u escape of a high surrogate not followed by a low surrogate",
                ));
            }
            0x10000 + ((first - 0xD800) << 10) + (second - 0xDC00)
        } else {
            first
        };
        char::from_u32(code).ok_or_else(|| {
            self.error_at(
                escape_start,
                format!("\\u escape U+{code:04X} is not a character (a lone surrogate)"),
            )
        })
    }

    fn read_hex4(&mut self, escape_start: Position) -> Result<u32, SyntaxError> {
        let mut code = 0;
        for _ in 0..4 {
            let digit = self.peek().and_then(|c| c.to_digit(16)).ok_or_else(|| {
                self.error_at(
                    escape_start,
                    "a \\u escape needs exactly four hexadecimal digits, as in \\u00e9",
                )
            })?;
            self.bump();
            code = code * 16 + digit;
        }
        Ok(code)
    }

    /// The run of letters, digits and underscores at the current position.
    fn peek_word(&self) -> &'a str {
        let rest = self.rest();
        let end = rest
            .find(|c: char| !(c.is_alphanumeric() || c == '_'))
            .unwrap_or(rest.len());
        &rest[..end]
    }

    fn parse_word(&mut self) -> Result<Value, SyntaxError> {
        let word = self.peek_word();
        let value = match word {
            "true" => Value::Bool(true),
            "false" => Value::Bool(false),
            "null" => Value::Null,
            _ => {
                let lower = word.to_lowercase();
                let message = if ["true", "false", "null"].contains(&lower.as_str()) {
                    format!("unknown word {word}: write {lower} in lower case")
                } else {
                    format!(
                        "unknown word {word}: strings must be quoted, and the only bare words are true, false and null"
                    )
                };
                return Err(self.error_here(message));
            }
        };
        for _ in word.chars() {
            self.bump();
        }
        Ok(value)
    }

    fn parse_number(&mut self) -> Result<Value, SyntaxError> {
        let start = self.position();
        // Take the whole token, including what cannot belong to a number, so
        // that `12abc` is reported as one bad number rather than as `12`
        // followed by something unexpected.
        let rest = self.rest();
        let end = rest
            .find(|c: char| !(c.is_alphanumeric() || matches!(c, '+' | '-' | '.' | '_')))
            .unwrap_or(rest.len());
        let token = &rest[..end];
        let value = number_value(token).map_err(|message| self.error_at(start, message))?;
        for _ in token.chars() {
            self.bump();
        }
        Ok(value)
    }
}

/// Parses a lenient number: an optional sign, digits with an optional
/// decimal point (digits on either side may be missing, not both), and an
/// optional exponent.
fn number_value(token: &str) -> Result<Value, String> {
    let not_a_number = || format!("{token:?} is not a number");
    let (negative, unsigned) = match token.as_bytes().first() {
        Some(b'-') => (true, &token[1..]),
        Some(b'+') => (false, &token[1..]),
        _ => (false, token),
    };
    let (mantissa, exponent) = match unsigned.find(['e', 'E']) {
        Some(at) => (&unsigned[..at], Some(&unsigned[at + 1..])),
        None => (unsigned, None),
    };
    let (whole, fraction) = match mantissa.split_once('.') {
        Some((whole, fraction)) => (whole, Some(fraction)),
        None => (mantissa, None),
    };
    let all_digits = |part: &str| part.bytes().all(|b| b.is_ascii_digit());
    if !all_digits(whole)
        || !fraction.is_none_or(all_digits)
        || (whole.is_empty() && fraction.is_none_or(str::is_empty))
    {
        return Err(not_a_number());
    }
    if whole.len() > 1 && whole.starts_with('0') {
        return Err(format!(
            "{token:?}: numbers must not start with 0 (it could be read as octal)"
        ));
    }
    if let Some(exponent) = exponent {
        let digits = exponent.strip_prefix(['+', '-']).unwrap_or(exponent);
        if digits.is_empty() || !all_digits(digits) {
            return Err(not_a_number());
        }
    }
    let sign = if negative { "-" } else { "" };
    if fraction.is_none() && exponent.is_none() {
        // Integers stay integers so that counts deserialize as integers; ones
        // too large for 64 bits fall through to a float, as in serde_json.
        let integer = if negative {
            format!("-{whole}").parse::<i64>().ok().map(Value::from)
        } else {
            whole.parse::<u64>().ok().map(Value::from)
        };
        if let Some(integer) = integer {
            return Ok(integer);
        }
    }
    let normalized = format!(
        "{sign}{}.{}{}",
        if whole.is_empty() { "0" } else { whole },
        match fraction {
            Some(fraction) if !fraction.is_empty() => fraction,
            _ => "0",
        },
        exponent.map(|e| format!("e{e}")).unwrap_or_default(),
    );
    let float: f64 = normalized.parse().map_err(|_| not_a_number())?;
    Number::from_f64(float)
        .map(Value::Number)
        .ok_or_else(|| format!("{token} is too large for a number"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const SEED: &str = include_str!("../../../examples/jobs/seed-job-example.conf");

    fn at(line: usize, column: usize) -> Option<Position> {
        Some(Position { line, column })
    }

    fn single(text: &str) -> Value {
        let document = parse(text).unwrap();
        assert_eq!(document.values.len(), 1, "{text}");
        document.values.into_iter().next().unwrap()
    }

    fn syntax_error(text: &str) -> (usize, usize, String) {
        let error = parse(text).unwrap_err();
        (error.line, error.column, error.message)
    }

    #[test]
    fn the_seed_example_parses_with_positions() {
        let document = parse(SEED).unwrap();
        assert_eq!(document.values.len(), 1);
        let job = &document.values[0];
        assert_eq!(job["task_configuration"]["cpu"], json!(0.5));
        assert_eq!(job["task_configuration"]["mem"], json!(1200));
        assert_eq!(job["deployment_layout"]["aws-us-east-1b"]["cpu"], json!(10));
        let positions = &document.positions;
        assert_eq!(positions.value(""), at(1, 1));
        assert_eq!(positions.key("dns_basename"), at(2, 5));
        assert_eq!(positions.value("dns_basename"), at(2, 21));
        assert_eq!(
            positions.value("deployment_layout.aws-us-west-2a.mem"),
            at(6, 20)
        );
        assert_eq!(positions.key("recipe_options.release_dir"), at(16, 9));
        // The object of task_configuration starts on the line after its key.
        assert_eq!(positions.key("task_configuration"), at(19, 5));
        assert_eq!(positions.value("task_configuration"), at(20, 9));
        // Tab-indented lines: each tab is one column.
        assert_eq!(positions.key("task_configuration.cpu"), at(30, 3));
        assert_eq!(positions.value("task_configuration.cpu"), at(30, 10));
        assert_eq!(positions.value("task_configuration.mem"), at(31, 10));
        assert_eq!(positions.key(""), None);
    }

    #[test]
    fn standard_json_reads_as_serde_json_reads_it() {
        for text in [
            r#"{"a": [1, -2, 3.25, 1e3, -1E-2, 18446744073709551615, -9223372036854775808], "b": {"c": null, "d": [true, false]}}"#,
            r#""\u00e9\ud83d\ude00 \"quoted\" \\ \/ \b\f\n\r\t""#,
            "[]",
            "{}",
            "0",
            "-0.0",
            "123456789012345678901234567890",
        ] {
            let expected: Value = serde_json::from_str(text).unwrap();
            assert_eq!(single(text), expected, "{text}");
        }
    }

    #[test]
    fn lenient_forms() {
        let value = single(
            "/* block\n comment */ {\n  # hash\n  // slashes\n  'single': 'quoted',\n  \"n\": [.5, 5., +3, -.5, 1.e2, -7,],\n},",
        );
        assert_eq!(
            value,
            json!({"single": "quoted", "n": [0.5, 5.0, 3, -0.5, 100.0, -7]})
        );
        assert_eq!(
            single("'say \"hi\" \\'there\\''"),
            json!("say \"hi\" 'there'")
        );
        assert_eq!(single("\u{feff}{\"a\": 1}"), json!({"a": 1}));
        assert_eq!(single("{\"a\":1}\r\n,\r\n"), json!({"a": 1}));
        assert_eq!(
            single("{\"a\": /* inline */ 1 # trailing\n}"),
            json!({"a": 1})
        );
    }

    #[test]
    fn several_top_level_values_get_index_prefixes() {
        let document = parse("{\"a\": 1},\n{\"b\": [10, {\"c\": 2}]},").unwrap();
        assert_eq!(
            document.values,
            vec![json!({"a": 1}), json!({"b": [10, {"c": 2}]})]
        );
        let positions = &document.positions;
        assert_eq!(positions.value("[0]"), at(1, 1));
        assert_eq!(positions.value("[0].a"), at(1, 7));
        assert_eq!(positions.key("[1].b"), at(2, 2));
        assert_eq!(positions.value("[1].b[1]"), at(2, 12));
        assert_eq!(positions.value("[1].b[1].c"), at(2, 18));
        assert_eq!(positions.value("a"), None);
    }

    #[test]
    fn array_paths_match_serde_path_to_error() {
        #[derive(Debug, serde::Deserialize)]
        #[allow(dead_code)]
        struct Outer {
            items: Vec<Inner>,
        }
        #[derive(Debug, serde::Deserialize)]
        #[allow(dead_code)]
        struct Inner {
            count: u32,
        }
        let text = "{\"items\": [{\"count\": 1}, {\"count\": \"two\"}]}";
        let document = parse(text).unwrap();
        let value = document.values.into_iter().next().unwrap();
        let error = serde_path_to_error::deserialize::<_, Outer>(value).unwrap_err();
        let path = error.path().to_string();
        assert_eq!(path, "items[1].count");
        assert_eq!(document.positions.value(&path), at(1, 36));
    }

    #[test]
    fn path_helpers() {
        assert_eq!(join_paths("", "a.b"), "a.b");
        assert_eq!(join_paths("[1]", "a.b"), "[1].a.b");
        assert_eq!(join_paths("[1]", "[2].a"), "[1][2].a");
        assert_eq!(join_paths("[1]", ""), "[1]");
        assert_eq!(parent_path("a.b[3]"), Some("a.b"));
        assert_eq!(parent_path("a.b"), Some("a"));
        assert_eq!(parent_path("[1].a"), Some("[1]"));
        assert_eq!(parent_path("[1]"), Some(""));
        assert_eq!(parent_path("a"), Some(""));
        assert_eq!(parent_path(""), None);
    }

    #[test]
    fn syntax_errors_say_where_and_what() {
        assert_eq!(
            syntax_error("{\n  \"cpu\" 5\n}"),
            (2, 9, "expected ':' after the key \"cpu\", found '5'".into())
        );
        let (line, column, message) =
            syntax_error("{\n  \"name\": \"Portal Server,\n  \"cpu\": 1\n}");
        assert_eq!((line, column), (2, 11));
        assert!(message.starts_with("unterminated string"), "{message}");
        assert_eq!(
            syntax_error("{\n  \"a\": {\n    \"b\": 1,\n"),
            (
                4,
                1,
                "unexpected end of input: an object opened at 2:8 is not closed".into()
            )
        );
        let (line, column, message) = syntax_error("{\"a\": 1 \"b\": 2}");
        assert_eq!((line, column), (1, 9));
        assert!(message.contains("is a comma missing?"), "{message}");
        let (line, column, message) = syntax_error("{\"a\": 1, \"a\": 2}");
        assert_eq!((line, column), (1, 10));
        assert_eq!(message, "duplicate key \"a\": it is already set at 1:2");
        let (line, column, message) = syntax_error("{cpu: 1}");
        assert_eq!((line, column), (1, 2));
        assert!(
            message.contains("keys must be quoted, as in \"cpu\""),
            "{message}"
        );
        assert_eq!(
            syntax_error("{\"a\": True}").2,
            "unknown word True: write true in lower case"
        );
        assert_eq!(syntax_error("[1, 2 3]").1, 7);
        assert_eq!(syntax_error("[1,,2]").1, 4);
        assert_eq!(syntax_error("{\"a\": 12abc}").1, 7);
        assert_eq!(syntax_error("{\"a\": 007}").1, 7);
        assert_eq!(syntax_error("{\"a\": .}").2, "\".\" is not a number");
        assert_eq!(
            syntax_error("{\"a\": 1e999}").2,
            "1e999 is too large for a number"
        );
        assert_eq!(syntax_error("{\"a\": \"\\q\"}").1, 8);
        assert_eq!(syntax_error("{\"a\": \"\\ud800\"}").1, 8);
        assert_eq!(syntax_error("{}}").2, "expected ',' or the end of the input after the value that starts at 1:1, found '}' (one '}' too many?)");
        assert_eq!(syntax_error("{} {}").1, 4);
        assert_eq!(
            syntax_error("  \n # only a comment\n"),
            (3, 1, "the input is empty: expected a value".into())
        );
        assert_eq!(
            syntax_error("{} /* open"),
            (
                1,
                4,
                "unterminated comment: this '/*' has no closing '*/'".into()
            )
        );
        assert_eq!(
            syntax_error("{\"a\":\n"),
            (
                2,
                1,
                "unexpected end of input: expected a value for the key \"a\"".into()
            )
        );
        assert_eq!(syntax_error(","), (1, 1, "expected a value (a string, number, object, array, true, false or null), found ','".into()));
    }

    #[test]
    fn columns_count_characters_not_bytes() {
        let document = parse("{\"é\": \"日本\", \"b\": 1}").unwrap();
        assert_eq!(document.positions.value("b"), at(1, 18));
    }

    #[test]
    fn nesting_is_bounded() {
        let ok = format!("{}{}", "[".repeat(MAX_DEPTH), "]".repeat(MAX_DEPTH));
        assert!(parse(&ok).is_ok());
        let deep = format!("{}{}", "[".repeat(100_000), "]".repeat(100_000));
        let error = parse(&deep).unwrap_err();
        assert_eq!((error.line, error.column), (1, MAX_DEPTH + 1));
        let objects = "{\"a\":".repeat(100_000);
        assert!(parse(&objects).is_err());
    }

    #[test]
    fn no_input_makes_it_panic() {
        // Every prefix of a realistic file, and the file with each character
        // replaced by something troublesome, must give a value or an error.
        let boundaries: Vec<usize> = SEED.char_indices().map(|(at, _)| at).collect();
        for &end in &boundaries {
            let _ = parse(&SEED[..end]);
        }
        for &at in boundaries.iter().step_by(3) {
            for replacement in [
                "", "\"", "'", "\\", "{", "]", ",", "/*", "#", "\u{0}", "é", ".", "-", "e",
            ] {
                let mut text = SEED[..at].to_string();
                text.push_str(replacement);
                let mut after = SEED[at..].chars();
                after.next();
                text.push_str(after.as_str());
                let _ = parse(&text);
            }
        }
        for garbage in [
            "\"\\u",
            "\"\\ud83d\\u",
            "'\\",
            "-",
            "+",
            "e5",
            ".e5",
            "1e",
            "1e+",
            "[",
            "{\"",
            "{'a'",
        ] {
            let _ = parse(garbage);
        }
    }
}
