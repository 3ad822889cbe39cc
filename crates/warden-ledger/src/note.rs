//! Signed checkpoints: the C2SP `tlog-checkpoint` body inside a C2SP `signed-note`, signed with
//! Ed25519, and the note key formats (`PRIVATE+KEY+<name>+<id>+<key>` and `<name>+<id>+<key>`).
//!
//! A checkpoint is what an auditor keeps: it commits to the size and root of the log, and any later
//! state of the log must be consistent with it. Everything here is pure: bytes in, bytes out.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use ed25519_dalek::{Signature, Signer as _, SigningKey, Verifier as _, VerifyingKey};
use sha2::{Digest, Sha256};
use thiserror::Error;

use crate::merkle::Hash;

/// The signature-algorithm byte of Ed25519 in note keys and key ids.
const ALG_ED25519: u8 = 0x01;
/// Longest note accepted, in bytes.
pub const MAX_NOTE_BYTES: usize = 16 * 1024;

/// Why a key, note or checkpoint was refused.
#[derive(Debug, Clone, Error, PartialEq, Eq)]
pub enum NoteError {
    #[error("key name {0:?} is invalid; expected a non-empty name without spaces or '+'")]
    BadName(String),
    #[error("malformed {what} key; expected {expected}")]
    BadKey {
        what: &'static str,
        expected: &'static str,
    },
    #[error("key id in the key does not match its name and public key")]
    KeyIdMismatch,
    #[error("malformed signed note: {0}")]
    Malformed(&'static str),
    #[error("note has no valid signature by key {name} ({id:08x})")]
    NoSignature { name: String, id: u32 },
    #[error("malformed checkpoint: {0}")]
    BadCheckpoint(&'static str),
    #[error("cannot get randomness for a new key: {0}")]
    Random(String),
}

/// The note key id: the first four bytes of `SHA-256(name || "\n" || 0x01 || public key)`.
pub fn key_id(name: &str, public: &[u8; 32]) -> u32 {
    let mut h = Sha256::new();
    h.update(name.as_bytes());
    h.update(b"\n");
    h.update([ALG_ED25519]);
    h.update(public);
    let d = h.finalize();
    u32::from_be_bytes([d[0], d[1], d[2], d[3]])
}

fn check_name(name: &str) -> Result<(), NoteError> {
    if name.is_empty()
        || name.len() > 256
        || name.contains('+')
        || name.chars().any(|c| c.is_whitespace() || c.is_control())
    {
        return Err(NoteError::BadName(name.chars().take(64).collect()));
    }
    Ok(())
}

/// The private half: signs notes. Its text form must be kept secret.
pub struct SignerKey {
    name: String,
    key: SigningKey,
    id: u32,
}

impl std::fmt::Debug for SignerKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never print the secret.
        f.debug_struct("SignerKey")
            .field("name", &self.name)
            .field("id", &format_args!("{:08x}", self.id))
            .finish_non_exhaustive()
    }
}

impl SignerKey {
    /// A fresh key from the operating system's randomness.
    pub fn generate(name: &str) -> Result<SignerKey, NoteError> {
        check_name(name)?;
        let mut seed = [0u8; 32];
        getrandom::getrandom(&mut seed).map_err(|e| NoteError::Random(e.to_string()))?;
        Ok(Self::from_seed(name, seed))
    }

    fn from_seed(name: &str, seed: [u8; 32]) -> SignerKey {
        let key = SigningKey::from_bytes(&seed);
        let id = key_id(name, key.verifying_key().as_bytes());
        SignerKey {
            name: name.to_owned(),
            key,
            id,
        }
    }

    /// Parses `PRIVATE+KEY+<name>+<hex id>+<base64(0x01 || seed)>`.
    pub fn parse(text: &str) -> Result<SignerKey, NoteError> {
        const EXPECTED: &str =
            "PRIVATE+KEY+<name>+<8 hex digits>+<base64 of 0x01 and a 32-byte Ed25519 seed>";
        let bad = NoteError::BadKey {
            what: "signer",
            expected: EXPECTED,
        };
        let rest = text
            .trim_end_matches(['\n', '\r'])
            .strip_prefix("PRIVATE+KEY+")
            .ok_or_else(|| bad.clone())?;
        let (name, id, key) = split_key(rest).ok_or_else(|| bad.clone())?;
        check_name(name)?;
        let raw = B64.decode(key).map_err(|_| bad.clone())?;
        if raw.len() != 33 || raw[0] != ALG_ED25519 {
            return Err(bad);
        }
        let mut seed = [0u8; 32];
        seed.copy_from_slice(&raw[1..]);
        let signer = Self::from_seed(name, seed);
        if signer.id != id {
            return Err(NoteError::KeyIdMismatch);
        }
        Ok(signer)
    }

    /// The text form, to be stored with owner-only permissions.
    pub fn to_text(&self) -> String {
        let mut raw = vec![ALG_ED25519];
        raw.extend_from_slice(self.key.as_bytes());
        format!(
            "PRIVATE+KEY+{}+{:08x}+{}",
            self.name,
            self.id,
            B64.encode(raw)
        )
    }

    /// The key's name (conventionally the log's origin).
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The public half.
    pub fn verifier(&self) -> VerifierKey {
        VerifierKey {
            name: self.name.clone(),
            key: self.key.verifying_key(),
            id: self.id,
        }
    }

    /// Signs `text` (which must end with a newline) and returns the signed note.
    pub fn sign_note(&self, text: &str) -> Result<String, NoteError> {
        check_note_text(text)?;
        let sig = self.key.sign(text.as_bytes());
        let mut blob = self.id.to_be_bytes().to_vec();
        blob.extend_from_slice(&sig.to_bytes());
        Ok(format!(
            "{text}\n\u{2014} {} {}\n",
            self.name,
            B64.encode(blob)
        ))
    }
}

impl Clone for SignerKey {
    fn clone(&self) -> Self {
        SignerKey {
            name: self.name.clone(),
            key: self.key.clone(),
            id: self.id,
        }
    }
}

fn split_key(rest: &str) -> Option<(&str, u32, &str)> {
    let mut parts = rest.splitn(3, '+');
    let name = parts.next()?;
    let id_hex = parts.next()?;
    let key = parts.next()?;
    if id_hex.len() != 8 || !id_hex.bytes().all(|b| b.is_ascii_hexdigit()) {
        return None;
    }
    Some((name, u32::from_str_radix(id_hex, 16).ok()?, key))
}

fn check_note_text(text: &str) -> Result<(), NoteError> {
    if !text.ends_with('\n') {
        return Err(NoteError::Malformed("text must end with a newline"));
    }
    if text.contains("\n\n") || text.starts_with('\n') {
        return Err(NoteError::Malformed("text must not contain blank lines"));
    }
    if text.chars().any(|c| c.is_control() && c != '\n') {
        return Err(NoteError::Malformed(
            "text must not contain control characters",
        ));
    }
    Ok(())
}

/// The public half: checks notes, and is what an auditor publishes and pins.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerifierKey {
    name: String,
    key: VerifyingKey,
    id: u32,
}

impl VerifierKey {
    /// Parses `<name>+<hex id>+<base64(0x01 || public key)>`.
    pub fn parse(text: &str) -> Result<VerifierKey, NoteError> {
        const EXPECTED: &str =
            "<name>+<8 hex digits>+<base64 of 0x01 and a 32-byte Ed25519 public key>";
        let bad = NoteError::BadKey {
            what: "verifier",
            expected: EXPECTED,
        };
        let (name, id, key) = split_key(text.trim()).ok_or_else(|| bad.clone())?;
        check_name(name)?;
        let raw = B64.decode(key).map_err(|_| bad.clone())?;
        if raw.len() != 33 || raw[0] != ALG_ED25519 {
            return Err(bad);
        }
        let public: [u8; 32] = raw[1..].try_into().map_err(|_| bad.clone())?;
        let key = VerifyingKey::from_bytes(&public).map_err(|_| bad)?;
        if key_id(name, &public) != id {
            return Err(NoteError::KeyIdMismatch);
        }
        Ok(VerifierKey {
            name: name.to_owned(),
            key,
            id,
        })
    }

    /// The text form, for publishing.
    pub fn to_text(&self) -> String {
        let mut raw = vec![ALG_ED25519];
        raw.extend_from_slice(self.key.as_bytes());
        format!("{}+{:08x}+{}", self.name, self.id, B64.encode(raw))
    }

    /// The key's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Opens a signed note: returns its text when a signature line by this key verifies. Signature
    /// lines of other keys are ignored, as the signed-note specification requires.
    pub fn open<'a>(&self, note: &'a str) -> Result<&'a str, NoteError> {
        if note.len() > MAX_NOTE_BYTES {
            return Err(NoteError::Malformed("note is larger than 16 KiB"));
        }
        let split = note
            .rfind("\n\n")
            .ok_or(NoteError::Malformed("no blank line before the signatures"))?;
        let (text, sigs) = (&note[..split + 1], &note[split + 2..]);
        check_note_text(text)?;
        if sigs.is_empty() || !sigs.ends_with('\n') {
            return Err(NoteError::Malformed(
                "signature block must be non-empty and end with a newline",
            ));
        }
        let mut found = false;
        for line in sigs[..sigs.len() - 1].split('\n') {
            let rest = line.strip_prefix("\u{2014} ").ok_or(NoteError::Malformed(
                "signature line must start with an em dash and a space",
            ))?;
            let (name, b64) = rest.split_once(' ').ok_or(NoteError::Malformed(
                "signature line must be `\u{2014} <name> <base64>`",
            ))?;
            let blob = B64
                .decode(b64)
                .map_err(|_| NoteError::Malformed("signature is not base64"))?;
            if blob.len() < 5 {
                return Err(NoteError::Malformed("signature is too short"));
            }
            if name != self.name || blob[..4] != self.id.to_be_bytes() {
                continue;
            }
            let Ok(sig) = Signature::from_slice(&blob[4..]) else {
                continue;
            };
            if self.key.verify(text.as_bytes(), &sig).is_ok() {
                found = true;
            }
        }
        if found {
            Ok(text)
        } else {
            Err(NoteError::NoSignature {
                name: self.name.clone(),
                id: self.id,
            })
        }
    }
}

/// A `tlog-checkpoint` body: origin, tree size, root hash, and any extension lines.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Checkpoint {
    pub origin: String,
    pub size: u64,
    pub root: Hash,
    pub extensions: Vec<String>,
}

impl Checkpoint {
    /// The body text, every line ending in a newline.
    pub fn to_text(&self) -> String {
        let mut s = format!(
            "{}\n{}\n{}\n",
            self.origin,
            self.size,
            B64.encode(self.root)
        );
        for e in &self.extensions {
            s.push_str(e);
            s.push('\n');
        }
        s
    }

    /// Parses a checkpoint body strictly: decimal size without leading zeros, a 32-byte root.
    pub fn parse(text: &str) -> Result<Checkpoint, NoteError> {
        let body = text
            .strip_suffix('\n')
            .ok_or(NoteError::BadCheckpoint("must end with a newline"))?;
        let mut lines = body.split('\n');
        let origin = lines
            .next()
            .filter(|o| !o.is_empty())
            .ok_or(NoteError::BadCheckpoint("empty origin line"))?;
        let size_s = lines
            .next()
            .ok_or(NoteError::BadCheckpoint("missing size line"))?;
        if size_s.is_empty()
            || !size_s.bytes().all(|b| b.is_ascii_digit())
            || (size_s.len() > 1 && size_s.starts_with('0'))
        {
            return Err(NoteError::BadCheckpoint(
                "size must be a decimal number without leading zeros",
            ));
        }
        let size = size_s
            .parse()
            .map_err(|_| NoteError::BadCheckpoint("size does not fit in 64 bits"))?;
        let root_s = lines
            .next()
            .ok_or(NoteError::BadCheckpoint("missing root hash line"))?;
        let root = B64
            .decode(root_s)
            .ok()
            .and_then(|r| Hash::try_from(r.as_slice()).ok())
            .ok_or(NoteError::BadCheckpoint(
                "root hash must be base64 of 32 bytes",
            ))?;
        let extensions: Vec<String> = lines.map(str::to_owned).collect();
        if extensions.iter().any(String::is_empty) {
            return Err(NoteError::BadCheckpoint("empty extension line"));
        }
        Ok(Checkpoint {
            origin: origin.to_owned(),
            size,
            root,
            extensions,
        })
    }

    /// Signs this checkpoint.
    pub fn sign(&self, key: &SignerKey) -> Result<String, NoteError> {
        key.sign_note(&self.to_text())
    }

    /// Opens and parses a signed checkpoint, checking that its origin is the key's name.
    pub fn open(note: &str, key: &VerifierKey) -> Result<Checkpoint, NoteError> {
        let cp = Checkpoint::parse(key.open(note)?)?;
        if cp.origin != key.name() {
            return Err(NoteError::BadCheckpoint(
                "origin does not match the verifier key's name",
            ));
        }
        Ok(cp)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The Ed25519 test key of golang.org/x/mod/sumdb/note's documentation examples: a published
    /// vector for the key formats and the key id.
    const GO_SKEY: &str =
        "PRIVATE+KEY+PeterNeumann+c74f20a3+AYEKFALVFGyNhPJEMzD1QIDr+Y7hfZx09iUvxdXHKDFz";
    const GO_VKEY: &str = "PeterNeumann+c74f20a3+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW";
    const GO_NOTE: &str = "If you think cryptography is the answer to your problem,\nthen you don't know what your problem is.\n\n\u{2014} PeterNeumann x08go/ZJkuBS9UG/SffcvIAQxVBtiFupLLr8pAcElZInNIuGUgYN1FFYC2pZSNXgKvqfqdngotpRZb6KE6RyyBwJnAM=\n";

    #[test]
    fn published_go_note_vector_verifies() {
        let s = SignerKey::parse(GO_SKEY).unwrap();
        assert_eq!(s.verifier().to_text(), GO_VKEY);
        assert_eq!(s.to_text(), GO_SKEY);
        let v = VerifierKey::parse(GO_VKEY).unwrap();
        let text = v.open(GO_NOTE).unwrap();
        assert!(text.starts_with("If you think"));
        // Ed25519 is deterministic, so our signature must be byte-identical to the published one.
        assert_eq!(s.sign_note(text).unwrap(), GO_NOTE);
    }

    #[test]
    fn checkpoint_round_trip_and_tamper() {
        let k = SignerKey::generate("warden.test/log").unwrap();
        let cp = Checkpoint {
            origin: "warden.test/log".into(),
            size: 12,
            root: [7; 32],
            extensions: vec![],
        };
        let note = cp.sign(&k).unwrap();
        assert_eq!(Checkpoint::open(&note, &k.verifier()).unwrap(), cp);
        let forged = note.replace("\n12\n", "\n13\n");
        assert!(matches!(
            Checkpoint::open(&forged, &k.verifier()),
            Err(NoteError::NoSignature { .. })
        ));
        let other = SignerKey::generate("warden.test/log").unwrap();
        assert!(Checkpoint::open(&note, &other.verifier()).is_err());
        for bad in ["", "o\n", "o\n01\nAAAA\n", "o\n1\nAAAA\n", "o\n-1\n\n"] {
            assert!(Checkpoint::parse(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn signer_debug_hides_the_secret() {
        let k = SignerKey::generate("n").unwrap();
        let shown = format!("{k:?}");
        assert!(!shown.contains(&k.to_text()[20..]));
    }
}
