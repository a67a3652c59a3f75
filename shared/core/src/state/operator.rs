//! Operator actions as the records keep them: who asked, why, and what came of it.
//!
//! An action reaches the core as a queue message like any other input. The actor is the SQS
//! sender of that message (never a field of its body), and the request id is what the command
//! line waits for: the note with that id appears in the record once the action is decided,
//! applied or refused with the reason.

use serde::{Deserialize, Serialize};

use crate::ids::Millis;

/// Notes kept per record: the most recent, oldest dropped first. Enough for `show` to tell an
/// incident's story without a log search; small next to the record's other fields.
pub const OPERATOR_NOTES: usize = 8;

/// Who asked for an operator action, and why.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Request {
    /// Chosen by the command line; the message's dedupe key and what it waits for.
    pub id: String,
    /// The SQS `SenderId` of the message (an IAM principal id, e.g. `AROA…:alice`).
    pub actor: String,
    pub reason: String,
}

/// One operator action a record has seen.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OperatorNote {
    pub request: String,
    /// `retry`, `abandon`, `reset-breaker`.
    pub action: String,
    pub actor: String,
    pub reason: String,
    pub at: Millis,
    pub outcome: NoteOutcome,
}

/// What an operator action did.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum NoteOutcome {
    Applied,
    /// Not applied, and why (not held, already finishing).
    Refused(String),
}

/// Appends `note`, keeping the last [`OPERATOR_NOTES`].
pub fn push_note(notes: &mut Vec<OperatorNote>, note: OperatorNote) {
    notes.push(note);
    if notes.len() > OPERATOR_NOTES {
        let excess = notes.len() - OPERATOR_NOTES;
        notes.drain(..excess);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn note(n: u64) -> OperatorNote {
        OperatorNote {
            request: format!("op-{n}"),
            action: "retry".into(),
            actor: "AIDA:alice".into(),
            reason: "test".into(),
            at: Millis(n),
            outcome: NoteOutcome::Applied,
        }
    }

    #[test]
    fn push_note_keeps_the_most_recent_notes_only() {
        let mut notes = Vec::new();
        for n in 0..(OPERATOR_NOTES as u64 + 3) {
            push_note(&mut notes, note(n));
        }
        assert_eq!(notes.len(), OPERATOR_NOTES);
        assert_eq!(notes.first().map(|n| n.at), Some(Millis(3)));
        assert_eq!(
            notes.last().map(|n| n.at),
            Some(Millis(OPERATOR_NOTES as u64 + 2))
        );
    }
}
