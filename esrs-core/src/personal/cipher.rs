//! The AEAD behind personal data: XChaCha20-Poly1305 data keys, the associated data that
//! binds a ciphertext to its place, and the master key that wraps data keys at rest.
//!
//! XChaCha20-Poly1305 is chosen over AES-256-GCM because its 192-bit nonce can be drawn at
//! random for every field value, from any number of processes, with no counter to
//! coordinate: the chance of a repeated nonce stays negligible for far more messages under
//! one key than any subject will ever have. AES-GCM's 96-bit random nonce reaches the
//! recommended bound (2^32 messages per key) at volumes a busy key could see, and is slow
//! without AES instructions; ChaCha20 is fast in software everywhere.

use chacha20poly1305::aead::{Aead, AeadCore, AeadInPlace, KeyInit, OsRng, Payload};
use chacha20poly1305::{XChaCha20Poly1305, XNonce};
use zeroize::Zeroize;

/// Length of a key in bytes (256 bits).
pub(crate) const KEY_LEN: usize = 32;
/// Length of a nonce in bytes (192 bits).
pub(crate) const NONCE_LEN: usize = 24;

/// A subject's data key: the 256-bit XChaCha20-Poly1305 key that encrypts every personal
/// field of that subject. Zeroed in memory when dropped; never printed.
#[derive(Clone)]
pub struct DataKey([u8; KEY_LEN]);

impl DataKey {
    /// A new random key from the operating system's generator.
    pub fn generate() -> Self {
        let key = XChaCha20Poly1305::generate_key(&mut OsRng);
        let mut bytes = [0u8; KEY_LEN];
        bytes.copy_from_slice(&key);
        Self(bytes)
    }

    /// A key from its bytes, for example as a key store unwrapped it.
    pub fn from_bytes(bytes: [u8; KEY_LEN]) -> Self {
        Self(bytes)
    }

    /// The key's bytes, for a key store to wrap and keep.
    pub fn as_bytes(&self) -> &[u8; KEY_LEN] {
        &self.0
    }

    fn cipher(&self) -> XChaCha20Poly1305 {
        XChaCha20Poly1305::new(chacha20poly1305::Key::from_slice(&self.0))
    }

    /// Encrypts `plaintext` bound to `aad` under a random nonce: returns the nonce and the
    /// ciphertext (with its 16-byte tag).
    pub(crate) fn seal(&self, aad: &[u8], plaintext: &[u8]) -> ([u8; NONCE_LEN], Vec<u8>) {
        let generated = XChaCha20Poly1305::generate_nonce(&mut OsRng);
        let mut nonce = [0u8; NONCE_LEN];
        nonce.copy_from_slice(&generated);
        self.seal_with(nonce, aad, plaintext)
    }

    /// Encrypts under a given nonce. Only the test harness derives nonces (from the key,
    /// the associated data and the plaintext), so that its encodings are reproducible.
    pub(crate) fn seal_with(
        &self,
        nonce: [u8; NONCE_LEN],
        aad: &[u8],
        plaintext: &[u8],
    ) -> ([u8; NONCE_LEN], Vec<u8>) {
        // Encryption with a valid key and an in-memory buffer cannot fail.
        let sealed = self
            .cipher()
            .encrypt(
                XNonce::from_slice(&nonce),
                Payload {
                    msg: plaintext,
                    aad,
                },
            )
            .unwrap_or_default();
        (nonce, sealed)
    }

    /// Decrypts and authenticates `buffer` (the ciphertext with its tag) in place, leaving
    /// the plaintext; `false`, and the buffer's content unspecified, when it does not
    /// authenticate.
    pub(crate) fn open_in_place(
        &self,
        nonce: &[u8; NONCE_LEN],
        aad: &[u8],
        buffer: &mut Vec<u8>,
    ) -> bool {
        self.cipher()
            .decrypt_in_place(XNonce::from_slice(nonce), aad, buffer)
            .is_ok()
    }

    /// Decrypts and authenticates; `None` when the ciphertext, the nonce or the associated
    /// data differ from what was sealed, or the key is another one.
    pub(crate) fn open(&self, nonce: &[u8], aad: &[u8], ciphertext: &[u8]) -> Option<Vec<u8>> {
        if nonce.len() != NONCE_LEN {
            return None;
        }
        self.cipher()
            .decrypt(
                XNonce::from_slice(nonce),
                Payload {
                    msg: ciphertext,
                    aad,
                },
            )
            .ok()
    }
}

impl Drop for DataKey {
    fn drop(&mut self) {
        self.0.zeroize();
    }
}

impl std::fmt::Debug for DataKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("DataKey(..)")
    }
}

/// The associated data of a personal field's ciphertext: the stream, the event's stored
/// name, the field and the subject, each length-prefixed so that no two places share it.
pub(crate) fn field_aad(stream: &str, event: &str, field: &str, subject: &str) -> Vec<u8> {
    let mut aad = Vec::with_capacity(24 + stream.len() + event.len() + field.len() + subject.len());
    aad.extend_from_slice(b"esrs.personal.v1");
    for part in [stream, event, field, subject] {
        aad.extend_from_slice(&u32::try_from(part.len()).unwrap_or(u32::MAX).to_le_bytes());
        aad.extend_from_slice(part.as_bytes());
    }
    aad
}

/// The key an application supplies to wrap the data keys a key store keeps at rest
/// (envelope encryption): a dump of the key table alone reveals no data key.
///
/// Keep it outside the database (a secret manager, an environment variable). Losing it
/// makes every wrapped key, and so every personal field, unreadable. Zeroed when dropped.
#[derive(Clone)]
pub struct MasterKey(DataKey);

impl MasterKey {
    /// A master key from its 32 bytes.
    pub fn from_bytes(bytes: [u8; KEY_LEN]) -> Self {
        Self(DataKey::from_bytes(bytes))
    }

    /// A new random master key; store its [`to_hex`](Self::to_hex) somewhere safe.
    pub fn generate() -> Self {
        Self(DataKey::generate())
    }

    /// A master key from 64 hexadecimal digits, as [`to_hex`](Self::to_hex) writes it.
    pub fn from_hex(hex: &str) -> Result<Self, MasterKeyError> {
        let hex = hex.trim();
        if !hex.is_ascii() {
            return Err(MasterKeyError::NotHex);
        }
        if hex.len() != KEY_LEN * 2 {
            return Err(MasterKeyError::Length { len: hex.len() });
        }
        let mut bytes = [0u8; KEY_LEN];
        for (i, byte) in bytes.iter_mut().enumerate() {
            *byte = u8::from_str_radix(&hex[2 * i..2 * i + 2], 16)
                .map_err(|_| MasterKeyError::NotHex)?;
        }
        Ok(Self::from_bytes(bytes))
    }

    /// The key as 64 lowercase hexadecimal digits.
    pub fn to_hex(&self) -> String {
        self.0
            .as_bytes()
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect()
    }

    /// Wraps `key` for `subject`: the nonce followed by the sealed key, bound to the
    /// subject so that a wrapped key cannot be moved to another subject's row.
    pub fn wrap(&self, subject: &str, key: &DataKey) -> Vec<u8> {
        let (nonce, sealed) = self.0.seal(&wrap_aad(subject), key.as_bytes());
        let mut wrapped = Vec::with_capacity(NONCE_LEN + sealed.len());
        wrapped.extend_from_slice(&nonce);
        wrapped.extend_from_slice(&sealed);
        wrapped
    }

    /// Unwraps what [`wrap`](Self::wrap) wrote for `subject`; `None` when it was wrapped by
    /// another master key, for another subject, or altered.
    pub fn unwrap_key(&self, subject: &str, wrapped: &[u8]) -> Option<DataKey> {
        if wrapped.len() < NONCE_LEN {
            return None;
        }
        let (nonce, sealed) = wrapped.split_at(NONCE_LEN);
        let mut bytes = self.0.open(nonce, &wrap_aad(subject), sealed)?;
        let key = <[u8; KEY_LEN]>::try_from(bytes.as_slice())
            .ok()
            .map(DataKey::from_bytes);
        bytes.zeroize();
        key
    }

    /// The key-check value of this master key: a known text sealed with it. A key store
    /// keeps the first one it sees and compares every later master key against it with
    /// [`check`](Self::check), so a wrong master key is refused at start-up rather than
    /// when the first personal field fails to decrypt.
    pub fn check_value(&self) -> Vec<u8> {
        let (nonce, sealed) = self.0.seal(CHECK_AAD, CHECK_TEXT);
        let mut value = nonce.to_vec();
        value.extend_from_slice(&sealed);
        value
    }

    /// Whether `check_value` was written by this master key.
    pub fn check(&self, check_value: &[u8]) -> bool {
        if check_value.len() < NONCE_LEN {
            return false;
        }
        let (nonce, sealed) = check_value.split_at(NONCE_LEN);
        self.0
            .open(nonce, CHECK_AAD, sealed)
            .is_some_and(|text| text == CHECK_TEXT)
    }
}

impl std::fmt::Debug for MasterKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("MasterKey(..)")
    }
}

const CHECK_AAD: &[u8] = b"esrs.master-key-check.v1";
const CHECK_TEXT: &[u8] = b"esrs master key check";

fn wrap_aad(subject: &str) -> Vec<u8> {
    let mut aad = b"esrs.key-wrap.v1".to_vec();
    aad.extend_from_slice(subject.as_bytes());
    aad
}

/// Why a master key was refused by [`MasterKey::from_hex`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum MasterKeyError {
    /// The text is not 64 characters long.
    #[error("a master key is 64 hexadecimal digits (32 bytes); this one has {len} characters")]
    Length {
        /// Its length in characters.
        len: usize,
    },
    /// The text holds a character that is not a hexadecimal digit.
    #[error("a master key is written in hexadecimal digits (0-9, a-f)")]
    NotHex,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_ciphertext_opens_only_with_its_key_and_its_associated_data() {
        let key = DataKey::generate();
        let aad = field_aad("member-1", "MemberJoined", "email", "m1");
        let (nonce, sealed) = key.seal(&aad, b"\"ada@example.com\"");
        assert_eq!(
            key.open(&nonce, &aad, &sealed).as_deref(),
            Some(&b"\"ada@example.com\""[..])
        );
        let other = field_aad("member-2", "MemberJoined", "email", "m1");
        assert!(key.open(&nonce, &other, &sealed).is_none());
        assert!(DataKey::generate().open(&nonce, &aad, &sealed).is_none());
        // Two seals of one value differ: a fresh nonce each time.
        assert_ne!(key.seal(&aad, b"x").0, key.seal(&aad, b"x").0);
    }

    #[test]
    fn parts_of_the_associated_data_cannot_slide_into_each_other() {
        assert_ne!(
            field_aad("ab", "c", "f", "s"),
            field_aad("a", "bc", "f", "s")
        );
    }

    #[test]
    fn wrapped_keys_open_with_their_master_key_and_subject_only() {
        let master = MasterKey::generate();
        let key = DataKey::generate();
        let wrapped = master.wrap("m1", &key);
        assert_eq!(
            master.unwrap_key("m1", &wrapped).map(|k| *k.as_bytes()),
            Some(*key.as_bytes())
        );
        assert!(master.unwrap_key("m2", &wrapped).is_none());
        assert!(MasterKey::generate().unwrap_key("m1", &wrapped).is_none());
        let check = master.check_value();
        assert!(master.check(&check));
        assert!(!MasterKey::generate().check(&check));
    }

    #[test]
    fn master_keys_read_back_from_hex_and_bad_text_is_refused() {
        let master = MasterKey::generate();
        let again = MasterKey::from_hex(&master.to_hex()).unwrap();
        assert!(again.check(&master.check_value()));
        assert_eq!(
            MasterKey::from_hex("abc").unwrap_err(),
            MasterKeyError::Length { len: 3 }
        );
        assert_eq!(
            MasterKey::from_hex(&"zz".repeat(32)).unwrap_err(),
            MasterKeyError::NotHex
        );
    }
}
