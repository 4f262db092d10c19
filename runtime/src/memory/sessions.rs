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

use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::Context;
use rusqlite::{
    Connection, ErrorCode, OptionalExtension, Transaction, TransactionBehavior, params,
};
use serde::Serialize;

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

pub struct SessionStore {
    conn: Connection,
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
    pub fn open(path: &Path) -> anyhow::Result<Self> {
        make_private(path)?;
        let conn =
            Connection::open(path).with_context(|| format!("cannot open {}", path.display()))?;
        Self::configure(conn).with_context(|| format!("cannot prepare {}", path.display()))
    }

    fn configure(mut conn: Connection) -> anyhow::Result<Self> {
        // First, so that every step below waits for other processes too.
        conn.busy_timeout(BUSY_TIMEOUT)?;
        // Any transaction opened without saying otherwise writes safely too.
        conn.set_transaction_behavior(TransactionBehavior::Immediate);
        enable_wal(&conn)?;
        conn.pragma_update(None, "synchronous", "NORMAL")?;
        conn.pragma_update(None, "foreign_keys", true)?;
        let mut store = Self { conn };
        store.migrate()?;
        Ok(store)
    }

    pub fn schema_version(&self) -> anyhow::Result<usize> {
        Ok(self
            .conn
            .pragma_query_value(None, "user_version", |row| row.get::<_, i64>(0))?
            as usize)
    }

    /// Apply the migrations still missing. Several processes may open a
    /// fresh database at once: each takes the write lock, then reads the
    /// version again and applies only what no other process applied while
    /// it waited.
    fn migrate(&mut self) -> anyhow::Result<()> {
        if check_version(self.schema_version()?)? == MIGRATIONS.len() {
            return Ok(());
        }
        let tx = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Exclusive)?;
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

    /// A write transaction: `BEGIN IMMEDIATE` takes the write lock at once,
    /// waiting up to [`BUSY_TIMEOUT`] for other writers, so no statement in
    /// it can fail later on a lock another process took meanwhile.
    fn write(&self) -> rusqlite::Result<Transaction<'_>> {
        Transaction::new_unchecked(&self.conn, TransactionBehavior::Immediate)
    }

    /// Start a session, optionally continuing `parent` (resumed or forked).
    pub fn create_session(
        &self,
        parent: Option<&str>,
        title: Option<&str>,
    ) -> anyhow::Result<String> {
        let now = crate::clock::now_rfc3339();
        let id = format!(
            "{}-{:06x}",
            now.replace(['-', ':'], "").trim_end_matches('Z'),
            rand::random::<u32>() & 0xff_ffff
        );
        let tx = self.write()?;
        tx.execute(
            "INSERT INTO sessions (id, parent_id, title, created_at, updated_at) VALUES (?1, ?2, ?3, ?4, ?4)",
            params![id, parent, title, now],
        )?;
        tx.commit()?;
        Ok(id)
    }

    /// Append and commit one message.
    pub fn append(&self, session_id: &str, message: &NewMessage<'_>) -> anyhow::Result<i64> {
        let now = crate::clock::now_rfc3339();
        let tool_calls = message.tool_calls.map(|calls| calls.to_string());
        let tx = self.write()?;
        tx.execute(
            "INSERT INTO messages (session_id, role, content, tool_calls, tool_call_id, name, created_at)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
            params![
                session_id,
                message.role,
                message.content,
                tool_calls,
                message.tool_call_id,
                message.name,
                now
            ],
        )
        .with_context(|| format!("cannot store a message of session {session_id}"))?;
        let id = tx.last_insert_rowid();
        tx.execute(
            "UPDATE sessions SET updated_at = ?2 WHERE id = ?1",
            params![session_id, now],
        )?;
        tx.commit()?;
        Ok(id)
    }

    pub fn list(&self, limit: usize) -> anyhow::Result<Vec<SessionSummary>> {
        let mut statement = self.conn.prepare(
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

    pub fn exists(&self, session_id: &str) -> anyhow::Result<bool> {
        Ok(self
            .conn
            .query_row("SELECT 1 FROM sessions WHERE id = ?1", [session_id], |_| {
                Ok(())
            })
            .optional()?
            .is_some())
    }

    pub fn messages(&self, session_id: &str) -> anyhow::Result<Vec<Message>> {
        let mut statement = self.conn.prepare(
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

    /// Messages whose content matches every word of `query`, newest first.
    /// The query is taken as plain words, never as FTS syntax. Newest first
    /// (rather than by relevance) lets FTS5 stop after `limit` matches
    /// instead of scoring every message that holds a common word.
    pub fn search(&self, query: &str, limit: usize) -> anyhow::Result<Vec<SearchHit>> {
        let terms: Vec<String> = query
            .split_whitespace()
            .map(|word| format!("\"{}\"", word.replace('"', "\"\"")))
            .collect();
        if terms.is_empty() {
            return Ok(Vec::new());
        }
        let mut statement = self.conn.prepare(
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

    /// Delete a session and its messages; returns whether it existed.
    pub fn delete(&self, session_id: &str) -> anyhow::Result<bool> {
        let tx = self.write()?;
        let deleted = tx.execute("DELETE FROM sessions WHERE id = ?1", [session_id])?;
        tx.commit()?;
        Ok(deleted > 0)
    }

    /// `PRAGMA integrity_check` (and the FTS index's own check).
    pub fn check_integrity(&self) -> anyhow::Result<()> {
        let result: String = self
            .conn
            .query_row("PRAGMA integrity_check", [], |row| row.get(0))?;
        anyhow::ensure!(result == "ok", "state.db integrity check: {result}");
        self.conn
            .execute(
                "INSERT INTO messages_fts(messages_fts) VALUES ('integrity-check')",
                [],
            )
            .context("the full-text index does not match the messages")?;
        Ok(())
    }
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
}
