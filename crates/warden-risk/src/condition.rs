//! Evidence conditions: `robust_accuracy >= 0.80`, `attacks.pgd.robust_accuracy > 0.7`,
//! `per_class[3].recall >= 0.9`, `passed == true`, `status == "ok"`. A condition names a value in a JSON
//! report by a dotted path (with `[n]` for list items), compares it with a literal, and holds or not.

use serde_json::Value;

/// A comparison operator.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Op {
    Ge,
    Gt,
    Le,
    Lt,
    Eq,
    Ne,
}

impl Op {
    fn as_str(self) -> &'static str {
        match self {
            Op::Ge => ">=",
            Op::Gt => ">",
            Op::Le => "<=",
            Op::Lt => "<",
            Op::Eq => "==",
            Op::Ne => "!=",
        }
    }
}

/// One step of a path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Step {
    Key(String),
    Index(usize),
}

/// The literal a value is compared with.
#[derive(Debug, Clone, PartialEq)]
pub enum Literal {
    /// A number; integers also keep their exact value, so that large integers compare exactly.
    Number(f64, Option<i128>),
    Bool(bool),
    Text(String),
}

/// A parsed condition.
#[derive(Debug, Clone, PartialEq)]
pub struct Condition {
    pub path: Vec<Step>,
    pub op: Op,
    pub literal: Literal,
    source: String,
}

impl std::fmt::Display for Condition {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.source)
    }
}

/// What evaluating a condition found.
#[derive(Debug, Clone, PartialEq)]
pub enum Outcome {
    /// The condition holds; the value found.
    Holds(String),
    /// The condition does not hold; the value found.
    Fails(String),
    /// The path names nothing in the report, or a value of the wrong type.
    Unusable(String),
}

const EXPECTED: &str =
    "`<path> <op> <value>`, e.g. `robust_accuracy >= 0.80`, with op one of >= > <= < == !=";

impl Condition {
    /// Parses a condition; the error says what was expected.
    pub fn parse(text: &str) -> Result<Condition, String> {
        let text = text.trim();
        if text.len() > 512 {
            return Err("condition is longer than 512 characters".into());
        }
        let (at, op) = ["<=", ">=", "==", "!=", "<", ">"]
            .iter()
            .filter_map(|op| text.find(op).map(|i| (i, *op)))
            .min_by_key(|(i, op)| (*i, std::cmp::Reverse(op.len())))
            .ok_or_else(|| format!("no comparison in `{text}`; expected {EXPECTED}"))?;
        let op = match op {
            ">=" => Op::Ge,
            ">" => Op::Gt,
            "<=" => Op::Le,
            "<" => Op::Lt,
            "==" => Op::Eq,
            _ => Op::Ne,
        };
        let lhs = text[..at].trim_end();
        let rhs = text[at + op.as_str().len()..].trim();
        if let Some(c) = lhs
            .chars()
            .last()
            .filter(|c| matches!(c, '=' | '!' | '<' | '>'))
        {
            return Err(format!(
                "`{c}{}` is not a comparison; expected one of >= > <= < == !=",
                op.as_str()
            ));
        }
        if let Some(c) = rhs.chars().next().filter(|c| matches!(c, '=' | '<' | '>')) {
            return Err(format!(
                "`{}{c}` is not a comparison; expected one of >= > <= < == !=",
                op.as_str()
            ));
        }
        let path = parse_path(lhs.trim())?;
        let literal = if rhs == "true" || rhs == "false" {
            Literal::Bool(rhs == "true")
        } else if rhs.starts_with('"') {
            // A JSON string literal, so `\"` and `\\` mean what they mean in the report.
            match serde_json::from_str::<String>(rhs) {
                Ok(s) => Literal::Text(s),
                Err(_) => {
                    return Err(format!(
                        "`{rhs}` is not a complete \"quoted string\"; expected {EXPECTED}"
                    ));
                }
            }
        } else {
            match rhs.parse::<f64>() {
                Ok(n) if n.is_finite() => Literal::Number(n, rhs.parse::<i128>().ok()),
                _ => {
                    return Err(format!(
                        "`{rhs}` is not a number, true, false or a \"quoted string\"; expected {EXPECTED}"
                    ));
                }
            }
        };
        if matches!(literal, Literal::Bool(_) | Literal::Text(_)) && !matches!(op, Op::Eq | Op::Ne)
        {
            return Err(format!(
                "`{}` compares numbers; use == or != with true, false or text",
                op.as_str()
            ));
        }
        Ok(Condition {
            path,
            op,
            literal,
            source: text.to_owned(),
        })
    }

    /// Evaluates the condition against a JSON report.
    pub fn evaluate(&self, report: &Value) -> Outcome {
        let mut v = report;
        for step in &self.path {
            let next = match step {
                Step::Key(k) => v.get(k.as_str()),
                Step::Index(i) => v.get(*i),
            };
            match next {
                Some(n) => v = n,
                None => {
                    return Outcome::Unusable(format!(
                        "the report has no `{}`",
                        path_text(&self.path)
                    ));
                }
            }
        }
        let shown = match v {
            Value::String(s) => format!("{s:?}"),
            other => other.to_string(),
        };
        let holds = match (&self.literal, v) {
            (Literal::Number(want, exact), Value::Number(n)) => {
                let int = n
                    .as_i64()
                    .map(i128::from)
                    .or_else(|| n.as_u64().map(i128::from));
                let ord = match (exact, int) {
                    // Both integers: exact, even beyond 2^53.
                    (Some(w), Some(x)) => x.cmp(w),
                    _ => {
                        let Some(x) = n.as_f64() else {
                            return Outcome::Unusable(format!(
                                "`{}` is not a usable number",
                                path_text(&self.path)
                            ));
                        };
                        match x.partial_cmp(want) {
                            Some(o) => o,
                            None => {
                                return Outcome::Unusable(format!(
                                    "`{}` is not a usable number",
                                    path_text(&self.path)
                                ));
                            }
                        }
                    }
                };
                match self.op {
                    Op::Ge => ord.is_ge(),
                    Op::Gt => ord.is_gt(),
                    Op::Le => ord.is_le(),
                    Op::Lt => ord.is_lt(),
                    Op::Eq => ord.is_eq(),
                    Op::Ne => ord.is_ne(),
                }
            }
            (Literal::Bool(want), Value::Bool(b)) => (b == want) == (self.op == Op::Eq),
            (Literal::Text(want), Value::String(s)) => (s == want) == (self.op == Op::Eq),
            _ => {
                return Outcome::Unusable(format!(
                    "`{}` is {shown}, which cannot be compared with {}",
                    path_text(&self.path),
                    match &self.literal {
                        Literal::Number(..) => "a number",
                        Literal::Bool(_) => "true or false",
                        Literal::Text(_) => "text",
                    }
                ));
            }
        };
        if holds {
            Outcome::Holds(shown)
        } else {
            Outcome::Fails(shown)
        }
    }
}

fn parse_path(text: &str) -> Result<Vec<Step>, String> {
    let bad = || {
        format!(
            "`{text}` is not a path like `metrics.robust_accuracy` or `classes[3].recall`; expected {EXPECTED}"
        )
    };
    if text.is_empty() {
        return Err(bad());
    }
    let mut steps = Vec::new();
    for part in text.split('.') {
        let (name, mut rest) = match part.find('[') {
            Some(i) => (&part[..i], &part[i..]),
            None => (part, ""),
        };
        if name.is_empty()
            || !name
                .chars()
                .all(|c| c.is_alphanumeric() || c == '_' || c == '-')
        {
            return Err(bad());
        }
        steps.push(Step::Key(name.to_owned()));
        while !rest.is_empty() {
            let close = rest.find(']').ok_or_else(bad)?;
            let index = rest[1..close].parse::<usize>().map_err(|_| bad())?;
            steps.push(Step::Index(index));
            rest = &rest[close + 1..];
            if !rest.is_empty() && !rest.starts_with('[') {
                return Err(bad());
            }
        }
    }
    Ok(steps)
}

fn path_text(path: &[Step]) -> String {
    let mut s = String::new();
    for step in path {
        match step {
            Step::Key(k) => {
                if !s.is_empty() {
                    s.push('.');
                }
                s.push_str(k);
            }
            Step::Index(i) => s.push_str(&format!("[{i}]")),
        }
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn conditions_evaluate() {
        let report = json!({"robust_accuracy": 0.81, "clean": {"accuracy": 0.9}, "classes": [{"recall": 0.5}], "passed": true, "status": "ok"});
        let cases = [
            ("robust_accuracy >= 0.80", true),
            ("robust_accuracy>0.81", false),
            ("clean.accuracy <= 0.9", true),
            ("classes[0].recall < 0.6", true),
            ("passed == true", true),
            ("passed != true", false),
            ("status == \"ok\"", true),
            ("status != \"ok\"", false),
        ];
        for (text, want) in cases {
            let c = Condition::parse(text).unwrap();
            match c.evaluate(&report) {
                Outcome::Holds(_) => assert!(want, "{text}"),
                Outcome::Fails(_) => assert!(!want, "{text}"),
                Outcome::Unusable(why) => panic!("{text}: {why}"),
            }
        }
        let big = json!({"n": 18446744073709551615u64});
        for (text, want) in [
            ("n == 18446744073709551614", false),
            ("n > 18446744073709551614", true),
            ("n == 18446744073709551615", true),
        ] {
            let c = Condition::parse(text).unwrap();
            assert_eq!(
                matches!(c.evaluate(&big), Outcome::Holds(_)),
                want,
                "{text}"
            );
        }
        let missing = Condition::parse("nope.x >= 1").unwrap();
        assert!(
            matches!(missing.evaluate(&report), Outcome::Unusable(m) if m.contains("no `nope.x`"))
        );
        let wrong = Condition::parse("status >= 1").unwrap();
        assert!(
            matches!(wrong.evaluate(&report), Outcome::Unusable(m) if m.contains("cannot be compared"))
        );
    }

    #[test]
    fn bad_conditions_say_what_was_expected() {
        for bad in [
            "robust_accuracy",
            ">= 0.8",
            "a >= high",
            "a.[1] > 2",
            "a > inf",
            "passed > true",
            "a[x] > 1",
        ] {
            let e = Condition::parse(bad).unwrap_err();
            assert!(e.contains("expected") || e.contains("use =="), "{bad}: {e}");
        }
    }
}
