//! `warden risk …` as a user meets it: init, check (exit status and file:line:column output), evidence
//! read safely from the register's directory, reports written, results recorded in the ledger.

#![allow(clippy::unwrap_used)] // Tests fail by panicking.

use std::path::Path;
use std::process::{Command, Output};

fn warden(dir: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_warden"))
        .current_dir(dir)
        .args(args)
        .env_remove("WARDEN_LEDGER")
        .output()
        .unwrap()
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

#[test]
fn init_check_report_and_record() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let o = warden(
        dir,
        &[
            "risk",
            "init",
            "--template",
            "image-classifier",
            "--name",
            "fmnist",
            "--owner",
            "ml@example.com",
        ],
    );
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let o = warden(dir, &["risk", "init", "--template", "rag"]);
    assert_eq!(o.status.code(), Some(2), "init must not overwrite");
    assert!(String::from_utf8_lossy(&o.stderr).contains("--force"));

    let o = warden(dir, &["risk", "check"]);
    assert_eq!(o.status.code(), Some(0), "{}", stdout(&o));
    assert!(stdout(&o).contains("ok: 10 risk(s)"), "{}", stdout(&o));

    // Attach evidence: one report that holds, then one that fails.
    let reg = std::fs::read_to_string(dir.join("risk-register.yaml")).unwrap();
    let with_evidence = reg.replace(
        "    warden: warden harden train\n",
        "    warden: warden harden train\n    evidence:\n      - file: reports/robustness.json\n        condition: robust_accuracy >= 0.70\n",
    );
    std::fs::write(dir.join("risk-register.yaml"), &with_evidence).unwrap();
    std::fs::create_dir(dir.join("reports")).unwrap();
    std::fs::write(
        dir.join("reports/robustness.json"),
        r#"{"robust_accuracy": 0.74}"#,
    )
    .unwrap();
    let o = warden(dir, &["risk", "check"]);
    assert_eq!(o.status.code(), Some(0), "{}", stdout(&o));
    assert!(
        stdout(&o).contains("(1 backed by evidence that holds)"),
        "{}",
        stdout(&o)
    );

    std::fs::write(
        dir.join("reports/robustness.json"),
        r#"{"robust_accuracy": 0.41}"#,
    )
    .unwrap();
    let o = warden(dir, &["risk", "check"]);
    assert_eq!(o.status.code(), Some(1));
    let line = with_evidence
        .lines()
        .position(|l| l.contains("condition: robust_accuracy"))
        .unwrap()
        + 1;
    let want = format!(
        "risk-register.yaml:{line}:20: error[evidence-failing]: control C-ADV-TRAIN: `robust_accuracy >= 0.70` does not hold in reports/robustness.json: value is 0.41"
    );
    assert!(stdout(&o).contains(&want), "want {want}\n{}", stdout(&o));

    // Evidence outside the register's directory is refused, not read.
    let escape = with_evidence.replace("file: reports/robustness.json", "file: ../../etc/passwd");
    std::fs::write(dir.join("risk-register.yaml"), escape).unwrap();
    let o = warden(dir, &["risk", "check"]);
    assert_eq!(o.status.code(), Some(1));
    assert!(
        stdout(&o).contains("must be relative to the register's directory"),
        "{}",
        stdout(&o)
    );
    std::fs::write(dir.join("risk-register.yaml"), &with_evidence).unwrap();
    std::fs::write(
        dir.join("reports/robustness.json"),
        r#"{"robust_accuracy": 0.9}"#,
    )
    .unwrap();

    // Reports.
    let o = warden(
        dir,
        &["risk", "report", "--format", "html", "-o", "report.html"],
    );
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let html = std::fs::read_to_string(dir.join("report.html")).unwrap();
    assert!(html.contains("Risk register: fmnist") && html.contains("<svg"));
    let o = warden(dir, &["risk", "report", "--format", "json"]);
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v["passed"], true);

    // Recorded in the ledger as evidence, naming the register by digest.
    let ledger = dir.join("ledger");
    assert!(
        warden(
            dir,
            &["ledger", "--ledger", ledger.to_str().unwrap(), "init"]
        )
        .status
        .success()
    );
    let o = warden(
        dir,
        &[
            "risk",
            "check",
            "--record",
            "--ledger",
            ledger.to_str().unwrap(),
        ],
    );
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let o = warden(
        dir,
        &[
            "ledger",
            "--ledger",
            ledger.to_str().unwrap(),
            "get",
            "--index",
            "0",
            "--json",
        ],
    );
    let got: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(got["record"]["kind"], "evidence");
    assert_eq!(got["record"]["payload"]["passed"], true);
    assert_eq!(got["record"]["subjects"][0]["name"], "register");
    assert_eq!(
        got["record"]["subjects"][0]["digest"],
        format!("sha256:{}", v["register_sha256"].as_str().unwrap())
    );
}

#[test]
fn schema_is_json_and_bad_files_get_clean_errors() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let o = warden(dir, &["risk", "schema"]);
    let schema: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(schema["properties"]["version"]["const"], 1);
    std::fs::write(dir.join("bad.yaml"), b"version: 1\nrisks: [\xff]\n").unwrap();
    let o = warden(dir, &["risk", "check", "bad.yaml"]);
    assert_eq!(o.status.code(), Some(1));
    assert!(
        stdout(&o).contains("bad.yaml:2:9: error[yaml]: file is not valid UTF-8"),
        "{}",
        stdout(&o)
    );
    let o = warden(dir, &["risk", "check", "missing.yaml"]);
    assert_eq!(o.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&o.stderr).contains("cannot open the register missing.yaml"));
    let o = warden(dir, &["risk", "check", "--today", "2026-13-01"]);
    assert_eq!(o.status.code(), Some(2));
}

#[test]
fn evidence_cannot_leave_the_register_directory() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("reg");
    let outside = tmp.path().join("outside");
    std::fs::create_dir_all(dir.join("reports")).unwrap();
    std::fs::create_dir_all(&outside).unwrap();
    std::fs::write(
        outside.join("secret.json"),
        r#"{"api_key": "TOPSECRET-123"}"#,
    )
    .unwrap();
    std::os::unix::fs::symlink(outside.join("secret.json"), dir.join("reports/link.json")).unwrap();
    std::os::unix::fs::symlink(&outside, dir.join("reports/dirlink")).unwrap();
    let status = Command::new("mkfifo")
        .arg(dir.join("reports/fifo.json"))
        .status()
        .unwrap();
    assert!(status.success());
    assert!(
        warden(&dir, &["risk", "init", "--template", "image-classifier"])
            .status
            .success()
    );
    let reg = std::fs::read_to_string(dir.join("risk-register.yaml")).unwrap();
    for file in [
        "reports/link.json",
        "reports/dirlink/secret.json",
        "reports/fifo.json",
    ] {
        let text = reg.replace(
            "    warden: warden harden train\n",
            &format!("    warden: warden harden train\n    evidence:\n      - file: {file}\n        condition: api_key == \"x\"\n"),
        );
        std::fs::write(dir.join("risk-register.yaml"), text).unwrap();
        let o = warden(&dir, &["risk", "check"]);
        assert_eq!(o.status.code(), Some(1), "{file}");
        let out = stdout(&o);
        assert!(
            !out.contains("TOPSECRET"),
            "{file}: the secret leaked: {out}"
        );
        assert!(out.contains("error[evidence-missing]"), "{file}: {out}");
        assert!(
            out.contains("outside the register's directory") || out.contains("not a regular file"),
            "{file}: {out}"
        );
    }
}
