//! Risk scoring: FMEA's Risk Priority Number, the AIAG-VDA (2019) Action Priority, and an ISO 31000-style
//! likelihood × consequence matrix with a configurable size and risk appetite.

use serde::Serialize;

/// An FMEA rating, 1 to 10.
pub type Rating = u8;

/// The Risk Priority Number, `S × O × D` (1 to 1000).
pub fn rpn(s: Rating, o: Rating, d: Rating) -> u16 {
    u16::from(s) * u16::from(o) * u16::from(d)
}

/// AIAG-VDA Action Priority.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
pub enum ActionPriority {
    /// Low: action may be taken.
    L,
    /// Medium: action should be taken.
    M,
    /// High: action must be taken, or the risk accepted with a documented sign-off.
    H,
}

impl ActionPriority {
    /// `"H"`, `"M"` or `"L"`.
    pub fn as_str(self) -> &'static str {
        match self {
            ActionPriority::H => "H",
            ActionPriority::M => "M",
            ActionPriority::L => "L",
        }
    }
}

/// The Action Priority of the AIAG-VDA FMEA Handbook (1st edition, 2019), DFMEA/PFMEA table, for
/// ratings 1 to 10 (out-of-range ratings are clamped; the register checker refuses them first).
///
/// Written from the handbook's bands: severity 9–10, 7–8, 4–6, 2–3, 1; occurrence 8–10, 6–7, 4–5, 2–3,
/// 1; detection 7–10, 5–6, 2–4, 1. `tests/action_priority.rs` checks all 1,000 cells against a
/// separately written band table (`data/aiag-vda-action-priority.json`).
pub fn action_priority(s: Rating, o: Rating, d: Rating) -> ActionPriority {
    use ActionPriority::{H, L, M};
    let (s, o, d) = (s.clamp(1, 10), o.clamp(1, 10), d.clamp(1, 10));
    // Detection band index: 0 = 7-10 (poor detection), 1 = 5-6, 2 = 2-4, 3 = 1 (very high detection).
    let db = match d {
        7..=10 => 0,
        5..=6 => 1,
        2..=4 => 2,
        _ => 3,
    };
    // Each row lists the AP for detection bands 7-10, 5-6, 2-4, 1.
    let row: [ActionPriority; 4] = match (s, o) {
        (9..=10, 8..=10) => [H, H, H, H],
        (9..=10, 6..=7) => [H, H, H, H],
        (9..=10, 4..=5) => [H, H, H, M],
        (9..=10, 2..=3) => [H, M, L, L],
        (9..=10, _) => [L, L, L, L],
        (7..=8, 8..=10) => [H, H, H, H],
        (7..=8, 6..=7) => [H, H, H, M],
        (7..=8, 4..=5) => [H, M, M, M],
        (7..=8, 2..=3) => [M, M, L, L],
        (7..=8, _) => [L, L, L, L],
        (4..=6, 8..=10) => [H, H, M, M],
        (4..=6, 6..=7) => [M, M, M, L],
        (4..=6, 4..=5) => [M, L, L, L],
        (4..=6, _) => [L, L, L, L],
        (2..=3, 8..=10) => [M, M, L, L],
        (2..=3, _) => [L, L, L, L],
        _ => [L, L, L, L],
    };
    row[db]
}

/// An ISO 31000-style risk matrix: `levels × levels` cells of likelihood and consequence, each rated
/// 1 to `levels`; a cell's score is `likelihood × consequence`, and the appetite is the highest score
/// the organisation accepts without further treatment.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Matrix {
    pub likelihood_levels: u8,
    pub consequence_levels: u8,
    pub appetite: u16,
}

impl Matrix {
    /// The default: 5 × 5 with appetite 6 (e.g. "possible × minor" is acceptable, "likely × moderate"
    /// is not).
    pub const DEFAULT: Matrix = Matrix {
        likelihood_levels: 5,
        consequence_levels: 5,
        appetite: 6,
    };

    /// The score of a cell.
    pub fn score(&self, likelihood: u8, consequence: u8) -> u16 {
        u16::from(likelihood) * u16::from(consequence)
    }

    /// Whether a cell is within appetite.
    pub fn within_appetite(&self, likelihood: u8, consequence: u8) -> bool {
        self.score(likelihood, consequence) <= self.appetite
    }

    /// The band of a cell for display: within appetite, up to twice the appetite, beyond.
    pub fn band(&self, likelihood: u8, consequence: u8) -> Band {
        let s = self.score(likelihood, consequence);
        if s <= self.appetite {
            Band::Acceptable
        } else if s <= self.appetite.saturating_mul(2) {
            Band::Tolerable
        } else {
            Band::Intolerable
        }
    }
}

/// Where a matrix cell sits against the appetite.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Band {
    Acceptable,
    Tolerable,
    Intolerable,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rpn_is_the_product() {
        assert_eq!(rpn(1, 1, 1), 1);
        assert_eq!(rpn(10, 10, 10), 1000);
        assert_eq!(rpn(9, 2, 2), 36);
        assert_eq!(rpn(5, 5, 5), 125);
    }

    #[test]
    fn matrix_placement() {
        let m = Matrix {
            likelihood_levels: 5,
            consequence_levels: 5,
            appetite: 6,
        };
        assert_eq!(m.score(3, 2), 6);
        assert!(m.within_appetite(3, 2));
        assert!(!m.within_appetite(2, 4));
        assert_eq!(m.band(1, 1), Band::Acceptable);
        assert_eq!(m.band(3, 4), Band::Tolerable);
        assert_eq!(m.band(4, 4), Band::Intolerable);
        let m3 = Matrix {
            likelihood_levels: 3,
            consequence_levels: 3,
            appetite: 2,
        };
        assert_eq!(m3.band(1, 2), Band::Acceptable);
        assert_eq!(m3.band(2, 2), Band::Tolerable);
        assert_eq!(m3.band(3, 3), Band::Intolerable);
    }
}
