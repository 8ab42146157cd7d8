//! `ctl apply`, `add`, `rm` and `scale`: changing the process set. `apply -f FILE` reloads the
//! config (`PUT /config`, `--dry-run` for the plan alone) and prints the plan as a diff:
//! `+ name` added, `- name` removed, `~ name: fields` changed, `= N unchanged`. Files are read
//! and checked to be JSON here, so a typo in a path or a file is a usage error (exit 2) before
//! anything is sent.

use std::path::Path;

use reqwest::Method;
use serde_json::{Value, json};

use super::client::{Client, Wait};
use super::error::CtlError;
use super::output::{self, NONE};
use super::processes::STOP_MARGIN;

/// `PUT /config[?dry_run=true]` with the file's text.
pub async fn apply(client: &Client, file: &Path, dry_run: bool) -> Result<(), CtlError> {
    let (text, _) = read_json(file).await?;
    let mut req = client
        .request(Method::PUT, &["config"])
        .wait(Wait::Long)
        .json_text(text)
        .progress("reloading the config");
    if dry_run {
        req = req.query("dry_run", "true");
    }
    let answer = req.send().await?;
    output::print(client.json, answer, plan);
    Ok(())
}

/// `POST /processes` with the spec in the file.
pub async fn add(client: &Client, file: &Path) -> Result<(), CtlError> {
    let (_, spec) = read_json(file).await?;
    let answer = client
        .post(&["processes"])
        .json(spec)
        .progress("adding")
        .send()
        .await?;
    output::print(client.json, answer, added);
    Ok(())
}

/// `DELETE /processes/{name}[?force=true][&timeout=DUR]`.
pub async fn remove(client: &Client, name: &str, force: bool) -> Result<(), CtlError> {
    let mut req = client
        .request(Method::DELETE, &["processes", name])
        .wait(Wait::Long)
        .progress(&format!("removing {name}"));
    if force {
        req = req.query("force", "true");
    }
    if let Some(t) = client.timeout() {
        let text = humantime::format_duration(t).to_string();
        req = req
            .query("timeout", &text)
            .wait(Wait::Exactly(t + STOP_MARGIN));
    }
    let answer = req.send().await?;
    match (client.json, answer.revision) {
        (true, revision) => {
            output::emit(&json!({"stack": name, "removed": true, "revision": revision}).to_string())
        }
        (false, Some(revision)) => output::emit(&format!("removed {name}\nrevision {revision}\n")),
        (false, None) => output::emit(&format!("removed {name}\n")),
    };
    Ok(())
}

/// `POST /processes/{name}/scale`.
pub async fn scale(client: &Client, name: &str, instances: u32) -> Result<(), CtlError> {
    let answer = client
        .post(&["processes", name, "scale"])
        .json(json!({ "instances": instances }))
        .progress(&format!("scaling {name}"))
        .send()
        .await?;
    output::print(client.json, answer, scaled);
    Ok(())
}

/// The file's text and its JSON, or a usage error naming the file.
async fn read_json(file: &Path) -> Result<(String, Value), CtlError> {
    let bad = |reason: String| CtlError::BadArgument {
        value: file.display().to_string(),
        reason,
    };
    let text = tokio::fs::read_to_string(file)
        .await
        .map_err(|e| bad(format!("cannot read it: {e}")))?;
    let value: Value = serde_json::from_str(&text).map_err(|e| {
        bad(format!(
            "it is not JSON: {e}; the server takes a JSON object"
        ))
    })?;
    if !value.is_object() {
        return Err(bad("it holds JSON but not an object (`{...}`)".into()));
    }
    Ok((text, value))
}

/// A reload's answer as a diff.
pub fn plan(v: &Value) -> String {
    let list = |key: &str| -> Vec<String> {
        v[key]
            .as_array()
            .map(|l| l.iter().map(output::text).collect())
            .unwrap_or_default()
    };
    let mut out = String::new();
    for name in list("added") {
        out.push_str(&format!("+ {name}\n"));
    }
    for name in list("removed") {
        out.push_str(&format!("- {name}\n"));
    }
    for c in v["changed"].as_array().into_iter().flatten() {
        let fields: Vec<String> = c["fields"]
            .as_array()
            .map(|l| l.iter().map(output::text).collect())
            .unwrap_or_default();
        out.push_str(&format!(
            "~ {}: {}\n",
            output::text(&c["name"]),
            fields.join(", ")
        ));
    }
    out.push_str(&format!("= {} unchanged\n", list("unchanged").len()));
    for (key, words) in [
        ("kept", "kept (changed through the API)"),
        ("env_affected", "new environment at their next start"),
        ("next_start", "settings applied at the next start"),
    ] {
        let names = list(key);
        if !names.is_empty() {
            out.push_str(&format!("{words}: {}\n", names.join(", ")));
        }
    }
    let revision = output::count(&v["revision"]);
    match v["dry_run"].as_bool() {
        Some(true) => out.push_str(&format!(
            "dry run: nothing was changed (revision {revision})\n"
        )),
        _ => out.push_str(&format!("revision {revision}\n")),
    }
    out
}

fn names(v: &Value) -> String {
    let names: Vec<String> = v
        .as_array()
        .map(|l| l.iter().map(output::text).collect())
        .unwrap_or_default();
    match names.is_empty() {
        true => NONE.into(),
        false => names.join(", "),
    }
}

/// `POST /processes`'s answer in words.
pub fn added(v: &Value) -> String {
    format!(
        "added {}: {}\nstarted {}\nrevision {}\n",
        output::text(&v["stack"]),
        names(&v["created"]),
        names(&v["started"]),
        output::count(&v["revision"])
    )
}

/// A scale's answer in words.
pub fn scaled(v: &Value) -> String {
    format!(
        "scaled {} to {}\nstarted {}\nstopped {}\nrevision {}\n",
        output::text(&v["stack"]),
        output::count(&v["instances"]),
        names(&v["started"]),
        names(&v["stopped"]),
        output::count(&v["revision"])
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_plan_reads_as_a_diff() {
        let v = json!({
            "revision": 7, "dry_run": true, "added": ["d"], "removed": ["b"],
            "changed": [{"name": "c", "fields": ["command", "env"]}],
            "unchanged": ["a", "web"], "kept": ["extra"], "env_affected": [], "next_start": []
        });
        assert_eq!(
            plan(&v),
            "\
+ d
- b
~ c: command, env
= 2 unchanged
kept (changed through the API): extra
dry run: nothing was changed (revision 7)
"
        );
        let empty = json!({"revision": 3, "dry_run": false, "unchanged": ["a"]});
        assert_eq!(plan(&empty), "= 1 unchanged\nrevision 3\n");
    }

    #[test]
    fn adds_and_scales_in_words() {
        let v =
            json!({"stack": "web", "created": ["web-1", "web-2"], "started": [], "revision": 4});
        assert_eq!(
            added(&v),
            "added web: web-1, web-2\nstarted -\nrevision 4\n"
        );
        let v = json!({"stack": "web", "instances": 3, "started": ["web-3"], "stopped": [], "revision": 5});
        assert_eq!(
            scaled(&v),
            "scaled web to 3\nstarted web-3\nstopped -\nrevision 5\n"
        );
    }
}
