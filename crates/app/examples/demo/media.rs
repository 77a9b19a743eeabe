//! What the demo's files are made of: a small PNG and a WAV voice note drawn here (no file is
//! committed), base64 both ways, the estimate's figures from docs/ATTACHMENTS.md §3.11's model.

use std::io::Write as _;

use serde_json::{Value, json};

const B64: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

/// Standard base64, padded.
pub(crate) fn base64(bytes: &[u8]) -> String {
    let mut out = String::with_capacity(bytes.len().div_ceil(3) * 4);
    for c in bytes.chunks(3) {
        let n = (u32::from(c[0]) << 16)
            | (u32::from(*c.get(1).unwrap_or(&0)) << 8)
            | u32::from(*c.get(2).unwrap_or(&0));
        for i in 0..4 {
            if i <= c.len() {
                out.push(char::from(B64[(n >> (18 - 6 * i)) as usize & 63]));
            } else {
                out.push('=');
            }
        }
    }
    out
}

/// Standard base64 back to bytes; `None` if it is not.
pub(crate) fn unbase64(text: &str) -> Option<Vec<u8>> {
    let mut out = Vec::with_capacity(text.len() / 4 * 3);
    let (mut acc, mut bits) = (0u32, 0);
    for c in text.bytes().filter(|c| *c != b'=') {
        let v = B64.iter().position(|x| *x == c)? as u32;
        acc = (acc << 6) | v;
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push((acc >> bits) as u8);
        }
    }
    Some(out)
}

/// A voice note of `secs` seconds: 8 kHz, 16-bit mono WAV, a low murmur in syllables (what a
/// voice sounds like from afar), for the preview to play.
pub(crate) fn wav(secs: u32) -> Vec<u8> {
    let rate = 8000u32;
    let n = rate * secs;
    let mut out = Vec::with_capacity(44 + 2 * n as usize);
    out.extend_from_slice(b"RIFF");
    out.extend_from_slice(&(36 + 2 * n).to_le_bytes());
    out.extend_from_slice(b"WAVEfmt ");
    out.extend_from_slice(&16u32.to_le_bytes());
    out.extend_from_slice(&1u16.to_le_bytes()); // PCM
    out.extend_from_slice(&1u16.to_le_bytes()); // mono
    out.extend_from_slice(&rate.to_le_bytes());
    out.extend_from_slice(&(rate * 2).to_le_bytes());
    out.extend_from_slice(&2u16.to_le_bytes());
    out.extend_from_slice(&16u16.to_le_bytes());
    out.extend_from_slice(b"data");
    out.extend_from_slice(&(2 * n).to_le_bytes());
    let tau = std::f64::consts::TAU;
    for i in 0..n {
        let t = f64::from(i) / f64::from(rate);
        // A pitch that wanders like speech, in syllables of about a quarter second.
        let pitch = 140.0 + 25.0 * (tau * 0.7 * t).sin();
        let syllable = (tau * 3.7 * t).sin().max(0.0).powf(0.6) * (0.6 + 0.4 * (tau * 0.31 * t).sin());
        let fade = (t * 4.0).min(1.0) * ((f64::from(secs) - t) * 4.0).min(1.0);
        let phase = tau * pitch * t;
        let voice = phase.sin() + 0.5 * (2.0 * phase).sin() + 0.25 * (3.0 * phase).sin();
        let s = (voice * syllable * fade * 7000.0) as i16;
        out.extend_from_slice(&s.to_le_bytes());
    }
    out
}

fn chunk(out: &mut Vec<u8>, kind: &[u8; 4], data: &[u8]) {
    out.extend_from_slice(&(data.len() as u32).to_be_bytes());
    let mut crc = flate2::Crc::new();
    crc.update(kind);
    crc.update(data);
    out.extend_from_slice(kind);
    out.extend_from_slice(data);
    out.extend_from_slice(&crc.sum().to_be_bytes());
}

/// A small map as a PNG (`w`×`h`, RGB): fields, a river, the north road and its checkpoint.
pub(crate) fn png(w: u32, h: u32) -> Vec<u8> {
    let mut raw = Vec::with_capacity(((w * 3 + 1) * h) as usize);
    let (wf, hf) = (f64::from(w), f64::from(h));
    for y in 0..h {
        raw.push(0); // no filter
        for x in 0..w {
            let (fx, fy) = (f64::from(x) / wf, f64::from(y) / hf);
            let river = (fy - (0.7 + 0.08 * (fx * 9.0).sin())).abs() < 0.035;
            let road = (fx - (0.15 + 0.6 * fy)).abs() < 0.02;
            let (dx, dy) = (fx - 0.45, (fy - 0.5) * hf / wf);
            let checkpoint = (dx * dx + dy * dy).sqrt() < 0.03;
            let field = (((fx * 5.0).floor() + (fy * 4.0).floor()) as u32).is_multiple_of(2);
            let rgb = if checkpoint {
                [0xc0, 0x1c, 0x28]
            } else if road {
                [0x5e, 0x5c, 0x64]
            } else if river {
                [0x35, 0x84, 0xe4]
            } else if field {
                [0xd9, 0xe8, 0xc4]
            } else {
                [0xee, 0xe6, 0xc8]
            };
            raw.extend_from_slice(&rgb);
        }
    }
    let mut z = flate2::write::ZlibEncoder::new(Vec::new(), flate2::Compression::default());
    let _ = z.write_all(&raw);
    let idat = z.finish().unwrap_or_default();
    let mut out = b"\x89PNG\r\n\x1a\n".to_vec();
    let mut ihdr = Vec::new();
    ihdr.extend_from_slice(&w.to_be_bytes());
    ihdr.extend_from_slice(&h.to_be_bytes());
    ihdr.extend_from_slice(&[8, 2, 0, 0, 0]); // 8 bits, RGB
    chunk(&mut out, b"IHDR", &ihdr);
    chunk(&mut out, b"IDAT", &idat);
    chunk(&mut out, b"IEND", &[]);
    out
}

/// `len` bytes of a file the demo has no content for (a pattern, the same every time).
pub(crate) fn filler(offset: u64, len: usize) -> Vec<u8> {
    (0..len as u64).map(|i| ((offset + i) * 31 % 251) as u8).collect()
}

/// The largest file the demo network takes (the directory's default, docs/ATTACHMENTS.md §3.12).
pub(crate) const LIMIT: u64 = 4 * 1024 * 1024;

/// The `estimate` answer for `size` bytes to `recipients`, from §3.11's model at the
/// directory's defaults (λ_P = 0.2/s, 1,450 data bytes a packet, 1/8 parity); `fast` offered
/// or not.
pub(crate) fn estimate(size: u64, recipients: u64, fast: bool) -> Value {
    let bucket = size.max(32 * 1024).next_power_of_two();
    let data = bucket.div_ceil(1450);
    let packets = data + data / 8 + data.div_ceil(64);
    let m = recipients.max(1);
    let hidden = packets * 5 * m;
    let cost = |secs: u64, up: u64| json!({"secs_low": secs, "secs_high": secs * 8 / 5, "bytes_up": up, "bytes_down": 0});
    let fast_secs = packets * 27 / 10 * m;
    json!({
        "kind": "estimate", "bucket": bucket, "packets": packets * m, "recipients": m,
        "allowed": size <= LIMIT, "limit": LIMIT,
        "hidden": cost(hidden, 0),
        "fast": fast.then(|| cost(fast_secs, fast_secs * 2229 / 5)),
    })
}
