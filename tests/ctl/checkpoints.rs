//! `ctl checkpoint`, `checkpoints`, `restore`, `release-lease` and `acquire-lease` against the
//! stand-in server of `stand_in.rs` (the real server does not serve these routes yet): tables,
//! `--json`, the 404/409/422 exit codes, and no spinner when stderr is not a terminal.

use serde_json::Value;

use crate::stand_in::{StandIn, TOKEN};
use crate::support::{Run, column, ctl};

fn run(api: &StandIn, args: &[&str]) -> Run {
    ctl(&api.url, Some(TOKEN), args)
}

#[test]
fn checkpoints_are_taken_listed_shown_and_deleted() {
    let api = StandIn::start();
    let out = run(&api, &["checkpoint", "--label", "before-upgrade"]);
    assert_eq!(out.code, 0, "{out:?}");
    assert_eq!(out.stderr, "", "no spinner off a terminal");
    let first = "20261123T201801.000Z-00000001";
    assert_eq!(
        out.stdout,
        format!(
            "checkpoint {first} created\n\
label     before-upgrade\n\
created   2026-11-23 20:18:01Z\n\
files     12\n\
size      1.2 MiB\n\
uploaded  300.0 KiB in 4 new chunks\n\
frozen    12ms\n\
took      1.3s\n\
epoch     3\n"
        )
    );
    let second = run(&api, &["--json", "checkpoint"]).json();
    let second = second["id"].as_str().unwrap().to_string();

    let out = run(&api, &["checkpoints"]);
    let table = &out.stdout;
    assert_eq!(table.lines().count(), 3, "{table}");
    let label_at = column(table, "LABEL");
    let row = table.lines().find(|l| l.starts_with(first)).unwrap();
    assert_eq!(&row[label_at..label_at + 14], "before-upgrade", "{table}");
    let listed = run(&api, &["checkpoints", "list", "--json"]).json();
    let ids: Vec<&Value> = listed["checkpoints"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| &c["id"])
        .collect();
    assert_eq!(ids, [second.as_str(), first]);

    let out = run(&api, &["checkpoints", "show", first]);
    assert!(
        out.stdout
            .starts_with(&format!("id        {first}\nlabel     before-upgrade\n")),
        "{out:?}"
    );
    let out = run(&api, &["checkpoints", "delete", first]);
    assert_eq!(
        (out.code, out.stdout.as_str()),
        (0, format!("deleted checkpoint {first}\n").as_str())
    );
    let out = run(&api, &["checkpoints", "show", first]);
    assert_eq!(out.code, 5, "{out:?}");
    assert!(out.stderr.contains("no checkpoint"), "{out:?}");
    assert_eq!(
        run(&api, &["--json", "checkpoints", "delete", first]).code,
        5
    );
}

#[test]
fn restore_reports_its_undo_checkpoint_and_lists_problems() {
    let api = StandIn::start();
    assert_eq!(run(&api, &["checkpoint"]).code, 0);
    let out = run(&api, &["restore", "latest"]);
    assert_eq!(out.code, 0, "{out:?}");
    let undo = "20261123T201802.000Z-00000002";
    assert!(
        out.stdout
            .starts_with("restored 20261123T201801.000Z-00000001\n"),
        "{out:?}"
    );
    assert!(out.stdout.contains("took   2.1s\n"), "{out:?}");
    assert!(
        out.stdout
            .ends_with(&format!("to undo: state-manager ctl restore {undo}\n")),
        "{out:?}"
    );
    let doc = run(&api, &["--json", "restore", undo]).json();
    assert_eq!(doc["restored"], undo);

    let out = run(&api, &["restore", ""]);
    assert_eq!(out.code, 1, "{out:?}");
    assert!(
        out.stderr
            .contains("  - checkpoint: must be a checkpoint id"),
        "{out:?}"
    );
    assert_eq!(
        run(&api, &["restore", "20200101T000000.000Z-00000000"]).code,
        5
    );
}

#[test]
fn the_lease_moves_and_conflicts_are_exit_6() {
    let api = StandIn::start();
    let out = run(&api, &["release-lease"]);
    assert_eq!(out.code, 0, "{out:?}");
    assert_eq!(
        out.stdout,
        "released the lease (epoch 3); this node is now standby\n\
final checkpoint  20261123T201801.000Z-00000001\n"
    );
    for args in [&["release-lease", "--no-checkpoint"][..], &["checkpoint"]] {
        let out = run(&api, args);
        assert_eq!(out.code, 6, "{args:?}: {out:?}");
        assert!(out.stderr.contains("does not hold the lease"), "{out:?}");
    }
    let out = run(&api, &["acquire-lease"]);
    assert_eq!(
        (out.code, out.stdout.as_str()),
        (
            0,
            "acquired the lease (epoch 4); this node is now the owner\n"
        ),
        "{out:?}"
    );
    assert_eq!(run(&api, &["--json", "acquire-lease"]).code, 6);
    let doc = run(&api, &["--json", "release-lease", "--no-checkpoint"]).json();
    assert_eq!(
        doc,
        serde_json::json!({"released_epoch": 4, "final_checkpoint": null})
    );
    let out = ctl(&api.url, Some("wrong"), &["acquire-lease"]);
    assert_eq!(out.code, 4, "{out:?}");
}
