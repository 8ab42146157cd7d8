//! `ctl checkpoint`, `checkpoints`, `restore`, `release-lease` and `acquire-lease` against the
//! real server with local storage: tables, `--json`, files really restored, the 404/409 exit
//! codes, and no spinner when stderr is not a terminal.

use std::fs;

use serde_json::Value;

use super::support::{CONFIG, Server, column, token};

/// A server whose processes run and whose env_dir holds `a.txt` = "one".
fn started() -> (Server, String) {
    let s = Server::start(CONFIG);
    let admin = token("admin");
    s.wait_all_running(&admin);
    fs::create_dir_all(s.env_dir()).unwrap();
    fs::write(s.env_dir().join("a.txt"), "one").unwrap();
    (s, admin)
}

#[test]
fn checkpoints_are_taken_listed_shown_and_deleted() {
    let (s, admin) = started();
    let run = s.ctl(Some(&admin), &["checkpoint", "--label", "before-upgrade"]);
    assert_eq!(run.code, 0, "{run:?}");
    assert_eq!(run.stderr, "", "no spinner off a terminal");
    let id_line = run.stdout.lines().next().unwrap();
    let first = id_line
        .strip_prefix("checkpoint ")
        .and_then(|l| l.strip_suffix(" created"))
        .unwrap_or_else(|| panic!("{run:?}"))
        .to_string();
    assert!(
        run.stdout.contains("\nlabel     before-upgrade\n"),
        "{run:?}"
    );
    assert!(
        run.stdout.contains("\nfiles     1\nsize      3 B\n"),
        "{run:?}"
    );
    let second = s.ctl(Some(&admin), &["--json", "checkpoint"]).json();
    let second = second["id"].as_str().unwrap().to_string();

    let table = s.ctl(Some(&admin), &["checkpoints"]).stdout;
    assert_eq!(table.lines().count(), 3, "{table}");
    let label_at = column(&table, "LABEL");
    let row = table.lines().find(|l| l.starts_with(&first)).unwrap();
    assert_eq!(&row[label_at..label_at + 14], "before-upgrade", "{table}");
    let listed = s
        .ctl(Some(&admin), &["checkpoints", "list", "--json"])
        .json();
    let ids: Vec<&Value> = listed["checkpoints"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| &c["id"])
        .collect();
    assert_eq!(ids, [second.as_str(), first.as_str()]);

    let run = s.ctl(Some(&admin), &["checkpoints", "show", &first]);
    let head = format!("id        {first}\nlabel     before-upgrade\n");
    assert!(run.stdout.starts_with(&head), "{run:?}");
    let run = s.ctl(Some(&admin), &["checkpoints", "delete", &first]);
    assert_eq!(run.code, 0, "{run:?}");
    assert_eq!(run.stdout, format!("deleted checkpoint {first}\n"));
    let run = s.ctl(Some(&admin), &["checkpoints", "show", &first]);
    assert_eq!(run.code, 5, "{run:?}");
    let run = s.ctl(Some(&admin), &["checkpoints", "show", "nope"]);
    assert_eq!(run.code, 1, "{run:?}");
    assert!(run.stderr.contains("invalid checkpoint id"), "{run:?}");
}

#[test]
fn restore_brings_the_files_back_and_names_the_undo_checkpoint() {
    let (s, admin) = started();
    let taken = s.ctl(Some(&admin), &["--json", "checkpoint"]).json();
    let id = taken["id"].as_str().unwrap().to_string();
    fs::write(s.env_dir().join("a.txt"), "two").unwrap();

    let run = s.ctl(Some(&admin), &["restore", "latest"]);
    assert_eq!(run.code, 0, "{run:?}");
    assert!(
        run.stdout.starts_with(&format!("restored {id}\n")),
        "{run:?}"
    );
    assert_eq!(
        fs::read_to_string(s.env_dir().join("a.txt")).unwrap(),
        "one"
    );
    let undo = run
        .stdout
        .lines()
        .find_map(|l| l.strip_prefix("to undo: state-manager ctl restore "))
        .unwrap_or_else(|| panic!("{run:?}"))
        .to_string();

    let doc = s.ctl(Some(&admin), &["--json", "restore", &undo]).json();
    assert_eq!(doc["restored"], undo.as_str());
    assert_eq!(
        fs::read_to_string(s.env_dir().join("a.txt")).unwrap(),
        "two"
    );
    let run = s.ctl(Some(&admin), &["restore", "20200101T000000.000Z-00000000"]);
    assert_eq!(run.code, 5, "{run:?}");
    let read = token("read");
    assert_eq!(s.ctl(Some(&read), &["restore", "latest"]).code, 4);
}

#[test]
fn the_lease_moves_and_conflicts_are_exit_6() {
    let (s, admin) = started();
    let epoch = s.ctl(Some(&admin), &["--json", "status"]).json()["lease"]["epoch"]
        .as_u64()
        .unwrap();
    let run = s.ctl(Some(&admin), &["release-lease"]);
    assert_eq!(run.code, 0, "{run:?}");
    let expected = format!("released the lease (epoch {epoch}); this node is now standby\n");
    assert!(run.stdout.starts_with(&expected), "{run:?}");
    assert!(run.stdout.contains("final checkpoint  2"), "{run:?}");
    let status = s.ctl(Some(&admin), &["status"]).stdout;
    assert!(status.contains("role             released\n"), "{status}");

    for args in [&["release-lease", "--no-checkpoint"][..], &["checkpoint"]] {
        let run = s.ctl(Some(&admin), args);
        assert_eq!(run.code, 6, "{args:?}: {run:?}");
        assert!(run.stderr.contains("released the lease"), "{run:?}");
    }
    let run = s.ctl(Some(&admin), &["acquire-lease"]);
    assert_eq!(run.code, 0, "{run:?}");
    let expected = format!("acquired the lease (epoch {}); this node", epoch + 1);
    assert!(run.stdout.starts_with(&expected), "{run:?}");
    s.wait_all_running(&admin);

    let doc = s
        .ctl(
            Some(&admin),
            &["--json", "release-lease", "--no-checkpoint"],
        )
        .json();
    assert_eq!(doc["released_epoch"], epoch + 1);
    assert_eq!(doc["final_checkpoint"], Value::Null);
}
