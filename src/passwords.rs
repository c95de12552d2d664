//! Generated passwords and the bcrypt hashes that stand in for them in `nats-server.conf`.

use crate::secret::Secret;

pub const PASSWORD_LEN: usize = 32;
/// nats-server checks bcrypt at connect time; cost 11 costs ~0.1 s per connect there, and it
/// is the cost `nats server passwd` uses by default.
pub const BCRYPT_COST: u32 = 11;

const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";

/// 32 characters of [A-Za-z0-9] from the OS CSPRNG: ~190 bits, and nothing that needs quoting
/// in a URL, a dotenv file or a shell.
pub fn generate() -> Secret {
    let mut out = String::with_capacity(PASSWORD_LEN);
    let mut buf = [0u8; 64];
    while out.len() < PASSWORD_LEN {
        getrandom::fill(&mut buf).expect("the OS random number generator failed");
        // Rejection sampling: 248 = 4 * 62, so bytes below it map onto the alphabet uniformly.
        for b in buf.iter().filter(|&&b| b < 248) {
            if out.len() == PASSWORD_LEN {
                break;
            }
            out.push(ALPHABET[(*b % 62) as usize] as char);
        }
    }
    Secret::new(out)
}

pub fn hash(password: &Secret) -> String {
    bcrypt::hash(password.expose(), BCRYPT_COST)
        .expect("bcrypt accepts any password under 72 bytes")
}

/// Hashes several passwords on all cores: four cost-11 hashes are most of a fresh render.
fn hash_all(passwords: &[&Secret]) -> Vec<String> {
    std::thread::scope(|scope| {
        let handles: Vec<_> = passwords
            .iter()
            .map(|p| scope.spawn(move || hash(p)))
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().expect("bcrypt thread panicked"))
            .collect()
    })
}

/// `n` new passwords, each with its hash.
pub fn generate_hashed(n: usize) -> Vec<(Secret, String)> {
    let passwords: Vec<Secret> = (0..n).map(|_| generate()).collect();
    let hashes = hash_all(&passwords.iter().collect::<Vec<_>>());
    passwords.into_iter().zip(hashes).collect()
}

pub fn matches(password: &Secret, hash: &str) -> bool {
    bcrypt::verify(password.expose(), hash).unwrap_or(false)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passwords_are_32_alphanumerics_and_differ() {
        let a = generate();
        let b = generate();
        assert_eq!(a.expose().len(), PASSWORD_LEN);
        assert!(a.expose().chars().all(|c| c.is_ascii_alphanumeric()));
        assert_ne!(a, b);
    }

    #[test]
    fn hashes_are_quoted_form_nats_accepts() {
        let p = generate();
        let h = hash_all(&[&p]).pop().unwrap();
        // nats-server treats a password as bcrypt when it matches ^\$2[abxy]\$\d{2}\$
        // (`validBcryptPrefix` in its server/auth.go).
        assert!(h.starts_with("$2b$11$"), "{h}");
        assert!(matches(&p, &h));
        assert!(!matches(&generate(), &h));
    }
}
