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

/// A colour image is corrupted plane by plane with one draw of the random parameters: an image
/// whose three channels are the same grey image comes out as three copies of that grey image's
/// corruption, for the geometric corruptions, the blur and the global ones (noise is drawn per
/// value, so only its statistics carry over).
#[test]
fn colour_images_move_every_channel_alike() {
    let grey = sample().subset(&(0..20).collect::<Vec<_>>(), "grey");
    let plane = grey.rows * grey.cols;
    let mut colour = grey.clone();
    colour.channels = 3;
    colour.images = grey
        .images
        .chunks_exact(plane)
        .flat_map(|img| img.iter().chain(img).chain(img).copied())
        .collect();
    assert_ne!(colour.digest(), grey.digest());
    for c in [
        Corruption::GaussianBlur,
        Corruption::Contrast,
        Corruption::Brightness,
        Corruption::Rotate,
        Corruption::Translate,
        Corruption::Shear,
        Corruption::Scale,
    ] {
        let g = corrupt::corrupt_dataset(&grey, c, 4, 3);
        let k = corrupt::corrupt_dataset(&colour, c, 4, 3);
        assert_eq!(k.shape(), [3, 28, 28]);
        for (gi, ki) in g
            .images
            .chunks_exact(plane)
            .zip(k.images.chunks_exact(3 * plane))
        {
            for ch in ki.chunks_exact(plane) {
                assert_eq!(ch, gi, "{}", c.name());
            }
        }
    }
    // Noise: each value its own draw, so the channels differ, by about as much as grey values do.
    let k = corrupt::corrupt_dataset(&colour, Corruption::GaussianNoise, 3, 3);
    let g = corrupt::corrupt_dataset(&grey, Corruption::GaussianNoise, 3, 3);
    let differing = k
        .images
        .chunks_exact(3 * plane)
        .filter(|img| img[..plane] != img[plane..2 * plane])
        .count();
    assert_eq!(differing, 20);
    let (dg, dk) = (mean_abs_diff(&grey, &g), mean_abs_diff(&colour, &k));
    assert!((dk / dg - 1.0).abs() < 0.1, "{dg} {dk}");
}
