//! `ctl checkpoint`, `ctl checkpoints [list|show|delete]` and `ctl restore`: taking, listing
//! and restoring checkpoints of the environment directory.
//!
//! Checkpoint and restore wait for the whole operation (up to 15 min), with a spinner on a
//! terminal. Fields are read one by one; a field the server leaves out prints as `-`, and
//! `show` also lists the scalar fields it does not know, so nothing the server says is hidden.

use serde_json::{Value, json};
use time::OffsetDateTime;

use super::args::CheckpointsCmd;
use super::client::Client;
use super::error::CtlError;
use super::output::{self, Table, kv};

/// The fields `show` prints by name (every other scalar field follows them as is).
const KNOWN: [&str; 10] = [
    "id",
    "label",
    "created_at",
    "files",
    "bytes",
    "uploaded_bytes",
    "chunks_new",
    "freeze_ms",
    "duration_ms",
    "epoch",
];

/// `ctl checkpoint [--label L]`: `POST /checkpoint`.
pub async fn create(client: &Client, label: Option<&str>) -> Result<(), CtlError> {
    let body = match label {
        Some(l) => json!({ "label": l }),
        None => json!({}),
    };
    let answer = client
        .post(&["checkpoint"])
        .json(body)
        .progress("taking a checkpoint")
        .send()
        .await?;
    output::print(client.json, answer, |v| {
        format!(
            "checkpoint {} created\n{}",
            output::checkpoint_ref(v),
            kv(&details(v))
        )
    });
    Ok(())
}

/// `ctl checkpoints …`.
pub async fn checkpoints(client: &Client, action: Option<&CheckpointsCmd>) -> Result<(), CtlError> {
    match action {
        None | Some(CheckpointsCmd::List) => {
            let answer = client.get(&["checkpoints"]).send().await?;
            output::print(client.json, answer, |v| table(v, OffsetDateTime::now_utc()));
        }
        Some(CheckpointsCmd::Show { id }) => {
            let answer = client.get(&["checkpoints", id]).send().await?;
            output::print(client.json, answer, show);
        }
        Some(CheckpointsCmd::Delete { id }) => {
            let req = client.request(reqwest::Method::DELETE, &["checkpoints", id]);
            let answer = req.send().await?;
            output::print(client.json, answer, |_| {
                format!("deleted checkpoint {id}\n")
            });
        }
    }
    Ok(())
}

/// `GET /checkpoints` as a table, newest first as the server orders them.
pub fn table(v: &Value, now: OffsetDateTime) -> String {
    let list = v["checkpoints"]
        .as_array()
        .or_else(|| v.as_array())
        .map(Vec::as_slice)
        .unwrap_or(&[]);
    if list.is_empty() {
        return "no checkpoints\n".into();
    }
    let mut t = Table::new(&["ID", "LABEL", "CREATED", "AGE", "FILES", "SIZE"]);
    for c in list {
        t.row(vec![
            output::checkpoint_ref(c),
            output::text(&c["label"]),
            output::time(&c["created_at"]),
            output::age(&c["created_at"], now),
            output::count(&c["files"]),
            output::bytes(&c["bytes"]),
        ]);
    }
    t.render()
}

/// One checkpoint: its id, its details, then any scalar field this version does not know.
pub fn show(v: &Value) -> String {
    let mut pairs = vec![("id", output::checkpoint_ref(v))];
    pairs.extend(details(v));
    let extra = v
        .as_object()
        .into_iter()
        .flatten()
        .filter(|(k, x)| !KNOWN.contains(&k.as_str()) && !x.is_object() && !x.is_array())
        .map(|(k, x)| (k.as_str(), output::text(x)));
    pairs.extend(extra);
    kv(&pairs)
}

/// The details of a checkpoint summary, without its id.
fn details(v: &Value) -> Vec<(&'static str, String)> {
    let mut pairs = vec![
        ("label", output::text(&v["label"])),
        ("created", output::time(&v["created_at"])),
        ("files", output::count(&v["files"])),
        ("size", output::bytes(&v["bytes"])),
    ];
    if !v["uploaded_bytes"].is_null() || !v["chunks_new"].is_null() {
        let chunks = match v["chunks_new"].as_u64() {
            Some(1) => "1 new chunk".to_string(),
            _ => format!("{} new chunks", output::count(&v["chunks_new"])),
        };
        let uploaded = format!("{} in {chunks}", output::bytes(&v["uploaded_bytes"]));
        pairs.push(("uploaded", uploaded));
    }
    if !v["freeze_ms"].is_null() {
        pairs.push(("frozen", output::millis(&v["freeze_ms"])));
    }
    pairs.push(("took", output::millis(&v["duration_ms"])));
    if let Some(epoch) = v["epoch"].as_u64() {
        pairs.push(("epoch", epoch.to_string()));
    }
    pairs
}

/// `ctl restore ID|latest`: `POST /restore`.
pub async fn restore(client: &Client, checkpoint: &str) -> Result<(), CtlError> {
    let answer = client
        .post(&["restore"])
        .json(json!({ "checkpoint": checkpoint }))
        .progress(&format!("restoring {checkpoint}"))
        .send()
        .await?;
    output::print(client.json, answer, restored);
    Ok(())
}

/// A restore's answer in words, with the undo checkpoint to go back to.
pub fn restored(v: &Value) -> String {
    let undo = output::checkpoint_ref(&v["undo_checkpoint"]);
    let mut text = format!("restored {}\n", output::checkpoint_ref(&v["restored"]));
    text.push_str(&kv(&[
        ("files", output::count(&v["files"])),
        ("size", output::bytes(&v["bytes"])),
        ("took", output::millis(&v["duration_ms"])),
        ("undo", undo.clone()),
    ]));
    if undo != output::NONE {
        text.push_str(&format!("to undo: state-manager ctl restore {undo}\n"));
    }
    text
}

#[cfg(test)]
mod tests {
    use time::format_description::well_known::Rfc3339;

    use super::*;

    const ID: &str = "20261123T201846.614Z-0a1b2c3d";

    #[test]
    fn a_created_checkpoint_shows_every_figure() {
        let v = json!({"id": ID, "label": "before-upgrade", "created_at": "2026-11-23T20:18:46.614Z",
            "files": 12, "bytes": 1_258_291, "uploaded_bytes": 307_200, "chunks_new": 4,
            "freeze_ms": 12, "duration_ms": 1300});
        assert_eq!(
            show(&v),
            format!(
                "id        {ID}\n\
label     before-upgrade\n\
created   2026-11-23 20:18:46Z\n\
files     12\n\
size      1.2 MiB\n\
uploaded  300.0 KiB in 4 new chunks\n\
frozen    12ms\n\
took      1.3s\n"
            )
        );
    }

    #[test]
    fn a_sparse_listing_still_prints_and_unknown_fields_show() {
        let now = OffsetDateTime::parse("2026-11-23T20:20:00Z", &Rfc3339).unwrap();
        let v =
            json!({"checkpoints": [{"id": ID, "created_at": "2026-11-23T20:18:46Z"}, {"id": "x"}]});
        let out = table(&v, now);
        assert!(out.starts_with("ID "), "{out}");
        assert!(
            out.contains(&format!(
                "{ID}  -      2026-11-23 20:18:46Z  1m 14s ago  -      -"
            )),
            "{out}"
        );
        assert_eq!(table(&json!({"checkpoints": []}), now), "no checkpoints\n");
        let out = show(&json!({"id": ID, "storage": "s3://b/p", "manifest": {"x": 1}}));
        assert!(out.contains("storage  s3://b/p\n"), "{out}");
        assert!(!out.contains("manifest"), "{out}");
    }

    #[test]
    fn a_restore_says_how_to_undo_it() {
        let v = json!({"restored": ID, "undo_checkpoint": {"id": "20261123T202000.000Z-ffffffff"},
            "files": 3, "bytes": 10, "duration_ms": 2100});
        let out = restored(&v);
        assert!(out.starts_with(&format!("restored {ID}\n")), "{out}");
        assert!(out.contains("took   2.1s\n"), "{out}");
        assert!(
            out.ends_with("to undo: state-manager ctl restore 20261123T202000.000Z-ffffffff\n"),
            "{out}"
        );
        let out = restored(&json!({"restored": ID, "undo_checkpoint": null}));
        assert!(!out.contains("to undo"), "{out}");
    }
}
