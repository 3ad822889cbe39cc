//! Diagnostics: every problem found in a register, with its line and column, a stable code, and a
//! message that says what was expected.

use serde::Serialize;

use crate::yaml::Pos;

/// How bad a problem is: errors fail `warden risk check`, warnings do not.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    Error,
    Warning,
}

/// One problem.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Diagnostic {
    pub line: usize,
    pub col: usize,
    pub severity: Severity,
    /// A stable, kebab-case name of the kind of problem (`unknown-atlas-id`, `evidence-failing`…).
    pub code: &'static str,
    pub message: String,
}

impl Diagnostic {
    /// `file:line:col: error[code]: message`, the format of compilers and linters.
    pub fn render(&self, file: &str) -> String {
        let sev = match self.severity {
            Severity::Error => "error",
            Severity::Warning => "warning",
        };
        format!(
            "{file}:{}:{}: {sev}[{}]: {}",
            self.line, self.col, self.code, self.message
        )
    }
}

/// The problems found so far.
#[derive(Debug, Clone, Default)]
pub struct Diagnostics {
    items: Vec<Diagnostic>,
    dropped: usize,
}

/// Most problems kept; past this, they are counted and summarised.
pub const MAX_DIAGNOSTICS: usize = 1000;

impl Diagnostics {
    /// Records an error.
    pub fn error(&mut self, pos: Pos, code: &'static str, message: impl Into<String>) {
        self.push(pos, Severity::Error, code, message.into());
    }

    /// Records a warning.
    pub fn warning(&mut self, pos: Pos, code: &'static str, message: impl Into<String>) {
        self.push(pos, Severity::Warning, code, message.into());
    }

    fn push(&mut self, pos: Pos, severity: Severity, code: &'static str, message: String) {
        if self.items.len() >= MAX_DIAGNOSTICS {
            self.dropped += 1;
            return;
        }
        // Text from the register is shown in terminals: control characters are escaped.
        let message = if message.chars().any(char::is_control) {
            message
                .chars()
                .map(|c| {
                    if c.is_control() {
                        c.escape_default().to_string()
                    } else {
                        c.to_string()
                    }
                })
                .collect()
        } else {
            message
        };
        self.items.push(Diagnostic {
            line: pos.line,
            col: pos.col,
            severity,
            code,
            message,
        });
    }

    /// All problems, in source order.
    pub fn into_sorted(mut self) -> Vec<Diagnostic> {
        self.items.sort_by(|a, b| {
            (a.line, a.col, a.severity, a.code).cmp(&(b.line, b.col, b.severity, b.code))
        });
        self.items.dedup();
        if self.dropped > 0 {
            let last = self.items.last().map_or(1, |d| d.line);
            self.items.push(Diagnostic {
                line: last,
                col: 1,
                severity: Severity::Error,
                code: "too-many-problems",
                message: format!(
                    "{} more problems not shown; fix the ones above first",
                    self.dropped
                ),
            });
        }
        self.items
    }
}
