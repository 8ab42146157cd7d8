//! Semantic checks of a parsed config. Returns every problem, never stops at the first.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::time::Duration;

use nix::sys::signal::Signal;

use super::{CommandSpec, Config, ProbeConfig, Problem, ProcessConfig, StackEntry, StorageConfig};

/// Most instances one process may ask for.
pub const MAX_INSTANCES: u32 = 10_000;

/// All problems of `config`; empty when it is valid.
pub fn validate(config: &Config) -> Vec<Problem> {
    let mut p = Vec::new();
    stacks(config, &mut p);
    if let Some(s) = &config.storage {
        storage(s, &mut p);
    }
    env_map(&config.env, "env", &mut p);
    if let Some(id) = &config.node_id
        && !is_name(id)
    {
        p.push(Problem::new("node_id", name_rule()));
    }
    others(config, &mut p);
    p
}

fn name_rule() -> &'static str {
    "must be 1-64 characters of letters, digits, '.', '_' or '-', starting with a letter or digit"
}

/// Names of processes, stacks and nodes: safe in paths, URLs and globs.
pub fn is_name(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 64
        && s.chars().next().is_some_and(|c| c.is_ascii_alphanumeric())
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'))
}

/// Names of the instances of a stack: the name itself when `instances` is unset, else
/// `name-1 … name-N`.
pub fn instance_names(name: &str, instances: Option<u32>) -> Vec<String> {
    match instances {
        None => vec![name.to_string()],
        Some(n) => (1..=n).map(|i| format!("{name}-{i}")).collect(),
    }
}

/// `SIGTERM`, `TERM`, `term` or `15`.
pub fn parse_signal(s: &str) -> Result<Signal, String> {
    let t = s.trim();
    let sig = if let Ok(n) = t.parse::<i32>() {
        Signal::try_from(n).ok()
    } else {
        let up = t.to_ascii_uppercase();
        let full = if up.starts_with("SIG") {
            up
        } else {
            format!("SIG{up}")
        };
        full.parse::<Signal>().ok()
    };
    sig.ok_or_else(|| {
        format!("unknown signal {s:?}: use a name like \"SIGTERM\", \"INT\" or a number like 15")
    })
}

fn stacks(config: &Config, p: &mut Vec<Problem>) {
    let mut seen: HashMap<&str, usize> = HashMap::new();
    let mut expanded: BTreeMap<String, usize> = BTreeMap::new();
    for (i, entry) in config.stacks.iter().enumerate() {
        let name = entry.name();
        let path = match entry {
            StackEntry::Dir(_) => format!("stacks[{i}]"),
            StackEntry::Inline(_) => format!("stacks[{i}].name"),
        };
        if name.is_empty() {
            p.push(Problem::new(path, "a name is required"));
            continue;
        }
        if !is_name(name) {
            p.push(Problem::new(
                path,
                format!("invalid name {name:?}: {}", name_rule()),
            ));
            continue;
        }
        if let Some(first) = seen.insert(name, i) {
            p.push(Problem::new(
                path.clone(),
                format!("duplicate name {name:?} (also stacks[{first}])"),
            ));
        }
        let instances = match entry {
            StackEntry::Inline(pc) => pc.instances.map(|n| n.min(MAX_INSTANCES)),
            StackEntry::Dir(_) => None,
        };
        for n in instance_names(name, instances) {
            if let Some(first) = expanded.insert(n.clone(), i)
                && first != i
            {
                p.push(Problem::new(
                    path.clone(),
                    format!("process name {n:?} is used twice (stacks[{first}] and stacks[{i}]); rename one"),
                ));
            }
        }
        if let StackEntry::Inline(pc) = entry {
            process(pc, &format!("stacks[{i}]"), p);
        }
    }
    dependencies(config, &seen, p);
    ports(config, p);
}

fn process(pc: &ProcessConfig, base: &str, p: &mut Vec<Problem>) {
    let at = |f: &str| format!("{base}.{f}");
    if pc.command.trim().is_empty() {
        p.push(Problem::new(
            at("command"),
            "a command is required, e.g. \"/usr/bin/myapp\" or \"sleep 10\"",
        ));
    }
    if let Some(n) = pc.instances
        && !(1..=MAX_INSTANCES).contains(&n)
    {
        p.push(Problem::new(
            at("instances"),
            format!("must be between 1 and {MAX_INSTANCES}, got {n}"),
        ));
    }
    if let Some(sig) = &pc.stop_signal
        && let Err(e) = parse_signal(sig)
    {
        p.push(Problem::new(at("stop_signal"), e));
    }
    env_map(&pc.env, &at("env"), p);
    for (j, w) in pc.watch.iter().enumerate() {
        if w.as_os_str().is_empty() {
            p.push(Problem::new(
                format!("{base}.watch[{j}]"),
                "a watched path must not be empty",
            ));
        }
    }
    for (field, cmd) in [
        ("checkpoint_command", &pc.checkpoint_command),
        ("restore_command", &pc.restore_command),
    ] {
        if cmd.as_ref().is_some_and(CommandSpec::is_empty) {
            p.push(Problem::new(at(field), "the command must not be empty"));
        }
    }
    if let Some(r) = &pc.readiness {
        probe(r, &at("readiness"), p);
    }
    if let Some(l) = &pc.liveness {
        probe(l, &at("liveness"), p);
        if l.start_timeout.is_some() {
            p.push(Problem::new(
                at("liveness.start_timeout"),
                "only a readiness probe has a start_timeout",
            ));
        }
    }
    for (field, pr) in [("readiness", &pc.readiness), ("liveness", &pc.liveness)] {
        match pr.as_ref().and_then(|pr| pr.tcp.as_ref()) {
            Some(super::TcpTarget::FirstPort(false)) => p.push(Problem::new(
                at(&format!("{field}.tcp")),
                "use a port (5050), \"host:5050\", or true for the first of `ports`",
            )),
            Some(super::TcpTarget::FirstPort(true)) if pc.ports.is_empty() => p.push(Problem::new(
                at(&format!("{field}.tcp")),
                "true means the first of `ports`, but the process has no ports; name a port",
            )),
            _ => {}
        }
    }
    if pc.instances.unwrap_or(1) > 1 && !pc.ports.is_empty() {
        p.push(Problem::new(
            at("ports"),
            "a process with several instances cannot own fixed ports; give each its own process",
        ));
    }
}

fn probe(pr: &ProbeConfig, base: &str, p: &mut Vec<Problem>) {
    let kinds = pr.kinds();
    if kinds.len() != 1 {
        p.push(Problem::new(
            base,
            format!(
                "a probe needs exactly one of \"exec\", \"http\", \"tcp\" or \"log_line\" (found {})",
                if kinds.is_empty() { "none".to_string() } else { kinds.join(", ") }
            ),
        ));
    }
    if pr.exec.as_ref().is_some_and(CommandSpec::is_empty) {
        p.push(Problem::new(
            format!("{base}.exec"),
            "the command must not be empty",
        ));
    }
    if let Some(url) = &pr.http {
        match reqwest::Url::parse(&url.replace("{instance}", "1")) {
            Ok(u) if u.scheme() == "http" || u.scheme() == "https" => {}
            _ => p.push(Problem::new(
                format!("{base}.http"),
                format!("invalid URL {url:?}: expected e.g. \"http://127.0.0.1:8080/health\""),
            )),
        }
    }
    if let Some(super::TcpTarget::Addr(a)) = &pr.tcp
        && a.rsplit_once(':')
            .and_then(|(_, port)| port.parse::<u16>().ok())
            .is_none()
    {
        p.push(Problem::new(
            format!("{base}.tcp"),
            format!("invalid address {a:?}: use a port (5050) or \"host:5050\""),
        ));
    }
    if let Some(re) = &pr.log_line
        && let Err(e) = regex::Regex::new(re)
    {
        p.push(Problem::new(
            format!("{base}.log_line"),
            format!("invalid regex: {e}"),
        ));
    }
    if pr.period.get().is_zero() {
        p.push(Problem::new(
            format!("{base}.period"),
            "must be greater than zero, e.g. \"1s\"",
        ));
    }
    if pr.timeout.get().is_zero() {
        p.push(Problem::new(
            format!("{base}.timeout"),
            "must be greater than zero, e.g. \"1s\"",
        ));
    }
    if pr.failures == 0 {
        p.push(Problem::new(
            format!("{base}.failures"),
            "must be at least 1",
        ));
    }
}

fn dependencies(config: &Config, names: &HashMap<&str, usize>, p: &mut Vec<Problem>) {
    let mut graph: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
    for (i, entry) in config.stacks.iter().enumerate() {
        let StackEntry::Inline(pc) = entry else {
            continue;
        };
        for (j, dep) in pc.depends_on.iter().enumerate() {
            let path = format!("stacks[{i}].depends_on[{j}]");
            if dep == &pc.name {
                p.push(Problem::new(path, "a process cannot depend on itself"));
            } else if !names.contains_key(dep.as_str()) {
                let known: Vec<_> = config.stack_names().collect();
                p.push(Problem::new(
                    path,
                    format!("unknown stack {dep:?}; known stacks: {}", known.join(", ")),
                ));
            } else {
                graph
                    .entry(pc.name.as_str())
                    .or_default()
                    .push(dep.as_str());
            }
        }
    }
    if let Some(cycle) = find_cycle(&graph) {
        p.push(Problem::new(
            "stacks",
            format!("dependency cycle: {}", cycle.join(" -> ")),
        ));
    }
}

/// A cycle in `graph` as a path that returns to its start, if any.
fn find_cycle<'a>(graph: &BTreeMap<&'a str, Vec<&'a str>>) -> Option<Vec<&'a str>> {
    fn visit<'a>(
        n: &'a str,
        graph: &BTreeMap<&'a str, Vec<&'a str>>,
        done: &mut BTreeSet<&'a str>,
        stack: &mut Vec<&'a str>,
    ) -> Option<Vec<&'a str>> {
        if let Some(pos) = stack.iter().position(|s| *s == n) {
            let mut c = stack[pos..].to_vec();
            c.push(n);
            return Some(c);
        }
        if done.contains(n) {
            return None;
        }
        stack.push(n);
        for d in graph.get(n).into_iter().flatten() {
            if let Some(c) = visit(d, graph, done, stack) {
                return Some(c);
            }
        }
        stack.pop();
        done.insert(n);
        None
    }
    let mut done = BTreeSet::new();
    graph
        .keys()
        .find_map(|n| visit(n, graph, &mut done, &mut Vec::new()))
}

fn ports(config: &Config, p: &mut Vec<Problem>) {
    let mut owner: HashMap<u16, usize> = HashMap::new();
    for (i, entry) in config.stacks.iter().enumerate() {
        let StackEntry::Inline(pc) = entry else {
            continue;
        };
        for (j, port) in pc.ports.iter().enumerate() {
            let path = format!("stacks[{i}].ports[{j}]");
            if *port == 0 {
                p.push(Problem::new(path, "port 0 is not a port; use 1-65535"));
            } else if let Some(first) = owner.insert(*port, i)
                && first != i
            {
                p.push(Problem::new(
                    path,
                    format!("port {port} is already owned by stacks[{first}]"),
                ));
            }
        }
    }
}

fn env_map(env: &BTreeMap<String, String>, base: &str, p: &mut Vec<Problem>) {
    for (k, v) in env {
        if k.is_empty() || k.contains('=') || k.contains('\0') {
            p.push(Problem::new(
                format!("{base}.{k}"),
                "an environment variable name must be non-empty without '=' or NUL",
            ));
        }
        if v.contains('\0') {
            p.push(Problem::new(
                format!("{base}.{k}"),
                "an environment value must not contain NUL",
            ));
        }
    }
}

fn storage(s: &StorageConfig, p: &mut Vec<Problem>) {
    let endpoint = s.endpoint.as_deref().unwrap_or("");
    let local = endpoint.starts_with("file://");
    if local {
        let path = &endpoint["file://".len()..];
        if !path.starts_with('/') {
            p.push(Problem::new(
                "storage.endpoint",
                "a file endpoint needs an absolute path: \"file:///var/lib/objects\"",
            ));
        }
    } else {
        if !endpoint.is_empty() {
            match reqwest::Url::parse(endpoint) {
                Ok(u) if (u.scheme() == "http" || u.scheme() == "https") && u.host().is_some() => {}
                _ => p.push(Problem::new(
                    "storage.endpoint",
                    format!("invalid endpoint {endpoint:?}: use \"http://host:9000\", \"https://…\" or \"file:///abs/path\""),
                )),
            }
        }
        match s.bucket.as_deref() {
            None | Some("") => p.push(Problem::new(
                "storage.bucket",
                "a bucket is required for S3 storage",
            )),
            Some(b) if !valid_bucket(b) => p.push(Problem::new(
                "storage.bucket",
                format!(
                    "invalid bucket name {b:?}: up to 63 lowercase letters, digits, '.' or '-'"
                ),
            )),
            _ => {}
        }
    }
    if s.access_key.is_some() != s.secret_key.is_some() {
        p.push(Problem::new(
            "storage",
            "access_key and secret_key go together: set both or neither",
        ));
    }
    if let Some(prefix) = &s.key_prefix
        && (prefix.starts_with('/')
            || prefix.ends_with('/')
            || prefix
                .split('/')
                .any(|seg| seg.is_empty() || seg == "." || seg == "..")
            || prefix.chars().any(|c| c.is_control() || c == '\\'))
    {
        p.push(Problem::new(
            "storage.key_prefix",
            format!("invalid key prefix {prefix:?}: use segments like \"env-1\" or \"team/env-1\", without '..' or leading/trailing '/'"),
        ));
    }
    if let Some(d) = &s.env_dir
        && !d.is_absolute()
    {
        p.push(Problem::new(
            "storage.env_dir",
            "must be an absolute path, e.g. \"/data/env\"",
        ));
    }
}

fn valid_bucket(b: &str) -> bool {
    (1..=63).contains(&b.len())
        && b.chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '.' || c == '-')
}

fn others(c: &Config, p: &mut Vec<Problem>) {
    let r = &c.replication;
    if r.interval.get() < Duration::from_millis(10) {
        p.push(Problem::new(
            "replication.interval",
            "must be at least \"10ms\"",
        ));
    }
    if r.snapshot_interval.get() < r.interval.get() {
        p.push(Problem::new(
            "replication.snapshot_interval",
            "must not be shorter than replication.interval",
        ));
    }
    if r.retention.get() < r.snapshot_interval.get() {
        p.push(Problem::new(
            "replication.retention",
            "must not be shorter than replication.snapshot_interval",
        ));
    }
    let l = &c.lease;
    if l.ttl.get() < Duration::from_secs(3) {
        p.push(Problem::new("lease.ttl", "must be at least \"3s\""));
    }
    if l.poll_interval.get().is_zero() || l.poll_interval.get() >= l.ttl.get() {
        p.push(Problem::new(
            "lease.poll_interval",
            "must be greater than zero and shorter than lease.ttl",
        ));
    }
    if l.clock_skew.get() * 3 >= l.ttl.get() {
        p.push(Problem::new(
            "lease.clock_skew",
            "must be less than a third of lease.ttl",
        ));
    }
    let k = &c.checkpoint;
    if !(1..=256).contains(&k.concurrency) {
        p.push(Problem::new(
            "checkpoint.concurrency",
            "must be between 1 and 256",
        ));
    }
    if k.keep_last == Some(0) {
        p.push(Problem::new(
            "checkpoint.keep_last",
            "must be at least 1 (leave it out to keep all)",
        ));
    }
    for (i, pat) in k.exclude.iter().enumerate() {
        if let Err(e) = glob::Pattern::new(pat) {
            p.push(Problem::new(
                format!("checkpoint.exclude[{i}]"),
                format!("invalid pattern: {e}"),
            ));
        }
    }
    for (name, h) in [
        ("pre_start", &c.hooks.pre_start),
        ("post_stop", &c.hooks.post_stop),
        ("on_shutdown", &c.hooks.on_shutdown),
    ] {
        if h.as_ref().is_some_and(|h| h.command.is_empty()) {
            p.push(Problem::new(
                format!("hooks.{name}.command"),
                "the command must not be empty",
            ));
        }
    }
    for (i, w) in c.webhooks.iter().enumerate() {
        match reqwest::Url::parse(&w.url) {
            Ok(u) if u.scheme() == "http" || u.scheme() == "https" => {}
            _ => p.push(Problem::new(
                format!("webhooks[{i}].url"),
                format!("invalid URL {:?}: expected http(s)://…", w.url),
            )),
        }
        if w.batch_size == 0 || w.queue_capacity < w.batch_size {
            p.push(Problem::new(
                format!("webhooks[{i}]"),
                "batch_size must be at least 1 and queue_capacity at least batch_size",
            ));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn problems(json: &str) -> Vec<Problem> {
        let c: Config = serde_json::from_str(json).unwrap();
        validate(&c)
    }

    #[test]
    fn signals_parse_in_every_spelling() {
        assert_eq!(parse_signal("SIGTERM").unwrap(), Signal::SIGTERM);
        assert_eq!(parse_signal("int").unwrap(), Signal::SIGINT);
        assert_eq!(parse_signal("9").unwrap(), Signal::SIGKILL);
        assert!(parse_signal("SIGNOPE").is_err());
    }

    #[test]
    fn dependency_cycle_and_unknown_names() {
        let p = problems(
            r#"{"stacks": [{"name": "a", "command": "x", "depends_on": ["b"]},
                           {"name": "b", "command": "x", "depends_on": ["a", "zz"]}]}"#,
        );
        assert!(
            p.iter().any(|p| p.message.contains("cycle: a -> b -> a")),
            "{p:#?}"
        );
        assert!(
            p.iter()
                .any(|p| p.path == "stacks[1].depends_on[1]" && p.message.contains("zz")),
            "{p:#?}"
        );
    }

    #[test]
    fn instance_names_clash_with_other_processes() {
        let p = problems(
            r#"{"stacks": [{"name": "web", "command": "x", "instances": 2}, {"name": "web-2", "command": "y"}]}"#,
        );
        assert!(
            p.iter()
                .any(|p| p.message.contains("\"web-2\" is used twice")),
            "{p:#?}"
        );
    }

    #[test]
    fn names_cannot_traverse() {
        let p = problems(r#"{"stacks": ["../etc", "ok"]}"#);
        assert_eq!(p.len(), 1, "{p:#?}");
        assert_eq!(p[0].path, "stacks[0]");
    }

    #[test]
    fn storage_rules() {
        let p = problems(
            r#"{"storage": {"endpoint": "minio:9000", "key_prefix": "../x", "access_key": "a"}}"#,
        );
        let paths: BTreeSet<_> = p.iter().map(|p| p.path.as_str()).collect();
        for want in [
            "storage.endpoint",
            "storage.bucket",
            "storage.key_prefix",
            "storage",
        ] {
            assert!(paths.contains(want), "{want}: {p:#?}");
        }
        assert!(problems(r#"{"storage": {"endpoint": "file:///tmp/objs"}}"#).is_empty());
    }

    #[test]
    fn probes_need_exactly_one_kind() {
        let p = problems(
            r#"{"stacks": [{"name": "a", "command": "x", "readiness": {"tcp": 1, "http": "http://h/"}}]}"#,
        );
        assert!(
            p.iter()
                .any(|p| p.path == "stacks[0].readiness" && p.message.contains("exactly one")),
            "{p:#?}"
        );
    }

    #[test]
    fn tcp_true_needs_ports() {
        let p = problems(
            r#"{"stacks": [{"name": "a", "command": "x", "readiness": {"tcp": true}},
                           {"name": "b", "command": "x", "liveness": {"tcp": false}, "ports": [9]},
                           {"name": "c", "command": "x", "readiness": {"tcp": true}, "ports": [10]}]}"#,
        );
        let paths: Vec<_> = p.iter().map(|p| p.path.as_str()).collect();
        assert_eq!(
            paths,
            ["stacks[0].readiness.tcp", "stacks[1].liveness.tcp"],
            "{p:#?}"
        );
    }
}
