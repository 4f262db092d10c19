//! What the agent remembers: the bounded notes in `memories/` and (with the
//! agent loop) the session store.

pub mod notes;

pub use notes::{Change, NoteError, NoteLimits, Notes, Snapshot, Target};
