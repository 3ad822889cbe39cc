//! Distribution-shift sets made from a test set: corruptions in the style of MNIST-C (Mu and Gilmer,
//! 2019) and ImageNet-C (Hendrycks and Dietterich, 2019), each at five graded severities, so that
//! "robust to shift" is measured and not assumed. The severity parameters are ours, chosen for 28 × 28
//! grey-scale images so that severity 1 is barely visible and severity 5 is hard for a person.
//! On images of other sizes the two measured in pixels (blur's sigma, the translation) scale with
//! the image's larger side over 28; on images with several channels, a geometric corruption or a
//! blur moves every channel alike, contrast pulls each channel towards its own mean (as
//! ImageNet-C's does), and noise is drawn for every value.
//!
//! Every corruption is deterministic for a (seed, corruption, image index): the same set comes out on
//! every machine.

use serde::Serialize;

use crate::data::Dataset;
use crate::rng::Rng;

/// A kind of corruption.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Corruption {
    GaussianNoise,
    ShotNoise,
    ImpulseNoise,
    GaussianBlur,
    Contrast,
    Brightness,
    Rotate,
    Translate,
    Shear,
    Scale,
}

impl Corruption {
    /// Every corruption.
    pub const ALL: [Corruption; 10] = [
        Corruption::GaussianNoise,
        Corruption::ShotNoise,
        Corruption::ImpulseNoise,
        Corruption::GaussianBlur,
        Corruption::Contrast,
        Corruption::Brightness,
        Corruption::Rotate,
        Corruption::Translate,
        Corruption::Shear,
        Corruption::Scale,
    ];

    /// The corruption's name, as in reports.
    pub fn name(self) -> &'static str {
        match self {
            Corruption::GaussianNoise => "gaussian-noise",
            Corruption::ShotNoise => "shot-noise",
            Corruption::ImpulseNoise => "impulse-noise",
            Corruption::GaussianBlur => "gaussian-blur",
            Corruption::Contrast => "contrast",
            Corruption::Brightness => "brightness",
            Corruption::Rotate => "rotate",
            Corruption::Translate => "translate",
            Corruption::Shear => "shear",
            Corruption::Scale => "scale",
        }
    }

    /// Parses a name.
    pub fn parse(s: &str) -> Option<Corruption> {
        Corruption::ALL.into_iter().find(|c| c.name() == s)
    }

    /// The parameter applied at `severity` to images of `rows × cols`: [`Corruption::parameter`],
    /// with blur's sigma and the translation (measured in pixels, chosen for 28 × 28) scaled by
    /// the image's larger side over 28.
    pub fn parameter_for(self, severity: u8, rows: usize, cols: usize) -> f32 {
        let p = self.parameter(severity);
        match self {
            Corruption::GaussianBlur | Corruption::Translate => p * (rows.max(cols) as f32 / 28.0),
            _ => p,
        }
    }

    /// The parameter at `severity` (1 to 5; clamped), as chosen for 28 × 28 images.
    pub fn parameter(self, severity: u8) -> f32 {
        let table: [f32; 5] = match self {
            Corruption::GaussianNoise => [0.08, 0.12, 0.18, 0.26, 0.38], // noise standard deviation
            Corruption::ShotNoise => [60.0, 25.0, 12.0, 5.0, 3.0],       // photons at full white
            Corruption::ImpulseNoise => [0.03, 0.06, 0.09, 0.17, 0.27],  // fraction of pixels hit
            Corruption::GaussianBlur => [0.6, 0.8, 1.0, 1.3, 1.6],       // blur sigma, pixels
            Corruption::Contrast => [0.6, 0.45, 0.3, 0.2, 0.1],          // contrast kept
            Corruption::Brightness => [0.1, 0.2, 0.3, 0.4, 0.5],         // added to every pixel
            Corruption::Rotate => [6.0, 12.0, 18.0, 24.0, 30.0],         // degrees, random sign
            Corruption::Translate => [1.0, 2.0, 3.0, 4.0, 5.0],          // pixels, random direction
            Corruption::Shear => [0.1, 0.2, 0.3, 0.4, 0.5], // horizontal shear, random sign
            Corruption::Scale => [0.9, 0.8, 0.7, 0.6, 0.5], // zoom out factor
        };
        table[usize::from(severity.clamp(1, 5)) - 1]
    }

    fn id(self) -> u64 {
        Corruption::ALL.iter().position(|c| *c == self).unwrap_or(0) as u64
    }
}

/// Applies `c` at `severity` to one image of `channels` planes of `rows × cols` values in
/// `[0, 1]`, channel-first.
pub fn apply(
    c: Corruption,
    severity: u8,
    img: &[f32],
    channels: usize,
    rows: usize,
    cols: usize,
    rng: &mut Rng,
) -> Vec<f32> {
    let p = c.parameter_for(severity, rows, cols);
    let plane = rows * cols;
    // The same geometric transform of every channel.
    let planes = |f: &dyn Fn(&[f32]) -> Vec<f32>| -> Vec<f32> {
        img.chunks_exact(plane.max(1))
            .take(channels)
            .flat_map(f)
            .collect()
    };
    let out: Vec<f32> = match c {
        Corruption::GaussianNoise => img.iter().map(|&x| x + p * rng.normal() as f32).collect(),
        Corruption::ShotNoise => img
            .iter()
            .map(|&x| rng.poisson(f64::from(x * p)) as f32 / p)
            .collect(),
        Corruption::ImpulseNoise => img
            .iter()
            .map(|&x| {
                if rng.uniform() < f64::from(p) {
                    if rng.uniform() < 0.5 { 0.0 } else { 1.0 }
                } else {
                    x
                }
            })
            .collect(),
        Corruption::GaussianBlur => planes(&|im| blur(im, rows, cols, p)),
        // Towards each channel's own mean, as ImageNet-C's contrast.
        Corruption::Contrast => planes(&|im| {
            let mean = im.iter().sum::<f32>() / im.len().max(1) as f32;
            im.iter().map(|&x| (x - mean) * p + mean).collect()
        }),
        Corruption::Brightness => img.iter().map(|&x| x + p).collect(),
        Corruption::Rotate => {
            let a = p.to_radians() * if rng.uniform() < 0.5 { -1.0 } else { 1.0 };
            let (s, co) = a.sin_cos();
            planes(&|im| warp(im, rows, cols, [co, s, -s, co], [0.0, 0.0]))
        }
        Corruption::Translate => {
            let angle = rng.uniform() as f32 * std::f32::consts::TAU;
            let (dy, dx) = (p * angle.sin(), p * angle.cos());
            planes(&|im| {
                warp(
                    im,
                    rows,
                    cols,
                    [1.0, 0.0, 0.0, 1.0],
                    [-dx.round(), -dy.round()],
                )
            })
        }
        Corruption::Shear => {
            let k = p * if rng.uniform() < 0.5 { -1.0 } else { 1.0 };
            planes(&|im| warp(im, rows, cols, [1.0, k, 0.0, 1.0], [0.0, 0.0]))
        }
        Corruption::Scale => {
            planes(&|im| warp(im, rows, cols, [1.0 / p, 0.0, 0.0, 1.0 / p], [0.0, 0.0]))
        }
    };
    out.into_iter().map(|x| x.clamp(0.0, 1.0)).collect()
}

/// Samples the image at `m · (x, y) + t` around the centre, bilinearly, black outside.
fn warp(img: &[f32], rows: usize, cols: usize, m: [f32; 4], t: [f32; 2]) -> Vec<f32> {
    let (cy, cx) = ((rows as f32 - 1.0) / 2.0, (cols as f32 - 1.0) / 2.0);
    let at = |y: isize, x: isize| -> f32 {
        if y < 0 || x < 0 || y >= rows as isize || x >= cols as isize {
            0.0
        } else {
            img[y as usize * cols + x as usize]
        }
    };
    let mut out = vec![0.0; rows * cols];
    for y in 0..rows {
        for x in 0..cols {
            let (u, v) = (x as f32 - cx, y as f32 - cy);
            let sx = m[0] * u + m[1] * v + cx + t[0];
            let sy = m[2] * u + m[3] * v + cy + t[1];
            let (x0, y0) = (sx.floor(), sy.floor());
            let (fx, fy) = (sx - x0, sy - y0);
            let (x0, y0) = (x0 as isize, y0 as isize);
            out[y * cols + x] = at(y0, x0) * (1.0 - fx) * (1.0 - fy)
                + at(y0, x0 + 1) * fx * (1.0 - fy)
                + at(y0 + 1, x0) * (1.0 - fx) * fy
                + at(y0 + 1, x0 + 1) * fx * fy;
        }
    }
    out
}

/// Separable Gaussian blur with edge clamping.
fn blur(img: &[f32], rows: usize, cols: usize, sigma: f32) -> Vec<f32> {
    let r = (3.0 * sigma).ceil() as isize;
    let mut k: Vec<f32> = (-r..=r)
        .map(|i| (-((i * i) as f32) / (2.0 * sigma * sigma)).exp())
        .collect();
    let sum: f32 = k.iter().sum();
    k.iter_mut().for_each(|w| *w /= sum);
    let clamp = |v: isize, n: usize| v.clamp(0, n as isize - 1) as usize;
    let mut tmp = vec![0.0; rows * cols];
    for y in 0..rows {
        for x in 0..cols {
            tmp[y * cols + x] = (-r..=r)
                .map(|i| k[(i + r) as usize] * img[y * cols + clamp(x as isize + i, cols)])
                .sum();
        }
    }
    let mut out = vec![0.0; rows * cols];
    for y in 0..rows {
        for x in 0..cols {
            out[y * cols + x] = (-r..=r)
                .map(|i| k[(i + r) as usize] * tmp[clamp(y as isize + i, rows) * cols + x])
                .sum();
        }
    }
    out
}

/// The corrupted copy of a whole dataset, pixels rounded back to bytes. Deterministic for `seed`.
pub fn corrupt_dataset(data: &Dataset, c: Corruption, severity: u8, seed: u64) -> Dataset {
    let mut images = Vec::with_capacity(data.images.len());
    for i in 0..data.len() {
        let mut rng = Rng::stream(seed, c.id() * 8 + u64::from(severity), i as u64);
        let out = apply(
            c,
            severity,
            &data.image_f32(i),
            data.channels,
            data.rows,
            data.cols,
            &mut rng,
        );
        images.extend(out.into_iter().map(|x| (x * 255.0).round() as u8));
    }
    Dataset {
        name: format!("{}/{}-{}", data.name, c.name(), severity.clamp(1, 5)),
        channels: data.channels,
        rows: data.rows,
        cols: data.cols,
        images,
        labels: data.labels.clone(),
        sources: data.sources.clone(),
    }
}
