//! Secrets at rest: OAuth tokens are sealed with ChaCha20-Poly1305 under a 32-byte key that is
//! created (mode 0600) in the data directory on first run, or taken from
//! `CODEX_GATE_ENCRYPTION_KEY`. A fingerprint of the key is stored with the data, so starting
//! with another key fails with a clear message instead of corrupting anything.
//!
//! Each sealed value is bound to where it lives (AEAD associated data `table/row/column`), so a
//! value copied into another row or column does not open. Envelopes are versioned: `v2.` +
//! base64(nonce ‖ ciphertext) with associated data; unprefixed ones are the first format (no
//! associated data), still opened so older stores keep working, and resealed on load.
//! Key bytes are wiped from memory once the cipher holds them (the cipher wipes its copy on drop).

use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use base64::Engine;
use chacha20poly1305::aead::{Aead, KeyInit};
use chacha20poly1305::{ChaCha20Poly1305, Key, Nonce};
use sha2::{Digest, Sha256};
use std::path::Path;
use zeroize::Zeroize;

#[derive(Debug, thiserror::Error)]
pub enum SecretError {
    #[error("CODEX_GATE_ENCRYPTION_KEY must be 32 bytes as base64 or 64 hex digits")]
    BadEnvKey,
    #[error("the key file {path} is not a valid key (32 bytes, base64): delete it only if no data was sealed with it")]
    BadKeyFile { path: String },
    #[error("cannot read or create the key file {path}: {source}")]
    KeyFile { path: String, source: std::io::Error },
    #[error("a sealed secret could not be opened: it is corrupt or was sealed with another key")]
    Open,
}

/// The sealing key.
#[derive(Clone)]
pub struct Cipher {
    aead: ChaCha20Poly1305,
    fingerprint: String,
}

impl std::fmt::Debug for Cipher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Cipher(fingerprint {})", self.fingerprint)
    }
}

fn parse_key(s: &str) -> Option<[u8; 32]> {
    let s = s.trim();
    let mut bytes = if s.len() == 64 && s.chars().all(|c| c.is_ascii_hexdigit()) {
        (0..32).map(|i| u8::from_str_radix(&s[2 * i..2 * i + 2], 16).ok()).collect::<Option<Vec<u8>>>()?
    } else {
        STANDARD.decode(s).or_else(|_| URL_SAFE_NO_PAD.decode(s)).ok()?
    };
    let key = <[u8; 32]>::try_from(bytes.as_slice()).ok();
    bytes.zeroize();
    key
}

/// Where a sealed value lives: the associated data that binds it there.
pub fn place(table: &str, row: &str, column: &str) -> String {
    format!("{table}/{row}/{column}")
}

const V2: &str = "v2.";

impl Cipher {
    pub fn from_key(mut key: [u8; 32]) -> Cipher {
        let mut h = Sha256::new();
        h.update(b"codex-gate key fingerprint v1");
        h.update(key);
        let fingerprint = h.finalize().iter().take(8).map(|b| format!("{b:02x}")).collect();
        let cipher = Cipher { aead: ChaCha20Poly1305::new(Key::from_slice(&key)), fingerprint };
        key.zeroize();
        cipher
    }

    /// The key from `CODEX_GATE_ENCRYPTION_KEY`, else from `key_file` (created if missing).
    pub fn load(key_file: &Path) -> Result<Cipher, SecretError> {
        if let Ok(mut v) = std::env::var("CODEX_GATE_ENCRYPTION_KEY") {
            let c = parse_key(&v).map(Cipher::from_key).ok_or(SecretError::BadEnvKey);
            v.zeroize();
            return c;
        }
        let path = key_file.display().to_string();
        match std::fs::read_to_string(key_file) {
            Ok(mut text) => {
                let c = parse_key(&text).map(Cipher::from_key).ok_or(SecretError::BadKeyFile { path });
                text.zeroize();
                c
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                let key: [u8; 32] = rand::random();
                let mut encoded = STANDARD.encode(key);
                let created = create_private(key_file, &encoded);
                encoded.zeroize();
                match created {
                    Ok(()) => Ok(Cipher::from_key(key)),
                    // Another process created it first: use that key, never overwrite it.
                    Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Self::load(key_file),
                    Err(source) => Err(SecretError::KeyFile { path, source }),
                }
            }
            Err(source) => Err(SecretError::KeyFile { path, source }),
        }
    }

    /// A short, non-secret identifier of the key, stored with the data.
    pub fn fingerprint(&self) -> &str {
        &self.fingerprint
    }

    /// Seal `plaintext` for `place` (see [`place`]): `v2.` + base64(nonce ‖ ciphertext).
    pub fn seal(&self, plaintext: &str, place: &str) -> String {
        use chacha20poly1305::aead::Payload;
        let nonce: [u8; 12] = rand::random();
        let mut out = nonce.to_vec();
        let payload = Payload { msg: plaintext.as_bytes(), aad: place.as_bytes() };
        // Encryption with a fresh nonce and an in-memory buffer cannot fail.
        out.extend(self.aead.encrypt(Nonce::from_slice(&nonce), payload).unwrap_or_default());
        format!("{V2}{}", STANDARD.encode(out))
    }

    /// Open a value sealed for `place`. The answer's flag says it was in the first format (no
    /// associated data) and should be sealed again.
    pub fn open(&self, sealed: &str, place: &str) -> Result<(String, bool), SecretError> {
        use chacha20poly1305::aead::Payload;
        let (b64, aad, legacy) = match sealed.strip_prefix(V2) {
            Some(rest) => (rest, place.as_bytes(), false),
            None => (sealed, &b""[..], true),
        };
        let raw = STANDARD.decode(b64).map_err(|_| SecretError::Open)?;
        if raw.len() < 12 + 16 {
            return Err(SecretError::Open);
        }
        let (nonce, ct) = raw.split_at(12);
        let pt =
            self.aead.decrypt(Nonce::from_slice(nonce), Payload { msg: ct, aad }).map_err(|_| SecretError::Open)?;
        String::from_utf8(pt).map(|s| (s, legacy)).map_err(|_| SecretError::Open)
    }
}

/// Write `contents` to `path` readable by the owner only.
pub fn write_private(path: &Path, contents: &str) -> std::io::Result<()> {
    open_private(path, contents, false)
}

/// Like [`write_private`], but fails with `AlreadyExists` instead of replacing a file.
pub fn create_private(path: &Path, contents: &str) -> std::io::Result<()> {
    open_private(path, contents, true)
}

fn open_private(path: &Path, contents: &str, new: bool) -> std::io::Result<()> {
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir)?;
    }
    let mut opts = std::fs::OpenOptions::new();
    if new {
        opts.write(true).create_new(true);
    } else {
        opts.write(true).create(true).truncate(true);
    }
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        opts.mode(0o600);
    }
    use std::io::Write;
    opts.open(path)?.write_all(contents.as_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seal_open_round_trip_and_wrong_key() {
        let a = Cipher::from_key([7; 32]);
        let here = place("accounts", "acc-1", "refresh_token");
        let sealed = a.seal("rt_secret-token", &here);
        assert!(!sealed.contains("rt_secret") && sealed.starts_with("v2."));
        assert_ne!(sealed, a.seal("rt_secret-token", &here), "fresh nonce each time");
        assert_eq!(a.open(&sealed, &here).unwrap(), ("rt_secret-token".into(), false));
        let b = Cipher::from_key([8; 32]);
        assert!(b.open(&sealed, &here).is_err());
        assert_ne!(a.fingerprint(), b.fingerprint());
        assert!(a.open("garbage", &here).is_err());
    }

    #[test]
    fn a_sealed_value_opens_only_where_it_was_sealed() {
        let a = Cipher::from_key([7; 32]);
        let sealed = a.seal("rt_secret-token", &place("accounts", "acc-1", "refresh_token"));
        assert!(a.open(&sealed, &place("accounts", "acc-2", "refresh_token")).is_err(), "another row");
        assert!(a.open(&sealed, &place("accounts", "acc-1", "access_token")).is_err(), "another column");
    }

    #[test]
    fn first_format_values_still_open_and_say_so() {
        use chacha20poly1305::aead::Aead;
        let a = Cipher::from_key([7; 32]);
        let nonce = [3u8; 12];
        let mut raw = nonce.to_vec();
        raw.extend(a.aead.encrypt(Nonce::from_slice(&nonce), &b"old-token"[..]).unwrap());
        let v1 = STANDARD.encode(raw);
        assert_eq!(a.open(&v1, "accounts/x/id_token").unwrap(), ("old-token".into(), true));
    }

    #[test]
    fn key_file_is_created_private_and_reused() {
        let dir = std::env::temp_dir().join(format!("cg-key-{:x}", rand::random::<u64>()));
        let path = dir.join("encryption.key");
        let a = Cipher::load(&path).unwrap();
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            assert_eq!(std::fs::metadata(&path).unwrap().permissions().mode() & 0o777, 0o600);
        }
        let b = Cipher::load(&path).unwrap();
        assert_eq!(a.fingerprint(), b.fingerprint());
        assert_eq!(parse_key(&"ab".repeat(32)).unwrap(), [0xab; 32]);
        std::fs::remove_dir_all(dir).unwrap();
    }
}
