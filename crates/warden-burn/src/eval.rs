//! Evaluation on burn's backends (`warden harden eval --device …`): a model behind
//! [`Network`], so that every attack of Warden's evaluation (FGSM, PGD, APGD-CE, -DLR, -T, FAB-T,
//! Square) runs its forward and backward passes on a GPU.
//!
//! Only the passes move. The attacks' logic (random starts drawn per example index, steps,
//! projections, APGD's step-size schedule, the cascade and the independent check of every claimed
//! adversarial example) is `warden_harden`'s, the same code the CPU engine runs, so a figure from
//! one engine and a figure from the other differ only where their arithmetic does.

use burn::tensor::backend::AutodiffBackend;
use burn::tensor::{Tensor, TensorData};
use warden_harden::net::Network;
use warden_harden::nn::{Model, ModelError};

use crate::{BurnError, Device, Inner, Step, forward, plan, upload_params};

/// A model's weights on a burn backend `B`, answering [`Network`]'s queries.
#[derive(Debug)]
pub struct DeviceNet<B: AutodiffBackend> {
    steps: Vec<Step>,
    /// The architecture and parameter shapes; its weights are not used.
    template: Model,
    params: Vec<Tensor<Inner<B>, 1>>,
    device: B::Device,
    /// The input (tracked) and logits of the last [`Network::forward`], for the backward pass.
    graph: Option<(Tensor<B, 2>, Tensor<B, 2>)>,
    logits: Vec<f32>,
    grad: Vec<f32>,
}

fn engine(e: impl std::fmt::Display) -> ModelError {
    ModelError::Engine(e.to_string())
}

impl<B: AutodiffBackend> DeviceNet<B> {
    /// Moves `model`'s weights to `device`.
    pub fn new(model: &Model, device: B::Device) -> Result<Self, BurnError> {
        let params = upload_params(model, &device);
        Ok(DeviceNet {
            steps: plan(model.arch()),
            template: model.clone(),
            params,
            device,
            graph: None,
            logits: Vec::new(),
            grad: Vec::new(),
        })
    }

    pub fn device(&self) -> &B::Device {
        &self.device
    }

    fn check(&self, x: &[f32], n: usize) -> Result<(), ModelError> {
        if n == 0 || x.len() != n * self.template.input_len() {
            return Err(ModelError::Input(format!(
                "{} values for {n} examples of {}",
                x.len(),
                self.template.input_len()
            )));
        }
        Ok(())
    }

    /// `v` as a `rows`-row matrix on the device.
    fn upload(&self, v: &[f32], rows: usize) -> Tensor<Inner<B>, 2> {
        let cols = v.len() / rows.max(1);
        Tensor::from_data(TensorData::new(v.to_vec(), [rows, cols]), &self.device)
    }

    /// The logits of `x` with the input tracked, and the tracked input.
    fn tracked(&self, x: &[f32], n: usize) -> Result<(Tensor<B, 2>, Tensor<B, 2>), ModelError> {
        let xa: Tensor<B, 2> = Tensor::from_inner(self.upload(x, n)).require_grad();
        let ps: Vec<Tensor<B, 1>> = self
            .params
            .iter()
            .map(|p| Tensor::from_inner(p.clone()))
            .collect();
        let logits = forward(&self.template, &self.steps, &ps, xa.clone(), true).map_err(engine)?;
        Ok((xa, logits))
    }
}

/// Reads a tensor back to the host.
fn read<F: burn::tensor::backend::Backend, const D: usize>(
    t: Tensor<F, D>,
    out: &mut Vec<f32>,
) -> Result<(), ModelError> {
    *out = t
        .into_data()
        .into_vec::<f32>()
        .map_err(|e| engine(format!("reading back from the device: {e:?}")))?;
    Ok(())
}

/// Runs `f`, turning a panic of the backend (a device out of memory, a failed kernel) into an
/// error, so that an evaluation stops with a message instead of a half-written report.
fn guarded<T>(f: impl FnOnce() -> Result<T, ModelError>) -> Result<T, ModelError> {
    std::panic::catch_unwind(std::panic::AssertUnwindSafe(f)).unwrap_or_else(|_| {
        Err(engine(
            "the device's backend panicked (its message is above)",
        ))
    })
}

impl<B: AutodiffBackend> Network for DeviceNet<B> {
    fn input(&self) -> [usize; 3] {
        self.template.arch().input
    }

    fn classes(&self) -> usize {
        self.template.classes()
    }

    fn forward(&mut self, x: &[f32], n: usize) -> Result<&[f32], ModelError> {
        self.check(x, n)?;
        self.graph = None;
        let (xa, logits) = guarded(|| {
            let (xa, logits) = self.tracked(x, n)?;
            let mut host = Vec::new();
            read(logits.clone().inner(), &mut host)?;
            self.logits = host;
            Ok((xa, logits))
        })?;
        self.graph = Some((xa, logits));
        Ok(&self.logits)
    }

    fn logits(&mut self, x: &[f32], n: usize) -> Result<&[f32], ModelError> {
        self.check(x, n)?;
        self.graph = None;
        guarded(|| {
            let t = self.upload(x, n);
            let logits =
                forward(&self.template, &self.steps, &self.params, t, true).map_err(engine)?;
            let mut host = Vec::new();
            read(logits, &mut host)?;
            self.logits = host;
            Ok(())
        })?;
        Ok(&self.logits)
    }

    fn input_grad(&mut self, x: &[f32], dlogits: &[f32]) -> Result<&[f32], ModelError> {
        let classes = self.template.classes();
        let n = dlogits.len() / classes.max(1);
        self.check(x, n)?;
        if dlogits.len() != n * classes {
            return Err(ModelError::Input(format!(
                "{} logit gradients for {n} examples of {classes} classes",
                dlogits.len()
            )));
        }
        // The graph of the last forward pass, when it was on these inputs; otherwise a new one.
        let graph = self
            .graph
            .take()
            .filter(|(xa, _)| xa.dims() == [n, self.template.input_len()]);
        guarded(|| {
            let (xa, logits) = match graph {
                Some(g) => g,
                None => self.tracked(x, n)?,
            };
            let d: Tensor<B, 2> = Tensor::from_inner(self.upload(dlogits, n));
            let grads = (logits * d).sum().backward();
            let gx = xa
                .grad(&grads)
                .ok_or_else(|| engine("no gradient reached the input"))?;
            let mut host = Vec::new();
            read(gx, &mut host)?;
            self.grad = host;
            Ok(())
        })?;
        Ok(&self.grad)
    }
}

/// A [`DeviceNet`] on whichever backend `--device` names.
#[derive(Debug)]
pub struct Evaluator {
    inner: EvalInner,
}

#[derive(Debug)]
enum EvalInner {
    Flex(Box<DeviceNet<crate::FlexAd>>),
    #[cfg(feature = "cuda")]
    Cuda(Box<DeviceNet<crate::CudaAd>>),
}

macro_rules! on {
    ($s:expr, $n:ident => $body:expr) => {
        match $s {
            EvalInner::Flex($n) => $body,
            #[cfg(feature = "cuda")]
            EvalInner::Cuda($n) => $body,
        }
    };
}

impl Evaluator {
    /// Puts `model`'s weights on `device`.
    pub fn new(device: Device, model: &Model) -> Result<Evaluator, BurnError> {
        let inner = match device {
            Device::Flex => EvalInner::Flex(Box::new(DeviceNet::new(model, Default::default())?)),
            #[cfg(feature = "cuda")]
            Device::Cuda(i) => {
                let net = crate::start_cuda(i, |dev| DeviceNet::new(model, dev))?;
                EvalInner::Cuda(Box::new(net))
            }
        };
        Ok(Evaluator { inner })
    }

    /// A name for the backend, for reports.
    pub fn backend(&self) -> String {
        match &self.inner {
            EvalInner::Flex(..) => format!("burn {}, Flex (CPU)", crate::BURN_VERSION),
            #[cfg(feature = "cuda")]
            EvalInner::Cuda(n) => {
                format!(
                    "burn {}, CUDA device {}",
                    crate::BURN_VERSION,
                    n.device().index
                )
            }
        }
    }
}

impl Network for Evaluator {
    fn input(&self) -> [usize; 3] {
        on!(&self.inner, n => n.input())
    }
    fn classes(&self) -> usize {
        on!(&self.inner, n => n.classes())
    }
    fn forward(&mut self, x: &[f32], k: usize) -> Result<&[f32], ModelError> {
        on!(&mut self.inner, n => n.forward(x, k))
    }
    fn logits(&mut self, x: &[f32], k: usize) -> Result<&[f32], ModelError> {
        on!(&mut self.inner, n => n.logits(x, k))
    }
    fn input_grad(&mut self, x: &[f32], dlogits: &[f32]) -> Result<&[f32], ModelError> {
        on!(&mut self.inner, n => n.input_grad(x, dlogits))
    }
}
