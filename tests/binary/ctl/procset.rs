//! `ctl apply`, `add`, `scale` and `rm` against the real server: the plan printed as a diff,
//! each change in words, and bad input refused with a clear message and the documented exit
//! code before anything changes.

use super::reload::RELOADED;
use super::support::{CONFIG, Server, file, token};

#[test]
fn apply_add_scale_and_rm_print_what_they_did_and_refuse_bad_input() {
    let s = Server::start(CONFIG);
    let admin = token("admin");
    s.wait_all_running(&admin);
    let dir = tempfile::tempdir().unwrap();
    let new = file(dir.path(), "new.json", RELOADED);

    let run = s.ctl(Some(&admin), &["apply", "-f", &new, "--dry-run"]);
    assert_eq!(run.code, 0, "{run:?}");
    assert_eq!(
        run.stdout,
        "+ extra\n- talker\n~ worker: command\n= 1 unchanged\ndry run: nothing was changed (revision 1)\n"
    );
    let run = s.ctl(Some(&admin), &["apply", "-f", &new]);
    assert_eq!(run.code, 0, "{run:?}");
    assert!(
        run.stdout.ends_with("= 1 unchanged\nrevision 2\n"),
        "{run:?}"
    );
    assert_eq!(std::fs::read_to_string(s.config_path()).unwrap(), RELOADED);

    let spec = file(
        dir.path(),
        "more.json",
        r#"{"name": "more", "command": "sleep 1000", "instances": 2}"#,
    );
    let run = s.ctl(Some(&admin), &["add", "-f", &spec]);
    assert_eq!(run.code, 0, "{run:?}");
    assert_eq!(
        run.stdout,
        "added more: more-1, more-2\nstarted more-1, more-2\nrevision 3\n"
    );
    let run = s.ctl(Some(&admin), &["scale", "more", "3"]);
    assert_eq!(run.code, 0, "{run:?}");
    assert_eq!(
        run.stdout,
        "scaled more to 3\nstarted more-3\nstopped -\nrevision 4\n"
    );
    let run = s.ctl(Some(&admin), &["rm", "more", "--timeout", "5s"]);
    assert_eq!(run.code, 0, "{run:?}");
    assert_eq!(run.stdout, "removed more\nrevision 5\n");
    assert!(!s.processes(&admin).iter().any(|p| p["stack"] == "more"));

    // Bad input: a clear message and the documented exit code, nothing sent or changed.
    let not_json = file(dir.path(), "bad.json", "{ stacks: [");
    let invalid = file(
        dir.path(),
        "invalid.json",
        r#"{"stacks": [{"name": "web", "command": ""}]}"#,
    );
    let moved = file(
        dir.path(),
        "moved.json",
        r#"{"node_id": "elsewhere", "stacks": []}"#,
    );
    for (args, code, says) in [
        (
            vec!["apply", "-f", "/nonexistent.json"],
            2,
            "cannot read it",
        ),
        (vec!["apply", "-f", &not_json], 2, "is not JSON"),
        (vec!["apply", "-f", &invalid], 1, "stacks[0].command"),
        (vec!["apply", "-f", &moved], 6, "node_id"),
        (vec!["add", "-f", &not_json], 2, "is not JSON"),
        (vec!["scale", "web", "0"], 2, "0"),
        (vec!["scale", "web", "many"], 2, "many"),
        (vec!["rm", "nope"], 5, "nope"),
    ] {
        let run = s.ctl(Some(&admin), &args);
        assert_eq!(run.code, code, "{args:?}: {run:?}");
        assert!(run.stderr.contains(says), "{args:?}: {run:?}");
    }
    let doc = s.ctl(Some(&admin), &["--json", "status"]).json();
    assert_eq!(
        doc["revision"], 5,
        "only the rm changed the set since: {doc}"
    );
}
