//! Import of ONNX image classifiers for evaluation (a user's PyTorch model exported with
//! `torch.onnx.export`), white-box: a graph of the layers Warden's engine has (`Conv`, grouped
//! or depthwise too, `Relu`, `Clip` between 0 and 6 (ReLU6), `Tanh`, `Elu`, SiLU (`x · Sigmoid(x)`), `MaxPool`, `AveragePool`, `GlobalAveragePool`, `Flatten` or `Reshape` to
//! `[N, -1]`, `Gemm`, or `MatMul` with an optional `Add`), in a chain or in residual blocks (a
//! value read by two branches that meet in an `Add` of the two, as in a ResNet) and gates (a
//! value times what a branch computes from it, a `Mul`: squeeze-and-excitation, as in
//! EfficientNet; `Sigmoid` allowed, and in a residual body too), becomes an
//! [`Arch`] and a [`Model`] with the same weights, so every attack, gradient-based ones included,
//! runs on it. `Constant` nodes are constants, the shape computation PyTorch writes for
//! `x.view(x.size(0), -1)` under a dynamic batch is recognised as flattening, and weights kept in
//! files beside the model (PyTorch's default exporter) are read through [`import_with`]. What an
//! exported inference graph adds around them is taken too: `BatchNormalization` right after a
//! `Conv` or `Gemm` is folded into its weights (elsewhere it becomes an affine layer: a scale and
//! a shift per channel, as in pre-activation blocks), `Dropout` and `Identity` pass through, and a final
//! `Softmax` or `LogSoftmax` is dropped so that attacks work on logits. Anything else is refused
//! with the operator named.
//!
//! The file is parsed with a small protobuf reader of the fields used here (unknown fields are
//! skipped by wire type), with limits: no groups, lengths inside the buffer, at most 10,000 nodes
//! and [`MAX_PARAMS`] values per tensor, float32 tensors only, no external data.

use std::collections::HashMap;

use crate::nn::{Arch, LayerSpec, MAX_PARAMS, Model};
use crate::weights::{WeightsError, set_from_torch};

/// Why an ONNX file was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum OnnxError {
    #[error("not a valid ONNX protobuf: {0}")]
    Format(String),
    #[error("unsupported ONNX graph: {0}")]
    Unsupported(String),
    /// Weights kept in a file beside the model that could not be read, or named outside the
    /// model's directory.
    #[error("ONNX external data: {0}")]
    External(String),
    #[error(transparent)]
    Weights(#[from] WeightsError),
}

const MAX_NODES: usize = 10_000;
/// Largest pooling window imported.
const MAX_POOL: i64 = 64;
/// Largest `group` of a Conv.
const MAX_GROUPS: i64 = 1 << 16;

enum Val<'a> {
    Varint(u64),
    Bytes(&'a [u8]),
    Fixed32(u32),
    Fixed64,
}

struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
}

fn bad(s: &str) -> OnnxError {
    OnnxError::Format(s.into())
}

impl<'a> Reader<'a> {
    fn new(buf: &'a [u8]) -> Reader<'a> {
        Reader { buf, pos: 0 }
    }

    fn varint(&mut self) -> Result<u64, OnnxError> {
        let mut v = 0u64;
        for shift in (0..64).step_by(7) {
            let b = *self
                .buf
                .get(self.pos)
                .ok_or_else(|| bad("truncated varint"))?;
            self.pos += 1;
            v |= u64::from(b & 0x7f) << shift;
            if b & 0x80 == 0 {
                return Ok(v);
            }
        }
        Err(bad("varint longer than 10 bytes"))
    }

    fn take(&mut self, n: usize) -> Result<&'a [u8], OnnxError> {
        let end = self
            .pos
            .checked_add(n)
            .filter(|&e| e <= self.buf.len())
            .ok_or_else(|| bad("length past the end"))?;
        let s = &self.buf[self.pos..end];
        self.pos = end;
        Ok(s)
    }

    fn next(&mut self) -> Result<Option<(u64, Val<'a>)>, OnnxError> {
        if self.pos >= self.buf.len() {
            return Ok(None);
        }
        let key = self.varint()?;
        let field = key >> 3;
        let v = match key & 7 {
            0 => Val::Varint(self.varint()?),
            1 => {
                self.take(8)?;
                Val::Fixed64
            }
            2 => {
                let n = usize::try_from(self.varint()?).map_err(|_| bad("length too large"))?;
                Val::Bytes(self.take(n)?)
            }
            5 => {
                let b = self.take(4)?;
                Val::Fixed32(u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
            }
            w => {
                return Err(OnnxError::Format(format!(
                    "wire type {w} (groups are not supported)"
                )));
            }
        };
        Ok(Some((field, v)))
    }
}

fn string(b: &[u8]) -> Result<String, OnnxError> {
    String::from_utf8(b.to_vec()).map_err(|_| bad("string is not UTF-8"))
}

/// Repeated int64 (packed or not).
fn push_ints(v: Val<'_>, out: &mut Vec<i64>) -> Result<(), OnnxError> {
    match v {
        Val::Varint(x) => out.push(x as i64),
        Val::Bytes(b) => {
            let mut r = Reader::new(b);
            while r.pos < b.len() {
                out.push(r.varint()? as i64);
            }
        }
        _ => return Err(bad("ints of an unexpected wire type")),
    }
    Ok(())
}

#[derive(Default, Clone)]
struct Tensor {
    name: String,
    dims: Vec<i64>,
    data_type: i64,
    floats: Vec<f32>,
    ints: Vec<i64>,
    raw: Vec<u8>,
    external: bool,
    /// Where external data lives: `location`, `offset`, `length` (keys and values as written).
    external_data: Vec<(String, String)>,
}

impl Tensor {
    /// Bytes its values take in memory.
    fn byte_len(&self) -> usize {
        self.floats.len() * 4 + self.ints.len() * 8 + self.raw.len()
    }
}

fn tensor(b: &[u8]) -> Result<Tensor, OnnxError> {
    let mut t = Tensor::default();
    let mut r = Reader::new(b);
    while let Some((f, v)) = r.next()? {
        match (f, v) {
            (1, v) => push_ints(v, &mut t.dims)?,
            (2, Val::Varint(x)) => t.data_type = x as i64,
            (4, Val::Bytes(b)) => t.floats.extend(
                b.chunks_exact(4)
                    .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]])),
            ),
            (4, Val::Fixed32(x)) => t.floats.push(f32::from_bits(x)),
            (7, v) => push_ints(v, &mut t.ints)?,
            (8, Val::Bytes(b)) => t.name = string(b)?,
            (9, Val::Bytes(b)) => t.raw = b.to_vec(),
            (13, Val::Bytes(b)) => {
                let (mut key, mut value) = (String::new(), String::new());
                let mut er = Reader::new(b);
                while let Some((f, v)) = er.next()? {
                    match (f, v) {
                        (1, Val::Bytes(b)) => key = string(b)?,
                        (2, Val::Bytes(b)) => value = string(b)?,
                        _ => {}
                    }
                }
                if t.external_data.len() >= 16 {
                    return Err(bad("more than 16 external-data entries on a tensor"));
                }
                t.external_data.push((key, value));
            }
            (14, Val::Varint(1)) => t.external = true,
            _ => {}
        }
    }
    Ok(t)
}

impl Tensor {
    fn numel(&self) -> Result<usize, OnnxError> {
        let mut n = 1usize;
        for &d in &self.dims {
            let d = usize::try_from(d).map_err(|_| bad("negative tensor dimension"))?;
            n = n
                .checked_mul(d)
                .filter(|&n| n <= MAX_PARAMS)
                .ok_or_else(|| bad("tensor too large"))?;
        }
        Ok(n)
    }

    fn f32s(&self) -> Result<Vec<f32>, OnnxError> {
        if self.external {
            return Err(OnnxError::Unsupported(format!(
                "tensor {} keeps its data in an external file (save with the weights inline)",
                self.name
            )));
        }
        if self.data_type != 1 {
            return Err(OnnxError::Unsupported(format!(
                "tensor {} has data type {} (float32 only)",
                self.name, self.data_type
            )));
        }
        let n = self.numel()?;
        let v: Vec<f32> = if !self.raw.is_empty() {
            if self.raw.len() != n * 4 {
                return Err(OnnxError::Format(format!(
                    "tensor {}: {} raw bytes for {n} floats",
                    self.name,
                    self.raw.len()
                )));
            }
            self.raw
                .chunks_exact(4)
                .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
                .collect()
        } else {
            self.floats.clone()
        };
        if v.len() != n {
            return Err(OnnxError::Format(format!(
                "tensor {}: {} values for {n}",
                self.name,
                v.len()
            )));
        }
        Ok(v)
    }

    fn i64s(&self) -> Result<Vec<i64>, OnnxError> {
        match self.data_type {
            7 if !self.raw.is_empty() => Ok(self
                .raw
                .chunks_exact(8)
                .map(|c| i64::from_le_bytes([c[0], c[1], c[2], c[3], c[4], c[5], c[6], c[7]]))
                .collect()),
            7 => Ok(self.ints.clone()),
            _ => Err(OnnxError::Unsupported(format!(
                "tensor {} is not int64",
                self.name
            ))),
        }
    }
}

#[derive(Default)]
struct Attr {
    name: String,
    i: Option<i64>,
    f: Option<f32>,
    s: Option<Vec<u8>>,
    /// A tensor value (a `Constant` node's `value`).
    t: Option<Tensor>,
    ints: Vec<i64>,
}

#[derive(Default)]
struct Node {
    inputs: Vec<String>,
    outputs: Vec<String>,
    op: String,
    domain: String,
    attrs: Vec<Attr>,
}

impl Node {
    fn attr(&self, name: &str) -> Option<&Attr> {
        self.attrs.iter().find(|a| a.name == name)
    }
    fn int(&self, name: &str, default: i64) -> i64 {
        self.attr(name).and_then(|a| a.i).unwrap_or(default)
    }
    fn ints(&self, name: &str) -> Option<&[i64]> {
        self.attr(name).map(|a| a.ints.as_slice())
    }
    fn float(&self, name: &str, default: f32) -> f32 {
        self.attr(name).and_then(|a| a.f).unwrap_or(default)
    }
    /// `auto_pad` absent, `NOTSET` (the `pads` attribute applies) or `VALID` (no padding): the
    /// padding is what `pads` says. `SAME_UPPER` and `SAME_LOWER`, which depend on the input
    /// size, are not.
    fn explicit_padding(&self) -> bool {
        self.attr("auto_pad")
            .is_none_or(|a| matches!(a.s.as_deref(), Some(b"NOTSET" | b"VALID")))
    }
}

fn node(b: &[u8]) -> Result<Node, OnnxError> {
    let mut n = Node::default();
    let mut r = Reader::new(b);
    while let Some((f, v)) = r.next()? {
        match (f, v) {
            (1, Val::Bytes(b)) => n.inputs.push(string(b)?),
            (2, Val::Bytes(b)) => n.outputs.push(string(b)?),
            (4, Val::Bytes(b)) => n.op = string(b)?,
            (7, Val::Bytes(b)) => n.domain = string(b)?,
            (5, Val::Bytes(b)) => {
                let mut a = Attr::default();
                let mut ar = Reader::new(b);
                while let Some((f, v)) = ar.next()? {
                    match (f, v) {
                        (1, Val::Bytes(b)) => a.name = string(b)?,
                        (2, Val::Fixed32(x)) => a.f = Some(f32::from_bits(x)),
                        (3, Val::Varint(x)) => a.i = Some(x as i64),
                        (4, Val::Bytes(b)) => a.s = Some(b.to_vec()),
                        (5, Val::Bytes(b)) => a.t = Some(tensor(b)?),
                        (8, v) => push_ints(v, &mut a.ints)?,
                        _ => {}
                    }
                }
                n.attrs.push(a);
            }
            _ => {}
        }
    }
    Ok(n)
}

/// The graph input's name and its dimensions (None where symbolic).
fn value_info(b: &[u8]) -> Result<(String, Vec<Option<i64>>), OnnxError> {
    let (mut name, mut dims) = (String::new(), Vec::new());
    let mut r = Reader::new(b);
    while let Some((f, v)) = r.next()? {
        match (f, v) {
            (1, Val::Bytes(b)) => name = string(b)?,
            (2, Val::Bytes(ty)) => {
                // TypeProto.tensor_type (1) → shape (2) → dim (1) → dim_value (1) | dim_param (2).
                let mut tr = Reader::new(ty);
                while let Some((1, Val::Bytes(tt))) = tr.next()? {
                    let mut ttr = Reader::new(tt);
                    while let Some((f, v)) = ttr.next()? {
                        if let (2, Val::Bytes(shape)) = (f, v) {
                            let mut sr = Reader::new(shape);
                            while let Some((f, v)) = sr.next()? {
                                if let (1, Val::Bytes(dim)) = (f, v) {
                                    let mut dr = Reader::new(dim);
                                    let mut value = None;
                                    while let Some((f, v)) = dr.next()? {
                                        if let (1, Val::Varint(x)) = (f, v) {
                                            value = Some(x as i64);
                                        }
                                    }
                                    dims.push(value);
                                }
                            }
                        }
                    }
                }
            }
            _ => {}
        }
    }
    Ok((name, dims))
}

/// A size from the file: positive and small enough to allocate.
fn dim(x: i64) -> Result<usize, OnnxError> {
    usize::try_from(x)
        .ok()
        .filter(|&d| (1..=crate::nn::MAX_ACTIVATION).contains(&d))
        .ok_or_else(|| OnnxError::Format(format!("size {x} out of range")))
}

/// A node's `k`-th input name.
fn arg(n: &Node, k: usize) -> Result<&str, OnnxError> {
    n.inputs
        .get(k)
        .map(String::as_str)
        .ok_or_else(|| OnnxError::Format(format!("{} node without input {k}", n.op)))
}

fn unsupported(s: String) -> OnnxError {
    OnnxError::Unsupported(s)
}

/// Imports an ONNX classifier: a chain from the one non-initializer graph input of shape
/// `[N, C, H, W]` (N may be symbolic) to logits. Weights kept in an external file are refused:
/// see [`import_with`].
pub fn import(bytes: &[u8]) -> Result<Model, OnnxError> {
    import_with(bytes, &mut |_| {
        Err("no directory to read external data from (save with the weights inline)".into())
    })
}

/// Like [`import`], for a file whose weights may live in external files beside it (what
/// PyTorch's default exporter writes: `model.onnx.data`). `read` is given each file's name,
/// checked first to be one plain file name (no directory, no `..`), once per file, and returns
/// its bytes; each tensor's `offset` and `length` must lie inside them.
pub fn import_with(
    bytes: &[u8],
    read: &mut dyn FnMut(&str) -> Result<Vec<u8>, String>,
) -> Result<Model, OnnxError> {
    let mut graph = None;
    let mut r = Reader::new(bytes);
    while let Some((f, v)) = r.next()? {
        if let (7, Val::Bytes(b)) = (f, v) {
            graph = Some(b);
        }
    }
    let graph = graph.ok_or_else(|| bad("no graph"))?;
    let (mut nodes, mut inits, mut inputs) = (Vec::new(), HashMap::new(), Vec::new());
    let mut r = Reader::new(graph);
    while let Some((f, v)) = r.next()? {
        match (f, v) {
            (1, Val::Bytes(b)) => {
                if nodes.len() >= MAX_NODES {
                    return Err(bad("more than 10,000 nodes"));
                }
                nodes.push(node(b)?);
            }
            (5, Val::Bytes(b)) => {
                let t = tensor(b)?;
                inits.insert(t.name.clone(), t);
            }
            (11, Val::Bytes(b)) => inputs.push(value_info(b)?),
            _ => {}
        }
    }
    let data_inputs: Vec<_> = inputs
        .iter()
        .filter(|(n, _)| !inits.contains_key(n))
        .collect();
    let [(input_name, dims)] = data_inputs.as_slice() else {
        return Err(unsupported(format!(
            "{} data inputs (one image input expected)",
            data_inputs.len()
        )));
    };
    let mut files: HashMap<String, Vec<u8>> = HashMap::new();
    for t in inits.values_mut().filter(|t| t.external) {
        load_external(t, &mut files, read)?;
    }
    // A fixed batch size: what a Reshape to [N, K] keeps (PyTorch bakes the example's batch in).
    let batch = dims.first().copied().flatten();
    let chw: Vec<usize> = match dims.as_slice() {
        [_, Some(c), Some(h), Some(w)] if *c > 0 && *h > 0 && *w > 0 => {
            vec![*c as usize, *h as usize, *w as usize]
        }
        _ => {
            return Err(unsupported(format!(
                "input {input_name} has shape {dims:?}; [N, C, H, W] with fixed C, H, W expected"
            )));
        }
    };
    // What PyTorch's exporter writes around the layers: constants as Constant nodes, and the
    // target shape of `x.view(x.size(0), -1)` computed from the input's shape. Both become
    // constants, and their nodes are taken as read.
    let mut taken = vec![false; nodes.len()];
    for (k, n) in nodes.iter_mut().enumerate() {
        if n.op != "Constant" || !(n.domain.is_empty() || n.domain == "ai.onnx") {
            continue;
        }
        let value = n
            .attrs
            .iter_mut()
            .find(|a| a.name == "value")
            .and_then(|a| a.t.take());
        let (Some(mut t), [out]) = (value, n.outputs.as_slice()) else {
            return Err(unsupported(format!(
                "node {k}: a Constant other than one tensor value"
            )));
        };
        t.name.clone_from(out);
        inits.insert(out.clone(), t);
        taken[k] = true;
    }
    // PyTorch's TorchScript exporter writes a parameter equal to an earlier one once (batch
    // norms as initialised, all ones and zeros) and the others as Identity nodes of it: aliases,
    // taken as constants. The copies may add up to no more than the constants themselves.
    let budget: usize = inits.values().map(Tensor::byte_len).sum();
    let mut copied = 0usize;
    for k in 0..nodes.len() {
        let n = &nodes[k];
        if n.op != "Identity" || !(n.domain.is_empty() || n.domain == "ai.onnx") {
            continue;
        }
        let ([input], [out]) = (n.inputs.as_slice(), n.outputs.as_slice()) else {
            continue;
        };
        let Some(t) = inits.get(input) else {
            continue;
        };
        copied = copied.saturating_add(t.byte_len());
        if copied > budget {
            return Err(unsupported(
                "Identity copies of constants larger than the constants".into(),
            ));
        }
        let mut t = t.clone();
        t.name.clone_from(out);
        inits.insert(out.clone(), t);
        taken[k] = true;
    }
    let producers: HashMap<&str, usize> = nodes
        .iter()
        .enumerate()
        .flat_map(|(k, n)| n.outputs.iter().map(move |o| (o.as_str(), k)))
        .collect();
    let mut computed = Vec::new();
    for n in nodes.iter().filter(|n| n.op == "Reshape") {
        let (Some(v), Some(s)) = (n.inputs.first(), n.inputs.get(1)) else {
            continue;
        };
        if let Some(shape_nodes) = batch_flatten_shape(&nodes, &inits, &producers, v, s) {
            computed.push(s.clone());
            for k in shape_nodes {
                taken[k] = true;
            }
        }
    }
    for s in computed {
        let t = Tensor {
            name: s.clone(),
            dims: vec![2],
            data_type: 7,
            ints: vec![0, -1],
            ..Tensor::default()
        };
        inits.insert(s, t);
    }
    let mut readers: HashMap<&str, Vec<usize>> = HashMap::new();
    for (k, n) in nodes.iter().enumerate().filter(|(k, _)| !taken[*k]) {
        for v in n
            .inputs
            .iter()
            .filter(|v| !v.is_empty() && !inits.contains_key(*v))
        {
            let list = readers.entry(v.as_str()).or_default();
            // A node reading one value twice (x + x) is one reader.
            if list.last() != Some(&k) {
                list.push(k);
            }
        }
    }
    let mut imp = Importer {
        nodes: &nodes,
        inits: &inits,
        readers,
        visited: taken,
        batch,
    };
    let (layers, tensors, _) = imp.chain(input_name, None, End::Top)?;
    if let Some(k) = imp.visited.iter().position(|v| !v) {
        return Err(unsupported(format!(
            "node {k} ({}) is not on the path from the input to the logits",
            nodes[k].op
        )));
    }
    let classes = match layers.last() {
        Some(LayerSpec::Linear { out_features, .. }) => *out_features,
        _ => {
            return Err(unsupported(
                "the graph does not end in a linear layer (logits)".into(),
            ));
        }
    };
    let arch = Arch {
        name: "onnx-import".into(),
        input: [chw[0], chw[1], chw[2]],
        classes,
        layers,
    };
    let mut model = Model::zeros(&arch).map_err(|e| unsupported(e.to_string()))?;
    for (path, kind, dims, data) in tensors {
        let name = format!("{path}.{kind}");
        let idx = model
            .param_infos()
            .iter()
            .position(|p| p.name == name)
            .ok_or_else(|| unsupported(format!("no parameter {name}")))?;
        let dims: Vec<u64> = dims.iter().map(|&d| d.max(0) as u64).collect();
        set_from_torch(&mut model, idx, &dims, data)?;
    }
    Ok(model)
}

/// Reads external tensor `t`'s bytes from its file (through `read`, each file once, kept in
/// `files`) into `t.raw`.
fn load_external(
    t: &mut Tensor,
    files: &mut HashMap<String, Vec<u8>>,
    read: &mut dyn FnMut(&str) -> Result<Vec<u8>, String>,
) -> Result<(), OnnxError> {
    let entry = |key: &str| {
        t.external_data
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    };
    let location = entry("location")
        .ok_or_else(|| bad(&format!("external tensor {} without a location", t.name)))?;
    let plain = {
        let mut parts = std::path::Path::new(location).components();
        matches!(
            (parts.next(), parts.next()),
            (Some(std::path::Component::Normal(_)), None)
        ) && !location.contains(['/', '\\', '\0'])
    };
    if !plain {
        return Err(OnnxError::External(format!(
            "tensor {}: {location:?} is not a file beside the model",
            t.name
        )));
    }
    let number = |key: &str| -> Result<Option<usize>, OnnxError> {
        entry(key)
            .map(|v| {
                v.parse::<usize>()
                    .map_err(|_| bad(&format!("tensor {}: external {key} {v:?}", t.name)))
            })
            .transpose()
    };
    let (offset, length) = (number("offset")?.unwrap_or(0), number("length")?);
    if !files.contains_key(location) {
        let data = read(location).map_err(|e| {
            OnnxError::External(format!(
                "tensor {} keeps its data in {location}: {e}",
                t.name
            ))
        })?;
        files.insert(location.to_string(), data);
    }
    let data = &files[location];
    let end = match length {
        Some(l) => offset.checked_add(l),
        None => Some(data.len()),
    };
    let raw = end
        .filter(|&e| offset <= e && e <= data.len())
        .map(|e| &data[offset..e])
        .ok_or_else(|| {
            bad(&format!(
                "tensor {}: external data past the end of {location}",
                t.name
            ))
        })?;
    t.raw = raw.to_vec();
    t.external = false;
    Ok(())
}

/// Whether value `s` is the shape `[N, -1]` of value `v`, computed as PyTorch's exporter writes
/// `x.view(x.size(0), -1)` under a dynamic batch: `Concat(Unsqueeze(Gather(Shape(v), 0), [0]),
/// [-1])`, constants as constants. The four nodes, if so.
fn batch_flatten_shape(
    nodes: &[Node],
    inits: &HashMap<String, Tensor>,
    producers: &HashMap<&str, usize>,
    v: &str,
    s: &str,
) -> Option<[usize; 4]> {
    let by = |value: &str, op: &str| {
        producers
            .get(value)
            .copied()
            .filter(|&k| nodes[k].op == op && nodes[k].outputs.len() == 1)
    };
    let ints = |value: &str| inits.get(value).and_then(|t| t.i64s().ok());
    let c = by(s, "Concat")?;
    let concat = &nodes[c];
    if concat.int("axis", 0) != 0 || concat.inputs.len() != 2 || ints(&concat.inputs[1])? != [-1] {
        return None;
    }
    let u = by(&concat.inputs[0], "Unsqueeze")?;
    let unsqueeze = &nodes[u];
    let axes = match unsqueeze.inputs.get(1) {
        Some(a) => ints(a)?,
        None => unsqueeze.ints("axes")?.to_vec(),
    };
    if axes != [0] {
        return None;
    }
    let g = by(unsqueeze.inputs.first()?, "Gather")?;
    let gather = &nodes[g];
    if gather.int("axis", 0) != 0 || ints(gather.inputs.get(1)?)? != [0] {
        return None;
    }
    let sh = by(gather.inputs.first()?, "Shape")?;
    let shape = &nodes[sh];
    if shape.inputs.first().map(String::as_str) != Some(v)
        || shape.attr("start").is_some()
        || shape.attr("end").is_some()
    {
        return None;
    }
    Some([c, u, g, sh])
}

/// A parameter read from the graph, waiting for the model: its layer's path (`"3"`, or
/// `"3.body.0"` inside a residual block), `"weight"` or `"bias"`, its PyTorch shape and its
/// values.
type Pending = (String, &'static str, Vec<i64>, Vec<f32>);

/// A branch's parameters named as the block's: `{prefix}.{path}`.
fn prefixed(t: Vec<Pending>, prefix: &str) -> impl Iterator<Item = Pending> {
    t.into_iter()
        .map(move |(p, kind, d, v)| (format!("{prefix}.{p}"), kind, d, v))
}

/// Layers translated from a stretch of the graph, their parameters, and the value it ends on.
type Stretch = (Vec<LayerSpec>, Vec<Pending>, String);

/// The most layers a dense block may have.
const MAX_DENSE_LAYERS: usize = 256;

/// Where [`Importer::chain`] stops.
enum End {
    /// At the end of the graph (the top level).
    Top,
    /// At the value this node (the sum, product or concatenation that joins a branch) reads.
    Join(usize),
    /// At this value (a dense layer's output).
    Value(String),
}

/// A dense layer: the `Concat` its chain reads (`None`: the block's input), the chain's first
/// node, and the value it ends on.
type DenseLayer = (Option<usize>, usize, String);

/// Walks the graph from the input along the nodes that read each value: a value with one
/// reader continues a chain, a value with two starts a residual block, which ends at the `Add`
/// of two computed values that both branches reach.
struct Importer<'g> {
    nodes: &'g [Node],
    inits: &'g HashMap<String, Tensor>,
    /// The nodes that read each computed value (constants left out).
    readers: HashMap<&'g str, Vec<usize>>,
    visited: Vec<bool>,
    /// The input's batch size, when the file fixes it.
    batch: Option<i64>,
}

impl Importer<'_> {
    fn get(&self, name: &str) -> Result<&Tensor, OnnxError> {
        self.inits
            .get(name)
            .ok_or_else(|| unsupported(format!("{name} is not a constant (initializer)")))
    }

    fn readers(&self, value: &str) -> &[usize] {
        self.readers.get(value).map_or(&[], Vec::as_slice)
    }

    fn visit(&mut self, k: usize) -> Result<(), OnnxError> {
        if std::mem::replace(&mut self.visited[k], true) {
            return Err(unsupported(format!("node {k} is reached twice")));
        }
        Ok(())
    }

    /// The gate and the product of `x · Sigmoid(x)` (PyTorch's export of `nn.SiLU`) or
    /// `x · HardSigmoid(x)` (of `nn.Hardswish` before opset 14), and the layer they make, when
    /// `value`'s two readers `a` and `b` are such a gate of it, read only by the product, and
    /// the product of `value` and that gate, in either order.
    fn self_gated_at(&self, value: &str, a: usize, b: usize) -> Option<(usize, usize, LayerSpec)> {
        let gate = |k: usize| match self.nodes[k].op.as_str() {
            "Sigmoid" => Some(LayerSpec::Silu),
            "HardSigmoid" if pytorch_hard_sigmoid(&self.nodes[k]) => Some(LayerSpec::HardSwish),
            _ => None,
        };
        let (s, m, layer) = match (gate(a), gate(b)) {
            (Some(l), _) => (a, b, l),
            (None, Some(l)) => (b, a, l),
            (None, None) => return None,
        };
        let (sig, mul) = (&self.nodes[s], &self.nodes[m]);
        let standard = |n: &Node| n.domain.is_empty() || n.domain == "ai.onnx";
        let sig_out = match (&sig.inputs[..], &sig.outputs[..]) {
            ([i], [o]) if i == value => o,
            _ => return None,
        };
        let product_of_both = match &mul.inputs[..] {
            [p, q] => (p == value && q == sig_out) || (p == sig_out && q == value),
            _ => false,
        };
        (mul.op == "Mul"
            && standard(sig)
            && standard(mul)
            && mul.outputs.len() == 1
            && product_of_both
            && self.readers(sig_out) == [m])
        .then_some((s, m, layer))
    }

    /// The product and the body's first node of a gate, `value · body(value)` (a
    /// squeeze-and-excitation block), when `value`'s two readers `a` and `b` are a Mul of it
    /// and another computed value, and the first node of a body that leads to that value: a
    /// chain of nodes, each the one reader of the value before (SiLUs included).
    fn gate_at(&self, value: &str, a: usize, b: usize) -> Option<(usize, usize)> {
        let is_product = |m: usize| {
            let n = &self.nodes[m];
            n.op == "Mul"
                && (n.domain.is_empty() || n.domain == "ai.onnx")
                && n.outputs.len() == 1
                && match &n.inputs[..] {
                    [p, q] => {
                        (p == value) != (q == value)
                            && !self.inits.contains_key(p)
                            && !self.inits.contains_key(q)
                    }
                    _ => false,
                }
        };
        let (m, first) = if is_product(a) {
            (a, b)
        } else if is_product(b) {
            (b, a)
        } else {
            return None;
        };
        let mut k = first;
        for _ in 0..self.nodes.len() {
            let out = self.nodes[k].outputs.first()?;
            match self.readers(out) {
                [next] if *next == m => {
                    return self.nodes[m].inputs.contains(out).then_some((m, first));
                }
                [next] => k = *next,
                &[p, q] if let Some((_, s, _)) = self.self_gated_at(out, p, q) => k = s,
                _ => return None,
            }
        }
        None
    }

    /// The Concat that `value`'s readers `rs` meet in, and for each of its inputs in order the
    /// first node of the branch that gives it (`None`: `value` itself, an identity branch):
    /// when every reader starts a chain (SiLUs and gates included) whose end only that Concat
    /// reads, or is that Concat, over the channels, and the Concat reads nothing else.
    fn concat_at(&self, value: &str, rs: &[usize]) -> Option<(usize, Vec<Option<usize>>)> {
        let mut ends: Vec<(&str, usize)> = Vec::with_capacity(rs.len());
        let mut join = None;
        for &r in rs {
            let (j, end) = if self.nodes[r].op == "Concat" {
                (r, value)
            } else {
                self.concat_end(r)?
            };
            if *join.get_or_insert(j) != j {
                return None;
            }
            if end != value {
                ends.push((end, r));
            }
        }
        let j = join?;
        let cat = &self.nodes[j];
        let axis = cat.int("axis", i64::MIN);
        if !(cat.domain.is_empty() || cat.domain == "ai.onnx")
            || !(axis == 1 || axis == -3)
            || cat.outputs.len() != 1
            || !(2..=16).contains(&cat.inputs.len())
        {
            return None;
        }
        let mut firsts = Vec::with_capacity(cat.inputs.len());
        for input in &cat.inputs {
            if input == value {
                firsts.push(None);
            } else {
                let at = ends.iter().position(|(e, _)| *e == input.as_str())?;
                firsts.push(Some(ends.swap_remove(at).1));
            }
        }
        ends.is_empty().then_some((j, firsts))
    }

    /// The Concat that a chain from node `k` ends in (each value the one reader of the one
    /// before, SiLUs and gates stepped over), and the value it gives that Concat.
    fn concat_end(&self, mut k: usize) -> Option<(usize, &str)> {
        for _ in 0..self.nodes.len() {
            let out = self.nodes[k].outputs.first()?;
            match self.readers(out) {
                [j] if self.nodes[*j].op == "Concat" => return Some((*j, out.as_str())),
                [next] => k = *next,
                &[a, b] if let Some((_, m, _)) = self.self_gated_at(out, a, b) => k = m,
                &[a, b] if let Some((m, _)) = self.gate_at(out, a, b) => k = m,
                _ => return None,
            }
        }
        None
    }

    /// Whether node `k` is a `Concat` of image channels, with one output.
    fn is_channel_concat(&self, k: usize) -> bool {
        let n = &self.nodes[k];
        n.op == "Concat"
            && (n.domain.is_empty() || n.domain == "ai.onnx")
            && matches!(n.int("axis", i64::MIN), 1 | -3)
            && n.outputs.len() == 1
    }

    /// A dense block (DenseNet) from `value`: each layer reads the concatenation of the block's
    /// input and every earlier layer's output, and the block gives the concatenation of all. In
    /// the graph that is one `Concat` per layer, of the values so far (`[value]`, `[value,
    /// x₁]`, …; the first may be left out, as PyTorch's dynamo exporter does, the first layer
    /// then reading `value` itself), each read by the layer's chain, and a last `Concat` that
    /// the block ends on. The layers become `concat` layers of an identity and the layer's chain:
    /// `cat(parts, f(cat(parts)))` is `cat(parts + [f(...)])`. For each layer, the `Concat` its
    /// chain reads (`None`: `value`), the chain's first node and the value it ends on; and the
    /// last `Concat`.
    fn dense_at(&self, value: &str) -> Option<(Vec<DenseLayer>, usize)> {
        let others: Vec<usize> = self
            .readers(value)
            .iter()
            .copied()
            .filter(|&r| !self.is_channel_concat(r))
            .collect();
        if others.len() > 1 {
            return None;
        }
        let mut parts = vec![value.to_string()];
        let mut layers: Vec<DenseLayer> = Vec::new();
        // Each step compares the parts with the inputs of the `Concat`s that read them, so a
        // hostile graph of many long `Concat`s costs the square of the layers: bounded here
        // (torchvision's DenseNet-201 has 48 layers in a block).
        while layers.len() < MAX_DENSE_LAYERS {
            let concat = self.readers(&parts[0]).iter().copied().find(|&r| {
                self.is_channel_concat(r) && self.nodes[r].inputs.as_slice() == parts.as_slice()
            });
            let first = match (concat, layers.is_empty()) {
                (Some(_), true) if !others.is_empty() => return None,
                (Some(c), _) => match self.readers(&self.nodes[c].outputs[0]) {
                    &[k] => Some(k),
                    _ => None,
                },
                (None, true) => others.first().copied(),
                (None, false) => return None,
            };
            match first.and_then(|k| Some((k, self.dense_end(k, &parts)?))) {
                Some((k, end)) => {
                    parts.push(end.clone());
                    layers.push((concat, k, end));
                }
                None => {
                    return match concat {
                        Some(c) if !layers.is_empty() => Some((layers, c)),
                        _ => None,
                    };
                }
            }
        }
        None
    }

    /// The value a dense layer's chain from node `k` ends on: the first value along it (each
    /// the one reader of the one before, SiLUs and gates stepped over) that only `Concat`s read,
    /// each of `parts`, that value, and maybe more.
    fn dense_end(&self, mut k: usize, parts: &[String]) -> Option<String> {
        for _ in 0..self.nodes.len() {
            let out = self.nodes[k].outputs.first()?;
            let rs = self.readers(out);
            let joins = |&r: &usize| {
                let inputs = &self.nodes[r].inputs;
                self.is_channel_concat(r)
                    && inputs.len() > parts.len()
                    && inputs[..parts.len()] == *parts
                    && inputs[parts.len()] == *out
            };
            if !rs.is_empty() && rs.iter().all(joins) {
                return Some(out.clone());
            }
            match rs {
                [next] => k = *next,
                &[a, b] if let Some((_, m, _)) = self.self_gated_at(out, a, b) => k = m,
                &[a, b] if let Some((m, _)) = self.gate_at(out, a, b) => k = m,
                _ => return None,
            }
        }
        None
    }

    /// Whether node `k` is the end of a residual block: a sum of two computed values.
    fn is_join(&self, k: usize) -> bool {
        let n = &self.nodes[k];
        n.op == "Add" && n.inputs.len() == 2 && n.inputs.iter().all(|v| !self.inits.contains_key(v))
    }

    /// The end of the residual block whose branch starts at node `k`: the first sum of two
    /// computed values along the nodes that follow, each the one reader of the value before.
    fn join_of(&self, mut k: usize) -> Result<usize, OnnxError> {
        for _ in 0..self.nodes.len() {
            if self.is_join(k) {
                return Ok(k);
            }
            let out = self.nodes[k]
                .outputs
                .first()
                .ok_or_else(|| bad("a node without an output"))?;
            match self.readers(out) {
                [next] => k = *next,
                &[a, b] if let Some((_, m, _)) = self.self_gated_at(out, a, b) => k = m,
                &[a, b] if let Some((m, _)) = self.gate_at(out, a, b) => k = m,
                _ => {
                    return Err(unsupported(format!(
                        "a branch through node {k} ({}) forks again or ends before its sum (residual blocks with two branches that meet in an Add are supported)",
                        self.nodes[k].op
                    )));
                }
            }
        }
        Err(unsupported("a branch that never meets its sum".into()))
    }

    /// Translates the graph from value `start` (from its reader `first` when given) to `end`.
    fn chain(&mut self, start: &str, first: Option<usize>, end: End) -> Result<Stretch, OnnxError> {
        let (mut layers, mut tensors) = (Vec::new(), Vec::new());
        let mut current = start.to_string();
        let top = matches!(end, End::Top);
        if let Some(k) = first {
            current = self.node(k, &current, &mut layers, &mut tensors, top)?;
        }
        loop {
            if let End::Value(v) = &end
                && *v == current
            {
                return Ok((layers, tensors, current));
            }
            let readers = self.readers(&current).to_vec();
            match (readers.as_slice(), &end) {
                ([k], End::Join(j)) if k == j => return Ok((layers, tensors, current)),
                ([], End::Top) => return Ok((layers, tensors, current)),
                ([], _) => {
                    return Err(unsupported(format!(
                        "a branch ends at {current} before it joins the others"
                    )));
                }
                ([k], _) => {
                    current = self.node(*k, &current, &mut layers, &mut tensors, top)?;
                }
                (&[a, b], _) if let Some((s, m, layer)) = self.self_gated_at(&current, a, b) => {
                    self.visit(s)?;
                    self.visit(m)?;
                    layers.push(layer);
                    current.clone_from(&self.nodes[m].outputs[0]);
                }
                (&[a, b], _) if let Some((m, first)) = self.gate_at(&current, a, b) => {
                    let (body, t, _) = self.chain(&current, Some(first), End::Join(m))?;
                    self.visit(m)?;
                    let li = layers.len();
                    tensors.extend(prefixed(t, &format!("{li}.body")));
                    layers.push(LayerSpec::Gate { body });
                    current.clone_from(&self.nodes[m].outputs[0]);
                }
                (rs, End::Top)
                    if rs.len() >= 2
                        && let Some((j, firsts)) = self.concat_at(&current, rs) =>
                {
                    let mut branches = Vec::with_capacity(firsts.len());
                    let li = layers.len();
                    for (b, first) in firsts.into_iter().enumerate() {
                        let (branch, t) = match first {
                            None => (Vec::new(), Vec::new()),
                            Some(f) => {
                                let (branch, t, _) = self.chain(&current, Some(f), End::Join(j))?;
                                (branch, t)
                            }
                        };
                        tensors.extend(prefixed(t, &format!("{li}.branches.{b}")));
                        branches.push(branch);
                    }
                    self.visit(j)?;
                    layers.push(LayerSpec::Concat { branches });
                    current.clone_from(
                        self.nodes[j]
                            .outputs
                            .first()
                            .ok_or_else(|| bad("Concat without an output"))?,
                    );
                }
                (rs, End::Top)
                    if rs.len() >= 2
                        && let Some((steps, j)) = self.dense_at(&current) =>
                {
                    for (concat, first, end) in steps {
                        let start = match concat {
                            Some(c) => {
                                self.visit(c)?;
                                self.nodes[c].outputs[0].clone()
                            }
                            None => current.clone(),
                        };
                        let (body, t, _) = self.chain(&start, Some(first), End::Value(end))?;
                        let li = layers.len();
                        tensors.extend(prefixed(t, &format!("{li}.branches.1")));
                        layers.push(LayerSpec::Concat {
                            branches: vec![Vec::new(), body],
                        });
                    }
                    self.visit(j)?;
                    current.clone_from(&self.nodes[j].outputs[0]);
                }
                ([a, b], End::Top) => {
                    let j = self.join_of(*a)?;
                    if self.join_of(*b)? != j || a == b {
                        return Err(unsupported(format!(
                            "{current} is read by two branches that do not meet in one sum"
                        )));
                    }
                    let mut branches = Vec::new();
                    for k in [*a, *b] {
                        branches.push(if k == j {
                            (Vec::new(), Vec::new(), current.clone())
                        } else {
                            self.chain(&current, Some(k), End::Join(j))?
                        });
                    }
                    self.visit(j)?;
                    let sum = &self.nodes[j];
                    // The body is the branch that gives the sum's first operand, unless that
                    // branch is empty.
                    if branches[0].2 != sum.inputs[0] {
                        branches.swap(0, 1);
                    }
                    // `x + body(x)` as well as `body(x) + x`: the identity is the shortcut.
                    if branches[0].0.is_empty() {
                        branches.swap(0, 1);
                    }
                    let [(body, tb, _), (shortcut, ts, _)] = <[Stretch; 2]>::try_from(branches)
                        .map_err(|_| bad("two branches expected"))?;
                    let li = layers.len();
                    for (part, t) in [("body", tb), ("shortcut", ts)] {
                        tensors.extend(prefixed(t, &format!("{li}.{part}")));
                    }
                    layers.push(LayerSpec::Residual { body, shortcut });
                    current.clone_from(
                        sum.outputs
                            .first()
                            .ok_or_else(|| bad("Add without an output"))?,
                    );
                }
                (_, _) => {
                    return Err(unsupported(format!(
                        "{current} is read by {} nodes (a chain, or residual blocks of two branches, are supported)",
                        readers.len()
                    )));
                }
            }
        }
    }

    /// Translates node `k`, which reads `current`, onto `layers` and `tensors` (`top`: outside
    /// residual branches); the value it ends on.
    fn node(
        &mut self,
        k: usize,
        current: &str,
        layers: &mut Vec<LayerSpec>,
        tensors: &mut Vec<Pending>,
        top: bool,
    ) -> Result<String, OnnxError> {
        self.visit(k)?;
        let n = &self.nodes[k];
        if !(n.domain.is_empty() || n.domain == "ai.onnx") {
            return Err(unsupported(format!("operator {}::{}", n.domain, n.op)));
        }
        // Dropout may also give its mask, as long as nothing reads it.
        let mask_unused =
            n.op == "Dropout" && n.outputs.len() == 2 && self.readers(&n.outputs[1]).is_empty();
        if n.inputs.first().map(String::as_str) != Some(current)
            || !(n.outputs.len() == 1 || mask_unused)
        {
            return Err(unsupported(format!(
                "node {k} ({}) does not continue a chain from the input",
                n.op
            )));
        }
        let li = layers.len().to_string();
        match n.op.as_str() {
            "Conv" => {
                let w = self.get(arg(n, 1)?)?;
                let [cout, cin, kh, kw] = w.dims[..] else {
                    return Err(unsupported("Conv weight is not 4-D".into()));
                };
                let pads = n.ints("pads").unwrap_or(&[0, 0, 0, 0]);
                let ones = |name: &str| n.ints(name).is_none_or(|v| v.iter().all(|&x| x == 1));
                let pad = pads.first().copied().unwrap_or(0);
                let strides = n.ints("strides").unwrap_or(&[1, 1]);
                let stride = strides.first().copied().unwrap_or(1);
                // The weight holds a group's input channels: `cin · group` in all.
                let group = n.int("group", 1);
                if kh != kw
                    || !(1..=MAX_GROUPS).contains(&group)
                    || strides.len() != 2
                    || strides.iter().any(|&s| s != stride)
                    || !ones("dilations")
                    || pads.iter().any(|&p| p != pad)
                    || !n.explicit_padding()
                    || (pad != 0
                        && n.attr("auto_pad").and_then(|a| a.s.as_deref()) == Some(b"VALID"))
                {
                    return Err(unsupported("Conv other than square kernels, equal strides, dilation 1, symmetric explicit padding".into()));
                }
                let to = dim;
                let groups = to(group)?;
                layers.push(LayerSpec::Conv2d {
                    in_channels: to(cin)?
                        .checked_mul(groups)
                        .ok_or_else(|| bad("Conv channels out of range"))?,
                    out_channels: to(cout)?,
                    groups,
                    kernel: to(kh)?,
                    padding: usize::try_from(pad)
                        .ok()
                        .filter(|&p| p < 16)
                        .ok_or_else(|| bad("Conv padding out of range"))?,
                    stride: usize::try_from(stride)
                        .ok()
                        .filter(|&s| (1..16).contains(&s))
                        .ok_or_else(|| bad("Conv stride out of range"))?,
                });
                let bias = match n.inputs.get(2) {
                    Some(b) if !b.is_empty() => self.get(b)?.f32s()?,
                    _ => vec![0.0; to(cout)?],
                };
                tensors.push((li.clone(), "weight", w.dims.clone(), w.f32s()?));
                tensors.push((li, "bias", vec![cout], bias));
            }
            "Relu" => layers.push(LayerSpec::Relu),
            // PyTorch's ReLU6: bounds as inputs (opset 11 on), or attributes before.
            "Clip" => {
                let bound = |i: usize, attr: &str| -> Result<Option<f32>, OnnxError> {
                    match n.inputs.get(i).filter(|s| !s.is_empty()) {
                        Some(name) => match self.get(name)?.f32s()?[..] {
                            [v] => Ok(Some(v)),
                            _ => Err(unsupported("Clip with a bound that is not a scalar".into())),
                        },
                        None => Ok(n.attr(attr).map(|_| n.float(attr, f32::NAN))),
                    }
                };
                match (bound(1, "min")?, bound(2, "max")?) {
                    (Some(lo), Some(hi)) if lo == 0.0 && hi == 6.0 => layers.push(LayerSpec::Relu6),
                    (lo, hi) => {
                        return Err(unsupported(format!(
                            "Clip between {lo:?} and {hi:?} (only ReLU6's 0 and 6)"
                        )));
                    }
                }
            }
            "Tanh" => layers.push(LayerSpec::Tanh),
            "Sigmoid" => layers.push(LayerSpec::Sigmoid),
            "HardSigmoid" if pytorch_hard_sigmoid(n) => layers.push(LayerSpec::HardSigmoid),
            "HardSigmoid" => {
                return Err(unsupported(
                    "HardSigmoid with alpha other than 1/6 or beta other than 1/2 (only PyTorch's nn.Hardsigmoid)".into(),
                ));
            }
            "HardSwish" => layers.push(LayerSpec::HardSwish),
            "Elu" if n.float("alpha", 1.0) == 1.0 => layers.push(LayerSpec::Elu),
            "Elu" => {
                return Err(unsupported(
                    "Elu with alpha other than 1 (only PyTorch's nn.ELU())".into(),
                ));
            }
            "MaxPool" | "AveragePool" => {
                let max = n.op == "MaxPool";
                let k = n.ints("kernel_shape").unwrap_or(&[]);
                let s = n.ints("strides").unwrap_or(&[]);
                // One pad on every side (MaxPool only: the engine's pads take no part in a max,
                // as ONNX's and PyTorch's; AveragePool's count_include_pad is not modelled).
                let pad = match n.ints("pads") {
                    None => Some(0),
                    Some(v) if v.len() == 4 && v.iter().all(|&x| x == v[0]) => {
                        usize::try_from(v[0]).ok()
                    }
                    Some(_) => None,
                };
                let valid = n.attr("auto_pad").and_then(|a| a.s.as_deref()) == Some(b"VALID");
                let pad = pad.filter(|&p| p == 0 || (max && !valid));
                let ones = n
                    .ints("dilations")
                    .is_none_or(|v| v.iter().all(|&x| x == 1));
                // Without padding, AveragePool's count_include_pad changes nothing.
                let explicit = n.explicit_padding();
                match (k, s) {
                    ([a, b], [c, d])
                        if a == b
                            && c == d
                            && (1..=MAX_POOL).contains(a)
                            && (1..=*a).contains(c)
                            && pad.is_some_and(|p| p as i64 <= *a / 2)
                            && explicit
                            && ones
                            && (n.int("ceil_mode", 0) == 0
                                || (max && n.int("ceil_mode", 0) == 1)) =>
                    {
                        let (kernel, stride) = (*a as usize, (c != a).then_some(*c as usize));
                        layers.push(if max {
                            LayerSpec::MaxPool2d {
                                kernel,
                                stride,
                                padding: pad.unwrap_or(0),
                                ceil_mode: n.int("ceil_mode", 0) == 1,
                            }
                        } else {
                            LayerSpec::AvgPool2d { kernel, stride }
                        })
                    }
                    _ => {
                        return Err(unsupported(format!(
                            "{} other than square windows of at most {MAX_POOL} with equal strides up to the size, floor mode, and no padding (MaxPool: the same padding on every side, at most half the window, and ceil mode too)",
                            n.op
                        )));
                    }
                }
            }
            "GlobalAveragePool" => layers.push(LayerSpec::GlobalAvgPool),
            "ReduceMean" => {
                // PyTorch's default exporter writes AdaptiveAvgPool2d(1) as a mean over the two
                // spatial axes (given as an input from opset 18, an attribute before).
                let mut axes = match n.inputs.get(1).filter(|a| !a.is_empty()) {
                    Some(a) => self.get(a)?.i64s()?,
                    None => n.ints("axes").map(<[i64]>::to_vec).unwrap_or_default(),
                };
                axes.sort_unstable();
                if !(axes == [2, 3] || axes == [-2, -1]) || n.int("noop_with_empty_axes", 0) != 0 {
                    return Err(unsupported(format!(
                        "ReduceMean over axes {axes:?} (only the two spatial axes: a global average pool)"
                    )));
                }
                layers.push(LayerSpec::GlobalAvgPool);
                if n.int("keepdims", 1) == 0 {
                    layers.push(LayerSpec::Flatten);
                }
            }
            "Flatten" => {
                if n.int("axis", 1) != 1 {
                    return Err(unsupported("Flatten with axis other than 1".into()));
                }
                layers.push(LayerSpec::Flatten);
            }
            "Reshape" => {
                let shape = self.get(arg(n, 1)?)?.i64s()?;
                // Flattening keeps the batch: [N or 0 or -1, -1], or [0 or -1 or the input's
                // fixed batch, K] (K is checked by the linear layer that follows). With
                // allowzero, a 0 is a 0.
                let flattens = shape.len() == 2
                    && (shape[1] == -1
                        || shape[0] == 0
                        || shape[0] == -1
                        || Some(shape[0]) == self.batch)
                    && !(n.int("allowzero", 0) != 0 && shape.contains(&0));
                if !flattens {
                    return Err(unsupported(format!(
                        "Reshape to {shape:?} (only [N, -1] flattening)"
                    )));
                }
                layers.push(LayerSpec::Flatten);
            }
            "Gemm" => {
                if n.int("transA", 0) != 0
                    || n.int("transB", 0) != 1
                    || n.float("alpha", 1.0) != 1.0
                    || n.float("beta", 1.0) != 1.0
                {
                    return Err(unsupported(
                        "Gemm other than x·Wᵀ + b (transB = 1, alpha = beta = 1)".into(),
                    ));
                }
                let w = self.get(arg(n, 1)?)?;
                let [out, inp] = w.dims[..] else {
                    return Err(unsupported("Gemm weight is not 2-D".into()));
                };
                let bias = match n.inputs.get(2) {
                    Some(b) if !b.is_empty() => self.get(b)?.f32s()?,
                    _ => vec![0.0; dim(out)?],
                };
                layers.push(LayerSpec::Linear {
                    in_features: dim(inp)?,
                    out_features: dim(out)?,
                });
                tensors.push((li.clone(), "weight", w.dims.clone(), w.f32s()?));
                tensors.push((li, "bias", vec![out], bias));
            }
            "MatMul" => {
                let w = self.get(arg(n, 1)?)?;
                let [inp, out] = w.dims[..] else {
                    return Err(unsupported("MatMul weight is not 2-D".into()));
                };
                let (iu, ou) = (dim(inp)?, dim(out)?);
                let wt = w.f32s()?;
                // [in, out] → PyTorch's [out, in].
                let mut t = vec![0.0f32; wt.len()];
                for a in 0..iu {
                    for b in 0..ou {
                        t[b * iu + a] = wt[a * ou + b];
                    }
                }
                let mut bias = vec![0.0; ou];
                let mut out_value = n.outputs[0].clone();
                // A bias is an Add of a constant, the one reader of the product.
                if let [next] = self.readers(&n.outputs[0]) {
                    let m = &self.nodes[*next];
                    if m.op == "Add"
                        && m.inputs.first() == Some(&n.outputs[0])
                        && m.inputs.get(1).is_some_and(|b| self.inits.contains_key(b))
                    {
                        bias = self.get(arg(m, 1)?)?.f32s()?;
                        out_value.clone_from(
                            m.outputs
                                .first()
                                .ok_or_else(|| bad("Add without an output"))?,
                        );
                        self.visit(*next)?;
                    }
                }
                layers.push(LayerSpec::Linear {
                    in_features: iu,
                    out_features: ou,
                });
                tensors.push((li.clone(), "weight", vec![out, inp], t));
                tensors.push((li, "bias", vec![out], bias));
                return Ok(out_value);
            }
            "BatchNormalization" => {
                if n.int("training_mode", 0) != 0 || n.int("spatial", 1) != 1 {
                    return Err(unsupported(
                        "BatchNormalization in training mode or not spatial".into(),
                    ));
                }
                let stats = (1..5)
                    .map(|k| self.get(arg(n, k)?)?.f32s())
                    .collect::<Result<Vec<_>, _>>()?;
                fold_batch_norm(layers, tensors, &stats, n.float("epsilon", 1e-5))?;
            }
            "Dropout" | "Identity" => {
                // The inference graph's Dropout passes its input through; a training-mode input
                // must be a constant false (a raw boolean 0).
                if let Some(t) = n.inputs.get(2).filter(|t| !t.is_empty()) {
                    let t = self.get(t)?;
                    if !(t.data_type == 9 && t.raw.as_slice() == [0]) {
                        return Err(unsupported("Dropout in training mode".into()));
                    }
                }
            }
            "Softmax" | "LogSoftmax" if top && self.readers(&n.outputs[0]).is_empty() => {
                // Attacks need logits: a final (log-)softmax over the classes is dropped. The
                // decisions are the same; cross-entropy and DLR losses are unchanged by
                // LogSoftmax, and on Softmax the attacks see the logits, as AutoAttack asks.
                if !matches!(n.int("axis", -1), -1 | 1) {
                    return Err(unsupported(format!(
                        "{} over axis other than the classes",
                        n.op
                    )));
                }
            }
            other => {
                return Err(unsupported(format!(
                    "operator {other} (white-box import supports Conv (grouped too), BatchNormalization (folded into a Conv or Gemm just before, else a per-channel affine layer), Relu, Clip between 0 and 6 (ReLU6), Tanh, Sigmoid, Elu, SiLU (a Mul of x and Sigmoid(x)), HardSigmoid and HardSwish (PyTorch's, or a Mul of x and HardSigmoid(x)), MaxPool, AveragePool, GlobalAveragePool or ReduceMean over the spatial axes, Flatten, Reshape, Gemm, MatMul, Add (a bias after MatMul, or the join of a residual block), Mul (x times a gate computed from x: squeeze-and-excitation), Concat over the channels of branches from one value (Inception, SqueezeNet's fire module) or of a dense block's layers (DenseNet), Dropout and Identity at inference, and a final Softmax or LogSoftmax)"
                )));
            }
        }
        Ok(n.outputs[0].clone())
    }
}

/// Whether `n` (a HardSigmoid) is PyTorch's: α = 1/6, β = 1/2.
fn pytorch_hard_sigmoid(n: &Node) -> bool {
    (n.float("alpha", 0.2) - 1.0 / 6.0).abs() <= 1e-6 && n.float("beta", 0.5) == 0.5
}

/// Folds an inference BatchNormalization (`stats`: scale, shift, mean, variance, one value per
/// channel) into the convolution or linear layer just before it, or into a new affine layer
/// (the identity) where there is none: per output channel `c`, `k = scale / √(var + ε)`, the
/// weights times `k` and the bias `(bias − mean)·k + shift`.
fn fold_batch_norm(
    layers: &mut Vec<LayerSpec>,
    tensors: &mut Vec<Pending>,
    stats: &[Vec<f32>],
    epsilon: f32,
) -> Result<(), OnnxError> {
    let channels = match layers.last() {
        Some(LayerSpec::Conv2d { out_channels, .. }) => *out_channels,
        Some(LayerSpec::Linear { out_features, .. }) => *out_features,
        // Anywhere else (after an activation, a sum or a concatenation, or first in a branch:
        // pre-activation blocks), an affine layer of its own, the identity folded into.
        _ => {
            let channels = stats.first().map_or(0, Vec::len);
            let d = i64::try_from(channels)
                .map_err(|_| bad("BatchNormalization channels out of range"))?;
            let li = layers.len().to_string();
            layers.push(LayerSpec::Affine { channels });
            tensors.push((li.clone(), "weight", vec![d], vec![1.0; channels]));
            tensors.push((li, "bias", vec![d], vec![0.0; channels]));
            channels
        }
    };
    let [scale, shift, mean, var] = stats else {
        return Err(bad("BatchNormalization without its four statistics"));
    };
    if [scale, shift, mean, var]
        .iter()
        .any(|v| v.len() != channels)
    {
        return Err(unsupported(format!(
            "BatchNormalization statistics of a length other than the {channels} channels"
        )));
    }
    let Some([(_, "weight", _, w), (_, "bias", _, b)]) = tensors.last_chunk_mut::<2>() else {
        return Err(unsupported(
            "BatchNormalization after a layer without weights".into(),
        ));
    };
    let per = w.len() / channels;
    for c in 0..channels {
        let k = f64::from(scale[c]) / (f64::from(var[c]) + f64::from(epsilon)).sqrt();
        let nb = (f64::from(b[c]) - f64::from(mean[c])) * k + f64::from(shift[c]);
        if !(k.is_finite() && nb.is_finite()) {
            return Err(unsupported(format!(
                "BatchNormalization channel {c}: variance {} and epsilon {epsilon} give no finite scale",
                var[c]
            )));
        }
        for v in &mut w[c * per..(c + 1) * per] {
            *v = (f64::from(*v) * k) as f32;
        }
        b[c] = nb as f32;
    }
    Ok(())
}

/// A protobuf message being written.
#[derive(Default)]
struct Msg(Vec<u8>);

impl Msg {
    fn varint(&mut self, mut v: u64) {
        loop {
            let b = (v & 0x7f) as u8;
            v >>= 7;
            if v == 0 {
                self.0.push(b);
                return;
            }
            self.0.push(b | 0x80);
        }
    }
    fn key(&mut self, field: u64, wire: u64) {
        self.varint(field << 3 | wire);
    }
    fn int(&mut self, field: u64, v: i64) -> &mut Msg {
        self.key(field, 0);
        self.varint(v as u64);
        self
    }
    fn bytes(&mut self, field: u64, b: &[u8]) -> &mut Msg {
        self.key(field, 2);
        self.varint(b.len() as u64);
        self.0.extend_from_slice(b);
        self
    }
    fn str(&mut self, field: u64, s: &str) -> &mut Msg {
        self.bytes(field, s.as_bytes())
    }
    fn msg(&mut self, field: u64, m: &Msg) -> &mut Msg {
        self.bytes(field, &m.0)
    }
    fn float(&mut self, field: u64, v: f32) -> &mut Msg {
        self.key(field, 5);
        self.0.extend_from_slice(&v.to_le_bytes());
        self
    }
}

fn attr_float(name: &str, v: f32) -> Msg {
    let mut a = Msg::default();
    a.str(1, name).float(2, v).int(20, 1); // FLOAT
    a
}

/// PyTorch's `hardsigmoid` as ONNX writes it: `HardSigmoid` with α = 1/6 and β = 1/2 (ONNX's
/// defaults are 0.2 and 0.5).
fn hard_sigmoid_attrs(n: &mut Msg) {
    n.msg(5, &attr_float("alpha", 1.0 / 6.0));
    n.msg(5, &attr_float("beta", 0.5));
}

fn attr_ints(name: &str, v: &[i64]) -> Msg {
    let mut a = Msg::default();
    a.str(1, name);
    for &x in v {
        a.int(8, x);
    }
    a.int(20, 7); // AttributeType INTS
    a
}

fn attr_int(name: &str, v: i64) -> Msg {
    let mut a = Msg::default();
    a.str(1, name).int(3, v).int(20, 2); // INT
    a
}

fn float_tensor(name: &str, dims: &[usize], data: &[f32]) -> Msg {
    let mut t = Msg::default();
    for &d in dims {
        t.int(1, d as i64);
    }
    t.int(2, 1).str(8, name);
    let raw: Vec<u8> = data.iter().flat_map(|v| v.to_le_bytes()).collect();
    t.bytes(9, &raw);
    t
}

fn value_info_msg(name: &str, dims: &[Option<usize>]) -> Msg {
    let mut shape = Msg::default();
    for d in dims {
        let mut dim = Msg::default();
        match d {
            Some(v) => dim.int(1, *v as i64),
            None => dim.str(2, "n"),
        };
        shape.msg(1, &dim);
    }
    let mut tt = Msg::default();
    tt.int(1, 1).msg(2, &shape);
    let mut ty = Msg::default();
    ty.msg(1, &tt);
    let mut vi = Msg::default();
    vi.str(1, name).msg(2, &ty);
    vi
}

/// The model as an ONNX file (IR version 8, opset 13): input `x` of shape `[n, C, H, W]`, output
/// `logits` of shape `[n, classes]`, weights inline in PyTorch's layouts, parameter names as in
/// the safetensors file. Any ONNX runtime can serve it.
pub fn export(model: &Model) -> Vec<u8> {
    let arch = model.arch();
    let params: HashMap<&str, (usize, &crate::nn::ParamInfo)> = model
        .param_infos()
        .iter()
        .enumerate()
        .map(|(i, p)| (p.name.as_str(), (i, p)))
        .collect();
    let mut w = Writer {
        graph: Msg::default(),
        params,
        torch: crate::weights::torch_layout(model),
    };
    let mut current = "x".to_string();
    for (li, layer) in arch.layers.iter().enumerate() {
        let out = if li + 1 == arch.layers.len() {
            "logits".to_string()
        } else {
            format!("h{li}")
        };
        w.layer(layer, &li.to_string(), &current, &out);
        current = out;
    }
    let Writer { mut graph, .. } = w;
    graph.str(2, &arch.name);
    let [c, h, w] = arch.input;
    graph.msg(11, &value_info_msg("x", &[None, Some(c), Some(h), Some(w)]));
    graph.msg(12, &value_info_msg("logits", &[None, Some(arch.classes)]));
    let mut opset = Msg::default();
    opset.str(1, "").int(2, 13);
    let mut m = Msg::default();
    m.int(1, 8)
        .str(2, "warden")
        .str(3, env!("CARGO_PKG_VERSION"))
        .msg(7, &graph)
        .msg(8, &opset);
    m.0
}

/// The graph being written by [`export`], with the model's parameters in PyTorch's layout.
struct Writer<'m> {
    graph: Msg,
    params: HashMap<&'m str, (usize, &'m crate::nn::ParamInfo)>,
    torch: Vec<Vec<f32>>,
}

impl Writer<'_> {
    /// Writes the layers of a branch from value `input`: layer `j` named `{path}.{j}` (as its
    /// parameters are) and giving value `{values}.{j}`. The value it ends on (`input` itself for
    /// an empty branch).
    fn branch(&mut self, layers: &[LayerSpec], path: &str, input: &str, values: &str) -> String {
        let mut cur = input.to_string();
        for (j, l) in layers.iter().enumerate() {
            let next = format!("{values}.{j}");
            self.layer(l, &format!("{path}.{j}"), &cur, &next);
            cur = next;
        }
        cur
    }

    /// Writes `op(input)` (`Sigmoid`, or PyTorch's `HardSigmoid`) for the `x · op(x)` that opset
    /// 13 writes SiLU and hard swish as; the value it gives.
    fn self_gate(&mut self, input: &str, out: &str, name: &str, op: &str) -> String {
        let gate = format!("{out}.{}", op.to_lowercase());
        let mut n = Msg::default();
        n.str(1, input)
            .str(2, &gate)
            .str(3, &format!("{op}_{name}"))
            .str(4, op);
        if op == "HardSigmoid" {
            hard_sigmoid_attrs(&mut n);
        }
        self.graph.msg(1, &n);
        gate
    }

    /// Writes `layer` (named `name`, as its parameters are) reading value `input` and giving
    /// value `out`. A residual block becomes its two branches and an `Add`.
    fn layer(&mut self, layer: &LayerSpec, name: &str, input: &str, out: &str) {
        let mut n = Msg::default();
        let mut inputs = vec![input.to_string()];
        let op = match layer {
            LayerSpec::Conv2d {
                kernel,
                padding,
                stride,
                groups,
                ..
            } => {
                inputs.push(format!("{name}.weight"));
                inputs.push(format!("{name}.bias"));
                let k = *kernel as i64;
                let p = *padding as i64;
                n.msg(5, &attr_ints("kernel_shape", &[k, k]));
                n.msg(5, &attr_ints("pads", &[p, p, p, p]));
                n.msg(5, &attr_ints("strides", &[*stride as i64, *stride as i64]));
                n.msg(5, &attr_ints("dilations", &[1, 1]));
                n.msg(5, &attr_int("group", *groups as i64));
                "Conv"
            }
            LayerSpec::Relu => "Relu",
            LayerSpec::Relu6 => {
                for (bound, v) in [("min", 0.0f32), ("max", 6.0)] {
                    let t = format!("{name}.{bound}");
                    self.graph.msg(5, &float_tensor(&t, &[], &[v]));
                    inputs.push(t);
                }
                "Clip"
            }
            LayerSpec::Tanh => "Tanh",
            LayerSpec::Sigmoid => "Sigmoid",
            LayerSpec::HardSigmoid => {
                hard_sigmoid_attrs(&mut n);
                "HardSigmoid"
            }
            // HardSwish is opset 14: `x · HardSigmoid(x)`, as PyTorch writes it before.
            LayerSpec::HardSwish => {
                inputs.push(self.self_gate(input, out, name, "HardSigmoid"));
                "Mul"
            }
            LayerSpec::Elu => "Elu",
            // ONNX opset 13 has no SiLU: `x · Sigmoid(x)`, as PyTorch exports `nn.SiLU`.
            LayerSpec::Silu => {
                inputs.push(self.self_gate(input, out, name, "Sigmoid"));
                "Mul"
            }
            LayerSpec::MaxPool2d { kernel, stride, .. }
            | LayerSpec::AvgPool2d { kernel, stride } => {
                let k = *kernel as i64;
                let s = stride.unwrap_or(*kernel) as i64;
                let p = match layer {
                    LayerSpec::MaxPool2d { padding, .. } => *padding as i64,
                    _ => 0,
                };
                n.msg(5, &attr_ints("kernel_shape", &[k, k]));
                n.msg(5, &attr_ints("strides", &[s, s]));
                n.msg(5, &attr_ints("pads", &[p, p, p, p]));
                if let LayerSpec::MaxPool2d { ceil_mode, .. } = layer {
                    if *ceil_mode {
                        n.msg(5, &attr_int("ceil_mode", 1));
                    }
                    "MaxPool"
                } else {
                    "AveragePool"
                }
            }
            LayerSpec::GlobalAvgPool => "GlobalAveragePool",
            LayerSpec::Flatten => {
                n.msg(5, &attr_int("axis", 1));
                "Flatten"
            }
            LayerSpec::Linear { .. } => {
                inputs.push(format!("{name}.weight"));
                inputs.push(format!("{name}.bias"));
                n.msg(5, &attr_int("transB", 1));
                "Gemm"
            }
            // Batch normalization with mean 0, variance 1 and ε 0: exactly `x·scale + bias`.
            LayerSpec::Affine { channels } => {
                inputs.push(format!("{name}.weight"));
                inputs.push(format!("{name}.bias"));
                for (stat, v) in [("mean", 0.0f32), ("var", 1.0)] {
                    let t = format!("{name}.{stat}");
                    self.graph
                        .msg(5, &float_tensor(&t, &[*channels], &vec![v; *channels]));
                    inputs.push(t);
                }
                n.msg(5, &attr_float("epsilon", 0.0));
                "BatchNormalization"
            }
            LayerSpec::Residual { body, shortcut } => {
                let mut ends = Vec::new();
                for (branch, layers) in [("body", body), ("shortcut", shortcut)] {
                    let (path, values) = (format!("{name}.{branch}"), format!("{out}.{branch}"));
                    ends.push(self.branch(layers, &path, input, &values));
                }
                inputs = ends;
                "Add"
            }
            // `x · body(x)`: ONNX's Mul broadcasts a 1×1 factor image over the positions.
            LayerSpec::Gate { body } => {
                let (path, values) = (format!("{name}.body"), format!("{out}.body"));
                inputs.push(self.branch(body, &path, input, &values));
                "Mul"
            }
            LayerSpec::Concat { branches } => {
                inputs.clear();
                for (b, branch) in branches.iter().enumerate() {
                    let path = format!("{name}.branches.{b}");
                    let values = format!("{out}.branches.{b}");
                    inputs.push(self.branch(branch, &path, input, &values));
                }
                n.msg(5, &attr_int("axis", 1));
                "Concat"
            }
        };
        for i in &inputs {
            n.str(1, i);
        }
        n.str(2, out).str(3, &format!("{op}_{name}")).str(4, op);
        self.graph.msg(1, &n);
        if !matches!(
            layer,
            LayerSpec::Residual { .. } | LayerSpec::Gate { .. } | LayerSpec::Concat { .. }
        ) {
            for pname in inputs.iter().skip(1) {
                if let Some(&(idx, info)) = self.params.get(pname.as_str()) {
                    self.graph
                        .msg(5, &float_tensor(pname, &info.torch_shape, &self.torch[idx]));
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use crate::nn::{Arch, Workspace};

    /// A node reading `inputs` and giving `out` (also its name).
    fn node(inputs: &[&str], out: &str, op: &str, attrs: &[Msg]) -> Msg {
        let mut n = Msg::default();
        for i in inputs {
            n.str(1, i);
        }
        n.str(2, out).str(3, out).str(4, op);
        for a in attrs {
            n.msg(5, a);
        }
        n
    }

    /// A model file (IR 8, opset 13) of graph `g`.
    fn model_of(g: &Msg) -> Vec<u8> {
        let mut opset = Msg::default();
        opset.str(1, "").int(2, 13);
        let mut m = Msg::default();
        m.int(1, 8).msg(7, g).msg(8, &opset);
        m.0
    }

    /// A graph written by hand: `x + relu(conv(x))`, with the identity as the sum's first operand
    /// (PyTorch's `x + self.body(x)`), then a linear head; and the same with a third reader of
    /// `x`, which is refused.
    fn graph(third_reader: bool) -> Vec<u8> {
        let w: Vec<f32> = (0..36)
            .map(|i| ((i * 5) % 17) as f32 / 17.0 - 0.5)
            .collect();
        let lw: Vec<f32> = (0..3 * 32)
            .map(|i| ((i * 7) % 11) as f32 / 11.0 - 0.5)
            .collect();
        let mut g = Msg::default();
        let conv_attrs = [
            attr_ints("kernel_shape", &[3, 3]),
            attr_ints("pads", &[1, 1, 1, 1]),
        ];
        g.msg(1, &node(&["x", "w", "b"], "c", "Conv", &conv_attrs));
        g.msg(1, &node(&["c"], "r", "Relu", &[]));
        g.msg(1, &node(&["x", "r"], "s", "Add", &[]));
        if third_reader {
            g.msg(1, &node(&["x"], "t", "Relu", &[]));
        }
        g.msg(1, &node(&["s"], "f", "Flatten", &[]));
        let gemm = [attr_int("transB", 1)];
        g.msg(1, &node(&["f", "lw", "lb"], "logits", "Gemm", &gemm));
        g.msg(5, &float_tensor("w", &[2, 2, 3, 3], &w[..]));
        g.msg(5, &float_tensor("b", &[2], &[0.1, -0.2]));
        g.msg(5, &float_tensor("lw", &[3, 32], &lw));
        g.msg(5, &float_tensor("lb", &[3], &[0.0, 0.5, -0.5]));
        g.msg(11, &value_info_msg("x", &[None, Some(2), Some(4), Some(4)]));
        model_of(&g)
    }

    #[test]
    fn a_sum_with_the_identity_first_is_a_residual_block() {
        let m = import(&graph(false)).unwrap();
        let [LayerSpec::Residual { body, shortcut }, ..] = m.arch().layers.as_slice() else {
            panic!("{:?}", m.arch().layers);
        };
        assert_eq!((body.len(), shortcut.len()), (2, 0));
        // The same network built by hand: the logits agree with its arithmetic.
        let x: Vec<f32> = (0..32).map(|i| ((i * 5) % 9) as f32 / 9.0).collect();
        let logits = m
            .forward(&mut Workspace::default(), &x, 1)
            .unwrap()
            .to_vec();
        let arch: Arch = m.arch().clone();
        assert_eq!(arch.input, [2, 4, 4]);
        let (w, b) = (&m.params()[0], &m.params()[1]);
        let (lw, lb) = (&m.params()[2], &m.params()[3]);
        // Channels-last: x[(y·4 + x)·2 + c]; conv weights [cout][ky][kx][cin].
        let mut s = x.clone();
        for yy in 0..4i32 {
            for xx in 0..4i32 {
                for co in 0..2 {
                    let mut z = b[co];
                    for ky in 0..3i32 {
                        for kx in 0..3i32 {
                            let (iy, ix) = (yy + ky - 1, xx + kx - 1);
                            if !(0..4).contains(&iy) || !(0..4).contains(&ix) {
                                continue;
                            }
                            for ci in 0..2 {
                                let wi = ((co * 3 + ky as usize) * 3 + kx as usize) * 2 + ci;
                                z += w[wi] * x[((iy * 4 + ix) as usize) * 2 + ci];
                            }
                        }
                    }
                    s[((yy * 4 + xx) as usize) * 2 + co] += z.max(0.0);
                }
            }
        }
        for (o, &got) in logits.iter().enumerate() {
            let want: f32 = lb[o] + (0..32).map(|i| lw[o * 32 + i] * s[i]).sum::<f32>();
            assert!((got - want).abs() < 1e-5, "{o}: {got} vs {want}");
        }
        match import(&graph(true)) {
            Err(OnnxError::Unsupported(msg)) => assert!(msg.contains("3 nodes"), "{msg}"),
            other => panic!("{:?}", other.map(|m| m.arch().clone())),
        }
    }

    /// Two convolutions whose second weight is an `Identity` of the first (how PyTorch's
    /// TorchScript exporter writes a parameter equal to an earlier one), with `copies` more
    /// Identity copies of it that nothing reads.
    fn aliased(copies: usize) -> Vec<u8> {
        let mut g = Msg::default();
        let conv = [
            attr_ints("kernel_shape", &[3, 3]),
            attr_ints("pads", &[1, 1, 1, 1]),
        ];
        g.msg(1, &node(&["w"], "w2", "Identity", &[]));
        for i in 0..copies {
            g.msg(1, &node(&["w"], &format!("copy{i}"), "Identity", &[]));
        }
        g.msg(1, &node(&["x", "w", "b"], "c", "Conv", &conv));
        g.msg(1, &node(&["c"], "r", "Relu", &[]));
        g.msg(1, &node(&["r", "w2", "b"], "c2", "Conv", &conv));
        g.msg(1, &node(&["c2"], "f", "Flatten", &[]));
        g.msg(
            1,
            &node(
                &["f", "lw", "lb"],
                "logits",
                "Gemm",
                &[attr_int("transB", 1)],
            ),
        );
        let w: Vec<f32> = (0..9).map(|i| i as f32 / 9.0 - 0.4).collect();
        g.msg(5, &float_tensor("w", &[1, 1, 3, 3], &w));
        g.msg(5, &float_tensor("b", &[1], &[0.1]));
        g.msg(5, &float_tensor("lw", &[2, 16], &[0.25; 32]));
        g.msg(5, &float_tensor("lb", &[2], &[0.0, 0.5]));
        g.msg(11, &value_info_msg("x", &[None, Some(1), Some(4), Some(4)]));
        model_of(&g)
    }

    /// An Identity of a constant is that constant: both convolutions get the same weights. So
    /// many copies that they outweigh the constants are refused (a memory bomb otherwise).
    #[test]
    fn identity_copies_of_constants_are_constants() {
        let m = import(&aliased(0)).unwrap();
        assert_eq!(m.params()[0], m.params()[2]);
        assert_eq!(m.params()[1], m.params()[3]);
        assert_eq!(m.params()[0].len(), 9);
        // The constants weigh 44 values (9 + 1 + 32 + 2): four copies of the weights (`w2` and
        // three unread ones) fit, five do not.
        assert!(import(&aliased(3)).is_ok());
        match import(&aliased(4)) {
            Err(OnnxError::Unsupported(msg)) => assert!(msg.contains("larger"), "{msg}"),
            other => panic!("{:?}", other.map(|m| m.arch().clone())),
        }
    }
}
