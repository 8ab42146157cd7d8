//! `GET /metrics` parses as Prometheus text (checked strictly here) and carries the process and
//! HTTP families with the values the rest of the API shows.

use std::collections::{BTreeMap, HashMap};

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use reqwest::{Method, StatusCode};

use super::support::{SLEEPERS, Server, state};

/// One sample: metric name, labels, value.
type Sample = (String, BTreeMap<String, String>, f64);

/// A strict parser of the text format (0.0.4): every family has one HELP and one TYPE before its
/// samples, sample names belong to the family declared last, label syntax and escapes are
/// valid, values are numbers, histogram buckets are cumulative and end at `+Inf` = `_count`.
fn parse(text: &str) -> Vec<Sample> {
    let mut types: HashMap<String, String> = HashMap::new();
    let mut current = String::new();
    let mut samples = Vec::new();
    assert!(text.ends_with('\n'), "must end with a newline");
    for line in text.lines() {
        if let Some(rest) = line.strip_prefix("# HELP ") {
            let name = rest.split(' ').next().unwrap();
            assert!(!types.contains_key(name), "family {name} declared twice");
            current = name.to_string();
        } else if let Some(rest) = line.strip_prefix("# TYPE ") {
            let (name, kind) = rest.split_once(' ').unwrap();
            assert_eq!(name, current, "TYPE without its HELP: {line}");
            assert!(["counter", "gauge", "histogram"].contains(&kind), "{line}");
            types.insert(name.to_string(), kind.to_string());
        } else {
            assert!(
                !line.starts_with('#') && !line.is_empty(),
                "stray line {line:?}"
            );
            let s = sample(line);
            let kind = &types[&current];
            let ok = match kind.as_str() {
                "histogram" => ["_bucket", "_sum", "_count"]
                    .iter()
                    .any(|x| s.0 == format!("{current}{x}")),
                _ => s.0 == current,
            };
            assert!(ok, "sample {} outside its family {current}", s.0);
            samples.push(s);
        }
    }
    check_histograms(&samples);
    samples
}

fn sample(line: &str) -> Sample {
    let name_end = line.find(['{', ' ']).unwrap();
    let name = &line[..name_end];
    assert!(
        name.chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':')
            && !name.starts_with(|c: char| c.is_ascii_digit()),
        "bad name in {line:?}"
    );
    let mut labels = BTreeMap::new();
    let mut rest = &line[name_end..];
    if let Some(r) = rest.strip_prefix('{') {
        let mut r = r;
        loop {
            if let Some(after) = r.strip_prefix('}') {
                rest = after;
                break;
            }
            let eq = r
                .find("=\"")
                .unwrap_or_else(|| panic!("bad label in {line:?}"));
            let key = &r[..eq];
            assert!(
                key.chars().all(|c| c.is_ascii_alphanumeric() || c == '_'),
                "{line:?}"
            );
            let mut value = String::new();
            let mut chars = r[eq + 2..].char_indices();
            let end = loop {
                match chars
                    .next()
                    .unwrap_or_else(|| panic!("unterminated label in {line:?}"))
                {
                    (_, '\\') => match chars.next().unwrap().1 {
                        'n' => value.push('\n'),
                        c @ ('\\' | '"') => value.push(c),
                        c => panic!("bad escape \\{c} in {line:?}"),
                    },
                    (i, '"') => break eq + 2 + i + 1,
                    (_, c) => value.push(c),
                }
            };
            labels.insert(key.to_string(), value);
            r = &r[end..];
            r = r.strip_prefix(',').unwrap_or(r);
        }
    }
    let value = rest
        .strip_prefix(' ')
        .unwrap_or_else(|| panic!("no value in {line:?}"));
    let v = match value {
        "+Inf" => f64::INFINITY,
        "-Inf" => f64::NEG_INFINITY,
        v => v
            .parse::<f64>()
            .unwrap_or_else(|_| panic!("bad value in {line:?}")),
    };
    (name.to_string(), labels, v)
}

fn check_histograms(samples: &[Sample]) {
    type Key = (String, BTreeMap<String, String>);
    let mut series: HashMap<Key, Vec<(f64, f64)>> = HashMap::new();
    let mut counts = HashMap::new();
    for (name, labels, v) in samples {
        let mut l = labels.clone();
        if let Some(base) = name.strip_suffix("_bucket") {
            let le = l.remove("le").expect("a bucket without le");
            let le = if le == "+Inf" {
                f64::INFINITY
            } else {
                le.parse().unwrap()
            };
            series
                .entry((base.to_string(), l))
                .or_default()
                .push((le, *v));
        } else if let Some(base) = name.strip_suffix("_count") {
            counts.insert((base.to_string(), l), *v);
        }
    }
    for (key, buckets) in series {
        assert!(
            buckets
                .windows(2)
                .all(|w| w[0].0 < w[1].0 && w[0].1 <= w[1].1),
            "{key:?}"
        );
        let last = buckets.last().unwrap();
        assert_eq!(last.0, f64::INFINITY, "{key:?}");
        assert_eq!(Some(&last.1), counts.get(&key), "{key:?}");
    }
}

fn value(samples: &[Sample], name: &str, labels: &[(&str, &str)]) -> Option<f64> {
    samples
        .iter()
        .find(|(n, l, _)| {
            n == name
                && labels
                    .iter()
                    .all(|(k, v)| l.get(*k).map(String::as_str) == Some(*v))
        })
        .map(|s| s.2)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_are_valid_prometheus_text_with_the_right_values() {
    let s = Server::start(Some(SLEEPERS)).await;
    let worker = s
        .wait_process("worker", "running", |p| state(p) == "running")
        .await;
    kill(
        Pid::from_raw(worker["pid"].as_i64().unwrap() as i32),
        Signal::SIGKILL,
    )
    .unwrap();
    s.wait_process("worker", "restarted", |p| {
        state(p) == "running" && p["restarts"] == 1
    })
    .await;
    for n in ["web-1", "web-2", "web-3"] {
        s.wait_process(n, "running", |p| state(p) == "running")
            .await;
    }
    s.call(Method::GET, "/nope").await;

    let r = s.call(Method::GET, "/metrics").await;
    assert_eq!(r.status(), StatusCode::OK);
    assert!(
        r.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/plain; version=0.0.4")
    );
    let text = r.text().await.unwrap();
    let m = parse(&text);
    assert_eq!(
        value(&m, "state_manager_process_up", &[("process", "web-2")]),
        Some(1.0)
    );
    assert_eq!(
        value(
            &m,
            "state_manager_process_restarts_total",
            &[("process", "worker")]
        ),
        Some(1.0)
    );
    assert_eq!(
        value(&m, "state_manager_processes", &[("state", "running")]),
        Some(4.0)
    );
    // 4 starts plus the restart.
    assert!(
        value(
            &m,
            "state_manager_process_transitions_total",
            &[("state", "running")]
        )
        .unwrap()
            >= 5.0
    );
    assert!(
        value(
            &m,
            "state_manager_process_transitions_total",
            &[("state", "backoff")]
        )
        .unwrap()
            >= 1.0
    );
    let by_template = [
        ("route", "/processes/{name}"),
        ("method", "GET"),
        ("status", "200"),
    ];
    assert!(value(&m, "state_manager_http_requests_total", &by_template).unwrap() >= 4.0);
    assert!(
        value(
            &m,
            "state_manager_http_request_duration_seconds_count",
            &by_template
        )
        .unwrap()
            >= 4.0
    );
    assert_eq!(
        value(
            &m,
            "state_manager_http_requests_total",
            &[("route", "unmatched"), ("status", "404")]
        ),
        Some(1.0)
    );
    assert!(
        !text.contains("route=\"/processes/worker\""),
        "raw paths must not be labels"
    );
    s.stop().await;
}

#[test]
fn the_parser_rejects_what_prometheus_would() {
    for bad in [
        "x 1\n",                                    // no TYPE
        "# HELP x h\n# TYPE x gauge\nx{a=\"1} 1\n", // unterminated
        "# HELP x h\n# TYPE x gauge\nx one\n",      // not a number
        "# HELP x h\n# TYPE x gauge\ny 1\n",        // outside its family
        "# HELP h h\n# TYPE h histogram\nh_bucket{le=\"1\"} 2\nh_bucket{le=\"+Inf\"} 1\nh_count 1\n",
    ] {
        assert!(
            std::panic::catch_unwind(|| parse(bad)).is_err(),
            "accepted {bad:?}"
        );
    }
}

/// `promtool check metrics` (Debian `prometheus`) finds nothing: base units, counters end in
/// `_total`, and the standard `process_*` families are there. The replication lag used to be in
/// milliseconds, which promtool flags.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn promtool_finds_nothing_and_the_process_metrics_are_there() {
    let s = Server::start(Some(SLEEPERS)).await;
    crate::common::wait_for_async(
        "replication to report",
        super::support::DEADLINE,
        || async {
            let v = s.get_json("/").await;
            (v["role"] == "owner" && v["replication"].is_object()).then_some(())
        },
    )
    .await;
    let text = s.call(Method::GET, "/metrics").await.text().await.unwrap();
    let m = parse(&text);
    assert!(
        value(&m, "state_manager_replication_lag_seconds", &[]).is_some(),
        "{text}"
    );
    let rss = value(&m, "process_resident_memory_bytes", &[]).unwrap();
    assert!(rss > f64::from(1 << 20), "{rss}");
    for name in [
        "process_cpu_seconds_total",
        "process_open_fds",
        "process_max_fds",
        "process_start_time_seconds",
        "process_virtual_memory_bytes",
    ] {
        assert!(value(&m, name, &[]).is_some(), "{name} missing");
    }
    // Through the crate's own runner: the supervisor of a server in a concurrent test reaps
    // every child of this process, and proc::run is the one place that knows.
    let path = std::env::var("PATH").unwrap_or_default();
    let out = state_manager::proc::run(
        &[
            "promtool".to_string(),
            "check".to_string(),
            "metrics".to_string(),
        ],
        state_manager::proc::RunOptions {
            env: vec![("PATH".into(), path)],
            stdin: Some(text.clone().into_bytes()),
            timeout: std::time::Duration::from_secs(60),
            ..Default::default()
        },
    )
    .await
    .expect("promtool runs (Debian: apt-get install prometheus)");
    let said = format!("{}{}", out.stdout, out.stderr);
    assert!(
        out.status == state_manager::events::ExitStatus::Code(0) && said.trim().is_empty(),
        "promtool ({:?}): {said}",
        out.status
    );
    s.stop().await;
}
