"""Reference epsilons of DP-SGD from Google's dp-accounting PLD accountant, for
crates/warden-harden/tests/accountant.rs.

    python3 -m venv venv && venv/bin/pip install dp-accounting==0.6.0 prv-accountant==0.2.0
    venv/bin/python scripts/reference/dp_accounting_pld_reference.py

Each line: q, noise multiplier, steps, delta, PLD epsilon (dp-accounting, add-or-remove-one,
value_discretization_interval 1e-4), RDP epsilon (dp-accounting), PRV bounds (Microsoft's
prv-accountant, eps_error 0.01): lower, estimate, upper.
"""
import dp_accounting
from dp_accounting import dp_event, pld, rdp
from prv_accountant import Accountant

CASES = [
    # Tramèr & Boneh 2021's Fashion-MNIST CNN (batch 2048 of 60k, 40 epochs).
    (2048 / 60000, 2.15, 1171, 1e-5),
    # Abadi et al. 2016's MNIST setting (lot 600 of 60k, sigma 1.1, 60 epochs... 10,000 steps).
    (0.01, 1.1, 10000, 1e-5),
    (0.01, 2.5, 50, 1e-5),
    (0.004, 0.8, 3000, 1e-5),
    (0.1, 1.0, 100, 1e-6),
    (256 / 60000, 1.0, 234, 1e-5),
    (1.0, 10.0, 1, 1e-5),
]

for q, sigma, steps, delta in CASES:
    ev = dp_event.SelfComposedDpEvent(
        dp_event.PoissonSampledDpEvent(q, dp_event.GaussianDpEvent(sigma)), steps)
    a = pld.PLDAccountant(value_discretization_interval=1e-4)
    a.compose(ev)
    r = rdp.RdpAccountant()
    r.compose(ev)
    p = Accountant(noise_multiplier=sigma, sampling_probability=q, delta=delta,
                   max_compositions=steps, eps_error=0.01)
    lo, est, hi = p.compute_epsilon(num_compositions=steps)
    print(f"({q!r}, {sigma!r}, {steps}, {delta!r}, {a.get_epsilon(delta)!r}, "
          f"{r.get_epsilon(delta)!r}, {lo!r}, {est!r}, {hi!r}),")

# Cases of dp-accounting's own RDP test suite (rdp_privacy_accountant_test.py,
# test_compute_log_a_equals_mp), printed as RDP = ln A_alpha / (alpha - 1). The suite integrates
# with mpmath over (-inf, inf) in one piece and allows 1e-4 relative error; that integral misses the
# narrow peak for sigma 0.1 by up to 7e-5. Here it is split every 1/8 from -10 to alpha + 10 at 40
# digits; for integer orders it agrees with the exact binomial sum to every printed digit.
import mpmath

mpmath.mp.dps = 40

def rdp_mp(q, sigma, alpha):
    q, sigma, alpha = mpmath.mpf(q), mpmath.mpf(sigma), mpmath.mpf(alpha)
    f = lambda z: mpmath.npdf(z, mu=0, sigma=sigma) * (
        (1 - q) + q * mpmath.exp((2 * z - 1) / (2 * sigma ** 2))) ** alpha
    pts = [-mpmath.inf] + [mpmath.mpf(x) / 8 for x in range(-80, int(8 * float(alpha)) + 80)]
    return mpmath.log(mpmath.quad(f, pts + [mpmath.inf])) / (alpha - 1)

for q, sigma, order in [(1e-7, 0.1, 1.01), (1e-6, 0.1, 256), (1e-5, 0.1, 256.1), (1e-6, 1, 27),
                        (1e-4, 1.0, 1.5), (1e-3, 1.0, 2), (0.01, 10, 20), (0.1, 100, 20.5),
                        (0.99, 0.1, 256), (0.999, 100, 256.1),
                        # The fractional orders of the published case (q 0.01, noise 2.5).
                        (0.01, 2.5, 1.5), (0.01, 2.5, 2.5)]:
    print(f"({q!r}, {sigma!r}, {order!r}, {float(rdp_mp(q, sigma, order))!r}),")
