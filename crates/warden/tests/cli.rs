//! The `warden ledger` commands as a user and an outside auditor meet them: the round trip, the
//! formats an independent verifier reads, and every kind of bad input the issue names.

#![allow(clippy::unwrap_used, clippy::print_stderr)] // Tests fail by panicking.

use std::io::Write as _;
use std::path::Path;
use std::process::{Command, Output, Stdio};

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use serde_json::Value;
use warden_ledger::merkle::{self, verify_consistency_bytes, verify_inclusion_bytes};
use warden_ledger::{Checkpoint, VerifierKey};

fn warden(dir: &Path, args: &[&str], stdin: Option<&[u8]>) -> Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_warden"));
    cmd.arg("ledger")
        .args(args)
        .env("WARDEN_LEDGER", dir)
        .env_remove("XDG_DATA_HOME");
    cmd.stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = cmd.spawn().unwrap();
    {
        let mut input = child.stdin.take().unwrap();
        if let Some(bytes) = stdin {
            // The command may stop reading early (that is the point of some tests).
            let _ = input.write_all(bytes);
        }
    }
    child.wait_with_output().unwrap()
}

fn ok(out: Output) -> String {
    assert!(
        out.status.success(),
        "status {:?}\nstdout: {}\nstderr: {}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

fn fails(out: &Output, code: i32, stderr_has: &str) {
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(code), "stderr: {err}");
    assert!(
        err.contains(stderr_has),
        "expected {stderr_has:?} in stderr: {err}"
    );
}

fn lines(n: usize, from: usize) -> Vec<u8> {
    (from..from + n)
        .map(|i| format!("{{\"kind\":\"decision\",\"actor\":\"monitor:m\",\"time\":\"2026-11-25T10:00:00Z\",\"payload\":{{\"seq\":{i}}}}}\n"))
        .collect::<String>()
        .into_bytes()
}

fn init(dir: &Path) -> String {
    ok(warden(dir, &["init", "--origin", "warden.test/cli"], None))
        .trim()
        .to_owned()
}

#[test]
fn round_trip_and_outside_verification() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("ledger");
    let vkey_text = init(&dir);
    let vkey = VerifierKey::parse(&vkey_text).unwrap();
    assert_eq!(ok(warden(&dir, &["key"], None)).trim(), vkey_text);
    {
        use std::os::unix::fs::PermissionsExt as _;
        let mode = std::fs::metadata(dir.join("signer.key"))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600, "the signing key is owner-only");
        let mode = std::fs::metadata(&dir).unwrap().permissions().mode();
        assert_eq!(mode & 0o077, 0, "the ledger directory is owner-only");
    }

    let digest = format!("sha256:{}", "ab".repeat(32));
    let one = ok(warden(
        &dir,
        &[
            "append",
            "--kind",
            "gate",
            "--actor",
            "gate:release",
            "--subject",
            &format!("model={digest}"),
            "--payload",
            r#"{"passed":true}"#,
            "--json",
        ],
        None,
    ));
    let one: Value = serde_json::from_str(one.trim()).unwrap();
    assert_eq!(one["index"], 0);
    let acks = ok(warden(&dir, &["append", "--json"], Some(&lines(40, 1))));
    let acks: Vec<Value> = acks
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(acks.len(), 40);
    assert_eq!(
        acks.iter()
            .map(|a| a["index"].as_u64().unwrap())
            .collect::<Vec<_>>(),
        (1..41).collect::<Vec<_>>()
    );

    let got: Value =
        serde_json::from_str(&ok(warden(&dir, &["get", "--index", "0", "--json"], None))).unwrap();
    assert_eq!(got["record"]["kind"], "gate");
    assert_eq!(got["record"]["subjects"][0]["digest"], digest);
    assert_eq!(got["leaf_hash"], one["leaf_hash"]);

    // The checkpoint is a signed note any C2SP verifier can open with the published key.
    let note = ok(warden(&dir, &["checkpoint"], None));
    let cp = Checkpoint::open(&note, &vkey).unwrap();
    assert_eq!((cp.origin.as_str(), cp.size), ("warden.test/cli", 41));
    assert_eq!(
        ok(warden(&dir, &["checkpoint"], None)),
        note,
        "byte-exact and stable while the log does not grow"
    );

    // The export is enough to recompute the root without Warden's storage.
    let export = ok(warden(&dir, &["export"], None));
    let mut leaves = Vec::new();
    for (i, line) in export.lines().enumerate() {
        let v: Value = serde_json::from_str(line).unwrap();
        assert_eq!(v["index"].as_u64(), Some(i as u64));
        let leaf = B64.decode(v["leaf"].as_str().unwrap()).unwrap();
        let h = merkle::leaf_hash(&leaf);
        assert_eq!(v["leaf_hash"].as_str().unwrap(), B64.encode(h));
        leaves.push(h);
    }
    assert_eq!(leaves.len(), 41);
    assert_eq!(naive_root(&leaves), cp.root);

    // Proofs in the RFC 6962 test-vector format, checked by the verifier of the vectors.
    let p: Value = serde_json::from_str(&ok(warden(
        &dir,
        &["prove", "--index", "7", "--size", "30"],
        None,
    )))
    .unwrap();
    let b = |v: &Value| B64.decode(v.as_str().unwrap()).unwrap();
    let proof: Vec<Vec<u8>> = p["proof"].as_array().unwrap().iter().map(b).collect();
    assert_eq!(b(&p["root"]), naive_root(&leaves[..30]).to_vec());
    verify_inclusion_bytes(&b(&p["leafHash"]), 7, 30, &proof, &b(&p["root"])).unwrap();
    let c: Value = serde_json::from_str(&ok(warden(
        &dir,
        &["prove", "--from", "13", "--to", "41"],
        None,
    )))
    .unwrap();
    let proof: Vec<Vec<u8>> = c["proof"].as_array().unwrap().iter().map(b).collect();
    assert_eq!(b(&c["root2"]), cp.root.to_vec());
    verify_consistency_bytes(13, 41, &proof, &b(&c["root1"]), &b(&c["root2"])).unwrap();

    // verify, with the auditor's pinned key and held checkpoint.
    let cp_file = tmp.path().join("cp.txt");
    std::fs::write(&cp_file, &note).unwrap();
    let report = ok(warden(
        &dir,
        &[
            "verify",
            "--json",
            "--key",
            &vkey_text,
            "--checkpoint",
            cp_file.to_str().unwrap(),
        ],
        None,
    ));
    let report: Value = serde_json::from_str(&report).unwrap();
    assert_eq!(report["ok"], true, "{report}");
    assert_eq!(report["records_checked"], 41);

    // The independent auditor script agrees, when Python is there to run it.
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../scripts/audit.py");
    if script.exists() && Command::new("python3").arg("--version").output().is_ok() {
        let export_file = tmp.path().join("export.jsonl");
        std::fs::write(&export_file, &export).unwrap();
        let out = Command::new("python3")
            .arg(&script)
            .args([
                "root",
                "--export",
                export_file.to_str().unwrap(),
                "--checkpoint",
                cp_file.to_str().unwrap(),
            ])
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "audit.py: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

fn naive_root(leaves: &[[u8; 32]]) -> [u8; 32] {
    match leaves.len() {
        0 => merkle::EMPTY_ROOT,
        1 => leaves[0],
        n => {
            let k = n.next_power_of_two() / 2;
            let k = if k == n { n / 2 } else { k };
            merkle::node_hash(&naive_root(&leaves[..k]), &naive_root(&leaves[k..]))
        }
    }
}

#[test]
fn bad_input_gets_clear_errors_and_harms_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("ledger");
    init(&dir);
    ok(warden(&dir, &["append"], Some(&lines(5, 0))));

    // A bad line stops the stream: what came before is kept, nothing after.
    let mut input = lines(3, 5);
    input.extend_from_slice(b"{\"kind\":\"decision\",\"actor\":\n");
    input.extend_from_slice(&lines(3, 8));
    fails(
        &warden(&dir, &["append"], Some(&input)),
        2,
        "stdin line 4: record is not valid JSON",
    );
    assert_eq!(size(&dir), 8);

    for (line, msg) in [
        (&b"{\"kind\":\"vibes\",\"actor\":\"a\"}\n"[..], "unknown record kind \"vibes\""),
        (b"{\"kind\":\"note\",\"actor\":\"a\",\"extra\":1}\n", "unknown field `extra`"),
        (b"[1,2,3]\n", "expected a JSON object"),
        (b"\xff\xfe{}\n", "not valid JSON"),
        (b"{\"kind\":\"note\",\"actor\":\"a\",\"payload\":{\"a\":[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[1]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]}}\n", "nesting"),
    ] {
        fails(&warden(&dir, &["append"], Some(line)), 2, msg);
    }
    let huge = format!(
        "{{\"kind\":\"note\",\"actor\":\"a\",\"payload\":{{\"x\":\"{}\"}}}}\n",
        "y".repeat(70_000)
    );
    fails(
        &warden(&dir, &["append"], Some(huge.as_bytes())),
        2,
        "the limit is 65536",
    );
    let endless = vec![b'x'; 1_200_000];
    fails(
        &warden(&dir, &["append"], Some(&endless)),
        2,
        "longer than 1048576 bytes",
    );
    fails(
        &warden(
            &dir,
            &[
                "append",
                "--kind",
                "note",
                "--actor",
                "a",
                "--payload",
                "{nope",
            ],
            None,
        ),
        2,
        "--payload is not valid JSON",
    );
    fails(
        &warden(
            &dir,
            &[
                "append",
                "--kind",
                "note",
                "--actor",
                "a",
                "--subject",
                "model=sha256:12",
            ],
            None,
        ),
        2,
        "field `subjects`",
    );
    assert_eq!(size(&dir), 8, "no bad record was stored");

    // Hostile arguments.
    fails(
        &warden(&dir, &["get", "--index", "99"], None),
        2,
        "index 99 is not below the tree size 8",
    );
    fails(
        &warden(&dir, &["prove", "--index", "3", "--size", "9"], None),
        2,
        "size 9 is larger than the tree size 8",
    );
    fails(
        &warden(&dir, &["prove", "--from", "0", "--to", "5"], None),
        2,
        "0 < from <= to",
    );
    fails(&warden(&dir, &["init"], None), 2, "a ledger already exists");
    fails(
        &warden(&dir, &["verify", "--key", "not-a-key"], None),
        2,
        "malformed verifier key",
    );

    // A key from another ledger is refused for signing, and as the trusted key verify reports failure.
    let other = tmp.path().join("other");
    let other_key = init(&other);
    std::fs::remove_file(dir.join("signer.key")).unwrap();
    std::fs::copy(other.join("signer.key"), dir.join("signer.key")).unwrap();
    fails(
        &warden(&dir, &["checkpoint"], None),
        2,
        "does not belong to this ledger",
    );
    let out = warden(&dir, &["verify", "--key", &other_key], None);
    assert_eq!(
        out.status.code(),
        Some(1),
        "verify with a foreign key fails"
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("does not verify"));

    // A signing key that others can read is refused.
    {
        use std::os::unix::fs::PermissionsExt as _;
        std::fs::set_permissions(
            dir.join("signer.key"),
            std::fs::Permissions::from_mode(0o644),
        )
        .unwrap();
    }
    fails(
        &warden(&dir, &["checkpoint"], None),
        2,
        "can be read by others",
    );

    // Something that is not a ledger.
    let not = tmp.path().join("not-a-ledger");
    std::fs::create_dir(&not).unwrap();
    std::fs::write(
        not.join("ledger.db"),
        b"just some text, not SQLite at all, long enough to look like a header........",
    )
    .unwrap();
    fails(
        &warden(&not, &["verify"], None),
        2,
        "is not a Warden ledger",
    );
    fails(
        &warden(&tmp.path().join("nowhere"), &["get", "--index", "0"], None),
        2,
        "no ledger at",
    );

    // And after all that, the ledger is intact.
    let report: Value =
        serde_json::from_str(&ok(warden(&dir, &["verify", "--json"], None))).unwrap();
    assert_eq!(report["ok"], true, "{report}");
}

fn size(dir: &Path) -> u64 {
    let v: Value = serde_json::from_str(&ok(warden(dir, &["verify", "--json"], None))).unwrap();
    v["records_checked"].as_u64().unwrap()
}

#[test]
fn payload_flags_refuse_duplicate_keys_like_every_other_path() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("ledger");
    init(&dir);
    let dup = r#"{"verdict":"allow","verdict":"block"}"#;
    fails(
        &warden(
            &dir,
            &[
                "append",
                "--kind",
                "decision",
                "--actor",
                "m",
                "--payload",
                dup,
            ],
            None,
        ),
        2,
        "duplicate key",
    );
    fails(
        &warden(
            &dir,
            &[
                "append",
                "--kind",
                "decision",
                "--actor",
                "m",
                "--payload",
                r#"{}, "kind": "gate""#,
            ],
            None,
        ),
        2,
        "--payload is not valid JSON",
    );
    let rec = format!(r#"{{"kind":"decision","actor":"m","payload":{dup}}}"#);
    fails(
        &warden(&dir, &["append", "--record", &rec], None),
        2,
        "duplicate key",
    );
    fails(
        &warden(&dir, &["append"], Some(format!("{rec}\n").as_bytes())),
        2,
        "duplicate key",
    );
    assert_eq!(size(&dir), 0);
}

#[test]
fn a_damaged_hash_does_not_stop_export_or_get() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("ledger");
    init(&dir);
    ok(warden(&dir, &["append"], Some(&lines(37, 0))));
    {
        let conn = rusqlite::Connection::open(dir.join("ledger.db")).unwrap();
        // The partial bottom tile (records 32..37), needed to open the ledger for appending.
        let n = conn
            .execute("UPDATE tiles SET data = zeroblob(160) WHERE id = 2", [])
            .unwrap();
        assert_eq!(n, 1);
    }
    let export = ok(warden(&dir, &["export"], None));
    assert_eq!(export.lines().count(), 37);
    let got: Value =
        serde_json::from_str(&ok(warden(&dir, &["get", "--index", "33"], None))).unwrap();
    assert_eq!(got["record"]["payload"]["seq"], 33);
    let out = warden(&dir, &["verify", "--json"], None);
    assert_eq!(out.status.code(), Some(1));
    let report: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(report["first_bad_index"], 32, "{report}");
    fails(
        &warden(&dir, &["append"], Some(&lines(1, 99))),
        2,
        "the stored hashes of records 32..37 do not match the records",
    );
    fails(
        &warden(&dir, &["prove", "--index", "3"], None),
        2,
        "the ledger is damaged",
    );
}
