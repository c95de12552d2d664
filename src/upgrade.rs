//! A change of `image`, as nats-server sees it: the version an image's tag names, the words
//! `plan` shows for the change, and whether going back that far is safe for the JetStream
//! data on disk. Pure: image names in, words and verdicts out.

use std::fmt;

/// A nats-server version as an image tag names it: `2.10.26`, or `2.10` for a tag that
/// follows a minor line (`nats:2.10-alpine`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Version {
    pub major: u32,
    pub minor: u32,
    pub patch: Option<u32>,
}

impl fmt::Display for Version {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.patch {
            Some(p) => write!(f, "{}.{}.{p}", self.major, self.minor),
            None => write!(f, "{}.{}", self.major, self.minor),
        }
    }
}

impl Version {
    /// `2.10.26`, `v2.11.0-RC.1` (the pre-release is dropped), `2.10`.
    pub fn parse(text: &str) -> Option<Version> {
        let text = text.strip_prefix('v').unwrap_or(text);
        let mut parts = text.split(|c: char| !c.is_ascii_digit());
        let major = parts.next()?.parse().ok()?;
        // The separators must be dots: `2-10` is no version.
        let dots: Vec<char> = text
            .chars()
            .filter(|c| !c.is_ascii_digit())
            .take(2)
            .collect();
        if dots.first() != Some(&'.') {
            return None;
        }
        let minor = parts.next()?.parse().ok()?;
        let patch = if dots.get(1) == Some(&'.') {
            parts.next().and_then(|p| p.parse().ok())
        } else {
            None
        };
        Some(Version {
            major,
            minor,
            patch,
        })
    }

    /// Whether a server that reports `served` runs this version (a tag of a minor line
    /// matches every patch of it).
    pub fn matches(&self, served: &Version) -> bool {
        self.major == served.major
            && self.minor == served.minor
            && self.patch.is_none_or(|p| served.patch == Some(p))
    }
}

/// The nats-server version an image's tag names, if it names one: `nats:2.10.26`,
/// `registry:5000/nats:2.11.11-alpine`, `nats:2.10`. `nats:latest`, an image without a tag
/// or pinned by digest only names none.
pub fn version_of(image: &str) -> Option<Version> {
    let image = image.split('@').next().unwrap_or(image);
    let name_end = image.rfind('/').map_or(0, |i| i + 1);
    let tag = image[name_end..].split_once(':')?.1;
    Version::parse(tag)
}

/// How `plan` names a change of image: `nats-server 2.10.26 → 2.11.11` when both tags name a
/// version, `image a → b` otherwise.
pub fn describe(old: &str, new: &str) -> String {
    match (version_of(old), version_of(new)) {
        (Some(a), Some(b)) => format!("nats-server {a} → {b} (image {old} → {new})"),
        _ => format!("image {old} → {new}"),
    }
}

/// What a change of image means for the JetStream data the old version wrote.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// An upgrade, a patch downgrade, or a change natsup cannot read a version from.
    Safe,
    /// A downgrade of a minor (or major) version: data written with features of the newer
    /// version may not load. natsup goes on and says so.
    Warn(String),
    /// A downgrade across a change of JetStream's storage format: the older server cannot read
    /// the data on disk. natsup refuses it.
    Refuse(String),
}

/// nats-server 2.10.0 changed the on-disk format of JetStream's stores; of the older servers
/// only 2.9.22 and later read it (its release notes, "Downgrade compatibility note": "if a
/// downgrade from 2.10.x occurs, the old version will not understand the format on disk with
/// the exception 2.9.22 and any subsequent patch releases for 2.9").
const FORMAT_2_10: Version = Version {
    major: 2,
    minor: 10,
    patch: Some(0),
};
const READS_2_10: Version = Version {
    major: 2,
    minor: 9,
    patch: Some(22),
};

/// Whether going from `old` to `new` keeps the data readable. A downgrade across the 2.10
/// storage format (to a server older than 2.9.22) is refused; any other downgrade of the minor
/// version is warned about; a patch downgrade is safe. A tag that names no version is not
/// judged.
pub fn judge(old: &str, new: &str) -> Verdict {
    let (Some(from), Some(to)) = (version_of(old), version_of(new)) else {
        return Verdict::Safe;
    };
    let line = |v: Version| (v.major, v.minor);
    if line(to) >= line(from) {
        return Verdict::Safe;
    }
    // A minor line (`2.9`) is taken at its oldest patch: it may be any of them.
    let oldest = |v: Version| Version {
        patch: Some(v.patch.unwrap_or(0)),
        ..v
    };
    if oldest(from) >= FORMAT_2_10 && oldest(to) < READS_2_10 {
        return Verdict::Refuse(format!(
            "nats-server {from} → {to} is a downgrade across JetStream's storage format: since \
             2.10.0 streams are stored in a format that only 2.9.22 and later read, so nats-server \
             {to} would not load the data on disk"
        ));
    }
    Verdict::Warn(format!(
        "nats-server {from} → {to} is a downgrade of the minor version: streams or consumers \
         that use what {from} added may not load on {to}; nats-server supports upgrades, and a \
         downgrade only back to the version a deployment ran before"
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_from_image_tags() {
        let v = |s| version_of(s).map(|v| v.to_string());
        assert_eq!(v("nats:2.10.26").as_deref(), Some("2.10.26"));
        assert_eq!(v("natsup-test/nats:2.11.11").as_deref(), Some("2.11.11"));
        assert_eq!(
            v("reg.example:5000/nats:2.11.11-alpine").as_deref(),
            Some("2.11.11")
        );
        assert_eq!(v("nats:2.10-alpine").as_deref(), Some("2.10"));
        assert_eq!(v("nats:v2.12.0").as_deref(), Some("2.12.0"));
        assert_eq!(v("nats:2.10.26@sha256:abc").as_deref(), Some("2.10.26"));
        for none in [
            "nats",
            "nats:latest",
            "nats:alpine",
            "reg.example:5000/nats",
            "nats@sha256:0123",
            "nats:2",
            "nats:2-10",
        ] {
            assert_eq!(v(none), None, "{none}");
        }
    }

    #[test]
    fn plan_names_the_version_change() {
        assert_eq!(
            describe("natsup-test/nats:2.10.26", "natsup-test/nats:2.11.11"),
            "nats-server 2.10.26 → 2.11.11 (image natsup-test/nats:2.10.26 → natsup-test/nats:2.11.11)"
        );
        assert_eq!(
            describe("nats:latest", "nats:2.11.11"),
            "image nats:latest → nats:2.11.11"
        );
        assert_eq!(describe("a/nats", "b/nats"), "image a/nats → b/nats");
    }

    #[test]
    fn the_downgrade_rule() {
        assert_eq!(judge("nats:2.10.26", "nats:2.11.11"), Verdict::Safe);
        assert_eq!(judge("nats:2.11.11", "nats:2.11.3"), Verdict::Safe);
        assert_eq!(judge("nats:2.9.25", "nats:2.10.26"), Verdict::Safe);
        assert_eq!(judge("nats:latest", "nats:2.9.1"), Verdict::Safe);
        assert!(matches!(
            judge("nats:2.11.11", "nats:2.10.26"),
            Verdict::Warn(w) if w.contains("2.11.11 → 2.10.26")
        ));
        // Back to a 2.9 that reads the 2.10 format: a warning, not a refusal.
        assert!(matches!(
            judge("nats:2.10.26", "nats:2.9.22"),
            Verdict::Warn(_)
        ));
        for (from, to) in [
            ("nats:2.10.26", "nats:2.9.21"),
            ("nats:2.11.11", "nats:2.9"),
            ("nats:2.10", "nats:2.8.4"),
            ("nats:3.0.0", "nats:2.9.0"),
        ] {
            assert!(
                matches!(judge(from, to), Verdict::Refuse(r) if r.contains("storage format")),
                "{from} → {to}"
            );
        }
    }

    #[test]
    fn a_minor_tag_matches_every_patch() {
        let served = Version::parse("2.10.26").unwrap();
        assert!(version_of("nats:2.10").unwrap().matches(&served));
        assert!(version_of("nats:2.10.26").unwrap().matches(&served));
        assert!(!version_of("nats:2.10.25").unwrap().matches(&served));
        assert!(!version_of("nats:2.11").unwrap().matches(&served));
    }
}
