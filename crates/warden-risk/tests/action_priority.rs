//! The AIAG-VDA Action Priority for all 1,000 (S, O, D) combinations against the band table in
//! `data/aiag-vda-action-priority.json`, written separately from the code (its sources are listed in
//! the file), plus properties any correct table has.

#![allow(clippy::unwrap_used, clippy::print_stderr)] // Tests fail by panicking.

use serde_json::Value;
use warden_risk::{ActionPriority, action_priority};

fn table() -> Vec<((u8, u8, u8), ActionPriority)> {
    let v: Value =
        serde_json::from_str(include_str!("../data/aiag-vda-action-priority.json")).unwrap();
    let mut cells = Vec::new();
    for row in v["rows"].as_array().unwrap() {
        let band = |k: &str| {
            (
                row[k][0].as_u64().unwrap() as u8,
                row[k][1].as_u64().unwrap() as u8,
            )
        };
        let ((s0, s1), (o0, o1), (d0, d1)) = (band("s"), band("o"), band("d"));
        let ap = match row["ap"].as_str().unwrap() {
            "H" => ActionPriority::H,
            "M" => ActionPriority::M,
            _ => ActionPriority::L,
        };
        for s in s0..=s1 {
            for o in o0..=o1 {
                for d in d0..=d1 {
                    cells.push(((s, o, d), ap));
                }
            }
        }
    }
    cells
}

#[test]
fn all_1000_cells_match_the_handbook_bands() {
    let cells = table();
    assert_eq!(cells.len(), 1000);
    let mut seen = std::collections::HashSet::new();
    let mut wrong = Vec::new();
    for ((s, o, d), want) in &cells {
        assert!(seen.insert((*s, *o, *d)), "cell {s},{o},{d} listed twice");
        let got = action_priority(*s, *o, *d);
        if got != *want {
            wrong.push(format!(
                "S={s} O={o} D={d}: got {got:?}, table says {want:?}"
            ));
        }
    }
    assert!(
        wrong.is_empty(),
        "{} cells differ:\n{}",
        wrong.len(),
        wrong.join("\n")
    );
    let count = |ap| cells.iter().filter(|(_, a)| *a == ap).count();
    assert_eq!(
        (
            count(ActionPriority::H),
            count(ActionPriority::M),
            count(ActionPriority::L)
        ),
        (318, 214, 468)
    );
}

#[test]
fn priority_never_falls_as_a_rating_rises() {
    for s in 1..=10u8 {
        for o in 1..=10u8 {
            for d in 1..=10u8 {
                let ap = action_priority(s, o, d);
                if s < 10 {
                    assert!(
                        action_priority(s + 1, o, d) >= ap,
                        "S {s}->{} at O={o} D={d}",
                        s + 1
                    );
                }
                if o < 10 {
                    assert!(
                        action_priority(s, o + 1, d) >= ap,
                        "O {o}->{} at S={s} D={d}",
                        o + 1
                    );
                }
                if d < 10 {
                    assert!(
                        action_priority(s, o, d + 1) >= ap,
                        "D {d}->{} at S={s} O={o}",
                        d + 1
                    );
                }
            }
        }
    }
    assert!((1..=10).all(|o| (1..=10).all(|d| action_priority(1, o, d) == ActionPriority::L)));
    assert!((1..=10).all(|d| action_priority(10, 1, d) == ActionPriority::L));
}
