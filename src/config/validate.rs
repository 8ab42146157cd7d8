//! Validation of a parsed config: every section's own rules (beside its types), then the checks
//! that look across sections and processes: names, dependencies and their cycles, ports.
//! Returns every problem, never stops at the first.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use super::hooks::{check_hooks, check_webhooks};
use super::limits::check_limits;
use super::process::{check_env, check_process};
use super::storage::{check_checkpoint, check_lease, check_replication, check_storage};
use super::{Config, MAX_INSTANCES, Problem, StackEntry};

/// All problems of `config`; empty when it is valid.
pub fn validate(config: &Config) -> Vec<Problem> {
    let mut p = Vec::new();
    stacks(config, &mut p);
    if let Some(s) = &config.storage {
        check_storage(s, &mut p);
    }
    check_env(&config.env, "env", &mut p);
    if let Some(id) = &config.node_id
        && !is_name(id)
    {
        p.push(Problem::new("node_id", name_rule()));
    }
    check_replication(&config.replication, &mut p);
    check_lease(&config.lease, &mut p);
    check_checkpoint(&config.checkpoint, &mut p);
    check_hooks(&config.hooks, &mut p);
    check_webhooks(&config.webhooks, &mut p);
    check_limits(config, &mut p);
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

/// The globs over process names the API takes (`web-*`, `worker-?`, `web-[12]`), as the API
/// description states them: name characters, `?`, `*` (never two in a row), and classes of name
/// characters and ranges (`[12]`, `[1-3]`, `[!x]`). [`name_glob`] takes exactly what this matches.
pub const NAME_GLOB: &str = r"^((\*?([A-Za-z0-9._-]|\?|\[!?[A-Za-z0-9._-]+\]))+\*?|\*)$";

/// A glob over process names, or why not: the one check for every pattern a request carries.
pub fn name_glob(s: &str) -> Result<glob::Pattern, String> {
    static RE: std::sync::LazyLock<regex::Regex> =
        std::sync::LazyLock::new(|| regex::Regex::new(NAME_GLOB).expect("a valid regex"));
    if !RE.is_match(s) {
        return Err(
            "use letters, digits, '.', '_', '-', '?', '*' (not two in a row) and classes like [12], [1-3] or [!x]"
                .into(),
        );
    }
    glob::Pattern::new(s).map_err(|e| e.msg.to_string())
}

/// [`NAME_GLOB`] in the API description.
pub struct NameGlob;

impl utoipa::PartialSchema for NameGlob {
    fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
        utoipa::openapi::ObjectBuilder::new()
            .schema_type(utoipa::openapi::schema::Type::String)
            .description(Some(
                "A process name, or a glob over names such as `web-*`.",
            ))
            .pattern(Some(NAME_GLOB))
            .examples(["web-*"])
            .into()
    }
}

impl utoipa::ToSchema for NameGlob {}

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
        for n in super::process::instance_names(name, instances) {
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
            check_process(pc, &format!("stacks[{i}]"), p);
        }
    }
    dependencies(config, &seen, p);
    ports(config, p);
}

fn dependencies(config: &Config, names: &HashMap<&str, usize>, p: &mut Vec<Problem>) {
    let mut graph: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
    // The path of each edge, so that a cycle is reported at the `depends_on` entry closing it.
    let mut edges: BTreeMap<(&str, &str), String> = BTreeMap::new();
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
                edges
                    .entry((pc.name.as_str(), dep.as_str()))
                    .or_insert(path);
            }
        }
    }
    if let Some(cycle) = find_cycle(&graph) {
        let n = cycle.len();
        let path = edges
            .get(&(cycle[n - 2], cycle[n - 1]))
            .cloned()
            .unwrap_or_else(|| "stacks".into());
        p.push(Problem::new(
            path,
            format!(
                "dependency cycle: {}; remove one of these dependencies",
                cycle.join(" -> ")
            ),
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

#[cfg(test)]
mod tests {
    use crate::config::problems_of as problems;

    #[test]
    fn dependency_cycle_and_unknown_names() {
        let p = problems(
            r#"{"stacks": [{"name": "a", "command": "x", "depends_on": ["b"]},
                           {"name": "b", "command": "x", "depends_on": ["a", "zz"]}]}"#,
        );
        // At the `depends_on` entry that closes the cycle (b -> a), not at `stacks`.
        assert!(
            p.iter()
                .any(|p| p.path == "stacks[1].depends_on[0]"
                    && p.message.contains("cycle: a -> b -> a")),
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
    fn a_name_glob_is_what_its_pattern_says() {
        use crate::config::validate::name_glob;
        for ok in [
            "web-*",
            "*",
            "w?b",
            "web-[12]",
            "web-[1-3]",
            "[!x]*",
            "a.b_c",
            "*-1*",
        ] {
            assert!(name_glob(ok).is_ok(), "{ok}");
        }
        for bad in ["", "**", "a**", "[", "[]", "[!]", "a/b", "web ", "\u{f}"] {
            assert!(name_glob(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn names_cannot_traverse() {
        let p = problems(r#"{"stacks": ["../etc", "ok"]}"#);
        assert_eq!(p.len(), 1, "{p:#?}");
        assert_eq!(p[0].path, "stacks[0]");
    }
}
