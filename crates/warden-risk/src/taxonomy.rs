//! The public taxonomies a register maps its risks to, embedded from `data/` (each file names its
//! source and licence): MITRE ATLAS tactics and techniques, the 72 NIST AI RMF 1.0 subcategories, the
//! OWASP Top 10 for LLM Applications 2025 and the OWASP Machine Learning Security Top Ten.

use std::collections::BTreeMap;
use std::sync::OnceLock;

use serde_json::Value;

/// One entry of a taxonomy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    pub id: String,
    pub name: String,
    /// ATLAS: the tactics of a technique (inherited by sub-techniques). NIST: the function.
    pub groups: Vec<String>,
}

/// A taxonomy: its entries by id, and its version.
#[derive(Debug)]
pub struct Taxonomy {
    pub name: &'static str,
    pub version: String,
    pub entries: BTreeMap<String, Entry>,
}

impl Taxonomy {
    /// The entry with this id.
    pub fn get(&self, id: &str) -> Option<&Entry> {
        self.entries.get(id)
    }
}

/// The ATLAS tactics (id → name), in matrix order.
pub fn atlas_tactics() -> &'static [(String, String)] {
    static T: OnceLock<Vec<(String, String)>> = OnceLock::new();
    T.get_or_init(|| {
        let v: Value = serde_json::from_str(ATLAS_JSON).unwrap_or(Value::Null);
        v["tactics"]
            .as_array()
            .map(|a| {
                a.iter()
                    .filter_map(|t| {
                        Some((t["id"].as_str()?.to_owned(), t["name"].as_str()?.to_owned()))
                    })
                    .collect()
            })
            .unwrap_or_default()
    })
}

const ATLAS_JSON: &str = include_str!("../data/mitre-atlas.json");
const NIST_JSON: &str = include_str!("../data/nist-ai-rmf-subcategories.json");
const LLM_JSON: &str = include_str!("../data/owasp-llm-top10-2025.json");
const ML_JSON: &str = include_str!("../data/owasp-ml-top10.json");

fn entries(v: &Value) -> Vec<&Value> {
    // Each data file keeps its entries under one of these keys.
    ["subcategories", "techniques", "entries", "items", "risks"]
        .iter()
        .find_map(|k| v.get(*k).and_then(Value::as_array))
        .map(|a| a.iter().filter(|e| e.get("id").is_some()).collect())
        .unwrap_or_default()
}

fn load(name: &'static str, json: &str, groups: impl Fn(&Value) -> Vec<String>) -> Taxonomy {
    let v: Value = serde_json::from_str(json).unwrap_or(Value::Null);
    // Only ATLAS has a short version worth quoting in messages; the other names carry their year.
    let version = v["atlas_version"].as_str().unwrap_or("").to_owned();
    let mut map = BTreeMap::new();
    let all = entries(&v);
    for e in &all {
        let Some(id) = e["id"].as_str() else { continue };
        let name = e["name"]
            .as_str()
            .or_else(|| e["title"].as_str())
            .unwrap_or("")
            .to_owned();
        map.insert(
            id.to_owned(),
            Entry {
                id: id.to_owned(),
                name,
                groups: groups(e),
            },
        );
    }
    // ATLAS sub-techniques inherit their parent's tactics.
    let inherited: Vec<(String, Vec<String>)> = map
        .values()
        .filter(|e| e.groups.is_empty())
        .filter_map(|e| {
            let parent = e.id.rsplit_once('.').map(|(p, _)| p)?;
            Some((e.id.clone(), map.get(parent)?.groups.clone()))
        })
        .collect();
    for (id, g) in inherited {
        if let Some(e) = map.get_mut(&id) {
            e.groups = g;
        }
    }
    Taxonomy {
        name,
        version,
        entries: map,
    }
}

fn strings(v: &Value) -> Vec<String> {
    v.as_array()
        .map(|a| {
            a.iter()
                .filter_map(|s| s.as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default()
}

/// MITRE ATLAS techniques and sub-techniques (`AML.T0043`, `AML.T0051.001`).
pub fn atlas() -> &'static Taxonomy {
    static T: OnceLock<Taxonomy> = OnceLock::new();
    T.get_or_init(|| load("MITRE ATLAS", ATLAS_JSON, |e| strings(&e["tactics"])))
}

/// NIST AI RMF 1.0 subcategories (`GOVERN 1.1` … `MANAGE 4.3`).
pub fn nist_ai_rmf() -> &'static Taxonomy {
    static T: OnceLock<Taxonomy> = OnceLock::new();
    T.get_or_init(|| {
        load("NIST AI RMF 1.0", NIST_JSON, |e| {
            let f = e["function"].as_str().map(str::to_owned).or_else(|| {
                e["id"]
                    .as_str()
                    .and_then(|id| id.split_whitespace().next())
                    .map(str::to_owned)
            });
            f.into_iter().collect()
        })
    })
}

/// OWASP Top 10 for LLM Applications 2025 (`LLM01` … `LLM10`).
pub fn owasp_llm() -> &'static Taxonomy {
    static T: OnceLock<Taxonomy> = OnceLock::new();
    T.get_or_init(|| {
        load(
            "OWASP Top 10 for LLM Applications 2025",
            LLM_JSON,
            |_| vec![],
        )
    })
}

/// OWASP Machine Learning Security Top Ten (`ML01` … `ML10`).
pub fn owasp_ml() -> &'static Taxonomy {
    static T: OnceLock<Taxonomy> = OnceLock::new();
    T.get_or_init(|| {
        load(
            "OWASP Machine Learning Security Top Ten",
            ML_JSON,
            |_| vec![],
        )
    })
}

/// Looks an id up. OWASP ids may carry their list's year (`LLM01:2025`, `ML01:2023`) and any letter
/// case; another year is a different list and is not accepted.
pub fn lookup<'t>(tax: &'t Taxonomy, id: &str) -> Option<&'t Entry> {
    if let Some(e) = tax.get(id) {
        return Some(e);
    }
    let year = match tax.name {
        n if n.starts_with("OWASP Top 10 for LLM") => "2025",
        n if n.starts_with("OWASP Machine Learning") => "2023",
        _ => return None,
    };
    let (base, suffix) = match id.split_once(':') {
        Some((b, y)) => (b, Some(y)),
        None => (id, None),
    };
    if suffix.is_some_and(|y| y != year) {
        return None;
    }
    tax.get(&base.to_ascii_uppercase())
}

/// The closest known id, for "did you mean" hints.
pub fn suggest<'t>(tax: &'t Taxonomy, id: &str) -> Option<&'t str> {
    tax.entries
        .keys()
        .map(|k| (edit_distance(k, id), k))
        .filter(|(d, _)| *d <= 3)
        .min()
        .map(|(_, k)| k.as_str())
}

fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().take(64).collect();
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().take(64).enumerate() {
        let mut cur = vec![i + 1];
        for (j, cb) in b.iter().enumerate() {
            cur.push(
                (prev[j] + usize::from(ca != *cb))
                    .min(prev[j + 1] + 1)
                    .min(cur[j] + 1),
            );
        }
        prev = cur;
    }
    prev[b.len()]
}
