//! The register reader never panics: a corpus of hostile inputs gets clean errors, and thousands of
//! random mutations of a real register are checked without a panic. (The fuzz target under `fuzz/`
//! explores further; CI runs it for a bounded time.)

#![allow(clippy::unwrap_used, clippy::print_stderr)] // Tests fail by panicking.

mod common;

use common::{Files, opts, today};

fn errors_of(input: &[u8]) -> Vec<String> {
    let a = warden_risk::check(input, &Files::default(), &opts());
    a.diagnostics
        .iter()
        .filter(|d| d.severity == warden_risk::Severity::Error)
        .map(|d| d.render("x"))
        .collect()
}

#[test]
fn hostile_inputs_get_clean_errors() {
    let deep_flow = format!(
        "version: 1\nrisks: {}{}\n",
        "[".repeat(5000),
        "]".repeat(5000)
    );
    let deep_block: String = (0..300)
        .map(|i| format!("{}- \n", " ".repeat(i * 2)))
        .collect();
    let bomb = "a: &a [x, x, x, x, x, x, x, x, x]\nb: &b [*a, *a, *a, *a, *a, *a, *a, *a, *a]\nc: &c [*b, *b, *b, *b, *b, *b, *b, *b, *b]\nd: [*c, *c, *c, *c, *c, *c, *c, *c, *c]\n";
    let huge_number = "version: 1\nsystem: {name: a, owner: b}\ncontext: {scope: s, criteria: {appetite: 99999999999999999999999999999}}\nrisks: []\n";
    let huge_rating = "version: 1\nsystem: {name: a, owner: b}\ncontext: {scope: s, criteria: {appetite: 6}}\nrisks:\n  - {id: R, title: t, owner: o, rationale: r, status: open, severity: 1e999, occurrence: -0, detection: 0x10, likelihood: .inf, consequence: 3}\n";
    let long_line = format!(
        "version: 1\nsystem: {{name: {}, owner: b}}\n",
        "x".repeat(100_000)
    );
    let too_big = vec![b'#'; warden_risk::yaml::MAX_INPUT_BYTES + 1];
    let many_docs = "version: 1\n---\nversion: 1\n";
    let cases: Vec<(&str, Vec<u8>, &str)> = vec![
        ("empty", b"".to_vec(), "empty"),
        (
            "not UTF-8",
            b"version: 1\nsystem: \xc3\x28\n".to_vec(),
            "not valid UTF-8",
        ),
        (
            "NUL bytes",
            b"version: 1\n\0\0\0".to_vec(),
            "x:2:1: error[yaml]: control character U+0000",
        ),
        ("binary", (0u8..=255).cycle().take(4096).collect(), "error"),
        ("deep flow nesting", deep_flow.into_bytes(), "error"),
        ("deep block nesting", deep_block.into_bytes(), "error"),
        ("alias bomb", bomb.as_bytes().to_vec(), "not supported"),
        (
            "huge number",
            huge_number.as_bytes().to_vec(),
            "expected a whole number from 1 to 25",
        ),
        (
            "odd numbers as ratings",
            huge_rating.as_bytes().to_vec(),
            "`severity`: expected a whole number from 1 to 10, found `1e999`",
        ),
        (
            "long line",
            long_line.into_bytes(),
            "x:2:16: error[bad-value]: `name`: longer than 8192 bytes",
        ),
        ("too big", too_big, "the limit is"),
        (
            "two documents",
            many_docs.as_bytes().to_vec(),
            "one YAML document",
        ),
        (
            "a list, not a register",
            b"- 1\n- 2\n".to_vec(),
            "expected a mapping, found a list",
        ),
        (
            "a scalar",
            b"hello".to_vec(),
            "expected a mapping, found a scalar",
        ),
        (
            "wrong version",
            b"version: 2\n".to_vec(),
            "`version`: expected a whole number from 1 to 1, found `2`",
        ),
        (
            "tabs",
            b"version: 1\nsystem:\n\tname: a\n".to_vec(),
            "error",
        ),
    ];
    for (name, input, want) in cases {
        let errors = errors_of(&input);
        assert!(!errors.is_empty(), "{name}: no error");
        assert!(
            errors.iter().any(|e| e.contains(want)),
            "{name}: want {want:?} in {errors:?}"
        );
        assert!(
            errors.iter().all(|e| e.len() < 2000),
            "{name}: an error message is unreasonably long"
        );
    }
}

#[test]
fn random_mutations_of_a_real_register_never_panic() {
    let base = warden_risk::templates::render("agent", "demo", "o@example.com", today())
        .unwrap()
        .into_bytes();
    let mut x = 0x9e37_79b9_7f4a_7c15_u64;
    let mut next = move || {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x
    };
    const SPICE: &[&[u8]] = &[
        b"[",
        b"]",
        b"{",
        b"}",
        b":",
        b"-",
        b"&a",
        b"*a",
        b"!!str",
        b"\n",
        b"  ",
        b"\t",
        b"'",
        b"\"",
        b"#",
        b"?",
        b"|",
        b">",
        b"9999999999999999999999",
        b"\xff",
        b"\0",
        b"---",
    ];
    for _ in 0..3000 {
        let mut input = base.clone();
        for _ in 0..1 + next() % 4 {
            let at = (next() % input.len() as u64) as usize;
            match next() % 4 {
                0 => input.truncate(at),
                1 => {
                    input.remove(at.min(input.len().saturating_sub(1)));
                }
                2 => input[at] = next() as u8,
                _ => {
                    let s = SPICE[(next() % SPICE.len() as u64) as usize];
                    input.splice(at..at, s.iter().copied());
                }
            }
            if input.is_empty() {
                break;
            }
        }
        // Must return, with or without diagnostics, and never panic.
        let _ = warden_risk::check(&input, &Files::default(), &opts());
    }
}
