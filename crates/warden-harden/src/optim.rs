//! Optimisers with PyTorch's update rules, so a recipe means the same thing on both sides.

use serde::{Deserialize, Serialize};

/// An optimiser and its hyper-parameters.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
pub enum OptimSpec {
    /// `torch.optim.Adam` (L2 weight decay added to the gradient, as PyTorch does).
    Adam {
        lr: f32,
        #[serde(default = "beta1")]
        beta1: f32,
        #[serde(default = "beta2")]
        beta2: f32,
        #[serde(default = "adam_eps")]
        eps: f32,
        #[serde(default)]
        weight_decay: f32,
    },
    /// `torch.optim.SGD` with momentum (dampening 0, not Nesterov).
    Sgd {
        lr: f32,
        #[serde(default)]
        momentum: f32,
        #[serde(default)]
        weight_decay: f32,
    },
}

fn beta1() -> f32 {
    0.9
}
fn beta2() -> f32 {
    0.999
}
fn adam_eps() -> f32 {
    1e-8
}

impl OptimSpec {
    /// Adam with PyTorch's defaults and learning rate `lr`.
    pub fn adam(lr: f32) -> OptimSpec {
        OptimSpec::Adam {
            lr,
            beta1: beta1(),
            beta2: beta2(),
            eps: adam_eps(),
            weight_decay: 0.0,
        }
    }

    pub fn lr(&self) -> f32 {
        match *self {
            OptimSpec::Adam { lr, .. } | OptimSpec::Sgd { lr, .. } => lr,
        }
    }

    /// Changes the learning rate (for schedules).
    pub fn set_lr(&mut self, new: f32) {
        match self {
            OptimSpec::Adam { lr, .. } | OptimSpec::Sgd { lr, .. } => *lr = new,
        }
    }

    /// Checks the hyper-parameters are finite and in range.
    pub fn validate(&self) -> Result<(), String> {
        let ok = match *self {
            OptimSpec::Adam {
                lr,
                beta1,
                beta2,
                eps,
                weight_decay,
            } => {
                lr.is_finite()
                    && lr > 0.0
                    && (0.0..1.0).contains(&beta1)
                    && (0.0..1.0).contains(&beta2)
                    && eps.is_finite()
                    && eps > 0.0
                    && weight_decay.is_finite()
                    && weight_decay >= 0.0
            }
            OptimSpec::Sgd {
                lr,
                momentum,
                weight_decay,
            } => {
                lr.is_finite()
                    && lr > 0.0
                    && (0.0..1.0).contains(&momentum)
                    && weight_decay.is_finite()
                    && weight_decay >= 0.0
            }
        };
        if ok {
            Ok(())
        } else {
            Err(format!("optimiser hyper-parameters out of range: {self:?}"))
        }
    }
}

/// An optimiser's state over a model's parameters.
#[derive(Debug, Clone)]
pub struct Optimizer {
    spec: OptimSpec,
    step: u64,
    m: Vec<Vec<f32>>,
    v: Vec<Vec<f32>>,
}

impl Optimizer {
    pub fn new(spec: OptimSpec, params: &[Vec<f32>]) -> Optimizer {
        let zeros = || {
            params
                .iter()
                .map(|p| vec![0.0f32; p.len()])
                .collect::<Vec<_>>()
        };
        let v = if matches!(spec, OptimSpec::Adam { .. }) {
            zeros()
        } else {
            Vec::new()
        };
        Optimizer {
            spec,
            step: 0,
            m: zeros(),
            v,
        }
    }

    pub fn spec(&self) -> OptimSpec {
        self.spec
    }

    /// Changes the learning rate (for schedules).
    pub fn set_lr(&mut self, new: f32) {
        self.spec.set_lr(new);
    }

    /// One update of `params` with `grads`.
    pub fn step(&mut self, params: &mut [Vec<f32>], grads: &[Vec<f32>]) {
        self.step += 1;
        match self.spec {
            OptimSpec::Adam {
                lr,
                beta1,
                beta2,
                eps,
                weight_decay,
            } => {
                let t = self.step as i32;
                let bc1 = 1.0 - beta1.powi(t);
                let bc2_sqrt = (1.0 - beta2.powi(t)).sqrt();
                let step_size = lr / bc1;
                for (((p, g), m), v) in params
                    .iter_mut()
                    .zip(grads)
                    .zip(&mut self.m)
                    .zip(&mut self.v)
                {
                    for (((p, &g), m), v) in p.iter_mut().zip(g).zip(m.iter_mut()).zip(v.iter_mut())
                    {
                        let g = g + weight_decay * *p;
                        *m = beta1 * *m + (1.0 - beta1) * g;
                        *v = beta2 * *v + (1.0 - beta2) * g * g;
                        let denom = v.sqrt() / bc2_sqrt + eps;
                        *p -= step_size * *m / denom;
                    }
                }
            }
            OptimSpec::Sgd {
                lr,
                momentum,
                weight_decay,
            } => {
                let first = self.step == 1;
                for ((p, g), m) in params.iter_mut().zip(grads).zip(&mut self.m) {
                    for ((p, &g), m) in p.iter_mut().zip(g).zip(m.iter_mut()) {
                        let mut d = g + weight_decay * *p;
                        if momentum > 0.0 {
                            *m = if first { d } else { momentum * *m + d };
                            d = *m;
                        }
                        *p -= lr * d;
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// PyTorch 2.x, `torch.optim.Adam([p], lr=0.1)` on p = [1.0, -2.0] with gradients
    /// g1 = [0.5, -1.0], g2 = [0.1, 0.3]: p after two steps = [0.8, -1.8] (Adam's first steps move
    /// each coordinate by about lr·sign(g) while |m̂|/√v̂ ≈ 1).
    #[test]
    fn adam_first_steps_move_by_lr() {
        let mut p = vec![vec![1.0f32, -2.0]];
        let mut o = Optimizer::new(OptimSpec::adam(0.1), &p);
        o.step(&mut p, &[vec![0.5, -1.0]]);
        assert!(
            (p[0][0] - 0.9).abs() < 1e-6 && (p[0][1] + 1.9).abs() < 1e-6,
            "{p:?}"
        );
        o.step(&mut p, &[vec![0.1, 0.3]]);
        // Second step, coordinate 0: m = 0.09·0.5·... computed by hand:
        // m = 0.9·0.05 + 0.1·0.1 = 0.055, v = 0.999·0.00025 + 0.001·0.01 = 0.00025975,
        // m̂ = 0.055/0.19 = 0.289474, v̂ = 0.00025975/0.001999 = 0.129940, step = 0.1·0.289474/0.360472.
        let want0 = 0.9 - 0.1 * 0.289_474 / 0.129_940f32.sqrt();
        assert!((p[0][0] - want0).abs() < 1e-5, "{} vs {want0}", p[0][0]);
    }

    #[test]
    fn sgd_momentum_matches_pytorch_rule() {
        let mut p = vec![vec![1.0f32]];
        let mut o = Optimizer::new(
            OptimSpec::Sgd {
                lr: 0.1,
                momentum: 0.9,
                weight_decay: 0.0,
            },
            &p,
        );
        o.step(&mut p, &[vec![1.0]]); // buf = 1, p = 0.9
        o.step(&mut p, &[vec![1.0]]); // buf = 1.9, p = 0.71
        assert!((p[0][0] - 0.71).abs() < 1e-6);
        assert!(
            OptimSpec::Sgd {
                lr: f32::NAN,
                momentum: 0.0,
                weight_decay: 0.0
            }
            .validate()
            .is_err()
        );
        assert!(OptimSpec::adam(1e-3).validate().is_ok());
    }
}
