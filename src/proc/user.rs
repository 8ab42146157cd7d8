//! Who a child runs as: the `user` and `group` of its spec (names or numeric ids) resolved to a
//! uid, a gid and the supplementary groups, and the switch to them in the child.
//!
//! Resolution reads the user and group databases (`/etc/passwd`, `/etc/group`, or NSS), which
//! blocks: it runs in the parent, off the async runtime (on a spawner thread or the blocking
//! pool), never in the child, where `getpwnam` is not async-signal-safe. Between fork and exec
//! the child only calls [`Credentials::switch`]: `setgroups`, `setgid`, `setuid`, in that order
//! (groups while still privileged, the uid last), each a plain system call.
//!
//! Invariant: a `Credentials` holds everything the child needs, already allocated, so the child
//! allocates nothing.

use std::ffi::CString;
use std::path::PathBuf;

use nix::unistd::{Gid, Group, Uid, User};

/// A user and group resolved in the parent, ready for the child to switch to.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Credentials {
    pub uid: Uid,
    pub gid: Gid,
    /// Every group of the child, the primary one included (`setgroups`).
    pub groups: Vec<libc::gid_t>,
    /// The user's name and home directory, when the user has a passwd entry: the child's
    /// `USER`, `LOGNAME` and `HOME` unless its spec sets them.
    pub name: Option<String>,
    pub home: Option<PathBuf>,
}

/// Why a `user` or `group` cannot be used; the message names the fix.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum UserError {
    #[error("no user {0:?} on this machine: create it, or name an existing user or a numeric uid")]
    NoUser(String),
    #[error(
        "no group {0:?} on this machine: create it, or name an existing group or a numeric gid"
    )]
    NoGroup(String),
    #[error(
        "uid {0} has no entry in the user database, so its group is unknown: give `group` as well"
    )]
    NoPrimaryGroup(u32),
    #[error(
        "state-manager runs as uid {uid}, not root, so it cannot switch to {what}: run it as root, or remove `user` and `group`"
    )]
    NotRoot { uid: u32, what: String },
    #[error("cannot read the user database: {0}")]
    Lookup(String),
}

fn user_by(spec: &str) -> Result<Option<User>, UserError> {
    let found = match spec.parse::<u32>() {
        Ok(n) => User::from_uid(Uid::from_raw(n)),
        Err(_) => User::from_name(spec),
    };
    found.map_err(|e| UserError::Lookup(e.to_string()))
}

fn group_by(spec: &str) -> Result<Gid, UserError> {
    let found = match spec.parse::<u32>() {
        Ok(n) => return Ok(Gid::from_raw(n)),
        Err(_) => Group::from_name(spec),
    };
    match found.map_err(|e| UserError::Lookup(e.to_string()))? {
        Some(g) => Ok(g.gid),
        None => Err(UserError::NoGroup(spec.to_string())),
    }
}

/// Resolve `user` and `group` (each a name or a numeric id). With a user only, the group is the
/// user's primary group and the supplementary groups are the user's (`getgrouplist`); with a
/// group too, that group replaces the primary one. With a group only, the uid stays this
/// process's and the group is the only one. Blocking: call it off the async runtime.
pub fn resolve(user: Option<&str>, group: Option<&str>) -> Result<Credentials, UserError> {
    let gid = group.map(group_by).transpose()?;
    let Some(spec) = user else {
        let gid = gid.unwrap_or_else(Gid::effective);
        return Ok(Credentials {
            uid: Uid::effective(),
            gid,
            groups: vec![gid.as_raw()],
            name: None,
            home: None,
        });
    };
    let Some(entry) = user_by(spec)? else {
        let uid = spec
            .parse::<u32>()
            .map_err(|_| UserError::NoUser(spec.to_string()))?;
        let gid = gid.ok_or(UserError::NoPrimaryGroup(uid))?;
        return Ok(Credentials {
            uid: Uid::from_raw(uid),
            gid,
            groups: vec![gid.as_raw()],
            name: None,
            home: None,
        });
    };
    let gid = gid.unwrap_or(entry.gid);
    let name = CString::new(entry.name.as_str()).map_err(|e| UserError::Lookup(e.to_string()))?;
    let mut groups: Vec<libc::gid_t> = nix::unistd::getgrouplist(&name, gid)
        .map_err(|e| UserError::Lookup(format!("the groups of {}: {e}", entry.name)))?
        .into_iter()
        .map(Gid::as_raw)
        .collect();
    groups.sort_unstable();
    groups.dedup();
    Ok(Credentials {
        uid: entry.uid,
        gid,
        groups,
        name: Some(entry.name),
        home: Some(entry.dir),
    })
}

/// [`resolve`], then whether this process may switch to the result: root may switch to anyone;
/// any other uid only to itself and its own group. The check of `check` and `POST /config`.
pub fn check(user: Option<&str>, group: Option<&str>) -> Result<Credentials, UserError> {
    let c = resolve(user, group)?;
    let me = Uid::effective();
    if !me.is_root() && (c.uid != me || c.gid != Gid::effective()) {
        let what = match (user, group) {
            (Some(u), Some(g)) => format!("user {u:?} and group {g:?}"),
            (Some(u), None) => format!("user {u:?}"),
            (None, g) => format!("group {:?}", g.unwrap_or_default()),
        };
        return Err(UserError::NotRoot {
            uid: me.as_raw(),
            what,
        });
    }
    Ok(c)
}

impl Credentials {
    /// Switch the calling process to these credentials: supplementary groups, then the gid,
    /// then the uid. Async-signal-safe (three system calls on memory allocated beforehand), for
    /// the child between fork and exec; a failure fails the spawn with its errno.
    pub fn switch(&self) -> std::io::Result<()> {
        // SAFETY: `groups` is a live allocation of `groups.len()` gids; setgroups, setgid and
        // setuid read only their arguments.
        unsafe {
            if libc::setgroups(self.groups.len(), self.groups.as_ptr()) != 0
                || libc::setgid(self.gid.as_raw()) != 0
                || libc::setuid(self.uid.as_raw()) != 0
            {
                return Err(std::io::Error::last_os_error());
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn root_resolves_by_name_and_by_id() {
        let by_name = resolve(Some("root"), None).unwrap();
        assert_eq!((by_name.uid.as_raw(), by_name.gid.as_raw()), (0, 0));
        assert_eq!(by_name.name.as_deref(), Some("root"));
        assert!(by_name.groups.contains(&0), "{:?}", by_name.groups);
        assert_eq!(resolve(Some("0"), None).unwrap(), by_name);
    }

    #[test]
    fn a_group_replaces_the_primary_one() {
        let c = resolve(Some("root"), Some("12345")).unwrap();
        assert_eq!(c.gid.as_raw(), 12345);
        assert!(c.groups.contains(&12345), "{:?}", c.groups);
    }

    #[test]
    fn unknown_names_and_bare_uids_are_refused_with_the_fix() {
        let none = "no-such-user-sm-test";
        assert_eq!(
            resolve(Some(none), None),
            Err(UserError::NoUser(none.into()))
        );
        assert_eq!(
            resolve(None, Some(none)),
            Err(UserError::NoGroup(none.into()))
        );
        let e = resolve(Some("4000000001"), None).unwrap_err();
        assert_eq!(e, UserError::NoPrimaryGroup(4_000_000_001));
        assert!(e.to_string().contains("give `group`"), "{e}");
        let c = resolve(Some("4000000001"), Some("4000000002")).unwrap();
        assert_eq!(c.groups, [4_000_000_002]);
    }
}
