//! A child's environment, prepared once as `execve` takes it.
//!
//! What a child inherits from us is read once ([`inherited`]); each start copies it with that
//! start's own variables into one block, which the spawner hands to `execve` as it is. Read and
//! copied entry by entry at every start (two strings per variable, a map, then a C string each),
//! a thousand starts at once make some 250 short-lived allocations apiece, which leave the heap
//! fragmented around what the processes keep (docs/BENCHMARKS.md).

use std::ffi::{OsStr, OsString};
use std::io;
use std::os::unix::ffi::OsStrExt;
use std::sync::OnceLock;

/// The environment a child gets: `KEY=value` entries, each ending in NUL, in one block.
#[derive(Clone, Debug)]
pub struct Environment {
    block: Vec<u8>,
    /// A variable held a NUL byte, which no environment can carry: the spawn is refused.
    nul: bool,
}

impl Environment {
    /// The variables, in no particular order.
    pub fn iter(&self) -> impl Iterator<Item = (&OsStr, &OsStr)> {
        self.block
            .split(|&b| b == 0)
            .filter(|entry| !entry.is_empty())
            .map(|entry| {
                let eq = entry.iter().position(|&b| b == b'=').unwrap_or(entry.len());
                let value = entry.get(eq + 1..).unwrap_or_default();
                (OsStr::from_bytes(&entry[..eq]), OsStr::from_bytes(value))
            })
    }

    /// The value of `key`, if set.
    pub fn get(&self, key: &str) -> Option<&OsStr> {
        self.iter()
            .find(|(k, _)| k.as_bytes() == key.as_bytes())
            .map(|(_, v)| v)
    }

    /// The block for `execve`, or the error of a variable that cannot be passed.
    pub(super) fn into_block(self) -> io::Result<Vec<u8>> {
        if self.nul {
            return Err(super::launch::nul_error());
        }
        Ok(self.block)
    }
}

/// The environment a child gets: this process's own, minus state-manager's secrets and settings
/// (`STATE_MANAGER_*`), with `overrides` applied on top (a key given twice takes its last value).
pub fn child_env<'a>(overrides: impl IntoIterator<Item = (&'a str, &'a str)>) -> Environment {
    let mut overrides: Vec<(&str, &str)> = overrides.into_iter().collect();
    // The sort is stable: reversed first, the last value of a key comes first and is kept.
    overrides.reverse();
    overrides.sort_by_key(|&(k, _)| k);
    overrides.dedup_by_key(|&mut (k, _)| k);
    let overridden = |k: &OsStr| {
        overrides
            .binary_search_by(|&(o, _)| o.as_bytes().cmp(k.as_bytes()))
            .is_ok()
    };
    let kept = inherited().iter().filter(|(k, _)| !overridden(k));
    let entries = || {
        kept.clone()
            .map(|(k, v)| (k.as_bytes(), v.as_bytes()))
            .chain(overrides.iter().map(|(k, v)| (k.as_bytes(), v.as_bytes())))
    };
    let len = entries().map(|(k, v)| k.len() + v.len() + 2).sum();
    let mut block = Vec::with_capacity(len);
    for (k, v) in entries() {
        block.extend_from_slice(k);
        block.push(b'=');
        block.extend_from_slice(v);
        block.push(0);
    }
    let nul = overrides
        .iter()
        .any(|(k, v)| k.contains('\0') || v.contains('\0'));
    Environment { block, nul }
}

/// What every child inherits from this process, read at the first start: nothing in
/// state-manager changes its own environment while it runs.
fn inherited() -> &'static [(OsString, OsString)] {
    static INHERITED: OnceLock<Vec<(OsString, OsString)>> = OnceLock::new();
    INHERITED.get_or_init(|| without_our_settings(std::env::vars_os()))
}

/// `vars` without state-manager's own settings and secrets (`STATE_MANAGER_*`).
fn without_our_settings(
    vars: impl Iterator<Item = (OsString, OsString)>,
) -> Vec<(OsString, OsString)> {
    vars.filter(|(k, _)| !k.as_bytes().starts_with(b"STATE_MANAGER_"))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn our_settings_and_secrets_are_not_inherited() {
        let vars = [
            ("PATH", "/bin"),
            ("STATE_MANAGER_JWT_SECRET", "s3cret"),
            ("STATE_MANAGER_CONFIG", "c.json"),
            ("STATE_MANAGERX", "kept: not our prefix"),
        ]
        .map(|(k, v)| (OsString::from(k), OsString::from(v)));
        let kept = without_our_settings(vars.into_iter());
        let keys: Vec<_> = kept.iter().map(|(k, _)| k.to_str().unwrap()).collect();
        assert_eq!(keys, ["PATH", "STATE_MANAGERX"]);
    }

    #[test]
    fn overrides_win_and_the_last_of_a_key_counts() {
        let env = child_env([("A", "1"), ("PATH", "/only/here"), ("A", "2"), ("B", "")]);
        assert_eq!(env.get("A"), Some(OsStr::new("2")));
        assert_eq!(env.get("B"), Some(OsStr::new("")));
        assert_eq!(env.get("PATH"), Some(OsStr::new("/only/here")));
        assert_eq!(env.iter().filter(|(k, _)| *k == "PATH").count(), 1);
        assert_eq!(env.iter().filter(|(k, _)| *k == "A").count(), 1);
        // Everything else of ours is there, as it is.
        for (k, v) in inherited() {
            if let Some(k) = k.to_str().filter(|k| !["A", "B", "PATH"].contains(k)) {
                assert_eq!(env.get(k), Some(v.as_os_str()));
            }
        }
        let block = env.into_block().unwrap();
        assert_eq!(block.last(), Some(&0));
        assert!(block.windows(2).all(|w| w != [0, 0]), "no empty entry");
    }

    #[test]
    fn a_nul_in_a_variable_refuses_the_spawn() {
        assert!(child_env([("A", "x\0y")]).into_block().is_err());
        assert!(child_env([("A\0B", "x")]).into_block().is_err());
        assert!(child_env([("A", "x")]).into_block().is_ok());
    }
}
