//! The three credentials of the local server, in the order the browser gets them (docs/APP.md
//! §2.1): the start token printed once, the cookie it is exchanged for, and the key an unlock
//! gives, held only in the page's memory.
//!
//! IO-free: every method takes `now`.
//!
//! # What others can do
//!
//! - Another user of the machine who reads the printed link and redeems it first gets a cookie;
//!   the user's own redemption then finds the token used, and *every* cookie and key is revoked
//!   (the user is told that someone else may have opened the link). A token is good for one use
//!   within its lifetime, compared in constant time.
//! - A cookie alone opens the lock screen only (browsers send cookies to every port of a host,
//!   so any other server on 127.0.0.1 the browser visits sees it); everything else needs the
//!   key bound to that cookie, which dies at lock, after the lock timeout without the user, and
//!   after [`KEY_LIFETIME`] in any case.
//! - A token gives one cookie; at most [`MAX_COOKIES`] would live at once were more tokens
//!   made (the oldest goes first). A token presented after its lifetime is refused, used or not.

use std::time::{Duration, Instant};

use rand::Rng as _;
use subtle::ConstantTimeEq as _;
use zeroize::Zeroizing;

/// How long a key lives, whatever the user does.
pub const KEY_LIFETIME: Duration = Duration::from_secs(12 * 3600);

/// Cookies kept at once.
pub const MAX_COOKIES: usize = 8;

/// 32 random bytes, as 64 hex digits.
pub(crate) type Secret32 = Zeroizing<[u8; 32]>;

fn random() -> Secret32 {
    let mut b = Zeroizing::new([0u8; 32]);
    rand::rng().fill_bytes(&mut b[..]);
    b
}

/// `b` as lowercase hex.
pub(crate) fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

/// `s` as 32 bytes of hex, or `None`.
fn unhex32(s: &str) -> Option<Secret32> {
    let s = s.as_bytes();
    if s.len() != 64 {
        return None;
    }
    let mut out = Zeroizing::new([0u8; 32]);
    for (i, pair) in s.chunks(2).enumerate() {
        let d = |c: u8| (c as char).to_digit(16);
        out[i] = u8::try_from(d(pair[0])? * 16 + d(pair[1])?).ok()?;
    }
    Some(out)
}

fn same(a: &[u8; 32], b: &[u8; 32]) -> bool {
    a.ct_eq(b).into()
}

/// What redeeming a start token did.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Redeemed {
    /// The cookie to set (hex).
    Cookie(String),
    /// Not the token, or too late: nothing changed.
    Refused,
    /// The token was used before: every cookie and key was revoked.
    Reused,
}

struct KeyState {
    key: Secret32,
    issued: Instant,
    last_activity: Instant,
}

struct CookieState {
    id: u64,
    cookie: Secret32,
    key: Option<KeyState>,
}

/// The server's credentials.
pub(crate) struct Sessions {
    token: Secret32,
    token_issued: Instant,
    token_lifetime: Duration,
    token_used: bool,
    cookies: Vec<CookieState>,
    next_id: u64,
    lock_timeout: Duration,
}

/// A cookie that was found: its id, never reused (a cookie revoked meanwhile is not found again
/// under it).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct CookieId(u64);

impl Sessions {
    pub(crate) fn new(now: Instant, token_lifetime: Duration, lock_timeout: Duration) -> Self {
        Self {
            token: random(),
            token_issued: now,
            token_lifetime,
            token_used: false,
            cookies: Vec::new(),
            next_id: 0,
            lock_timeout,
        }
    }

    /// The start token (hex), for the printed link.
    pub(crate) fn token(&self) -> String {
        hex(&self.token[..])
    }

    /// Whether the token can no longer be used (redeemed, or expired): its file may go.
    pub(crate) fn token_spent(&self, now: Instant) -> bool {
        self.token_used || now.duration_since(self.token_issued) > self.token_lifetime
    }

    /// Redeems the start token `t`.
    pub(crate) fn redeem(&mut self, t: &str, now: Instant) -> Redeemed {
        let Some(t) = unhex32(t) else { return Redeemed::Refused };
        if !same(&t, &self.token) {
            return Redeemed::Refused;
        }
        if now.duration_since(self.token_issued) > self.token_lifetime {
            // Late: refused, whether it was used or not (a link seen later, in a history or
            // on a screen, cannot end the session).
            return Redeemed::Refused;
        }
        if self.token_used {
            // Someone else (or the user, earlier) took it within its lifetime: nobody keeps
            // what it gave.
            self.cookies.clear();
            return Redeemed::Reused;
        }
        self.token_used = true;
        let cookie = random();
        let out = hex(&cookie[..]);
        if self.cookies.len() >= MAX_COOKIES {
            self.cookies.remove(0);
        }
        self.next_id += 1;
        self.cookies.push(CookieState { id: self.next_id, cookie, key: None });
        Redeemed::Cookie(out)
    }

    /// The cookie named in the `Cookie` header values `headers` (`qanat=…`), if it is live.
    pub(crate) fn cookie<'a>(&self, headers: impl IntoIterator<Item = &'a str>) -> Option<CookieId> {
        for h in headers {
            for pair in h.split(';') {
                let Some(v) = pair.trim().strip_prefix("qanat=") else { continue };
                let Some(v) = unhex32(v) else { continue };
                // Every live cookie is compared, in constant time each.
                let mut found = None;
                for c in &self.cookies {
                    if same(&v, &c.cookie) {
                        found = Some(CookieId(c.id));
                    }
                }
                if found.is_some() {
                    return found;
                }
            }
        }
        None
    }

    /// Whether `key` (hex, from the header) is the live key of `cookie`. A user's request
    /// (`activity`) counts as activity; a key idle for the lock timeout, or older than
    /// [`KEY_LIFETIME`], dies here.
    pub(crate) fn key_ok(
        &mut self,
        cookie: CookieId,
        key: Option<&str>,
        activity: bool,
        now: Instant,
    ) -> bool {
        let lock_timeout = self.lock_timeout;
        let Some(c) = self.find(cookie) else { return false };
        let Some(k) = &mut c.key else { return false };
        if now.duration_since(k.last_activity) > lock_timeout || now.duration_since(k.issued) > KEY_LIFETIME {
            c.key = None;
            return false;
        }
        let Some(given) = key.and_then(unhex32) else { return false };
        if !same(&given, &k.key) {
            return false;
        }
        if activity {
            k.last_activity = now;
        }
        true
    }

    /// A new key for `cookie` (the one before dies), as hex.
    pub(crate) fn issue_key(&mut self, cookie: CookieId, now: Instant) -> Option<String> {
        let c = self.find(cookie)?;
        let key = random();
        let out = hex(&key[..]);
        c.key = Some(KeyState { key, issued: now, last_activity: now });
        Some(out)
    }

    /// Forgets `cookie`'s key: the page is locked.
    pub(crate) fn lock(&mut self, cookie: CookieId) {
        if let Some(c) = self.find(cookie) {
            c.key = None;
        }
    }

    fn find(&mut self, cookie: CookieId) -> Option<&mut CookieState> {
        self.cookies.iter_mut().find(|c| c.id == cookie.0)
    }

    /// Forgets every key (the client was quit, or the profile wiped).
    pub(crate) fn lock_all(&mut self) {
        for c in &mut self.cookies {
            c.key = None;
        }
    }

    /// The lock timeout from now on.
    pub(crate) fn set_lock_timeout(&mut self, d: Duration) {
        self.lock_timeout = d;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MIN: Duration = Duration::from_secs(60);

    fn cookie_of(r: Redeemed) -> String {
        match r {
            Redeemed::Cookie(c) => c,
            r => panic!("{r:?}"),
        }
    }

    #[test]
    fn a_token_gives_one_cookie_once_and_a_second_use_revokes_everything() {
        let t0 = Instant::now();
        let mut s = Sessions::new(t0, 2 * MIN, 5 * MIN);
        let token = s.token();
        assert_eq!(s.redeem(&"0".repeat(64), t0), Redeemed::Refused);
        assert_eq!(s.redeem("short", t0), Redeemed::Refused);
        let c = cookie_of(s.redeem(&token, t0));
        let id = s.cookie([format!("other=1; qanat={c}").as_str()]).unwrap();
        assert!(s.issue_key(id, t0).is_some());
        assert!(s.token_spent(t0));
        // The second use: nothing it gave lives on.
        assert_eq!(s.redeem(&token, t0), Redeemed::Reused);
        assert!(s.cookie([format!("qanat={c}").as_str()]).is_none());
        assert!(s.cookies.is_empty());
    }

    #[test]
    fn a_used_token_seen_after_its_lifetime_is_refused_and_revokes_nothing() {
        let t0 = Instant::now();
        let mut s = Sessions::new(t0, 2 * MIN, 5 * MIN);
        let token = s.token();
        let c = cookie_of(s.redeem(&token, t0));
        assert_eq!(s.redeem(&token, t0 + 3 * MIN), Redeemed::Refused);
        assert!(s.cookie([format!("qanat={c}").as_str()]).is_some());
    }

    #[test]
    fn a_token_expires_unused() {
        let t0 = Instant::now();
        let mut s = Sessions::new(t0, 2 * MIN, 5 * MIN);
        let token = s.token();
        assert!(!s.token_spent(t0 + MIN));
        assert_eq!(s.redeem(&token, t0 + 2 * MIN + Duration::from_secs(1)), Redeemed::Refused);
        assert!(s.token_spent(t0 + 3 * MIN));
    }

    #[test]
    fn a_key_is_bound_to_its_cookie_and_dies_idle_locked_or_old() {
        let t0 = Instant::now();
        let mut s = Sessions::new(t0, 2 * MIN, 5 * MIN);
        let c = cookie_of(s.redeem(&s.token(), t0));
        let id = s.cookie([format!("qanat={c}").as_str()]).unwrap();
        assert!(!s.key_ok(id, None, true, t0), "no key before an unlock");
        let k = s.issue_key(id, t0).unwrap();
        assert!(s.key_ok(id, Some(&k), false, t0 + MIN));
        assert!(!s.key_ok(id, Some(&c), false, t0 + MIN), "the cookie is not the key");
        // Activity keeps it alive; the stream (no activity) does not.
        for m in 1..=4 {
            assert!(s.key_ok(id, Some(&k), true, t0 + 4 * m * MIN));
        }
        assert!(s.key_ok(id, Some(&k), false, t0 + 20 * MIN));
        assert!(!s.key_ok(id, Some(&k), false, t0 + 22 * MIN), "5 minutes without the user");
        assert!(!s.key_ok(id, Some(&k), true, t0 + 22 * MIN), "and dead for good");
        // Locked.
        let k = s.issue_key(id, t0).unwrap();
        s.lock(id);
        assert!(!s.key_ok(id, Some(&k), true, t0));
        // Old, however active.
        let k = s.issue_key(id, t0).unwrap();
        let mut t = t0;
        while t < t0 + KEY_LIFETIME {
            t += 4 * MIN;
            let _ = s.key_ok(id, Some(&k), true, t);
        }
        assert!(!s.key_ok(id, Some(&k), true, t + 4 * MIN), "12 hours, active or not");
    }
}
