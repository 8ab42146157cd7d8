//! `user` and `group` of a process, as root, with a real unprivileged user made for the test
//! (`useradd`, with a supplementary group) and removed after it: the child's real, effective,
//! saved and filesystem uid and gid and its groups, as `/proc/<pid>/status` shows them, are the
//! user's; HOME, USER and LOGNAME are the user's unless the spec sets them; a user or group
//! that does not exist is refused at its field's path.

use crate::common;

use std::time::Duration;

use common::supervised::start;
use common::wait_for_async;
use nix::unistd::{Group, User};
use state_manager::config::{self, ConfigError};
use state_manager::events::ExitStatus;
use state_manager::proc::{RunOptions, run};
use state_manager::supervisor::SupervisorHandle;

const LONG: Duration = Duration::from_secs(30);

/// A user and a supplementary group made with useradd/groupadd, removed on drop.
struct TestUser {
    name: String,
    extra: String,
}

async fn admin(argv: &[&str]) {
    let argv: Vec<String> = argv.iter().map(|s| s.to_string()).collect();
    let path = std::env::var("PATH").unwrap_or_default();
    let out = run(
        &argv,
        RunOptions {
            env: vec![("PATH".into(), format!("{path}:/usr/sbin:/sbin"))],
            timeout: LONG,
            ..Default::default()
        },
    )
    .await
    .unwrap_or_else(|e| panic!("{argv:?}: {e}"));
    assert_eq!(out.status, ExitStatus::Code(0), "{argv:?}: {}", out.stderr);
}

impl TestUser {
    async fn create() -> TestUser {
        let id = std::process::id();
        let u = TestUser {
            name: format!("smu{id}"),
            extra: format!("smg{id}"),
        };
        admin(&["groupadd", &u.extra]).await;
        admin(&[
            "useradd",
            "--no-create-home",
            "--home-dir",
            &format!("/nonexistent/{}", u.name),
            "--shell",
            "/usr/sbin/nologin",
            "--user-group",
            "--groups",
            &u.extra,
            &u.name,
        ])
        .await;
        u
    }
}

impl Drop for TestUser {
    fn drop(&mut self) {
        // std's wait may find the exit collected by this test process's reaper (ECHILD); it
        // returns only once the command has ended either way, so its result is not needed.
        let _ = std::process::Command::new("userdel")
            .arg(&self.name)
            .status();
        let _ = std::process::Command::new("groupdel")
            .arg(&self.extra)
            .status();
    }
}

/// `Uid:`, `Gid:` and `Groups:` of /proc/<pid>/status, and the child's environment.
async fn identity(pid: u32) -> (Vec<u32>, Vec<u32>, Vec<u32>, Vec<String>) {
    let env = common::environ(pid).await;
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let field = |key: &str| -> Vec<u32> {
        let line = status.lines().find(|l| l.starts_with(key)).unwrap();
        line[key.len()..]
            .split_whitespace()
            .map(|n| n.parse().unwrap())
            .collect()
    };
    let mut groups = field("Groups:");
    groups.sort_unstable();
    (field("Uid:"), field("Gid:"), groups, env)
}

async fn running_pid(h: &SupervisorHandle, name: &str) -> u32 {
    wait_for_async(&format!("{name} running"), LONG, || async {
        h.get(name).await.ok()?.pid
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_process_runs_as_its_user_with_the_users_groups() {
    assert!(
        nix::unistd::Uid::effective().is_root(),
        "the user tests switch users: run them as root"
    );
    let u = TestUser::create().await;
    let user = User::from_name(&u.name).unwrap().unwrap();
    let extra = Group::from_name(&u.extra).unwrap().unwrap().gid.as_raw();
    let (uid, gid) = (user.uid.as_raw(), user.gid.as_raw());
    let json = format!(
        r#"{{"stacks": [
            {{"name": "as-user", "command": "sleep", "args": ["1000"], "user": "{n}"}},
            {{"name": "by-id", "command": "sleep", "args": ["1000"], "user": "{uid}", "group": "{g}"}},
            {{"name": "own-home", "command": "sleep", "args": ["1000"], "user": "{n}",
              "env": {{"HOME": "/srv/own", "USER": "someone"}}}}
        ]}}"#,
        n = u.name,
        g = u.extra,
    );
    let (h, _rx) = start(&json).await;

    let (uids, gids, groups, env) = identity(running_pid(&h, "as-user").await).await;
    assert_eq!(uids, [uid; 4], "real, effective, saved, filesystem uid");
    assert_eq!(gids, [gid; 4], "real, effective, saved, filesystem gid");
    let mut want = vec![gid, extra];
    want.sort_unstable();
    assert_eq!(groups, want, "the user's groups, and no more of root's");
    let home = format!("HOME=/nonexistent/{}", u.name);
    for kv in [
        home.as_str(),
        &format!("USER={}", u.name),
        &format!("LOGNAME={}", u.name),
    ] {
        assert!(env.iter().any(|e| e == kv), "{kv} not in {env:?}");
    }

    // A numeric uid, and a group in place of the user's own primary group.
    let (uids, gids, groups, _) = identity(running_pid(&h, "by-id").await).await;
    assert_eq!((uids, gids), (vec![uid; 4], vec![extra; 4]));
    assert!(groups.contains(&extra), "{groups:?}");

    // The spec's env wins over the user's.
    let (_, _, _, env) = identity(running_pid(&h, "own-home").await).await;
    assert!(env.iter().any(|e| e == "HOME=/srv/own"), "{env:?}");
    assert!(env.iter().any(|e| e == "USER=someone"), "{env:?}");
    assert!(
        env.iter().any(|e| e == &format!("LOGNAME={}", u.name)),
        "{env:?}"
    );

    h.stop_all().await.unwrap();
}

#[test]
fn a_user_or_group_that_does_not_exist_is_refused_at_its_path() {
    let json = r#"{"stacks": [
        {"name": "a", "command": "sleep 1", "user": "no-such-user-sm"},
        {"name": "b", "command": "sleep 1", "user": "root", "group": "no-such-group-sm"},
        {"name": "c", "command": "sleep 1", "user": "  "},
        {"name": "d", "command": "sleep 1", "user": "4000000001"}
    ]}"#;
    let Err(ConfigError::Invalid(problems)) = config::parse(json) else {
        panic!("accepted");
    };
    let at = |path: &str| {
        problems
            .iter()
            .find(|p| p.path == path)
            .unwrap_or_else(|| panic!("nothing at {path}: {problems:#?}"))
            .message
            .clone()
    };
    assert!(at("stacks[0].user").contains("no user \"no-such-user-sm\""));
    assert!(at("stacks[1].group").contains("no group \"no-such-group-sm\""));
    assert!(at("stacks[2].user").contains("numeric id"));
    assert!(at("stacks[3].user").contains("give `group`"));
    assert_eq!(problems.len(), 4, "{problems:#?}");
}
