//! Log streams are lossless and line-true: rotation at line boundaries,
//! following by offset across rotations in chunks of any size, multi-byte
//! characters intact, and Cerebro's own marker lines never glued to a
//! workload's unfinished line.

mod common;
use common::*;

const MARKER: &str = "--- cerebro tasksitter: start #";

/// 300 numbered lines of exactly 1000 bytes, mostly three-byte characters.
fn thousand_byte_lines() -> String {
    (1..=300)
        .map(|i| format!("{i:04}{}é\n", "€".repeat(331)))
        .inspect(|line| assert_eq!(line.len(), 1000))
        .collect()
}

/// Every file of `stem`'s stdout, oldest first, as bytes.
fn files_oldest_first(sitter: &Sitter, stem: &str) -> Vec<(String, Vec<u8>)> {
    let live = sitter.log_path(stem, "stdout");
    let mut files: Vec<(String, Vec<u8>)> = (1..=50)
        .rev()
        .map(|generation| format!("{}.{generation}", live.display()))
        .chain([live.display().to_string()])
        .filter_map(|path| Some((path.clone(), std::fs::read(&path).ok()?)))
        .collect();
    files.retain(|(_, bytes)| !bytes.is_empty());
    files
}

/// Reads the whole stdout stream from offset 0 in chunks of at most `limit` bytes.
fn follow(sitter: &Sitter, limit: u64) -> Vec<u8> {
    let mut offset = 0;
    let mut stream = Vec::new();
    for _ in 0..100_000 {
        let chunk = sitter.get_json(&format!(
            "/api/v1/logs/stdout?offset={offset}&limit={limit}"
        ));
        assert_eq!(chunk["rotated"], false, "nothing was lost at {offset}");
        assert_eq!(chunk["offset"].as_u64(), Some(offset));
        let data = chunk["data"].as_str().unwrap();
        let next = chunk["next_offset"].as_u64().unwrap();
        assert_eq!(next - offset, data.len() as u64, "at {offset}");
        if data.is_empty() {
            return stream;
        }
        stream.extend_from_slice(data.as_bytes());
        offset = next;
    }
    panic!("the stream did not end");
}

#[test]
fn rotation_keeps_lines_whole_and_followers_lose_nothing() {
    let scratch = scratch_dir();
    let input = scratch.path().join("input");
    let lines = thousand_byte_lines();
    std::fs::write(&input, &lines).unwrap();
    // The second run's marker follows the first run's unfinished line.
    let command = format!("cat {}; printf unfinished", input.display());
    let sitter = Sitter::start_http(&[
        "--name",
        "lines",
        "--command",
        &command,
        "--log-max-bytes",
        "64K",
        "--log-backups",
        "30",
        "--ensure-alive",
        "--max-restarts",
        "1",
        "--linger",
    ]);
    sitter.wait_status("the second run to end", |s| state_of(s) == StateKind::Fatal);

    let files = files_oldest_first(&sitter, "lines");
    assert!(files.len() >= 9, "the log rotated: {} files", files.len());
    let mut stream = Vec::new();
    for (path, bytes) in &files {
        let text = std::str::from_utf8(bytes).unwrap_or_else(|e| panic!("{path}: {e}"));
        let is_live = path.ends_with(".log");
        for (index, line) in text.split_inclusive('\n').enumerate() {
            let last = index == text.split_inclusive('\n').count() - 1;
            if line.contains(MARKER) {
                assert!(
                    line.starts_with(MARKER),
                    "{path}: marker mid-line: {line:.80}"
                );
            } else if !(is_live && last) {
                assert!(
                    line.len() == 1000 || line == "unfinished\n",
                    "{path}: line {index} was cut: {} bytes: {line:.40}",
                    line.len()
                );
            }
        }
        if !is_live {
            assert!(bytes.ends_with(b"\n"), "{path} ends mid-line");
        }
        stream.extend_from_slice(bytes);
    }
    let text = String::from_utf8(stream.clone()).unwrap();
    let without_markers: String = text
        .split_inclusive('\n')
        .filter(|line| !line.starts_with(MARKER))
        .collect();
    assert_eq!(
        without_markers,
        format!("{lines}unfinished\n{lines}unfinished"),
        "every byte the workload wrote is there, in order"
    );

    for limit in [4093, 65536, 4 * 1024 * 1024] {
        assert!(
            follow(&sitter, limit) == stream,
            "following in chunks of {limit} bytes reassembles the stream"
        );
    }
}
