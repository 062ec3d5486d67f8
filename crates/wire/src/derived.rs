//! The keys the official SDKs derive from a secret key for their other signing modes:
//! - `SDK-ECDSA-P256-SHA256` and `SDK-SM2-SM3`: a key pair whose private scalar is an HMAC
//!   counter loop over the access key, keyed by the secret key; the signature is ECDSA (or SM2)
//!   over the string to sign, ASN.1 DER, in hex.
//! - `V11-HMAC-SHA256`: an HMAC key that is the hex of HKDF-SHA256(salt = access key,
//!   ikm = secret key, info = `DATE/REGION/SERVICE`).
//!
//! Both sides live here: the server derives the public key (once per access key, see
//! [`crate::auth`]'s cache) and verifies; clients derive the private key and sign.

use hmac::{KeyInit, Mac};
use p256::ecdsa::signature::hazmat::PrehashVerifier;
use p256::ecdsa::signature::{Signer as _, Verifier as _};
use sha2::{Digest, Sha256};

/// SM2's default distinguishing identifier, which every official SDK uses.
pub const SM2_DISTID: &str = "1234567812345678";

const fn hex32(s: &str) -> [u8; 32] {
    let b = s.as_bytes();
    let mut out = [0u8; 32];
    let mut i = 0;
    while i < 32 {
        out[i] = (nibble(b[2 * i]) << 4) | nibble(b[2 * i + 1]);
        i += 1;
    }
    out
}

const fn nibble(c: u8) -> u8 {
    match c {
        b'0'..=b'9' => c - b'0',
        b'a'..=b'f' => c - b'a' + 10,
        _ => 0,
    }
}

/// The group orders minus two: the largest candidate the SDKs accept.
const P256_N_MINUS_TWO: [u8; 32] = hex32("ffffffff00000000ffffffffffffffffbce6faada7179e84f3b9cac2fc63254f");
const SM2_N_MINUS_TWO: [u8; 32] = hex32("fffffffeffffffffffffffffffffffff7203df6b21c6052b53bbf40939d54121");
/// SM2's curve constants as they enter the signer's identity hash (ZA).
const SM2_ZA_CURVE: [[u8; 32]; 4] = [
    hex32("fffffffeffffffffffffffffffffffffffffffff00000000fffffffffffffffc"),
    hex32("28e9fa9e9d9f5e344d5a9e4bcf6509a7f39789f515ab8f92ddbcbd414d940e93"),
    hex32("32c4ae2c1f1981195f9904466a39c9948fe30bbff2660be1715a4589334c74c7"),
    hex32("bc3736a2f4f6779c59bdcee36b692153d0a9877cc62a474002df32e52139f0a0"),
];

/// The loop every SDK runs: for counter = 0, 1, …, candidate = HMAC(SK,
/// `00000001 || ALGORITHM || 00 || AK || counter || 00000100`); the first candidate ≤ n−2,
/// plus one, is the private scalar. The HMAC's hash is the mode's (SHA-256 for ECDSA, SM3 for
/// SM2). `None` when no candidate of 255 fits, which happens with probability 2^-8000.
fn derive_scalar<M: Mac + KeyInit>(algorithm: &str, ak: &str, sk: &str, n_minus_two: &[u8; 32]) -> Option<[u8; 32]> {
    for counter in 0..0xffu8 {
        let mut mac = <M as KeyInit>::new_from_slice(sk.as_bytes()).ok()?;
        mac.update(&[0, 0, 0, 1]);
        mac.update(algorithm.as_bytes());
        mac.update(&[0]);
        mac.update(ak.as_bytes());
        mac.update(&[counter]);
        mac.update(&[0, 0, 1, 0]);
        let out = mac.finalize().into_bytes();
        let mut candidate: [u8; 32] = out.as_slice().try_into().ok()?;
        // Fixed-length big-endian arrays compare as the numbers they hold.
        if candidate <= *n_minus_two {
            for byte in candidate.iter_mut().rev() {
                let (next, carry) = byte.overflowing_add(1);
                *byte = next;
                if !carry {
                    break;
                }
            }
            return Some(candidate);
        }
    }
    None
}

pub const ECDSA_P256_SHA256: &str = "SDK-ECDSA-P256-SHA256";
pub const SM2_SM3: &str = "SDK-SM2-SM3";

/// The `SDK-ECDSA-P256-SHA256` signing key of an AK/SK pair.
pub fn p256_signing_key(ak: &str, sk: &str) -> Option<p256::ecdsa::SigningKey> {
    let d = derive_scalar::<hmac::Hmac<Sha256>>(ECDSA_P256_SHA256, ak, sk, &P256_N_MINUS_TWO)?;
    p256::ecdsa::SigningKey::from_slice(&d).ok()
}

/// The `SDK-SM2-SM3` signing key of an AK/SK pair.
pub fn sm2_signing_key(ak: &str, sk: &str) -> Option<sm2::dsa::SigningKey> {
    let d = derive_scalar::<hmac::Hmac<sm3::Sm3>>(SM2_SM3, ak, sk, &SM2_N_MINUS_TWO)?;
    sm2::dsa::SigningKey::from_slice(SM2_DISTID, &d).ok()
}

/// What the server keeps of an `SDK-SM2-SM3` key: the verifying key, and when a coordinate of
/// the public point starts with a zero byte, the identity hash (ZA) the Python SDK computes for
/// it: it writes the coordinates without their leading zeros, where the standard (and the Go
/// and Java SDKs) write 32 bytes each. For such keys a signature of either form is accepted.
#[derive(Clone, Debug)]
pub struct Sm2Key {
    pub verifying: sm2::dsa::VerifyingKey,
    python_za: Option<[u8; 32]>,
}

impl Sm2Key {
    pub fn new(verifying: sm2::dsa::VerifyingKey) -> Self {
        let point = verifying.to_sec1_bytes();
        let python_za = match point.as_ref() {
            [4, xy @ ..] if xy.len() == 64 && (xy[0] == 0 || xy[32] == 0) => {
                let strip = |c: &[u8]| -> Vec<u8> { c.iter().copied().skip_while(|b| *b == 0).collect() };
                let mut h = sm3::Sm3::new();
                h.update(((SM2_DISTID.len() * 8) as u16).to_be_bytes());
                h.update(SM2_DISTID.as_bytes());
                for c in &SM2_ZA_CURVE {
                    h.update(c);
                }
                h.update(strip(&xy[..32]));
                h.update(strip(&xy[32..]));
                h.finalize().as_slice().try_into().ok()
            }
            _ => None,
        };
        Sm2Key { verifying, python_za }
    }

    fn verify(&self, data: &[u8], sig: &sm2::dsa::Signature) -> bool {
        if self.verifying.verify(data, sig).is_ok() {
            return true;
        }
        self.python_za.is_some_and(|za| {
            let e = sm3::Sm3::new_with_prefix(za).chain_update(data).finalize();
            self.verifying.verify_prehash(&e, sig).is_ok()
        })
    }
}

/// The public half of a derived key pair, what the server caches per access key.
#[derive(Clone, Debug)]
pub enum PublicKey {
    P256(p256::ecdsa::VerifyingKey),
    Sm2(Box<Sm2Key>),
}

impl PublicKey {
    pub fn p256(ak: &str, sk: &str) -> Option<Self> {
        p256_signing_key(ak, sk).map(|k| PublicKey::P256(*k.verifying_key()))
    }

    pub fn sm2(ak: &str, sk: &str) -> Option<Self> {
        sm2_signing_key(ak, sk).map(|k| PublicKey::Sm2(Box::new(Sm2Key::new(k.verifying_key().clone()))))
    }
}

/// A DER signature decoded from hex, before any key is derived: garbage is refused here, at the
/// cost of a hex decode.
#[derive(Clone, Debug)]
pub enum Signature {
    P256(p256::ecdsa::Signature),
    Sm2(sm2::dsa::Signature),
}

impl Signature {
    pub fn parse_p256(signature_hex: &str) -> Option<Self> {
        let der = hex::decode(signature_hex).ok()?;
        p256::ecdsa::Signature::from_der(&der).ok().map(Signature::P256)
    }

    pub fn parse_sm2(signature_hex: &str) -> Option<Self> {
        let der = hex::decode(signature_hex).ok()?;
        sm2::dsa::Signature::from_der(&der).ok().map(Signature::Sm2)
    }

    /// Whether this signs `data` (the string to sign) under `key`.
    pub fn verify(&self, key: &PublicKey, data: &[u8]) -> bool {
        match (self, key) {
            (Signature::P256(sig), PublicKey::P256(key)) => key.verify(data, sig).is_ok(),
            (Signature::Sm2(sig), PublicKey::Sm2(key)) => key.verify(data, sig),
            _ => false,
        }
    }
}

/// `SDK-ECDSA-P256-SHA256`'s signature of `data`, DER in hex (deterministic, RFC 6979; the
/// SDKs draw a random nonce, and either verifies the same).
pub fn sign_p256(ak: &str, sk: &str, data: &[u8]) -> Option<String> {
    let key = p256_signing_key(ak, sk)?;
    let sig: p256::ecdsa::Signature = key.try_sign(data).ok()?;
    Some(hex::encode(sig.to_der().as_bytes()))
}

/// `SDK-SM2-SM3`'s signature of `data`, DER in hex.
pub fn sign_sm2(ak: &str, sk: &str, data: &[u8]) -> Option<String> {
    let key = sm2_signing_key(ak, sk)?;
    let sig: sm2::dsa::Signature = key.try_sign(data).ok()?;
    Some(hex::encode(sig.to_der().as_bytes()))
}

/// `V11-HMAC-SHA256`'s HMAC key for one scope (`DATE/REGION/SERVICE`): the hex of
/// HKDF-SHA256 with the access key as salt and the secret key as input, 32 bytes.
pub fn v11_key(ak: &str, sk: &str, scope: &str) -> String {
    let mut okm = [0u8; 32];
    let hk = hkdf::Hkdf::<Sha256>::new(Some(ak.as_bytes()), sk.as_bytes());
    // 32 bytes is far below HKDF's limit (255 × 32): the error arm is never taken.
    if hk.expand(scope.as_bytes(), &mut okm).is_err() {
        return String::new();
    }
    hex::encode(okm)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn derived_keys_verify_their_own_signatures_and_no_others() {
        let data = b"SDK-ECDSA-P256-SHA256\n20240102T030405Z\nabc";
        for (sign, key, parse) in [
            (
                sign_p256 as fn(&str, &str, &[u8]) -> Option<String>,
                PublicKey::p256 as fn(&str, &str) -> Option<PublicKey>,
                Signature::parse_p256 as fn(&str) -> Option<Signature>,
            ),
            (sign_sm2, PublicKey::sm2, Signature::parse_sm2),
        ] {
            let sig = sign("AK", "SK", data).and_then(|s| parse(&s)).expect("signs");
            let right = key("AK", "SK").expect("derives");
            assert!(sig.verify(&right, data));
            assert!(!sig.verify(&right, b"other"));
            assert!(!sig.verify(&key("AK", "SK2").expect("derives"), data));
            assert!(!sig.verify(&key("AK2", "SK").expect("derives"), data));
        }
        assert!(Signature::parse_p256("zz").is_none());
        assert!(Signature::parse_p256("3006020101020101").is_some());
        assert!(Signature::parse_p256("300602010002010f").is_none(), "r = 0 is refused at parse");
        assert!(Signature::parse_sm2("").is_none());
    }

    #[test]
    fn the_counter_loop_adds_one_and_carries() {
        // Whatever the HMAC gives, the scalar is candidate + 1, so never zero.
        let d = derive_scalar::<hmac::Hmac<Sha256>>("X", "AK", "SK", &[0xff; 32]).expect("fits");
        let mut mac = <hmac::Hmac<Sha256> as KeyInit>::new_from_slice(b"SK").expect("any length");
        mac.update(b"\x00\x00\x00\x01X\x00AK\x00\x00\x00\x01\x00");
        let c = mac.finalize().into_bytes();
        let mut expect = [0u8; 32];
        expect.copy_from_slice(&c);
        let (last, carry) = expect[31].overflowing_add(1);
        expect[31] = last;
        if !carry {
            assert_eq!(d, expect);
        }
        // No candidate can be at most zero unless it is zero: the loop gives up.
        assert!(derive_scalar::<hmac::Hmac<Sha256>>("X", "AK", "SK", &[0; 32]).is_none());
    }

    #[test]
    fn only_keys_with_a_short_coordinate_get_the_python_identity_hash() {
        // The access keys of tests/sdk/signing_vectors.json: the second one's point was chosen
        // by the generator for a coordinate starting with a zero byte.
        let sk = "MFyfvK41ba2giqM7Uio6PznpdUKGpownRZlmVmHc";
        let za = |ak: &str| match PublicKey::sm2(ak, sk) {
            Some(PublicKey::Sm2(k)) => k.python_za,
            _ => panic!("derives"),
        };
        assert!(za("QTWAOYTTINDUT2QVKYUC").is_none());
        assert!(za("SM2ZEROCOORD00000070").is_some());
    }

    #[test]
    fn v11_keys_are_rfc5869_hkdf_in_hex() {
        // The official SDKs' values are checked by the vectors in `signature`'s tests.
        let k = v11_key("AK", "SK", "20240102/cn-north-4/dms");
        assert_eq!(k.len(), 64);
        assert_ne!(k, v11_key("AK", "SK", "20240103/cn-north-4/dms"));
    }
}
