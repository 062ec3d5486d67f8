//! The master key, sealed secret keys, generated access keys, and tokens.

use std::path::Path;

use crate::private_files::{create_private_dir, write_private};

use aes_gcm::aead::rand_core::RngCore;
use aes_gcm::aead::{Aead, AeadCore, KeyInit, OsRng};
use aes_gcm::{Aes256Gcm, Key, Nonce};
use hmac::Mac;
use sha2::Sha256;

/// The key that seals secret keys at rest and signs tokens. Its `Debug` never shows it.
#[derive(Clone)]
pub struct MasterKey([u8; 32]);

impl std::fmt::Debug for MasterKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("MasterKey(***)")
    }
}

#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    #[error("the master key must be 64 hexadecimal characters")]
    BadMasterKey,
    #[error("cannot read or write the master key file {path}: {source}")]
    File { path: String, source: std::io::Error },
    #[error("a sealed secret cannot be opened with this master key")]
    Unseal,
}

pub(crate) fn random_bytes<const N: usize>() -> [u8; N] {
    let mut b = [0u8; N];
    OsRng.fill_bytes(&mut b);
    b
}

impl MasterKey {
    pub fn from_hex(s: &str) -> Result<Self, KeyError> {
        let bytes = hex::decode(s.trim()).map_err(|_| KeyError::BadMasterKey)?;
        bytes.try_into().map(MasterKey).map_err(|_| KeyError::BadMasterKey)
    }

    /// Reads the key file, or creates it (mode 0600) with a new random key.
    pub fn load_or_create(path: &Path) -> Result<Self, KeyError> {
        match Self::load(path)? {
            Some(key) => Ok(key),
            None => Self::create(path),
        }
    }

    /// Reads the key file; `None` when there is none.
    pub fn load(path: &Path) -> Result<Option<Self>, KeyError> {
        match std::fs::read_to_string(path) {
            Ok(s) => Self::from_hex(&s).map(Some),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(source) => Err(KeyError::File { path: path.display().to_string(), source }),
        }
    }

    /// Creates the key file (mode 0600, its folder 0700 when created) with a new random key.
    pub fn create(path: &Path) -> Result<Self, KeyError> {
        let file_err = |source| KeyError::File { path: path.display().to_string(), source };
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            create_private_dir(dir).map_err(file_err)?;
        }
        let key = MasterKey(random_bytes());
        write_private(path, &hex::encode(key.0)).map_err(file_err)?;
        Ok(key)
    }

    /// A value that identifies this key without revealing it (an HMAC of a fixed label),
    /// stored with the database so that a process given another key can be refused at once.
    pub fn check_value(&self) -> String {
        <hmac::Hmac<Sha256> as hmac::KeyInit>::new_from_slice(&self.0)
            .map(|mut mac| {
                mac.update(b"kafka-tasks master key check v1");
                hex::encode(mac.finalize().into_bytes())
            })
            .unwrap_or_default()
    }

    /// AES-256-GCM: a random 12-byte nonce followed by the ciphertext and tag.
    pub fn seal(&self, plaintext: &str) -> Vec<u8> {
        let cipher = Aes256Gcm::new(Key::<Aes256Gcm>::from_slice(&self.0));
        let nonce = Aes256Gcm::generate_nonce(&mut OsRng);
        let mut out = nonce.to_vec();
        // Encryption into a Vec cannot fail for inputs of this size.
        out.extend(cipher.encrypt(&nonce, plaintext.as_bytes()).unwrap_or_default());
        out
    }

    pub fn open(&self, sealed: &[u8]) -> Result<String, KeyError> {
        if sealed.len() < 12 {
            return Err(KeyError::Unseal);
        }
        let cipher = Aes256Gcm::new(Key::<Aes256Gcm>::from_slice(&self.0));
        let (nonce, ct) = sealed.split_at(12);
        let plain = cipher.decrypt(Nonce::from_slice(nonce), ct).map_err(|_| KeyError::Unseal)?;
        String::from_utf8(plain).map_err(|_| KeyError::Unseal)
    }

    /// A key of its own for tokens, derived so that a token never doubles as a sealing key.
    /// (HMAC takes keys of any length: `None` does not happen.)
    fn token_mac(&self) -> Option<hmac::Hmac<Sha256>> {
        let mut derive = <hmac::Hmac<Sha256> as hmac::KeyInit>::new_from_slice(&self.0).ok()?;
        derive.update(b"kafka-tasks token key v1");
        let k = derive.finalize().into_bytes();
        <hmac::Hmac<Sha256> as hmac::KeyInit>::new_from_slice(&k).ok()
    }

    /// The key that seals the event ids one project's streams show (see
    /// [`crate::http::events::EventIds`]): its own per project, derived so that it doubles as
    /// nothing else.
    pub fn event_id_key(&self, project: &str) -> [u8; 16] {
        let mut key = [0u8; 16];
        if let Ok(mut mac) = <hmac::Hmac<Sha256> as hmac::KeyInit>::new_from_slice(&self.0) {
            mac.update(b"kafka-tasks event ids v1\0");
            mac.update(project.as_bytes());
            key.copy_from_slice(&mac.finalize().into_bytes()[..16]);
        }
        key
    }

    /// A token for `access_key` valid until `expires_at` (epoch ms).
    pub fn mint_token(&self, claims: &TokenClaims) -> String {
        let payload = hex::encode(serde_json::to_vec(claims).unwrap_or_default());
        let signature = self
            .token_mac()
            .map(|mut mac| {
                mac.update(payload.as_bytes());
                hex::encode(mac.finalize().into_bytes())
            })
            .unwrap_or_default();
        format!("KT1.{payload}.{signature}")
    }

    /// The claims of a token this key minted; `None` for anything else.
    pub fn read_token(&self, token: &str) -> Option<TokenClaims> {
        let mut parts = token.trim().split('.');
        let (Some("KT1"), Some(payload), Some(sig), None) = (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return None;
        };
        let given = hex::decode(sig).ok()?;
        let mut mac = self.token_mac()?;
        mac.update(payload.as_bytes());
        mac.verify_slice(&given).ok()?;
        serde_json::from_slice(&hex::decode(payload).ok()?).ok()
    }
}

#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct TokenClaims {
    pub ak: String,
    pub project_id: String,
    pub issued_at: i64,
    pub expires_at: i64,
}

const ALPHANUMERIC: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";

fn random_string(len: usize, alphabet: &[u8]) -> String {
    // Rejection sampling keeps every character equally likely.
    let limit = 256 - 256 % alphabet.len();
    let mut out = String::with_capacity(len);
    while out.len() < len {
        for b in random_bytes::<64>() {
            if (b as usize) < limit && out.len() < len {
                out.push(alphabet[b as usize % alphabet.len()] as char);
            }
        }
    }
    out
}

/// A 20-character access key id, uppercase letters and digits, like Huawei Cloud's.
pub fn new_access_key() -> String {
    random_string(20, &ALPHANUMERIC[..26].iter().chain(&ALPHANUMERIC[52..]).copied().collect::<Vec<_>>())
}

/// A 40-character secret key.
pub fn new_secret_key() -> String {
    random_string(40, ALPHANUMERIC)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sealing_round_trips_and_needs_the_same_key() {
        let k = MasterKey(random_bytes());
        let sealed = k.seal("secret");
        assert!(!sealed.windows(6).any(|w| w == b"secret"));
        assert_eq!(k.open(&sealed).ok().as_deref(), Some("secret"));
        assert!(MasterKey(random_bytes()).open(&sealed).is_err());
        assert!(k.open(&sealed[..5]).is_err());
    }

    #[test]
    fn tokens_verify_only_unaltered() {
        let k = MasterKey(random_bytes());
        let c = TokenClaims { ak: "AK".into(), project_id: "p".into(), issued_at: 1, expires_at: 2 };
        let t = k.mint_token(&c);
        assert_eq!(k.read_token(&t), Some(c));
        let mut forged = t.clone();
        forged.pop();
        forged.push(if t.ends_with('0') { '1' } else { '0' });
        assert_eq!(k.read_token(&forged), None);
        assert_eq!(MasterKey(random_bytes()).read_token(&t), None);
        assert_eq!(k.read_token("garbage"), None);
    }

    #[test]
    fn generated_keys_have_their_formats() {
        let ak = new_access_key();
        assert_eq!(ak.len(), 20);
        assert!(ak.bytes().all(|b| b.is_ascii_uppercase() || b.is_ascii_digit()));
        assert_eq!(new_secret_key().len(), 40);
        assert_ne!(new_secret_key(), new_secret_key());
        assert!(MasterKey::from_hex("00").is_err());
        assert!(MasterKey::from_hex(&"ab".repeat(32)).is_ok());
        assert_eq!(format!("{:?}", MasterKey(random_bytes())), "MasterKey(***)");
    }

    #[test]
    fn check_values_tell_keys_apart_without_showing_them() {
        let k = MasterKey(random_bytes());
        assert_eq!(k.check_value(), k.check_value());
        assert_eq!(k.check_value().len(), 64);
        assert_ne!(k.check_value(), MasterKey(random_bytes()).check_value());
        assert_ne!(k.check_value(), hex::encode(k.0));
    }
}
