//! Who and when: the process identity a lock note or lease records (pid,
//! host, CodeBuild build) and the clock journal entries and leases are
//! stamped with. The journal, the lock and both stores depend on this; it
//! depends on nothing of the engine.

use serde::{Deserialize, Serialize};

/// Who holds (or held) the lock.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Holder {
    pub pid: u32,
    pub host: String,
    pub started: String,
    pub command: String,
    /// The CodeBuild build (`CODEBUILD_BUILD_ID`), when run in one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub build_id: Option<String>,
    /// Remote lease: when it was last renewed, and for how long it holds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub renewed: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lease_seconds: Option<u64>,
}

impl Holder {
    /// This process, about to run `command`.
    pub fn me(command: &str) -> Self {
        Holder {
            pid: std::process::id(),
            host: hostname(),
            started: now(),
            command: command.to_owned(),
            build_id: build_id(),
            renewed: None,
            lease_seconds: None,
        }
    }

    /// What a lock note that cannot be parsed stands for.
    pub fn unreadable() -> Self {
        Holder {
            pid: 0,
            host: "an unknown host".into(),
            started: "an unknown time".into(),
            command: "?".into(),
            build_id: None,
            renewed: None,
            lease_seconds: None,
        }
    }
}

impl std::fmt::Display for Holder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "`paymig {}` (pid {} on {}", self.command, self.pid, self.host)?;
        if let Some(b) = &self.build_id {
            write!(f, ", build {b}")?;
        }
        write!(f, ", started {}", self.started)?;
        if let (Some(r), Some(s)) = (&self.renewed, self.lease_seconds) {
            write!(f, ", lease renewed {r} for {s}s")?;
        }
        f.write_str(")")
    }
}

/// The CodeBuild build id of this process, if any.
pub fn build_id() -> Option<String> {
    std::env::var("CODEBUILD_BUILD_ID").ok().filter(|b| !b.is_empty())
}

/// Whether `pid` is a live process on this host.
pub fn is_alive(pid: u32) -> bool {
    // SAFETY: signal 0 only checks for existence and permission.
    let rc = unsafe { libc::kill(pid as libc::pid_t, 0) };
    rc == 0 || std::io::Error::last_os_error().raw_os_error() == Some(libc::EPERM)
}

/// This machine's host name.
pub fn hostname() -> String {
    let mut buf = [0u8; 256];
    // SAFETY: the buffer is valid for its length.
    let rc = unsafe { libc::gethostname(buf.as_mut_ptr().cast(), buf.len()) };
    if rc != 0 {
        return "unknown-host".into();
    }
    let end = buf.iter().position(|b| *b == 0).unwrap_or(buf.len());
    String::from_utf8_lossy(&buf[..end]).into_owned()
}

/// The current UTC time in RFC 3339, as journal, lock and lease record it.
pub fn now() -> String {
    time::OffsetDateTime::now_utc().format(&time::format_description::well_known::Rfc3339).unwrap_or_default()
}
