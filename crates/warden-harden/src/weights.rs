//! Weights as safetensors, with PyTorch's parameter names and layouts, so that
//! `nn.Sequential(...).load_state_dict(safetensors.torch.load_file(path))` loads a Warden model
//! into the equivalent PyTorch module (names are `"{layer index}.weight"` / `".bias"`).
//!
//! Two tensors differ in layout from Warden's internal one and are permuted here: convolution
//! weights (`[Cout, Cin, kh, kw]` in the file) and the first linear layer after flattening a
//! multi-channel image (its columns in PyTorch's channel-first order).
//!
//! The reader treats the file as hostile: sizes are checked before anything is allocated, every
//! tensor must be F32 with exactly the shape the architecture expects, offsets must lie inside the
//! data and not overlap, and names that the architecture does not have are refused.

use std::collections::BTreeMap;

use serde::Deserialize;

use crate::nn::{Arch, Model, ParamKind};

/// Largest header accepted (the format's own limit is 100 MB).
pub const MAX_HEADER: u64 = 1 << 24;

/// Why a weight file was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WeightsError {
    #[error("not a safetensors file: {0}")]
    Format(String),
    #[error("tensor {name}: {reason}")]
    Tensor { name: String, reason: String },
    #[error("the file's architecture does not match: {0}")]
    Arch(String),
}

/// The two layouts differ by a transpose inside every output row: Warden's row is an `a × b`
/// matrix (`[kh·kw, Cin]` of a convolution, `[H·W, C]` of a linear layer fed by a flattened image)
/// where PyTorch's is `b × a`. None when the layouts agree.
fn row_blocks(kind: ParamKind) -> Option<(usize, usize)> {
    match kind {
        ParamKind::ConvWeight { k, cin, .. } => Some((k * k, cin)),
        ParamKind::LinearWeightImage { c, h, w, .. } => Some((h * w, c)),
        ParamKind::Plain => None,
    }
}

/// Every consecutive `a × b` block of `src`, transposed to `b × a`: PyTorch's `C × H·W` layout
/// to Warden's channels-last `H·W × C` with `(a, b) = (C, H·W)`, and back with `(H·W, C)`.
pub fn transpose_blocks(src: &[f32], a: usize, b: usize) -> Vec<f32> {
    let mut out = vec![0.0f32; src.len()];
    for (from, to) in src.chunks_exact(a * b).zip(out.chunks_exact_mut(a * b)) {
        for i in 0..a {
            for j in 0..b {
                to[j * a + i] = from[i * b + j];
            }
        }
    }
    out
}

fn to_torch(kind: ParamKind, ours: &[f32]) -> Vec<f32> {
    match row_blocks(kind) {
        Some((a, b)) => transpose_blocks(ours, a, b),
        None => ours.to_vec(),
    }
}

fn from_torch(kind: ParamKind, theirs: &[f32]) -> Vec<f32> {
    match row_blocks(kind) {
        Some((a, b)) => transpose_blocks(theirs, b, a),
        None => theirs.to_vec(),
    }
}

/// Every parameter in PyTorch's layout, in [`Model::param_infos`] order.
pub fn torch_layout(model: &Model) -> Vec<Vec<f32>> {
    model
        .param_infos()
        .iter()
        .zip(model.params())
        .map(|(info, p)| to_torch(info.kind, p))
        .collect()
}

/// Replaces every parameter of `model` with `params`, given in PyTorch's layout and in
/// [`Model::param_infos`] order (what [`torch_layout`] gives). Counts, sizes and finiteness are
/// checked first; on error the model is unchanged.
pub fn set_torch_layout(model: &mut Model, params: &[Vec<f32>]) -> Result<(), WeightsError> {
    let infos = model.param_infos();
    if params.len() != infos.len() {
        return Err(WeightsError::Arch(format!(
            "{} tensors for {} parameters",
            params.len(),
            infos.len()
        )));
    }
    for (info, p) in infos.iter().zip(params) {
        let numel: usize = info.torch_shape.iter().product();
        let bad = |reason: String| WeightsError::Tensor {
            name: info.name.clone(),
            reason,
        };
        if p.len() != numel {
            return Err(bad(format!("{} values, the shape needs {numel}", p.len())));
        }
        if p.iter().any(|v| !v.is_finite()) {
            return Err(bad("holds NaN or infinite values".into()));
        }
    }
    let converted: Vec<Vec<f32>> = infos
        .iter()
        .zip(params)
        .map(|(info, p)| from_torch(info.kind, p))
        .collect();
    model.params_mut().clone_from_slice(&converted);
    Ok(())
}

/// The model's weights as a safetensors file. The architecture is stored in the metadata
/// (`warden.arch`, JSON) with any extra `metadata` given.
pub fn to_safetensors(model: &Model, metadata: &BTreeMap<String, String>) -> Vec<u8> {
    let mut header = serde_json::Map::new();
    let mut meta: serde_json::Map<String, serde_json::Value> = metadata
        .iter()
        .map(|(k, v)| (k.clone(), v.clone().into()))
        .collect();
    meta.insert("format".into(), "pt".into());
    meta.insert(
        "warden.arch".into(),
        serde_json::to_string(model.arch())
            .unwrap_or_default()
            .into(),
    );
    header.insert("__metadata__".into(), meta.into());
    let mut data = Vec::with_capacity(model.param_count() * 4);
    for (info, p) in model.param_infos().iter().zip(model.params()) {
        let start = data.len();
        for v in to_torch(info.kind, p) {
            data.extend_from_slice(&v.to_le_bytes());
        }
        header.insert(
            info.name.clone(),
            serde_json::json!({"dtype": "F32", "shape": info.torch_shape, "data_offsets": [start, data.len()]}),
        );
    }
    let mut h = serde_json::Value::Object(header).to_string().into_bytes();
    // Pad the header with spaces so the data starts 8-byte aligned, as the format recommends.
    while !h.len().is_multiple_of(8) {
        h.push(b' ');
    }
    let mut out = Vec::with_capacity(8 + h.len() + data.len());
    out.extend_from_slice(&(h.len() as u64).to_le_bytes());
    out.extend_from_slice(&h);
    out.extend_from_slice(&data);
    out
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Entry {
    dtype: String,
    shape: Vec<u64>,
    data_offsets: [u64; 2],
}

/// The architecture stored in a Warden safetensors file's metadata, if any.
pub fn arch_of(bytes: &[u8]) -> Result<Option<Arch>, WeightsError> {
    let (header, _) = split(bytes)?;
    let Some(meta) = header.get("__metadata__") else {
        return Ok(None);
    };
    let Some(arch) = meta.get("warden.arch").and_then(|v| v.as_str()) else {
        return Ok(None);
    };
    serde_json::from_str(arch)
        .map(Some)
        .map_err(|e| WeightsError::Arch(format!("warden.arch metadata: {e}")))
}

fn split(
    bytes: &[u8],
) -> Result<(serde_json::Map<String, serde_json::Value>, &[u8]), WeightsError> {
    let fmt = |s: &str| WeightsError::Format(s.into());
    let Some((len, rest)) = bytes.split_first_chunk::<8>() else {
        return Err(fmt("shorter than 8 bytes"));
    };
    let n = u64::from_le_bytes(*len);
    if n > MAX_HEADER || n > rest.len() as u64 {
        return Err(fmt("header length out of range"));
    }
    let (h, data) = rest.split_at(n as usize);
    let header: serde_json::Value =
        serde_json::from_slice(h).map_err(|e| WeightsError::Format(format!("header: {e}")))?;
    match header {
        serde_json::Value::Object(m) => Ok((m, data)),
        _ => Err(fmt("header is not a JSON object")),
    }
}

/// Sets parameter `index` of `model` from a tensor in PyTorch's layout, checking its shape and
/// values.
pub(crate) fn set_from_torch(
    model: &mut Model,
    index: usize,
    shape: &[u64],
    data: Vec<f32>,
) -> Result<(), WeightsError> {
    let info = model.param_infos()[index].clone();
    let bad = |reason: String| WeightsError::Tensor {
        name: info.name.clone(),
        reason,
    };
    let want: Vec<u64> = info.torch_shape.iter().map(|&d| d as u64).collect();
    if shape != want.as_slice() {
        return Err(bad(format!(
            "shape {shape:?}, the architecture needs {want:?}"
        )));
    }
    if data.len() != info.torch_shape.iter().product::<usize>() {
        return Err(bad(format!("{} values", data.len())));
    }
    if data.iter().any(|v| !v.is_finite()) {
        return Err(bad("holds NaN or infinite values".into()));
    }
    model.params_mut()[index] = from_torch(info.kind, &data);
    Ok(())
}

/// Loads weights for `arch` from a safetensors file in PyTorch layout.
pub fn from_safetensors(arch: &Arch, bytes: &[u8]) -> Result<Model, WeightsError> {
    let mut model = Model::zeros(arch).map_err(|e| WeightsError::Arch(e.to_string()))?;
    let (mut header, data) = split(bytes)?;
    header.remove("__metadata__");
    let infos = model.param_infos().to_vec();
    let mut ranges = Vec::new();
    for (i, info) in infos.iter().enumerate() {
        let bad = |reason: String| WeightsError::Tensor {
            name: info.name.clone(),
            reason,
        };
        let entry = header
            .remove(&info.name)
            .ok_or_else(|| bad("missing".into()))?;
        let e: Entry = serde_json::from_value(entry).map_err(|e| bad(format!("entry: {e}")))?;
        if e.dtype != "F32" {
            return Err(bad(format!("dtype {} (F32 expected)", e.dtype)));
        }
        let want: Vec<u64> = info.torch_shape.iter().map(|&d| d as u64).collect();
        if e.shape != want {
            return Err(bad(format!(
                "shape {:?}, the architecture needs {want:?}",
                e.shape
            )));
        }
        let [start, end] = e.data_offsets;
        let numel: u64 = want.iter().product();
        if start > end || end > data.len() as u64 || end - start != numel * 4 {
            return Err(bad(format!(
                "data offsets [{start}, {end}] do not hold {numel} F32 values in {} bytes",
                data.len()
            )));
        }
        ranges.push((start, end, i));
        let theirs: Vec<f32> = data[start as usize..end as usize]
            .chunks_exact(4)
            .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
            .collect();
        if theirs.iter().any(|v| !v.is_finite()) {
            return Err(bad("holds NaN or infinite values".into()));
        }
        model.params_mut()[i] = from_torch(info.kind, &theirs);
    }
    if let Some(name) = header.keys().next() {
        return Err(WeightsError::Tensor {
            name: name.clone(),
            reason: "not a parameter of this architecture".into(),
        });
    }
    ranges.sort_unstable();
    for w in ranges.windows(2) {
        if w[1].0 < w[0].1 {
            return Err(WeightsError::Format("tensors overlap".into()));
        }
    }
    Ok(model)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn torch_layout_sets_back_and_refuses_bad_tensors() {
        let m = Model::init(&Arch::cnn4(), 3).unwrap();
        let torch = torch_layout(&m);
        // The convolution weight is permuted, the bias is not.
        assert_ne!(torch[2], m.params()[2]);
        assert_eq!(torch[1], m.params()[1]);
        let mut back = Model::zeros(&Arch::cnn4()).unwrap();
        set_torch_layout(&mut back, &torch).unwrap();
        assert_eq!(back.params(), m.params());
        let mut short = torch.clone();
        short[0].pop();
        assert!(set_torch_layout(&mut back, &short).is_err());
        let mut nan = torch.clone();
        nan[3][0] = f32::NAN;
        assert!(set_torch_layout(&mut back, &nan).is_err());
        assert!(set_torch_layout(&mut back, &torch[1..]).is_err());
        assert_eq!(back.params(), m.params(), "a refused call changes nothing");
    }

    #[test]
    fn round_trips_and_uses_pytorch_layout() {
        let m = Model::init(&Arch::small_cnn(), 9).unwrap();
        let bytes = to_safetensors(&m, &BTreeMap::new());
        let back = from_safetensors(&Arch::small_cnn(), &bytes).unwrap();
        assert_eq!(back.params(), m.params());
        assert_eq!(arch_of(&bytes).unwrap(), Some(Arch::small_cnn()));
        // PyTorch's conv weight [o][ci][ky][kx] for o=1, ci=0, ky=2, kx=1 is Warden's [1][2][1][0].
        let (header, data) = split(&bytes).unwrap();
        let off = header["0.weight"]["data_offsets"][0].as_u64().unwrap() as usize;
        let at = off + 4 * (9 + 2 * 3 + 1);
        let v = f32::from_le_bytes(data[at..at + 4].try_into().unwrap());
        assert_eq!(v, m.params()[0][9 + (2 * 3 + 1)]);
        // Second conv: PyTorch [o=2][ci=5][ky=1][kx=2] is Warden's [2][1][2][5].
        let off = header["3.weight"]["data_offsets"][0].as_u64().unwrap() as usize;
        let at = off + 4 * (((2 * 32 + 5) * 3 + 1) * 3 + 2);
        let v = f32::from_le_bytes(data[at..at + 4].try_into().unwrap());
        assert_eq!(v, m.params()[2][((2 * 3 + 1) * 3 + 2) * 32 + 5]);
        // First linear layer: PyTorch column (c=5, h=1, w=2) of row 3 is Warden's column (1·5+2)·64+5.
        let off = header["7.weight"]["data_offsets"][0].as_u64().unwrap() as usize;
        let at = off + 4 * (3 * 1600 + 5 * 25 + 5 + 2);
        let v = f32::from_le_bytes(data[at..at + 4].try_into().unwrap());
        assert_eq!(v, m.params()[4][3 * 1600 + 7 * 64 + 5]);
    }

    #[test]
    fn refuses_hostile_files() {
        let arch = Arch::small_cnn();
        let m = Model::init(&arch, 9).unwrap();
        let good = to_safetensors(&m, &BTreeMap::new());
        assert!(from_safetensors(&arch, &good[..7]).is_err());
        assert!(
            from_safetensors(&arch, &good[..good.len() - 4]).is_err(),
            "truncated data"
        );
        let mut huge = good.clone();
        huge[..8].copy_from_slice(&u64::MAX.to_le_bytes());
        assert!(from_safetensors(&arch, &huge).is_err());
        let edit = |from: &str, to: &str| {
            let n = u64::from_le_bytes(good[..8].try_into().unwrap()) as usize;
            let h = String::from_utf8(good[8..8 + n].to_vec())
                .unwrap()
                .replacen(from, to, 1);
            let mut out = (h.len() as u64).to_le_bytes().to_vec();
            out.extend_from_slice(h.as_bytes());
            out.extend_from_slice(&good[8 + n..]);
            from_safetensors(&arch, &out)
        };
        assert!(edit("\"F32\"", "\"F16\"").is_err());
        assert!(edit("[32,1,3,3]", "[32,3,3,1]").is_err());
        assert!(
            edit("\"0.bias\"", "\"0.bias_\"").is_err(),
            "missing and unknown names"
        );
        assert!(matches!(
            edit("\"data_offsets\":[0,", "\"data_offsets\":[4,"),
            Err(WeightsError::Tensor { .. })
        ));
        let mut nan = good.clone();
        let l = nan.len();
        nan[l - 4..].copy_from_slice(&f32::NAN.to_le_bytes());
        assert!(from_safetensors(&arch, &nan).is_err());
        assert!(
            from_safetensors(&Arch::mlp(&[8]), &good).is_err(),
            "another architecture"
        );
    }
}
