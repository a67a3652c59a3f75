//! What the fuzz targets share: seed corpora read from the repository (`tests/fixtures`,
//! `scenarios`, …) and a mutation of one seed by a list of edits, which bolero generates.
//!
//! The targets run under `cargo test` with bolero's random engine (stable Rust, no extra
//! tool), so a uniformly random byte string would almost never be JSON, TOML or a form body;
//! mutating real inputs reaches the parsers' deeper paths instead. `make fuzz FUZZ_SECS=N`
//! runs each target for N seconds (docs/design.md "Fuzzing").

use std::path::{Path, PathBuf};

/// The repository's root (this crate lives in `shared/fuzzing`).
pub fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../..")
        .canonicalize()
        .unwrap_or_else(|_| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../.."))
}

/// Every file under `dir` (relative to the repository root) whose name ends with one of
/// `suffixes`, in name order. An unreadable directory is an empty corpus.
pub fn seeds(dir: &str, suffixes: &[&str]) -> Vec<Vec<u8>> {
    let mut paths: Vec<PathBuf> = std::fs::read_dir(root().join(dir))
        .map(|entries| {
            entries
                .filter_map(Result::ok)
                .map(|e| e.path())
                .filter(|p| {
                    p.file_name()
                        .and_then(|n| n.to_str())
                        .is_some_and(|n| suffixes.iter().any(|s| n.ends_with(s)))
                })
                .collect()
        })
        .unwrap_or_default();
    paths.sort();
    paths.iter().filter_map(|p| std::fs::read(p).ok()).collect()
}

/// Tokens an edit may insert: the punctuation and literals of JSON, TOML and form bodies, and
/// values that stress limits (long, non-ASCII, control characters, huge numbers).
const TOKENS: &[&[u8]] = &[
    b"{",
    b"}",
    b"[",
    b"]",
    b"\"",
    b":",
    b",",
    b"=",
    b"&",
    b"%",
    b"\\",
    b"null",
    b"true",
    b"-1",
    b"0",
    b"18446744073709551616",
    b"1e999",
    b"\"\"",
    b"{}",
    b"[]",
    b"\\u0000",
    b"\\ud800",
    "é".as_bytes(),
    "\u{202e}".as_bytes(),
    b"\n",
    b"\x00",
    b"\xff",
    b"aws:",
    b"i-",
    b"arn:aws:ec2:us-east-1:1:instance/",
    b"%00",
    b"%ZZ",
    b".member.",
];

/// One edit of a seed: `(operation, position, byte)`. Positions wrap around the input.
pub type Edit = (u8, u16, u8);

/// Seed number `pick` (modulo the corpus) with `edits` applied in order: overwrite a byte,
/// insert a byte, delete a byte, insert a token, or repeat a slice.
pub fn mutate(corpus: &[Vec<u8>], pick: u16, edits: &[Edit]) -> Vec<u8> {
    let mut out = match corpus.len() {
        0 => Vec::new(),
        n => corpus
            .get(usize::from(pick) % n)
            .cloned()
            .unwrap_or_default(),
    };
    for &(op, pos, byte) in edits.iter().take(64) {
        let at = if out.is_empty() {
            0
        } else {
            usize::from(pos) % (out.len() + 1)
        };
        match op % 5 {
            0 if at < out.len() => {
                if let Some(b) = out.get_mut(at) {
                    *b = byte;
                }
            }
            1 => out.insert(at, byte),
            2 if at < out.len() => {
                out.remove(at);
            }
            3 => {
                let token = TOKENS
                    .get(usize::from(byte) % TOKENS.len())
                    .copied()
                    .unwrap_or_default();
                out.splice(at..at, token.iter().copied());
            }
            4 => {
                let len = usize::from(byte % 32);
                let slice: Vec<u8> = out.iter().skip(at).take(len).copied().collect();
                out.splice(at..at, slice);
            }
            _ => {}
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mutations_apply_in_order_and_never_panic_on_an_empty_corpus() {
        let corpus = vec![b"abc".to_vec()];
        assert_eq!(mutate(&corpus, 7, &[]), b"abc");
        assert_eq!(mutate(&corpus, 0, &[(0, 1, b'X')]), b"aXc");
        assert_eq!(mutate(&corpus, 0, &[(1, 0, b'>')]), b">abc");
        assert_eq!(mutate(&corpus, 0, &[(2, 2, 0)]), b"ab");
        assert_eq!(mutate(&corpus, 0, &[(3, 3, 0)]), b"abc{");
        assert_eq!(mutate(&corpus, 0, &[(4, 1, 2)]), b"abcbc");
        assert_eq!(mutate(&[], 3, &[(2, 9, 0), (0, 5, 1), (1, 9, b'z')]), b"z");
    }

    #[test]
    fn seeds_come_from_the_repository() {
        assert!(!seeds("tests/fixtures", &[".json"]).is_empty());
        assert!(seeds("no/such/dir", &[".json"]).is_empty());
    }
}
