//! kill -9 of the real server binary at many points of a restore: during the checkpoint hook of
//! the undo checkpoint and during the restore hook (each blocked on a fifo, so the kill lands
//! exactly there), and after delays stepped through the measured length of a whole restore.
//! After each kill the server restarts on the same data directory, and env_dir must be exactly
//! the old tree or exactly the restored one (every file compared), nothing of the restore may
//! be left beside it, and `GET /` and `GET /events` must say how the restore was settled.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use super::{Backend, config};
use crate::common::alive;
use crate::common::node::{LONG, Node, keys, tree};

/// Files in each tree, each holding its generation's marker.
const FILES: usize = 200;
/// Kill points after a delay, spread over the length of one whole restore.
const DELAYS: u32 = 18;

type Tree = Vec<(String, String)>;

/// Write generation `gen`'s tree into `env` (replacing what is there).
fn write_tree(env: &Path, generation: char) -> Tree {
    let _ = std::fs::remove_dir_all(env);
    for i in 0..FILES {
        let path = env.join(format!("d{}/f{i:03}", i % 10));
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        let mut body = format!("generation {generation} file {i}\n").into_bytes();
        let seed = (i as u32 + 1).wrapping_mul(generation as u32);
        body.extend(
            (0..16_384u32).map(|n| (n.wrapping_add(seed).wrapping_mul(2_654_435_761) >> 17) as u8),
        );
        std::fs::write(path, body).unwrap();
    }
    std::fs::write(env.join(format!("only-{generation}")), "x").unwrap();
    tree(env)
}

/// The hook of both points: logs its checkpoint id; blocks once on the fifo when armed.
fn hook_script(ctl: &Path) -> PathBuf {
    let script = ctl.join("hook.sh");
    let c = ctl.display();
    std::fs::write(
        &script,
        format!(
            "echo \"$CHECKPOINT_ID\" >> {c}/$1.log\n\
             if [ -e {c}/block-$1 ]; then rm {c}/block-$1; echo $$ > {c}/pid-$1; : > {c}/entered-$1; timeout 60 cat {c}/fifo > /dev/null; fi\n"
        ),
    )
    .unwrap();
    nix::unistd::mkfifo(&ctl.join("fifo"), nix::sys::stat::Mode::S_IRWXU).unwrap();
    script
}

/// Let a hook that outlived its server go (it reads the fifo; no reader is fine too).
fn release_fifo(ctl: &Path) {
    use std::os::unix::fs::OpenOptionsExt;
    let _ = std::fs::OpenOptions::new()
        .write(true)
        .custom_flags(libc::O_NONBLOCK)
        .open(ctl.join("fifo"));
}

/// `POST /restore` in the background; its answer (or the broken connection) is not awaited.
fn post_restore(n: &Node, id: &str) {
    let token = keys()
        .mint(
            "test",
            state_manager::auth::Scope::Admin,
            Duration::from_secs(3600),
        )
        .unwrap();
    let req = reqwest::Client::new()
        .post(format!("{}/restore", n.base))
        .bearer_auth(token)
        .json(&json!({ "checkpoint": id }));
    tokio::spawn(async move {
        let _ = req.send().await;
    });
}

/// How often the restore hook ran for checkpoint `id`.
fn restore_hook_runs(ctl: &Path, id: &str) -> usize {
    let log = std::fs::read_to_string(ctl.join("restore.log")).unwrap_or_default();
    log.lines().filter(|l| *l == id).count()
}

/// Restart on the same data directory and wait until the processes run again (so recovery,
/// which comes before them, is done).
async fn restart(data: &Path, cfg: &Value) -> Node {
    let n = Node::spawn_binary(data, cfg).await;
    n.wait_role("owner").await;
    n.wait_running("app").await;
    n
}

/// What one kill point found after the restart.
#[derive(Debug, PartialEq, Eq, Clone, Copy)]
enum Found {
    NotStarted,
    RolledBack,
    Completed,
    FinishedBeforeKill,
}

/// Check env_dir, leftovers, `GET /` and the events after a restart; `old`/`new` are the trees
/// before and after the restore of checkpoint `id`.
async fn check(n: &Node, id: &str, old: &Tree, new: &Tree) -> Found {
    let now = tree(&n.env_dir());
    let is_new = &now == new;
    assert!(is_new || &now == old, "env_dir is a mix of both trees");
    let beside: Vec<String> = std::fs::read_dir(&n.data_dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|name| name.starts_with(".env."))
        .collect();
    assert!(beside.is_empty(), "left beside env_dir: {beside:?}");
    let state = n.data_dir.join("checkpoint");
    assert!(!state.join("restore-journal.json").exists());
    assert!(!state.join("staging").exists());
    let events = n.get("/events?process=_environment&limit=1000").await;
    let told = |words: &str| {
        events.as_array().unwrap().iter().any(|e| {
            let reason = e["reason"].as_str().unwrap_or("");
            reason.contains(id) && reason.contains(words)
        })
    };
    let last = n.get("/").await["last_restore"].clone();
    if last.is_null() {
        if !is_new {
            return Found::NotStarted;
        }
        assert!(told(&format!("env_dir holds checkpoint {id}")), "{events}");
        return Found::FinishedBeforeKill;
    }
    assert_eq!(last["checkpoint"], id, "{last}");
    match last["outcome"].as_str().unwrap() {
        "interrupted_rolled_back" => {
            assert!(
                !is_new,
                "rolled back, yet env_dir is the restored tree: {last}"
            );
            assert!(told("rolled back"), "{events}");
            Found::RolledBack
        }
        "interrupted_completed" => {
            assert!(is_new, "completed, yet env_dir is the old tree: {last}");
            assert!(told("completed"), "{events}");
            if last["interrupted_in"] == "swapped" {
                let detail = last["detail"].as_str().unwrap();
                assert!(detail.ends_with("the restore hooks ran again"), "{last}");
            }
            Found::Completed
        }
        other => panic!("unexpected outcome {other}: {last}"),
    }
}

pub async fn kill_9_during_a_restore_leaves_one_whole_tree(b: &Backend) {
    let d = tempfile::tempdir().unwrap();
    let (data, ctl) = (d.path().join("data"), d.path().join("ctl"));
    std::fs::create_dir_all(&ctl).unwrap();
    let script = hook_script(&ctl);
    let app = json!({"name": "app", "command": "sleep", "args": ["100000"],
        "checkpoint_command": ["sh", script, "checkpoint"],
        "restore_command": ["sh", script, "restore"]});
    let mut cfg = config(b, &data, vec![app]);
    cfg["lease"] = json!({"ttl": "3s", "poll_interval": "100ms", "clock_skew": "100ms"});
    let mut n = restart(&data, &cfg).await;
    let mut trees = Vec::new();
    let mut ids = Vec::new();
    for generation in ['A', 'B'] {
        trees.push(write_tree(&n.env_dir(), generation));
        let (status, c) = n.post("/checkpoint", None).await;
        assert_eq!(status, 201, "{c}");
        ids.push(c["id"].as_str().unwrap().to_string());
    }
    // env_dir is B; whole restores to A and back to B, measured, are told as completed.
    let mut whole = Duration::ZERO;
    for target in [0, 1] {
        let started = Instant::now();
        let (status, r) = n
            .post("/restore", Some(json!({"checkpoint": ids[target]})))
            .await;
        assert_eq!(status, 200, "{r}");
        whole = whole.max(started.elapsed());
        assert_eq!(tree(&n.env_dir()), trees[target]);
        let last = n.get("/").await["last_restore"].clone();
        assert_eq!(
            (last["outcome"].as_str(), last["checkpoint"].as_str()),
            (Some("completed"), Some(ids[target].as_str())),
            "{last}"
        );
    }

    let mut current = 1;
    let mut found = Vec::new();
    let points: Vec<Option<&str>> = ["checkpoint", "restore"]
        .map(Some)
        .into_iter()
        .chain((0..DELAYS).map(|_| None))
        .collect();
    for (k, hook) in points.into_iter().enumerate() {
        let target = 1 - current;
        let hook_runs = restore_hook_runs(&ctl, &ids[target]);
        if let Some(h) = hook {
            std::fs::write(ctl.join(format!("block-{h}")), "").unwrap();
        }
        post_restore(&n, &ids[target]);
        match hook {
            Some(h) => {
                let entered = ctl.join(format!("entered-{h}"));
                n.wait(&format!("the {h} hook to block"), LONG, |_| {
                    let e = entered.clone();
                    async move { std::fs::remove_file(e).ok() }
                })
                .await;
            }
            None => {
                let delay = whole.mul_f64((k - 2) as f64 / DELAYS as f64);
                tokio::time::sleep(delay).await;
            }
        }
        n.kill();
        if let Some(h) = hook {
            // The hook dies with its server (PDEATHSIG): it does not run on beside the next
            // (left alone it would block up to 60 s on the fifo).
            let pid: u32 = std::fs::read_to_string(ctl.join(format!("pid-{h}")))
                .unwrap()
                .trim()
                .parse()
                .unwrap();
            let killed = Instant::now();
            while alive(pid) {
                assert!(
                    killed.elapsed() < Duration::from_secs(10),
                    "the {h} hook (pid {pid}) outlived its kill -9'd server"
                );
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        }
        release_fifo(&ctl);
        drop(n);
        n = restart(&data, &cfg).await;
        let f = check(&n, &ids[target], &trees[current], &trees[target]).await;
        if hook == Some("restore") {
            // The restore hook killed halfway ran once more at start-up.
            assert_eq!(restore_hook_runs(&ctl, &ids[target]), hook_runs + 2);
        }
        if matches!(f, Found::Completed | Found::FinishedBeforeKill) {
            current = target;
        }
        found.push(f);
    }
    // Each hook point is a kill on its side of the swap.
    assert_eq!(
        found[..2],
        [Found::RolledBack, Found::Completed],
        "{found:?}"
    );
    assert!(
        found.iter().filter(|f| **f != Found::NotStarted).count() >= 10,
        "most kills land during the restore: {found:?} (a whole restore took {whole:?})"
    );
}
