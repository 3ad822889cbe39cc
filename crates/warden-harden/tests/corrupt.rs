//! Corruptions on real Fashion-MNIST test images: deterministic, within bounds, and graded: the
//! average change from the clean image grows with the severity, for every corruption.

#![allow(clippy::unwrap_used, clippy::print_stderr)] // Tests fail by panicking.

use std::path::PathBuf;

use warden_harden::corrupt::{self, Corruption};
use warden_harden::data::{self, Split};

fn sample() -> warden_harden::Dataset {
    let dir = PathBuf::from(
        std::env::var("WARDEN_FASHION_MNIST").unwrap_or_else(|_| data::FASHION_MNIST_DIR.into()),
    );
    let test = data::load_fashion_mnist(&dir, Split::Test).unwrap();
    test.subset(&(0..200).collect::<Vec<_>>(), "sample")
}

fn mean_abs_diff(a: &warden_harden::Dataset, b: &warden_harden::Dataset) -> f64 {
    a.images
        .iter()
        .zip(&b.images)
        .map(|(x, y)| f64::from(x.abs_diff(*y)))
        .sum::<f64>()
        / a.images.len() as f64
}

#[test]
fn every_corruption_is_deterministic_and_graded() {
    let clean = sample();
    for c in Corruption::ALL {
        let mut last = 0.0;
        let mut line = format!("{:15}", c.name());
        for severity in 1..=5 {
            let a = corrupt::corrupt_dataset(&clean, c, severity, 7);
            let b = corrupt::corrupt_dataset(&clean, c, severity, 7);
            assert_eq!(
                a.images,
                b.images,
                "{} {severity} is not deterministic",
                c.name()
            );
            assert_eq!(a.labels, clean.labels);
            let d = mean_abs_diff(&clean, &a);
            line.push_str(&format!(" {d:6.2}"));
            assert!(
                d > last,
                "{} severity {severity} changes images less ({d:.2}) than severity {} ({last:.2})",
                c.name(),
                severity - 1
            );
            last = d;
        }
        eprintln!("{line}");
        assert_ne!(
            corrupt::corrupt_dataset(&clean, c, 3, 7).digest(),
            clean.digest()
        );
    }
}

#[test]
fn geometric_corruptions_keep_the_content_on_the_canvas() {
    let clean = sample();
    let ink =
        |d: &warden_harden::Dataset| d.images.iter().map(|&p| u64::from(p)).sum::<u64>() as f64;
    for c in [Corruption::Rotate, Corruption::Translate, Corruption::Shear] {
        let r = ink(&corrupt::corrupt_dataset(&clean, c, 1, 1)) / ink(&clean);
        assert!(
            (0.85..1.1).contains(&r),
            "{}: ink ratio {r:.3} at severity 1",
            c.name()
        );
    }
    assert_eq!(
        Corruption::parse("gaussian-blur"),
        Some(Corruption::GaussianBlur)
    );
    assert_eq!(Corruption::parse("fog"), None);
}
