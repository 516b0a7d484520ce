//! Deserialization errors restated for the people who write config files.
//!
//! serde speaks Rust: "invalid type: string \"lots\", expected f64",
//! "expected u32", "unknown field `comand`, expected one of" followed by
//! every field of the struct. Someone editing a job file at 3 AM wants "expected
//! a number, found the text \"lots\"" and "did you mean `command`?".
//! [`plain_serde_message`] rewrites the messages serde's own error
//! constructors produce and leaves any other message (a custom one, already
//! in words) as it is.

/// `message`, an error message from serde (`serde::de::Error`'s
/// constructors: invalid type or value, unknown field or variant,
/// duplicate field, untagged enums), in plain words; any other message is
/// returned unchanged.
pub fn plain_serde_message(message: &str) -> String {
    if let Some(rest) = message.strip_prefix("invalid type: ") {
        if let Some((found, expected)) = rest.rsplit_once(", expected ") {
            return format!(
                "expected {}, found {}",
                plain_expected(expected, None),
                plain_found(found)
            );
        }
    }
    if let Some(rest) = message.strip_prefix("invalid value: ") {
        if let Some((found, expected)) = rest.rsplit_once(", expected ") {
            return format!(
                "expected {}, found {}",
                plain_expected(expected, Some(found)),
                plain_found(found)
            );
        }
    }
    if let Some(rest) = message.strip_prefix("unknown field `") {
        if let Some((name, known)) = split_name(rest) {
            return unknown("field", name, &quoted_names(known));
        }
    }
    if let Some(rest) = message.strip_prefix("unknown variant `") {
        if let Some((name, known)) = split_name(rest) {
            return unknown("value", name, &quoted_names(known));
        }
    }
    if let Some(name) = message
        .strip_prefix("duplicate field `")
        .and_then(|rest| rest.strip_suffix('`'))
    {
        return format!("the field `{name}` is given twice");
    }
    if let Some(kind) = message.strip_prefix("data did not match any variant of untagged enum ") {
        return format!("expected {}", untagged_forms(kind));
    }
    message.to_string()
}

/// `count` `thing`s in words: `1 machine`, `0 machines`, `3 machines`
/// (`thing` is the singular; English `s` plurals only).
pub fn count_of(count: usize, thing: &str) -> String {
    if count == 1 {
        format!("1 {thing}")
    } else {
        format!("{count} {thing}s")
    }
}

/// The name closest to `word` among `candidates`, when one is close enough
/// to be a likely typo of it (or `word` differs from it only in case, or
/// one is a prefix of the other of at least 3 characters: `mem` for
/// `memory`).
pub fn nearest<'a>(word: &str, candidates: &[&'a str]) -> Option<&'a str> {
    let word = word.to_lowercase();
    candidates
        .iter()
        .filter_map(|&candidate| {
            let lower = candidate.to_lowercase();
            let distance = edit_distance(&word, &lower);
            // A third of the name may be wrong: one slip in a short name,
            // more in a long one, never a different word of the same length.
            let allowed = (lower.chars().count() / 3).max(1);
            let prefix = word.chars().count().min(lower.chars().count()) >= 3
                && (lower.starts_with(&word) || word.starts_with(&lower));
            (distance <= allowed || prefix).then_some((distance, candidate))
        })
        .min_by_key(|&(distance, _)| distance)
        .map(|(_, candidate)| candidate)
}

/// Edits (insert, delete, substitute, swap two neighbours) that turn `a`
/// into `b`: the optimal string alignment distance.
fn edit_distance(a: &str, b: &str) -> usize {
    let a: Vec<char> = a.chars().collect();
    let b: Vec<char> = b.chars().collect();
    // Three rows suffice: the swap looks two rows back.
    let mut before: Vec<usize> = vec![0; b.len() + 1];
    let mut previous: Vec<usize> = (0..=b.len()).collect();
    let mut current = vec![0; b.len() + 1];
    for i in 1..=a.len() {
        current[0] = i;
        for j in 1..=b.len() {
            let cost = usize::from(a[i - 1] != b[j - 1]);
            let mut best = (previous[j] + 1)
                .min(current[j - 1] + 1)
                .min(previous[j - 1] + cost);
            if i > 1 && j > 1 && a[i - 1] == b[j - 2] && a[i - 2] == b[j - 1] {
                best = best.min(before[j - 2] + 1);
            }
            current[j] = best;
        }
        std::mem::swap(&mut before, &mut previous);
        std::mem::swap(&mut previous, &mut current);
    }
    previous[b.len()]
}

/// `NAME`, ... split off the rest of "unknown field `NAME`, expected ...".
fn split_name(rest: &str) -> Option<(&str, &str)> {
    // The name itself may contain a backquote; what follows it does not.
    let end = rest.find("`, ")?;
    Some((&rest[..end], &rest[end + 3..]))
}

/// The names serde lists after an unknown name: "expected `a`",
/// "expected `a` or `b`", "expected one of `a`, `b`, `c`", or none
/// ("there are no fields").
fn quoted_names(list: &str) -> Vec<&str> {
    list.split('`').skip(1).step_by(2).collect()
}

fn unknown(what: &str, name: &str, known: &[&str]) -> String {
    if let Some(near) = nearest(name, known) {
        return format!("unknown {what} `{name}`, did you mean `{near}`?");
    }
    match known {
        [] => format!("unknown {what} `{name}`: none is allowed here"),
        // Nothing close: the list is then the quickest help.
        _ => format!(
            "unknown {what} `{name}`; the known ones are {}",
            known
                .iter()
                .map(|k| format!("`{k}`"))
                .collect::<Vec<_>>()
                .join(", ")
        ),
    }
}

/// serde's `Unexpected` as shown in a file: `string "x"` is the text "x",
/// `integer `5`` is 5, a map is an object.
fn plain_found(found: &str) -> String {
    let inside = |prefix: &str| {
        found
            .strip_prefix(prefix)
            .and_then(|rest| rest.strip_prefix('`'))
            .and_then(|rest| rest.strip_suffix('`'))
            .map(str::to_string)
    };
    if let Some(text) = found.strip_prefix("string ") {
        return format!("the text {text}");
    }
    if let Some(value) = inside("integer ")
        .or_else(|| inside("floating point "))
        .or_else(|| inside("boolean "))
    {
        return value;
    }
    match found {
        "unit value" | "null" => "null".into(),
        "map" => "an object {...}".into(),
        "sequence" => "a list [...]".into(),
        other => other.to_string(),
    }
}

/// serde's expectation (a Rust type name for numbers) in words. For an
/// integer out of range (`found` is the number), the range is named.
fn plain_expected(expected: &str, found: Option<&str>) -> String {
    let out_of_range = found
        .and_then(|f| f.strip_prefix("integer `"))
        .and_then(|f| f.strip_suffix('`'))
        .is_some_and(|n| !n.starts_with('-'));
    let unsigned_max = match expected {
        "u8" => Some(u64::from(u8::MAX)),
        "u16" => Some(u64::from(u16::MAX)),
        "u32" => Some(u64::from(u32::MAX)),
        _ => None,
    };
    if let (Some(max), true) = (unsigned_max, out_of_range) {
        return format!("a whole number from 0 to {max}");
    }
    match expected {
        "u8" | "u16" | "u32" | "u64" | "u128" | "usize" => "a whole number (0 or more)".into(),
        "i8" | "i16" | "i32" | "i64" | "i128" | "isize" => "a whole number".into(),
        "f32" | "f64" => "a number".into(),
        "a boolean" => "true or false".into(),
        "a string" | "a borrowed string" | "path string" => "text in quotes".into(),
        "a character" => "a single character in quotes".into(),
        "a sequence" => "a list [...]".into(),
        "a map" => "an object {...}".into(),
        "unit" => "null".into(),
        other if other.starts_with("struct ") => "an object {...}".into(),
        other => other.to_string(),
    }
}

/// What an untagged enum of the job format accepts, by the enum's name.
fn untagged_forms(kind: &str) -> String {
    match kind {
        // `cerebro_types::human::serde_human`.
        "NumberOrText" => {
            "a number, or text with a unit such as \"512M\" (memory) or \"30s\" (time)".into()
        }
        // `cerebro_types::task::Principal`.
        "Principal" => "a user or group: a name in quotes or a whole number (0 or more)".into(),
        _ => "a value of one of the forms this field accepts".into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde::Deserialize;

    /// The message serde gives when deserializing `json` as `T`.
    fn serde_says<T: for<'de> Deserialize<'de> + std::fmt::Debug>(json: &str) -> String {
        serde_json::from_value::<T>(serde_json::from_str(json).unwrap())
            .unwrap_err()
            .to_string()
    }

    #[derive(Debug, Deserialize)]
    #[serde(deny_unknown_fields)]
    #[allow(dead_code)] // only deserialized, for serde's messages
    struct Task {
        command: Option<String>,
        cpu: Option<f64>,
        max_restarts: Option<u32>,
        offset: Option<i32>,
        restart: Option<bool>,
        args: Option<Vec<String>>,
        mem: Option<u8>,
    }

    #[test]
    fn numbers_are_named_in_words_and_the_value_found_is_shown() {
        assert_eq!(
            plain_serde_message(&serde_says::<Task>(r#"{"cpu": "lots"}"#)),
            "expected a number, found the text \"lots\""
        );
        assert_eq!(
            plain_serde_message(&serde_says::<Task>(r#"{"max_restarts": -1}"#)),
            "expected a whole number (0 or more), found -1"
        );
        assert_eq!(
            plain_serde_message(&serde_says::<Task>(r#"{"max_restarts": 1.5}"#)),
            "expected a whole number (0 or more), found 1.5"
        );
        assert_eq!(
            plain_serde_message(&serde_says::<Task>(r#"{"mem": 300}"#)),
            "expected a whole number from 0 to 255, found 300"
        );
        assert_eq!(
            plain_serde_message(&serde_says::<Task>(r#"{"offset": "x"}"#)),
            "expected a whole number, found the text \"x\""
        );
    }

    #[test]
    fn other_types_are_named_in_words() {
        assert_eq!(
            plain_serde_message(&serde_says::<Task>(r#"{"restart": "yes"}"#)),
            "expected true or false, found the text \"yes\""
        );
        assert_eq!(
            plain_serde_message(&serde_says::<Task>(r#"{"command": 5}"#)),
            "expected text in quotes, found 5"
        );
        assert_eq!(
            plain_serde_message(&serde_says::<Task>(r#"{"args": {"a": 1}}"#)),
            "expected a list [...], found an object {...}"
        );
        assert_eq!(
            plain_serde_message(&serde_says::<Task>(r#""x""#)),
            "expected an object {...}, found the text \"x\""
        );
        for message in [
            plain_serde_message(&serde_says::<Task>(r#"{"cpu": 1, "restart": "no"}"#)),
            plain_serde_message(&serde_says::<Task>(r#"{"max_restarts": "3"}"#)),
        ] {
            for rust in ["u32", "f64", "invalid type", "bool"] {
                assert!(!message.contains(rust), "{rust} in {message}");
            }
        }
    }

    #[test]
    fn an_unknown_field_suggests_the_nearest_instead_of_listing_all() {
        assert_eq!(
            plain_serde_message(&serde_says::<Task>(r#"{"comand": "x"}"#)),
            "unknown field `comand`, did you mean `command`?"
        );
        assert_eq!(
            plain_serde_message(&serde_says::<Task>(r#"{"max_restrats": 1}"#)),
            "unknown field `max_restrats`, did you mean `max_restarts`?"
        );
        assert_eq!(
            plain_serde_message(&serde_says::<Task>(r#"{"CPU": 1}"#)),
            "unknown field `CPU`, did you mean `cpu`?"
        );
        assert_eq!(
            plain_serde_message(&serde_says::<Task>(r#"{"memory": 1}"#)),
            "unknown field `memory`, did you mean `mem`?"
        );
        // Nothing near: the list is the best help left.
        assert_eq!(
            plain_serde_message(&serde_says::<Task>(r#"{"zebra": 1}"#)),
            "unknown field `zebra`; the known ones are `command`, `cpu`, `max_restarts`, `offset`, `restart`, `args`, `mem`"
        );
    }

    #[test]
    fn an_unknown_variant_suggests_the_nearest() {
        #[derive(Debug, Deserialize)]
        #[serde(rename_all = "snake_case")]
        enum Stream {
            Stdout,
            Stderr,
        }
        assert_eq!(
            plain_serde_message(&serde_says::<Stream>(r#""stdot""#)),
            "unknown value `stdot`, did you mean `stdout`?"
        );
    }

    #[test]
    fn custom_messages_and_missing_fields_stay_as_they_are() {
        assert_eq!(
            plain_serde_message("missing field `command`"),
            "missing field `command`"
        );
        assert_eq!(
            plain_serde_message("not a size: \"ten\""),
            "not a size: \"ten\""
        );
    }

    #[test]
    fn near_names_are_typos_not_other_words() {
        assert_eq!(nearest("comand", &["command", "cwd"]), Some("command"));
        assert_eq!(nearest("cdw", &["command", "cwd"]), Some("cwd"));
        assert_eq!(nearest("mme", &["mem", "cpu"]), Some("mem"));
        assert_eq!(nearest("color", &["cpu", "mem", "name"]), None);
        assert_eq!(edit_distance("ab", "ba"), 1);
        assert_eq!(edit_distance("", "abc"), 3);
        assert_eq!(edit_distance("kitten", "sitting"), 3);
    }
}
