//! `ctl release-lease [--no-checkpoint]` and `ctl acquire-lease`: moving an environment between
//! nodes. Both wait for the whole operation (stopping or starting the stacks, the final
//! checkpoint), with a spinner on a terminal.

use serde_json::{Value, json};

use super::client::Client;
use super::error::CtlError;
use super::output;

/// `POST /release-lease`.
pub async fn release(client: &Client, no_checkpoint: bool) -> Result<(), CtlError> {
    let answer = client
        .post(&["release-lease"])
        .json(json!({ "checkpoint": !no_checkpoint }))
        .progress("releasing the lease")
        .send()
        .await?;
    output::print(client.json, answer, released);
    Ok(())
}

/// A release's answer in words.
pub fn released(v: &Value) -> String {
    let epoch = match v["released_epoch"].as_u64() {
        Some(e) => format!(" (epoch {e})"),
        None => String::new(),
    };
    let checkpoint = match &v["final_checkpoint"] {
        Value::Null => "none".to_string(),
        other => output::checkpoint_ref(other),
    };
    format!("released the lease{epoch}; this node is now standby\nfinal checkpoint  {checkpoint}\n")
}

/// `POST /acquire-lease`.
pub async fn acquire(client: &Client) -> Result<(), CtlError> {
    let answer = client
        .post(&["acquire-lease"])
        .json(json!({}))
        .progress("acquiring the lease")
        .send()
        .await?;
    output::print(client.json, answer, acquired);
    Ok(())
}

/// An acquire's answer in words: the epoch, wherever the server reports it.
pub fn acquired(v: &Value) -> String {
    let epoch = v["epoch"]
        .as_u64()
        .or_else(|| v["role"]["epoch"].as_u64())
        .or_else(|| v["lease"]["epoch"].as_u64());
    match epoch {
        Some(e) => format!("acquired the lease (epoch {e}); this node is now the owner\n"),
        None => "acquired the lease; this node is now the owner\n".into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn release_and_acquire_in_words() {
        let v = json!({"released_epoch": 3, "final_checkpoint": {"id": "c1", "files": 2}});
        assert_eq!(
            released(&v),
            "released the lease (epoch 3); this node is now standby\nfinal checkpoint  c1\n"
        );
        let v = json!({"released_epoch": 3, "final_checkpoint": null});
        assert!(released(&v).ends_with("final checkpoint  none\n"));
        assert_eq!(
            acquired(&json!({"role": {"role": "owner", "epoch": 4}})),
            "acquired the lease (epoch 4); this node is now the owner\n"
        );
        assert!(acquired(&Value::Null).starts_with("acquired the lease;"));
    }
}
