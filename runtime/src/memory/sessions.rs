//! The session store: `state.db` (SQLite in WAL mode) with sessions, their
//! messages, and an FTS5 index kept in sync by triggers.
//!
//! Each message is committed on its own as it is appended, so a process
//! killed at any moment loses nothing already said (WAL with
//! `synchronous = NORMAL` survives process crashes; only a power loss can
//! drop the last commits). The schema is versioned with `PRAGMA
//! user_version` and migrated forward on open.
//!
//! Several processes may use one home at once (a gateway, a cron job, a
//! `chat -q` from a shell), so every write takes SQLite's write lock up front
//! (`BEGIN IMMEDIATE`) and waits for it: a deferred transaction that reads
//! first and writes later fails with "database is locked" at once, without
//! waiting, when another process wrote in between.
//!
//! The database holds every conversation, so `state.db` is created mode
//! 0600 before SQLite opens it; SQLite gives its `-wal` and `-shm` files the
//! database file's mode, whatever the umask.
//!
//! # Many conversations in one process
//!
//! [`SessionStore`] is a cheap, cloneable handle; every conversation of a
//! process shares one. Behind it:
//!
//! - **One writer thread** owns the only write connection and takes write
//!   requests from a channel, in arrival order, answering each after the
//!   transaction holding it has committed. SQLite lets one connection write
//!   at a time whatever we do; several write connections in one process
//!   would queue for that lock in SQLite's busy handler, which sleeps
//!   (1, 2, 5 … up to 100 ms) between attempts instead of waking the next
//!   writer when the lock comes free. A channel in front of one connection
//!   hands the lock on without sleeping, keeps each statement prepared once,
//!   and lets the writes that arrive during a commit share the next
//!   transaction (each in its own savepoint: one failed write fails alone).
//!   Other processes are still waited for with `BEGIN IMMEDIATE` and the
//!   busy timeout.
//! - **Separate read connections** (a small pool, opened as needed, made
//!   `query_only`): in WAL mode a reader sees the last commit and never
//!   waits for a writer, of this process or another.
//!
//! Async code uses the `*_async` methods, which never block the runtime: a
//! write is handed to the writer and its answer awaited, a read runs under
//! `spawn_blocking`. A write is queued when its method is called, not when
//! the future is first polled: dropping the future (a turn stopped with
//! Ctrl-C) does not withdraw it, and it is committed all the same. Synchronous
//! code (`talaria sessions ...`, tests, benchmarks) uses the blocking
//! methods, which keep the names the store always had: a read runs on the
//! calling thread, a write waits for the writer's answer on a plain channel.
//! Neither kind holds a lock across I/O.
//!
//! Dropping the last handle closes the channel: the writer commits what was
//! already queued, closes its connection and ends, and the drop waits for
//! it (well under a millisecond when nothing is queued), so the database is
//! closed once the store is gone. A write that fails (or finds the writer
//! gone) returns an error to its caller; none is dropped silently.

use std::future::Future;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, mpsc};
use std::time::{Duration, Instant};

use anyhow::Context;
use rusqlite::{Connection, ErrorCode, OpenFlags, OptionalExtension, TransactionBehavior, params};
use serde::Serialize;
use tokio::sync::oneshot;

/// How long a statement waits for another process to release the database.
/// One write here holds the lock for milliseconds (a message and its index
/// entries), but several processes may queue for it, and a WAL checkpoint or
/// a migration on a slow disk holds it longer; waiting 30 s covers a busy
/// home without making a truly stuck one hang for long.
const BUSY_TIMEOUT: Duration = Duration::from_secs(30);

/// Pause between attempts at a step SQLite refuses with "busy" without
/// waiting itself (switching a fresh database to WAL).
const BUSY_RETRY_PAUSE: Duration = Duration::from_millis(10);

/// The files SQLite keeps beside the database in WAL mode.
const COMPANION_SUFFIXES: &[&str] = &["-wal", "-shm"];

/// Most writes the writer commits in one transaction. Writes only share a
/// transaction when they were already waiting, so this bounds how long the
/// first of them waits for the others, not how long anyone waits to start.
const MAX_BATCH: usize = 64;

/// Idle read connections kept open; more are opened when more reads run at
/// once, and closed after.
const MAX_IDLE_READERS: usize = 4;

/// Migrations, in order; `user_version` is the number applied.
const MIGRATIONS: &[&str] = &[
    // 1: sessions and messages.
    "CREATE TABLE sessions (
         id TEXT PRIMARY KEY,
         parent_id TEXT REFERENCES sessions(id) ON DELETE SET NULL,
         title TEXT,
         created_at TEXT NOT NULL,
         updated_at TEXT NOT NULL
     );
     CREATE TABLE messages (
         id INTEGER PRIMARY KEY,
         session_id TEXT NOT NULL REFERENCES sessions(id) ON DELETE CASCADE,
         role TEXT NOT NULL,
         content TEXT NOT NULL DEFAULT '',
         tool_calls TEXT,
         tool_call_id TEXT,
         name TEXT,
         created_at TEXT NOT NULL
     );
     CREATE INDEX messages_by_session ON messages(session_id, id);",
    // 2: full-text search over message content, kept in sync by triggers,
    // filled from the messages already stored.
    "CREATE VIRTUAL TABLE messages_fts USING fts5(
         content, content='messages', content_rowid='id', tokenize='unicode61'
     );
     CREATE TRIGGER messages_fts_insert AFTER INSERT ON messages BEGIN
         INSERT INTO messages_fts(rowid, content) VALUES (new.id, new.content);
     END;
     CREATE TRIGGER messages_fts_delete AFTER DELETE ON messages BEGIN
         INSERT INTO messages_fts(messages_fts, rowid, content) VALUES ('delete', old.id, old.content);
     END;
     CREATE TRIGGER messages_fts_update AFTER UPDATE OF content ON messages BEGIN
         INSERT INTO messages_fts(messages_fts, rowid, content) VALUES ('delete', old.id, old.content);
         INSERT INTO messages_fts(rowid, content) VALUES (new.id, new.content);
     END;
     INSERT INTO messages_fts(messages_fts) VALUES ('rebuild');",
];

/// A handle on `state.db`; clones share one writer and one pool of readers
/// (see the module documentation).
#[derive(Clone)]
pub struct SessionStore {
    shared: Arc<Shared>,
}

/// A message to append.
#[derive(Debug, Clone, Default)]
pub struct NewMessage<'a> {
    /// `system`, `user`, `assistant` or `tool`.
    pub role: &'a str,
    pub content: &'a str,
    /// The assistant's tool calls, as the OpenAI JSON array.
    pub tool_calls: Option<&'a serde_json::Value>,
    /// For `tool` messages: the call answered.
    pub tool_call_id: Option<&'a str>,
    /// For `tool` messages: the tool's name.
    pub name: Option<&'a str>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Message {
    pub id: i64,
    pub role: String,
    pub content: String,
    pub tool_calls: Option<serde_json::Value>,
    pub tool_call_id: Option<String>,
    pub name: Option<String>,
    pub created_at: String,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SessionSummary {
    pub id: String,
    pub parent_id: Option<String>,
    pub title: Option<String>,
    pub created_at: String,
    pub updated_at: String,
    pub messages: i64,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SearchHit {
    pub session_id: String,
    pub message_id: i64,
    pub role: String,
    /// The matching part of the message, matches in `[` `]`.
    pub snippet: String,
    pub created_at: String,
}

impl SessionStore {
    /// Open (creating and migrating as needed) and start the writer. This
    /// blocks: it may wait for another process migrating the same database.
    pub fn open(path: &Path) -> anyhow::Result<Self> {
        make_private(path)?;
        let conn =
            Connection::open(path).with_context(|| format!("cannot open {}", path.display()))?;
        let conn = configure(conn).with_context(|| format!("cannot prepare {}", path.display()))?;
        let (sender, jobs) = mpsc::channel();
        let writer = std::thread::Builder::new()
            .name("talaria-sessions".into())
            .spawn(move || serve(conn, jobs))
            .context("cannot start the session store's writer thread")?;
        Ok(Self {
            shared: Arc::new(Shared {
                sender: Some(sender),
                writer: Some(writer),
                readers: Mutex::new(Vec::new()),
                path: path.to_owned(),
            }),
        })
    }

    pub fn schema_version(&self) -> anyhow::Result<usize> {
        self.read(schema_version)
    }

    // Writes, blocking.

    /// Start a session, optionally continuing `parent` (resumed or forked).
    pub fn create_session(
        &self,
        parent: Option<&str>,
        title: Option<&str>,
    ) -> anyhow::Result<String> {
        let (id, write) = new_session(parent, title);
        self.write(write)?;
        Ok(id)
    }

    /// Append and commit one message; returns its id.
    pub fn append(&self, session_id: &str, message: &NewMessage<'_>) -> anyhow::Result<i64> {
        self.write(Write::append(session_id, message))
    }

    /// Delete a session and its messages; returns whether it existed.
    pub fn delete(&self, session_id: &str) -> anyhow::Result<bool> {
        Ok(self.write(Write::Delete(session_id.to_owned()))? > 0)
    }

    /// `PRAGMA integrity_check` (and the FTS index's own check), on the
    /// writer's connection: the FTS check is written as an insert.
    pub fn check_integrity(&self) -> anyhow::Result<()> {
        self.write(Write::CheckIntegrity).map(drop)
    }

    // Reads, blocking.

    pub fn list(&self, limit: usize) -> anyhow::Result<Vec<SessionSummary>> {
        self.read(|conn| list(conn, limit))
    }

    pub fn exists(&self, session_id: &str) -> anyhow::Result<bool> {
        self.read(|conn| exists(conn, session_id))
    }

    pub fn messages(&self, session_id: &str) -> anyhow::Result<Vec<Message>> {
        self.read(|conn| messages(conn, session_id))
    }

    /// Messages whose content matches every word of `query`, newest first.
    /// The query is taken as plain words, never as FTS syntax. Newest first
    /// (rather than by relevance) lets FTS5 stop after `limit` matches
    /// instead of scoring every message that holds a common word.
    pub fn search(&self, query: &str, limit: usize) -> anyhow::Result<Vec<SearchHit>> {
        self.read(|conn| search(conn, query, limit))
    }

    // Writes, async: queued at the call, committed before the future ends.

    /// [`create_session`](Self::create_session) for async code.
    pub fn create_session_async(
        &self,
        parent: Option<&str>,
        title: Option<&str>,
    ) -> impl Future<Output = anyhow::Result<String>> + Send + use<> {
        let (id, write) = new_session(parent, title);
        let written = self.submit(write);
        async move {
            written.await?;
            Ok(id)
        }
    }

    /// [`append`](Self::append) for async code. The message is queued when
    /// this is called; the future ends once it is committed.
    pub fn append_async(
        &self,
        session_id: &str,
        message: &NewMessage<'_>,
    ) -> impl Future<Output = anyhow::Result<i64>> + Send + use<> {
        self.submit(Write::append(session_id, message))
    }

    /// [`delete`](Self::delete) for async code.
    pub fn delete_async(
        &self,
        session_id: &str,
    ) -> impl Future<Output = anyhow::Result<bool>> + Send + use<> {
        let written = self.submit(Write::Delete(session_id.to_owned()));
        async move { Ok(written.await? > 0) }
    }

    // Reads, async: on a read connection under `spawn_blocking`.

    pub async fn list_async(&self, limit: usize) -> anyhow::Result<Vec<SessionSummary>> {
        self.read_async(move |conn| list(conn, limit)).await
    }

    pub async fn exists_async(&self, session_id: &str) -> anyhow::Result<bool> {
        let session_id = session_id.to_owned();
        self.read_async(move |conn| exists(conn, &session_id)).await
    }

    pub async fn messages_async(&self, session_id: &str) -> anyhow::Result<Vec<Message>> {
        let session_id = session_id.to_owned();
        self.read_async(move |conn| messages(conn, &session_id))
            .await
    }

    /// [`search`](Self::search) for async code.
    pub async fn search_async(&self, query: &str, limit: usize) -> anyhow::Result<Vec<SearchHit>> {
        let query = query.to_owned();
        self.read_async(move |conn| search(conn, &query, limit))
            .await
    }

    /// Hand `write` to the writer and wait on this thread for its answer.
    fn write(&self, write: Write) -> anyhow::Result<i64> {
        let (reply, answer) = mpsc::sync_channel(1);
        self.shared.queue(Job {
            write,
            reply: Reply::Thread(reply),
        })?;
        answer.recv().map_err(|_| writer_stopped())?
    }

    /// Hand `write` to the writer now; the future waits for its answer.
    fn submit(&self, write: Write) -> impl Future<Output = anyhow::Result<i64>> + Send + use<> {
        let (reply, answer) = oneshot::channel();
        let queued = self.shared.queue(Job {
            write,
            reply: Reply::Task(reply),
        });
        async move {
            queued?;
            answer.await.map_err(|_| writer_stopped())?
        }
    }

    /// Run `read` on a read connection of the pool, on this thread.
    fn read<T>(&self, read: impl FnOnce(&Connection) -> anyhow::Result<T>) -> anyhow::Result<T> {
        let conn = self.shared.take_reader()?;
        let result = read(&conn);
        self.shared.return_reader(conn);
        result
    }

    async fn read_async<T: Send + 'static>(
        &self,
        read: impl FnOnce(&Connection) -> anyhow::Result<T> + Send + 'static,
    ) -> anyhow::Result<T> {
        let store = self.clone();
        tokio::task::spawn_blocking(move || store.read(read))
            .await
            .map_err(|error| anyhow::anyhow!("a session store read failed: {error}"))?
    }
}

/// What the handles share; dropped with the last of them.
struct Shared {
    /// Taken on drop, which closes the channel and ends the writer.
    sender: Option<mpsc::Sender<Job>>,
    writer: Option<std::thread::JoinHandle<()>>,
    /// Idle read connections. The lock is held only to take or return one.
    readers: Mutex<Vec<Connection>>,
    path: PathBuf,
}

impl Shared {
    fn queue(&self, job: Job) -> anyhow::Result<()> {
        self.sender
            .as_ref()
            .ok_or_else(writer_stopped)?
            .send(job)
            .map_err(|_| writer_stopped())
    }

    fn take_reader(&self) -> anyhow::Result<Connection> {
        let idle = self
            .readers
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .pop();
        match idle {
            Some(conn) => Ok(conn),
            None => open_reader(&self.path)
                .with_context(|| format!("cannot open {} to read", self.path.display())),
        }
    }

    fn return_reader(&self, conn: Connection) {
        let mut idle = self
            .readers
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if idle.len() < MAX_IDLE_READERS {
            idle.push(conn);
        }
    }
}

impl Drop for Shared {
    fn drop(&mut self) {
        // Readers first, so that the writer's connection closes last and
        // checkpoints the WAL into the database.
        self.readers
            .get_mut()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clear();
        // Closing the channel ends the writer once it has committed what
        // was queued; wait for that, so the database is closed after this.
        self.sender.take();
        if let Some(writer) = self.writer.take()
            && writer.thread().id() != std::thread::current().id()
        {
            let _ = writer.join();
        }
    }
}

/// One write for the writer, and where its answer goes.
struct Job {
    write: Write,
    reply: Reply,
}

/// A write; its answer is a number: the new message's id, or the rows
/// deleted.
enum Write {
    CreateSession {
        id: String,
        parent: Option<String>,
        title: Option<String>,
        now: String,
    },
    Append {
        session_id: String,
        role: String,
        content: String,
        /// The JSON text of the tool calls.
        tool_calls: Option<String>,
        tool_call_id: Option<String>,
        name: Option<String>,
        now: String,
    },
    Delete(String),
    CheckIntegrity,
    /// A write that panics the writer, to test what callers see then.
    #[cfg(test)]
    Panic,
}

impl Write {
    fn append(session_id: &str, message: &NewMessage<'_>) -> Self {
        Self::Append {
            session_id: session_id.to_owned(),
            role: message.role.to_owned(),
            content: message.content.to_owned(),
            tool_calls: message.tool_calls.map(|calls| calls.to_string()),
            tool_call_id: message.tool_call_id.map(str::to_owned),
            name: message.name.map(str::to_owned),
            now: crate::clock::now_rfc3339(),
        }
    }
}

/// A new session's id, and the write that creates it.
fn new_session(parent: Option<&str>, title: Option<&str>) -> (String, Write) {
    let now = crate::clock::now_rfc3339();
    let id = format!(
        "{}-{:06x}",
        now.replace(['-', ':'], "").trim_end_matches('Z'),
        rand::random::<u32>() & 0xff_ffff
    );
    let write = Write::CreateSession {
        id: id.clone(),
        parent: parent.map(str::to_owned),
        title: title.map(str::to_owned),
        now,
    };
    (id, write)
}

/// Where a write's answer goes: an async task or a waiting thread.
enum Reply {
    Task(oneshot::Sender<anyhow::Result<i64>>),
    Thread(mpsc::SyncSender<anyhow::Result<i64>>),
}

impl Reply {
    /// A caller that stopped waiting (a dropped future) needs no answer:
    /// its write stands.
    fn send(self, result: anyhow::Result<i64>) {
        match self {
            Self::Task(sender) => {
                let _ = sender.send(result);
            }
            Self::Thread(sender) => {
                let _ = sender.send(result);
            }
        }
    }
}

fn writer_stopped() -> anyhow::Error {
    anyhow::anyhow!("the session store's writer has stopped; nothing more can be stored")
}

/// The writer thread: commit the writes in arrival order, those already
/// waiting together, until every handle is gone.
fn serve(conn: Connection, jobs: mpsc::Receiver<Job>) {
    while let Ok(first) = jobs.recv() {
        let mut batch = vec![first];
        while batch.len() < MAX_BATCH
            && let Ok(job) = jobs.try_recv()
        {
            batch.push(job);
        }
        let (writes, replies): (Vec<Write>, Vec<Reply>) =
            batch.into_iter().map(|job| (job.write, job.reply)).unzip();
        for (reply, result) in replies.into_iter().zip(commit(&conn, &writes)) {
            reply.send(result);
        }
    }
    // The connection closes here, checkpointing the WAL when it is the last.
}

/// Apply `writes` in one transaction and commit it; one result per write,
/// `Ok` only for writes the commit made durable.
fn commit(conn: &Connection, writes: &[Write]) -> Vec<anyhow::Result<i64>> {
    let all_failed = |error: &anyhow::Error| -> Vec<anyhow::Result<i64>> {
        writes
            .iter()
            .map(|_| Err(anyhow::anyhow!("{error:#}")))
            .collect()
    };
    // `BEGIN IMMEDIATE` takes the write lock at once, waiting up to
    // [`BUSY_TIMEOUT`] for other processes, so no statement after it can
    // fail on a lock another process took meanwhile.
    if let Err(error) = conn.execute_batch("BEGIN IMMEDIATE") {
        return all_failed(&anyhow::Error::from(error).context("cannot start a write"));
    }
    let mut results = Vec::with_capacity(writes.len());
    for write in writes {
        let result = if writes.len() == 1 {
            apply(conn, write)
        } else {
            apply_alone(conn, write)
        };
        if writes.len() == 1 && result.is_err() && !conn.is_autocommit() {
            // Nothing of a failed write is kept, whatever step failed.
            let _ = conn.execute_batch("ROLLBACK");
            return vec![result];
        }
        if conn.is_autocommit() {
            // SQLite rolled the whole transaction back (a full disk, an I/O
            // error): none of these writes is stored.
            let cause = match &result {
                Err(error) => anyhow::anyhow!("{error:#}"),
                Ok(_) => anyhow::anyhow!("the transaction ended early"),
            };
            return all_failed(&cause.context("a write failed and was rolled back"));
        }
        results.push(result);
    }
    if let Err(error) = conn.execute_batch("COMMIT") {
        if !conn.is_autocommit() {
            let _ = conn.execute_batch("ROLLBACK");
        }
        return all_failed(&anyhow::Error::from(error).context("cannot commit"));
    }
    results
}

/// Apply one write of several sharing a transaction, in a savepoint, so that
/// its failure undoes it alone.
fn apply_alone(conn: &Connection, write: &Write) -> anyhow::Result<i64> {
    conn.execute_batch("SAVEPOINT one_write")?;
    match apply(conn, write) {
        Ok(value) => {
            conn.execute_batch("RELEASE one_write")?;
            Ok(value)
        }
        Err(error) => {
            if !conn.is_autocommit() {
                conn.execute_batch("ROLLBACK TO one_write; RELEASE one_write")?;
            }
            Err(error)
        }
    }
}

fn apply(conn: &Connection, write: &Write) -> anyhow::Result<i64> {
    match write {
        Write::CreateSession {
            id,
            parent,
            title,
            now,
        } => {
            conn.prepare_cached(
                "INSERT INTO sessions (id, parent_id, title, created_at, updated_at) VALUES (?1, ?2, ?3, ?4, ?4)",
            )?
            .execute(params![id, parent, title, now])
            .with_context(|| format!("cannot create session {id}"))?;
            Ok(0)
        }
        Write::Append {
            session_id,
            role,
            content,
            tool_calls,
            tool_call_id,
            name,
            now,
        } => {
            conn.prepare_cached(
                "INSERT INTO messages (session_id, role, content, tool_calls, tool_call_id, name, created_at)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
            )?
            .execute(params![session_id, role, content, tool_calls, tool_call_id, name, now])
            .with_context(|| format!("cannot store a message of session {session_id}"))?;
            let id = conn.last_insert_rowid();
            conn.prepare_cached("UPDATE sessions SET updated_at = ?2 WHERE id = ?1")?
                .execute(params![session_id, now])?;
            Ok(id)
        }
        Write::Delete(session_id) => Ok(conn
            .prepare_cached("DELETE FROM sessions WHERE id = ?1")?
            .execute([session_id])? as i64),
        Write::CheckIntegrity => {
            let result: String = conn.query_row("PRAGMA integrity_check", [], |row| row.get(0))?;
            anyhow::ensure!(result == "ok", "state.db integrity check: {result}");
            conn.execute(
                "INSERT INTO messages_fts(messages_fts) VALUES ('integrity-check')",
                [],
            )
            .context("the full-text index does not match the messages")?;
            Ok(0)
        }
        #[cfg(test)]
        Write::Panic => panic!("a write panicked the writer"),
    }
}

/// Prepare the write connection: wait for other processes, WAL, foreign
/// keys, the schema up to date.
fn configure(mut conn: Connection) -> anyhow::Result<Connection> {
    // First, so that every step below waits for other processes too.
    conn.busy_timeout(BUSY_TIMEOUT)?;
    // Any transaction opened without saying otherwise writes safely too.
    conn.set_transaction_behavior(TransactionBehavior::Immediate);
    enable_wal(&conn)?;
    conn.pragma_update(None, "synchronous", "NORMAL")?;
    conn.pragma_update(None, "foreign_keys", true)?;
    migrate(&mut conn)?;
    Ok(conn)
}

/// A read connection: never creates the database (the writer did), never
/// writes, and waits like the writer for the rare moments a reader must
/// (another process recovering the WAL).
fn open_reader(path: &Path) -> anyhow::Result<Connection> {
    let conn = Connection::open_with_flags(
        path,
        OpenFlags::SQLITE_OPEN_READ_WRITE
            | OpenFlags::SQLITE_OPEN_NO_MUTEX
            | OpenFlags::SQLITE_OPEN_URI,
    )?;
    conn.busy_timeout(BUSY_TIMEOUT)?;
    conn.pragma_update(None, "query_only", true)?;
    Ok(conn)
}

fn schema_version(conn: &Connection) -> anyhow::Result<usize> {
    Ok(conn.pragma_query_value(None, "user_version", |row| row.get::<_, i64>(0))? as usize)
}

/// Apply the migrations still missing. Several processes may open a fresh
/// database at once: each takes the write lock, then reads the version again
/// and applies only what no other process applied while it waited.
fn migrate(conn: &mut Connection) -> anyhow::Result<()> {
    if check_version(schema_version(conn)?)? == MIGRATIONS.len() {
        return Ok(());
    }
    let tx = conn.transaction_with_behavior(TransactionBehavior::Exclusive)?;
    let current = check_version(
        tx.pragma_query_value(None, "user_version", |row| row.get::<_, i64>(0))? as usize,
    )?;
    for (index, migration) in MIGRATIONS.iter().enumerate().skip(current) {
        tx.execute_batch(migration)
            .with_context(|| format!("migration to schema version {}", index + 1))?;
        tx.pragma_update(None, "user_version", (index + 1) as i64)?;
    }
    tx.commit()?;
    Ok(())
}

fn list(conn: &Connection, limit: usize) -> anyhow::Result<Vec<SessionSummary>> {
    let mut statement = conn.prepare_cached(
        "SELECT s.id, s.parent_id, s.title, s.created_at, s.updated_at,
                (SELECT count(*) FROM messages m WHERE m.session_id = s.id)
         FROM sessions s ORDER BY s.updated_at DESC, s.id DESC LIMIT ?1",
    )?;
    let rows = statement.query_map([limit as i64], |row| {
        Ok(SessionSummary {
            id: row.get(0)?,
            parent_id: row.get(1)?,
            title: row.get(2)?,
            created_at: row.get(3)?,
            updated_at: row.get(4)?,
            messages: row.get(5)?,
        })
    })?;
    Ok(rows.collect::<Result<_, _>>()?)
}

fn exists(conn: &Connection, session_id: &str) -> anyhow::Result<bool> {
    Ok(conn
        .prepare_cached("SELECT 1 FROM sessions WHERE id = ?1")?
        .query_row([session_id], |_| Ok(()))
        .optional()?
        .is_some())
}

fn messages(conn: &Connection, session_id: &str) -> anyhow::Result<Vec<Message>> {
    let mut statement = conn.prepare_cached(
        "SELECT id, role, content, tool_calls, tool_call_id, name, created_at
         FROM messages WHERE session_id = ?1 ORDER BY id",
    )?;
    let rows = statement.query_map([session_id], |row| {
        let tool_calls: Option<String> = row.get(3)?;
        Ok(Message {
            id: row.get(0)?,
            role: row.get(1)?,
            content: row.get(2)?,
            tool_calls: tool_calls.and_then(|text| serde_json::from_str(&text).ok()),
            tool_call_id: row.get(4)?,
            name: row.get(5)?,
            created_at: row.get(6)?,
        })
    })?;
    Ok(rows.collect::<Result<_, _>>()?)
}

fn search(conn: &Connection, query: &str, limit: usize) -> anyhow::Result<Vec<SearchHit>> {
    let terms: Vec<String> = query
        .split_whitespace()
        .map(|word| format!("\"{}\"", word.replace('"', "\"\"")))
        .collect();
    if terms.is_empty() {
        return Ok(Vec::new());
    }
    let mut statement = conn.prepare_cached(
        "SELECT m.session_id, m.id, m.role,
                snippet(messages_fts, 0, '[', ']', '…', 12), m.created_at
         FROM messages_fts JOIN messages m ON m.id = messages_fts.rowid
         WHERE messages_fts MATCH ?1
         ORDER BY messages_fts.rowid DESC LIMIT ?2",
    )?;
    let rows = statement.query_map(params![terms.join(" "), limit as i64], |row| {
        Ok(SearchHit {
            session_id: row.get(0)?,
            message_id: row.get(1)?,
            role: row.get(2)?,
            snippet: row.get(3)?,
            created_at: row.get(4)?,
        })
    })?;
    Ok(rows.collect::<Result<_, _>>()?)
}

fn check_version(version: usize) -> anyhow::Result<usize> {
    anyhow::ensure!(
        version <= MIGRATIONS.len(),
        "state.db has schema version {version}, newer than this talaria understands ({}); upgrade talaria",
        MIGRATIONS.len()
    );
    Ok(version)
}

/// Create the database file mode 0600 before SQLite does (SQLite would use
/// 0644 less the umask, and its `-wal`/`-shm` files copy the database's
/// mode), and take group and other access away from one an older version
/// left readable.
fn make_private(path: &Path) -> anyhow::Result<()> {
    crate::home::create_private_file(path)?;
    for suffix in COMPANION_SUFFIXES {
        let mut companion = path.as_os_str().to_owned();
        companion.push(suffix);
        crate::home::restrict_to_owner(Path::new(&companion))?;
    }
    Ok(())
}

/// Switch to WAL. The switch needs a moment of exclusive access, and SQLite
/// answers "busy" at once instead of calling the busy handler when another
/// process opens or switches a fresh database at the same instant; retry for
/// as long as any other statement would wait.
fn enable_wal(conn: &Connection) -> anyhow::Result<()> {
    let deadline = Instant::now() + BUSY_TIMEOUT;
    loop {
        match conn
            .pragma_update_and_check(None, "journal_mode", "WAL", |row| row.get::<_, String>(0))
        {
            Ok(_) => return Ok(()),
            Err(error) if is_busy(&error) && Instant::now() < deadline => {
                std::thread::sleep(BUSY_RETRY_PAUSE);
            }
            Err(error) => return Err(error).context("cannot switch to WAL mode"),
        }
    }
}

fn is_busy(error: &rusqlite::Error) -> bool {
    error.sqlite_error_code() == Some(ErrorCode::DatabaseBusy)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn user<'a>(content: &'a str) -> NewMessage<'a> {
        NewMessage {
            role: "user",
            content,
            ..Default::default()
        }
    }

    #[test]
    fn messages_are_stored_in_order_and_found_by_words() {
        let dir = tempfile::tempdir().unwrap();
        let store = SessionStore::open(&dir.path().join("state.db")).unwrap();
        let first = store.create_session(None, Some("planning")).unwrap();
        store
            .append(&first, &user("Let us plan the Kubernetes migration"))
            .unwrap();
        let calls = serde_json::json!([{"id": "c1", "type": "function", "function": {"name": "text__count", "arguments": "{}"}}]);
        store
            .append(
                &first,
                &NewMessage {
                    role: "assistant",
                    content: "",
                    tool_calls: Some(&calls),
                    ..Default::default()
                },
            )
            .unwrap();
        let second = store.create_session(Some(&first), None).unwrap();
        store
            .append(&second, &user("What did we decide about kubernetes?"))
            .unwrap();

        let messages = store.messages(&first).unwrap();
        assert_eq!(messages.len(), 2);
        assert_eq!(messages[1].tool_calls.as_ref(), Some(&calls));
        let sessions = store.list(10).unwrap();
        assert_eq!(sessions.len(), 2);
        assert_eq!(
            sessions
                .iter()
                .find(|s| s.id == second)
                .unwrap()
                .parent_id
                .as_deref(),
            Some(first.as_str())
        );

        let hits = store.search("Kubernetes", 10).unwrap();
        assert_eq!(hits.len(), 2);
        assert!(
            hits.iter()
                .any(|h| h.snippet.contains("[Kubernetes] migration")),
            "{hits:?}"
        );
        assert_eq!(store.search("kubernetes decide", 10).unwrap().len(), 1);
        // FTS syntax in a query is taken literally, not as an error.
        assert!(store.search("\"unbalanced AND (", 10).unwrap().is_empty());

        assert!(store.delete(&first).unwrap());
        assert_eq!(store.search("migration", 10).unwrap().len(), 0);
        assert_eq!(store.list(10).unwrap()[0].parent_id, None);
        store.check_integrity().unwrap();
    }

    #[test]
    fn an_older_schema_is_migrated_and_its_messages_become_searchable() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state.db");
        {
            // A database as the first version of the schema left it.
            let conn = Connection::open(&path).unwrap();
            conn.execute_batch(MIGRATIONS[0]).unwrap();
            conn.pragma_update(None, "user_version", 1).unwrap();
            conn.execute(
                "INSERT INTO sessions (id, created_at, updated_at) VALUES ('old', '2026-01-01T00:00:00Z', '2026-01-01T00:00:00Z')",
                [],
            )
            .unwrap();
            conn.execute(
                "INSERT INTO messages (session_id, role, content, created_at) VALUES ('old', 'user', 'remember the aardvark', '2026-01-01T00:00:00Z')",
                [],
            )
            .unwrap();
        }
        let store = SessionStore::open(&path).unwrap();
        assert_eq!(store.schema_version().unwrap(), MIGRATIONS.len());
        let hits = store.search("aardvark", 5).unwrap();
        assert_eq!(hits.len(), 1);
        assert_eq!(hits[0].session_id, "old");
        store.check_integrity().unwrap();
    }

    fn mode(path: &Path) -> u32 {
        use std::os::unix::fs::PermissionsExt;
        std::fs::metadata(path).unwrap().permissions().mode() & 0o777
    }

    #[test]
    fn the_database_and_its_wal_files_are_private() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state.db");
        let store = SessionStore::open(&path).unwrap();
        let session = store.create_session(None, None).unwrap();
        store.append(&session, &user("a secret")).unwrap();
        // While the store is open, SQLite keeps its -wal and -shm beside it.
        for name in ["state.db", "state.db-wal", "state.db-shm"] {
            assert_eq!(mode(&dir.path().join(name)), 0o600, "{name}");
        }
        drop(store);

        // A database an older version left readable is made private.
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
        let wal = dir.path().join("state.db-wal");
        std::fs::write(&wal, b"").unwrap();
        std::fs::set_permissions(&wal, std::fs::Permissions::from_mode(0o644)).unwrap();
        let store = SessionStore::open(&path).unwrap();
        assert_eq!(mode(&path), 0o600);
        assert_eq!(mode(&wal), 0o600);
        assert_eq!(store.messages(&session).unwrap().len(), 1);
    }

    #[test]
    fn processes_opening_a_fresh_database_at_once_all_succeed() {
        const OPENERS: usize = 8;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state.db");
        let start = std::sync::Barrier::new(OPENERS);
        std::thread::scope(|scope| {
            let openers: Vec<_> = (0..OPENERS)
                .map(|_| {
                    scope.spawn(|| {
                        start.wait();
                        let store = SessionStore::open(&path)?;
                        // Each writes at once too, racing the others' first writes.
                        let session = store.create_session(None, None)?;
                        store.append(&session, &user("first words"))?;
                        anyhow::Ok(store.schema_version()?)
                    })
                })
                .collect();
            for opener in openers {
                let version = opener.join().unwrap();
                assert_eq!(version.unwrap(), MIGRATIONS.len());
            }
        });
        let store = SessionStore::open(&path).unwrap();
        assert_eq!(store.list(100).unwrap().len(), OPENERS);
        assert_eq!(store.search("first", 100).unwrap().len(), OPENERS);
        store.check_integrity().unwrap();
    }

    #[test]
    fn a_newer_schema_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state.db");
        Connection::open(&path)
            .unwrap()
            .pragma_update(None, "user_version", 99)
            .unwrap();
        let error = SessionStore::open(&path).err().unwrap();
        assert!(
            format!("{error:#}").contains("schema version 99, newer than this talaria understands")
        );
    }

    // The writer and the readers.

    fn contents(store: &SessionStore, session: &str) -> Vec<String> {
        store
            .messages(session)
            .unwrap()
            .into_iter()
            .map(|m| m.content)
            .collect()
    }

    fn numbered(count: usize) -> Vec<String> {
        (0..count).map(|n| n.to_string()).collect()
    }

    /// A connection of "another process" holding the write lock.
    fn lock_for_writing(path: &Path) -> Connection {
        let other = Connection::open(path).unwrap();
        other.execute_batch("BEGIN IMMEDIATE").unwrap();
        other
    }

    /// Run `f` on its own thread and fail if it does not end within 20 s.
    fn within_20_seconds<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> T {
        let (done, result) = mpsc::channel();
        std::thread::spawn(move || done.send(f()).unwrap());
        result
            .recv_timeout(Duration::from_secs(20))
            .expect("still running after 20 s")
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn writes_from_threads_and_tasks_keep_each_callers_order() {
        const CALLERS: usize = 6;
        const EACH: usize = 60;
        let dir = tempfile::tempdir().unwrap();
        let store = SessionStore::open(&dir.path().join("state.db")).unwrap();
        let mut sessions = Vec::new();
        for _ in 0..3 * CALLERS {
            sessions.push(store.create_session_async(None, None).await.unwrap());
        }
        // Blocking writers on their own threads, async writers on the
        // runtime, and async writers that queue everything before awaiting.
        let threads: Vec<_> = sessions[..CALLERS]
            .iter()
            .map(|session| {
                let (store, session) = (store.clone(), session.clone());
                std::thread::spawn(move || {
                    for n in 0..EACH {
                        store.append(&session, &user(&n.to_string())).unwrap();
                    }
                })
            })
            .collect();
        let awaiting: Vec<_> = sessions[CALLERS..2 * CALLERS]
            .iter()
            .map(|session| {
                let (store, session) = (store.clone(), session.clone());
                tokio::spawn(async move {
                    for n in 0..EACH {
                        store
                            .append_async(&session, &user(&n.to_string()))
                            .await
                            .unwrap();
                    }
                })
            })
            .collect();
        let queueing: Vec<_> = sessions[2 * CALLERS..]
            .iter()
            .map(|session| {
                let (store, session) = (store.clone(), session.clone());
                tokio::spawn(async move {
                    let queued: Vec<_> = (0..EACH)
                        .map(|n| store.append_async(&session, &user(&n.to_string())))
                        .collect();
                    let mut ids = Vec::new();
                    for written in queued {
                        ids.push(written.await.unwrap());
                    }
                    ids
                })
            })
            .collect();
        for thread in threads {
            thread.join().unwrap();
        }
        for task in awaiting {
            task.await.unwrap();
        }
        for task in queueing {
            let ids = task.await.unwrap();
            assert!(ids.windows(2).all(|w| w[0] < w[1]), "{ids:?}");
        }
        // A blocking call from async code works too (it blocks this worker).
        store.append(&sessions[0], &user("last")).unwrap();

        let mut expected = numbered(EACH);
        expected.push("last".into());
        assert_eq!(contents(&store, &sessions[0]), expected);
        for session in &sessions[1..] {
            assert_eq!(contents(&store, session), numbered(EACH), "{session}");
        }
        assert_eq!(
            store
                .list(100)
                .unwrap()
                .iter()
                .map(|s| s.messages)
                .sum::<i64>(),
            (3 * CALLERS * EACH + 1) as i64
        );
        store.check_integrity().unwrap();
    }

    #[tokio::test]
    async fn writes_queued_behind_another_process_keep_their_order_and_fail_alone() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state.db");
        let store = SessionStore::open(&path).unwrap();
        let session = store.create_session_async(None, None).await.unwrap();

        // A failed write alone stores nothing and says why.
        let error = store
            .append_async("no-such-session", &user("lost"))
            .await
            .unwrap_err();
        assert!(
            format!("{error:#}").contains("cannot store a message of session no-such-session"),
            "{error:#}"
        );
        let error = store.append("no-such-session", &user("lost")).unwrap_err();
        assert!(format!("{error:#}").contains("FOREIGN KEY"), "{error:#}");

        // Another process holds the write lock: the writer takes the first
        // write and waits in `BEGIN IMMEDIATE`; the next ones queue behind it
        // and are committed together once the lock is free.
        let other = lock_for_writing(&path);
        let first = store.append_async(&session, &user("first"));
        std::thread::sleep(Duration::from_millis(200));
        let good = store.append_async(&session, &user("second"));
        let bad = store.append_async("no-such-session", &user("refused"));
        let created = store.create_session_async(Some(&session), Some("child"));
        let last = store.append_async(&session, &user("third"));
        other.execute_batch("COMMIT").unwrap();

        let ids = [first.await.unwrap(), good.await.unwrap()];
        assert!(bad.await.is_err());
        let child = created.await.unwrap();
        assert!(last.await.unwrap() > ids[1]);
        assert!(ids[0] < ids[1]);
        assert_eq!(contents(&store, &session), ["first", "second", "third"]);
        assert!(store.exists(&child).unwrap());
        assert!(store.search("refused", 10).unwrap().is_empty());
        assert!(store.search("lost", 10).unwrap().is_empty());
        store.check_integrity().unwrap();
    }

    #[test]
    fn a_batch_commits_its_good_writes_and_fails_its_bad_ones_alone() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state.db");
        make_private(&path).unwrap();
        let conn = configure(Connection::open(&path).unwrap()).unwrap();
        let (session, create) = new_session(None, None);
        let results = commit(
            &conn,
            &[
                create,
                Write::append(&session, &user("one")),
                Write::append("no-such-session", &user("refused")),
                Write::Delete("no-such-session".into()),
                Write::append(&session, &user("two")),
                Write::CheckIntegrity,
            ],
        );
        assert!(conn.is_autocommit(), "the transaction is over");
        assert_eq!(results.len(), 6);
        assert!(results[2].is_err());
        assert_eq!(results[3].as_ref().unwrap(), &0);
        let ids: Vec<i64> = [1, 4]
            .iter()
            .map(|&i| *results[i].as_ref().unwrap())
            .collect();
        assert!(ids[0] < ids[1]);
        assert!(results[5].is_ok());
        let stored: Vec<String> = messages(&conn, &session)
            .unwrap()
            .into_iter()
            .map(|m| m.content)
            .collect();
        assert_eq!(stored, ["one", "two"]);

        // A write that fails alone leaves nothing behind either.
        let results = commit(&conn, &[Write::append("no-such-session", &user("x"))]);
        assert!(results[0].is_err());
        assert!(conn.is_autocommit());
        assert_eq!(messages(&conn, "no-such-session").unwrap(), []);
    }

    #[test]
    fn a_writer_that_stops_fails_its_callers_without_panicking() {
        let dir = tempfile::tempdir().unwrap();
        let store = SessionStore::open(&dir.path().join("state.db")).unwrap();
        let session = store.create_session(None, None).unwrap();
        store.append(&session, &user("kept")).unwrap();

        let error = store.write(Write::Panic).unwrap_err();
        assert!(format!("{error}").contains("writer has stopped"), "{error}");
        let error = store.append(&session, &user("refused")).unwrap_err();
        assert!(format!("{error}").contains("writer has stopped"), "{error}");
        let runtime = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        let error = runtime
            .block_on(store.append_async(&session, &user("refused")))
            .unwrap_err();
        assert!(format!("{error}").contains("writer has stopped"), "{error}");
        // What was committed can still be read, and the store still closes.
        assert_eq!(contents(&store, &session), ["kept"]);
        within_20_seconds(move || drop(store));
    }

    #[test]
    fn the_writer_ends_with_the_last_handle_after_committing_what_was_queued() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state.db");
        let store = SessionStore::open(&path).unwrap();
        let session = store.create_session(None, None).unwrap();
        let clone = store.clone();
        drop(store);
        clone.append(&session, &user("through a clone")).unwrap();
        assert_eq!(contents(&clone, &session), ["through a clone"]);

        // Queued, not yet awaited, when the last handle goes.
        let queued: Vec<_> = (0..20)
            .map(|n| clone.append_async(&session, &user(&format!("queued {n}"))))
            .collect();
        within_20_seconds(move || drop(clone));
        // Every connection is closed: the last one folded the WAL back in.
        let wal = dir.path().join("state.db-wal");
        assert!(!wal.exists(), "{} is left", wal.display());
        let runtime = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        for written in queued {
            runtime.block_on(written).unwrap();
        }
        let store = SessionStore::open(&path).unwrap();
        assert_eq!(contents(&store, &session).len(), 21);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn reads_go_on_while_another_process_holds_the_write_lock() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state.db");
        let store = SessionStore::open(&path).unwrap();
        let session = store.create_session(None, None).unwrap();
        store.append(&session, &user("committed zebra")).unwrap();

        let other = lock_for_writing(&path);
        other
            .execute(
                "INSERT INTO messages (session_id, role, content, created_at) VALUES (?1, 'user', 'uncommitted zebra', 'now')",
                [&session],
            )
            .unwrap();
        let waiting = store.append_async(&session, &user("waiting zebra"));
        let started = Instant::now();
        for _ in 0..20 {
            assert_eq!(contents(&store, &session), ["committed zebra"]);
            assert_eq!(store.messages_async(&session).await.unwrap().len(), 1);
            assert_eq!(store.search_async("zebra", 10).await.unwrap().len(), 1);
            assert_eq!(store.list_async(10).await.unwrap()[0].messages, 1);
            assert!(store.exists_async(&session).await.unwrap());
        }
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "reads waited for the writer: {:?}",
            started.elapsed()
        );
        other.execute_batch("COMMIT").unwrap();
        waiting.await.unwrap();
        assert_eq!(
            contents(&store, &session),
            ["committed zebra", "uncommitted zebra", "waiting zebra"]
        );
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn concurrent_readers_see_each_session_grow_in_order() {
        const SESSIONS: usize = 4;
        const EACH: usize = 150;
        let dir = tempfile::tempdir().unwrap();
        let store = SessionStore::open(&dir.path().join("state.db")).unwrap();
        let mut sessions = Vec::new();
        for _ in 0..SESSIONS {
            sessions.push(store.create_session_async(None, None).await.unwrap());
        }
        let done = Arc::new(std::sync::atomic::AtomicBool::new(false));
        // More readers than idle connections kept, on their own threads.
        let readers: Vec<_> = (0..2 * MAX_IDLE_READERS)
            .map(|reader| {
                let (store, done) = (store.clone(), Arc::clone(&done));
                let session = sessions[reader % SESSIONS].clone();
                std::thread::spawn(move || {
                    let mut seen = 0;
                    let mut reads = 0;
                    loop {
                        // Read the flag first: a read after it sees every write.
                        let last = done.load(std::sync::atomic::Ordering::SeqCst);
                        let now = contents(&store, &session);
                        assert!(now.len() >= seen, "{} after {seen}", now.len());
                        assert_eq!(now, numbered(now.len()));
                        seen = now.len();
                        reads += 1;
                        if last {
                            return (seen, reads);
                        }
                    }
                })
            })
            .collect();
        let writers: Vec<_> = sessions
            .iter()
            .map(|session| {
                let (store, session) = (store.clone(), session.clone());
                tokio::spawn(async move {
                    for n in 0..EACH {
                        store
                            .append_async(&session, &user(&n.to_string()))
                            .await
                            .unwrap();
                    }
                })
            })
            .collect();
        for writer in writers {
            writer.await.unwrap();
        }
        done.store(true, std::sync::atomic::Ordering::SeqCst);
        for reader in readers {
            let (seen, reads) = reader.join().unwrap();
            assert_eq!(seen, EACH);
            assert!(reads > 1);
        }
        assert!(store.shared.readers.lock().unwrap().len() <= MAX_IDLE_READERS);
    }
}
