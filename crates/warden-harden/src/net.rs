//! Where an attack's forward and backward passes run.
//!
//! The attacks (`attack`, `apgd`, `fab`, `square`) and the evaluation (`eval`) see a network only
//! through [`Network`]: logits for a batch, and the gradient with respect to the input of a linear
//! function of those logits. [`Compute`] says how a whole attack is spread over networks:
//! - [`Compute::Cpu`]: Warden's engine, each thread of a [`Pool`] attacking its own shard;
//! - [`Compute::Device`]: one network that runs elsewhere (a GPU, through `warden-burn`), fed
//!   large chunks from this thread. The attack logic (steps, projections, step-size schedules,
//!   per-example bookkeeping) stays here, in one place, for every engine.
//!
//! Randomness is drawn per example index, never per batch, so an attack makes the same draws on
//! every engine and with any chunking: results differ only where the engines' arithmetic does.

use crate::attack::AttackOutput;
use crate::nn::{Model, ModelError, Pool, Workspace, argmax};

/// A differentiable classifier, as an attack queries it. Inputs are channels-last, `n × c·h·w`.
pub trait Network {
    /// `[channels, height, width]` of one input.
    fn input(&self) -> [usize; 3];
    /// Logits per input.
    fn classes(&self) -> usize;
    fn input_len(&self) -> usize {
        let [c, h, w] = self.input();
        c * h * w
    }
    /// The logits of `n` inputs (`n × classes`), kept so that [`Network::input_grad`] on the same
    /// inputs can follow.
    fn forward(&mut self, x: &[f32], n: usize) -> Result<&[f32], ModelError>;
    /// The logits alone, where no gradient will be asked for (an engine may then skip recording
    /// what the backward pass needs).
    fn logits(&mut self, x: &[f32], n: usize) -> Result<&[f32], ModelError> {
        self.forward(x, n)
    }
    /// The gradient with respect to `x` of `Σ dlogits ⊙ logits(x)`, for the `x` of the last
    /// [`Network::forward`] (`dlogits` is `n × classes`).
    fn input_grad(&mut self, x: &[f32], dlogits: &[f32]) -> Result<&[f32], ModelError>;
}

/// Warden's CPU engine on one thread's workspace.
#[derive(Debug)]
pub struct CpuNet<'a> {
    pub model: &'a Model,
    pub ws: &'a mut Workspace,
}

impl Network for CpuNet<'_> {
    fn input(&self) -> [usize; 3] {
        self.model.arch().input
    }
    fn classes(&self) -> usize {
        self.model.classes()
    }
    fn input_len(&self) -> usize {
        self.model.input_len()
    }
    fn forward(&mut self, x: &[f32], n: usize) -> Result<&[f32], ModelError> {
        self.model.forward(self.ws, x, n)
    }
    fn input_grad(&mut self, x: &[f32], dlogits: &[f32]) -> Result<&[f32], ModelError> {
        self.model.backward(self.ws, x, dlogits, None, true);
        Ok(self.ws.input_grad())
    }
}

/// Examples a CPU thread attacks at once, at most (fewer for models with large activations).
const CPU_CHUNK: usize = 128;

/// How an attack's work is spread: see the module's documentation.
pub enum Compute<'a> {
    /// Warden's engine, sharded over the pool's threads.
    Cpu {
        model: &'a Model,
        pool: &'a mut Pool,
    },
    /// One network elsewhere, `chunk` examples at a time (at least 1).
    Device {
        net: &'a mut dyn Network,
        chunk: usize,
    },
}

impl std::fmt::Debug for Compute<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Compute::Cpu { pool, .. } => write!(f, "Compute::Cpu({} threads)", pool.threads()),
            Compute::Device { chunk, .. } => write!(f, "Compute::Device(chunks of {chunk})"),
        }
    }
}

impl Compute<'_> {
    pub fn input(&self) -> [usize; 3] {
        match self {
            Compute::Cpu { model, .. } => model.arch().input,
            Compute::Device { net, .. } => net.input(),
        }
    }

    pub fn classes(&self) -> usize {
        match self {
            Compute::Cpu { model, .. } => model.classes(),
            Compute::Device { net, .. } => net.classes(),
        }
    }

    pub fn input_len(&self) -> usize {
        let [c, h, w] = self.input();
        c * h * w
    }

    /// The predicted class of each of `n` inputs.
    pub fn predict(&mut self, x: &[f32], n: usize) -> Result<Vec<u8>, ModelError> {
        let len = self.input_len();
        if x.len() != n * len {
            return Err(ModelError::Input(format!(
                "{} values for {n} examples of {len}",
                x.len()
            )));
        }
        match self {
            Compute::Cpu { model, pool } => model.predict(pool, x, n),
            Compute::Device { net, chunk } => {
                let classes = net.classes();
                let chunk = (*chunk).max(1);
                let mut checked = Checked { net: &mut **net };
                let mut out = Vec::with_capacity(n);
                for start in (0..n).step_by(chunk) {
                    let end = (start + chunk).min(n);
                    let logits = checked.logits(&x[start * len..end * len], end - start)?;
                    out.extend(logits.chunks_exact(classes).map(|r| argmax(r) as u8));
                }
                Ok(out)
            }
        }
    }

    /// Runs `f(net, first index, x, y, adv, success)` over chunks of the `y.len()` examples (on
    /// the CPU, each thread over the chunks of its shard); `adv` starts as a copy of `x`, `success`
    /// as false. The first error stops the run: an attack that could not finish must not be read
    /// as one that found nothing.
    pub(crate) fn run_sharded(
        &mut self,
        x: &[f32],
        y: &[u8],
        f: impl Fn(
            &mut dyn Network,
            usize,
            &[f32],
            &[u8],
            &mut [f32],
            &mut [bool],
        ) -> Result<(), ModelError>
        + Sync,
    ) -> Result<AttackOutput, ModelError> {
        let len = self.input_len();
        let n = y.len();
        let mut adversarial = x.to_vec();
        let mut success = vec![false; n];
        match self {
            Compute::Cpu { model, pool } => {
                let model: &Model = model;
                let mut parts = Vec::new();
                let (mut adv_rest, mut ok_rest) =
                    (adversarial.as_mut_slice(), success.as_mut_slice());
                for r in pool.shards(n) {
                    let k = r.end - r.start;
                    let (a, at) = std::mem::take(&mut adv_rest).split_at_mut(k * len);
                    let (s, st) = std::mem::take(&mut ok_rest).split_at_mut(k);
                    adv_rest = at;
                    ok_rest = st;
                    parts.push((r, a, s));
                }
                pool.run_parts(parts, |ws, (r, adv, ok)| {
                    // In chunks, so that memory does not grow with the number of examples.
                    let chunk = model.chunk(CPU_CHUNK);
                    let mut net = CpuNet { model, ws };
                    for start in (r.start..r.end).step_by(chunk) {
                        let end = (start + chunk).min(r.end);
                        let (a, b) = (start - r.start, end - r.start);
                        f(
                            &mut net,
                            start,
                            &x[start * len..end * len],
                            &y[start..end],
                            &mut adv[a * len..b * len],
                            &mut ok[a..b],
                        )?;
                    }
                    Ok::<(), ModelError>(())
                })?;
            }
            Compute::Device { net, chunk } => {
                let chunk = (*chunk).max(1);
                let mut checked = Checked { net: &mut **net };
                for start in (0..n).step_by(chunk) {
                    let end = (start + chunk).min(n);
                    f(
                        &mut checked,
                        start,
                        &x[start * len..end * len],
                        &y[start..end],
                        &mut adversarial[start * len..end * len],
                        &mut success[start..end],
                    )?;
                }
            }
        }
        Ok(AttackOutput {
            adversarial,
            success,
        })
    }
}

/// An error unless `logits` holds `n × classes` finite values.
fn check_logits(logits: &[f32], n: usize, classes: usize) -> Result<(), ModelError> {
    if logits.len() != n * classes || logits.iter().any(|v| !v.is_finite()) {
        return Err(ModelError::Input(format!(
            "the network answered {} values for {n} inputs of {classes} classes, or non-finite ones",
            logits.len()
        )));
    }
    Ok(())
}

/// A network from outside this crate, its answers checked for shape (and logits for finiteness)
/// before an attack reads them.
struct Checked<'a> {
    net: &'a mut dyn Network,
}

impl Network for Checked<'_> {
    fn input(&self) -> [usize; 3] {
        self.net.input()
    }
    fn classes(&self) -> usize {
        self.net.classes()
    }
    fn forward(&mut self, x: &[f32], n: usize) -> Result<&[f32], ModelError> {
        let classes = self.net.classes();
        let logits = self.net.forward(x, n)?;
        check_logits(logits, n, classes)?;
        Ok(logits)
    }
    fn logits(&mut self, x: &[f32], n: usize) -> Result<&[f32], ModelError> {
        let classes = self.net.classes();
        let logits = self.net.logits(x, n)?;
        check_logits(logits, n, classes)?;
        Ok(logits)
    }
    fn input_grad(&mut self, x: &[f32], dlogits: &[f32]) -> Result<&[f32], ModelError> {
        let g = self.net.input_grad(x, dlogits)?;
        if g.len() != x.len() {
            return Err(ModelError::Input(format!(
                "the network answered a gradient of {} values for {} inputs",
                g.len(),
                x.len()
            )));
        }
        Ok(g)
    }
}
