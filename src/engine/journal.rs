//! The write-ahead rollback journal (SPEC "Journal"): append-only JSON lines,
//! fsynced. `intent` is written before each mutating call, `done` (with the
//! id/ARN) after it, `undone` when it has been reversed. Updates carry the
//! previous value so rollback can restore it.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use crate::engine::store::who::{hostname, now};
use crate::engine::store::{Store, StoreError};

use serde::{Deserialize, Serialize};
use serde_json::Value;

/// A journal problem.
#[derive(Debug, thiserror::Error)]
pub enum JournalError {
    #[error("{path}:{line}: journal line is corrupt ({message})\nhelp: paymig never rewrites earlier journal lines; restore the file from a backup or inspect that line")]
    Corrupt { path: PathBuf, line: usize, message: String },
    #[error("{path} belongs to migration {found:?}, not {expected:?}\nhelp: point [migration] journal at this migration's own journal")]
    OtherMigration { path: PathBuf, found: String, expected: String },
    #[error("{0}")]
    Unsupported(String),
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl JournalError {
    /// Whether the problem is the user's to fix before anything runs (exit 2).
    pub fn is_usage(&self) -> bool {
        match self {
            JournalError::Store(e) => e.is_usage(),
            _ => true,
        }
    }
}

/// The kind of a mutating call recorded in an intent.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Op {
    /// Creates a resource; undone by deleting it.
    Create,
    /// Changes a resource's setting; undone by restoring `prev`.
    Update,
    /// Takes over a resource found to exist but missing from the journal.
    Adopt,
}

/// One journal line.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Entry {
    pub seq: u64,
    pub run: String,
    pub ts: String,
    pub migration: String,
    #[serde(flatten)]
    pub body: Body,
}

/// What a journal line records.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Body {
    RunStart {
        command: String,
        host: String,
        pid: u32,
        version: String,
    },
    Intent(Intent),
    Done {
        intent: u64,
        id: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        arn: Option<String>,
        #[serde(default, skip_serializing_if = "Value::is_null")]
        data: Value,
    },
    Undone {
        intent: u64,
    },
    RunEnd {
        status: String,
        #[serde(default)]
        mutating_calls: u64,
        /// The run's waits and step times (what the next plan's estimate
        /// learns from, and what `status` draws).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        observed: Option<super::estimate::Observation>,
    },
}

/// A mutating call about to be made.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Intent {
    pub step: String,
    pub op: Op,
    /// Resource kind (`kms_key`, `vpc`, `subnet`, …).
    pub kind: String,
    /// A stable logical key, unique within the migration (`network/subnet/us-east-1a`).
    pub key: String,
    /// The resource's prod name (or the setting changed).
    pub name: String,
    /// The value before an update, restored by rollback.
    #[serde(default, skip_serializing_if = "Value::is_null")]
    pub prev: Value,
    /// Anything undo or validate will need (parent ids, snapshot ids…).
    #[serde(default, skip_serializing_if = "Value::is_null")]
    pub data: Value,
}

/// For an `Option` field of a step's `Prev` type that the JSON must still
/// carry (as `null` when empty): `#[serde(deserialize_with = "present")]`
/// makes a missing key an error, so an untagged `Prev` variant never
/// matches an object of another shape.
pub fn present<'de, D, T>(d: D) -> Result<T, D::Error>
where
    D: serde::Deserializer<'de>,
    T: Deserialize<'de>,
{
    T::deserialize(d)
}

/// An intent with what became of it.
#[derive(Debug, Clone, Serialize)]
pub struct Record {
    pub seq: u64,
    pub run: String,
    #[serde(flatten)]
    pub intent: Intent,
    pub id: Option<String>,
    pub arn: Option<String>,
    pub done_data: Value,
    pub undone: bool,
}

impl Record {
    /// Whether the call may have taken effect and has not been reversed.
    pub fn is_live(&self) -> bool {
        !self.undone
    }

    /// The value an update replaced, as the step that wrote it typed it
    /// (each step declares one `Prev` type for its updates; the JSON shape
    /// is the journal's, so journals written by earlier versions still read).
    pub fn prev<T: serde::de::DeserializeOwned>(&self) -> Result<T, JournalError> {
        serde_json::from_value(self.intent.prev.clone()).map_err(|e| {
            JournalError::Unsupported(format!(
                "journal entry {} ({}): the previous value cannot be read ({e})\nhelp: this journal was written by another paymig version; roll back with that version",
                self.seq, self.intent.key
            ))
        })
    }
}

/// A run as the journal tells it.
#[derive(Debug, Clone, Serialize)]
pub struct Run {
    pub id: String,
    pub command: String,
    pub started: String,
    pub host: String,
    pub pid: u32,
    pub status: Option<String>,
    /// The rollback or destroy run that undid every change of this one, and
    /// when it ended that (status shows `rolled back by … at …`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rolled_back_by: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rolled_back_at: Option<String>,
    /// Its waits and step times, when it recorded them.
    #[serde(skip)]
    pub observed: Option<super::estimate::Observation>,
}

/// The crash campaign's hook: the process kills itself after this many
/// journal writes (`PAYMIG_TEST_KILL_AFTER_WRITES`). Compiled into debug
/// builds only (the tests' profile): a release build has no such hook.
#[cfg(debug_assertions)]
fn kill_after_writes() -> Option<u64> {
    std::env::var("PAYMIG_TEST_KILL_AFTER_WRITES").ok().and_then(|v| v.parse().ok())
}

#[cfg(debug_assertions)]
fn kill_now() {
    // SAFETY: getpid and kill have no preconditions.
    unsafe {
        libc::kill(libc::getpid(), libc::SIGKILL);
    }
}

#[cfg(not(debug_assertions))]
fn kill_after_writes() -> Option<u64> {
    None
}

#[cfg(not(debug_assertions))]
fn kill_now() {}

struct Inner {
    entries: Vec<Entry>,
    /// The entries folded into records, kept current on every append, so
    /// looking a key up never refolds the whole journal.
    folded: Folded,
    next_seq: u64,
    writes: u64,
    run: Option<String>,
}

impl Inner {
    fn new(entries: Vec<Entry>) -> Inner {
        let next_seq = entries.last().map_or(1, |e| e.seq + 1);
        let folded = Folded::of(&entries);
        Inner { entries, folded, next_seq, writes: 0, run: None }
    }
}

/// One record per intent, and the newest intent of each logical key.
#[derive(Default)]
struct Folded {
    records: BTreeMap<u64, Record>,
    newest: std::collections::HashMap<String, u64>,
}

impl Folded {
    fn of(entries: &[Entry]) -> Folded {
        let mut f = Folded::default();
        for e in entries {
            f.add(e);
        }
        f
    }

    fn add(&mut self, e: &Entry) {
        match &e.body {
            Body::Intent(i) => {
                self.newest.insert(i.key.clone(), e.seq);
                self.records.insert(
                    e.seq,
                    Record {
                        seq: e.seq,
                        run: e.run.clone(),
                        intent: i.clone(),
                        id: None,
                        arn: None,
                        done_data: Value::Null,
                        undone: false,
                    },
                );
            }
            Body::Done { intent, id, arn, data } => {
                if let Some(r) = self.records.get_mut(intent) {
                    r.id = Some(id.clone());
                    r.arn.clone_from(arn);
                    r.done_data = data.clone();
                }
            }
            Body::Undone { intent } => {
                if let Some(r) = self.records.get_mut(intent) {
                    r.undone = true;
                }
            }
            _ => {}
        }
    }
}

/// An open journal. Every write is appended and fsynced before returning.
pub struct Journal {
    store: Arc<dyn Store>,
    location: String,
    migration: String,
    inner: Mutex<Inner>,
    kill_after: Option<u64>,
}

impl std::fmt::Debug for Journal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Journal").field("location", &self.location).finish()
    }
}

/// What opening found wrong with the tail of the file and repaired.
#[derive(Debug, Default)]
pub struct Repair {
    /// A torn last line (a crash mid-write), moved aside to this file.
    pub torn_line_saved_to: Option<PathBuf>,
}

impl Journal {
    /// Opens the journal in `store`. `writable`: this run appends (it holds
    /// the lock), so the store repairs a torn last line — a crash in the
    /// middle of a write — and many single-entry objects are first folded
    /// into one; otherwise nothing is created or changed. A bad line is an
    /// error: paymig never rewrites earlier lines.
    pub fn open(store: Arc<dyn Store>, migration: &str, writable: bool) -> Result<(Self, Repair), JournalError> {
        let loaded = store.load(writable)?;
        let mut entries = Vec::with_capacity(loaded.lines.len());
        for line in &loaded.lines {
            let e: Entry = serde_json::from_str(&line.text).map_err(|err| JournalError::Corrupt {
                path: PathBuf::from(&line.source),
                line: line.number,
                message: err.to_string(),
            })?;
            if e.migration != migration {
                return Err(JournalError::OtherMigration {
                    path: PathBuf::from(store.location()),
                    found: e.migration,
                    expected: migration.to_owned(),
                });
            }
            entries.push(e);
        }
        if loaded.compact {
            if let Some(last) = entries.last() {
                let mut body = Vec::new();
                for e in &entries {
                    body.extend(serde_json::to_vec(e).expect("journal entries serialize"));
                    body.push(b'\n');
                }
                store.compact(last.seq, body)?;
            }
        }
        let journal = Journal {
            location: store.location(),
            store,
            migration: migration.to_owned(),
            inner: Mutex::new(Inner::new(entries)),
            kill_after: kill_after_writes(),
        };
        Ok((journal, Repair { torn_line_saved_to: loaded.torn_saved_to }))
    }

    /// Where the journal lives: a file path or an `s3://` URL.
    pub fn location(&self) -> &str {
        &self.location
    }

    fn append(&self, body: Body) -> Result<u64, JournalError> {
        let mut inner = self.inner.lock().expect("journal poisoned");
        let run = match (&body, &inner.run) {
            (Body::RunStart { .. }, _) => new_run_id(),
            (_, Some(r)) => r.clone(),
            (_, None) => return Err(JournalError::Unsupported("journal write outside a run".into())),
        };
        let entry = Entry { seq: inner.next_seq, run: run.clone(), ts: now(), migration: self.migration.clone(), body };
        let mut line = serde_json::to_vec(&entry).expect("journal entries serialize");
        line.push(b'\n');
        self.store.append(entry.seq, line)?;
        if matches!(entry.body, Body::RunStart { .. }) {
            inner.run = Some(run);
        }
        let seq = entry.seq;
        inner.folded.add(&entry);
        inner.entries.push(entry);
        inner.next_seq += 1;
        inner.writes += 1;
        // Test hook for crash campaigns: the real process dies right after the
        // Nth fsynced write, exactly like a SIGKILL from outside.
        if self.kill_after.is_some_and(|n| inner.writes >= n) {
            kill_now();
        }
        Ok(seq)
    }

    /// Starts a run; every later write belongs to it.
    pub fn begin_run(&self, command: &str) -> Result<String, JournalError> {
        self.append(Body::RunStart {
            command: command.to_owned(),
            host: hostname(),
            pid: std::process::id(),
            version: env!("CARGO_PKG_VERSION").to_owned(),
        })?;
        Ok(self.current_run().expect("run just started"))
    }

    /// Ends the current run.
    pub fn end_run(&self, status: &str, mutating_calls: u64) -> Result<(), JournalError> {
        self.end_run_observed(status, mutating_calls, None)
    }

    /// Ends the current run with what it observed (waits, step times).
    pub fn end_run_observed(
        &self,
        status: &str,
        mutating_calls: u64,
        observed: Option<super::estimate::Observation>,
    ) -> Result<(), JournalError> {
        let observed = observed.filter(|o| !o.is_empty());
        self.append(Body::RunEnd { status: status.to_owned(), mutating_calls, observed })?;
        Ok(())
    }

    pub fn current_run(&self) -> Option<String> {
        self.inner.lock().expect("journal poisoned").run.clone()
    }

    /// Records an intent before its call; returns its sequence number.
    pub fn intent(&self, intent: Intent) -> Result<u64, JournalError> {
        self.append(Body::Intent(intent))
    }

    /// Records that intent `seq` took effect, with the resource's id.
    pub fn done(&self, seq: u64, id: &str, arn: Option<&str>, data: Value) -> Result<(), JournalError> {
        self.append(Body::Done { intent: seq, id: id.to_owned(), arn: arn.map(str::to_owned), data })?;
        Ok(())
    }

    /// Records that intent `seq` has been reversed.
    pub fn undone(&self, seq: u64) -> Result<(), JournalError> {
        self.append(Body::Undone { intent: seq })?;
        Ok(())
    }

    /// Every intent with its outcome, in journal order.
    pub fn records(&self) -> Vec<Record> {
        let inner = self.inner.lock().expect("journal poisoned");
        inner.folded.records.values().cloned().collect()
    }

    /// The newest record for a logical key.
    pub fn latest(&self, key: &str) -> Option<Record> {
        let inner = self.inner.lock().expect("journal poisoned");
        inner.folded.newest.get(key).and_then(|seq| inner.folded.records.get(seq)).cloned()
    }

    /// Per step, the seconds after `run`'s start of its first and last
    /// journal entries: where a run that recorded no step times (killed)
    /// spent its time.
    pub fn step_spans(&self, run: &str) -> BTreeMap<String, (f64, f64)> {
        let inner = self.inner.lock().expect("journal poisoned");
        let parse = |ts: &str| time::OffsetDateTime::parse(ts, &time::format_description::well_known::Rfc3339).ok();
        let mut start = None;
        let mut step_of: BTreeMap<u64, String> = BTreeMap::new();
        let mut spans: BTreeMap<String, (f64, f64)> = BTreeMap::new();
        for e in &inner.entries {
            if let Body::Intent(i) = &e.body {
                step_of.insert(e.seq, i.step.clone());
            }
            if e.run != run {
                continue;
            }
            let Some(at) = parse(&e.ts) else { continue };
            let step = match &e.body {
                Body::RunStart { .. } => {
                    start = Some(at);
                    continue;
                }
                Body::Intent(i) => i.step.clone(),
                Body::Done { intent, .. } | Body::Undone { intent } => match step_of.get(intent) {
                    Some(s) => s.clone(),
                    None => continue,
                },
                Body::RunEnd { .. } => continue,
            };
            let Some(t0) = start else { continue };
            let s = (at - t0).as_seconds_f64();
            let span = spans.entry(step).or_insert((s, s));
            span.0 = span.0.min(s);
            span.1 = span.1.max(s);
        }
        spans
    }

    /// Every run, oldest first.
    pub fn runs(&self) -> Vec<Run> {
        let inner = self.inner.lock().expect("journal poisoned");
        let mut runs: Vec<Run> = Vec::new();
        for e in &inner.entries {
            match &e.body {
                Body::RunStart { command, host, pid, .. } => runs.push(Run {
                    id: e.run.clone(),
                    command: command.clone(),
                    started: e.ts.clone(),
                    host: host.clone(),
                    pid: *pid,
                    status: None,
                    rolled_back_by: None,
                    rolled_back_at: None,
                    observed: None,
                }),
                Body::RunEnd { status, observed, .. } => {
                    if let Some(r) = runs.iter_mut().rev().find(|r| r.id == e.run) {
                        r.status = Some(status.clone());
                        r.observed = observed.clone();
                    }
                }
                _ => {}
            }
        }
        // A run whose every change took effect and was undone since by a
        // rollback or destroy run was rolled back (by the last of them).
        let command: BTreeMap<&str, &str> = runs.iter().map(|r| (r.id.as_str(), r.command.as_str())).collect();
        let undoing = |run: &str| matches!(command.get(run), Some(&"rollback") | Some(&"destroy"));
        let mut made: BTreeMap<u64, &str> = BTreeMap::new();
        let mut done: BTreeMap<u64, bool> = BTreeMap::new();
        let mut undone: BTreeMap<u64, (&str, &str)> = BTreeMap::new();
        for e in &inner.entries {
            match &e.body {
                Body::Intent(_) => {
                    made.insert(e.seq, e.run.as_str());
                }
                Body::Done { intent, .. } => {
                    done.insert(*intent, true);
                }
                Body::Undone { intent } if undoing(&e.run) => {
                    undone.insert(*intent, (e.run.as_str(), e.ts.as_str()));
                }
                _ => {}
            }
        }
        let undone_by: Vec<(String, String, String)> = runs
            .iter()
            .filter_map(|r| {
                let changes: Vec<u64> =
                    made.iter().filter(|(seq, run)| **run == r.id && done.contains_key(seq)).map(|(s, _)| *s).collect();
                if changes.is_empty() || !changes.iter().all(|s| undone.contains_key(s)) {
                    return None;
                }
                let (by, at) = changes.iter().filter_map(|s| undone.get(s)).max_by_key(|(_, ts)| *ts)?;
                Some((r.id.clone(), by.to_string(), at.to_string()))
            })
            .collect();
        for (id, by, at) in undone_by {
            if let Some(r) = runs.iter_mut().find(|r| r.id == id) {
                r.rolled_back_by = Some(by);
                r.rolled_back_at = Some(at);
            }
        }
        runs
    }

    /// Number of lines.
    pub fn len(&self) -> usize {
        self.inner.lock().expect("journal poisoned").entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

fn new_run_id() -> String {
    let t = time::OffsetDateTime::now_utc();
    let stamp =
        t.format(time::macros::format_description!("[year][month][day]T[hour][minute][second]Z")).unwrap_or_default();
    format!("{stamp}-{:04x}", rand::random::<u16>())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::store::file::FileStore;
    use std::fs::OpenOptions;
    use std::io::Write;

    fn intent(key: &str) -> Intent {
        Intent {
            step: "kms".into(),
            op: Op::Create,
            kind: "kms_key".into(),
            key: key.into(),
            name: "k".into(),
            prev: Value::Null,
            data: Value::Null,
        }
    }

    fn open(dir: &std::path::Path) -> Result<(Journal, Repair), JournalError> {
        Journal::open(Arc::new(FileStore::new(dir, "payments")), "payments", true)
    }

    fn file_path(dir: &std::path::Path) -> PathBuf {
        FileStore::new(dir, "payments").journal_path().to_owned()
    }

    #[test]
    fn records_fold_intent_done_undone() {
        let dir = tempfile::tempdir().unwrap();
        let (j, _) = open(dir.path()).unwrap();
        j.begin_run("apply").unwrap();
        let a = j.intent(intent("a")).unwrap();
        j.done(a, "id-a", None, Value::Null).unwrap();
        let b = j.intent(intent("b")).unwrap();
        j.undone(a).unwrap();
        j.end_run("failed", 1).unwrap();
        let recs = j.records();
        assert_eq!(recs.len(), 2);
        assert!(recs[0].undone && recs[0].id.as_deref() == Some("id-a"));
        assert!(!recs[1].undone && recs[1].id.is_none() && recs[1].seq == b);
        assert_eq!(j.runs()[0].status.as_deref(), Some("failed"));
    }

    #[test]
    fn a_run_whose_every_change_was_undone_is_rolled_back_by_the_undoing_run() {
        let dir = tempfile::tempdir().unwrap();
        let (j, _) = open(dir.path()).unwrap();
        let first = j.begin_run("apply").unwrap();
        let a = j.intent(intent("a")).unwrap();
        j.done(a, "id-a", None, Value::Null).unwrap();
        j.end_run("ok", 1).unwrap();
        let second = j.begin_run("apply").unwrap();
        let b = j.intent(intent("b")).unwrap();
        j.done(b, "id-b", None, Value::Null).unwrap();
        j.end_run("ok", 1).unwrap();
        let rollback = j.begin_run("rollback").unwrap();
        j.undone(b).unwrap();
        j.end_run("ok", 1).unwrap();
        let runs = j.runs();
        let of = |id: &str| runs.iter().find(|r| r.id == id).unwrap();
        assert_eq!(of(&second).rolled_back_by.as_deref(), Some(rollback.as_str()));
        assert!(of(&second).rolled_back_at.is_some());
        assert!(of(&first).rolled_back_by.is_none(), "its change still stands");
        assert!(of(&rollback).rolled_back_by.is_none(), "a run that changed nothing was not rolled back");
    }

    #[test]
    fn latest_is_the_newest_intent_of_a_key_as_appended_and_as_reopened() {
        let dir = tempfile::tempdir().unwrap();
        let (j, _) = open(dir.path()).unwrap();
        j.begin_run("apply").unwrap();
        let first = j.intent(intent("a")).unwrap();
        j.done(first, "id-1", None, Value::Null).unwrap();
        j.intent(intent("b")).unwrap();
        let second = j.intent(intent("a")).unwrap();
        j.undone(first).unwrap();
        let latest = j.latest("a").unwrap();
        assert_eq!((latest.seq, latest.id.as_deref(), latest.undone), (second, None, false));
        j.done(second, "id-2", None, Value::Null).unwrap();
        assert_eq!(j.latest("a").unwrap().id.as_deref(), Some("id-2"), "a done updates the indexed record");
        assert!(j.latest("missing").is_none());
        drop(j);
        let (j, _) = open(dir.path()).unwrap();
        let latest = j.latest("a").unwrap();
        assert_eq!((latest.seq, latest.id.as_deref()), (second, Some("id-2")));
        assert!(j.records().iter().find(|r| r.seq == first).unwrap().undone);
    }

    #[test]
    fn torn_last_line_is_moved_aside_and_earlier_entries_kept() {
        let dir = tempfile::tempdir().unwrap();
        {
            let (j, _) = open(dir.path()).unwrap();
            j.begin_run("apply").unwrap();
            j.intent(intent("a")).unwrap();
        }
        let path = file_path(dir.path());
        let mut f = OpenOptions::new().append(true).open(&path).unwrap();
        f.write_all(b"{\"seq\":3,\"run\":\"x\",\"ts").unwrap();
        drop(f);
        let (j, repair) = open(dir.path()).unwrap();
        assert_eq!(j.len(), 2);
        let aside = repair.torn_line_saved_to.unwrap();
        assert!(std::fs::read_to_string(aside).unwrap().contains("\"seq\":3"));
        // The journal accepts new writes after the repair.
        j.begin_run("apply").unwrap();
        assert_eq!(open(dir.path()).unwrap().0.len(), 3);
    }

    #[test]
    fn corrupt_middle_line_and_foreign_migration_are_errors() {
        let dir = tempfile::tempdir().unwrap();
        {
            let (j, _) = open(dir.path()).unwrap();
            j.begin_run("apply").unwrap();
        }
        let path = file_path(dir.path());
        let good = std::fs::read_to_string(&path).unwrap();
        std::fs::write(&path, format!("garbage\n{good}")).unwrap();
        assert!(matches!(open(dir.path()), Err(JournalError::Corrupt { line: 1, .. })));
        std::fs::write(&path, good.replace("\"payments\"", "\"ledger\"")).unwrap();
        assert!(matches!(open(dir.path()), Err(JournalError::OtherMigration { .. })));
    }
}
