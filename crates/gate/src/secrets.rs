//! Secrets at rest: OAuth tokens are sealed with ChaCha20-Poly1305 under a 32-byte key that is
//! created (mode 0600) in the data directory on first run, or taken from
//! `CODEX_GATE_ENCRYPTION_KEY`. A fingerprint of the key is stored with the data, so starting
//! with another key fails with a clear message instead of corrupting anything.

use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use base64::Engine;
use chacha20poly1305::aead::{Aead, KeyInit};
use chacha20poly1305::{ChaCha20Poly1305, Key, Nonce};
use sha2::{Digest, Sha256};
use std::path::Path;

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
    let bytes = if s.len() == 64 && s.chars().all(|c| c.is_ascii_hexdigit()) {
        (0..32).map(|i| u8::from_str_radix(&s[2 * i..2 * i + 2], 16).ok()).collect::<Option<Vec<u8>>>()?
    } else {
        STANDARD.decode(s).or_else(|_| URL_SAFE_NO_PAD.decode(s)).ok()?
    };
    bytes.try_into().ok()
}

impl Cipher {
    pub fn from_key(key: [u8; 32]) -> Cipher {
        let mut h = Sha256::new();
        h.update(b"codex-gate key fingerprint v1");
        h.update(key);
        let fingerprint = h.finalize().iter().take(8).map(|b| format!("{b:02x}")).collect();
        Cipher { aead: ChaCha20Poly1305::new(Key::from_slice(&key)), fingerprint }
    }

    /// The key from `CODEX_GATE_ENCRYPTION_KEY`, else from `key_file` (created if missing).
    pub fn load(key_file: &Path) -> Result<Cipher, SecretError> {
        if let Ok(v) = std::env::var("CODEX_GATE_ENCRYPTION_KEY") {
            return parse_key(&v).map(Cipher::from_key).ok_or(SecretError::BadEnvKey);
        }
        let path = key_file.display().to_string();
        match std::fs::read_to_string(key_file) {
            Ok(text) => parse_key(&text).map(Cipher::from_key).ok_or(SecretError::BadKeyFile { path }),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                let key: [u8; 32] = rand::random();
                match create_private(key_file, &STANDARD.encode(key)) {
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

    /// `base64(nonce ‖ ciphertext)`.
    pub fn seal(&self, plaintext: &str) -> String {
        let nonce: [u8; 12] = rand::random();
        let mut out = nonce.to_vec();
        // Encryption with a fresh nonce and an in-memory buffer cannot fail.
        out.extend(self.aead.encrypt(Nonce::from_slice(&nonce), plaintext.as_bytes()).unwrap_or_default());
        STANDARD.encode(out)
    }

    pub fn open(&self, sealed: &str) -> Result<String, SecretError> {
        let raw = STANDARD.decode(sealed).map_err(|_| SecretError::Open)?;
        if raw.len() < 12 + 16 {
            return Err(SecretError::Open);
        }
        let (nonce, ct) = raw.split_at(12);
        let pt = self.aead.decrypt(Nonce::from_slice(nonce), ct).map_err(|_| SecretError::Open)?;
        String::from_utf8(pt).map_err(|_| SecretError::Open)
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
        let sealed = a.seal("rt_secret-token");
        assert!(!sealed.contains("rt_secret"));
        assert_ne!(sealed, a.seal("rt_secret-token"), "fresh nonce each time");
        assert_eq!(a.open(&sealed).unwrap(), "rt_secret-token");
        let b = Cipher::from_key([8; 32]);
        assert!(b.open(&sealed).is_err());
        assert_ne!(a.fingerprint(), b.fingerprint());
        assert!(a.open("garbage").is_err());
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
