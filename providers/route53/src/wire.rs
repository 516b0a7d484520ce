//! Names and TXT values as Route 53 writes them, and back.
//!
//! Route 53 answers names absolute (trailing dot), in lowercase, with
//! characters outside `a-z0-9-_.` as three-digit octal escapes (`\052` for
//! `*`; Route 53 developer guide, "DNS domain name format"), and TXT values
//! as one or more quoted character-strings (`"a" "b"`, RFC 1035 §5.1
//! escapes inside).

/// A Route 53 name as `RecordSet::name` holds it: octal escapes decoded,
/// lowercase, without the trailing dot.
pub fn decode_name(name: &str) -> String {
    let bytes = name.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'\\' {
            let digits = bytes.get(i + 1..i + 4);
            if let Some(code) = digits
                .filter(|d| d.iter().all(|b| (b'0'..=b'7').contains(b)))
                .and_then(|d| u8::from_str_radix(std::str::from_utf8(d).ok()?, 8).ok())
            {
                out.push(code);
                i += 4;
                continue;
            }
            if let Some(&next) = bytes.get(i + 1) {
                out.push(next);
                i += 2;
                continue;
            }
        }
        out.push(bytes[i]);
        i += 1;
    }
    let text = String::from_utf8_lossy(&out);
    text.trim_end_matches('.').to_ascii_lowercase()
}

/// A name as Route 53 is sent it: absolute (Route 53 takes both forms;
/// answers always carry the dot).
pub fn encode_name(name: &str) -> String {
    format!("{}.", name.trim_end_matches('.'))
}

/// A TXT value as Route 53 holds it (`"text"`, or `"part" "part"` for a
/// text longer than one 255-byte character-string) as one unquoted string:
/// the character-strings joined, `\"`, `\\` and `\DDD` (decimal, RFC 1035
/// §5.1) decoded. An unquoted value is taken as it is.
pub fn unquote_txt(value: &str) -> String {
    let bytes = value.trim().as_bytes();
    if !bytes.starts_with(b"\"") {
        return value.trim().to_string();
    }
    let mut out = Vec::with_capacity(bytes.len());
    let mut inside = false;
    let mut i = 0;
    while i < bytes.len() {
        let b = bytes[i];
        if !inside {
            if b == b'"' {
                inside = true;
            }
            i += 1;
            continue;
        }
        match b {
            b'"' => inside = false,
            b'\\' => {
                let digits = bytes.get(i + 1..i + 4);
                if let Some(code) = digits
                    .filter(|d| d.iter().all(u8::is_ascii_digit))
                    .and_then(|d| std::str::from_utf8(d).ok()?.parse::<u8>().ok())
                {
                    out.push(code);
                    i += 4;
                    continue;
                }
                if let Some(&next) = bytes.get(i + 1) {
                    out.push(next);
                    i += 1;
                }
            }
            _ => out.push(b),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// `text` as a Route 53 TXT value: quoted, `"` and `\` escaped, split into
/// character-strings of at most 255 bytes (RFC 1035 §3.3) at character
/// boundaries.
pub fn quote_txt(text: &str) -> String {
    let mut parts = Vec::new();
    let mut current = String::new();
    let mut len = 0;
    for c in text.chars() {
        if len + c.len_utf8() > 255 {
            parts.push(std::mem::take(&mut current));
            len = 0;
        }
        len += c.len_utf8();
        if c == '"' || c == '\\' {
            current.push('\\');
        }
        current.push(c);
    }
    parts.push(current);
    parts
        .iter()
        .map(|p| format!("\"{p}\""))
        .collect::<Vec<_>>()
        .join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_lose_the_dot_the_case_and_the_escapes() {
        assert_eq!(
            decode_name("0.Local-A.ticker.example."),
            "0.local-a.ticker.example"
        );
        assert_eq!(decode_name("\\052.ticker.example."), "*.ticker.example");
        assert_eq!(decode_name("a\\.b.example."), "a.b.example");
        assert_eq!(decode_name("example"), "example");
        assert_eq!(encode_name("a.example"), "a.example.");
        assert_eq!(encode_name("a.example."), "a.example.");
    }

    #[test]
    fn txt_values_round_trip() {
        let text = "heritage=cerebro,cerebro/owner=prod";
        assert_eq!(quote_txt(text), format!("\"{text}\""));
        assert_eq!(unquote_txt(&quote_txt(text)), text);
        assert_eq!(unquote_txt("\"a\\\"b\\\\c\""), "a\"b\\c");
        assert_eq!(unquote_txt("\"ab\" \"cd\""), "abcd");
        assert_eq!(unquote_txt("\"a\\065\""), "aA");
        assert_eq!(unquote_txt("plain"), "plain");
        let long = "x".repeat(300);
        let quoted = quote_txt(&long);
        assert!(quoted.starts_with(&format!("\"{}\" \"", "x".repeat(255))));
        assert_eq!(unquote_txt(&quoted), long);
    }
}
