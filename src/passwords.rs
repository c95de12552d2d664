//! Generated passwords and the bcrypt hashes that stand in for them in `nats-server.conf`.

use crate::secret::Secret;

pub const PASSWORD_LEN: usize = 32;

const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";

/// 32 characters of [A-Za-z0-9] from the OS CSPRNG: ~190 bits, and nothing that needs quoting
/// in a URL, a dotenv file or a shell.
pub fn generate() -> Secret {
    Secret::new(random_alphanumeric(PASSWORD_LEN))
}

/// `len` characters of [A-Za-z0-9] from the OS CSPRNG (also a new deployment's `id`).
pub fn random_alphanumeric(len: usize) -> String {
    let mut out = String::with_capacity(len);
    let mut buf = [0u8; 64];
    while out.len() < len {
        getrandom::fill(&mut buf).expect("the OS random number generator failed");
        // Rejection sampling: 248 = 4 * 62, so bytes below it map onto the alphabet uniformly.
        for b in buf.iter().filter(|&&b| b < 248) {
            if out.len() == len {
                break;
            }
            out.push(ALPHABET[(*b % 62) as usize] as char);
        }
    }
    out
}

/// A bcrypt hash at `cost` (the config's `auth.bcrypt_cost`, checked at load to be 4..=31).
pub fn hash(password: &Secret, cost: u32) -> String {
    bcrypt::hash(password.expose(), cost).expect("bcrypt accepts any password under 72 bytes")
}

/// The cost a bcrypt hash was made at: `$2b$04$...` is 4.
pub fn cost_of(hash: &str) -> Option<u32> {
    hash.split('$').nth(2)?.parse().ok()
}

/// Hashes several passwords on all cores (at a high cost, a few hashes are most of a render).
pub fn hash_all(passwords: &[&Secret], cost: u32) -> Vec<String> {
    std::thread::scope(|scope| {
        let handles: Vec<_> = passwords
            .iter()
            .map(|p| scope.spawn(move || hash(p, cost)))
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().expect("bcrypt thread panicked"))
            .collect()
    })
}

/// `n` new passwords, each with its hash at `cost`.
pub fn generate_hashed(n: usize, cost: u32) -> Vec<(Secret, String)> {
    let passwords: Vec<Secret> = (0..n).map(|_| generate()).collect();
    let hashes = hash_all(&passwords.iter().collect::<Vec<_>>(), cost);
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
        let h = hash_all(&[&p], 4).pop().unwrap();
        // nats-server treats a password as bcrypt when it matches ^\$2[abxy]\$\d{2}\$
        // (`validBcryptPrefix` in its server/auth.go): the cost always has two digits.
        assert!(h.starts_with("$2b$04$"), "{h}");
        assert_eq!(cost_of(&h), Some(4));
        assert!(matches(&p, &h));
        assert!(!matches(&generate(), &h));
    }
}
