//! Parsing with whole-file diagnostics, redaction for display, and atomic persistence.

use std::fmt;
use std::path::Path;

use serde::de::DeserializeOwned;
use serde_json::{Map, Value};

use super::{Config, ProcessConfig, validate};

/// One thing wrong with a config, at a field path such as `stacks[1].stop_timeout`.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, utoipa::ToSchema)]
#[schema(as = ConfigProblem)]
pub struct Problem {
    pub path: String,
    pub message: String,
}

impl Problem {
    pub fn new(path: impl Into<String>, message: impl Into<String>) -> Self {
        Problem {
            path: path.into(),
            message: message.into(),
        }
    }
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.path.is_empty() {
            write!(f, "{}", self.message)
        } else {
            write!(f, "{}: {}", self.path, self.message)
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read config file {path}: {source}")]
    Read {
        path: String,
        source: std::io::Error,
    },
    #[error("config is not valid JSON (line {line}, column {column}): {message}")]
    Syntax {
        line: usize,
        column: usize,
        message: String,
    },
    #[error("config has {} problem(s):\n{}", .0.len(), list(.0))]
    Invalid(Vec<Problem>),
}

fn list(problems: &[Problem]) -> String {
    problems
        .iter()
        .map(|p| format!("  - {p}"))
        .collect::<Vec<_>>()
        .join("\n")
}

/// Read and parse a config file.
pub fn parse_file(path: &Path) -> Result<Config, ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
        path: path.display().to_string(),
        source,
    })?;
    parse(&text)
}

/// Parse and validate a config document, reporting every problem at once. Settings from the
/// environment ([`super::apply_env`]) are applied before validation.
pub fn parse(text: &str) -> Result<Config, ConfigError> {
    parse_with_env(text, |k| std::env::var(k).ok())
}

/// [`parse`] with the environment given explicitly.
pub fn parse_with_env(
    text: &str,
    env: impl Fn(&str) -> Option<String>,
) -> Result<Config, ConfigError> {
    let value: Value = serde_json::from_str(text).map_err(|e| ConfigError::Syntax {
        line: e.line(),
        column: e.column(),
        message: e.to_string(),
    })?;
    if !value.is_object() {
        return Err(ConfigError::Invalid(vec![not_an_object()]));
    }
    let mut problems = Vec::new();
    let config = match typed::<Config>(value.clone(), "") {
        Ok(mut c) => {
            super::apply_env(&mut c, &env);
            c
        }
        Err(_) => {
            let (clean, removed) = diagnose(value, &mut problems);
            let Ok(mut config) = typed::<Config>(clean, "") else {
                return Err(ConfigError::Invalid(problems));
            };
            super::apply_env(&mut config, &env);
            // Validate what parsed, leaving out complaints about fields already reported.
            let extra = validate(&config);
            problems.extend(extra.into_iter().filter(|p| !removed.contains(&p.path)));
            return Err(ConfigError::Invalid(problems));
        }
    };
    problems.extend(validate(&config));
    if problems.is_empty() {
        Ok(config)
    } else {
        Err(ConfigError::Invalid(problems))
    }
}

fn not_an_object() -> Problem {
    Problem::new(
        "",
        "the config must be a JSON object like {\"stacks\": [...]}",
    )
}

/// Parse `stack` (one entry of `stacks`, as JSON) as an addition to `config`, validated exactly
/// like a config file: every problem at once, the paths of its own problems relative to the
/// stack (`command`, `readiness.period`). Returns the config with the stack appended, and the
/// stack.
pub fn parse_stack_into(
    config: &Config,
    stack: Value,
) -> Result<(Config, super::StackEntry), Vec<Problem>> {
    let mut doc =
        serde_json::to_value(config).map_err(|e| vec![Problem::new("", e.to_string())])?;
    let Some(stacks) = doc.get_mut("stacks").and_then(Value::as_array_mut) else {
        return Err(vec![Problem::new("", "the config has no stacks list")]);
    };
    stacks.push(stack);
    let own = format!("stacks[{}]", stacks.len() - 1);
    match parse_with_env(&doc.to_string(), |_| None) {
        Ok(c) => {
            let entry = c.stacks.last().cloned().ok_or_else(Vec::new)?;
            Ok((c, entry))
        }
        Err(ConfigError::Invalid(problems)) => Err(problems
            .into_iter()
            .map(|p| match p.path.strip_prefix(&own) {
                Some(rest) => Problem::new(rest.trim_start_matches('.'), p.message),
                None => p,
            })
            .collect()),
        Err(other) => Err(vec![Problem::new("", other.to_string())]),
    }
}

fn typed<T: DeserializeOwned>(value: Value, base: &str) -> Result<T, Problem> {
    serde_path_to_error::deserialize(super::strict::Strict(value)).map_err(|e| {
        let inner = e.path().to_string();
        let path = match (base.is_empty(), inner == ".") {
            (_, true) => base.to_string(),
            (true, false) => inner,
            (false, false) if inner.starts_with('[') => format!("{base}{inner}"),
            (false, false) => format!("{base}.{inner}"),
        };
        Problem::new(path, e.into_inner().to_string())
    })
}

/// Check each field on its own. Returns the document with offending fields removed (so the rest
/// can still be validated) and the paths that were removed.
fn diagnose(value: Value, problems: &mut Vec<Problem>) -> (Value, Vec<String>) {
    let Value::Object(top) = value else {
        problems.push(not_an_object());
        return (Value::Object(Map::new()), Vec::new());
    };
    let mut removed = Vec::new();
    let mut clean = Map::new();
    for (key, v) in top {
        if key == "stacks" {
            clean.insert(key, diagnose_stacks(v, problems, &mut removed));
            continue;
        }
        match typed::<Config>(single(&key, v.clone()), "") {
            Ok(_) => {
                clean.insert(key, v);
            }
            Err(p) => {
                removed.push(key);
                problems.push(p);
            }
        }
    }
    (Value::Object(clean), removed)
}

fn diagnose_stacks(v: Value, problems: &mut Vec<Problem>, removed: &mut Vec<String>) -> Value {
    let Value::Array(items) = v else {
        problems.push(Problem::new(
            "stacks",
            "must be an array of stack names or process objects",
        ));
        removed.push("stacks".into());
        return Value::Array(Vec::new());
    };
    let mut out = Vec::new();
    for (i, item) in items.into_iter().enumerate() {
        let base = format!("stacks[{i}]");
        match item {
            Value::String(_) => out.push(item),
            Value::Object(fields) => {
                let mut kept = Map::new();
                for (key, fv) in fields {
                    match typed::<ProcessConfig>(single(&key, fv.clone()), &base) {
                        Ok(_) => {
                            kept.insert(key, fv);
                        }
                        Err(p) => {
                            removed.push(format!("{base}.{key}"));
                            problems.push(p);
                        }
                    }
                }
                out.push(Value::Object(kept));
            }
            _ => {
                removed.push(base.clone());
                problems.push(Problem::new(
                    base,
                    "a stack is a directory name (string) or a process object {\"name\", \"command\", ...}",
                ));
            }
        }
    }
    Value::Array(out)
}

fn single(key: &str, v: Value) -> Value {
    let mut m = Map::new();
    m.insert(key.to_string(), v);
    Value::Object(m)
}

const REDACTED: &str = "***";

/// The config as JSON with every secret replaced, for `GET /config` and logs.
pub fn redacted(config: &Config) -> Value {
    let mut v = serde_json::to_value(config).unwrap_or(Value::Null);
    if let Some(storage) = v.get_mut("storage").and_then(Value::as_object_mut) {
        for key in ["secret_key", "session_token"] {
            if let Some(s) = storage.get_mut(key) {
                *s = Value::from(REDACTED);
            }
        }
    }
    if let Some(hooks) = v.get_mut("webhooks").and_then(Value::as_array_mut) {
        for h in hooks {
            if let Some(a) = h.get_mut("authorization") {
                *a = Value::from(REDACTED);
            }
        }
    }
    redact_env(v.get_mut("env"));
    if let Some(stacks) = v.get_mut("stacks").and_then(Value::as_array_mut) {
        for s in stacks {
            redact_env(s.get_mut("env"));
        }
    }
    v
}

/// Environment values whose names look like secrets are hidden.
fn redact_env(env: Option<&mut Value>) {
    let Some(Value::Object(map)) = env else {
        return;
    };
    for (k, v) in map.iter_mut() {
        if looks_secret(k) {
            *v = Value::from(REDACTED);
        }
    }
}

pub(crate) fn looks_secret(name: &str) -> bool {
    let up = name.to_ascii_uppercase();
    [
        "SECRET",
        "PASSWORD",
        "PASSWD",
        "TOKEN",
        "CREDENTIAL",
        "PRIVATE",
        "API_KEY",
        "ACCESS_KEY",
    ]
    .iter()
    .any(|s| up.contains(s))
}

/// Write `bytes` to `path` atomically with mode 0600: temp file, fsync, rename, fsync of the
/// directory. A crash leaves either the old file or the new one, never a mix.
pub fn persist(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    std::fs::create_dir_all(dir)?;
    crate::durable::write_file(path, bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn problems(text: &str) -> Vec<Problem> {
        match parse(text) {
            Err(ConfigError::Invalid(p)) => p,
            other => panic!("expected problems, got {other:?}"),
        }
    }

    #[test]
    fn seed_form_parses_as_written() {
        let c = parse(
            r#"{ "storage": { "bucket": "b", "endpoint": "http://minio:9000", "access_key": "ak",
                 "secret_key": "sk", "region": "us-east-1", "key_prefix": "env-1", "env_dir": "/data/env" },
                 "stacks": ["component1", "component2"] }"#,
        )
        .unwrap();
        assert_eq!(
            c.stack_names().collect::<Vec<_>>(),
            ["component1", "component2"]
        );
        assert_eq!(c.storage.unwrap().key_prefix.as_deref(), Some("env-1"));
    }

    #[test]
    fn reports_every_problem_at_once() {
        let p = problems(
            r#"{"bogus": 1, "stop_timeout": "9 parsecs",
                "stacks": [{"name": "a", "command": ""}, {"name": "a", "command": "x", "colour": "red"}, 7]}"#,
        );
        let paths: Vec<_> = p.iter().map(|p| p.path.as_str()).collect();
        for want in [
            "bogus",
            "stop_timeout",
            "stacks[0].command",
            "stacks[1].colour",
            "stacks[2]",
        ] {
            assert!(paths.contains(&want), "missing {want} in {p:#?}");
        }
        assert!(p.iter().any(|p| p.message.contains("duplicate")), "{p:#?}");
        let bogus = p.iter().find(|p| p.path == "bogus").unwrap();
        assert!(bogus.message.contains("unknown field"), "{bogus}");
    }

    #[test]
    fn syntax_error_names_line() {
        match parse("{\n \"stacks\": [,]\n}") {
            Err(ConfigError::Syntax { line, .. }) => assert_eq!(line, 2),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn redaction_hides_secrets() {
        let c = parse(
            r#"{"storage": {"bucket": "bkt", "access_key": "ak", "secret_key": "hunter2"}, "env": {"DB_PASSWORD": "pw", "MODE": "x"},
                "webhooks": [{"url": "http://h/", "authorization": "Bearer t"}]}"#,
        )
        .unwrap();
        let text = redacted(&c).to_string();
        assert!(
            !text.contains("hunter2") && !text.contains("\"pw\"") && !text.contains("Bearer t"),
            "{text}"
        );
        assert!(text.contains("\"MODE\":\"x\""), "{text}");
        let debug = format!("{c:?}");
        assert!(
            !debug.contains("hunter2") && !debug.contains("Bearer t"),
            "{debug}"
        );
    }

    #[test]
    fn persist_is_0600_and_atomic() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sub/config.json");
        persist(&path, b"{}").unwrap();
        let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        assert_eq!(std::fs::read(&path).unwrap(), b"{}");
        assert_eq!(
            std::fs::read_dir(path.parent().unwrap()).unwrap().count(),
            1,
            "no temp file left"
        );
    }
}
