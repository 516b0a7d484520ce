//! URL path segments, encoded one way everywhere: by the typed clients that
//! build another daemon's URLs and by the HTML pages that link to a task.

use std::fmt::Write;

/// Percent-encodes one URL path segment: every byte but ASCII letters,
/// digits and `-._~` becomes `%XX`, so a task name with spaces, slashes or
/// quotes stays one segment (`"../x"` → `"..%2Fx"`).
pub fn encode_path_segment(segment: &str) -> String {
    let mut out = String::with_capacity(segment.len());
    for byte in segment.bytes() {
        if byte.is_ascii_alphanumeric() || b"-._~".contains(&byte) {
            out.push(byte as char);
        } else {
            let _ = write!(out, "%{byte:02X}");
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_unreserved_bytes_stay_as_they_are() {
        assert_eq!(encode_path_segment("Portal Server"), "Portal%20Server");
        assert_eq!(encode_path_segment("a-b_c.d~"), "a-b_c.d~");
        assert_eq!(encode_path_segment("../x"), "..%2Fx");
        assert_eq!(encode_path_segment("é"), "%C3%A9");
    }
}
