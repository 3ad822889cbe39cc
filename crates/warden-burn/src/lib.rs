//! `warden-burn`: Warden's adversarial training on burn's backends, so that a recipe can run on a
//! GPU (`--device cuda`, cargo feature `cuda`) as well as on Warden's own CPU engine.
//!
//! What stays the same as on the CPU engine (`warden_harden::train`):
//! - the model: the same [`Arch`], its parameters moved in PyTorch's layout (`[Cout, Cin, kh, kw]`
//!   convolutions, `[out, in]` linear weights, channel-first flattening), which is burn's own;
//! - the objectives: clean, PGD / FGSM-RS with a uniform random start in the L∞ or L2 ball, and
//!   TRADES (KL attack from a Gaussian start of σ 0.001, loss CE + β·KL), attacks taking gradients
//!   with respect to the input only;
//! - the optimiser rules (PyTorch's Adam with L2 weight decay, SGD with momentum), the learning-rate
//!   factor per batch, the shuffling of each epoch, the augmentation of each batch (the same draws)
//!   and the weight average with its warm-up.
//!
//! What differs: random starts come from the backend's generator (seeded per epoch), so a run is
//! reproducible on one device but not bit-identical to the CPU engine's; GPU reductions may also
//! differ in the last bits from run to run. Differentially private training stays on the CPU engine.
//!
//! The code is generic over the backend. The tests run it on burn's CPU backend (`Flex`) and check
//! it against the CPU engine: logits, input gradients, optimiser steps and attacks; the CUDA build
//! runs the same functions with another type parameter.

use burn::backend::{Autodiff, Flex};
use burn::tensor::backend::{AutodiffBackend, Backend};
use burn::tensor::ops::{ConvOptions, PadMode};
use burn::tensor::{Distribution, ElementConversion, Int, Tensor, TensorData, activation, module};
use warden_harden::attack::{Goal, Norm, Pgd};
use warden_harden::augment::Augment;
use warden_harden::nn::{Arch, LayerSpec, Model};
use warden_harden::optim::OptimSpec;
use warden_harden::train::{EpochTotals, Objective, Stats, augment_seed, epoch_order};
use warden_harden::weights;

mod eval;
pub use eval::{DeviceNet, Evaluator};

/// Why a burn run was refused or failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BurnError {
    #[error("architecture: {0}")]
    Arch(String),
    #[error("input: {0}")]
    Input(String),
    #[error("unsupported on burn's backends: {0}")]
    Unsupported(String),
    #[error("device: {0}")]
    Device(String),
}

/// Where a [`Session`] runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Device {
    /// burn's pure-Rust CPU backend: for checking the GPU code path on a machine without a GPU
    /// (Warden's own CPU engine is faster).
    Flex,
    /// An NVIDIA GPU by index, through burn's CUDA backend.
    #[cfg(feature = "cuda")]
    Cuda(usize),
}

impl Device {
    /// Parses `flex`, `cuda` or `cuda:N`.
    pub fn parse(s: &str) -> Result<Device, BurnError> {
        match s {
            "flex" => Ok(Device::Flex),
            #[cfg(feature = "cuda")]
            "cuda" => Ok(Device::Cuda(0)),
            #[cfg(feature = "cuda")]
            _ if s.starts_with("cuda:") => s[5..]
                .parse::<usize>()
                .ok()
                .filter(|&i| i < 64)
                .map(Device::Cuda)
                .ok_or_else(|| BurnError::Device(format!("{s:?}: cuda:N with N below 64"))),
            _ if s.starts_with("cuda") => Err(BurnError::Device(
                "this build has no CUDA backend: build with `--features cuda`".into(),
            )),
            _ => Err(BurnError::Device(format!(
                "{s:?}: expected flex, cuda or cuda:N"
            ))),
        }
    }

    /// The device as written on the command line.
    pub fn name(&self) -> String {
        match self {
            Device::Flex => "flex".into(),
            #[cfg(feature = "cuda")]
            Device::Cuda(i) => format!("cuda:{i}"),
        }
    }
}

/// The burn version this crate is built against (recorded in model cards).
pub const BURN_VERSION: &str = "0.21.0";

/// One layer as the forward pass runs it; built from an [`Arch`] that [`Model`] has accepted.
#[derive(Debug, Clone, Copy)]
enum Step {
    Conv {
        param: usize,
        stride: usize,
        pad: usize,
        groups: usize,
    },
    Relu,
    /// `clamp(x, 0, 6)`.
    Relu6,
    Tanh,
    Elu,
    Silu,
    Sigmoid,
    HardSigmoid,
    HardSwish,
    /// Max pooling; `pad` on every side takes no part in a window (burn pads with −∞).
    Pool {
        k: usize,
        stride: usize,
        pad: usize,
        ceil: bool,
    },
    AvgPool {
        k: usize,
        stride: usize,
    },
    GlobalAvgPool,
    Flatten,
    Linear {
        param: usize,
    },
    /// `x·weight + bias` per channel (per feature of a flat input).
    Affine {
        param: usize,
    },
    /// A residual block starts: its input is kept for the shortcut.
    Fork,
    /// The body has ended: its output is kept and the shortcut starts from the block's input.
    Shortcut,
    /// The block ends: the body's output plus the shortcut's.
    Join,
    /// A gate ends: the input kept at its [`Step::Fork`] times the body's output.
    Scale,
    /// A concatenation's branch has ended: its output is kept and the next branch starts from
    /// the block's input.
    NextBranch,
    /// A concatenation ends: its `branches` outputs side by side along the channels.
    Cat {
        branches: usize,
    },
}

fn plan(arch: &Arch) -> Vec<Step> {
    let mut param = 0;
    let mut steps = Vec::new();
    for l in &arch.layers {
        plan_layer(l, &mut param, &mut steps);
    }
    steps
}

/// Appends `l`'s steps; `param` counts parameter tensors in [`Model::param_infos`]'s order
/// (a residual block's body, then its shortcut).
fn plan_layer(l: &LayerSpec, param: &mut usize, steps: &mut Vec<Step>) {
    let step = match *l {
        LayerSpec::Conv2d {
            padding,
            stride,
            groups,
            ..
        } => {
            *param += 2;
            Step::Conv {
                param: *param - 2,
                stride,
                pad: padding,
                groups,
            }
        }
        LayerSpec::Relu => Step::Relu,
        LayerSpec::Relu6 => Step::Relu6,
        LayerSpec::Tanh => Step::Tanh,
        LayerSpec::Elu => Step::Elu,
        LayerSpec::Silu => Step::Silu,
        LayerSpec::Sigmoid => Step::Sigmoid,
        LayerSpec::HardSigmoid => Step::HardSigmoid,
        LayerSpec::HardSwish => Step::HardSwish,
        LayerSpec::MaxPool2d {
            kernel,
            stride,
            padding,
            ceil_mode,
        } => Step::Pool {
            k: kernel,
            stride: stride.unwrap_or(kernel),
            pad: padding,
            ceil: ceil_mode,
        },
        LayerSpec::AvgPool2d { kernel, stride } => Step::AvgPool {
            k: kernel,
            stride: stride.unwrap_or(kernel),
        },
        LayerSpec::GlobalAvgPool => Step::GlobalAvgPool,
        LayerSpec::Flatten => Step::Flatten,
        LayerSpec::Linear { .. } => {
            *param += 2;
            Step::Linear { param: *param - 2 }
        }
        LayerSpec::Affine { .. } => {
            *param += 2;
            Step::Affine { param: *param - 2 }
        }
        LayerSpec::Residual {
            ref body,
            ref shortcut,
        } => {
            steps.push(Step::Fork);
            for b in body {
                plan_layer(b, param, steps);
            }
            steps.push(Step::Shortcut);
            for b in shortcut {
                plan_layer(b, param, steps);
            }
            Step::Join
        }
        LayerSpec::Gate { ref body } => {
            steps.push(Step::Fork);
            for b in body {
                plan_layer(b, param, steps);
            }
            Step::Scale
        }
        LayerSpec::Concat { ref branches } => {
            steps.push(Step::Fork);
            for (i, branch) in branches.iter().enumerate() {
                if i > 0 {
                    steps.push(Step::NextBranch);
                }
                for b in branch {
                    plan_layer(b, param, steps);
                }
            }
            Step::Cat {
                branches: branches.len(),
            }
        }
    };
    steps.push(step);
}

/// An activation: an image batch (`N × C × H × W`) or a batch of vectors.
enum Act<F: Backend> {
    Img(Tensor<F, 4>),
    Flat(Tensor<F, 2>),
}

/// The network of `steps` of `model`'s architecture with parameters `params` (PyTorch layout,
/// flat, shaped as `model.param_infos()` says) on inputs `x` (`N × H·W·C`, Warden's channels-last
/// input layout); the logits.
///
/// With `exact`, every product is an f32 one. burn 0.21's CUDA matrix product runs f32 operands
/// through TF32 tensor cores (10-bit mantissas), where its convolutions (direct kernels, in the
/// build `warden-burn` makes) multiply in f32. TF32 is the usual choice for training, and
/// training takes it; an evaluation must not, since its verdicts (the clean prediction, whether
/// a claimed adversarial example is one) would then be those of a different model near the
/// decision boundary. So with `exact` a linear layer runs as a 1 × 1 convolution of a 1 × 1
/// image: the same sums, in f32 (`docs/results/gpu-imported/`).
fn forward<F: Backend>(
    model: &Model,
    steps: &[Step],
    params: &[Tensor<F, 1>],
    x: Tensor<F, 2>,
    exact: bool,
) -> Result<Tensor<F, 2>, BurnError> {
    let n = x.dims()[0];
    let [c, h, w] = model.arch().input;
    let shapes = model.param_infos();
    // Warden's inputs are channels-last (`N × H × W × C`), like its activations.
    let mut a = Act::Img(x.reshape([n, h, w, c]).permute([0, 3, 1, 2]));
    let shape4 = |i: usize| -> Result<[usize; 4], BurnError> {
        <[usize; 4]>::try_from(shapes[i].torch_shape.as_slice())
            .map_err(|_| BurnError::Arch(format!("parameter {i}: not a 4-D weight")))
    };
    let shape2 = |i: usize| -> Result<[usize; 2], BurnError> {
        <[usize; 2]>::try_from(shapes[i].torch_shape.as_slice())
            .map_err(|_| BurnError::Arch(format!("parameter {i}: not a 2-D weight")))
    };
    // Residual blocks' kept values: the block's input, then the body's output.
    let mut kept: Vec<Tensor<F, 4>> = Vec::new();
    let unbalanced = || BurnError::Arch("a residual block's steps out of order".into());
    for s in steps {
        a = match (*s, a) {
            (Step::Fork, Act::Img(t)) => {
                kept.push(t.clone());
                Act::Img(t)
            }
            (Step::Shortcut, Act::Img(t)) => {
                let input = kept.pop().ok_or_else(unbalanced)?;
                kept.push(t);
                Act::Img(input)
            }
            (Step::Join, Act::Img(t)) => Act::Img(kept.pop().ok_or_else(unbalanced)? + t),
            // A 1 × 1 factor image broadcasts over the positions.
            (Step::Scale, Act::Img(t)) => Act::Img(kept.pop().ok_or_else(unbalanced)? * t),
            (Step::NextBranch, Act::Img(t)) => {
                let input = kept.pop().ok_or_else(unbalanced)?;
                kept.push(t);
                kept.push(input.clone());
                Act::Img(input)
            }
            (Step::Cat { branches }, Act::Img(t)) => {
                kept.pop().ok_or_else(unbalanced)?;
                let from = kept
                    .len()
                    .checked_sub(branches - 1)
                    .ok_or_else(unbalanced)?;
                let mut parts: Vec<Tensor<F, 4>> = kept.drain(from..).collect();
                parts.push(t);
                Act::Img(Tensor::cat(parts, 1))
            }
            (
                Step::Fork
                | Step::Shortcut
                | Step::Join
                | Step::Scale
                | Step::NextBranch
                | Step::Cat { .. },
                Act::Flat(_),
            ) => {
                return Err(BurnError::Arch("a residual block after flattening".into()));
            }
            (
                Step::Conv {
                    param,
                    stride,
                    pad,
                    groups,
                },
                Act::Img(t),
            ) => {
                let wt = params[param].clone().reshape(shape4(param)?);
                let b = params[param + 1].clone();
                let pointwise = wt.dims()[2] == 1 && wt.dims()[3] == 1 && pad == 0;
                // burn 0.21's CUDA backend gives a strided 1 × 1 convolution (a ResNet's
                // downsampling shortcut) wrong input gradients (`docs/results/gpu-imported/`):
                // such a layer runs as the subsampling it is, then an unstrided one.
                let (t, stride) = if pointwise && stride > 1 {
                    (subsample(t, stride), 1)
                } else {
                    (t, stride)
                };
                Act::Img(module::conv2d(
                    t,
                    wt,
                    Some(b),
                    ConvOptions::new([stride, stride], [pad, pad], [1, 1], groups),
                ))
            }
            (
                Step::Pool {
                    k,
                    stride,
                    pad,
                    ceil,
                },
                Act::Img(t),
            ) => Act::Img(module::max_pool2d(
                t,
                [k, k],
                [stride, stride],
                [pad, pad],
                [1, 1],
                ceil,
            )),
            (Step::AvgPool { k, stride }, Act::Img(t)) => Act::Img(module::avg_pool2d(
                t,
                [k, k],
                [stride, stride],
                [0, 0],
                false,
                false,
            )),
            (Step::GlobalAvgPool, Act::Img(t)) => Act::Img(module::adaptive_avg_pool2d(t, [1, 1])),
            (
                Step::Conv { .. } | Step::Pool { .. } | Step::AvgPool { .. } | Step::GlobalAvgPool,
                Act::Flat(_),
            ) => {
                return Err(BurnError::Arch(
                    "a convolution or pooling after flattening".into(),
                ));
            }
            (Step::Relu, Act::Img(t)) => Act::Img(activation::relu(t)),
            (Step::Relu, Act::Flat(t)) => Act::Flat(activation::relu(t)),
            // clamp's gradient is ReLU6's except exactly at 0 and 6 (clamp passes it there).
            (Step::Relu6, Act::Img(t)) => Act::Img(t.clamp(0.0, 6.0)),
            (Step::Relu6, Act::Flat(t)) => Act::Flat(t.clamp(0.0, 6.0)),
            (Step::Tanh, Act::Img(t)) => Act::Img(activation::tanh(t)),
            (Step::Tanh, Act::Flat(t)) => Act::Flat(activation::tanh(t)),
            (Step::Elu, Act::Img(t)) => Act::Img(activation::elu(t, 1.0)),
            (Step::Elu, Act::Flat(t)) => Act::Flat(activation::elu(t, 1.0)),
            (Step::Silu, Act::Img(t)) => Act::Img(activation::silu(t)),
            (Step::Silu, Act::Flat(t)) => Act::Flat(activation::silu(t)),
            (Step::Sigmoid, Act::Img(t)) => Act::Img(activation::sigmoid(t)),
            (Step::Sigmoid, Act::Flat(t)) => Act::Flat(activation::sigmoid(t)),
            (Step::HardSigmoid, Act::Img(t)) => {
                Act::Img(activation::hard_sigmoid(t, 1.0 / 6.0, 0.5))
            }
            (Step::HardSigmoid, Act::Flat(t)) => {
                Act::Flat(activation::hard_sigmoid(t, 1.0 / 6.0, 0.5))
            }
            (Step::HardSwish, Act::Img(t)) => Act::Img(activation::hard_swish(t)),
            (Step::HardSwish, Act::Flat(t)) => Act::Flat(activation::hard_swish(t)),
            (Step::Affine { param }, Act::Img(t)) => {
                let c = t.dims()[1];
                let w: Tensor<F, 4> = params[param].clone().reshape([1, c, 1, 1]);
                let b: Tensor<F, 4> = params[param + 1].clone().reshape([1, c, 1, 1]);
                Act::Img(t * w + b)
            }
            (Step::Affine { param }, Act::Flat(t)) => {
                let w = params[param].clone().unsqueeze_dim::<2>(0);
                let b = params[param + 1].clone().unsqueeze_dim::<2>(0);
                Act::Flat(t * w + b)
            }
            (Step::Flatten, Act::Img(t)) => Act::Flat(t.flatten(1, 3)),
            (Step::Flatten, f @ Act::Flat(_)) => f,
            (Step::Linear { param }, a) => {
                let t = match a {
                    Act::Img(t) => t.flatten(1, 3),
                    Act::Flat(t) => t,
                };
                let [out, inf] = shape2(param)?;
                if exact {
                    let n = t.dims()[0];
                    let wt: Tensor<F, 4> = params[param].clone().reshape([out, inf, 1, 1]);
                    let b = params[param + 1].clone();
                    let one = ConvOptions::new([1, 1], [0, 0], [1, 1], 1);
                    let y = module::conv2d(t.reshape([n, inf, 1, 1]), wt, Some(b), one);
                    Act::Flat(y.reshape([n, out]))
                } else {
                    let wt: Tensor<F, 2> = params[param].clone().reshape([out, inf]);
                    let b = params[param + 1].clone().unsqueeze_dim::<2>(0);
                    Act::Flat(t.matmul(wt.transpose()) + b)
                }
            }
        };
    }
    match a {
        Act::Flat(t) => Ok(t),
        Act::Img(t) => Ok(t.flatten(1, 3)),
    }
}

/// Every `s`-th row and column of `t` from the first (`N × C × ⌈H/s⌉ × ⌈W/s⌉`): what a 1 × 1
/// convolution of stride `s` reads. The image is padded with zeros to whole `s × s` blocks, none
/// of which is read, and the first entry of each block is taken, with reshapes and one unstrided
/// slice, whose gradients every backend computes alike.
fn subsample<F: Backend>(t: Tensor<F, 4>, s: usize) -> Tensor<F, 4> {
    let [n, c, h, w] = t.dims();
    let (oh, ow) = (h.div_ceil(s), w.div_ceil(s));
    let t = if oh * s == h && ow * s == w {
        t
    } else {
        t.pad([(0, oh * s - h), (0, ow * s - w)], PadMode::Constant(0.0))
    };
    t.reshape([n, c, oh, s, ow, s])
        .slice([0..n, 0..c, 0..oh, 0..1, 0..ow, 0..1])
        .reshape([n, c, oh, ow])
}

/// `model`'s parameters on `device`, flat, in PyTorch's layout (burn's own).
fn upload_params<F: Backend>(model: &Model, device: &F::Device) -> Vec<Tensor<F, 1>> {
    weights::torch_layout(model)
        .into_iter()
        .map(|p| {
            let n = p.len();
            Tensor::from_data(TensorData::new(p, [n]), device)
        })
        .collect()
}

/// Cross-entropy of `logits` against `y`, summed over the batch.
fn xent_sum<F: Backend>(logits: Tensor<F, 2>, y: Tensor<F, 1, Int>) -> Tensor<F, 1> {
    let lp = activation::log_softmax(logits, 1);
    lp.gather(1, y.unsqueeze_dim(1)).sum().neg()
}

/// The gradients of `loss` with respect to the tracked parameters `ps`.
fn weight_grads<B: AutodiffBackend>(
    ps: &[Tensor<B, 1>],
    loss: Tensor<B, 1>,
) -> Result<Vec<Tensor<B::InnerBackend, 1>>, BurnError> {
    let g = loss.backward();
    ps.iter()
        .map(|p| {
            p.grad(&g)
                .ok_or_else(|| BurnError::Input("a parameter received no gradient".into()))
        })
        .collect()
}

/// Examples whose largest logit is their label's (ties go to the first class, as the CPU engine's
/// argmax does).
fn correct<F: Backend>(logits: Tensor<F, 2>, y: Tensor<F, 1, Int>) -> usize {
    let pred: Tensor<F, 1, Int> = logits.argmax(1).squeeze_dim(1);
    let v: i64 = pred.equal(y).int().sum().into_scalar().elem();
    usize::try_from(v).unwrap_or(0)
}

/// The ball of an attack around `x` (one row per example), cut to the input bounds: where its
/// points may go.
enum Ball<F: Backend> {
    /// Per coordinate, the L∞ ball's edges inside the bounds.
    Linf {
        lo: Tensor<F, 2>,
        hi: Tensor<F, 2>,
        step: f32,
    },
    L2 {
        x: Tensor<F, 2>,
        eps: f32,
        step: f32,
        lo: f32,
        hi: f32,
    },
}

/// Each row's L2 length, as an `n × 1` column.
fn row_norms<F: Backend>(t: Tensor<F, 2>) -> Tensor<F, 2> {
    t.powf_scalar(2.0).sum_dim(1).sqrt()
}

impl<F: Backend> Ball<F> {
    fn around(x: &Tensor<F, 2>, a: &Pgd) -> Ball<F> {
        match a.norm {
            Norm::Linf => Ball::Linf {
                lo: x.clone().sub_scalar(a.eps).clamp_min(a.lo),
                hi: x.clone().add_scalar(a.eps).clamp_max(a.hi),
                step: a.step,
            },
            Norm::L2 => Ball::L2 {
                x: x.clone(),
                eps: a.eps,
                step: a.step,
                lo: a.lo,
                hi: a.hi,
            },
        }
    }

    /// One step along `g`, projected back on the ball, as the CPU engine's `step_project`: under
    /// L∞ a signed step, under L2 a step of length `step` along `g` (none where `g` is zero),
    /// then the perturbation shrunk to length `eps` where longer, then the bounds.
    fn step(&self, adv: Tensor<F, 2>, g: Tensor<F, 2>) -> Tensor<F, 2> {
        match self {
            Ball::Linf { lo, hi, step } => (adv + g.sign().mul_scalar(*step))
                .max_pair(lo.clone())
                .min_pair(hi.clone()),
            Ball::L2 {
                x,
                eps,
                step,
                lo,
                hi,
            } => {
                // The direction g/|g| is taken from g scaled by its largest entry, so that
                // squaring neither underflows (entries below about 1e-19 would square to zero in
                // f32, where the CPU engine sums in f64) nor overflows. A zero gradient stays
                // zero: no move, as on the CPU.
                let top = g.clone().abs().max_dim(1).clamp_min(f32::MIN_POSITIVE);
                let g = g.div(top);
                let gn = row_norms(g.clone()).clamp_min(1e-30);
                let moved = adv + g.div(gn).mul_scalar(*step);
                let delta = moved - x.clone();
                let shrink = row_norms(delta.clone())
                    .clamp_min(1e-30)
                    .recip()
                    .mul_scalar(*eps)
                    .clamp_max(1.0);
                (x.clone() + delta.mul(shrink)).clamp(*lo, *hi)
            }
        }
    }
}

/// A training set on the device: images as `N × H·W·C` floats (Warden's input layout), labels as
/// integers.
#[derive(Debug, Clone)]
pub struct DeviceData<B: Backend> {
    x: Tensor<B, 2>,
    y: Tensor<B, 1, Int>,
}

impl<B: Backend> DeviceData<B> {
    /// Uploads `n = y.len()` examples of `len` values each.
    pub fn new(x: &[f32], y: &[u8], len: usize, device: &B::Device) -> Result<Self, BurnError> {
        if len == 0 || x.len() != y.len() * len || y.is_empty() {
            return Err(BurnError::Input(format!(
                "{} values for {} examples of {len}",
                x.len(),
                y.len()
            )));
        }
        let n = y.len();
        let xt = Tensor::from_data(TensorData::new(x.to_vec(), [n, len]), device);
        let labels: Vec<i64> = y.iter().map(|&v| i64::from(v)).collect();
        let yt = Tensor::from_data(TensorData::new(labels, [n]), device);
        Ok(DeviceData { x: xt, y: yt })
    }

    pub fn len(&self) -> usize {
        self.y.dims()[0]
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The examples at `idx`, in that order.
    fn batch(&self, idx: &[usize], device: &B::Device) -> (Tensor<B, 2>, Tensor<B, 1, Int>) {
        let ids: Vec<i64> = idx.iter().map(|&i| i as i64).collect();
        let ids: Tensor<B, 1, Int> = Tensor::from_data(TensorData::new(ids, [idx.len()]), device);
        (
            self.x.clone().select(0, ids.clone()),
            self.y.clone().select(0, ids),
        )
    }
}

/// A model and its optimiser state on a burn backend `B` (an autodiff backend); the parameters
/// and the state live on `B`'s inner backend, outside any graph.
#[derive(Debug)]
pub struct Engine<B: AutodiffBackend> {
    steps: Vec<Step>,
    /// The architecture and parameter shapes; its weights are not used.
    template: Model,
    params: Vec<Tensor<B::InnerBackend, 1>>,
    m: Vec<Tensor<B::InnerBackend, 1>>,
    v: Vec<Tensor<B::InnerBackend, 1>>,
    ema: Option<(f32, Vec<Tensor<B::InnerBackend, 1>>)>,
    /// Adversarial weight perturbation's relative size, when on.
    awp: Option<f32>,
    /// The transformations of every training batch.
    augment: Augment,
    spec: OptimSpec,
    base_lr: f32,
    t: u64,
    device: B::Device,
}

type Inner<B> = <B as AutodiffBackend>::InnerBackend;

impl<B: AutodiffBackend> Engine<B> {
    /// Moves `model`'s parameters to `device` with a fresh optimiser state.
    pub fn new(model: &Model, optim: OptimSpec, device: B::Device) -> Result<Self, BurnError> {
        optim.validate().map_err(BurnError::Input)?;
        let params: Vec<Tensor<Inner<B>, 1>> = upload_params(model, &device);
        let zeros = || -> Vec<Tensor<Inner<B>, 1>> {
            params
                .iter()
                .map(|p| Tensor::zeros(p.dims(), &device))
                .collect()
        };
        let v = if matches!(optim, OptimSpec::Adam { .. }) {
            zeros()
        } else {
            Vec::new()
        };
        Ok(Engine {
            steps: plan(model.arch()),
            template: model.clone(),
            m: zeros(),
            v,
            params,
            ema: None,
            awp: None,
            augment: Augment::default(),
            spec: optim,
            base_lr: optim.lr(),
            t: 0,
            device,
        })
    }

    pub fn device(&self) -> &B::Device {
        &self.device
    }

    /// Keeps an exponential moving average of the weights with decay `min(decay, (1+t)/(10+t))`
    /// after step t, as the CPU engine's `Trainer::enable_ema`.
    pub fn enable_ema(&mut self, decay: f32) {
        self.ema = Some((decay, self.params.clone()));
    }

    /// Adversarial weight perturbation of relative size `gamma` on adversarial steps, as the CPU
    /// engine's `Trainer::enable_awp`.
    pub fn enable_awp(&mut self, gamma: f32) {
        self.awp = Some(gamma);
    }

    /// Augments every training batch of [`Engine::epoch`] with `augment`, drawing exactly what the
    /// CPU engine's `Trainer::set_augment` draws; refused when the shift does not fit the input.
    pub fn set_augment(&mut self, augment: Augment) -> Result<(), BurnError> {
        augment
            .validate(self.template.arch().input)
            .map_err(BurnError::Input)?;
        self.augment = augment;
        Ok(())
    }

    /// `x` (a batch in Warden's input layout) through the augmentation plan drawn from `seed`:
    /// the plan is uploaded as gather indices into each row with a zero appended.
    fn augmented(&self, x: Tensor<Inner<B>, 2>, seed: u64) -> Tensor<Inner<B>, 2> {
        if self.augment.is_identity() {
            return x;
        }
        let [n, len] = x.dims();
        let plan: Vec<i64> = self
            .augment
            .plan(n, self.template.arch().input, seed)
            .into_iter()
            .map(i64::from)
            .collect();
        let idx: Tensor<Inner<B>, 2, Int> =
            Tensor::from_data(TensorData::new(plan, [n, len]), &self.device);
        let padded = Tensor::cat(vec![x, Tensor::zeros([n, 1], &self.device)], 1);
        padded.gather(1, idx)
    }

    /// Sets the learning rate to `factor` times the base rate.
    pub fn set_lr_factor(&mut self, factor: f32) {
        self.spec.set_lr(self.base_lr * factor);
    }

    /// The weights at `γ‖w‖ g/‖g‖` from the current ones, for every tensor of more than one
    /// dimension (biases stay), as leaves of a new tracked graph. The norms stay on the device
    /// (no read-back per tensor): where `‖g‖` is 0 or not finite the move is 0 (the NaNs that
    /// `0·∞` and `∞·0` give are zeroed), as the CPU engine leaves such a tensor alone.
    fn perturbed_params(&self, grads: &[Tensor<Inner<B>, 1>], gamma: f32) -> Vec<Tensor<B, 1>> {
        // ‖t‖ = m·‖t/m‖ with m = max|t|: squares of f32 entries overflow from about 1.8e19 and
        // vanish below 1e-23, where the CPU engine's f64 sum does not. m = 0 gives NaN (0/0),
        // which leaves the weight where it is, as a zero gradient should.
        let norm = |t: &Tensor<Inner<B>, 1>| {
            let m = t.clone().abs().max();
            t.clone()
                .div(m.clone())
                .powf_scalar(2.0)
                .sum()
                .sqrt()
                .mul(m)
        };
        self.params
            .iter()
            .zip(grads)
            .zip(self.template.param_infos())
            .map(|((p, g), info)| {
                let p = if info.is_weight() {
                    let k = norm(p).mul_scalar(gamma).div(norm(g));
                    let step = g.clone().mul(k);
                    let step = step.clone().mask_fill(step.is_nan(), 0.0);
                    p.clone() + step
                } else {
                    p.clone()
                };
                Tensor::<B, 1>::from_inner(p).require_grad()
            })
            .collect()
    }

    fn logits<F: Backend>(
        &self,
        params: &[Tensor<F, 1>],
        x: Tensor<F, 2>,
    ) -> Result<Tensor<F, 2>, BurnError> {
        forward(&self.template, &self.steps, params, x, false)
    }

    /// The parameters as leaves of a new graph: tracked (for weight gradients) or not.
    fn graph_params(&self, tracked: bool) -> Vec<Tensor<B, 1>> {
        self.params
            .iter()
            .map(|p| {
                let t = Tensor::<B, 1>::from_inner(p.clone());
                if tracked { t.require_grad() } else { t }
            })
            .collect()
    }

    /// Logits of `x` on the inner backend (no graph).
    pub fn predict_logits(&self, x: Tensor<Inner<B>, 2>) -> Result<Tensor<Inner<B>, 2>, BurnError> {
        self.logits(&self.params, x)
    }

    /// The gradient of the summed cross-entropy with respect to the input only.
    pub fn input_grad(
        &self,
        x: Tensor<Inner<B>, 2>,
        y: Tensor<Inner<B>, 1, Int>,
    ) -> Result<Tensor<Inner<B>, 2>, BurnError> {
        let ps = self.graph_params(false);
        let xa = Tensor::<B, 2>::from_inner(x).require_grad();
        let loss = xent_sum(self.logits(&ps, xa.clone())?, Tensor::from_inner(y));
        let g = loss.backward();
        xa.grad(&g)
            .ok_or_else(|| BurnError::Input("no gradient reached the input".into()))
    }

    /// PGD against the current weights, as the CPU engine's training attack: a uniform start in
    /// the ball when `a.random_start`, `a.steps` steps of `a.step` (signed under L∞, along the
    /// normalised gradient under L2), each projected on the ball and the input bounds; the last
    /// iterate.
    pub fn pgd(
        &self,
        x: Tensor<Inner<B>, 2>,
        y: Tensor<Inner<B>, 1, Int>,
        a: &Pgd,
    ) -> Result<Tensor<Inner<B>, 2>, BurnError> {
        if a.goal != Goal::Untargeted {
            return Err(BurnError::Unsupported(
                "training attacks are untargeted".into(),
            ));
        }
        let ball = Ball::around(&x, a);
        let mut adv = if a.random_start {
            let noise = match a.norm {
                Norm::Linf => Tensor::random(
                    x.dims(),
                    Distribution::Uniform(-f64::from(a.eps), f64::from(a.eps)),
                    &self.device,
                ),
                Norm::L2 => {
                    // A uniform point of the L2 ball: a Gaussian direction, radius eps·u^(1/d).
                    let [n, d] = x.dims();
                    let dir = Tensor::random([n, d], Distribution::Normal(0.0, 1.0), &self.device);
                    let u = Tensor::random([n, 1], Distribution::Uniform(0.0, 1.0), &self.device);
                    let radius = u.powf_scalar(1.0 / d as f32).mul_scalar(a.eps);
                    let length = row_norms(dir.clone()).clamp_min(1e-30);
                    dir.div(length).mul(radius)
                }
            };
            (x + noise).clamp(a.lo, a.hi)
        } else {
            x
        };
        for _ in 0..a.steps {
            let g = self.input_grad(adv.clone(), y.clone())?;
            adv = ball.step(adv, g);
        }
        Ok(adv)
    }

    /// The TRADES attack: maximise KL(p‖q) between the clean prediction p (fixed) and the
    /// adversarial one q, from `x` plus Gaussian noise of σ 0.001.
    fn trades_attack(
        &self,
        x: Tensor<Inner<B>, 2>,
        p: Tensor<Inner<B>, 2>,
        a: &Pgd,
    ) -> Result<Tensor<Inner<B>, 2>, BurnError> {
        let ball = Ball::around(&x, a);
        let noise = Tensor::random(x.dims(), Distribution::Normal(0.0, 0.001), &self.device);
        let mut adv = (x + noise).clamp(a.lo, a.hi);
        let ps = self.graph_params(false);
        let p = Tensor::<B, 2>::from_inner(p);
        for _ in 0..a.steps {
            let xa = Tensor::<B, 2>::from_inner(adv.clone()).require_grad();
            let logq = activation::log_softmax(self.logits(&ps, xa.clone())?, 1);
            // Σ p (log p − log q): only −Σ p log q depends on the input.
            let loss = (p.clone() * logq).sum().neg();
            let g = loss.backward();
            let gx = xa
                .grad(&g)
                .ok_or_else(|| BurnError::Input("no gradient reached the input".into()))?;
            adv = ball.step(adv, gx);
        }
        Ok(adv)
    }

    /// One optimisation step on a batch towards `objective`.
    pub fn step(
        &mut self,
        x: Tensor<Inner<B>, 2>,
        y: Tensor<Inner<B>, 1, Int>,
        objective: &Objective,
    ) -> Result<Stats, BurnError> {
        let n = y.dims()[0];
        if n == 0 || x.dims()[0] != n {
            return Err(BurnError::Input("an empty or ragged batch".into()));
        }
        let scale = 1.0 / n as f32;
        let ps = self.graph_params(true);
        let yb = Tensor::<B, 1, Int>::from_inner(y.clone());
        let mut awp_input = None;
        let (loss, hits) = match objective {
            Objective::Clean | Objective::Adversarial(_) => {
                let input = match objective {
                    Objective::Adversarial(a) => self.pgd(x, y.clone(), a)?,
                    _ => x,
                };
                if self.awp.is_some() && matches!(objective, Objective::Adversarial(_)) {
                    awp_input = Some((input.clone(), yb.clone()));
                }
                let logits = self.logits(&ps, Tensor::from_inner(input))?;
                let hits = correct(logits.clone().inner(), y);
                (xent_sum(logits, yb).mul_scalar(scale), hits)
            }
            Objective::Trades { attack, beta } => {
                // The clean pass once: tracked for the loss, its values fixed for the attack.
                let lc = self.logits(&ps, Tensor::from_inner(x.clone()))?;
                let p = activation::softmax(lc.clone().inner(), 1);
                let adv = self.trades_attack(x, p, attack)?;
                let la = self.logits(&ps, Tensor::from_inner(adv))?;
                let hits = correct(lc.clone().inner(), y);
                let logp = activation::log_softmax(lc.clone(), 1);
                let logq = activation::log_softmax(la, 1);
                let kl = (activation::softmax(lc.clone(), 1) * (logp - logq)).sum();
                let ce = xent_sum(lc, yb);
                ((ce + kl.mul_scalar(*beta)).mul_scalar(scale), hits)
            }
        };
        let loss_value: f32 = loss.clone().into_scalar().elem();
        if !loss_value.is_finite() {
            return Err(BurnError::Input(
                "the loss is not finite (learning rate too high?)".into(),
            ));
        }
        let mut grads = weight_grads(&ps, loss)?;
        if let (Some(gamma), Some((input, yb))) = (self.awp, awp_input) {
            // AWP: the gradient again at the worst nearby weights, on the same points, applied
            // to the unperturbed weights (which were never changed).
            let pw = self.perturbed_params(&grads, gamma);
            let logits = self.logits(&pw, Tensor::from_inner(input))?;
            grads = weight_grads(&pw, xent_sum(logits, yb).mul_scalar(scale))?;
        }
        self.apply(grads);
        Ok(Stats {
            examples: n,
            loss: f64::from(loss_value),
            accuracy: hits as f64 / n as f64,
        })
    }

    /// One update with PyTorch's rules (as `warden_harden::optim::Optimizer::step`).
    fn apply(&mut self, grads: Vec<Tensor<Inner<B>, 1>>) {
        self.t += 1;
        match self.spec {
            OptimSpec::Adam {
                lr,
                beta1,
                beta2,
                eps,
                weight_decay,
            } => {
                let t = self.t as i32;
                let bc1 = 1.0 - beta1.powi(t);
                let bc2_sqrt = (1.0 - beta2.powi(t)).sqrt();
                let step_size = lr / bc1;
                for (i, g) in grads.into_iter().enumerate() {
                    let p = self.params[i].clone();
                    let g = if weight_decay > 0.0 {
                        g + p.clone().mul_scalar(weight_decay)
                    } else {
                        g
                    };
                    let m = self.m[i].clone().mul_scalar(beta1) + g.clone().mul_scalar(1.0 - beta1);
                    let v = self.v[i].clone().mul_scalar(beta2)
                        + (g.clone() * g).mul_scalar(1.0 - beta2);
                    let denom = v.clone().sqrt().div_scalar(bc2_sqrt).add_scalar(eps);
                    self.params[i] = p - (m.clone() / denom).mul_scalar(step_size);
                    self.m[i] = m;
                    self.v[i] = v;
                }
            }
            OptimSpec::Sgd {
                lr,
                momentum,
                weight_decay,
            } => {
                let first = self.t == 1;
                for (i, g) in grads.into_iter().enumerate() {
                    let p = self.params[i].clone();
                    let mut d = if weight_decay > 0.0 {
                        g + p.clone().mul_scalar(weight_decay)
                    } else {
                        g
                    };
                    if momentum > 0.0 {
                        let m = if first {
                            d
                        } else {
                            self.m[i].clone().mul_scalar(momentum) + d
                        };
                        self.m[i] = m.clone();
                        d = m;
                    }
                    self.params[i] = p - d.mul_scalar(lr);
                }
            }
        }
        if let Some((decay, avg)) = &mut self.ema {
            let t = self.t as f32;
            let d = decay.min((1.0 + t) / (10.0 + t));
            for (a, p) in avg.iter_mut().zip(&self.params) {
                *a = a.clone().mul_scalar(d) + p.clone().mul_scalar(1.0 - d);
            }
        }
    }

    /// One pass over `idx` (indices into `data`) in batches, shuffled with `seed` exactly as the
    /// CPU engine shuffles; `lr(b)` gives the learning-rate factor of batch b and
    /// `on_batch(done, total, stats)` is called after each (returning false interrupts).
    #[allow(clippy::too_many_arguments)]
    pub fn epoch(
        &mut self,
        data: &DeviceData<Inner<B>>,
        idx: &[usize],
        batch: usize,
        objective: &Objective,
        lr: &mut dyn FnMut(usize) -> f32,
        seed: u64,
        on_batch: &mut dyn FnMut(usize, usize, Stats) -> bool,
    ) -> Result<Stats, BurnError> {
        if batch == 0 {
            return Err(BurnError::Input("batch 0".into()));
        }
        if let Some(&bad) = idx.iter().find(|&&i| i >= data.len()) {
            return Err(BurnError::Input(format!(
                "index {bad} outside {} examples",
                data.len()
            )));
        }
        let order = epoch_order(idx, seed);
        <Inner<B> as Backend>::seed(&self.device, seed);
        let batches = order.len().div_ceil(batch);
        let mut total = EpochTotals::default();
        for (b, chunk) in order.chunks(batch).enumerate() {
            let (bx, by) = data.batch(chunk, &self.device);
            let bx = self.augmented(bx, augment_seed(seed, b));
            self.set_lr_factor(lr(b));
            let s = self.step(bx, by, objective)?;
            total.add(&s);
            if !on_batch(b + 1, batches, s) {
                return Err(BurnError::Input("interrupted".into()));
            }
        }
        Ok(total.mean())
    }

    fn to_model(&self, params: &[Tensor<Inner<B>, 1>]) -> Result<Model, BurnError> {
        let host = params
            .iter()
            .map(|p| {
                p.clone()
                    .into_data()
                    .into_vec::<f32>()
                    .map_err(|e| BurnError::Device(format!("reading parameters back: {e:?}")))
            })
            .collect::<Result<Vec<_>, _>>()?;
        let mut m = self.template.clone();
        weights::set_torch_layout(&mut m, &host).map_err(|e| BurnError::Input(e.to_string()))?;
        Ok(m)
    }

    /// The current iterate as a CPU-engine model.
    pub fn model(&self) -> Result<Model, BurnError> {
        self.to_model(&self.params)
    }

    /// What a run releases: the weight average when enabled, otherwise the iterate.
    pub fn release(&self) -> Result<Model, BurnError> {
        match &self.ema {
            Some((_, avg)) => self.to_model(avg),
            None => self.model(),
        }
    }

    /// Accuracy on `x`/`y` (clean, or under `attack` with its random start from the backend's
    /// generator, the last iterate counting), in chunks of `chunk` examples.
    pub fn accuracy(
        &self,
        data: &DeviceData<Inner<B>>,
        attack: Option<&Pgd>,
        chunk: usize,
    ) -> Result<f64, BurnError> {
        let idx: Vec<usize> = (0..data.len()).collect();
        let mut hits = 0;
        for c in idx.chunks(chunk.max(1)) {
            let (x, y) = data.batch(c, &self.device);
            let x = match attack {
                Some(a) => self.pgd(x, y.clone(), a)?,
                None => x,
            };
            hits += correct(self.predict_logits(x)?, y);
        }
        Ok(hits as f64 / data.len().max(1) as f64)
    }
}

/// The training session behind `warden harden train --device …`: an [`Engine`] and the training
/// set on one device, whichever backend it is.
#[derive(Debug)]
pub struct Session {
    inner: SessionInner,
}

type FlexAd = Autodiff<Flex>;
#[cfg(feature = "cuda")]
type CudaAd = Autodiff<burn::backend::Cuda>;

#[derive(Debug)]
enum SessionInner {
    Flex(Box<(Engine<FlexAd>, DeviceData<Flex>)>),
    #[cfg(feature = "cuda")]
    Cuda(Box<(Engine<CudaAd>, DeviceData<burn::backend::Cuda>)>),
}

/// Runs `f`, turning a panic (here or in a thread it waits on) into the first panic's message,
/// without printing it. The panic hook is process-wide: meant for device start-up, while nothing
/// else runs.
#[cfg(feature = "cuda")]
fn without_panics<T>(f: impl FnOnce() -> T) -> Result<T, String> {
    use std::sync::{Arc, Mutex};
    let first: Arc<Mutex<Option<String>>> = Arc::default();
    let previous = std::panic::take_hook();
    let seen = Arc::clone(&first);
    std::panic::set_hook(Box::new(move |info| {
        let payload = info.payload();
        let msg = payload
            .downcast_ref::<&str>()
            .map(|s| s.to_string())
            .or_else(|| payload.downcast_ref::<String>().cloned())
            .unwrap_or_else(|| "a panic".into());
        if let Ok(mut m) = seen.lock() {
            m.get_or_insert(msg);
        }
    }));
    let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(f));
    std::panic::set_hook(previous);
    r.map_err(|_| {
        let msg = first.lock().ok().and_then(|m| m.clone());
        let mut msg = msg.unwrap_or_else(|| "a panic".into());
        if let Some((cut, _)) = msg.char_indices().nth(300) {
            msg.truncate(cut);
            msg.push('…');
        }
        msg
    })
}

/// Runs `f` on CUDA device `i`. The first upload starts the CUDA runtime, which panics (in a
/// worker thread and then here) when there is no driver or no such GPU: turned into an error.
#[cfg(feature = "cuda")]
fn start_cuda<T>(
    i: usize,
    f: impl FnOnce(burn::backend::cuda::CudaDevice) -> Result<T, BurnError>,
) -> Result<T, BurnError> {
    without_panics(|| f(burn::backend::cuda::CudaDevice::new(i))).map_err(|why| {
        BurnError::Device(format!(
            "cuda:{i} could not be started (is there an NVIDIA driver and GPU {i}?): {why}"
        ))
    })?
}

macro_rules! dispatch {
    (ref $s:expr, $e:ident, $d:ident => $body:expr) => {
        match $s {
            SessionInner::Flex(b) => {
                let (ref $e, ref $d) = **b;
                $body
            }
            #[cfg(feature = "cuda")]
            SessionInner::Cuda(b) => {
                let (ref $e, ref $d) = **b;
                $body
            }
        }
    };
    ($s:expr, $e:ident, $d:ident => $body:expr) => {
        match $s {
            SessionInner::Flex(b) => {
                let (ref mut $e, ref mut $d) = **b;
                $body
            }
            #[cfg(feature = "cuda")]
            SessionInner::Cuda(b) => {
                let (ref mut $e, ref mut $d) = **b;
                $body
            }
        }
    };
}

impl Session {
    /// Puts `model` (with a fresh `optim` state) and the training set (`y.len()` examples of the
    /// model's input size) on `device`.
    pub fn new(
        device: Device,
        model: &Model,
        optim: OptimSpec,
        x: &[f32],
        y: &[u8],
    ) -> Result<Session, BurnError> {
        let len = model.input_len();
        let inner = match device {
            Device::Flex => {
                let dev = Default::default();
                let data = DeviceData::new(x, y, len, &dev)?;
                SessionInner::Flex(Box::new((Engine::new(model, optim, dev)?, data)))
            }
            #[cfg(feature = "cuda")]
            Device::Cuda(i) => {
                let started = start_cuda(i, |dev| {
                    let data = DeviceData::new(x, y, len, &dev)?;
                    Ok((Engine::new(model, optim, dev)?, data))
                })?;
                SessionInner::Cuda(Box::new(started))
            }
        };
        Ok(Session { inner })
    }

    /// A name for the backend, for model cards.
    pub fn backend(&self) -> String {
        match &self.inner {
            SessionInner::Flex(..) => format!("burn {BURN_VERSION}, Flex (CPU)"),
            #[cfg(feature = "cuda")]
            SessionInner::Cuda(b) => {
                format!("burn {BURN_VERSION}, CUDA device {}", b.0.device().index)
            }
        }
    }

    pub fn enable_ema(&mut self, decay: f32) {
        dispatch!(&mut self.inner, e, _d => e.enable_ema(decay))
    }

    /// See [`Engine::enable_awp`].
    pub fn enable_awp(&mut self, gamma: f32) {
        dispatch!(&mut self.inner, e, _d => e.enable_awp(gamma))
    }

    /// See [`Engine::set_augment`].
    pub fn set_augment(&mut self, augment: Augment) -> Result<(), BurnError> {
        dispatch!(&mut self.inner, e, _d => e.set_augment(augment))
    }

    /// One epoch over `idx` (see [`Engine::epoch`]).
    #[allow(clippy::too_many_arguments)]
    pub fn epoch(
        &mut self,
        idx: &[usize],
        batch: usize,
        objective: &Objective,
        lr: &mut dyn FnMut(usize) -> f32,
        seed: u64,
        on_batch: &mut dyn FnMut(usize, usize, Stats) -> bool,
    ) -> Result<Stats, BurnError> {
        dispatch!(&mut self.inner, e, d => e.epoch(d, idx, batch, objective, lr, seed, on_batch))
    }

    /// Adversarial points of `attack` (untargeted, L∞ or L2, the last iterate) against the current
    /// weights for `y.len()` examples given on the host; uploads them and reads the points back
    /// (so a timing of this call includes both transfers).
    pub fn attack(&self, x: &[f32], y: &[u8], attack: &Pgd) -> Result<Vec<f32>, BurnError> {
        attack.validate().map_err(BurnError::Input)?;
        dispatch!(ref &self.inner, e, _d => {
            let len = e.template.input_len();
            let data = DeviceData::new(x, y, len, e.device())?;
            let adv = e.pgd(data.x, data.y, attack)?;
            adv.into_data()
                .into_vec::<f32>()
                .map_err(|err| BurnError::Device(format!("reading points back: {err:?}")))
        })
    }

    /// The current iterate.
    pub fn model(&self) -> Result<Model, BurnError> {
        dispatch!(ref &self.inner, e, _d => e.model())
    }

    /// The weight average when enabled, otherwise the iterate.
    pub fn release(&self) -> Result<Model, BurnError> {
        dispatch!(ref &self.inner, e, _d => e.release())
    }
}

#[cfg(test)]
mod tests;
