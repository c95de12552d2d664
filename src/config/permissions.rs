//! What a user may publish and subscribe to: the `permissions` of a user in `natsup.yaml`,
//! rendered as-is into nats-server's `authorization.users[].permissions`, and NATS's subject
//! wildcard matching, which decides what those rules let through.

use serde::{Deserialize, Serialize};

/// NATS per-user permissions, rendered as-is into `authorization.users[].permissions`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Permissions {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub publish: Option<SubjectRule>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub subscribe: Option<SubjectRule>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SubjectRule {
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub allow: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub deny: Vec<String>,
}

impl SubjectRule {
    /// Whether the rule lets `subject` through: an empty allow-list allows everything, and
    /// a deny wins over an allow, as in nats-server.
    pub fn permits(&self, subject: &str) -> bool {
        let allowed =
            self.allow.is_empty() || self.allow.iter().any(|p| subject_matches(p, subject));
        allowed && !self.deny.iter().any(|p| subject_matches(p, subject))
    }
}

/// NATS wildcard matching: `*` is one token, `>` one or more trailing tokens.
pub fn subject_matches(pattern: &str, subject: &str) -> bool {
    let mut p = pattern.split('.');
    let mut s = subject.split('.');
    loop {
        match (p.next(), s.next()) {
            (Some(">"), Some(_)) => return true,
            (Some("*"), Some(_)) => {}
            (Some(a), Some(b)) if a == b => {}
            (None, None) => return true,
            _ => return false,
        }
    }
}

/// A NATS subject or wildcard pattern: dot-separated non-empty tokens with no whitespace;
/// `>` only as the last token.
pub(super) fn check_subject(subject: &str) -> Result<(), String> {
    let tokens: Vec<&str> = subject.split('.').collect();
    let ok = !subject.is_empty()
        && !subject.chars().any(|c| c.is_whitespace() || c.is_control())
        && tokens.iter().all(|t| !t.is_empty())
        && tokens
            .iter()
            .enumerate()
            .all(|(i, t)| *t != ">" || i == tokens.len() - 1);
    if ok {
        Ok(())
    } else {
        Err(format!(
            "{subject:?} is not a NATS subject (dot-separated tokens, no spaces, `>` only at the end)"
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wildcards() {
        assert!(subject_matches(">", "a.b"));
        assert!(subject_matches("$JS.API.>", "$JS.API.STREAM.CREATE.KV_x"));
        assert!(subject_matches("a.*.c", "a.b.c"));
        assert!(!subject_matches("a.*", "a.b.c"));
        assert!(!subject_matches("a.b", "a"));
    }
}
