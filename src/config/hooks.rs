//! The hooks section: commands run around the processes' life (`pre_start`, `post_stop`,
//! `on_shutdown`) and webhooks that receive every lifecycle event; with their rules.

use serde::{Deserialize, Serialize};

use super::command::CommandSpec;
use super::{Dur, Problem};

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields, default)]
pub struct HooksConfig {
    /// Before any process starts.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pre_start: Option<HookConfig>,
    /// After all processes stopped.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub post_stop: Option<HookConfig>,
    /// When the supervisor shuts down, last.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub on_shutdown: Option<HookConfig>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct HookConfig {
    pub command: CommandSpec,
    #[serde(default = "default_hook_timeout")]
    pub timeout: Dur,
}

fn default_hook_timeout() -> Dur {
    Dur::secs(30)
}

#[derive(Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields, default)]
pub struct WebhookConfig {
    pub url: String,
    /// Value of the `Authorization` header sent with each batch (a secret: redacted).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub authorization: Option<String>,
    /// Most events per POST.
    pub batch_size: u32,
    /// Events wait at most this long before being sent.
    pub batch_interval: Dur,
    /// Events held while the receiver is down; older ones are dropped (and counted) beyond it.
    pub queue_capacity: u32,
    pub timeout: Dur,
}

impl std::fmt::Debug for WebhookConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WebhookConfig")
            .field("url", &self.url)
            .field("authorization", &self.authorization.as_ref().map(|_| "***"))
            .field("batch_size", &self.batch_size)
            .field("batch_interval", &self.batch_interval)
            .field("queue_capacity", &self.queue_capacity)
            .field("timeout", &self.timeout)
            .finish()
    }
}

impl Default for WebhookConfig {
    fn default() -> Self {
        WebhookConfig {
            url: String::new(),
            authorization: None,
            batch_size: 100,
            batch_interval: Dur::secs(1),
            queue_capacity: 10_000,
            timeout: Dur::secs(5),
        }
    }
}

/// Each hook has a command.
pub(super) fn check_hooks(hooks: &HooksConfig, p: &mut Vec<Problem>) {
    for (name, h) in [
        ("pre_start", &hooks.pre_start),
        ("post_stop", &hooks.post_stop),
        ("on_shutdown", &hooks.on_shutdown),
    ] {
        if h.as_ref().is_some_and(|h| h.command.is_empty()) {
            p.push(Problem::new(
                format!("hooks.{name}.command"),
                "the command must not be empty",
            ));
        }
    }
}

/// Each webhook has an http(s) URL and a queue that holds at least one batch.
pub(super) fn check_webhooks(webhooks: &[WebhookConfig], p: &mut Vec<Problem>) {
    for (i, w) in webhooks.iter().enumerate() {
        match reqwest::Url::parse(&w.url) {
            Ok(u) if u.scheme() == "http" || u.scheme() == "https" => {}
            _ => p.push(Problem::new(
                format!("webhooks[{i}].url"),
                format!("invalid URL {:?}: expected http(s)://…", w.url),
            )),
        }
        if w.queue_capacity < w.batch_size {
            p.push(Problem::new(
                format!("webhooks[{i}]"),
                "queue_capacity must be at least batch_size",
            ));
        }
    }
}
