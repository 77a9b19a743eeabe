//! How a row is named and sealed: the keys derived from the master key, and the row format.
//!
//! # Keys
//!
//! ```text
//! aead   = HKDF-SHA256(ikm = master, salt = "", info = "qanat-client store v1 aead")
//! mac    = HKDF-SHA256(ikm = master, salt = "", info = "qanat-client store v1 row name")
//! ```
//!
//! # Rows
//!
//! One table `kv(name BLOB PRIMARY KEY, value BLOB NOT NULL) WITHOUT ROWID`, schema version in
//! SQLite's `user_version` (1). Each logical entry `(namespace, key) -> value` is one row:
//!
//! ```text
//! name  = HMAC-SHA256(mac, "qanat-client store v1 row\0" ‖ u8 len(ns) ‖ ns ‖ key)
//! value = nonce (24) ‖ XChaCha20-Poly1305(aead, nonce, plaintext, aad = "qanat-client store v1 row\0" ‖ name)
//! plaintext = u8 len(ns) ‖ ns ‖ u16 len(key) ‖ key ‖ value
//! ```
//!
//! So the file shows neither namespaces, keys nor values: only the number of rows and their
//! sizes. A row cannot be moved to another name (the name is authenticated). The logical
//! namespace and key are inside the ciphertext so that [`Profile::scan`] can work: at open, every
//! row is decrypted once to build an in-memory index of `(namespace, key)`; a profile is held by
//! one process at a time, so that index stays true.

use chacha20poly1305::aead::{Aead, KeyInit, Payload};
use chacha20poly1305::{Key, XChaCha20Poly1305, XNonce};
use hkdf::Hkdf;
use hmac::{Hmac, Mac};
use qanat_codec::{Reader, Writer};
use sha2::Sha256;
use subtle::ConstantTimeEq;
use zeroize::Zeroizing;

use super::files::random;
use super::header::{KEY_LEN, XNONCE_LEN};
use super::{MAX_KEY_LEN, MAX_NAMESPACE_LEN, StoreError};

pub(super) const ROW_DOMAIN: &[u8] = b"qanat-client store v1 row\0";
pub(super) const INFO_AEAD: &[u8] = b"qanat-client store v1 aead";
pub(super) const INFO_MAC: &[u8] = b"qanat-client store v1 row name";

/// The keys of an open profile. Zeroized on drop (the AEAD zeroizes its own key).
pub(super) struct Keys {
    pub(super) master: Zeroizing<[u8; KEY_LEN]>,
    pub(super) aead: XChaCha20Poly1305,
    pub(super) mac: Zeroizing<[u8; KEY_LEN]>,
}

impl Keys {
    pub(super) fn new(master: Zeroizing<[u8; KEY_LEN]>) -> Self {
        let hk = Hkdf::<Sha256>::new(None, master.as_ref());
        let mut aead_key = Zeroizing::new([0u8; KEY_LEN]);
        let mut mac = Zeroizing::new([0u8; KEY_LEN]);
        // Expanding 32 bytes from HKDF-SHA256 cannot fail (the limit is 255 · 32).
        let _ = hk.expand(INFO_AEAD, aead_key.as_mut());
        let _ = hk.expand(INFO_MAC, mac.as_mut());
        let aead = XChaCha20Poly1305::new(&Key::from(*aead_key));
        Self { master, aead, mac }
    }

    /// The row's name. `ns` has at most 255 bytes (`check_name`, or the one-byte length it was
    /// read after).
    pub(super) fn row_name(&self, ns: &str, key: &[u8]) -> [u8; 32] {
        let mut w = Writer::with_capacity(ROW_DOMAIN.len() + 1 + ns.len() + key.len());
        w.raw(ROW_DOMAIN);
        w.bytes8(ns.as_bytes());
        w.raw(key);
        let (input, error) = w.into_parts();
        let input = Zeroizing::new(input);
        // HMAC takes keys of any length. (Were `ns` too long, the name would match no row.)
        let (None, Ok(mut m)) = (error, <Hmac<Sha256> as KeyInit>::new_from_slice(self.mac.as_ref())) else {
            return [0; 32];
        };
        m.update(&input);
        m.finalize().into_bytes().into()
    }

    pub(super) fn seal(
        &self,
        name: &[u8; 32],
        ns: &str,
        key: &[u8],
        value: &[u8],
    ) -> Result<Vec<u8>, StoreError> {
        // The exact length, so that the buffer holding the plaintext never moves.
        let mut w = Writer::with_capacity(1 + ns.len() + 2 + key.len() + value.len());
        w.bytes8(ns.as_bytes());
        w.bytes16(key);
        w.raw(value);
        let (pt, error) = w.into_parts();
        let pt = Zeroizing::new(pt);
        if error.is_some() {
            return Err(StoreError::InvalidName("a namespace has 1 to 255 bytes, a key at most 65,535"));
        }
        let nonce: [u8; XNONCE_LEN] = random()?;
        let aad = [ROW_DOMAIN, name].concat();
        let ct = self
            .aead
            .encrypt(&XNonce::from(nonce), Payload { msg: &pt, aad: &aad })
            .map_err(|_| StoreError::InvalidName("value too long"))?;
        let mut out = Vec::with_capacity(XNONCE_LEN + ct.len());
        out.extend_from_slice(&nonce);
        out.extend_from_slice(&ct);
        Ok(out)
    }

    /// `(namespace, key, value)` of a row, if it is authentic and its name matches its content.
    pub(super) fn open(&self, name: &[u8], sealed: &[u8]) -> Option<(String, Vec<u8>, Zeroizing<Vec<u8>>)> {
        let mut r = Reader::new(sealed);
        let nonce: [u8; XNONCE_LEN] = r.array().ok()?;
        let ct = r.rest();
        let aad = [ROW_DOMAIN, name].concat();
        let pt =
            Zeroizing::new(self.aead.decrypt(&XNonce::from(nonce), Payload { msg: ct, aad: &aad }).ok()?);
        let mut r = Reader::new(&pt);
        let ns = std::str::from_utf8(r.bytes8(MAX_NAMESPACE_LEN, "namespace").ok()?).ok()?.to_owned();
        let key = r.bytes16(MAX_KEY_LEN, "key").ok()?.to_vec();
        let value = Zeroizing::new(r.rest().to_vec());
        let expected = self.row_name(&ns, &key);
        if !bool::from(expected.ct_eq(name)) {
            return None;
        }
        Some((ns, key, value))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn keys() -> Keys {
        Keys::new(Zeroizing::new(std::array::from_fn(|i| 0x40 + i as u8)))
    }

    fn hex(b: &[u8]) -> String {
        b.iter().map(|x| format!("{x:02x}")).collect()
    }

    /// A row's name and its sealed value for fixed keys and nonce, as version 1 has always
    /// written them: computed apart from this code (HKDF, HMAC and XChaCha20-Poly1305 of the
    /// module documentation).
    #[test]
    fn a_row_is_pinned() {
        let k = keys();
        let name = k.row_name("contacts", b"alice");
        assert_eq!(hex(&name), "014715e6fec312e0ebdcf02864344c2a5c6cff1f34549975a041a3fcae62e9f7");
        let sealed = concat!(
            "505152535455565758595a5b5c5d5e5f6061626364656667", // nonce
            "a547f9bba8949ce2de1fba9c5129d2fdb371d9762f6b98fa164dc464d2c792158736c2db28869e",
        );
        let sealed: Vec<u8> = (0..sealed.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&sealed[i..i + 2], 16).unwrap())
            .collect();
        let (ns, key, value) = k.open(&name, &sealed).unwrap();
        assert_eq!(
            (ns.as_str(), key.as_slice(), value.as_slice()),
            ("contacts", &b"alice"[..], &b"state 1"[..])
        );
        // The name is authenticated: the row under another name does not open.
        assert!(k.open(&k.row_name("contacts", b"bob"), &sealed).is_none());
    }

    #[test]
    fn rows_round_trip_at_the_limits() {
        let k = keys();
        let ns = "n".repeat(255);
        let key = vec![7u8; u16::MAX as usize];
        for (ns, key, value) in [("a", &b""[..], &b""[..]), (ns.as_str(), &key[..], &b"v"[..])] {
            let name = k.row_name(ns, key);
            let sealed = k.seal(&name, ns, key, value).unwrap();
            let (n, kk, v) = k.open(&name, &sealed).unwrap();
            assert_eq!((n.as_str(), kk.as_slice(), v.as_slice()), (ns, key, value));
        }
        assert!(k.open(&k.row_name("a", b""), &[0; 23]).is_none());
    }
}
