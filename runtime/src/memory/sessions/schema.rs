//! The tables of `state.db` (sessions, messages and their full-text index,
//! the gateway's stored responses)
//! and the migrations that bring an older database up to date, counted in
//! `PRAGMA user_version`.

use anyhow::Context;
use rusqlite::{Connection, TransactionBehavior};

/// Migrations, in order; `user_version` is the number applied.
pub(super) const MIGRATIONS: &[&str] = &[
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
    // 3: search the conversation only. The system prompt (the skills index,
    // memory, AGENTS.md) is not something anyone said, and matching it made
    // every session a hit for the words in it. The index now reads a view
    // without system messages, so a rebuild (and FTS5's integrity check)
    // sees exactly what the triggers index.
    "DROP TRIGGER messages_fts_insert;
     DROP TRIGGER messages_fts_delete;
     DROP TRIGGER messages_fts_update;
     DROP TABLE messages_fts;
     CREATE VIEW conversation_messages AS
         SELECT id, content FROM messages WHERE role <> 'system';
     CREATE VIRTUAL TABLE messages_fts USING fts5(
         content, content='conversation_messages', content_rowid='id', tokenize='unicode61'
     );
     CREATE TRIGGER messages_fts_insert AFTER INSERT ON messages
     WHEN new.role <> 'system' BEGIN
         INSERT INTO messages_fts(rowid, content) VALUES (new.id, new.content);
     END;
     CREATE TRIGGER messages_fts_delete AFTER DELETE ON messages
     WHEN old.role <> 'system' BEGIN
         INSERT INTO messages_fts(messages_fts, rowid, content) VALUES ('delete', old.id, old.content);
     END;
     CREATE TRIGGER messages_fts_update_old AFTER UPDATE OF content, role ON messages
     WHEN old.role <> 'system' BEGIN
         INSERT INTO messages_fts(messages_fts, rowid, content) VALUES ('delete', old.id, old.content);
     END;
     CREATE TRIGGER messages_fts_update_new AFTER UPDATE OF content, role ON messages
     WHEN new.role <> 'system' BEGIN
         INSERT INTO messages_fts(rowid, content) VALUES (new.id, new.content);
     END;
     INSERT INTO messages_fts(messages_fts) VALUES ('rebuild');",
    // 4: responses of the gateway's Responses API, kept to be read back and
    // continued (`previous_response_id`). Each belongs to the session its
    // turn was stored in and goes with it.
    "CREATE TABLE responses (
         id TEXT PRIMARY KEY,
         session_id TEXT NOT NULL REFERENCES sessions(id) ON DELETE CASCADE,
         created_at TEXT NOT NULL,
         body TEXT NOT NULL
     );
     CREATE INDEX responses_by_session ON responses(session_id);",
];

pub(super) fn schema_version(conn: &Connection) -> anyhow::Result<usize> {
    Ok(conn.pragma_query_value(None, "user_version", |row| row.get::<_, i64>(0))? as usize)
}

/// Apply the migrations still missing. Several processes may open a fresh
/// database at once: each takes the write lock, then reads the version again
/// and applies only what no other process applied while it waited.
pub(super) fn migrate(conn: &mut Connection) -> anyhow::Result<()> {
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

fn check_version(version: usize) -> anyhow::Result<usize> {
    anyhow::ensure!(
        version <= MIGRATIONS.len(),
        "state.db has schema version {version}, newer than this talaria understands ({}); upgrade talaria",
        MIGRATIONS.len()
    );
    Ok(version)
}

#[cfg(test)]
mod tests {
    use rusqlite::Connection;

    use super::MIGRATIONS;
    use crate::memory::sessions::SessionStore;

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

    /// A database as schema version 2 left it: the system prompt indexed
    /// with the conversation.
    #[test]
    fn the_system_prompt_leaves_the_index_of_an_older_database() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state.db");
        {
            let conn = Connection::open(&path).unwrap();
            conn.execute_batch(MIGRATIONS[0]).unwrap();
            conn.execute_batch(MIGRATIONS[1]).unwrap();
            conn.pragma_update(None, "user_version", 2).unwrap();
            conn.execute(
                "INSERT INTO sessions (id, created_at, updated_at) VALUES ('old', '2026-01-01T00:00:00Z', '2026-01-01T00:00:00Z')",
                [],
            )
            .unwrap();
            for (role, content) in [
                ("system", "You may use the skill quokka-tools"),
                ("user", "what eats a quokka"),
                ("assistant", "mostly leaves"),
            ] {
                conn.execute(
                    "INSERT INTO messages (session_id, role, content, created_at) VALUES ('old', ?1, ?2, '2026-01-01T00:00:00Z')",
                    [role, content],
                )
                .unwrap();
            }
            let indexed: i64 = conn
                .query_row(
                    "SELECT count(*) FROM messages_fts WHERE messages_fts MATCH 'quokka'",
                    [],
                    |row| row.get(0),
                )
                .unwrap();
            assert_eq!(indexed, 2, "version 2 indexed the system prompt");
        }
        let store = SessionStore::open(&path).unwrap();
        assert_eq!(store.schema_version().unwrap(), MIGRATIONS.len());
        let hits = store.search("quokka", 5).unwrap();
        assert_eq!(hits.len(), 1, "{hits:?}");
        assert_eq!(hits[0].role, "user");
        assert!(store.search("tools", 5).unwrap().is_empty());
        assert_eq!(store.search("leaves", 5).unwrap().len(), 1);
        store.check_integrity().unwrap();
        // Deleting a session removes its messages, system prompt included,
        // and leaves a consistent index.
        assert!(store.delete("old").unwrap());
        assert!(store.search("quokka", 5).unwrap().is_empty());
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
