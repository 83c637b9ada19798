//! Encrypted tokens (`validate/jwe.rs`): compact JWE parsing and the checks made before
//! any private-key operation, then decryption and the nested token, with an RSA-OAEP-256,
//! an ECDH-ES, an A256KW and a `dir` key built once per process.
//!
//! Input: a mode byte, then:
//! - 0: a whole token, decrypted and validated;
//! - 1: a byte picking a real JWE, then a new protected header (JSON, base64url-encoded
//!   into the token);
//! - 2: a byte picking a real JWE, a byte picking the segment (+8 to base64url-encode the
//!   replacement), then the replacement;
//! - 3: a byte picking the key, a byte picking `enc` (low bits) and `cty` (bits 4-5),
//!   then a plaintext, encrypted for real and validated.
//!
//! Checked: nothing panics or waits; a real JWE with any segment changed never decrypts
//! (the header is authenticated data, RFC 7516 §5.1); a plaintext comes back as it went
//! in; an accepted token names the trusted issuer and audience and has not expired.

#![no_main]

use libfuzzer_sys::fuzz_target;
use serde_json::{Map, Value};
use tower_oauth_fuzz::b64;
use tower_oauth_fuzz::encryption::{CTYS, ENCS, decrypt, encryption, validate};

fn everything(token: &str) {
    let _ = decrypt(token);
    let _ = validate(token);
}

/// A real JWE with one segment replaced: it must not decrypt, unless nothing changed.
fn tampered(base: &str, segment: usize, replacement: String) {
    let mut parts: Vec<&str> = base.split('.').collect();
    parts[segment] = &replacement;
    let token = parts.join(".");
    let decrypted = decrypt(&token);
    if token != base {
        assert!(decrypted.is_err(), "a JWE with segment {segment} changed decrypted");
        assert!(validate(&token).iter().all(Result::is_err), "a JWE with segment {segment} changed was accepted");
    } else {
        let _ = validate(&token);
    }
}

fuzz_target!(|data: &[u8]| {
    let Some((&mode, rest)) = data.split_first() else { return };
    let encryption = encryption();
    match mode % 4 {
        0 => {
            if let Ok(token) = std::str::from_utf8(rest) {
                everything(token);
            }
        }
        1 => {
            let [pick, header @ ..] = rest else { return };
            let base = &encryption.tokens[*pick as usize % encryption.tokens.len()];
            tampered(base, 0, b64(header));
        }
        2 => {
            let [pick, segment, replacement @ ..] = rest else { return };
            let base = &encryption.tokens[*pick as usize % encryption.tokens.len()];
            let replacement =
                if segment & 8 != 0 { b64(replacement) } else { String::from_utf8_lossy(replacement).into_owned() };
            tampered(base, (*segment & 7) as usize % 5, replacement);
        }
        _ => {
            let [pick, choice, plaintext @ ..] = rest else { return };
            let key = &encryption.keys[*pick as usize % encryption.keys.len()];
            // A `dir` key is the content key itself: only the encryptions of its size.
            let encs: &[&str] = if key.alg() == "dir" { &["A256GCM", "A128CBC-HS256"] } else { &ENCS };
            let enc = encs[(*choice & 0x0f) as usize % encs.len()];
            let mut header = Map::new();
            header.insert("enc".into(), enc.into());
            if let Some(cty) = CTYS[((*choice >> 4) & 3) as usize] {
                header.insert("cty".into(), Value::from(cty));
            }
            let token = key.encrypt_with_header(plaintext, header);
            let decrypted = decrypt(&token).expect("a JWE made with our own key decrypts");
            assert_eq!(decrypted.payload(), plaintext, "the plaintext changed on the way");
            let _ = validate(&token);
        }
    }
});
