//! Small image classifiers on the CPU: an architecture described as data, forward and backward
//! passes written for these layers, and the workspaces that make a training step allocation-free.
//!
//! Layout. Activations are channels-last (`N × H × W × C`): a 3×3 convolution then reads each input
//! pixel's channels as one contiguous run, im2col rows are nine copies, and the product
//! `col[N·H'·W', 9·Cin] × Wᵀ[9·Cin, Cout]` lands directly in the next layer's layout. Convolution
//! weights are kept as `[Cout, kh, kw, Cin]`; the PyTorch layout (`[Cout, Cin, kh, kw]`, and
//! channel-first flattening before the first linear layer) is produced on export
//! (see [`crate::weights`]).
//!
//! Gradients. [`Model::backward`] takes the input gradient and the parameter gradients as separate
//! requests: attacks ask for the first only, which skips every weight-gradient product (a third of
//! the work of a training step).
//!
//! Threads. A batch is cut into contiguous shards, one per thread, each with its own [`Workspace`]
//! and gradient buffers, summed in shard order: a run is reproducible for a given seed, thread count
//! and CPU.

use serde::{Deserialize, Serialize};
use std::sync::OnceLock;
use warden_gemm::{Shape, sgemm};

use crate::rng::Rng;

/// Largest model accepted from an architecture file, in parameters.
pub const MAX_PARAMS: usize = 64 << 20;
/// Largest width, height, channel count or feature count of any layer.
pub const MAX_DIM: usize = 1 << 16;
/// Largest activation of one example at any layer, in values.
pub const MAX_ACTIVATION: usize = 1 << 22;
/// Workspace values (f32) one thread may use for evaluation passes: 1 GiB. Evaluation chunks
/// adapt to it; a model whose single example needs more is refused; training refuses batches
/// whose per-thread shard needs more than [`TRAIN_BUDGET`].
pub const WORKSPACE_BUDGET: usize = 1 << 28;
/// Workspace values one thread may use for a training step: 4 GiB.
pub const TRAIN_BUDGET: usize = 1 << 30;
/// Largest number of layers.
pub const MAX_LAYERS: usize = 1024;
/// Most examples a thread of a forward or attack pass waits for before it is worth starting:
/// below this many `small-cnn` examples, the start-up costs more than the thread saves. Training
/// steps shard by this count for every network, since their summed gradients depend on the split.
pub const LEAST_PER_THREAD: usize = 16;
/// Multiply-adds a shard should hold to be worth a thread: [`LEAST_PER_THREAD`] examples of
/// `small-cnn` ([`Model::least_per_thread`]).
const SHARD_MACS: usize = LEAST_PER_THREAD * 2_631_040;

/// One layer, as written in an architecture file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
pub enum LayerSpec {
    /// Square kernel, zero padding on every side, the same stride in both directions; `groups`
    /// splits the channels into that many independent convolutions (PyTorch's `groups`; equal to
    /// the channels, a depthwise convolution, as in MobileNet).
    Conv2d {
        in_channels: usize,
        out_channels: usize,
        kernel: usize,
        #[serde(default)]
        padding: usize,
        #[serde(default = "one", skip_serializing_if = "is_one")]
        stride: usize,
        #[serde(default = "one", skip_serializing_if = "is_one")]
        groups: usize,
    },
    Relu,
    /// `min(max(x, 0), 6)` (PyTorch's `nn.ReLU6`, ONNX's `Clip` between 0 and 6), as in MobileNet.
    Relu6,
    /// Hyperbolic tangent (bounded activations suit DP-SGD: Papernot et al. 2021).
    Tanh,
    /// Exponential linear unit with α = 1 (PyTorch's `nn.ELU()`): `x` for `x > 0`, `eˣ − 1`
    /// otherwise. Its derivative is continuous, which suits adversarial training (Xie et al.
    /// 2020, "Smooth adversarial training").
    Elu,
    /// Sigmoid-weighted linear unit, `x·σ(x)` (PyTorch's `nn.SiLU`, "swish"), as in EfficientNet;
    /// smooth everywhere, the best activation of Xie et al. 2020's adversarial training study.
    Silu,
    /// Logistic sigmoid, `1 / (1 + e⁻ˣ)`: the gate at the end of a [`LayerSpec::Gate`]'s body.
    Sigmoid,
    /// `min(max(x/6 + 1/2, 0), 1)` (PyTorch's `nn.Hardsigmoid`), MobileNet V3's gate.
    HardSigmoid,
    /// `x · hard_sigmoid(x)` (PyTorch's `nn.Hardswish`), MobileNet V3's activation.
    HardSwish,
    /// Square window; the stride is the window's size unless given; `padding` on every side,
    /// at most half the window, never the maximum (PyTorch's `MaxPool2d(kernel, stride,
    /// padding, ceil_mode=...)`, as in torchvision's ResNet stem, `MaxPool2d(3, 2, 1)`). With
    /// `ceil_mode` the output size rounds up, as PyTorch's does (a last window that would start
    /// in the right or bottom padding is dropped), and windows past the edge take the maximum
    /// of their part inside (GoogLeNet, SqueezeNet).
    MaxPool2d {
        kernel: usize,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        stride: Option<usize>,
        #[serde(default, skip_serializing_if = "is_zero")]
        padding: usize,
        #[serde(default, skip_serializing_if = "is_false")]
        ceil_mode: bool,
    },
    /// Square window, floor mode, no padding; the stride is the window's size unless given
    /// (PyTorch's `AvgPool2d(kernel, stride)`).
    AvgPool2d {
        kernel: usize,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        stride: Option<usize>,
    },
    /// The mean of each channel over the whole image, leaving a 1×1 image (PyTorch's
    /// `AdaptiveAvgPool2d(1)`, ONNX's `GlobalAveragePool`).
    GlobalAvgPool,
    /// Channel-first flattening, as PyTorch's `nn.Flatten()` on `N × C × H × W`.
    Flatten,
    Linear {
        in_features: usize,
        out_features: usize,
    },
    /// A scale and a shift per channel (per feature of a flat input), `x·weight[c] + bias[c]`:
    /// batch normalization at inference, its running statistics folded into the two. The ONNX
    /// importer makes one of every `BatchNormalization` that no convolution or linear layer
    /// precedes (pre-activation ResNets, DenseNet). Initialised to the identity (weight 1, bias 0)
    /// and trained like any other layer. In PyTorch, a module with parameters `weight` and `bias`
    /// of shape `[channels]` whose forward is `x * weight.view(1, -1, 1, 1) + bias.view(1, -1, 1,
    /// 1)` (`view(1, -1)` on a flat input): `nn.BatchNorm2d(channels, eps=0)` in eval mode, with
    /// the running mean 0 and variance 1 it starts with, computes the same.
    Affine {
        channels: usize,
    },
    /// `body(x) + shortcut(x)`, the shortcut being the identity when it is empty: a ResNet
    /// block, before the activation that usually follows it (a separate layer). Both branches
    /// hold image layers only and must give the same shape. In PyTorch, a module with two
    /// `nn.Sequential`s, `body` and `shortcut`, whose forward is `self.body(x) +
    /// self.shortcut(x)`; parameters are named `{index}.body.{j}.weight` and
    /// `{index}.shortcut.{j}.weight`.
    Residual {
        body: Vec<LayerSpec>,
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        shortcut: Vec<LayerSpec>,
    },
    /// `x · body(x)`: the input scaled by what its body computes from it, one factor per
    /// channel when the body ends on a 1×1 image (broadcast over the positions), one per value
    /// when it gives the input's shape. A squeeze-and-excitation block (Hu et al. 2018), as in
    /// EfficientNet and MobileNet V3: body `[global_avg_pool, conv2d 1×1, silu, conv2d 1×1,
    /// sigmoid]`. The body holds image layers only; a gate may sit in a residual block's branch.
    /// In PyTorch, a module with an `nn.Sequential` `body` whose forward is `x * self.body(x)`;
    /// parameters are named `{index}.body.{j}.weight`.
    Gate {
        body: Vec<LayerSpec>,
    },
    /// The branches' outputs side by side along the channels, `cat([b(x) for b in branches], 1)`
    /// in PyTorch: an Inception block, or SqueezeNet's fire module's two expansions. An empty
    /// branch is the identity. Branches hold image layers (and gates) only and must give images
    /// of the same height and width. In PyTorch, a module with an `nn.ModuleList` `branches` of
    /// `nn.Sequential`s; parameters are named `{index}.branches.{b}.{j}.weight`.
    Concat {
        branches: Vec<Vec<LayerSpec>>,
    },
}

impl LayerSpec {
    /// Layers in this one, itself and those inside it.
    pub fn count(&self) -> usize {
        match self {
            LayerSpec::Residual { body, shortcut } => {
                1 + body
                    .iter()
                    .chain(shortcut)
                    .map(LayerSpec::count)
                    .sum::<usize>()
            }
            LayerSpec::Gate { body } => 1 + body.iter().map(LayerSpec::count).sum::<usize>(),
            LayerSpec::Concat { branches } => {
                1 + branches
                    .iter()
                    .flatten()
                    .map(LayerSpec::count)
                    .sum::<usize>()
            }
            _ => 1,
        }
    }
}

fn one() -> usize {
    1
}

pub(crate) fn is_one(v: &usize) -> bool {
    *v == 1
}

fn is_zero(v: &usize) -> bool {
    *v == 0
}

fn is_false(v: &bool) -> bool {
    !*v
}

/// An architecture: the input's shape, the number of classes, and the layers in order. A PyTorch
/// `nn.Sequential` of the same layers has the same parameter names (`"{index}.weight"`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Arch {
    pub name: String,
    /// Channels, height, width.
    pub input: [usize; 3],
    pub classes: usize,
    pub layers: Vec<LayerSpec>,
}

/// Why an architecture, a weight file or an input was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ModelError {
    #[error("layer {layer}: {reason}")]
    Layer { layer: usize, reason: String },
    #[error("architecture: {0}")]
    Arch(String),
    #[error("input: {0}")]
    Input(String),
    /// An engine outside this crate (a GPU through `warden-burn`) failed.
    #[error("engine: {0}")]
    Engine(String),
}

impl Arch {
    /// The network of the PyTorch baseline (`../shared/baselines`): conv 1→32 3×3, ReLU, max-pool 2,
    /// conv 32→64 3×3, ReLU, max-pool 2, linear 1600→128, ReLU, linear 128→10 (225,034 parameters).
    pub fn small_cnn() -> Arch {
        use LayerSpec::*;
        Arch {
            name: "small-cnn".into(),
            input: [1, 28, 28],
            classes: 10,
            layers: vec![
                Conv2d {
                    in_channels: 1,
                    out_channels: 32,
                    kernel: 3,
                    padding: 0,
                    stride: 1,
                    groups: 1,
                },
                Relu,
                MaxPool2d {
                    kernel: 2,
                    stride: None,
                    padding: 0,
                    ceil_mode: false,
                },
                Conv2d {
                    in_channels: 32,
                    out_channels: 64,
                    kernel: 3,
                    padding: 0,
                    stride: 1,
                    groups: 1,
                },
                Relu,
                MaxPool2d {
                    kernel: 2,
                    stride: None,
                    padding: 0,
                    ceil_mode: false,
                },
                Flatten,
                Linear {
                    in_features: 1600,
                    out_features: 128,
                },
                Relu,
                Linear {
                    in_features: 128,
                    out_features: 10,
                },
            ],
        }
    }

    /// A multi-layer perceptron on flattened 28×28 images with the given hidden widths.
    pub fn mlp(hidden: &[usize]) -> Arch {
        let mut layers = vec![LayerSpec::Flatten];
        let mut prev = 28 * 28;
        for &h in hidden {
            layers.push(LayerSpec::Linear {
                in_features: prev,
                out_features: h,
            });
            layers.push(LayerSpec::Relu);
            prev = h;
        }
        layers.push(LayerSpec::Linear {
            in_features: prev,
            out_features: 10,
        });
        let widths: Vec<String> = hidden.iter().map(|h| h.to_string()).collect();
        Arch {
            name: format!("mlp-{}", widths.join("-")),
            input: [1, 28, 28],
            classes: 10,
            layers,
        }
    }

    /// The architectures Warden knows by name.
    pub fn named(name: &str) -> Option<Arch> {
        match name {
            "small-cnn" => Some(Arch::small_cnn()),
            "mlp" => Some(Arch::mlp(&[256, 128])),
            "cnn4" => Some(Arch::cnn4()),
            "dp-cnn" => Some(Arch::dp_cnn()),
            "wk-small" => Some(Arch::strided(16, 32, 100, "wk-small")),
            "wk-wide" => Some(Arch::strided(32, 64, 200, "wk-wide")),
            // The same network with tanh activations (for DP-SGD).
            "small-cnn-tanh" => {
                Some(Arch::small_cnn().with_activation(LayerSpec::Tanh, "small-cnn-tanh"))
            }
            _ => None,
        }
    }

    /// The same network named `name`, with every ReLU replaced by `act` (an activation).
    pub fn with_activation(mut self, act: LayerSpec, name: &str) -> Arch {
        self.name = name.into();
        for l in &mut self.layers {
            if *l == LayerSpec::Relu {
                *l = act.clone();
            }
        }
        self
    }

    /// The end-to-end CNN of Papernot et al. 2021 ("Tempered sigmoid activations") and Tramèr and
    /// Boneh 2021 for DP-SGD on MNIST and Fashion-MNIST: conv 1→16 8×8 stride 2 padding 3, tanh,
    /// max-pool 2 stride 1, conv 16→32 4×4 stride 2, tanh, max-pool 2 stride 1, linear 512→32,
    /// tanh, linear 32→10 (26,010 parameters). Small on purpose: DP noise grows with the
    /// number of parameters.
    pub fn dp_cnn() -> Arch {
        use LayerSpec::*;
        Arch {
            name: "dp-cnn".into(),
            input: [1, 28, 28],
            classes: 10,
            layers: vec![
                Conv2d {
                    in_channels: 1,
                    out_channels: 16,
                    kernel: 8,
                    padding: 3,
                    stride: 2,
                    groups: 1,
                },
                Tanh,
                MaxPool2d {
                    kernel: 2,
                    stride: Some(1),
                    padding: 0,
                    ceil_mode: false,
                },
                Conv2d {
                    in_channels: 16,
                    out_channels: 32,
                    kernel: 4,
                    padding: 0,
                    stride: 2,
                    groups: 1,
                },
                Tanh,
                MaxPool2d {
                    kernel: 2,
                    stride: Some(1),
                    padding: 0,
                    ceil_mode: false,
                },
                Flatten,
                Linear {
                    in_features: 512,
                    out_features: 32,
                },
                Tanh,
                Linear {
                    in_features: 32,
                    out_features: 10,
                },
            ],
        }
    }

    /// Two 4×4 convolutions of stride 2 and padding 1 (`c1` then `c2` channels, 28×28 → 14×14 →
    /// 7×7, no pooling) and two linear layers (`hidden`, 10). With 16, 32, 100 it is the "small"
    /// network of Wong and Kolter 2018 for MNIST and Fashion-MNIST (`wk-small`, 166,406
    /// parameters, about 0.6M multiply-adds per image); `wk-wide` doubles every width (32, 64, 200:
    /// 662,786 parameters, about 2.5M multiply-adds, as `small-cnn`). Cheap enough per image to
    /// afford the 40 adversarial epochs that robust training of this size wants.
    pub fn strided(c1: usize, c2: usize, hidden: usize, name: &str) -> Arch {
        use LayerSpec::*;
        let conv = |i, o| Conv2d {
            in_channels: i,
            out_channels: o,
            kernel: 4,
            padding: 1,
            stride: 2,
            groups: 1,
        };
        Arch {
            name: name.into(),
            input: [1, 28, 28],
            classes: 10,
            layers: vec![
                conv(1, c1),
                Relu,
                conv(c1, c2),
                Relu,
                Flatten,
                Linear {
                    in_features: c2 * 49,
                    out_features: hidden,
                },
                Relu,
                Linear {
                    in_features: hidden,
                    out_features: 10,
                },
            ],
        }
    }

    /// Four 3×3 convolutions (32, 32, 64, 64 channels, a max-pool after each pair) and three
    /// linear layers (200, 200, 10): the "SmallCNN" of the TRADES reference code for MNIST,
    /// without dropout (312,202 parameters; about 4× the multiply-adds of [`Arch::small_cnn`]).
    pub fn cnn4() -> Arch {
        use LayerSpec::*;
        let conv = |i, o| Conv2d {
            in_channels: i,
            out_channels: o,
            kernel: 3,
            padding: 0,
            stride: 1,
            groups: 1,
        };
        Arch {
            name: "cnn4".into(),
            input: [1, 28, 28],
            classes: 10,
            layers: vec![
                conv(1, 32),
                Relu,
                conv(32, 32),
                Relu,
                MaxPool2d {
                    kernel: 2,
                    stride: None,
                    padding: 0,
                    ceil_mode: false,
                },
                conv(32, 64),
                Relu,
                conv(64, 64),
                Relu,
                MaxPool2d {
                    kernel: 2,
                    stride: None,
                    padding: 0,
                    ceil_mode: false,
                },
                Flatten,
                Linear {
                    in_features: 1024,
                    out_features: 200,
                },
                Relu,
                Linear {
                    in_features: 200,
                    out_features: 200,
                },
                Relu,
                Linear {
                    in_features: 200,
                    out_features: 10,
                },
            ],
        }
    }
}

/// A tensor's shape between layers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Dims {
    /// Channels-last image.
    Image {
        h: usize,
        w: usize,
        c: usize,
    },
    Flat(usize),
}

impl Dims {
    fn len(self) -> usize {
        match self {
            Dims::Image { h, w, c } => h * w * c,
            Dims::Flat(n) => n,
        }
    }
}

/// An executable step. `Flatten` is not one: channels-last memory is already flat, and the first
/// linear layer after it records the image shape to translate weights to PyTorch's order.
#[derive(Debug, Clone)]
enum Op {
    /// A convolution as im2col and products. With `groups` > 1 each im2col row holds the groups
    /// one after the other (`[group][ky][kx][channel of the group]`), and each group is its own
    /// product against its block of output channels. A depthwise one ([`depthwise`]) runs
    /// directly instead, without im2col rows.
    Conv {
        layer: usize,
        cin: usize,
        cout: usize,
        k: usize,
        pad: usize,
        stride: usize,
        groups: usize,
        h: usize,
        w: usize,
        oh: usize,
        ow: usize,
        relu: bool,
        param: usize,
    },
    /// Max pooling; `pad` rows and columns on every side take no part in any window.
    Pool {
        k: usize,
        stride: usize,
        pad: usize,
        h: usize,
        w: usize,
        c: usize,
        oh: usize,
        ow: usize,
    },
    /// The mean over windows (floor mode, no padding), in the shapes [`avgpool`] takes: the
    /// input image (height, width, channels), the window (height, width, row and column
    /// stride) and the output's height and width.
    AvgPool {
        image: [usize; 3],
        win: [usize; 4],
        out_hw: [usize; 2],
    },
    Relu,
    Relu6,
    Tanh,
    Elu,
    Silu,
    Sigmoid,
    HardSigmoid,
    HardSwish,
    /// The sum of the value this op reads and value `other` (the end of a residual block).
    Add {
        other: usize,
    },
    /// The value this op reads (an image, `hw` positions of `c` channels) times value `gate`
    /// (the end of a gate's body): one factor per channel when `per_channel`, else per value.
    Scale {
        gate: usize,
        hw: usize,
        c: usize,
        per_channel: bool,
    },
    /// At each of `hw` positions, the `ca` channels of the value this op reads, then the `cb`
    /// of value `other` (a concatenation of more branches is a chain of these).
    Concat {
        other: usize,
        hw: usize,
        ca: usize,
        cb: usize,
    },
    Linear {
        layer: usize,
        inf: usize,
        outf: usize,
        relu: bool,
        param: usize,
    },
    /// `x·weight[ch] + bias[ch]` over `c` channels (the last, contiguous index).
    Affine {
        c: usize,
        param: usize,
    },
}

/// One parameter tensor: its PyTorch name and shape, and where a flattened image feeds it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParamInfo {
    pub name: String,
    /// Shape in PyTorch's layout.
    pub torch_shape: Vec<usize>,
    pub(crate) kind: ParamKind,
}

impl ParamInfo {
    /// A weight tensor (more than one dimension), not a bias.
    pub fn is_weight(&self) -> bool {
        self.torch_shape.len() > 1
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ParamKind {
    /// `[Cout, k, k, Cin]` here, `[Cout, Cin, k, k]` in PyTorch; `cin` is a group's channels.
    ConvWeight { cout: usize, cin: usize, k: usize },
    /// `[out, H·W·C]` here, `[out, C·H·W]` in PyTorch.
    LinearWeightImage {
        out: usize,
        c: usize,
        h: usize,
        w: usize,
    },
    /// Same layout on both sides.
    Plain,
}

/// A classifier: its architecture and its parameters (weights, then bias, per layer).
#[derive(Debug, Clone)]
pub struct Model {
    arch: Arch,
    ops: Vec<Op>,
    /// The value each op reads: 0 for the input, `j + 1` for op `j`'s output. `i` (the op
    /// before) except where a residual block forks and joins.
    srcs: Vec<usize>,
    dims: Vec<Dims>,
    params: Params,
    infos: Vec<ParamInfo>,
}

/// A model's parameters, and transposed copies of the weights that products of a few rows read.
///
/// A convolution's or linear layer's weights are stored `out × in` (PyTorch's layout), and the
/// forward pass multiplies by their transpose. `warden_gemm` computes a product of a few rows
/// (one example through a linear layer, say) row by row, reading the right operand along its
/// rows; the stored weights seen transposed would be read down their columns, more than twice as
/// slow. So such products read a copy stored `in × out`, made on first use: the same matrix, the
/// same bits out. Only [`Params::get_mut`] lends the values mutably, and it drops every copy, so
/// a copy never outlives the values it was made from.
#[derive(Clone)]
struct Params {
    values: Vec<Vec<f32>>,
    transposed: Vec<OnceLock<Vec<f32>>>,
}

impl Params {
    fn new(values: Vec<Vec<f32>>) -> Params {
        let transposed = values.iter().map(|_| OnceLock::new()).collect();
        Params { values, transposed }
    }

    fn get_mut(&mut self) -> &mut [Vec<f32>] {
        for t in &mut self.transposed {
            t.take();
        }
        &mut self.values
    }

    /// Weights `i` (`out × inf`) as the right operand of a product with `rows` rows.
    fn weights(&self, i: usize, out: usize, inf: usize, rows: usize) -> (&[f32], Shape) {
        if !warden_gemm::by_rows(rows, out) {
            return (&self.values[i], Shape::transposed(out, inf));
        }
        let t = self.transposed[i]
            .get_or_init(|| crate::weights::transpose_blocks(&self.values[i], out, inf));
        (t, Shape::row_major(inf, out))
    }

    /// Weights `i` (`out × inf`) transposed to `inf × out`, the same kind of copy: a depthwise
    /// convolution's `[c][ky][kx]` read as `[ky][kx][c]`.
    fn transposed_copy(&self, i: usize, out: usize, inf: usize) -> &[f32] {
        self.transposed[i]
            .get_or_init(|| crate::weights::transpose_blocks(&self.values[i], out, inf))
    }
}

impl std::ops::Deref for Params {
    type Target = [Vec<f32>];

    fn deref(&self) -> &[Vec<f32>] {
        &self.values
    }
}

impl std::fmt::Debug for Params {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.values.fmt(f)
    }
}

impl Model {
    /// A model with PyTorch's default initialisation (uniform in ±1/√fan_in for weights and
    /// biases), drawn from `seed`.
    pub fn init(arch: &Arch, seed: u64) -> Result<Model, ModelError> {
        let mut m = Model::zeros(arch)?;
        let mut rng = Rng::new(seed);
        let mut i = 0;
        while i < m.params.len() {
            let fan_in = match m.infos[i].torch_shape.as_slice() {
                [_, rest @ ..] => rest.iter().product::<usize>().max(1),
                _ => 1,
            };
            let bound = 1.0 / (fan_in as f64).sqrt();
            for j in i..i + 2 {
                for p in &mut m.params.get_mut()[j] {
                    *p = ((rng.uniform() * 2.0 - 1.0) * bound) as f32;
                }
            }
            i += 2;
        }
        // Batch normalization starts as the identity, as PyTorch's does.
        for op in &m.ops {
            if let Op::Affine { param, .. } = *op {
                m.params.get_mut()[param].fill(1.0);
                m.params.get_mut()[param + 1].fill(0.0);
            }
        }
        Ok(m)
    }

    /// A model with every parameter zero (to be loaded).
    pub fn zeros(arch: &Arch) -> Result<Model, ModelError> {
        let (ops, srcs, dims, infos) = plan(arch)?;
        let params = Params::new(
            infos
                .iter()
                .map(|p| vec![0.0f32; p.torch_shape.iter().product()])
                .collect(),
        );
        let m = Model {
            arch: arch.clone(),
            ops,
            srcs,
            dims,
            params,
            infos,
        };
        if m.floats_per_example() > WORKSPACE_BUDGET {
            return Err(ModelError::Arch(format!(
                "one example needs {} workspace values, more than {WORKSPACE_BUDGET}",
                m.floats_per_example()
            )));
        }
        Ok(m)
    }

    pub fn arch(&self) -> &Arch {
        &self.arch
    }

    /// Values per input example (`C·H·W`).
    pub fn input_len(&self) -> usize {
        self.dims[0].len()
    }

    pub fn classes(&self) -> usize {
        self.arch.classes
    }

    pub fn param_infos(&self) -> &[ParamInfo] {
        &self.infos
    }

    /// Parameters in Warden's layout, in [`Model::param_infos`] order.
    pub fn params(&self) -> &[Vec<f32>] {
        &self.params
    }

    pub fn params_mut(&mut self) -> &mut [Vec<f32>] {
        self.params.get_mut()
    }

    /// The parameters' descriptions beside their values, for changes that depend on the shape.
    pub fn infos_and_params_mut(&mut self) -> (&[ParamInfo], &mut [Vec<f32>]) {
        (&self.infos, self.params.get_mut())
    }

    pub fn param_count(&self) -> usize {
        self.params.iter().map(Vec::len).sum()
    }

    /// Workspace values (f32) that one example needs in a forward and backward pass: every
    /// activation and im2col buffer, the stored output gradients of per-example clipping, the
    /// largest im2col gradient and the two gradient buffers.
    pub fn floats_per_example(&self) -> usize {
        let mut total = 0usize;
        let (mut max_col, mut max_act) = (0usize, self.input_len());
        for (op, d) in self.ops.iter().zip(&self.dims[1..]) {
            let act = d.len();
            max_act = max_act.max(act);
            total = total.saturating_add(act);
            match *op {
                Op::Conv { cin, k, oh, ow, .. } => {
                    // A depthwise convolution runs without im2col rows.
                    let col = if op.depthwise().is_some() {
                        0
                    } else {
                        oh * ow * k * k * cin
                    };
                    max_col = max_col.max(col);
                    total = total.saturating_add(col).saturating_add(act);
                }
                Op::Linear { .. } | Op::Affine { .. } => total = total.saturating_add(act),
                _ => {}
            }
        }
        // A residual block parks up to two gradients while its branches are walked back, a
        // gate inside it one more, and a concatenation one per branch.
        let has = |f: fn(&Op) -> bool| self.ops.iter().any(f);
        let concat_parts = 1 + self
            .ops
            .iter()
            .filter(|op| matches!(op, Op::Concat { .. }))
            .count()
            .min(16);
        let parked = max_act.saturating_mul(
            2 * usize::from(has(|op| matches!(op, Op::Add { .. })))
                + usize::from(has(|op| matches!(op, Op::Scale { .. })))
                + if has(|op| matches!(op, Op::Concat { .. })) {
                    concat_parts
                } else {
                    0
                },
        );
        total
            .saturating_add(max_col)
            .saturating_add(2 * max_act)
            .saturating_add(parked)
    }

    /// Multiply-adds of one example's forward pass (convolutions and linear layers).
    pub fn macs_per_example(&self) -> usize {
        self.ops
            .iter()
            .map(|op| match *op {
                Op::Conv {
                    cin,
                    cout,
                    k,
                    groups,
                    oh,
                    ow,
                    ..
                } => (oh * ow * cout).saturating_mul(k * k * cin / groups.max(1)),
                Op::Linear { inf, outf, .. } => inf.saturating_mul(outf),
                _ => 0,
            })
            .fold(0usize, usize::saturating_add)
    }

    /// The fewest examples worth a thread of their own in a forward or attack pass: enough that
    /// the shard's work outlasts the thread's start-up. 16 examples of `small-cnn` (2.6 million
    /// multiply-adds each) were measured to be that; a larger network needs fewer, down to one
    /// example per thread (a ResNet-18 example costs 1.8 billion at 224 × 224, 690 times
    /// `small-cnn`'s).
    pub fn least_per_thread(&self) -> usize {
        SHARD_MACS
            .div_ceil(self.macs_per_example().max(1))
            .clamp(1, LEAST_PER_THREAD)
    }

    /// How many examples to put through one pass at a time, at most `limit`, so that a thread's
    /// workspace stays within [`WORKSPACE_BUDGET`].
    pub fn chunk(&self, limit: usize) -> usize {
        (WORKSPACE_BUDGET / self.floats_per_example().max(1)).clamp(1, limit.max(1))
    }

    /// Zeroed buffers shaped like the parameters.
    pub fn zero_grads(&self) -> Vec<Vec<f32>> {
        self.params.iter().map(|p| vec![0.0; p.len()]).collect()
    }

    /// Logits of `n` examples (`x` is `n × input_len`, channels-last), left in the workspace.
    pub fn forward<'w>(
        &self,
        ws: &'w mut Workspace,
        x: &[f32],
        n: usize,
    ) -> Result<&'w [f32], ModelError> {
        if x.len() != n * self.input_len() {
            return Err(ModelError::Input(format!(
                "{} values for {n} examples of {}",
                x.len(),
                self.input_len()
            )));
        }
        ws.n = n;
        ws.ensure(self.ops.len());
        for (i, op) in self.ops.iter().enumerate() {
            let (before, rest) = ws.acts.split_at_mut(i);
            let value = |v: usize| -> &[f32] { if v == 0 { x } else { &before[v - 1] } };
            let input = value(self.srcs[i]);
            let out = &mut rest[0];
            match *op {
                Op::Conv { relu, .. } if let Some((geo, param)) = op.depthwise() => {
                    let ([oh, ow], c) = (geo.out_hw, geo.hwc[2]);
                    out.resize(n * oh * ow * c, 0.0);
                    let wt = self.params.transposed_copy(param, c, geo.k * geo.k);
                    geo.forward(input, n, wt, out);
                    bias_act(out, &self.params[param + 1], relu);
                }
                Op::Conv {
                    cin,
                    cout,
                    k,
                    pad,
                    stride,
                    groups,
                    h,
                    w,
                    oh,
                    ow,
                    relu,
                    param,
                    ..
                } => {
                    let kk = k * k * cin;
                    let rows = n * oh * ow;
                    let col = &mut ws.cols[i];
                    col.resize(rows * kk, 0.0);
                    im2col(input, n, [h, w, cin, groups], k, pad, stride, oh, ow, col);
                    out.resize(rows * cout, 0.0);
                    if groups == 1 {
                        let (wt, sw) = self.params.weights(param, cout, kk, rows);
                        gemm(
                            col,
                            Shape::row_major(rows, kk),
                            wt,
                            sw,
                            out,
                            Shape::row_major(rows, cout),
                            false,
                        );
                    } else {
                        let (kg, cg) = (kk / groups, cout / groups);
                        let wts = &self.params[param];
                        for g in 0..groups {
                            gemm(
                                &col[g * kg..],
                                strided(rows, kg, kk),
                                &wts[g * cg * kg..],
                                Shape::transposed(cg, kg),
                                &mut out[g * cg..],
                                strided(rows, cg, cout),
                                false,
                            );
                        }
                    }
                    bias_act(out, &self.params[param + 1], relu);
                }
                Op::Linear {
                    inf,
                    outf,
                    relu,
                    param,
                    ..
                } => {
                    out.resize(n * outf, 0.0);
                    let (wt, sw) = self.params.weights(param, outf, inf, n);
                    gemm(
                        input,
                        Shape::row_major(n, inf),
                        wt,
                        sw,
                        out,
                        Shape::row_major(n, outf),
                        false,
                    );
                    bias_act(out, &self.params[param + 1], relu);
                }
                Op::Affine { c, param } => {
                    out.resize(input.len(), 0.0);
                    affine(input, &self.params[param], &self.params[param + 1], c, out);
                }
                Op::Pool {
                    k,
                    stride,
                    pad,
                    h,
                    w,
                    c,
                    oh,
                    ow,
                } => {
                    out.resize(n * oh * ow * c, 0.0);
                    maxpool(input, n, [h, w, c], k, stride, pad, oh, ow, out);
                }
                Op::AvgPool { image, win, out_hw } => {
                    out.resize(n * out_hw[0] * out_hw[1] * image[2], 0.0);
                    avgpool(input, n, image, win, out_hw, out, false);
                }
                Op::Relu => {
                    out.clear();
                    out.extend(input.iter().map(|&v| v.max(0.0)));
                }
                Op::Relu6 => {
                    out.clear();
                    out.extend(input.iter().map(|&v| v.clamp(0.0, 6.0)));
                }
                Op::Tanh => {
                    out.clear();
                    out.extend(input.iter().map(|&v| v.tanh()));
                }
                Op::Elu => {
                    out.resize(input.len(), 0.0);
                    elu(input, out);
                }
                Op::Silu => {
                    out.resize(input.len(), 0.0);
                    silu(input, out);
                }
                Op::Sigmoid => {
                    out.clear();
                    out.extend(
                        input
                            .iter()
                            .map(|&v| sigmoid_of(v, exp_nonpositive(-v.abs()))),
                    );
                }
                Op::HardSigmoid => {
                    out.clear();
                    out.extend(input.iter().map(|&v| hard_sigmoid(v)));
                }
                Op::HardSwish => {
                    out.clear();
                    out.extend(input.iter().map(|&v| v * hard_sigmoid(v)));
                }
                Op::Scale {
                    gate,
                    hw,
                    c,
                    per_channel,
                } => {
                    out.resize(input.len(), 0.0);
                    scale(input, value(gate), n, hw, c, per_channel, out);
                }
                Op::Concat { other, hw, ca, cb } => {
                    out.clear();
                    for (a, b) in input
                        .chunks_exact(ca)
                        .zip(value(other).chunks_exact(cb))
                        .take(n * hw)
                    {
                        out.extend_from_slice(a);
                        out.extend_from_slice(b);
                    }
                }
                Op::Add { other } => {
                    out.clear();
                    out.extend(input.iter().zip(value(other)).map(|(p, q)| p + q));
                }
            }
        }
        Ok(&ws.acts[self.ops.len() - 1])
    }

    /// Back-propagates `dlogits` (`n × classes`) through the last [`Model::forward`] of this
    /// workspace on the same `x`. Parameter gradients are written (not added) to `grads` when given;
    /// the input gradient is left in [`Workspace::input_grad`] when `input_grad` is true.
    pub fn backward(
        &self,
        ws: &mut Workspace,
        x: &[f32],
        dlogits: &[f32],
        mut grads: Option<&mut [Vec<f32>]>,
        input_grad: bool,
    ) {
        let n = ws.n;
        self.start_backward(ws, dlogits);
        let last_needed = if input_grad { 0 } else { self.first_param_op() };
        for i in (0..self.ops.len()).rev() {
            self.gather(ws, i);
            self.mask_output_grad(ws, i, x);
            if let Some(g) = grads.as_deref_mut() {
                let input = value_of(x, &ws.acts, self.srcs[i]);
                self.weight_grads(i, &ws.ga, input, &ws.cols[i], n, g);
            }
            if !(i > last_needed || (i == 0 && input_grad)) {
                break;
            }
            self.input_grad_of(ws, i, x);
            self.scatter(ws, i);
        }
    }

    /// DP-SGD's per-example clipping. Back-propagates `dlogits` (one row per example, unscaled:
    /// the gradient of each example's own loss) through the last forward pass, computes each
    /// example's gradient norm over all parameters, and writes to `grads` the sum over examples of
    /// each example's gradient scaled by `min(1, max_norm / (norm + 1e-6))` (Opacus's factor).
    /// `norms` receives the unclipped norms.
    ///
    /// No per-example gradient is kept: a first pass stores each parameter layer's output
    /// gradient and adds up per-example squared norms (for a linear layer
    /// `‖g‖²·(‖x‖² + 1)`, exactly; for a convolution one small product per example); a second
    /// pass forms the weight gradients from the stored output gradients with each example's rows
    /// scaled by its factor, which equals summing clipped per-example gradients because every
    /// gradient is linear in the output gradient.
    pub fn backward_clipped(
        &self,
        ws: &mut Workspace,
        x: &[f32],
        dlogits: &[f32],
        max_norm: f32,
        grads: &mut [Vec<f32>],
        norms: &mut Vec<f32>,
    ) {
        let n = ws.n;
        let mut sq = vec![0.0f64; n];
        self.start_backward(ws, dlogits);
        let first = self.first_param_op();
        let square = |v: &[f32]| v.iter().map(|&v| f64::from(v) * f64::from(v)).sum::<f64>();
        for i in (first..self.ops.len()).rev() {
            self.gather(ws, i);
            self.mask_output_grad(ws, i, x);
            let input = value_of(x, &ws.acts, self.srcs[i]);
            match self.ops[i] {
                ref op if let Some((geo, _)) = op.depthwise() => {
                    let ([h, w, c], [oh, ow], k) = (geo.hwc, geo.out_hw, geo.k);
                    let (p, hwc) = (oh * ow * c, h * w * c);
                    ws.stash[i].clone_from(&ws.ga);
                    ws.tmp.resize(k * k * c, 0.0);
                    let mut bias = vec![0.0f32; c];
                    for (e, s) in sq.iter_mut().enumerate() {
                        let ge = &ws.ga[e * p..(e + 1) * p];
                        ws.tmp.fill(0.0);
                        geo.weight_grad(ge, &input[e * hwc..(e + 1) * hwc], 1, &mut ws.tmp);
                        col_sums(ge, c, &mut bias);
                        *s += square(&ws.tmp) + square(&bias);
                    }
                }
                Op::Conv {
                    cin,
                    cout,
                    k,
                    groups,
                    oh,
                    ow,
                    ..
                } => {
                    let (kk, p) = (k * k * cin, oh * ow);
                    let (kg, cg) = (kk / groups, cout / groups);
                    ws.stash[i].clone_from(&ws.ga);
                    ws.tmp.resize(cout * kg, 0.0);
                    let mut bias = vec![0.0f32; cout];
                    for (e, s) in sq.iter_mut().enumerate() {
                        let ge = &ws.ga[e * p * cout..(e + 1) * p * cout];
                        let ce = &ws.cols[i][e * p * kk..(e + 1) * p * kk];
                        for g in 0..groups {
                            gemm(
                                &ge[g * cg..],
                                Shape {
                                    rows: cg,
                                    cols: p,
                                    row_stride: 1,
                                    col_stride: cout,
                                },
                                &ce[g * kg..],
                                strided(p, kg, kk),
                                &mut ws.tmp[g * cg * kg..],
                                Shape::row_major(cg, kg),
                                false,
                            );
                        }
                        col_sums(ge, cout, &mut bias);
                        *s += square(&ws.tmp) + square(&bias);
                    }
                }
                Op::Affine { c, .. } => {
                    ws.stash[i].clone_from(&ws.ga);
                    let per = self.dims[i + 1].len();
                    let (mut dw, mut db) = (vec![0.0f32; c], vec![0.0f32; c]);
                    for (e, s) in sq.iter_mut().enumerate() {
                        let span = e * per..(e + 1) * per;
                        affine_grads(&ws.ga[span.clone()], &input[span], c, &mut dw, &mut db);
                        *s += square(&dw) + square(&db);
                    }
                }
                Op::Linear { inf, outf, .. } => {
                    ws.stash[i].clone_from(&ws.ga);
                    for (e, s) in sq.iter_mut().enumerate() {
                        *s += square(&ws.ga[e * outf..(e + 1) * outf])
                            * (square(&input[e * inf..(e + 1) * inf]) + 1.0);
                    }
                }
                _ => {}
            }
            if i > first {
                self.input_grad_of(ws, i, x);
                self.scatter(ws, i);
            }
        }
        norms.clear();
        norms.extend(sq.iter().map(|&s| s.sqrt() as f32));
        for i in first..self.ops.len() {
            // Each example's rows of the stored output gradient, scaled by its clipping factor.
            let rows_per_example = match self.ops[i] {
                Op::Conv { cout, oh, ow, .. } => oh * ow * cout,
                Op::Linear { outf, .. } => outf,
                Op::Affine { .. } => self.dims[i + 1].len(),
                _ => continue,
            };
            for (rows, &nm) in ws.stash[i]
                .chunks_exact_mut(rows_per_example)
                .zip(norms.iter())
            {
                let f = (max_norm / (nm + 1e-6)).min(1.0);
                for v in rows {
                    *v *= f;
                }
            }
            let input = value_of(x, &ws.acts, self.srcs[i]);
            self.weight_grads(i, &ws.stash[i], input, &ws.cols[i], n, grads);
        }
    }

    /// Sets up a backward pass: `ws.ga` holds the gradient of the last op's output.
    fn start_backward(&self, ws: &mut Workspace, dlogits: &[f32]) {
        ws.ga.clear();
        ws.ga.extend_from_slice(dlogits);
        ws.at = self.ops.len();
        let parked = ws.pending.drain(..).map(|(_, b)| b);
        ws.spare.extend(parked);
    }

    /// Before back-propagating through op `i`: makes `ws.ga` the gradient of op `i`'s output.
    /// In a chain it already is. Where a residual block forks, the running gradient belongs to
    /// another value (the block's input, reached from the shortcut): it is parked, and the
    /// gradient parked for this op's output (by the sum at the block's end) taken up.
    fn gather(&self, ws: &mut Workspace, i: usize) {
        let v = i + 1;
        if ws.at == v {
            return;
        }
        let running = std::mem::take(&mut ws.ga);
        park(ws, ws.at, running);
        ws.ga = match ws.pending.iter().position(|(k, _)| *k == v) {
            Some(p) => ws.pending.swap_remove(p).1,
            // Nothing reads this value: its gradient is zero.
            None => {
                let mut b = ws.spare.pop().unwrap_or_default();
                b.clear();
                b.resize(ws.n * self.dims[v].len(), 0.0);
                b
            }
        };
        ws.at = v;
    }

    /// After back-propagating through op `i`: `ws.ga` is the gradient of the value op `i`
    /// reads. A sum parks a copy for its other operand; a gradient parked for this value (from
    /// the other branch of a block) is added in.
    fn scatter(&self, ws: &mut Workspace, i: usize) {
        if let Op::Add { other } = self.ops[i] {
            let mut b = ws.spare.pop().unwrap_or_default();
            b.clear();
            b.extend_from_slice(&ws.ga);
            park(ws, other, b);
        }
        ws.at = self.srcs[i];
        if let Some(p) = ws.pending.iter().position(|(k, _)| *k == ws.at) {
            let (_, b) = ws.pending.swap_remove(p);
            for (g, v) in ws.ga.iter_mut().zip(&b) {
                *g += v;
            }
            ws.spare.push(b);
        }
    }

    /// Applies op `i`'s activation derivative to the gradient in `ws.ga` (a fused ReLU, or a
    /// standalone activation); other ops pass it through. `x` is the pass's input (SiLU's
    /// derivative is taken from its input).
    fn mask_output_grad(&self, ws: &mut Workspace, i: usize, x: &[f32]) {
        let out = &ws.acts[i];
        match self.ops[i] {
            Op::Silu => silu_grad(&mut ws.ga, value_of(x, &ws.acts, self.srcs[i])),
            Op::HardSwish => hard_swish_grad(&mut ws.ga, value_of(x, &ws.acts, self.srcs[i])),
            // 1/6 strictly inside (−3, 3), where the output is strictly inside (0, 1).
            Op::HardSigmoid => {
                for (g, &o) in ws.ga.iter_mut().zip(out) {
                    *g *= if o > 0.0 && o < 1.0 { 1.0 / 6.0 } else { 0.0 };
                }
            }
            Op::Conv { relu: true, .. } | Op::Linear { relu: true, .. } | Op::Relu => {
                relu_mask(&mut ws.ga, out)
            }
            Op::Relu6 => relu6_mask(&mut ws.ga, out),
            Op::Tanh => tanh_grad(&mut ws.ga, out),
            Op::Elu => elu_grad(&mut ws.ga, out),
            Op::Sigmoid => {
                for (g, &o) in ws.ga.iter_mut().zip(out) {
                    *g *= o * (1.0 - o);
                }
            }
            _ => {}
        }
    }

    /// Writes the weight and bias gradients of op `i` (when it has parameters) from its output
    /// gradient `g`, its input, and its im2col buffer.
    fn weight_grads(
        &self,
        i: usize,
        g: &[f32],
        input: &[f32],
        col: &[f32],
        n: usize,
        grads: &mut [Vec<f32>],
    ) {
        match self.ops[i] {
            ref op if let Some((geo, param)) = op.depthwise() => {
                let (c, kk) = (geo.hwc[2], geo.k * geo.k);
                // Summed as `[ky][kx][c]`, stored `[c][ky][kx]`.
                let mut sums = vec![0.0f32; kk * c];
                geo.weight_grad(g, input, n, &mut sums);
                let dw = &mut grads[param];
                for (tap, row) in sums.chunks_exact(c).enumerate() {
                    for (ch, &v) in row.iter().enumerate() {
                        dw[ch * kk + tap] = v;
                    }
                }
                col_sums(g, c, &mut grads[param + 1]);
            }
            Op::Conv {
                cin,
                cout,
                k,
                groups,
                oh,
                ow,
                param,
                ..
            } => {
                let (kk, rows) = (k * k * cin, n * oh * ow);
                let (kg, cg) = (kk / groups, cout / groups);
                for grp in 0..groups {
                    // This group's output gradient, transposed, times its im2col columns.
                    gemm(
                        &g[grp * cg..],
                        Shape {
                            rows: cg,
                            cols: rows,
                            row_stride: 1,
                            col_stride: cout,
                        },
                        &col[grp * kg..],
                        strided(rows, kg, kk),
                        &mut grads[param][grp * cg * kg..],
                        Shape::row_major(cg, kg),
                        false,
                    );
                }
                col_sums(g, cout, &mut grads[param + 1]);
            }
            Op::Linear {
                inf, outf, param, ..
            } => {
                gemm(
                    g,
                    Shape::transposed(n, outf),
                    input,
                    Shape::row_major(n, inf),
                    &mut grads[param],
                    Shape::row_major(outf, inf),
                    false,
                );
                col_sums(g, outf, &mut grads[param + 1]);
            }
            Op::Affine { c, param } => {
                let (dw, db) = grads[param..].split_at_mut(1);
                affine_grads(g, input, c, &mut dw[0], &mut db[0]);
            }
            _ => {}
        }
    }

    /// Replaces the gradient in `ws.ga` with respect to op `i`'s output (activation derivative
    /// already applied) by the gradient with respect to its input.
    fn input_grad_of(&self, ws: &mut Workspace, i: usize, x: &[f32]) {
        let n = ws.n;
        let input = value_of(x, &ws.acts, self.srcs[i]);
        match self.ops[i] {
            ref op if let Some((geo, param)) = op.depthwise() => {
                let [h, w, c] = geo.hwc;
                ws.gb.clear();
                ws.gb.resize(n * h * w * c, 0.0);
                let wt = self.params.transposed_copy(param, c, geo.k * geo.k);
                geo.input_grad(&ws.ga, n, wt, &mut ws.gb);
            }
            Op::Conv {
                cin,
                cout,
                k,
                pad,
                stride,
                groups,
                h,
                w,
                oh,
                ow,
                param,
                ..
            } => {
                let (kk, rows) = (k * k * cin, n * oh * ow);
                let (kg, cg) = (kk / groups, cout / groups);
                ws.dcol.resize(rows * kk, 0.0);
                for g in 0..groups {
                    gemm(
                        &ws.ga[g * cg..],
                        strided(rows, cg, cout),
                        &self.params[param][g * cg * kg..],
                        Shape::row_major(cg, kg),
                        &mut ws.dcol[g * kg..],
                        strided(rows, kg, kk),
                        false,
                    );
                }
                ws.gb.clear();
                ws.gb.resize(n * h * w * cin, 0.0);
                col2im(
                    &ws.dcol,
                    n,
                    [h, w, cin, groups],
                    k,
                    pad,
                    stride,
                    oh,
                    ow,
                    &mut ws.gb,
                );
            }
            Op::Linear {
                inf, outf, param, ..
            } => {
                ws.gb.resize(n * inf, 0.0);
                gemm(
                    &ws.ga,
                    Shape::row_major(n, outf),
                    &self.params[param],
                    Shape::row_major(outf, inf),
                    &mut ws.gb,
                    Shape::row_major(n, inf),
                    false,
                );
            }
            Op::Pool {
                k,
                stride,
                pad,
                h,
                w,
                c,
                oh,
                ow,
            } => {
                // Gradients add up where windows overlap (stride < size); the floor-mode
                // remainder rows and columns stay zero.
                ws.gb.clear();
                ws.gb.resize(input.len(), 0.0);
                maxpool_backward(
                    input,
                    &ws.acts[i],
                    &ws.ga,
                    n,
                    [h, w, c],
                    k,
                    stride,
                    pad,
                    oh,
                    ow,
                    &mut ws.gb,
                    &mut ws.taken,
                );
            }
            Op::AvgPool { image, win, out_hw } => {
                ws.gb.clear();
                ws.gb.resize(input.len(), 0.0);
                avgpool(&ws.ga, n, image, win, out_hw, &mut ws.gb, true);
            }
            // The output's gradient times each channel's scale.
            Op::Affine { c, param } => {
                ws.gb.clear();
                let scale = &self.params[param];
                for g in ws.ga.chunks_exact(c) {
                    ws.gb.extend(g.iter().zip(scale).map(|(&g, &s)| g * s));
                }
            }
            // The derivative was applied in place by `mask_output_grad`; a sum passes its
            // gradient to both operands (`scatter` hands the other its copy).
            // The input's gradient is the output's times the gate; the gate's, the output's
            // times the input (summed over the positions for a factor per channel), parked
            // for the gate's value.
            Op::Scale {
                gate,
                hw,
                c,
                per_channel,
            } => {
                let factors = value_of(x, &ws.acts, gate);
                ws.gb.resize(input.len(), 0.0);
                scale(&ws.ga, factors, n, hw, c, per_channel, &mut ws.gb);
                let mut b = ws.spare.pop().unwrap_or_default();
                b.clear();
                if per_channel {
                    b.resize(n * c, 0.0);
                    for ((be, ge), xe) in b
                        .chunks_exact_mut(c)
                        .zip(ws.ga.chunks_exact(hw * c))
                        .zip(input.chunks_exact(hw * c))
                    {
                        for (gp, xp) in ge.chunks_exact(c).zip(xe.chunks_exact(c)) {
                            for ((bv, &g), &v) in be.iter_mut().zip(gp).zip(xp) {
                                *bv += g * v;
                            }
                        }
                    }
                } else {
                    b.extend(ws.ga.iter().zip(input).map(|(&g, &v)| g * v));
                }
                park(ws, gate, b);
            }
            // The output's gradient, split: the first `ca` channels of each position for the
            // value read, the other `cb` parked for `other`.
            Op::Concat { other, hw, ca, cb } => {
                ws.gb.clear();
                let mut b = ws.spare.pop().unwrap_or_default();
                b.clear();
                for g in ws.ga.chunks_exact(ca + cb).take(n * hw) {
                    ws.gb.extend_from_slice(&g[..ca]);
                    b.extend_from_slice(&g[ca..]);
                }
                park(ws, other, b);
            }
            Op::Relu
            | Op::Relu6
            | Op::Tanh
            | Op::Elu
            | Op::Silu
            | Op::Sigmoid
            | Op::HardSigmoid
            | Op::HardSwish
            | Op::Add { .. } => return,
        }
        std::mem::swap(&mut ws.ga, &mut ws.gb);
    }

    /// Index of the first op with parameters: gradients need not flow below it for training.
    /// Width of the penultimate features: the input of the last layer (after its activation),
    /// what feature-space detectors (Mahalanobis, kNN) look at. `None` for a single-layer model.
    pub fn features_len(&self) -> Option<usize> {
        let src = *self.srcs.last()?;
        (src >= 1).then(|| self.dims[src].len())
    }

    /// The penultimate features (`n × features_len()`) of the last [`Model::forward`] in `ws`.
    /// Empty for a single-layer model or before any forward pass.
    pub fn features<'w>(&self, ws: &'w Workspace) -> &'w [f32] {
        match self.srcs.last() {
            Some(&src) if src >= 1 && ws.acts.len() >= src => &ws.acts[src - 1],
            _ => &[],
        }
    }

    fn first_param_op(&self) -> usize {
        self.ops
            .iter()
            .position(|op| matches!(op, Op::Conv { .. } | Op::Linear { .. } | Op::Affine { .. }))
            .unwrap_or(0)
    }

    /// Predicted classes of `n` examples, `threads` at a time.
    pub fn predict(&self, pool: &mut Pool, x: &[f32], n: usize) -> Result<Vec<u8>, ModelError> {
        let len = self.input_len();
        if x.len() != n * len {
            return Err(ModelError::Input(format!(
                "{} values for {n} examples of {len}",
                x.len()
            )));
        }
        let mut out = vec![0u8; n];
        let classes = self.classes();
        pool.run(n, self.least_per_thread(), &mut out, |ws, range, out| {
            let chunk = self.chunk(256);
            for start in (range.start..range.end).step_by(chunk) {
                let end = (start + chunk).min(range.end);
                let logits = self.forward(ws, &x[start * len..end * len], end - start)?;
                for (o, row) in out[start - range.start..end - range.start]
                    .iter_mut()
                    .zip(logits.chunks_exact(classes))
                {
                    *o = argmax(row) as u8;
                }
            }
            Ok(())
        })?;
        Ok(out)
    }
}

/// The ops, the value each op reads (0: the input; `j + 1`: op `j`'s output), the shapes of the
/// values, and the parameters.
type Plan = (Vec<Op>, Vec<usize>, Vec<Dims>, Vec<ParamInfo>);

fn plan(arch: &Arch) -> Result<Plan, ModelError> {
    let [c, h, w] = arch.input;
    if c == 0
        || h == 0
        || w == 0
        || c > MAX_DIM
        || h > MAX_DIM
        || w > MAX_DIM
        || c * h * w > 1 << 24
    {
        return Err(ModelError::Arch(format!(
            "input shape {:?} out of range",
            arch.input
        )));
    }
    if arch.classes < 2 || arch.classes > 256 {
        return Err(ModelError::Arch(format!(
            "{} classes (2 to 256 supported)",
            arch.classes
        )));
    }
    let count = arch.layers.iter().map(LayerSpec::count).sum::<usize>();
    if arch.layers.is_empty() || count > MAX_LAYERS {
        return Err(ModelError::Arch(format!(
            "{count} layers (1 to {MAX_LAYERS}, counting those inside residual blocks and gates)"
        )));
    }
    let mut p = Planner {
        cur: Dims::Image { h, w, c },
        dims: vec![Dims::Image { h, w, c }],
        ops: Vec::new(),
        srcs: Vec::new(),
        infos: Vec::new(),
        total: 0,
        flattened_from: None,
        seq: 0,
        val: 0,
    };
    for (li, spec) in arch.layers.iter().enumerate() {
        p.seq += 1;
        p.layer(li, &li.to_string(), spec, false)?;
    }
    if p.cur != Dims::Flat(arch.classes) {
        return Err(ModelError::Arch(format!(
            "the last layer gives {:?}, expected {} logits",
            p.cur, arch.classes
        )));
    }
    if !matches!(p.ops.last(), Some(Op::Linear { relu: false, .. })) {
        return Err(ModelError::Arch(
            "the last layer must be a linear layer (logits)".into(),
        ));
    }
    Ok((p.ops, p.srcs, p.dims, p.infos))
}

/// The state of [`plan`] as it walks the layers.
struct Planner {
    /// The shape of the current value.
    cur: Dims,
    dims: Vec<Dims>,
    ops: Vec<Op>,
    srcs: Vec<usize>,
    infos: Vec<ParamInfo>,
    total: usize,
    flattened_from: Option<(usize, usize, usize)>,
    /// A running number of the layer being planned, nested ones included (ReLU fusion asks
    /// whether two layers are neighbours).
    seq: usize,
    /// The value the next op reads.
    val: usize,
}

impl Planner {
    /// Appends an op that reads the current value and gives a value of shape `out`, which
    /// becomes the current one.
    fn push(&mut self, op: Op, out: Dims) {
        self.ops.push(op);
        self.srcs.push(self.val);
        self.dims.push(out);
        self.val = self.ops.len();
        self.cur = out;
    }

    /// Plans layer `spec`, part of the architecture's layer `li` (for errors); its parameters
    /// are named `{name}.weight` and `{name}.bias`.
    fn layer(
        &mut self,
        li: usize,
        name: &str,
        spec: &LayerSpec,
        nested: bool,
    ) -> Result<(), ModelError> {
        let bad = |layer: usize, reason: String| ModelError::Layer { layer, reason };
        match *spec {
            LayerSpec::Conv2d {
                in_channels,
                out_channels,
                kernel,
                padding,
                stride,
                groups,
            } => {
                let Dims::Image { h, w, c } = self.cur else {
                    return Err(bad(li, "conv2d needs an image input".into()));
                };
                if in_channels != c {
                    return Err(bad(li, format!("in_channels {in_channels}, input has {c}")));
                }
                if groups == 0 || in_channels % groups != 0 || out_channels % groups != 0 {
                    return Err(bad(
                        li,
                        format!(
                            "groups {groups} must divide in_channels {in_channels} and out_channels {out_channels}"
                        ),
                    ));
                }
                if out_channels == 0
                    || out_channels > MAX_DIM
                    || kernel == 0
                    || kernel > 15
                    || padding >= kernel
                    || stride == 0
                    || stride > 15
                {
                    return Err(bad(
                        li,
                        "out_channels, kernel (1 to 15), padding (< kernel) or stride (1 to 15) out of range".into(),
                    ));
                }
                let (ph, pw) = (h + 2 * padding, w + 2 * padding);
                if ph < kernel || pw < kernel {
                    return Err(bad(
                        li,
                        format!("kernel {kernel} larger than the {h}×{w} input"),
                    ));
                }
                let (oh, ow) = ((ph - kernel) / stride + 1, (pw - kernel) / stride + 1);
                // The im2col buffer of one example is the largest per-example allocation. A
                // depthwise convolution ([`Op::depthwise`]) runs without one.
                let depthwise = groups > 1 && groups == in_channels && out_channels == in_channels;
                let col = [ow, kernel, kernel, in_channels]
                    .iter()
                    .fold(oh, |a, &b| a.saturating_mul(b));
                if col > MAX_ACTIVATION && !depthwise {
                    return Err(bad(
                        li,
                        format!("convolution needs more than {MAX_ACTIVATION} values per example"),
                    ));
                }
                // Each output channel sees its group's channels only.
                let cg = in_channels / groups;
                let count = out_channels * cg * kernel * kernel;
                self.total = self.total.saturating_add(count + out_channels);
                self.infos.push(ParamInfo {
                    name: format!("{name}.weight"),
                    torch_shape: vec![out_channels, cg, kernel, kernel],
                    kind: ParamKind::ConvWeight {
                        cout: out_channels,
                        cin: cg,
                        k: kernel,
                    },
                });
                self.infos.push(ParamInfo {
                    name: format!("{name}.bias"),
                    torch_shape: vec![out_channels],
                    kind: ParamKind::Plain,
                });
                self.push(
                    Op::Conv {
                        layer: self.seq,
                        cin: c,
                        cout: out_channels,
                        k: kernel,
                        pad: padding,
                        stride,
                        groups,
                        h,
                        w,
                        oh,
                        ow,
                        relu: false,
                        param: self.infos.len() - 2,
                    },
                    Dims::Image {
                        h: oh,
                        w: ow,
                        c: out_channels,
                    },
                );
            }
            LayerSpec::Relu => {
                // Fused into the layer before when nothing sits in between and nothing else
                // reads that layer's output.
                let last_is_current = self.val == self.ops.len();
                match self.ops.last_mut() {
                    // Fused into the layer before when nothing sits in between.
                    Some(
                        Op::Conv {
                            relu: r @ false,
                            layer,
                            ..
                        }
                        | Op::Linear {
                            relu: r @ false,
                            layer,
                            ..
                        },
                    ) if *layer + 1 == self.seq && last_is_current => *r = true,
                    _ => self.push(Op::Relu, self.cur),
                }
            }
            LayerSpec::Relu6 => {
                self.push(Op::Relu6, self.cur);
            }
            LayerSpec::Tanh => {
                self.push(Op::Tanh, self.cur);
            }
            LayerSpec::Elu => {
                self.push(Op::Elu, self.cur);
            }
            LayerSpec::Silu => {
                self.push(Op::Silu, self.cur);
            }
            LayerSpec::Sigmoid => {
                self.push(Op::Sigmoid, self.cur);
            }
            LayerSpec::HardSigmoid => {
                self.push(Op::HardSigmoid, self.cur);
            }
            LayerSpec::HardSwish => {
                self.push(Op::HardSwish, self.cur);
            }
            LayerSpec::MaxPool2d { kernel, stride, .. }
            | LayerSpec::AvgPool2d { kernel, stride } => {
                let max = matches!(spec, LayerSpec::MaxPool2d { .. });
                let (pad, ceil) = match *spec {
                    LayerSpec::MaxPool2d {
                        padding, ceil_mode, ..
                    } => (padding, ceil_mode),
                    _ => (0, false),
                };
                let Dims::Image { h, w, c } = self.cur else {
                    let name = if max { "max_pool2d" } else { "avg_pool2d" };
                    return Err(bad(li, format!("{name} needs an image input")));
                };
                let stride = stride.unwrap_or(kernel);
                // PyTorch's rule: a pad of at most half the window leaves every window at least
                // one input.
                if pad > kernel / 2 {
                    return Err(bad(
                        li,
                        format!("max_pool2d padding {pad} is more than half the window ({kernel})"),
                    ));
                }
                let (ph, pw) = (h + 2 * pad, w + 2 * pad);
                if kernel == 0 || kernel > ph || kernel > pw || stride == 0 || stride > kernel {
                    return Err(bad(
                        li,
                        format!(
                            "pool {kernel} (stride {stride}, padding {pad}) does not fit the {h}×{w} input"
                        ),
                    ));
                }
                // PyTorch's output size; in ceil mode the last window must start inside the
                // input or its left (top) padding.
                let out = |len: usize, padded: usize| {
                    let span = padded - kernel;
                    if !ceil {
                        return span / stride + 1;
                    }
                    let o = span.div_ceil(stride) + 1;
                    if (o - 1) * stride >= len + pad {
                        o - 1
                    } else {
                        o
                    }
                };
                let (oh, ow) = (out(h, ph), out(w, pw));
                let op = if max {
                    Op::Pool {
                        k: kernel,
                        stride,
                        pad,
                        h,
                        w,
                        c,
                        oh,
                        ow,
                    }
                } else {
                    Op::AvgPool {
                        image: [h, w, c],
                        win: [kernel, kernel, stride, stride],
                        out_hw: [oh, ow],
                    }
                };
                self.push(op, Dims::Image { h: oh, w: ow, c });
            }
            LayerSpec::GlobalAvgPool => {
                let Dims::Image { h, w, c } = self.cur else {
                    return Err(bad(li, "global_avg_pool needs an image input".into()));
                };
                self.push(
                    Op::AvgPool {
                        image: [h, w, c],
                        win: [h, w, h, w],
                        out_hw: [1, 1],
                    },
                    Dims::Image { h: 1, w: 1, c },
                );
            }
            LayerSpec::Flatten => {
                if let Dims::Image { h, w, c } = self.cur {
                    // A 1-channel or 1×1 image flattens the same way in either layout.
                    self.flattened_from = (c > 1 && h * w > 1).then_some((c, h, w));
                    self.cur = Dims::Flat(h * w * c);
                }
            }
            LayerSpec::Linear {
                in_features,
                out_features,
            } => {
                let Dims::Flat(len) = self.cur else {
                    return Err(bad(
                        li,
                        "linear needs a flat input (add a flatten layer)".into(),
                    ));
                };
                if in_features != len {
                    return Err(bad(
                        li,
                        format!("in_features {in_features}, input has {len}"),
                    ));
                }
                if out_features == 0 || out_features > MAX_DIM {
                    return Err(bad(li, "out_features out of range".into()));
                }
                self.total = self
                    .total
                    .saturating_add(in_features.saturating_mul(out_features) + out_features);
                let image = self.flattened_from.take();
                self.infos.push(ParamInfo {
                    name: format!("{name}.weight"),
                    torch_shape: vec![out_features, in_features],
                    kind: match image {
                        Some((c, h, w)) => ParamKind::LinearWeightImage {
                            out: out_features,
                            c,
                            h,
                            w,
                        },
                        None => ParamKind::Plain,
                    },
                });
                self.infos.push(ParamInfo {
                    name: format!("{name}.bias"),
                    torch_shape: vec![out_features],
                    kind: ParamKind::Plain,
                });
                self.push(
                    Op::Linear {
                        layer: self.seq,
                        inf: in_features,
                        outf: out_features,
                        relu: false,
                        param: self.infos.len() - 2,
                    },
                    Dims::Flat(out_features),
                );
            }
            LayerSpec::Affine { channels } => {
                let c = match self.cur {
                    Dims::Image { c, .. } => c,
                    Dims::Flat(n) => n,
                };
                if channels != c {
                    return Err(bad(
                        li,
                        format!("affine over {channels} channels, input has {c}"),
                    ));
                }
                // A flattened image's features are in a different order here (channels last)
                // than in PyTorch, which the per-feature parameters would have to follow.
                if self.flattened_from.is_some() {
                    return Err(bad(
                        li,
                        "affine on a flattened image (put it before the flatten)".into(),
                    ));
                }
                self.total = self.total.saturating_add(2 * channels);
                for part in ["weight", "bias"] {
                    self.infos.push(ParamInfo {
                        name: format!("{name}.{part}"),
                        torch_shape: vec![channels],
                        kind: ParamKind::Plain,
                    });
                }
                self.push(
                    Op::Affine {
                        c,
                        param: self.infos.len() - 2,
                    },
                    self.cur,
                );
            }
            LayerSpec::Residual {
                ref body,
                ref shortcut,
            } => {
                if nested {
                    return Err(bad(li, "residual blocks do not nest".into()));
                }
                let Dims::Image { .. } = self.cur else {
                    return Err(bad(li, "residual needs an image input".into()));
                };
                if body.is_empty() {
                    return Err(bad(li, "residual with an empty body".into()));
                }
                let branch = |l: &LayerSpec| {
                    matches!(
                        l,
                        LayerSpec::Flatten | LayerSpec::Linear { .. } | LayerSpec::Residual { .. }
                    )
                };
                if body.iter().chain(shortcut).any(branch) {
                    return Err(bad(
                        li,
                        "residual branches hold image layers only (no flatten, linear or residual; gates may)"
                            .into(),
                    ));
                }
                let (input, dims) = (self.val, self.cur);
                for (j, l) in body.iter().enumerate() {
                    self.seq += 1;
                    self.layer(li, &format!("{name}.body.{j}"), l, true)?;
                }
                let (body_out, body_dims) = (self.val, self.cur);
                (self.val, self.cur) = (input, dims);
                // The shortcut's first layer reads the block's input, not the body's output.
                self.seq += 1;
                for (j, l) in shortcut.iter().enumerate() {
                    self.seq += 1;
                    self.layer(li, &format!("{name}.shortcut.{j}"), l, true)?;
                }
                if self.cur != body_dims {
                    return Err(bad(
                        li,
                        format!(
                            "the body gives {body_dims:?} and the shortcut {:?}; they must agree",
                            self.cur
                        ),
                    ));
                }
                let other = self.val;
                self.val = body_out;
                self.push(Op::Add { other }, body_dims);
            }
            LayerSpec::Gate { ref body } => {
                let Dims::Image { h, w, c } = self.cur else {
                    return Err(bad(li, "gate needs an image input".into()));
                };
                if body.is_empty() {
                    return Err(bad(li, "gate with an empty body".into()));
                }
                let nests = |l: &LayerSpec| {
                    matches!(
                        l,
                        LayerSpec::Flatten
                            | LayerSpec::Linear { .. }
                            | LayerSpec::Residual { .. }
                            | LayerSpec::Gate { .. }
                    )
                };
                if body.iter().any(nests) {
                    return Err(bad(
                        li,
                        "a gate's body holds image layers only (no flatten, linear, residual or gate)"
                            .into(),
                    ));
                }
                let (input, dims) = (self.val, self.cur);
                for (j, l) in body.iter().enumerate() {
                    self.seq += 1;
                    self.layer(li, &format!("{name}.body.{j}"), l, true)?;
                }
                let per_channel = match self.cur {
                    Dims::Image { h: 1, w: 1, c: gc } if gc == c => true,
                    d if d == dims => false,
                    d => {
                        return Err(bad(
                            li,
                            format!(
                                "the gate's body gives {d:?}; it must give one factor per channel (1×1×{c}) or the input's shape {dims:?}"
                            ),
                        ));
                    }
                };
                let gate = self.val;
                self.val = input;
                self.push(
                    Op::Scale {
                        gate,
                        hw: h * w,
                        c,
                        per_channel,
                    },
                    dims,
                );
            }
            LayerSpec::Concat { ref branches } => {
                if nested {
                    return Err(bad(li, "concatenations do not nest".into()));
                }
                let Dims::Image { .. } = self.cur else {
                    return Err(bad(li, "concat needs an image input".into()));
                };
                if !(2..=16).contains(&branches.len()) {
                    return Err(bad(li, "concat of 2 to 16 branches".into()));
                }
                let nests = |l: &LayerSpec| {
                    matches!(
                        l,
                        LayerSpec::Flatten
                            | LayerSpec::Linear { .. }
                            | LayerSpec::Residual { .. }
                            | LayerSpec::Concat { .. }
                    )
                };
                if branches.iter().flatten().any(nests) {
                    return Err(bad(
                        li,
                        "concat branches hold image layers and gates only (no flatten, linear, residual or concat)"
                            .into(),
                    ));
                }
                let (input, dims) = (self.val, self.cur);
                let mut ends = Vec::with_capacity(branches.len());
                for (b, branch) in branches.iter().enumerate() {
                    (self.val, self.cur) = (input, dims);
                    // A branch's first layer reads the block's input: no ReLU fusion across.
                    self.seq += 1;
                    for (j, l) in branch.iter().enumerate() {
                        self.seq += 1;
                        self.layer(li, &format!("{name}.branches.{b}.{j}"), l, true)?;
                    }
                    let Dims::Image { h, w, c } = self.cur else {
                        return Err(bad(li, "a concat branch must give an image".into()));
                    };
                    ends.push((self.val, h, w, c));
                }
                let (first, h, w, mut c) = ends[0];
                self.val = first;
                for &(other, bh, bw, cb) in &ends[1..] {
                    if (bh, bw) != (h, w) {
                        return Err(bad(
                            li,
                            format!(
                                "concat branches give {h}×{w} and {bh}×{bw} images; they must agree"
                            ),
                        ));
                    }
                    if c + cb > MAX_DIM {
                        return Err(bad(li, format!("concat of more than {MAX_DIM} channels")));
                    }
                    self.push(
                        Op::Concat {
                            other,
                            hw: h * w,
                            ca: c,
                            cb,
                        },
                        Dims::Image { h, w, c: c + cb },
                    );
                    c += cb;
                }
            }
        }
        if self.total > MAX_PARAMS {
            return Err(ModelError::Arch(format!(
                "more than {MAX_PARAMS} parameters"
            )));
        }
        if self.cur.len() > MAX_ACTIVATION {
            return Err(bad(
                li,
                format!("more than {MAX_ACTIVATION} values per example"),
            ));
        }
        Ok(())
    }
}

/// Buffers for one thread's forward and backward passes; grown on first use and reused.
#[derive(Debug, Default)]
pub struct Workspace {
    n: usize,
    acts: Vec<Vec<f32>>,
    cols: Vec<Vec<f32>>,
    dcol: Vec<f32>,
    taken: Vec<f32>,
    ga: Vec<f32>,
    gb: Vec<f32>,
    /// Per-example clipping: each parameter layer's output gradient, and a scratch product.
    stash: Vec<Vec<f32>>,
    tmp: Vec<f32>,
    /// The value whose gradient `ga` holds during a backward pass, the gradients parked for
    /// other values (residual blocks), and buffers to reuse for them.
    at: usize,
    pending: Vec<(usize, Vec<f32>)>,
    spare: Vec<Vec<f32>>,
}

/// Value `v` of a forward pass: the input `x` for 0, op `v - 1`'s output otherwise.
fn value_of<'a>(x: &'a [f32], acts: &'a [Vec<f32>], v: usize) -> &'a [f32] {
    if v == 0 { x } else { &acts[v - 1] }
}

/// Parks `buf` as (part of) the gradient of value `v`, adding it to what is parked there.
fn park(ws: &mut Workspace, v: usize, buf: Vec<f32>) {
    if let Some((_, b)) = ws.pending.iter_mut().find(|(k, _)| *k == v) {
        for (p, q) in b.iter_mut().zip(&buf) {
            *p += q;
        }
        ws.spare.push(buf);
    } else {
        ws.pending.push((v, buf));
    }
}

impl Workspace {
    fn ensure(&mut self, ops: usize) {
        if self.acts.len() < ops {
            self.acts.resize_with(ops, Vec::new);
            self.cols.resize_with(ops, Vec::new);
            self.stash.resize_with(ops, Vec::new);
        }
    }

    /// The input gradient of the last [`Model::backward`] that asked for it.
    pub fn input_grad(&self) -> &[f32] {
        &self.ga
    }
}

/// A set of per-thread workspaces and the rule that shards a batch across them.
#[derive(Debug)]
pub struct Pool {
    pub workspaces: Vec<Workspace>,
}

impl Pool {
    /// `threads` workspaces (at least one).
    pub fn new(threads: usize) -> Pool {
        Pool {
            workspaces: (0..threads.max(1)).map(|_| Workspace::default()).collect(),
        }
    }

    pub fn threads(&self) -> usize {
        self.workspaces.len()
    }

    /// Splits `0..n` into one contiguous range per thread, each of at least `least` examples
    /// (fewer ranges when `n` is small): [`Model::least_per_thread`] for passes of one model, 16
    /// for training steps (whose summed gradients depend on the split).
    pub fn shards(&self, n: usize, least: usize) -> Vec<std::ops::Range<usize>> {
        shard_ranges(n, self.threads(), least)
    }

    /// Runs `f(workspace, range, out_part)` on each shard of `0..n` (at least `least` examples
    /// each, as [`Pool::shards`]) in parallel, where `out_part` is the part of `out` (the same
    /// number of elements per example) for that range; returns the first error.
    pub fn run<T: Send, E: Send>(
        &mut self,
        n: usize,
        least: usize,
        out: &mut [T],
        f: impl Fn(&mut Workspace, std::ops::Range<usize>, &mut [T]) -> Result<(), E> + Sync,
    ) -> Result<(), E> {
        let per = out.len().checked_div(n).unwrap_or(0);
        let mut parts = Vec::new();
        let mut rest = out;
        for r in self.shards(n, least) {
            let (part, tail) = std::mem::take(&mut rest).split_at_mut((r.end - r.start) * per);
            rest = tail;
            parts.push((r, part));
        }
        self.run_parts(parts, |ws, (r, part)| f(ws, r, part))
    }

    /// Runs `f(workspace, part)` for each part in parallel, one thread per part (at most one part
    /// per workspace; the caller cuts the parts, usually with [`Pool::shards`]).
    pub fn run_parts<P: Send, E: Send>(
        &mut self,
        parts: Vec<P>,
        f: impl Fn(&mut Workspace, P) -> Result<(), E> + Sync,
    ) -> Result<(), E> {
        assert!(
            parts.len() <= self.workspaces.len(),
            "more parts than workspaces"
        );
        if parts.len() <= 1 {
            return match parts.into_iter().next() {
                Some(p) => f(&mut self.workspaces[0], p),
                None => Ok(()),
            };
        }
        let f = &f;
        std::thread::scope(|s| {
            let handles: Vec<_> = self
                .workspaces
                .iter_mut()
                .zip(parts)
                .map(|(ws, p)| s.spawn(move || f(ws, p)))
                .collect();
            let mut result = Ok(());
            for h in handles {
                match h.join() {
                    Ok(Ok(())) => {}
                    Ok(Err(e)) => {
                        if result.is_ok() {
                            result = Err(e);
                        }
                    }
                    Err(panic) => std::panic::resume_unwind(panic),
                }
            }
            result
        })
    }
}

/// `0..n` in contiguous ranges, one per thread, with at least `least` examples in each (fewer
/// ranges when `n` is small).
pub(crate) fn shard_ranges(n: usize, threads: usize, least: usize) -> Vec<std::ops::Range<usize>> {
    let t = threads.max(1).min(n.div_ceil(least.max(1))).max(1);
    let base = n / t;
    let extra = n % t;
    let mut out = Vec::with_capacity(t);
    let mut start = 0;
    for i in 0..t {
        let len = base + usize::from(i < extra);
        if len > 0 {
            out.push(start..start + len);
        }
        start += len;
    }
    out
}

/// Index of the largest value (the first, on ties; NaN never wins).
pub fn argmax(row: &[f32]) -> usize {
    let mut best = 0;
    for (i, &v) in row.iter().enumerate() {
        if v > row[best] || row[best].is_nan() {
            best = i;
        }
    }
    best
}

/// Softmax cross-entropy of `n` rows of logits against `labels`: returns the summed loss and
/// writes `scale · ∂loss/∂logits` to `dlogits`, and each example's loss to `losses` when given.
pub fn softmax_xent(
    logits: &[f32],
    labels: &[u8],
    classes: usize,
    scale: f32,
    dlogits: &mut Vec<f32>,
    mut losses: Option<&mut [f32]>,
) -> f64 {
    dlogits.clear();
    dlogits.resize(logits.len(), 0.0);
    let mut total = 0.0f64;
    for (i, (row, d)) in logits
        .chunks_exact(classes)
        .zip(dlogits.chunks_exact_mut(classes))
        .enumerate()
    {
        let y = usize::from(labels[i]);
        let max = row.iter().copied().fold(f32::NEG_INFINITY, f32::max);
        let mut sum = 0.0f32;
        for (dj, &v) in d.iter_mut().zip(row) {
            let e = (v - max).exp();
            *dj = e;
            sum += e;
        }
        let loss = sum.ln() + max - row[y];
        total += f64::from(loss);
        if let Some(l) = losses.as_deref_mut() {
            l[i] = loss;
        }
        let inv = scale / sum;
        for dj in d.iter_mut() {
            *dj *= inv;
        }
        d[y] -= scale;
    }
    total
}

#[allow(clippy::too_many_arguments)]
fn gemm(a: &[f32], sa: Shape, b: &[f32], sb: Shape, c: &mut [f32], sc: Shape, acc: bool) {
    // Shapes here come from a validated plan and buffers sized from it; a failure is a bug.
    if let Err(e) = sgemm(a, sa, b, sb, c, sc, acc) {
        panic!("internal shape error in a matrix product: {e} ({sa:?} × {sb:?} → {sc:?})");
    }
}

fn bias_act(out: &mut [f32], bias: &[f32], relu: bool) {
    for row in out.chunks_exact_mut(bias.len()) {
        if relu {
            for (v, b) in row.iter_mut().zip(bias) {
                *v = (*v + b).max(0.0);
            }
        } else {
            for (v, b) in row.iter_mut().zip(bias) {
                *v += b;
            }
        }
    }
}

fn relu_mask(g: &mut [f32], out: &[f32]) {
    for (g, &o) in g.iter_mut().zip(out) {
        *g = if o > 0.0 { *g } else { 0.0 };
    }
}

/// ReLU6's derivative from its output: 1 strictly between 0 and 6 (PyTorch's choice at the
/// kinks: 0).
fn relu6_mask(g: &mut [f32], out: &[f32]) {
    for (g, &o) in g.iter_mut().zip(out) {
        *g = if o > 0.0 && o < 6.0 { *g } else { 0.0 };
    }
}

/// `rows × cols`, rows `row_stride` apart, columns contiguous: a block of columns of a
/// row-major matrix.
fn strided(rows: usize, cols: usize, row_stride: usize) -> Shape {
    Shape {
        rows,
        cols,
        row_stride,
        col_stride: 1,
    }
}

fn tanh_grad(g: &mut [f32], out: &[f32]) {
    for (g, &o) in g.iter_mut().zip(out) {
        *g *= 1.0 - o * o;
    }
}

/// ELU (α = 1) of every value, branch-free so that it vectorises.
fn elu(input: &[f32], out: &mut [f32]) {
    for (o, &v) in out.iter_mut().zip(input) {
        let e = exp_nonpositive(v.min(0.0)) - 1.0;
        *o = if v > 0.0 { v } else { e };
    }
}

/// ELU's derivative from its output: 1 where the output is positive, `out + 1` (that is, `eˣ`)
/// elsewhere.
fn elu_grad(g: &mut [f32], out: &[f32]) {
    for (g, &o) in g.iter_mut().zip(out) {
        *g *= if o > 0.0 { 1.0 } else { o + 1.0 };
    }
}

/// `σ(x) = 1 / (1 + e⁻ˣ)` from `e = e^(−|x|)`, without overflow: `1 / (1 + e)` for `x ≥ 0`,
/// `e / (1 + e)` below.
fn sigmoid_of(v: f32, e: f32) -> f32 {
    (if v >= 0.0 { 1.0 } else { e }) / (1.0 + e)
}

/// `out = x · gate` for `n` images of `hw` positions of `c` channels: one factor per channel
/// and image (`gate` is `n × c`) when `per_channel`, else one per value.
fn scale(
    x: &[f32],
    gate: &[f32],
    n: usize,
    hw: usize,
    c: usize,
    per_channel: bool,
    out: &mut [f32],
) {
    if !per_channel {
        for ((o, &v), &f) in out.iter_mut().zip(x).zip(gate) {
            *o = v * f;
        }
        return;
    }
    let len = hw * c;
    for ((oe, xe), fe) in out
        .chunks_exact_mut(len)
        .zip(x.chunks_exact(len))
        .zip(gate.chunks_exact(c))
        .take(n)
    {
        for (op, xp) in oe.chunks_exact_mut(c).zip(xe.chunks_exact(c)) {
            for ((o, &v), &f) in op.iter_mut().zip(xp).zip(fe) {
                *o = v * f;
            }
        }
    }
}

/// PyTorch's `hardsigmoid`: `min(max(x/6 + 1/2, 0), 1)`.
fn hard_sigmoid(v: f32) -> f32 {
    (v / 6.0 + 0.5).clamp(0.0, 1.0)
}

/// Hard swish's derivative from its input, as PyTorch's `hardswish_backward` takes it: 0 below
/// −3, `x/3 + 1/2` from −3 to 3, 1 above.
fn hard_swish_grad(g: &mut [f32], input: &[f32]) {
    for (g, &v) in g.iter_mut().zip(input) {
        *g *= if v < -3.0 {
            0.0
        } else if v <= 3.0 {
            v / 3.0 + 0.5
        } else {
            1.0
        };
    }
}

/// SiLU, `x·σ(x)`, of every value, branch-free so that it vectorises.
fn silu(input: &[f32], out: &mut [f32]) {
    for (o, &v) in out.iter_mut().zip(input) {
        *o = v * sigmoid_of(v, exp_nonpositive(-v.abs()));
    }
}

/// SiLU's derivative from its input (its output does not determine it: SiLU is not monotone):
/// `σ(x)·(1 + x·(1 − σ(x)))`.
fn silu_grad(g: &mut [f32], input: &[f32]) {
    for (g, &v) in g.iter_mut().zip(input) {
        let s = sigmoid_of(v, exp_nonpositive(-v.abs()));
        *g *= s * (1.0 + v * (1.0 - s));
    }
}

/// `eˣ` for `x ≤ 0` (inputs below −87 are taken as −87, where `eˣ` < 2e-38), written without
/// calls or branches so that a loop over it vectorises: `x = n ln 2 + r` with |r| ≤ ln 2 / 2 (n
/// rounded with the 1.5·2²³ trick; ln 2 split in two parts, as Cody and Waite), a degree-6 Taylor
/// polynomial for `eʳ`, and `2ⁿ` built in the exponent bits.
fn exp_nonpositive(x: f32) -> f32 {
    const LN2_HI: f32 = 0.693_145_75;
    const LN2_LO: f32 = 1.428_606_8e-6;
    let x = x.max(-87.0);
    const ROUND: f32 = 12_582_912.0;
    let n = (x * std::f32::consts::LOG2_E + ROUND) - ROUND;
    let r = (x - n * LN2_HI) - n * LN2_LO;
    let p = 1.0
        + r * (1.0
            + r * (0.5
                + r * (1.0 / 6.0 + r * (1.0 / 24.0 + r * (1.0 / 120.0 + r * (1.0 / 720.0))))));
    // n is in [−126, 0]: 2ⁿ is a normal f32.
    let scale = f32::from_bits(((n as i32 + 127) as u32) << 23);
    p * scale
}

/// `out = x·scale + shift` per channel, `c` channels contiguous.
fn affine(x: &[f32], scale: &[f32], shift: &[f32], c: usize, out: &mut [f32]) {
    for (o, v) in out.chunks_exact_mut(c).zip(x.chunks_exact(c)) {
        for (((o, &v), &s), &t) in o.iter_mut().zip(v).zip(scale).zip(shift) {
            *o = v * s + t;
        }
    }
}

/// An affine layer's gradients from its output gradient `g` and input `x` (`c` channels
/// contiguous), written: the scale's, `Σ g·x`, and the shift's, `Σ g`, per channel.
fn affine_grads(g: &[f32], x: &[f32], c: usize, dw: &mut [f32], db: &mut [f32]) {
    dw.fill(0.0);
    db.fill(0.0);
    for (gr, xr) in g.chunks_exact(c).zip(x.chunks_exact(c)) {
        for (((w, b), &g), &v) in dw.iter_mut().zip(db.iter_mut()).zip(gr).zip(xr) {
            *w += g * v;
            *b += g;
        }
    }
}

fn col_sums(g: &[f32], cols: usize, out: &mut [f32]) {
    out.fill(0.0);
    for row in g.chunks_exact(cols) {
        for (o, v) in out.iter_mut().zip(row) {
            *o += v;
        }
    }
}

impl Op {
    /// A depthwise convolution's geometry and the index of its weights; `None` for any other op.
    /// A convolution is depthwise with one input channel per group and one output channel per
    /// input channel (MobileNet's 3 × 3 layers). Such a layer runs directly ([`Depthwise`]) instead
    /// of as im2col and one product per channel, each a matrix–vector product of `k²` columns.
    fn depthwise(&self) -> Option<(Depthwise, usize)> {
        match *self {
            Op::Conv {
                cin,
                cout,
                k,
                pad,
                stride,
                groups,
                h,
                w,
                oh,
                ow,
                param,
                ..
            } if groups > 1 && groups == cin && cout == cin => {
                Some((Depthwise::new([h, w, cin], k, pad, stride, [oh, ow]), param))
            }
            _ => None,
        }
    }
}

/// The geometry of a depthwise convolution of channels-last images: input height, width and
/// channels, a `k × k` window, padding and stride, output height and width. Its kernels walk the
/// windows and, at each tap, run along the channels, which are contiguous both in the image and
/// in the weights read as `[ky][kx][c]`, so the innermost loop vectorises. Taps in the padding
/// are skipped.
struct Depthwise {
    hwc: [usize; 3],
    k: usize,
    pad: usize,
    stride: usize,
    out_hw: [usize; 2],
}

impl Depthwise {
    fn new(hwc: [usize; 3], k: usize, pad: usize, stride: usize, out_hw: [usize; 2]) -> Depthwise {
        Depthwise {
            hwc,
            k,
            pad,
            stride,
            out_hw,
        }
    }

    /// Calls `f(output offset, input offset, tap)` for every tap inside the image of every
    /// output position of `n` images; offsets are in floats, each the start of `c` channels.
    fn each_tap(&self, n: usize, mut f: impl FnMut(usize, usize, usize)) {
        let ([h, w, c], [oh, ow], k) = (self.hwc, self.out_hw, self.k);
        for img in 0..n {
            for oy in 0..oh {
                let (ky0, ky1) = window(oy, self.stride, self.pad, k, h);
                for ox in 0..ow {
                    let (kx0, kx1) = window(ox, self.stride, self.pad, k, w);
                    let at = ((img * oh + oy) * ow + ox) * c;
                    for ky in ky0..ky1 {
                        let iy = oy * self.stride + ky - self.pad;
                        for kx in kx0..kx1 {
                            let ix = ox * self.stride + kx - self.pad;
                            f(at, ((img * h + iy) * w + ix) * c, ky * k + kx);
                        }
                    }
                }
            }
        }
    }

    /// `out` = the convolution of `x` by `wt` (`[ky][kx][c]`), without bias.
    fn forward(&self, x: &[f32], n: usize, wt: &[f32], out: &mut [f32]) {
        let c = self.hwc[2];
        out.fill(0.0);
        self.each_tap(n, |o, i, tap| {
            let (o, x, wt) = (&mut out[o..o + c], &x[i..i + c], &wt[tap * c..tap * c + c]);
            for ((o, x), wt) in o.iter_mut().zip(x).zip(wt) {
                *o += x * wt;
            }
        });
    }

    /// Adds to `dx` the gradient with respect to the input, given `g` for the output.
    fn input_grad(&self, g: &[f32], n: usize, wt: &[f32], dx: &mut [f32]) {
        let c = self.hwc[2];
        self.each_tap(n, |o, i, tap| {
            let (g, dx, wt) = (&g[o..o + c], &mut dx[i..i + c], &wt[tap * c..tap * c + c]);
            for ((dx, g), wt) in dx.iter_mut().zip(g).zip(wt) {
                *dx += g * wt;
            }
        });
    }

    /// Adds to `dw` (`[ky][kx][c]`) the gradient with respect to the weights, given `g` for the
    /// output and the input `x`.
    fn weight_grad(&self, g: &[f32], x: &[f32], n: usize, dw: &mut [f32]) {
        let c = self.hwc[2];
        self.each_tap(n, |o, i, tap| {
            let (g, x, dw) = (&g[o..o + c], &x[i..i + c], &mut dw[tap * c..tap * c + c]);
            for ((dw, g), x) in dw.iter_mut().zip(g).zip(x) {
                *dw += g * x;
            }
        });
    }
}

/// The im2col rows of channels-last images (`image` = height, width, channels, groups): one row
/// per output position, `[ky][kx][channel]`, or with groups `[group][ky][kx][channel of the
/// group]` so that each group's columns are one block.
#[allow(clippy::too_many_arguments)]
fn im2col(
    x: &[f32],
    n: usize,
    [h, w, c, groups]: [usize; 4],
    k: usize,
    pad: usize,
    stride: usize,
    oh: usize,
    ow: usize,
    col: &mut [f32],
) {
    let kk = k * k * c;
    let (cg, kg) = (c / groups, kk / groups);
    let mut r = 0;
    for img in 0..n {
        let xi = &x[img * h * w * c..(img + 1) * h * w * c];
        for oy in 0..oh {
            for ox in 0..ow {
                let row = &mut col[r * kk..(r + 1) * kk];
                r += 1;
                if groups == 1 {
                    // A row of taps is one run of `k·c` values in the image and in `row`: copied
                    // at once, with zeros where it hangs over the border.
                    for ky in 0..k {
                        let dst = &mut row[ky * k * c..(ky + 1) * k * c];
                        let iy = (oy * stride + ky) as isize - pad as isize;
                        match taps_inside(ox * stride, pad, k, w) {
                            (lo, hi) if iy >= 0 && (iy as usize) < h && lo < hi => {
                                let src = (iy as usize * w + ox * stride + lo - pad) * c;
                                dst[..lo * c].fill(0.0);
                                dst[lo * c..hi * c].copy_from_slice(&xi[src..src + (hi - lo) * c]);
                                dst[hi * c..].fill(0.0);
                            }
                            _ => dst.fill(0.0),
                        }
                    }
                    continue;
                }
                for ky in 0..k {
                    let iy = (oy * stride + ky) as isize - pad as isize;
                    for kx in 0..k {
                        let ix = (ox * stride + kx) as isize - pad as isize;
                        let outside = iy < 0 || ix < 0 || iy as usize >= h || ix as usize >= w;
                        let src = if outside {
                            0
                        } else {
                            (iy as usize * w + ix as usize) * c
                        };
                        for g in 0..groups {
                            let at = g * kg + (ky * k + kx) * cg;
                            let dst = &mut row[at..at + cg];
                            if outside {
                                dst.fill(0.0);
                            } else {
                                dst.copy_from_slice(&xi[src + g * cg..src + (g + 1) * cg]);
                            }
                        }
                    }
                }
            }
        }
    }
}

/// The taps `lo..hi` of a row of `k` that start at padded column `x0` (input column
/// `x0 + tap − pad`) and fall inside an input `w` wide; `lo == hi` when none does.
fn taps_inside(x0: usize, pad: usize, k: usize, w: usize) -> (usize, usize) {
    let lo = pad.saturating_sub(x0).min(k);
    let hi = (w + pad).saturating_sub(x0).min(k);
    (lo, hi.max(lo))
}

/// Adds im2col rows back onto the image they came from (the adjoint of [`im2col`]).
#[allow(clippy::too_many_arguments)]
fn col2im(
    dcol: &[f32],
    n: usize,
    [h, w, c, groups]: [usize; 4],
    k: usize,
    pad: usize,
    stride: usize,
    oh: usize,
    ow: usize,
    dx: &mut [f32],
) {
    let kk = k * k * c;
    let (cg, kg) = (c / groups, kk / groups);
    let mut r = 0;
    for img in 0..n {
        let di = &mut dx[img * h * w * c..(img + 1) * h * w * c];
        for oy in 0..oh {
            for ox in 0..ow {
                let row = &dcol[r * kk..(r + 1) * kk];
                r += 1;
                for ky in 0..k {
                    let iy = (oy * stride + ky) as isize - pad as isize;
                    if iy < 0 || iy as usize >= h {
                        continue;
                    }
                    if groups == 1 {
                        // As in `im2col`: the row of taps inside the image is one run.
                        let (lo, hi) = taps_inside(ox * stride, pad, k, w);
                        if lo < hi {
                            let dst = (iy as usize * w + ox * stride + lo - pad) * c;
                            let src = &row[(ky * k + lo) * c..(ky * k + hi) * c];
                            for (d, s) in di[dst..dst + (hi - lo) * c].iter_mut().zip(src) {
                                *d += s;
                            }
                        }
                        continue;
                    }
                    for kx in 0..k {
                        let ix = (ox * stride + kx) as isize - pad as isize;
                        if ix < 0 || ix as usize >= w {
                            continue;
                        }
                        let dst = (iy as usize * w + ix as usize) * c;
                        for g in 0..groups {
                            let at = g * kg + (ky * k + kx) * cg;
                            for (d, s) in di[dst + g * cg..dst + (g + 1) * cg]
                                .iter_mut()
                                .zip(&row[at..at + cg])
                            {
                                *d += s;
                            }
                        }
                    }
                }
            }
        }
    }
}

/// The rows (or columns) `lo..hi` of a pooling window at output position `o` that lie inside an
/// input of `len` rows padded by `pad` on each side; input row `o·stride + i − pad` for `i` in the
/// range. Never empty for the shapes `Model::new` accepts (`pad` at most half the window).
fn window(o: usize, stride: usize, pad: usize, k: usize, len: usize) -> (usize, usize) {
    let start = o * stride;
    (
        pad.saturating_sub(start),
        k.min((len + pad).saturating_sub(start)),
    )
}

/// Max pooling of channels-last images. `pad` rows and columns on each side take no part.
#[allow(clippy::too_many_arguments)]
fn maxpool(
    x: &[f32],
    n: usize,
    [h, w, c]: [usize; 3],
    k: usize,
    stride: usize,
    pad: usize,
    oh: usize,
    ow: usize,
    out: &mut [f32],
) {
    let mut o = 0;
    for img in 0..n {
        let base = img * h * w * c;
        for oy in 0..oh {
            let (y0, y1) = window(oy, stride, pad, k, h);
            for ox in 0..ow {
                let (x0, x1) = window(ox, stride, pad, k, w);
                let ov = &mut out[o..o + c];
                for ky in y0..y1 {
                    for kx in x0..x1 {
                        let at = base + ((oy * stride + ky - pad) * w + ox * stride + kx - pad) * c;
                        let xs = &x[at..at + c];
                        if ky == y0 && kx == x0 {
                            ov.copy_from_slice(xs);
                        } else {
                            for (v, &cand) in ov.iter_mut().zip(xs) {
                                *v = if cand > *v { cand } else { *v };
                            }
                        }
                    }
                }
                o += c;
            }
        }
    }
}

/// Average pooling of channels-last images (`image` = height, width, channels) over windows
/// `win` = (height, width, row stride, column stride), giving `out_hw` outputs per image. Forward
/// (`backward` false): `out` = the mean of each window of `x`. Backward: `x` is the pooled
/// gradient and each window's share, `1/(kh·kw)` of it, is added into `out` (zeroed by the
/// caller; overlapping windows add up, the floor-mode remainder stays zero).
fn avgpool(
    x: &[f32],
    n: usize,
    image: [usize; 3],
    win: [usize; 4],
    out_hw: [usize; 2],
    out: &mut [f32],
    backward: bool,
) {
    let ([h, w, c], [kh, kw, sh, sw], [oh, ow]) = (image, win, out_hw);
    let inv = 1.0 / (kh * kw) as f32;
    let mut o = 0;
    for img in 0..n {
        let base = img * h * w * c;
        for oy in 0..oh {
            for ox in 0..ow {
                if !backward {
                    out[o..o + c].fill(0.0);
                }
                for ky in 0..kh {
                    let row = base + ((oy * sh + ky) * w + ox * sw) * c;
                    for at in (row..row + kw * c).step_by(c) {
                        if backward {
                            for (d, &g) in out[at..at + c].iter_mut().zip(&x[o..o + c]) {
                                *d += g * inv;
                            }
                        } else {
                            for (v, &xv) in out[o..o + c].iter_mut().zip(&x[at..at + c]) {
                                *v += xv;
                            }
                        }
                    }
                }
                if !backward {
                    for v in &mut out[o..o + c] {
                        *v *= inv;
                    }
                }
                o += c;
            }
        }
    }
}

/// Routes each pooled gradient to the first window position holding the maximum (PyTorch's
/// choice on ties), found again by comparing the input with the pooled output: no index buffer,
/// and both passes vectorise. Adds into `dx` (zeroed by the caller), since overlapping windows
/// (stride < size) can route several gradients to one input.
#[allow(clippy::too_many_arguments)]
fn maxpool_backward(
    x: &[f32],
    out: &[f32],
    g: &[f32],
    n: usize,
    [h, w, c]: [usize; 3],
    k: usize,
    stride: usize,
    pad: usize,
    oh: usize,
    ow: usize,
    dx: &mut [f32],
    taken: &mut Vec<f32>,
) {
    taken.resize(c, 0.0);
    let mut o = 0;
    for img in 0..n {
        let base = img * h * w * c;
        for oy in 0..oh {
            let (y0, y1) = window(oy, stride, pad, k, h);
            for ox in 0..ow {
                let (x0, x1) = window(ox, stride, pad, k, w);
                let (ov, go) = (&out[o..o + c], &g[o..o + c]);
                taken.fill(0.0);
                for ky in y0..y1 {
                    for kx in x0..x1 {
                        let at = base + ((oy * stride + ky - pad) * w + ox * stride + kx - pad) * c;
                        let (xs, ds) = (&x[at..at + c], &mut dx[at..at + c]);
                        for ((((d, &xv), &ovv), &gv), t) in
                            ds.iter_mut().zip(xs).zip(ov).zip(go).zip(taken.iter_mut())
                        {
                            let hit = if xv == ovv && *t == 0.0 { 1.0 } else { 0.0 };
                            *d += hit * gv;
                            *t += hit;
                        }
                    }
                }
                o += c;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn loss_of(m: &Model, ws: &mut Workspace, x: &[f32], y: &[u8]) -> f64 {
        let logits = m.forward(ws, x, y.len()).unwrap().to_vec();
        let mut d = Vec::new();
        softmax_xent(&logits, y, m.classes(), 1.0, &mut d, None)
    }

    /// A small network with every layer kind, padding, an odd size and a standalone ReLU.
    fn tiny() -> Arch {
        use LayerSpec::*;
        Arch {
            name: "tiny".into(),
            input: [2, 7, 7],
            classes: 3,
            layers: vec![
                Conv2d {
                    in_channels: 2,
                    out_channels: 3,
                    kernel: 3,
                    padding: 1,
                    stride: 1,
                    groups: 1,
                },
                Relu,
                MaxPool2d {
                    kernel: 2,
                    stride: None,
                    padding: 0,
                    ceil_mode: false,
                },
                Relu,
                Conv2d {
                    in_channels: 3,
                    out_channels: 4,
                    kernel: 2,
                    padding: 0,
                    stride: 1,
                    groups: 1,
                },
                Flatten,
                Tanh,
                Linear {
                    in_features: 16,
                    out_features: 5,
                },
                Relu,
                Linear {
                    in_features: 5,
                    out_features: 3,
                },
            ],
        }
    }

    /// Two residual blocks: one with an identity shortcut (its body's ReLU fused into its first
    /// convolution), one that halves the image with a strided 1×1 convolution on the shortcut,
    /// as ResNet's downsampling blocks do; then a global pool.
    fn tiny_residual() -> Arch {
        use LayerSpec::*;
        let conv = |cin, cout, kernel, padding, stride| Conv2d {
            in_channels: cin,
            out_channels: cout,
            kernel,
            padding,
            stride,
            groups: 1,
        };
        Arch {
            name: "tiny-residual".into(),
            input: [2, 7, 7],
            classes: 3,
            layers: vec![
                conv(2, 3, 3, 1, 1),
                Relu,
                Residual {
                    body: vec![conv(3, 3, 3, 1, 1), Relu, conv(3, 3, 3, 1, 1)],
                    shortcut: vec![],
                },
                Relu,
                Residual {
                    body: vec![conv(3, 4, 3, 1, 2), Relu, conv(4, 4, 3, 1, 1)],
                    shortcut: vec![conv(3, 4, 1, 0, 2)],
                },
                // Smooth, so that finite differences do not straddle a kink here.
                Elu,
                GlobalAvgPool,
                Flatten,
                Linear {
                    in_features: 4,
                    out_features: 3,
                },
            ],
        }
    }

    /// Residual blocks that cannot run are refused with the layer named: nested, empty, with a
    /// flatten or linear layer inside, on a flat input, or with branches of different shapes.
    #[test]
    fn refuses_bad_residual_blocks() {
        use LayerSpec::*;
        let conv = |cin, cout, stride| Conv2d {
            in_channels: cin,
            out_channels: cout,
            kernel: 3,
            padding: 1,
            stride,
            groups: 1,
        };
        let with = |block: LayerSpec| {
            let mut a = tiny_residual();
            a.layers[2] = block;
            Model::zeros(&a).map(|_| ())
        };
        assert!(
            with(Residual {
                body: vec![conv(3, 3, 1)],
                shortcut: vec![],
            })
            .is_ok()
        );
        let bad = [
            Residual {
                body: vec![],
                shortcut: vec![conv(3, 3, 1)],
            },
            Residual {
                body: vec![Residual {
                    body: vec![conv(3, 3, 1)],
                    shortcut: vec![],
                }],
                shortcut: vec![],
            },
            Residual {
                body: vec![conv(3, 3, 1), Flatten],
                shortcut: vec![],
            },
            // The body halves the image; the identity does not.
            Residual {
                body: vec![conv(3, 3, 2)],
                shortcut: vec![],
            },
            // The body changes the channels; the identity does not.
            Residual {
                body: vec![conv(3, 4, 1)],
                shortcut: vec![],
            },
        ];
        for block in bad {
            match with(block.clone()) {
                Err(ModelError::Layer { layer: 2, .. }) => {}
                other => panic!("{block:?}: {other:?}"),
            }
        }
        let flat = Arch {
            name: "flat".into(),
            input: [1, 4, 4],
            classes: 2,
            layers: vec![
                Flatten,
                Residual {
                    body: vec![Relu],
                    shortcut: vec![],
                },
                Linear {
                    in_features: 16,
                    out_features: 2,
                },
            ],
        };
        assert!(matches!(
            Model::zeros(&flat),
            Err(ModelError::Layer { layer: 1, .. })
        ));
        // Nested layers count towards the limit.
        let mut long = tiny_residual();
        long.layers[2] = Residual {
            body: vec![Relu; MAX_LAYERS],
            shortcut: vec![],
        };
        assert!(matches!(Model::zeros(&long), Err(ModelError::Arch(_))));
    }

    /// A residual block on the input itself (its gradient joins two branches at the input).
    fn tiny_residual_at_input() -> Arch {
        use LayerSpec::*;
        Arch {
            name: "tiny-residual-input".into(),
            input: [2, 5, 5],
            classes: 3,
            layers: vec![
                Residual {
                    body: vec![
                        Conv2d {
                            in_channels: 2,
                            out_channels: 2,
                            kernel: 3,
                            padding: 1,
                            stride: 1,
                            groups: 1,
                        },
                        Tanh,
                    ],
                    shortcut: vec![],
                },
                Flatten,
                Linear {
                    in_features: 50,
                    out_features: 3,
                },
            ],
        }
    }

    /// Strided convolutions (with padding, and with an odd remainder), an overlapping stride-1
    /// pool, as in Tramèr and Boneh's DP network, and an ELU.
    fn tiny_strided() -> Arch {
        use LayerSpec::*;
        Arch {
            name: "tiny-strided".into(),
            input: [2, 9, 9],
            classes: 3,
            layers: vec![
                Conv2d {
                    in_channels: 2,
                    out_channels: 3,
                    kernel: 3,
                    padding: 1,
                    stride: 2,
                    groups: 1,
                },
                Tanh,
                MaxPool2d {
                    kernel: 2,
                    stride: Some(1),
                    padding: 0,
                    ceil_mode: false,
                },
                Elu,
                Conv2d {
                    in_channels: 3,
                    out_channels: 4,
                    kernel: 2,
                    padding: 0,
                    stride: 2,
                    groups: 1,
                },
                Relu,
                Flatten,
                Linear {
                    in_features: 16,
                    out_features: 3,
                },
            ],
        }
    }

    /// Average pools: an overlapping window (3, stride 2) and a global one before the head.
    pub(crate) fn tiny_avg() -> Arch {
        use LayerSpec::*;
        Arch {
            name: "tiny-avg".into(),
            input: [2, 8, 8],
            classes: 3,
            layers: vec![
                Conv2d {
                    in_channels: 2,
                    out_channels: 3,
                    kernel: 3,
                    padding: 1,
                    stride: 1,
                    groups: 1,
                },
                Relu,
                AvgPool2d {
                    kernel: 3,
                    stride: Some(2),
                },
                Conv2d {
                    in_channels: 3,
                    out_channels: 4,
                    kernel: 2,
                    padding: 0,
                    stride: 1,
                    groups: 1,
                },
                Elu,
                GlobalAvgPool,
                Flatten,
                Linear {
                    in_features: 4,
                    out_features: 3,
                },
            ],
        }
    }

    /// MobileNet's parts: a grouped convolution (2 groups), ReLU6, a depthwise convolution
    /// (groups = channels, strided, padded) inside a residual block, a pointwise one. The input
    /// is scaled up so that ReLU6 clips at 6 as well as at 0.
    pub(crate) fn tiny_grouped() -> Arch {
        use LayerSpec::*;
        let conv = |cin, cout, kernel, padding, stride, groups| Conv2d {
            in_channels: cin,
            out_channels: cout,
            kernel,
            padding,
            stride,
            groups,
        };
        Arch {
            name: "tiny-grouped".into(),
            input: [2, 7, 7],
            classes: 3,
            layers: vec![
                conv(2, 6, 3, 1, 1, 2),
                Relu6,
                Residual {
                    body: vec![conv(6, 6, 3, 1, 1, 6), Relu6, conv(6, 6, 1, 0, 1, 1)],
                    shortcut: vec![],
                },
                conv(6, 6, 3, 1, 2, 6),
                Relu6,
                Flatten,
                Linear {
                    in_features: 96,
                    out_features: 3,
                },
            ],
        }
    }

    /// EfficientNet's parts: SiLU, a squeeze-and-excitation gate at the top level, one inside a
    /// residual body after a depthwise convolution (with a fused ReLU in its body), and a gate
    /// with a factor per value.
    pub(crate) fn tiny_gated() -> Arch {
        use LayerSpec::*;
        let conv = |cin, cout, kernel, padding, groups| Conv2d {
            in_channels: cin,
            out_channels: cout,
            kernel,
            padding,
            stride: 1,
            groups,
        };
        let se = |act: LayerSpec| Gate {
            body: vec![
                GlobalAvgPool,
                conv(4, 2, 1, 0, 1),
                act,
                conv(2, 4, 1, 0, 1),
                Sigmoid,
            ],
        };
        Arch {
            name: "tiny-gated".into(),
            input: [2, 6, 6],
            classes: 3,
            layers: vec![
                conv(2, 4, 3, 1, 1),
                Silu,
                se(Silu),
                Residual {
                    body: vec![
                        conv(4, 4, 1, 0, 1),
                        Silu,
                        conv(4, 4, 3, 1, 4),
                        Silu,
                        se(Relu),
                        conv(4, 4, 1, 0, 1),
                    ],
                    shortcut: vec![],
                },
                Gate {
                    body: vec![conv(4, 4, 3, 1, 1), Sigmoid],
                },
                GlobalAvgPool,
                Flatten,
                Linear {
                    in_features: 4,
                    out_features: 3,
                },
            ],
        }
    }

    /// A square convolution of stride 1, one group.
    fn conv(cin: usize, cout: usize, kernel: usize, padding: usize) -> LayerSpec {
        LayerSpec::Conv2d {
            in_channels: cin,
            out_channels: cout,
            kernel,
            padding,
            stride: 1,
            groups: 1,
        }
    }

    /// Inception's and DenseNet's parts: a concatenation of four branches (1×1; 1×1 then 3×3; a
    /// padded max pool then 1×1; the identity), then one of the identity and a convolution;
    /// `act` after the convolutions.
    pub(crate) fn tiny_concat(act: LayerSpec) -> Arch {
        use LayerSpec::*;
        Arch {
            name: "tiny-concat".into(),
            input: [2, 6, 6],
            classes: 3,
            layers: vec![
                conv(2, 4, 3, 1),
                act.clone(),
                Concat {
                    branches: vec![
                        vec![conv(4, 3, 1, 0), act.clone()],
                        vec![conv(4, 2, 1, 0), act.clone(), conv(2, 3, 3, 1)],
                        vec![
                            MaxPool2d {
                                kernel: 3,
                                stride: Some(1),
                                padding: 1,
                                ceil_mode: false,
                            },
                            conv(4, 2, 1, 0),
                        ],
                        vec![],
                    ],
                },
                Silu,
                Concat {
                    branches: vec![vec![], vec![conv(12, 2, 3, 1)]],
                },
                GlobalAvgPool,
                Flatten,
                Linear {
                    in_features: 14,
                    out_features: 3,
                },
            ],
        }
    }

    /// A concatenation puts its branches' channels side by side at each position (checked
    /// against the branches computed alone), and bad ones are refused.
    #[test]
    fn concatenations_put_channels_side_by_side() {
        use LayerSpec::*;
        let conv = |cin, cout| Conv2d {
            in_channels: cin,
            out_channels: cout,
            kernel: 1,
            padding: 0,
            stride: 1,
            groups: 1,
        };
        let head = |c: usize| {
            vec![
                Flatten,
                Linear {
                    in_features: 16 * c,
                    out_features: 3,
                },
            ]
        };
        let with = |mut layers: Vec<LayerSpec>, c: usize| {
            layers.extend(head(c));
            Arch {
                name: "c".into(),
                input: [2, 4, 4],
                classes: 3,
                layers,
            }
        };
        // [conv 2→3, identity]: 5 channels; the head sees them channels-last.
        let m = Model::init(
            &with(
                vec![Concat {
                    branches: vec![vec![conv(2, 3)], vec![]],
                }],
                5,
            ),
            2,
        )
        .unwrap();
        let branch = {
            let mut b = Model::init(&with(vec![conv(2, 3)], 3), 2).unwrap();
            b.params_mut()[0].clone_from(&m.params()[0]);
            b.params_mut()[1].clone_from(&m.params()[1]);
            b
        };
        let x: Vec<f32> = (0..32).map(|i| (i as f32 * 0.41).cos()).collect();
        let mut ws = Workspace::default();
        m.forward(&mut ws, &x, 1).unwrap();
        let joined = ws.acts[1].clone();
        let mut wb = Workspace::default();
        branch.forward(&mut wb, &x, 1).unwrap();
        for p in 0..16 {
            assert_eq!(&joined[p * 5..p * 5 + 3], &wb.acts[0][p * 3..p * 3 + 3]);
            assert_eq!(&joined[p * 5 + 3..p * 5 + 5], &x[p * 2..p * 2 + 2]);
        }
        for (layers, why) in [
            (
                vec![Concat {
                    branches: vec![vec![conv(2, 2)]],
                }],
                "one branch",
            ),
            (
                vec![Concat {
                    branches: vec![
                        vec![],
                        vec![MaxPool2d {
                            kernel: 2,
                            stride: None,
                            padding: 0,
                            ceil_mode: false,
                        }],
                    ],
                }],
                "sizes differ",
            ),
            (
                vec![Concat {
                    branches: vec![vec![], vec![Flatten]],
                }],
                "flatten inside",
            ),
            (
                vec![Residual {
                    body: vec![Concat {
                        branches: vec![vec![], vec![]],
                    }],
                    shortcut: vec![],
                }],
                "inside a residual block",
            ),
        ] {
            assert!(Model::init(&with(layers, 4), 0).is_err(), "{why}");
        }
    }

    /// Gates are refused where their body is empty, does not give one factor per channel or
    /// per value, or nests; they may sit in a residual body. Gates compute `x · body(x)`.
    #[test]
    fn gates_scale_their_input_and_bad_ones_are_refused() {
        use LayerSpec::*;
        let with = |layers: Vec<LayerSpec>| Arch {
            name: "g".into(),
            input: [2, 4, 4],
            classes: 3,
            layers: [
                layers,
                vec![
                    Flatten,
                    Linear {
                        in_features: 32,
                        out_features: 3,
                    },
                ],
            ]
            .concat(),
        };
        let conv = |cin, cout| Conv2d {
            in_channels: cin,
            out_channels: cout,
            kernel: 1,
            padding: 0,
            stride: 1,
            groups: 1,
        };
        // A per-channel gate of constant factors: x · σ(b) with zero weights and bias b.
        let gate = Gate {
            body: vec![GlobalAvgPool, conv(2, 2), Sigmoid],
        };
        let mut m = Model::init(&with(vec![gate.clone()]), 1).unwrap();
        let plain = {
            let mut p = Model::init(&with(vec![]), 1).unwrap();
            p.params_mut()[0].clone_from(&m.params()[2]);
            p.params_mut()[1].clone_from(&m.params()[3]);
            p
        };
        m.params_mut()[0].fill(0.0);
        m.params_mut()[1].copy_from_slice(&[0.5, -2.0]);
        let x: Vec<f32> = (0..32).map(|i| (i as f32 * 0.37).sin()).collect();
        let (s0, s1) = (1.0 / (1.0 + (-0.5f32).exp()), 1.0 / (1.0 + 2.0f32.exp()));
        let scaled: Vec<f32> = x
            .iter()
            .enumerate()
            .map(|(i, &v)| v * if i % 2 == 0 { s0 } else { s1 })
            .collect();
        let a = m
            .forward(&mut Workspace::default(), &x, 1)
            .unwrap()
            .to_vec();
        let b = plain
            .forward(&mut Workspace::default(), &scaled, 1)
            .unwrap()
            .to_vec();
        for (p, q) in a.iter().zip(&b) {
            assert!((p - q).abs() < 1e-5, "{a:?} vs {b:?}");
        }
        for (layers, why) in [
            (vec![Gate { body: vec![] }], "empty"),
            (
                vec![Gate {
                    body: vec![GlobalAvgPool, conv(2, 3)],
                }],
                "3 factors for 2 channels",
            ),
            (
                vec![Gate {
                    body: vec![conv(2, 2), GlobalAvgPool, Flatten],
                }],
                "flatten inside",
            ),
            (
                vec![Gate {
                    body: vec![gate.clone()],
                }],
                "nested gate",
            ),
            (
                vec![Gate {
                    body: vec![Residual {
                        body: vec![conv(2, 2)],
                        shortcut: vec![],
                    }],
                }],
                "residual inside",
            ),
        ] {
            assert!(Model::init(&with(layers), 0).is_err(), "{why}");
        }
        let in_residual = Residual {
            body: vec![conv(2, 2), gate],
            shortcut: vec![],
        };
        Model::init(&with(vec![in_residual]), 0).unwrap();
    }

    /// A grouped convolution is a dense one whose weights are zero between groups: the same
    /// logits, input gradient and (on the group blocks) weight gradient, for a depthwise and a
    /// 2-group convolution; and the parameter count of the grouped one.
    #[test]
    fn grouped_convolutions_equal_dense_ones_with_block_weights() {
        use LayerSpec::*;
        // (channels in, out, groups, kernel, padding, stride). The depthwise ones (groups = in =
        // out) run the direct kernel: with the windows cut by the padding on every side, wider
        // than half the window, larger windows, and strides up to and beyond the window.
        for (cin, cout, groups, k, pad, stride) in [
            (4, 4, 4, 3, 1, 2),
            (4, 6, 2, 3, 1, 2),
            (3, 6, 3, 3, 1, 2),
            (6, 6, 6, 3, 1, 1),
            (5, 5, 5, 3, 2, 1),
            (8, 8, 8, 5, 2, 2),
            (3, 3, 3, 1, 0, 1),
            (4, 4, 4, 1, 0, 2),
            (4, 4, 4, 3, 0, 4),
        ] {
            let (oh, ow) = (
                (5 + 2 * pad - k) / stride + 1,
                (6 + 2 * pad - k) / stride + 1,
            );
            let kk = k * k;
            let arch = |groups| Arch {
                name: "g".into(),
                input: [cin, 5, 6],
                classes: 4,
                layers: vec![
                    Conv2d {
                        in_channels: cin,
                        out_channels: cout,
                        kernel: k,
                        padding: pad,
                        stride,
                        groups,
                    },
                    Relu6,
                    Flatten,
                    Linear {
                        in_features: cout * oh * ow,
                        out_features: 4,
                    },
                ],
            };
            let g = Model::init(&arch(groups), 5).unwrap();
            let mut d = Model::zeros(&arch(1)).unwrap();
            let (cg, og) = (cin / groups, cout / groups);
            assert_eq!(g.params()[0].len(), cout * kk * cg);
            // Warden's layout: [cout][ky][kx][cin]; the grouped one holds its group's channels.
            for o in 0..cout {
                for t in 0..kk {
                    for c in 0..cg {
                        d.params_mut()[0][(o * kk + t) * cin + (o / og) * cg + c] =
                            g.params()[0][(o * kk + t) * cg + c];
                    }
                }
            }
            for p in 1..4 {
                d.params_mut()[p].clone_from(&g.params()[p]);
            }
            let mut rng = Rng::new(2);
            let n = 3;
            let x: Vec<f32> = (0..n * g.input_len())
                .map(|_| 20.0 * rng.uniform() as f32 - 10.0)
                .collect();
            let y = [0u8, 3, 1];
            let (mut wg, mut wd) = (Workspace::default(), Workspace::default());
            let lg = g.forward(&mut wg, &x, n).unwrap().to_vec();
            let ld = d.forward(&mut wd, &x, n).unwrap().to_vec();
            // The direct kernel writes no im2col rows; every other convolution does.
            assert_eq!(wg.cols[0].is_empty(), groups == cin && cout == cin);
            for (a, b) in lg.iter().zip(&ld) {
                assert!((a - b).abs() <= 1e-5 * (1.0 + b.abs()), "{a} vs {b}");
            }
            let mut dl = Vec::new();
            softmax_xent(&lg, &y, 4, 1.0, &mut dl, None);
            let (mut gg, mut gd) = (g.zero_grads(), d.zero_grads());
            g.backward(&mut wg, &x, &dl, Some(&mut gg), true);
            d.backward(&mut wd, &x, &dl, Some(&mut gd), true);
            for (a, b) in wg.input_grad().iter().zip(wd.input_grad()) {
                assert!((a - b).abs() <= 1e-5 * (1.0 + b.abs()), "{a} vs {b}");
            }
            for o in 0..cout {
                for t in 0..kk {
                    for c in 0..cg {
                        let a = gg[0][(o * kk + t) * cg + c];
                        let b = gd[0][(o * kk + t) * cin + (o / og) * cg + c];
                        assert!((a - b).abs() <= 1e-4 * (1.0 + b.abs()), "{a} vs {b}");
                    }
                }
            }
            assert!(
                lg.iter().any(|&v| v != 0.0) && wg.input_grad().iter().any(|&v| v != 0.0),
                "a test that compares zeros"
            );
        }
        // Groups that do not divide the channels are refused.
        let bad = Arch {
            name: "bad".into(),
            input: [4, 5, 5],
            classes: 2,
            layers: vec![Conv2d {
                in_channels: 4,
                out_channels: 6,
                kernel: 3,
                padding: 0,
                stride: 1,
                groups: 4,
            }],
        };
        assert!(Model::zeros(&bad).is_err());
    }

    /// A padded max pool (torchvision's stem, `MaxPool2d(3, 2, 1)`) after a tanh, whose negative
    /// values make a pad that took part in the max (as a zero) visible.
    fn tiny_padded_pool() -> Arch {
        use LayerSpec::*;
        Arch {
            name: "tiny-padded-pool".into(),
            input: [2, 7, 7],
            classes: 3,
            layers: vec![
                Conv2d {
                    in_channels: 2,
                    out_channels: 3,
                    kernel: 3,
                    padding: 1,
                    stride: 1,
                    groups: 1,
                },
                Tanh,
                MaxPool2d {
                    kernel: 3,
                    stride: Some(2),
                    padding: 1,
                    ceil_mode: false,
                },
                Flatten,
                Linear {
                    in_features: 48,
                    out_features: 3,
                },
            ],
        }
    }

    /// Ceil mode keeps the last, partial window: a 5×5 image through a 2×2 pool with stride 2
    /// gives 3×3 (floor mode: 2×2), the last row and column the maxima of the windows' parts
    /// inside; PyTorch's sizes where a last window would start in the padding (5 padded by 1,
    /// window 2, stride 2: 3, not 4) or not (4 padded by 1, window 3, stride 2: 3); gradients
    /// through it match finite differences.
    #[test]
    fn ceil_mode_pools_keep_the_last_partial_window() {
        use LayerSpec::*;
        let arch = |h: usize, kernel, padding, ceil_mode| Arch {
            name: "ceil".into(),
            input: [1, h, h],
            classes: 2,
            layers: vec![
                MaxPool2d {
                    kernel,
                    stride: Some(2),
                    padding,
                    ceil_mode,
                },
                Flatten,
                Linear {
                    in_features: 9,
                    out_features: 2,
                },
            ],
        };
        let m = Model::init(&arch(5, 2, 0, true), 0).unwrap();
        let x: Vec<f32> = (0..25).map(|i| ((i * 7) % 25) as f32).collect();
        let mut ws = Workspace::default();
        m.forward(&mut ws, &x, 1).unwrap();
        let want: Vec<f32> = (0..3)
            .flat_map(|oy| (0..3).map(move |ox| (oy, ox)))
            .map(|(oy, ox)| {
                let mut best = f32::NEG_INFINITY;
                for y in 2 * oy..(2 * oy + 2).min(5) {
                    for xx in 2 * ox..(2 * ox + 2).min(5) {
                        best = best.max(x[y * 5 + xx]);
                    }
                }
                best
            })
            .collect();
        assert_eq!(ws.acts[0], want);
        // Floor mode gives 2×2: the linear layer's 9 inputs no longer fit.
        assert!(Model::init(&arch(5, 2, 0, false), 0).is_err());
        Model::init(&arch(5, 2, 1, true), 0).unwrap();
        Model::init(&arch(4, 3, 1, true), 0).unwrap();
        let mut padded = tiny_padded_pool();
        padded.input = [2, 8, 8];
        if let MaxPool2d { ceil_mode, .. } = &mut padded.layers[2] {
            *ceil_mode = true;
        }
        // 8 padded by 1, window 3, stride 2: 5 (floor mode: 4).
        padded.layers[4] = Linear {
            in_features: 5 * 5 * 3,
            out_features: 3,
        };
        gradients_match_finite_differences_for(padded);
    }

    /// Max pooling with padding computed by hand: a 5×5 image of negative values through a 3×3
    /// pool with stride 2 and padding 1 gives 3×3 maxima over the windows' parts inside the
    /// image. A pad that entered the max as zero would give zeros on the border.
    #[test]
    fn padded_max_pools_take_the_maximum_inside_the_image() {
        use LayerSpec::*;
        let img: Vec<f32> = (0..25).map(|v| -100.0 + ((v * 7) % 25) as f32).collect();
        let at = |y: isize, x: isize| -> Option<f32> {
            ((0..5).contains(&y) && (0..5).contains(&x)).then(|| img[(y * 5 + x) as usize])
        };
        let want: Vec<f32> = (0..3)
            .flat_map(|oy| (0..3).map(move |ox| (oy, ox)))
            .map(|(oy, ox): (isize, isize)| {
                (0..3)
                    .flat_map(|ky| {
                        (0..3).filter_map(move |kx| at(2 * oy + ky - 1, 2 * ox + kx - 1))
                    })
                    .fold(f32::NEG_INFINITY, f32::max)
            })
            .collect();
        let arch = Arch {
            name: "padded-pool".into(),
            input: [1, 5, 5],
            classes: 9,
            layers: vec![
                MaxPool2d {
                    kernel: 3,
                    stride: Some(2),
                    padding: 1,
                    ceil_mode: false,
                },
                Flatten,
                Linear {
                    in_features: 9,
                    out_features: 9,
                },
            ],
        };
        let mut m = Model::zeros(&arch).unwrap();
        for i in 0..9 {
            m.params_mut()[0][i * 9 + i] = 1.0;
        }
        let mut ws = Workspace::default();
        let got = m.forward(&mut ws, &img, 1).unwrap().to_vec();
        assert_eq!(got, want);
        assert!(want.iter().all(|&v| v < -75.0), "{want:?}");
        // The gradient of each output reaches the input where its maximum is, and nowhere else.
        let ones = vec![1.0f32; 9];
        m.backward(&mut ws, &img, &ones, None, true);
        let g = ws.input_grad();
        for (o, &v) in want.iter().enumerate() {
            let src = img.iter().position(|&p| p == v).unwrap();
            assert!(g[src] >= 1.0, "output {o}: no gradient at its maximum");
        }
        assert_eq!(g.iter().sum::<f32>(), 9.0);
        // More padding than half the window is refused, as in PyTorch.
        let padded = |padding| {
            Model::zeros(&Arch {
                layers: vec![
                    MaxPool2d {
                        kernel: 3,
                        stride: Some(2),
                        padding,
                        ceil_mode: false,
                    },
                    Flatten,
                    Linear {
                        in_features: 9,
                        out_features: 9,
                    },
                ],
                ..arch.clone()
            })
        };
        assert!(padded(1).is_ok());
        assert!(padded(2).is_err());
    }

    /// Every analytic gradient (parameters and input) agrees with a central finite difference in
    /// double-checked single precision. The step is small (1e-3) so that it rarely crosses a
    /// kink of ReLU or of a max (overlapping pools have many near-ties); f32 rounding then costs
    /// about 1e-4 of absolute error, well inside the tolerance.
    #[test]
    fn gradients_match_finite_differences() {
        gradients_match_finite_differences_for(tiny());
        gradients_match_finite_differences_for(tiny_strided());
        gradients_match_finite_differences_for(tiny_avg());
        gradients_match_finite_differences_for(tiny_padded_pool());
        gradients_match_finite_differences_for(tiny_grouped());
        gradients_match_finite_differences_for(tiny_residual());
        gradients_match_finite_differences_for(tiny_residual_at_input());
        // SiLU's derivative is taken from its input; in place of the standalone ReLUs.
        gradients_match_finite_differences_for(tiny().with_activation(LayerSpec::Silu, "silu"));
        gradients_match_finite_differences_for(
            tiny_residual().with_activation(LayerSpec::Silu, "silu-residual"),
        );
        gradients_match_finite_differences_for(tiny_gated());
        directional_derivatives_match(tiny_gated(), 1e-2);
        // MobileNet V3's: hard swish as the activation, a gate ending on a hard sigmoid.
        let mut hard = tiny_gated();
        hard.name = "hard".into();
        for l in &mut hard.layers {
            if *l == LayerSpec::Silu {
                *l = LayerSpec::HardSwish;
            }
            if let LayerSpec::Gate { body } = l
                && let Some(last) = body.last_mut()
            {
                *last = LayerSpec::HardSigmoid;
            }
        }
        gradients_match_finite_differences_for(hard.clone());
        directional_derivatives_match(hard, 1e-2);
        // Per value only: moving a layer's every weight along a direction crosses ReLU kinks
        // (a bias moves a whole channel) and changes which value wins some of the overlapping
        // max pool's windows.
        gradients_match_finite_differences_for(tiny_concat(LayerSpec::Relu));
        gradients_match_finite_differences_for(tiny_concat(LayerSpec::Silu));
        // Affine layers away from the identity they start as, so that a scale left out of a
        // gradient shows. Along a direction (every channel at once) with SiLU, which has no
        // kinks for a shifted channel to cross.
        gradients_match_finite_differences_of(with_random_affines(tiny_affine(LayerSpec::Relu), 7));
        let smooth = tiny_affine(LayerSpec::Silu);
        directional_derivatives_match_of(with_random_affines(smooth, 11), 1e-2);
    }

    /// Affine layers on the input, first in a residual body and in a concatenation's branch,
    /// after the sum, and on the flat features before the classifier (batch norms where no
    /// convolution precedes them: pre-activation blocks, DenseNet); `act` as the activation.
    pub(crate) fn tiny_affine(act: LayerSpec) -> Arch {
        use LayerSpec::*;
        Arch {
            name: "tiny-affine".into(),
            input: [2, 6, 6],
            classes: 3,
            layers: vec![
                Affine { channels: 2 },
                conv(2, 4, 3, 1),
                act.clone(),
                Residual {
                    body: vec![Affine { channels: 4 }, act.clone(), conv(4, 4, 3, 1)],
                    shortcut: vec![],
                },
                Concat {
                    branches: vec![
                        vec![],
                        vec![Affine { channels: 4 }, act.clone(), conv(4, 2, 1, 0)],
                    ],
                },
                Affine { channels: 6 },
                act,
                GlobalAvgPool,
                Flatten,
                Affine { channels: 6 },
                Linear {
                    in_features: 6,
                    out_features: 3,
                },
            ],
        }
    }

    /// A model of `arch` from `seed`, every affine layer's scale drawn from [0.5, 1.5] and
    /// shift from [−0.2, 0.2].
    pub(crate) fn with_random_affines(arch: Arch, seed: u64) -> Model {
        let mut m = Model::init(&arch, seed).unwrap();
        let mut rng = Rng::new(seed);
        let params: Vec<usize> = m
            .ops
            .iter()
            .filter_map(|op| match *op {
                Op::Affine { param, .. } => Some(param),
                _ => None,
            })
            .collect();
        for p in params {
            for v in &mut m.params_mut()[p] {
                *v = 0.5 + rng.uniform() as f32;
            }
            for v in &mut m.params_mut()[p + 1] {
                *v = (rng.uniform() as f32 - 0.5) * 0.4;
            }
        }
        m
    }

    /// An affine layer computes `x·scale + shift` per channel (checked by hand on a 2-channel
    /// image and on flat features), starts as the identity, and is refused where its
    /// parameters would not line up with PyTorch's.
    #[test]
    fn affine_layers_scale_and_shift_each_channel() {
        use LayerSpec::*;
        let arch = Arch {
            name: "affine".into(),
            input: [2, 2, 2],
            classes: 8,
            layers: vec![
                Affine { channels: 2 },
                Flatten,
                Linear {
                    in_features: 8,
                    out_features: 8,
                },
            ],
        };
        let mut m = Model::init(&arch, 1).unwrap();
        assert_eq!(m.params()[0], [1.0, 1.0]);
        assert_eq!(m.params()[1], [0.0, 0.0]);
        let names: Vec<&str> = m.param_infos().iter().map(|p| p.name.as_str()).collect();
        assert_eq!(names, ["0.weight", "0.bias", "2.weight", "2.bias"]);
        m.params_mut()[0] = vec![2.0, -0.5];
        m.params_mut()[1] = vec![0.25, 1.0];
        // The linear layer as the identity, so the logits are the affine layer's output.
        let mut eye = vec![0.0f32; 64];
        for i in 0..8 {
            eye[i * 9] = 1.0;
        }
        m.params_mut()[2] = eye;
        m.params_mut()[3] = vec![0.0; 8];
        let x: Vec<f32> = (0..8).map(|v| v as f32).collect(); // channels last: (y·2 + x)·2 + ch
        let out = m
            .forward(&mut Workspace::default(), &x, 1)
            .unwrap()
            .to_vec();
        let want: Vec<f32> = x
            .iter()
            .enumerate()
            .map(|(i, &v)| {
                if i % 2 == 0 {
                    v * 2.0 + 0.25
                } else {
                    v * -0.5 + 1.0
                }
            })
            .collect();
        assert_eq!(out, want);
        let with = |layers: Vec<LayerSpec>| Arch {
            layers,
            ..arch.clone()
        };
        let head = Linear {
            in_features: 8,
            out_features: 8,
        };
        // Channels that do not match the input's.
        assert!(matches!(
            Model::zeros(&with(vec![Affine { channels: 3 }, Flatten, head.clone()])),
            Err(ModelError::Layer { layer: 0, .. })
        ));
        // On a flattened multi-channel image the features' order differs from PyTorch's.
        assert!(matches!(
            Model::zeros(&with(vec![Flatten, Affine { channels: 8 }, head])),
            Err(ModelError::Layer { layer: 1, .. })
        ));
    }

    /// Three uniform random inputs of `m` (drawn from `rng`), and the cross-entropy's gradients
    /// at them for labels `y`: the parameters', then the input's.
    fn gradients_at(m: &Model, rng: &mut Rng, y: &[u8; 3]) -> (Vec<f32>, Vec<Vec<f32>>, Vec<f32>) {
        let x: Vec<f32> = (0..3 * m.input_len())
            .map(|_| rng.uniform() as f32)
            .collect();
        let mut ws = Workspace::default();
        let logits = m.forward(&mut ws, &x, 3).unwrap().to_vec();
        let mut d = Vec::new();
        softmax_xent(&logits, y, 3, 1.0, &mut d, None);
        let mut grads = m.zero_grads();
        m.backward(&mut ws, &x, &d, Some(&mut grads), true);
        let gx = ws.input_grad().to_vec();
        (x, grads, gx)
    }

    /// Each parameter tensor's gradient, and the input's, along a random ±1 direction against
    /// the loss's central difference along it: one sum over the whole tensor, so that a small
    /// gradient (a gate's body, behind a sigmoid) is checked to 1% rather than lost in the
    /// per-value tolerance.
    fn directional_derivatives_match(arch: Arch, h: f32) {
        directional_derivatives_match_of(Model::init(&arch, 11).unwrap(), h);
    }

    fn directional_derivatives_match_of(mut m: Model, h: f32) {
        let arch = m.arch().clone();
        let mut rng = Rng::new(5);
        let y = [1u8, 0, 2];
        let (x, grads, gx) = gradients_at(&m, &mut rng, &y);
        let mut ws = Workspace::default();
        let sign = |rng: &mut Rng| if rng.uniform() < 0.5 { -1.0f32 } else { 1.0 };
        for (p, grad) in grads.iter().enumerate() {
            let v: Vec<f32> = (0..grad.len()).map(|_| sign(&mut rng)).collect();
            let orig = m.params[p].clone();
            let moved = |s: f32| orig.iter().zip(&v).map(|(a, b)| a + s * b).collect();
            m.params_mut()[p] = moved(h);
            let lp = loss_of(&m, &mut ws, &x, &y);
            m.params_mut()[p] = moved(-h);
            let lm = loss_of(&m, &mut ws, &x, &y);
            m.params_mut()[p] = orig;
            let num = (lp - lm) / (2.0 * f64::from(h));
            let ana: f64 = grad.iter().zip(&v).map(|(g, s)| f64::from(g * s)).sum();
            assert!(
                (num - ana).abs() < 1e-4 + 1e-2 * ana.abs(),
                "{}: param {p}: {num} vs {ana}",
                arch.name
            );
        }
        let v: Vec<f32> = (0..x.len()).map(|_| sign(&mut rng)).collect();
        let at = |s: f32| -> Vec<f32> { x.iter().zip(&v).map(|(a, b)| a + s * b).collect() };
        let num = (loss_of(&m, &mut ws, &at(h), &y) - loss_of(&m, &mut ws, &at(-h), &y))
            / (2.0 * f64::from(h));
        let ana: f64 = gx.iter().zip(&v).map(|(g, s)| f64::from(g * s)).sum();
        assert!(
            (num - ana).abs() < 1e-4 + 1e-2 * ana.abs(),
            "{}: input: {num} vs {ana}",
            arch.name
        );
    }

    /// Average pooling computed by hand: a 2-channel 5×5 image through a 2×2 pool (stride 2: a
    /// floor-mode remainder row and column are dropped) and through a global pool.
    #[test]
    fn average_pools_are_window_means() {
        use LayerSpec::*;
        let img: Vec<f32> = (0..50).map(|v| v as f32).collect(); // (y·5 + x)·2 + ch
        let at = |y: usize, x: usize, ch: usize| img[(y * 5 + x) * 2 + ch];
        for (layer, want) in [
            (
                AvgPool2d {
                    kernel: 2,
                    stride: None,
                },
                (0..2)
                    .flat_map(|oy| (0..2).flat_map(move |ox| (0..2).map(move |ch| (oy, ox, ch))))
                    .map(|(oy, ox, ch)| {
                        (at(2 * oy, 2 * ox, ch)
                            + at(2 * oy + 1, 2 * ox, ch)
                            + at(2 * oy, 2 * ox + 1, ch)
                            + at(2 * oy + 1, 2 * ox + 1, ch))
                            / 4.0
                    })
                    .collect::<Vec<f32>>(),
            ),
            (
                GlobalAvgPool,
                (0..2)
                    .map(|ch| (0..25).map(|p| img[p * 2 + ch]).sum::<f32>() / 25.0)
                    .collect(),
            ),
        ] {
            let flat = want.len();
            let arch = Arch {
                name: "pool".into(),
                input: [2, 5, 5],
                classes: flat,
                layers: vec![
                    layer.clone(),
                    Flatten,
                    Linear {
                        in_features: flat,
                        out_features: flat,
                    },
                ],
            };
            // An identity head in Warden's feature order, so that the logits are the pooled values.
            let mut m = Model::zeros(&arch).unwrap();
            for i in 0..flat {
                m.params_mut()[0][i * flat + i] = 1.0;
            }
            let mut ws = Workspace::default();
            let got = m.forward(&mut ws, &img, 1).unwrap();
            assert_eq!(got, want.as_slice(), "{layer:?}");
        }
        let bad = |layers| {
            Model::zeros(&Arch {
                name: "bad".into(),
                input: [1, 4, 4],
                classes: 2,
                layers,
            })
            .is_err()
        };
        assert!(bad(vec![AvgPool2d {
            kernel: 5,
            stride: None
        }]));
        assert!(bad(vec![Flatten, GlobalAvgPool]));
    }

    fn gradients_match_finite_differences_for(arch: Arch) {
        gradients_match_finite_differences_of(Model::init(&arch, 7).unwrap());
    }

    #[allow(clippy::needless_range_loop)]
    fn gradients_match_finite_differences_of(mut m: Model) {
        let y = [0u8, 2, 1];
        let (x, grads, gx) = gradients_at(&m, &mut Rng::new(3), &y);
        let mut ws = Workspace::default();
        let h = 1e-3f32;
        let mut checked = 0;
        for p in 0..m.params.len() {
            for j in (0..m.params[p].len()).step_by(3) {
                let orig = m.params[p][j];
                m.params_mut()[p][j] = orig + h;
                let lp = loss_of(&m, &mut ws, &x, &y);
                m.params_mut()[p][j] = orig - h;
                let lm = loss_of(&m, &mut ws, &x, &y);
                m.params_mut()[p][j] = orig;
                let num = (lp - lm) / (2.0 * f64::from(h));
                let ana = f64::from(grads[p][j]);
                assert!(
                    (num - ana).abs() < 2e-3 + 2e-2 * ana.abs(),
                    "param {p}[{j}]: {num} vs {ana}"
                );
                checked += 1;
            }
        }
        let mut xs = x.clone();
        for j in 0..x.len() {
            xs[j] = x[j] + h;
            let lp = loss_of(&m, &mut ws, &xs, &y);
            xs[j] = x[j] - h;
            let lm = loss_of(&m, &mut ws, &xs, &y);
            xs[j] = x[j];
            let num = (lp - lm) / (2.0 * f64::from(h));
            assert!(
                (num - f64::from(gx[j])).abs() < 2e-3 + 2e-2 * f64::from(gx[j]).abs(),
                "x[{j}]: {num} vs {}",
                gx[j]
            );
        }
        assert!(checked > 20, "{checked}");
    }

    /// The branch-free exponential agrees with the standard library's to a few ulp over its
    /// whole range, and ELU and SiLU with their definitions.
    #[test]
    fn exp_and_elu_match_the_standard_library() {
        let mut worst = 0f32;
        let mut x = -90f32;
        while x <= 0.0 {
            let (a, b) = (exp_nonpositive(x), x.max(-87.0).exp());
            worst = worst.max((a - b).abs() / b);
            x += 0.000_37;
        }
        assert!(worst < 4.0 * f32::EPSILON, "relative error {worst}");
        assert_eq!(exp_nonpositive(0.0), 1.0);
        let input = [-100.0, -3.0, -1e-4, 0.0, 1e-4, 2.5];
        let mut out = [0f32; 6];
        elu(&input, &mut out);
        for (&v, &o) in input.iter().zip(&out) {
            let want = if v > 0.0 { v } else { v.exp_m1() };
            assert!(
                (o - want).abs() <= 1e-7 + 1e-6 * want.abs(),
                "{v}: {o} vs {want}"
            );
        }
        let input = [-100.0, -20.0, -3.0, -1e-4, 0.0, 1e-4, 2.5, 30.0, 100.0];
        let mut out = [0f32; 9];
        silu(&input, &mut out);
        let mut g = [1f32; 9];
        silu_grad(&mut g, &input);
        for ((&v, &o), &d) in input.iter().zip(&out).zip(&g) {
            let v64 = f64::from(v);
            let s = 1.0 / (1.0 + (-v64).exp());
            let (want, dwant) = (v64 * s, s * (1.0 + v64 * (1.0 - s)));
            assert!(
                (f64::from(o) - want).abs() <= 1e-7 + 1e-6 * want.abs(),
                "{v}: {o} vs {want}"
            );
            assert!(
                (f64::from(d) - dwant).abs() <= 1e-7 + 1e-6 * dwant.abs(),
                "{v}: {d} vs {dwant}"
            );
        }
    }

    #[test]
    fn named_architectures_are_valid() {
        for name in [
            "small-cnn",
            "mlp",
            "cnn4",
            "small-cnn-tanh",
            "dp-cnn",
            "wk-small",
            "wk-wide",
        ] {
            let a = Arch::named(name).unwrap();
            assert!(Model::zeros(&a).is_ok(), "{name}");
        }
        assert_eq!(Model::zeros(&Arch::cnn4()).unwrap().param_count(), 312_202);
        assert_eq!(Model::zeros(&Arch::dp_cnn()).unwrap().param_count(), 26_010);
        let wk = |n| {
            Model::zeros(&Arch::named(n).unwrap())
                .unwrap()
                .param_count()
        };
        assert_eq!(wk("wk-small"), 166_406);
        assert_eq!(wk("wk-wide"), 662_786);
        assert!(Arch::named("resnet").is_none());
    }

    /// Clipped-sum gradients against the definition: every example's gradient alone, clipped,
    /// summed.
    #[test]
    fn clipped_gradients_equal_per_example_clipping() {
        clipped_gradients_equal_per_example_clipping_for(tiny());
        clipped_gradients_equal_per_example_clipping_for(tiny_strided());
        clipped_gradients_equal_per_example_clipping_for(tiny_residual());
        clipped_gradients_equal_per_example_clipping_for(tiny_grouped());
        clipped_gradients_equal_per_example_clipping_for(tiny_affine(LayerSpec::Relu));
    }

    fn clipped_gradients_equal_per_example_clipping_for(arch: Arch) {
        let m = Model::init(&arch, 8).unwrap();
        let n = 5;
        let len = m.input_len();
        let mut rng = Rng::new(9);
        let x: Vec<f32> = (0..n * len).map(|_| rng.uniform() as f32).collect();
        let y = [0u8, 1, 2, 1, 0];
        for max_norm in [1e-3f32, 0.05, 1e3] {
            let mut want = m.zero_grads();
            let mut want_norms = Vec::new();
            for e in 0..n {
                let mut ws = Workspace::default();
                let xe = &x[e * len..(e + 1) * len];
                let logits = m.forward(&mut ws, xe, 1).unwrap().to_vec();
                let mut d = Vec::new();
                softmax_xent(&logits, &y[e..e + 1], 3, 1.0, &mut d, None);
                let mut g = m.zero_grads();
                m.backward(&mut ws, xe, &d, Some(&mut g), false);
                let norm = g
                    .iter()
                    .flatten()
                    .map(|&v| f64::from(v) * f64::from(v))
                    .sum::<f64>()
                    .sqrt() as f32;
                want_norms.push(norm);
                let f = (max_norm / (norm + 1e-6)).min(1.0);
                for (w, g) in want.iter_mut().zip(&g) {
                    for (a, b) in w.iter_mut().zip(g) {
                        *a += f * b;
                    }
                }
            }
            let mut ws = Workspace::default();
            let logits = m.forward(&mut ws, &x, n).unwrap().to_vec();
            let mut d = Vec::new();
            softmax_xent(&logits, &y, 3, 1.0, &mut d, None);
            let mut got = m.zero_grads();
            let mut norms = Vec::new();
            m.backward_clipped(&mut ws, &x, &d, max_norm, &mut got, &mut norms);
            for (a, b) in norms.iter().zip(&want_norms) {
                assert!((a - b).abs() <= 1e-4 * b.max(1e-3), "{a} vs {b}");
            }
            for (w, g) in want.iter().zip(&got) {
                for (a, b) in w.iter().zip(g) {
                    assert!(
                        (a - b).abs() <= 1e-5 + 1e-4 * a.abs(),
                        "{a} vs {b} (C = {max_norm})"
                    );
                }
            }
        }
    }

    #[test]
    fn refuses_memory_bombs() {
        use LayerSpec::*;
        // A large image with a wide kernel: the im2col buffer would hold billions of values.
        let a = Arch {
            name: "bomb".into(),
            input: [1, 4096, 4096],
            classes: 2,
            layers: vec![
                Conv2d {
                    in_channels: 1,
                    out_channels: 1,
                    kernel: 15,
                    padding: 0,
                    stride: 1,
                    groups: 1,
                },
                Flatten,
                Linear {
                    in_features: 4082 * 4082,
                    out_features: 2,
                },
            ],
        };
        assert!(matches!(
            Model::zeros(&a),
            Err(ModelError::Layer { layer: 0, .. })
        ));
        // A depthwise convolution has no im2col buffer: 256 channels of 64 × 64 (1M values)
        // through a 5 × 5 window would need 26M im2col values, refused for a dense one only.
        let wide = |groups| Arch {
            name: "depthwise".into(),
            input: [256, 64, 64],
            classes: 2,
            layers: vec![
                Conv2d {
                    in_channels: 256,
                    out_channels: 256,
                    kernel: 5,
                    padding: 2,
                    stride: 1,
                    groups,
                },
                GlobalAvgPool,
                Flatten,
                Linear {
                    in_features: 256,
                    out_features: 2,
                },
            ],
        };
        Model::zeros(&wide(256)).unwrap();
        assert!(matches!(
            Model::zeros(&wide(1)),
            Err(ModelError::Layer { layer: 0, .. })
        ));
        // Products that would overflow saturate instead of wrapping past the check.
        let a = Arch {
            name: "overflow".into(),
            input: [1, 16, 16],
            classes: 2,
            layers: vec![
                Conv2d {
                    in_channels: 1,
                    out_channels: 65_536,
                    kernel: 15,
                    padding: 14,
                    stride: 1,
                    groups: 1,
                },
                Conv2d {
                    in_channels: 65_536,
                    out_channels: 1,
                    kernel: 15,
                    padding: 14,
                    stride: 1,
                    groups: 1,
                },
            ],
        };
        assert!(Model::zeros(&a).is_err());
        // Wide 1×1 convolutions: allowed, but passes go through in small chunks.
        let a = Arch {
            name: "wide".into(),
            input: [1, 28, 28],
            classes: 10,
            layers: vec![
                Conv2d {
                    in_channels: 1,
                    out_channels: 5000,
                    kernel: 1,
                    padding: 0,
                    stride: 1,
                    groups: 1,
                },
                Conv2d {
                    in_channels: 5000,
                    out_channels: 1,
                    kernel: 1,
                    padding: 0,
                    stride: 1,
                    groups: 1,
                },
                Flatten,
                Linear {
                    in_features: 784,
                    out_features: 10,
                },
            ],
        };
        let m = Model::zeros(&a).unwrap();
        assert!(m.chunk(256) * m.floats_per_example() <= WORKSPACE_BUDGET);
        assert!(m.chunk(256) < 16);
        assert_eq!(Model::zeros(&Arch::small_cnn()).unwrap().chunk(256), 256);
    }

    #[test]
    fn small_cnn_has_the_baseline_size() {
        let m = Model::init(&Arch::small_cnn(), 0).unwrap();
        assert_eq!(m.param_count(), 225_034);
        let names: Vec<&str> = m.param_infos().iter().map(|p| p.name.as_str()).collect();
        assert_eq!(
            names,
            [
                "0.weight", "0.bias", "3.weight", "3.bias", "7.weight", "7.bias", "9.weight",
                "9.bias"
            ]
        );
    }

    #[test]
    fn refuses_inconsistent_architectures() {
        let mut a = Arch::small_cnn();
        a.layers[3] = LayerSpec::Conv2d {
            in_channels: 16,
            out_channels: 64,
            kernel: 3,
            padding: 0,
            stride: 1,
            groups: 1,
        };
        assert!(matches!(
            Model::zeros(&a),
            Err(ModelError::Layer { layer: 3, .. })
        ));
        let mut a = Arch::small_cnn();
        a.layers.remove(6);
        assert!(matches!(
            Model::zeros(&a),
            Err(ModelError::Layer { layer: 6, .. })
        ));
        let mut a = Arch::small_cnn();
        a.classes = 11;
        assert!(Model::zeros(&a).is_err());
        let mut a = Arch::small_cnn();
        a.layers[7] = LayerSpec::Linear {
            in_features: 1600,
            out_features: 1 << 16,
        };
        a.layers[9] = LayerSpec::Linear {
            in_features: 1 << 16,
            out_features: 10,
        };
        assert!(
            matches!(Model::zeros(&a), Err(ModelError::Arch(_))),
            "too many parameters"
        );
        let a = Arch {
            input: [1, 2, 2],
            ..Arch::small_cnn()
        };
        assert!(Model::zeros(&a).is_err());
        let json = r#"{"name":"x","input":[1,28,28],"classes":10,"layers":[{"type":"conv3d"}]}"#;
        assert!(serde_json::from_str::<Arch>(json).is_err());
        let mut m = Model::zeros(&Arch::small_cnn()).unwrap();
        assert!(
            m.forward(&mut Workspace::default(), &[0.0; 100], 1)
                .is_err()
        );
        m.params_mut()[0][0] = 1.0;
    }

    #[test]
    fn sharded_prediction_equals_one_thread() {
        let m = Model::init(&Arch::small_cnn(), 1).unwrap();
        let mut rng = Rng::new(5);
        let n = 301;
        let x: Vec<f32> = (0..n * 784).map(|_| rng.uniform() as f32).collect();
        let a = m.predict(&mut Pool::new(1), &x, n).unwrap();
        let b = m.predict(&mut Pool::new(3), &x, n).unwrap();
        assert_eq!(a, b);
        assert_eq!(shard_ranges(5, 2, 16), vec![0..5]);
        assert_eq!(shard_ranges(33, 2, 16), vec![0..17, 17..33]);
        assert_eq!(shard_ranges(0, 2, 16), Vec::<std::ops::Range<usize>>::new());
        assert_eq!(shard_ranges(5, 2, 1), vec![0..3, 3..5]);
        assert_eq!(shard_ranges(3, 8, 1), vec![0..1, 1..2, 2..3]);
    }

    #[test]
    fn penultimate_features_feed_the_last_layer() {
        let m = Model::init(&Arch::small_cnn(), 3).expect("model");
        let mut ws = Workspace::default();
        let x: Vec<f32> = (0..2 * 784)
            .map(|i| ((i * 37) % 101) as f32 / 101.0)
            .collect();
        let logits = m.forward(&mut ws, &x, 2).expect("forward").to_vec();
        let f = m.features(&ws);
        assert_eq!(m.features_len(), Some(128));
        assert_eq!(f.len(), 2 * 128);
        // The last layer is linear 128 → 10 (PyTorch layout [out, in]) on the features.
        let (w, b) = (&m.params()[6], &m.params()[7]);
        for e in 0..2 {
            for o in 0..10 {
                let z: f32 = b[o]
                    + (0..128)
                        .map(|i| w[o * 128 + i] * f[e * 128 + i])
                        .sum::<f32>();
                assert!(
                    (z - logits[e * 10 + o]).abs() < 1e-4,
                    "{z} vs {}",
                    logits[e * 10 + o]
                );
            }
        }
        assert!(f.iter().all(|&v| v >= 0.0), "after the fused ReLU");
    }

    /// Logits and input gradients of an example do not depend on the batch it is in (nor on
    /// where in the batch), bit for bit: attacks shard and shrink batches as examples break,
    /// and their results must not depend on the thread count.
    /// A network's shards shrink with its cost: `small-cnn` keeps 16 examples a thread, a
    /// network of 46 times its cost gets a thread per example, so that a handful of
    /// large images is not left to one thread; predictions do not change with the split.
    #[test]
    fn large_networks_get_a_thread_per_example() {
        let small = Model::init(&Arch::small_cnn(), 1).unwrap();
        assert_eq!(small.macs_per_example(), 2_631_040);
        assert_eq!(small.least_per_thread(), 16);
        assert_eq!(Pool::new(2).shards(16, small.least_per_thread()).len(), 1);
        let conv = |cin: usize, cout: usize| LayerSpec::Conv2d {
            in_channels: cin,
            out_channels: cout,
            kernel: 3,
            padding: 1,
            stride: 1,
            groups: 1,
        };
        let big = Arch {
            name: "wide-56".into(),
            input: [3, 56, 56],
            classes: 10,
            layers: vec![
                conv(3, 64),
                LayerSpec::Relu,
                conv(64, 64),
                LayerSpec::Relu,
                LayerSpec::MaxPool2d {
                    kernel: 8,
                    stride: None,
                    padding: 0,
                    ceil_mode: false,
                },
                LayerSpec::Flatten,
                LayerSpec::Linear {
                    in_features: 7 * 7 * 64,
                    out_features: 10,
                },
            ],
        };
        let m = Model::init(&big, 2).unwrap();
        // 56² · 64 · (27 + 576) + 3,136 · 10 multiply-adds: 46 times small-cnn's.
        assert_eq!(m.macs_per_example(), 56 * 56 * 64 * (27 + 576) + 3_136 * 10);
        assert_eq!(m.least_per_thread(), 1);
        assert_eq!(Pool::new(2).shards(4, 1), vec![0..2, 2..4]);
        let n = 3;
        let mut rng = Rng::new(8);
        let x: Vec<f32> = (0..n * m.input_len())
            .map(|_| rng.uniform() as f32)
            .collect();
        let one = m.predict(&mut Pool::new(1), &x, n).unwrap();
        assert_eq!(m.predict(&mut Pool::new(3), &x, n).unwrap(), one);
    }

    #[test]
    fn passes_are_batch_invariant() {
        // wk-wide's first linear layer sums 3,136 terms (more than a kernel block); its last
        // has 10 outputs, which take other kernels below 26 rows.
        for arch in ["small-cnn", "mlp", "wk-wide"]
            .map(|name| Arch::named(name).unwrap())
            .into_iter()
            .chain([tiny_residual(), tiny_grouped()])
        {
            let name = arch.name.clone();
            let m = Model::init(&arch, 7).unwrap();
            let (len, classes) = (m.input_len(), m.classes());
            let n = 66;
            let mut rng = Rng::new(11);
            let x: Vec<f32> = (0..n * len).map(|_| rng.uniform() as f32).collect();
            let d: Vec<f32> = (0..n * classes)
                .map(|_| rng.uniform() as f32 - 0.5)
                .collect();
            let pass = |lo: usize, hi: usize| {
                let mut ws = Workspace::default();
                let z = m
                    .forward(&mut ws, &x[lo * len..hi * len], hi - lo)
                    .unwrap()
                    .to_vec();
                m.backward(
                    &mut ws,
                    &x[lo * len..hi * len],
                    &d[lo * classes..hi * classes],
                    None,
                    true,
                );
                (z, ws.input_grad().to_vec())
            };
            let (z, g) = pass(0, n);
            for size in [1, 2, 7, 25, 26, 65] {
                let mut lo = 0;
                while lo < n {
                    let hi = (lo + size).min(n);
                    let (zs, gs) = pass(lo, hi);
                    let same = |a: &[f32], b: &[f32]| {
                        a.len() == b.len()
                            && a.iter().zip(b).all(|(p, q)| p.to_bits() == q.to_bits())
                    };
                    assert!(
                        same(&zs, &z[lo * classes..hi * classes]),
                        "{name}: logits of {lo}..{hi} in batches of {size}"
                    );
                    assert!(
                        same(&gs, &g[lo * len..hi * len]),
                        "{name}: input gradients of {lo}..{hi} in batches of {size}"
                    );
                    lo = hi;
                }
            }
        }
    }

    /// One example's forward pass reads transposed copies of the weights; changing a parameter
    /// must drop them, through either mutable accessor.
    #[test]
    fn weight_copies_follow_the_parameters() {
        let arch = Arch::small_cnn();
        let mut m = Model::init(&arch, 3).unwrap();
        let mut rng = Rng::new(5);
        let x: Vec<f32> = (0..m.input_len()).map(|_| rng.uniform() as f32).collect();
        let one = |m: &Model| {
            let mut ws = Workspace::default();
            m.forward(&mut ws, &x, 1).unwrap().to_vec()
        };
        let fresh = |m: &Model| {
            let mut f = Model::zeros(&arch).unwrap();
            for (dst, src) in f.params_mut().iter_mut().zip(m.params()) {
                dst.copy_from_slice(src);
            }
            one(&f)
        };
        let before = one(&m);
        assert_eq!(before, fresh(&m));
        // The first linear layer's weights (parameter 4) and the last's (6).
        for w in m.params_mut()[4].iter_mut() {
            *w *= 1.25;
        }
        let after = one(&m);
        assert_ne!(after, before);
        assert_eq!(after, fresh(&m));
        for w in m.infos_and_params_mut().1[6].iter_mut() {
            *w *= 0.75;
        }
        let again = one(&m);
        assert_ne!(again, after);
        assert_eq!(again, fresh(&m));
        // A clone carries its copies with it, and they stay right.
        let c = m.clone();
        assert_eq!(one(&c), again);
    }
}
