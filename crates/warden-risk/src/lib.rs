//! `warden-risk`: the design-time risk assessment engine. A register of an AI system's threats and
//! failure modes (YAML), scored with FMEA (RPN and the AIAG-VDA Action Priority) and an ISO 31000
//! likelihood × consequence matrix, mapped to MITRE ATLAS, OWASP (LLM 2025, ML) and the NIST AI RMF,
//! with controls whose claims are checked against evidence reports.
//!
//! Pure: bytes in, values and diagnostics out. Evidence files are read through
//! [`check::EvidenceSource`], which the CLI implements.

pub mod check;
pub mod condition;
pub mod date;
pub mod diag;
pub mod register;
pub mod report;
pub mod scoring;
pub mod taxonomy;
pub mod templates;
pub mod yaml;

pub use check::{Analysis, CheckOptions, EvidenceSource, check};
pub use date::Date;
pub use diag::{Diagnostic, Severity};
pub use scoring::{ActionPriority, Matrix, action_priority, rpn};

/// The JSON Schema of the register format (draft 2020-12), printed by `warden risk schema`.
pub const SCHEMA: &str = include_str!("../schema/register.schema.json");
