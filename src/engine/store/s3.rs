//! The remote journal and its lease lock, for `journal = "s3://bucket/prefix"`
//! (a CodeBuild build is a fresh machine, so both must live in S3). One file
//! of ~700 lines on purpose: the entry layout, the checkpoints and the lease
//! are one protocol over the same conditional writes, read best in one place.
//!
//! Layout under `s3://bucket/prefix/<migration>/`:
//! - `journal/<seq>.json` — one journal entry per object, written with
//!   `If-None-Match: *`: two writers can never both write entry N, so the
//!   journal cannot interleave even if a lease were wrongly taken over;
//! - `checkpoint/<seq>.jsonl` — every entry up to `seq`, written when many
//!   single entries have piled up; the entries it covers are then deleted;
//! - `lock.json` — the lease: who holds it, since when, renewed every
//!   quarter of its length with `If-Match` on the last ETag. A holder that
//!   stops renewing (a cancelled build) loses it once the lease runs out; a
//!   holder that finds its renewal refused has been taken over and stops
//!   writing.
//!
//! The S3 calls run on a dedicated thread with its own runtime, so journal
//! writes stay synchronous (like the local fsync) wherever they are made, and
//! the lease is renewed even while a step blocks. These calls are the
//! journal's, not the migration's: they are not part of the call accounting.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc as std_mpsc;
use std::sync::Arc;
use std::time::Duration;

use aws_sdk_s3::primitives::ByteStream;
use futures::{StreamExt, TryStreamExt};
use tokio::sync::mpsc;

use super::who::{build_id, hostname, is_alive, now, Holder};
use super::{Leased, Line, Store, StoreError, Unlocked};
use crate::aws::describe_sdk_error;

/// What the remote journal does with its objects under the prefix (the
/// journal, its lease, the run notes; batch deletes are `DeleteObject`).
pub const OBJECT_ACTIONS: [&str; 3] = ["s3:GetObject", "s3:PutObject", "s3:DeleteObject"];
/// What it does with the bucket itself: finds its region, lists the prefix.
pub const BUCKET_ACTIONS: [&str; 2] = ["s3:GetBucketLocation", "s3:ListBucket"];

/// How long a lease lasts without renewal (`PAYMIG_LOCK_LEASE_SECONDS` overrides).
pub const DEFAULT_LEASE_SECONDS: u64 = 120;
/// Single-entry objects allowed before a checkpoint folds them together.
pub const CHECKPOINT_AFTER: usize = 400;

/// Where the remote journal lives and with which credentials.
#[derive(Debug, Clone)]
pub struct RemoteSpec {
    pub bucket: String,
    pub prefix: String,
    pub migration: String,
    pub region: String,
    pub profile: Option<String>,
    pub role_arn: Option<String>,
    /// How long the lease holds without renewal; renewed every quarter of it.
    pub lease_seconds: u64,
    /// A ready SDK configuration to use instead of loading one from
    /// `profile`/`role_arn` and the environment.
    pub sdk: Option<aws_config::SdkConfig>,
}

impl RemoteSpec {
    fn base(&self) -> String {
        if self.prefix.is_empty() {
            format!("{}/", self.migration)
        } else {
            format!("{}/{}/", self.prefix, self.migration)
        }
    }

    /// `s3://bucket/prefix/<migration>/`, for messages.
    pub fn location(&self) -> String {
        format!("s3://{}/{}", self.bucket, self.base())
    }
}

/// A remote journal problem, with the object it concerns.
#[derive(Debug, Clone, thiserror::Error)]
pub enum RemoteError {
    /// The bucket cannot be reached or read (before anything changed).
    #[error("{0}")]
    Access(String),
    /// A write failed (the run stops; the journal is consistent).
    #[error("{0}")]
    Write(String),
    /// Another writer got there first.
    #[error("{0}")]
    Conflict(String),
}

/// What loading the journal found.
#[derive(Debug, Default)]
pub struct Objects {
    /// Every entry's JSON text with the object key it came from, in order.
    pub lines: Vec<(String, String)>,
    /// Single-entry objects not yet folded into a checkpoint.
    pub pending_segments: usize,
}

/// How the lease was obtained.
#[derive(Debug)]
pub enum Acquired {
    Fresh,
    /// Taken over from a holder whose lease had run out (or whose process is
    /// gone from this host).
    TakenOver(Holder),
}

/// Why the lease could not be taken.
#[derive(Debug)]
pub enum AcquireError {
    Held(Box<Holder>),
    Remote(RemoteError),
}

enum Job {
    Load(std_mpsc::Sender<Result<Objects, RemoteError>>),
    Put(u64, Vec<u8>, std_mpsc::Sender<Result<(), RemoteError>>),
    Checkpoint(u64, Vec<u8>, std_mpsc::Sender<Result<(), RemoteError>>),
    Acquire(Box<Holder>, std_mpsc::Sender<Result<Acquired, AcquireError>>),
    Release(std_mpsc::Sender<()>),
    Holder(std_mpsc::Sender<Result<Option<Holder>, RemoteError>>),
    Inspect(std_mpsc::Sender<Result<Option<(Holder, String)>, RemoteError>>),
    Break(String, std_mpsc::Sender<Result<bool, RemoteError>>),
}

/// A handle on the remote journal's worker thread.
#[derive(Debug)]
pub struct Remote {
    spec: RemoteSpec,
    tx: mpsc::UnboundedSender<Job>,
    lost: Arc<AtomicBool>,
}

impl std::fmt::Debug for Job {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Job")
    }
}

impl Remote {
    /// Starts the worker and checks that the bucket answers.
    pub fn connect(spec: RemoteSpec) -> Result<Self, RemoteError> {
        let (tx, rx) = mpsc::unbounded_channel();
        let (ready_tx, ready_rx) = std_mpsc::channel();
        let lost = Arc::new(AtomicBool::new(false));
        let worker = Worker { spec: spec.clone(), lost: lost.clone(), lease: None };
        std::thread::Builder::new()
            .name("paymig-journal".into())
            .spawn(move || {
                let rt = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
                    Ok(rt) => rt,
                    Err(e) => {
                        let _ =
                            ready_tx.send(Err(RemoteError::Access(format!("cannot start the journal worker: {e}"))));
                        return;
                    }
                };
                rt.block_on(worker.run(rx, ready_tx));
            })
            .map_err(|e| RemoteError::Access(format!("cannot start the journal worker: {e}")))?;
        ready_rx
            .recv()
            .unwrap_or_else(|_| Err(RemoteError::Access("the journal worker stopped".into())))
            .map(|()| Remote { spec, tx, lost })
    }

    pub fn spec(&self) -> &RemoteSpec {
        &self.spec
    }

    fn call<T>(&self, job: impl FnOnce(std_mpsc::Sender<T>) -> Job, gone: T) -> T {
        let (reply_tx, reply_rx) = std_mpsc::channel();
        if self.tx.send(job(reply_tx)).is_err() {
            return gone;
        }
        reply_rx.recv().unwrap_or(gone)
    }

    /// Every entry, checkpoint first, in sequence order.
    pub fn load(&self) -> Result<Objects, RemoteError> {
        self.call(Job::Load, Err(RemoteError::Access("the journal worker stopped".into())))
    }

    /// Writes entry `seq`; refused if any other writer wrote it first or if
    /// this run's lease was taken over.
    pub fn put(&self, seq: u64, body: Vec<u8>) -> Result<(), RemoteError> {
        if self.lost.load(Ordering::SeqCst) {
            return Err(RemoteError::Conflict(format!(
                "this run's lease on {}lock.json was taken over by another run; it stops writing so the two cannot interleave",
                self.spec.location()
            )));
        }
        self.call(|r| Job::Put(seq, body, r), Err(RemoteError::Write("the journal worker stopped".into())))
    }

    /// Folds every entry up to `seq` (given as `body`) into one object and
    /// deletes the single-entry objects it covers.
    pub fn checkpoint(&self, seq: u64, body: Vec<u8>) -> Result<(), RemoteError> {
        self.call(|r| Job::Checkpoint(seq, body, r), Err(RemoteError::Write("the journal worker stopped".into())))
    }

    /// Takes the lease for `holder`.
    pub fn acquire(&self, holder: Holder) -> Result<Acquired, AcquireError> {
        self.call(
            |r| Job::Acquire(Box::new(holder), r),
            Err(AcquireError::Remote(RemoteError::Access("the journal worker stopped".into()))),
        )
    }

    /// Gives the lease back (only if still ours).
    pub fn release(&self) {
        self.call(Job::Release, ());
    }

    /// The current holder of a live lease, if any.
    pub fn holder(&self) -> Result<Option<Holder>, RemoteError> {
        self.call(Job::Holder, Err(RemoteError::Access("the journal worker stopped".into())))
    }

    /// The lease object as it is, expired or not, with its ETag (`unlock`).
    pub fn inspect_lease(&self) -> Result<Option<(Holder, String)>, RemoteError> {
        self.call(Job::Inspect, Err(RemoteError::Access("the journal worker stopped".into())))
    }

    /// Deletes the lease object if it is still the one seen (`If-Match` its
    /// ETag); false when it changed meanwhile (renewed or taken by another run).
    pub fn break_lease(&self, etag: &str) -> Result<bool, RemoteError> {
        let etag = etag.to_owned();
        self.call(|r| Job::Break(etag, r), Err(RemoteError::Access("the journal worker stopped".into())))
    }
}

struct Lease {
    etag: String,
    holder: Holder,
}

struct Worker {
    spec: RemoteSpec,
    lost: Arc<AtomicBool>,
    lease: Option<Lease>,
}

/// The lease length: `PAYMIG_LOCK_LEASE_SECONDS`, else the default.
pub fn lease_seconds_from_env() -> u64 {
    std::env::var("PAYMIG_LOCK_LEASE_SECONDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .filter(|s| *s > 0)
        .unwrap_or(DEFAULT_LEASE_SECONDS)
}

fn seq_of(key: &str) -> Option<u64> {
    key.rsplit('/').next()?.split('.').next()?.parse().ok()
}

/// A conditional write that lost: 412 Precondition Failed, or 409 when S3
/// saw a concurrent conditional write to the same key.
fn is_precondition_failure<E>(
    err: &aws_smithy_runtime_api::client::result::SdkError<E, aws_smithy_runtime_api::http::Response>,
) -> bool {
    matches!(err, aws_smithy_runtime_api::client::result::SdkError::ServiceError(se)
        if matches!(se.raw().status().as_u16(), 409 | 412))
}

impl Worker {
    async fn client(&self) -> Result<aws_sdk_s3::Client, RemoteError> {
        let access = |msg: String| {
            RemoteError::Access(format!(
                "[migration] journal = \"{}\": {msg}\nhelp: create the bucket in the target account (versioned), grant the build role {} on its objects under the prefix and {} on the bucket (`paymig iam-policy` includes them), or use a local journal directory",
                self.spec.location(),
                OBJECT_ACTIONS.join(", "),
                BUCKET_ACTIONS.join(", ")
            ))
        };
        let client_in = |sdk: &aws_config::SdkConfig| {
            aws_sdk_s3::Client::from_conf(
                aws_sdk_s3::config::Builder::from(sdk).force_path_style(sdk.endpoint_url().is_some()).build(),
            )
        };
        let load = |region: String| async move {
            match &self.spec.sdk {
                Some(sdk) => sdk.to_builder().region(aws_config::Region::new(region)).build(),
                None => {
                    crate::aws::load_sdk_config(&region, self.spec.profile.as_deref(), self.spec.role_arn.as_deref())
                        .await
                }
            }
        };
        let client = client_in(&load(self.spec.region.clone()).await);
        // The bucket may live in another region than the migration.
        let loc = client.get_bucket_location().bucket(&self.spec.bucket).send().await.map_err(|e| {
            access(format!("cannot reach the journal bucket {:?}: {}", self.spec.bucket, describe_sdk_error(&e)))
        })?;
        let region = loc.location_constraint().map(|c| c.as_str().to_owned()).filter(|r| !r.is_empty());
        match region {
            Some(r) if r != self.spec.region && r != "EU" => Ok(client_in(&load(r).await)),
            _ => Ok(client),
        }
    }

    async fn run(mut self, mut rx: mpsc::UnboundedReceiver<Job>, ready: std_mpsc::Sender<Result<(), RemoteError>>) {
        let s3 = match self.client().await {
            Ok(c) => {
                let _ = ready.send(Ok(()));
                c
            }
            Err(e) => {
                let _ = ready.send(Err(e));
                return;
            }
        };
        let renew_every = Duration::from_millis((self.spec.lease_seconds * 250).max(250));
        let mut tick = tokio::time::interval(renew_every);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        tick.tick().await;
        loop {
            tokio::select! {
                job = rx.recv() => match job {
                    None => {
                        self.release(&s3).await;
                        return;
                    }
                    Some(job) => self.handle(&s3, job).await,
                },
                _ = tick.tick(), if self.lease.is_some() => self.renew(&s3).await,
            }
        }
    }

    async fn handle(&mut self, s3: &aws_sdk_s3::Client, job: Job) {
        match job {
            Job::Load(r) => {
                let _ = r.send(self.load(s3).await);
            }
            Job::Put(seq, body, r) => {
                let _ = r.send(self.put(s3, seq, body).await);
            }
            Job::Checkpoint(seq, body, r) => {
                let _ = r.send(self.checkpoint(s3, seq, body).await);
            }
            Job::Acquire(holder, r) => {
                let _ = r.send(self.acquire(s3, *holder).await);
            }
            Job::Release(r) => {
                self.release(s3).await;
                let _ = r.send(());
            }
            Job::Holder(r) => {
                let _ = r.send(self.read_lock(s3).await.map(|l| l.filter(|(h, _)| !is_expired(h)).map(|(h, _)| h)));
            }
            Job::Inspect(r) => {
                let _ = r.send(self.read_lock(s3).await);
            }
            Job::Break(etag, r) => {
                let key = self.key("lock.json");
                let result = match s3.delete_object().bucket(&self.spec.bucket).key(&key).if_match(&etag).send().await {
                    Ok(_) => Ok(true),
                    Err(e) if is_precondition_failure(&e) => Ok(false),
                    Err(e) => Err(RemoteError::Write(format!(
                        "cannot delete the lock s3://{}/{key}: {}",
                        self.spec.bucket,
                        describe_sdk_error(&e)
                    ))),
                };
                let _ = r.send(result);
            }
        }
    }

    fn key(&self, rest: &str) -> String {
        format!("{}{rest}", self.spec.base())
    }

    async fn list(&self, s3: &aws_sdk_s3::Client, folder: &str) -> Result<Vec<String>, RemoteError> {
        let prefix = self.key(folder);
        let pages: Vec<_> = s3
            .list_objects_v2()
            .bucket(&self.spec.bucket)
            .prefix(&prefix)
            .into_paginator()
            .send()
            .try_collect()
            .await
            .map_err(|e| {
                RemoteError::Access(format!(
                    "cannot list s3://{}/{prefix}: {}",
                    self.spec.bucket,
                    describe_sdk_error(&e)
                ))
            })?;
        let mut keys: Vec<String> =
            pages.iter().flat_map(|p| p.contents()).filter_map(|o| o.key().map(str::to_owned)).collect();
        keys.sort();
        Ok(keys)
    }

    async fn get(&self, s3: &aws_sdk_s3::Client, key: String) -> Result<(String, String), RemoteError> {
        let err = |m: String| RemoteError::Access(format!("cannot read s3://{}/{key}: {m}", self.spec.bucket));
        let out = s3
            .get_object()
            .bucket(&self.spec.bucket)
            .key(&key)
            .send()
            .await
            .map_err(|e| err(describe_sdk_error(&e)))?;
        let bytes = out.body.collect().await.map_err(|e| err(e.to_string()))?.into_bytes();
        let text = String::from_utf8(bytes.to_vec()).map_err(|_| err("not UTF-8 text".into()))?;
        Ok((key, text))
    }

    async fn load(&self, s3: &aws_sdk_s3::Client) -> Result<Objects, RemoteError> {
        let checkpoints = self.list(s3, "checkpoint/").await?;
        let mut loaded = Objects::default();
        let mut covered = 0;
        if let Some(newest) = checkpoints.last() {
            covered = seq_of(newest).unwrap_or(0);
            let (key, text) = self.get(s3, newest.clone()).await?;
            loaded.lines.extend(text.lines().filter(|l| !l.trim().is_empty()).map(|l| (key.clone(), l.to_owned())));
        }
        let segments: Vec<String> =
            self.list(s3, "journal/").await?.into_iter().filter(|k| seq_of(k).is_some_and(|s| s > covered)).collect();
        loaded.pending_segments = segments.len();
        let fetched: Vec<(String, String)> =
            futures::stream::iter(segments.into_iter().map(|k| self.get(s3, k))).buffered(32).try_collect().await?;
        loaded.lines.extend(fetched.into_iter().map(|(k, t)| (k, t.trim_end().to_owned())));
        Ok(loaded)
    }

    async fn put(&self, s3: &aws_sdk_s3::Client, seq: u64, body: Vec<u8>) -> Result<(), RemoteError> {
        let key = self.key(&format!("journal/{seq:020}.json"));
        match s3
            .put_object()
            .bucket(&self.spec.bucket)
            .key(&key)
            .if_none_match("*")
            .content_type("application/json")
            .body(ByteStream::from(body))
            .send()
            .await
        {
            Ok(_) => Ok(()),
            Err(e) if is_precondition_failure(&e) => Err(RemoteError::Conflict(format!(
                "journal entry s3://{}/{key} was already written by another run: two runs are writing this migration's journal; this run stops\nhelp: run `paymig status` to see the lock holder, wait for it, then re-run to resume",
                self.spec.bucket
            ))),
            Err(e) => Err(RemoteError::Write(format!(
                "cannot write journal entry s3://{}/{key}: {}\nhelp: the journal is consistent up to the previous entry; fix access to the bucket and re-run to resume",
                self.spec.bucket,
                describe_sdk_error(&e)
            ))),
        }
    }

    async fn checkpoint(&self, s3: &aws_sdk_s3::Client, seq: u64, body: Vec<u8>) -> Result<(), RemoteError> {
        let key = self.key(&format!("checkpoint/{seq:020}.jsonl"));
        let werr =
            |m: String| RemoteError::Write(format!("cannot write checkpoint s3://{}/{key}: {m}", self.spec.bucket));
        match s3
            .put_object()
            .bucket(&self.spec.bucket)
            .key(&key)
            .if_none_match("*")
            .body(ByteStream::from(body))
            .send()
            .await
        {
            Ok(_) => {}
            // Already there (a run that died while cleaning up): finish the cleanup.
            Err(e) if is_precondition_failure(&e) => {}
            Err(e) => return Err(werr(describe_sdk_error(&e))),
        }
        // Only now that the checkpoint is durable: drop what it covers.
        let mut stale: Vec<String> =
            self.list(s3, "journal/").await?.into_iter().filter(|k| seq_of(k).is_some_and(|s| s <= seq)).collect();
        stale.extend(self.list(s3, "checkpoint/").await?.into_iter().filter(|k| seq_of(k).is_some_and(|s| s < seq)));
        for chunk in stale.chunks(1000) {
            let objects: Vec<_> = chunk
                .iter()
                .filter_map(|k| aws_sdk_s3::types::ObjectIdentifier::builder().key(k).build().ok())
                .collect();
            let delete = aws_sdk_s3::types::Delete::builder().set_objects(Some(objects)).quiet(true).build();
            let delete = delete.map_err(|e| werr(e.to_string()))?;
            s3.delete_objects()
                .bucket(&self.spec.bucket)
                .delete(delete)
                .send()
                .await
                .map_err(|e| werr(describe_sdk_error(&e)))?;
        }
        Ok(())
    }

    async fn read_lock(&self, s3: &aws_sdk_s3::Client) -> Result<Option<(Holder, String)>, RemoteError> {
        let key = self.key("lock.json");
        match s3.get_object().bucket(&self.spec.bucket).key(&key).send().await {
            Ok(out) => {
                let etag = out.e_tag().unwrap_or_default().to_owned();
                let bytes = out.body.collect().await.map(|b| b.into_bytes().to_vec()).unwrap_or_default();
                let holder = serde_json::from_slice::<Holder>(&bytes).unwrap_or_else(|_| Holder::unreadable());
                Ok(Some((holder, etag)))
            }
            Err(e) if e.as_service_error().is_some_and(|se| se.is_no_such_key()) => Ok(None),
            Err(e) => Err(RemoteError::Access(format!(
                "cannot read the lock s3://{}/{key}: {}",
                self.spec.bucket,
                describe_sdk_error(&e)
            ))),
        }
    }

    async fn write_lock(
        &self,
        s3: &aws_sdk_s3::Client,
        holder: &Holder,
        if_match: Option<&str>,
    ) -> Result<Result<String, ()>, RemoteError> {
        let key = self.key("lock.json");
        let mut req = s3
            .put_object()
            .bucket(&self.spec.bucket)
            .key(&key)
            .content_type("application/json")
            .body(ByteStream::from(serde_json::to_vec(holder).expect("holder serializes")));
        req = match if_match {
            Some(etag) => req.if_match(etag),
            None => req.if_none_match("*"),
        };
        match req.send().await {
            Ok(out) => Ok(Ok(out.e_tag().unwrap_or_default().to_owned())),
            Err(e) if is_precondition_failure(&e) => Ok(Err(())),
            Err(e) => Err(RemoteError::Write(format!(
                "cannot write the lock s3://{}/{key}: {}",
                self.spec.bucket,
                describe_sdk_error(&e)
            ))),
        }
    }

    async fn acquire(&mut self, s3: &aws_sdk_s3::Client, mut me: Holder) -> Result<Acquired, AcquireError> {
        me.lease_seconds = Some(self.spec.lease_seconds);
        me.renewed = Some(now());
        // A holder that releases or renews between our read and our write
        // makes the conditional write fail: look again, a few times.
        for _ in 0..3 {
            if let Ok(etag) = self.write_lock(s3, &me, None).await.map_err(AcquireError::Remote)? {
                self.lease = Some(Lease { etag, holder: me });
                return Ok(Acquired::Fresh);
            }
            let Some((current, etag)) = self.read_lock(s3).await.map_err(AcquireError::Remote)? else { continue };
            if !is_expired(&current) && !is_dead_here(&current) {
                return Err(AcquireError::Held(Box::new(current)));
            }
            if let Ok(etag) = self.write_lock(s3, &me, Some(&etag)).await.map_err(AcquireError::Remote)? {
                self.lease = Some(Lease { etag, holder: me });
                return Ok(Acquired::TakenOver(current));
            }
            // Someone else renewed or took it in between: look again.
        }
        match self.read_lock(s3).await.map_err(AcquireError::Remote)? {
            Some((h, _)) => Err(AcquireError::Held(Box::new(h))),
            None => Err(AcquireError::Remote(RemoteError::Conflict("the lock changed hands repeatedly".into()))),
        }
    }

    async fn renew(&mut self, s3: &aws_sdk_s3::Client) {
        let Some(lease) = &self.lease else { return };
        let mut holder = lease.holder.clone();
        holder.renewed = Some(now());
        match self.write_lock(s3, &holder, Some(&lease.etag)).await {
            Ok(Ok(etag)) => self.lease = Some(Lease { etag, holder }),
            Ok(Err(())) => {
                tracing::error!(
                    lock = %format!("{}lock.json", self.spec.location()),
                    "this run's lease was taken over by another run; no further journal writes will be made"
                );
                self.lost.store(true, Ordering::SeqCst);
                self.lease = None;
            }
            // A blip: the next tick tries again, well within the lease.
            Err(e) => tracing::warn!("cannot renew the journal lease: {e}"),
        }
    }

    async fn release(&mut self, s3: &aws_sdk_s3::Client) {
        let Some(lease) = self.lease.take() else { return };
        let key = self.key("lock.json");
        if let Err(e) = s3.delete_object().bucket(&self.spec.bucket).key(&key).if_match(&lease.etag).send().await {
            if !is_precondition_failure(&e) {
                tracing::warn!(
                    "cannot release the lock s3://{}/{key} ({}); it expires by itself after its lease",
                    self.spec.bucket,
                    describe_sdk_error(&e)
                );
            }
        }
    }
}

/// Whether a holder's lease has run out.
pub fn is_expired(h: &Holder) -> bool {
    let (Some(renewed), Some(secs)) = (&h.renewed, h.lease_seconds) else { return true };
    let Ok(t) = time::OffsetDateTime::parse(renewed, &time::format_description::well_known::Rfc3339) else {
        return true;
    };
    time::OffsetDateTime::now_utc() > t + time::Duration::seconds(secs as i64)
}

/// Whether a holder is a process of this host (and build) that has died:
/// then the lease need not run out before a re-run resumes.
pub fn is_dead_here(h: &Holder) -> bool {
    h.host == hostname() && h.build_id == build_id() && !is_alive(h.pid)
}

impl Store for Remote {
    fn location(&self) -> String {
        self.spec.location()
    }

    fn lock_location(&self) -> String {
        format!("{}lock.json", self.spec.location())
    }

    fn load(&self, writable: bool) -> Result<super::Loaded, StoreError> {
        let objects = Remote::load(self)?;
        let lines = objects
            .lines
            .into_iter()
            .enumerate()
            .map(|(i, (key, text))| Line { source: format!("s3://{}/{key}", self.spec.bucket), number: i + 1, text })
            .collect();
        Ok(super::Loaded {
            lines,
            compact: writable && objects.pending_segments > CHECKPOINT_AFTER,
            torn_saved_to: None,
        })
    }

    fn append(&self, seq: u64, line: Vec<u8>) -> Result<(), StoreError> {
        Ok(self.put(seq, line)?)
    }

    fn compact(&self, seq: u64, body: Vec<u8>) -> Result<(), StoreError> {
        Ok(self.checkpoint(seq, body)?)
    }

    fn lease(&self, holder: Holder) -> Result<Leased, StoreError> {
        match self.acquire(holder) {
            Ok(Acquired::Fresh) => Ok(Leased::Fresh),
            Ok(Acquired::TakenOver(h)) => Ok(Leased::TakenOver(h)),
            Err(AcquireError::Held(h)) => Ok(Leased::Held(Some(*h))),
            Err(AcquireError::Remote(e)) => Err(e.into()),
        }
    }

    fn release(&self) {
        Remote::release(self);
    }

    fn holder(&self) -> Result<Option<Holder>, StoreError> {
        Ok(Remote::holder(self)?)
    }

    fn held_help(&self, holder: Option<&Holder>) -> String {
        format!(
            "wait for it to finish (or pass --lock-timeout 10m to wait for it); if that run was cancelled, its lease runs out {}s after its last renewal and the next run takes over, or `paymig unlock` removes it now",
            holder.and_then(|h| h.lease_seconds).unwrap_or(DEFAULT_LEASE_SECONDS)
        )
    }

    fn took_over(&self, stale: &Holder) -> String {
        format!(
            "took over the lock {} from {stale}, whose lease ran out (a cancelled or killed run); its journal entries are kept and this run resumes them",
            self.lock_location()
        )
    }

    fn unlock(&self, confirm: &mut dyn FnMut(&Holder, &str) -> bool) -> Result<Unlocked, StoreError> {
        let Some((holder, etag)) = self.inspect_lease()? else { return Ok(Unlocked::Free) };
        if holder.host == hostname() && holder.build_id == build_id() && is_alive(holder.pid) && !is_expired(&holder) {
            return Ok(Unlocked::Held(Some(holder)));
        }
        let state = if is_expired(&holder) {
            "its lease has run out"
        } else if is_dead_here(&holder) {
            "its process is gone"
        } else {
            "its lease is still current: make sure that run has stopped"
        };
        if !confirm(&holder, state) {
            return Ok(Unlocked::Kept(holder));
        }
        Ok(if self.break_lease(&etag)? { Unlocked::Removed(holder) } else { Unlocked::Changed(holder) })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_sort_by_sequence_and_parse_back() {
        let spec = RemoteSpec {
            bucket: "b".into(),
            prefix: "ci/paymig".into(),
            migration: "payments".into(),
            region: "us-east-1".into(),
            profile: None,
            role_arn: None,
            lease_seconds: 60,
            sdk: None,
        };
        assert_eq!(spec.location(), "s3://b/ci/paymig/payments/");
        let a = format!("journal/{:020}.json", 9);
        let b = format!("journal/{:020}.json", 10);
        assert!(a < b);
        assert_eq!(seq_of(&b), Some(10));
        assert_eq!(seq_of(&format!("x/checkpoint/{:020}.jsonl", 400)), Some(400));
    }

    #[test]
    fn lease_expiry_follows_the_renewal_time() {
        let mut h = Holder::unreadable();
        assert!(is_expired(&h));
        h.lease_seconds = Some(60);
        h.renewed = Some(now());
        assert!(!is_expired(&h));
        h.renewed = Some("2020-01-01T00:00:00Z".into());
        assert!(is_expired(&h));
    }
}
