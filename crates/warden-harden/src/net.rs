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
                for r in pool.shards(n, model.least_per_thread()) {
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

/// How closely a network answers as a reference one on the same inputs: what a report on another
/// engine (a GPU) says of its arithmetic, measured rather than assumed. Logits are compared
/// directly. Input gradients are those of each input's margin, the runner-up's logit minus the
/// label's (the runner-up by the reference's logits): a direction attacks follow, and one whose
/// scale does not shrink as the model grows confident, as the cross-entropy's does.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Parity {
    /// Inputs compared.
    pub examples: usize,
    /// The largest |logit| of the reference, for scale.
    pub max_logit: f32,
    /// The largest |difference| between the two networks' logits.
    pub max_logit_diff: f32,
    /// Inputs both networks put in the same class.
    pub same_predictions: usize,
    /// The largest |entry| of the reference's input gradient, for scale.
    pub max_grad: f32,
    /// The largest |difference| between the two input gradients.
    pub max_grad_diff: f32,
    /// Among the input-gradient entries where either gradient exceeds [`SIGN_FLOOR`] of the
    /// reference's largest, the share whose signs agree (1 where there are none): what an L∞
    /// step (FGSM, PGD) follows. Entries below that on both sides are rounding's to decide.
    pub grad_sign_agreement: f64,
}

/// Gradient entries smaller than this share of the largest, on both networks, are left out of
/// [`Parity::grad_sign_agreement`].
pub const SIGN_FLOOR: f32 = 1e-4;

impl Parity {
    /// `Err` (saying what differs) unless the two networks compute the same function up to the
    /// rounding of two f32 engines: logits within 10⁻³ of their scale, input gradients within
    /// 5% of theirs with at least 99% of their signs the same. Rounding alone stays far inside
    /// this: burn's CPU backend on a ResNet-18 differed by 5.6 × 10⁻⁴ of the gradients' scale,
    /// with 99.994% of the signs the same. A wrong backward kernel does not: burn 0.21's CUDA
    /// backend on the same model, 90% and 81% (both measured on the cross-entropy's gradient;
    /// `docs/results/gpu-imported/`). Attacks that follow such gradients find less than they
    /// should, and the robust accuracy they leave is overstated.
    pub fn agrees(&self) -> Result<(), String> {
        let logits = self.max_logit_diff <= 1e-3 * (1.0 + self.max_logit);
        let grads = self.max_grad_diff <= 0.05 * self.max_grad && self.grad_sign_agreement >= 0.99;
        if logits && grads {
            return Ok(());
        }
        Err(format!(
            "on the first {} test examples its logits differ by up to {:.3e} (largest {:.3e}) and its input gradients by up to {:.3e} (largest {:.3e}), with {:.2}% of their signs the same",
            self.examples,
            self.max_logit_diff,
            self.max_logit,
            self.max_grad_diff,
            self.max_grad,
            100.0 * self.grad_sign_agreement
        ))
    }
}

/// [`Parity`] of `other` against `reference` on the `y.len()` inputs `x`, `chunk` inputs per
/// pass (at least 1). Labels must be below the number of classes, and both networks' answers
/// finite.
pub fn parity(
    reference: &mut dyn Network,
    other: &mut dyn Network,
    x: &[f32],
    y: &[u8],
    chunk: usize,
) -> Result<Parity, ModelError> {
    let n = y.len();
    let classes = reference.classes();
    let len = reference.input_len();
    if other.classes() != classes || other.input() != reference.input() {
        return Err(ModelError::Input("the two networks differ in shape".into()));
    }
    if x.len() != n * len || y.iter().any(|&l| usize::from(l) >= classes) {
        return Err(ModelError::Input(format!(
            "{} values and {n} labels, each below {classes}, for inputs of {len}",
            x.len()
        )));
    }
    let mut reference = Checked { net: reference };
    let mut other = Checked { net: other };
    let (mut want, mut got) = (
        Vec::with_capacity(n * classes),
        Vec::with_capacity(n * classes),
    );
    let (mut g_want, mut g_got) = (Vec::with_capacity(x.len()), Vec::with_capacity(x.len()));
    for start in (0..n).step_by(chunk.max(1)) {
        let end = (start + chunk.max(1)).min(n);
        let xs = &x[start * len..end * len];
        let logits = reference.forward(xs, end - start)?.to_vec();
        got.extend_from_slice(other.forward(xs, end - start)?);
        // The margin's gradient: +1 on the runner-up, −1 on the label.
        let mut dlogits = vec![0.0f32; logits.len()];
        for ((row, d), &label) in logits
            .chunks_exact(classes)
            .zip(dlogits.chunks_exact_mut(classes))
            .zip(&y[start..end])
        {
            let label = usize::from(label);
            let runner_up = (0..classes)
                .filter(|&c| c != label)
                .max_by(|&a, &b| row[a].total_cmp(&row[b]));
            if let Some(r) = runner_up {
                d[r] = 1.0;
                d[label] = -1.0;
            }
        }
        g_want.extend_from_slice(reference.input_grad(xs, &dlogits)?);
        g_got.extend_from_slice(other.input_grad(xs, &dlogits)?);
        want.extend(logits);
    }
    let max_abs = |v: &[f32]| v.iter().fold(0.0f32, |m, a| m.max(a.abs()));
    let max_diff = |a: &[f32], b: &[f32]| {
        a.iter()
            .zip(b)
            .fold(0.0f32, |m, (p, q)| m.max((p - q).abs()))
    };
    let max_grad = max_abs(&g_want);
    let floor = SIGN_FLOOR * max_grad;
    let (mut counted, mut same) = (0usize, 0usize);
    for (&p, &q) in g_want.iter().zip(&g_got) {
        if p.abs() > floor || q.abs() > floor {
            counted += 1;
            same += usize::from(sign(p) == sign(q));
        }
    }
    Ok(Parity {
        examples: n,
        max_logit: max_abs(&want),
        max_logit_diff: max_diff(&want, &got),
        same_predictions: want
            .chunks_exact(classes)
            .zip(got.chunks_exact(classes))
            .filter(|(p, q)| argmax(p) == argmax(q))
            .count(),
        max_grad,
        max_grad_diff: max_diff(&g_want, &g_got),
        grad_sign_agreement: if counted == 0 {
            1.0
        } else {
            same as f64 / counted as f64
        },
    })
}

/// −1, 0 or 1, with both zeros 0 (an L∞ step does not move along a zero entry).
fn sign(v: f32) -> i8 {
    if v > 0.0 {
        1
    } else if v < 0.0 {
        -1
    } else {
        0
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
        if g.len() != x.len() || g.iter().any(|v| !v.is_finite()) {
            return Err(ModelError::Input(format!(
                "the network answered a gradient of {} values for {} inputs, or non-finite ones",
                g.len(),
                x.len()
            )));
        }
        Ok(g)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::nn::Arch;

    /// A network whose logits are another's plus `shift` and whose input gradient is the other's
    /// with `alter(index, entry)` applied to every entry.
    struct Skewed<'a> {
        inner: CpuNet<'a>,
        shift: f32,
        alter: fn(usize, f32) -> f32,
        logits: Vec<f32>,
        grad: Vec<f32>,
    }

    impl<'a> Skewed<'a> {
        fn new(inner: CpuNet<'a>, shift: f32, alter: fn(usize, f32) -> f32) -> Skewed<'a> {
            Skewed {
                inner,
                shift,
                alter,
                logits: Vec::new(),
                grad: Vec::new(),
            }
        }
    }

    impl Network for Skewed<'_> {
        fn input(&self) -> [usize; 3] {
            self.inner.input()
        }
        fn classes(&self) -> usize {
            self.inner.classes()
        }
        fn forward(&mut self, x: &[f32], n: usize) -> Result<&[f32], ModelError> {
            let l = self.inner.forward(x, n)?;
            self.logits = l.iter().map(|v| v + self.shift).collect();
            Ok(&self.logits)
        }
        fn input_grad(&mut self, x: &[f32], dlogits: &[f32]) -> Result<&[f32], ModelError> {
            self.grad = self
                .inner
                .input_grad(x, dlogits)?
                .iter()
                .enumerate()
                .map(|(i, &v)| (self.alter)(i, v))
                .collect();
            Ok(&self.grad)
        }
    }

    #[test]
    fn parity_measures_the_difference_between_two_networks() {
        let model = Model::init(&Arch::small_cnn(), 3).unwrap();
        let n = 4;
        let x: Vec<f32> = (0..n * model.input_len())
            .map(|i| ((i * 37) % 101) as f32 / 100.0)
            .collect();
        let y = [0u8, 1, 2, 3];
        let (mut w1, mut w2, mut w3) = (
            Workspace::default(),
            Workspace::default(),
            Workspace::default(),
        );
        let mut a = CpuNet {
            model: &model,
            ws: &mut w1,
        };
        let mut b = CpuNet {
            model: &model,
            ws: &mut w2,
        };
        let same = parity(&mut a, &mut b, &x, &y, 4).unwrap();
        assert_eq!(same.examples, n);
        assert_eq!((same.max_logit_diff, same.max_grad_diff), (0.0, 0.0));
        assert_eq!(same.same_predictions, n);
        assert_eq!(same.grad_sign_agreement, 1.0);
        assert!(same.agrees().is_ok());
        assert!(same.max_logit > 0.0 && same.max_grad > 0.0, "{same:?}");

        // Shifting every logit keeps each prediction and moves each logit by the shift; a
        // negated gradient agrees in sign nowhere. Passes of 3 give what one pass of 4 gives.
        let cpu = CpuNet {
            model: &model,
            ws: &mut w3,
        };
        let mut c = Skewed::new(cpu, 0.5, |_, v| -v);
        let skewed = parity(&mut a, &mut c, &x, &y, 3).unwrap();
        assert!((skewed.max_logit_diff - 0.5).abs() < 1e-6, "{skewed:?}");
        assert_eq!(skewed.same_predictions, n);
        assert!((skewed.max_grad_diff - 2.0 * skewed.max_grad).abs() <= 1e-6 * skewed.max_grad);
        // Every entry above the floor has its sign turned.
        assert_eq!(skewed.grad_sign_agreement, 0.0, "{skewed:?}");
        let why = skewed.agrees().unwrap_err();
        assert!(why.contains("signs the same"), "{why}");
        // Rounding-sized differences pass; a gradient 6% off, or 2% of its signs, do not.
        let near = Parity {
            max_logit_diff: 1e-4,
            max_grad_diff: 0.01 * same.max_grad,
            grad_sign_agreement: 0.999,
            ..same.clone()
        };
        assert!(near.agrees().is_ok());
        for off in [
            Parity {
                max_grad_diff: 0.06 * same.max_grad,
                ..near.clone()
            },
            Parity {
                grad_sign_agreement: 0.98,
                ..near.clone()
            },
            Parity {
                max_logit_diff: 2e-3 * (1.0 + same.max_logit),
                ..near.clone()
            },
        ] {
            assert!(off.agrees().is_err(), "{off:?}");
        }

        // Non-finite gradients and labels beyond the classes are refused, not compared.
        let mut w4 = Workspace::default();
        let cpu = CpuNet {
            model: &model,
            ws: &mut w4,
        };
        let mut nan = Skewed::new(cpu, 0.0, |i, v| if i == 1 { f32::NAN } else { v });
        assert!(parity(&mut a, &mut nan, &x, &y, 4).is_err());
        assert!(parity(&mut a, &mut b, &x, &[0, 1, 2, 10], 4).is_err());
    }
}
