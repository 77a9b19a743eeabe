//! The safety code: 60 digits that two members of a conversation compare out of band (in person,
//! or on a call they trust) to learn that nobody sits between them. IO-free: a function of the
//! conversation's id and the two members' keys.
//!
//! # Definition (version 1)
//!
//! ```text
//! half(key)    = first 30 bytes of SHA-512("qanat safety code v1\0" ‖ u16 len(conv_id) ‖ conv_id ‖ key (32))
//! digits(half) = six 5-byte big-endian chunks, each mod 100000, zero-padded to 5 digits   (30 digits)
//! code         = digits(half(lower key)) ‖ digits(half(higher key))                         (60 digits)
//! ```
//!
//! - **The keys** are the two members' per-conversation Ed25519 signature keys
//!   ([`MemberId`](crate::mls::MemberId)): the key that signs everything a member sends in the
//!   conversation, which never changes for the conversation's life. "Lower" is the smaller of
//!   the two 32-byte strings compared byte by byte, so both sides put the halves in one order.
//! - **The conversation id** is the MLS group id ([`ConversationId`](crate::mls::ConversationId),
//!   32 random bytes for a conversation Qanat creates, chosen by the member who created it and
//!   the same for every member: it is in every message's clear header). It makes a code mean one
//!   conversation: the keys are fresh per conversation anyway, and a contact's inviter creates
//!   the conversation, choosing its id, only once the accepter's key has arrived in the
//!   invitation's answer, so an attacker who answers an honest inviter's link does not choose
//!   the id of that side.
//! - Shown as 12 groups of 5 digits (3 rows of 4), always Latin digits, left to right: two
//!   people whose interfaces speak different languages must see the same characters.
//!
//! Both sides compute the same code, and it stays the same for the conversation's life: commits
//! (members added, removed, keys updated) change neither the id nor a member's signature key.
//! It is not MLS's `epoch_authenticator`, which changes at every commit (two people on a call may
//! be in different epochs) and vouches for the group's state, not for a person's key.
//!
//! # What it proves, and what it does not
//!
//! If Alice and Bob read the same code, the key that signs everything Alice receives as Bob's is
//! the key Bob's device holds, and conversely: nobody who saw or replaced the invitation link
//! (or the channel it travelled on) sits in between, relaying between two conversations of its
//! own. It does not say who Bob is: that is what the comparison itself establishes, in person or
//! on a call where Alice recognises Bob. Reading the code to each other inside the conversation
//! under test proves nothing (whoever sits in between rewrites it), nor does it protect against a
//! device that is itself compromised.
//!
//! # Why a man in the middle cannot grind a matching code
//!
//! Mallory in the middle has a conversation with Alice (keys A and M₁, id g₁) and another with Bob
//! (M₂ and B, id g₂). For the codes to match, each 30-digit half of Alice's code must equal one
//! of Bob's: Mallory must find keys (and an id) whose half equals a half fixed by an honest
//! party's key: a second preimage of a 30-digit value under SHA-512, 10³⁰ ≈ 2⁹⁹·⁷ trials for
//! each, and no birthday shortcut, since the targets are fixed before she searches (the honest
//! inviter's key with the id it chose after Mallory's answer arrived; the other person's key,
//! which Mallory's own conversation with them must contain). Even if Mallory chose both ids, a
//! match needs all 60 digits (≈ 199 bits) across lists she builds, each entry pinned on one side
//! by an honest key: about 2⁹⁹·⁷ work again. A 5-byte chunk reduced mod 100000 is off from
//! uniform by less than 10⁻⁷, which changes none of this.

use std::fmt;

use sha2::{Digest as _, Sha512};

/// The label every half's hash starts with (domain separation, and the code's version).
pub const LABEL: &[u8] = b"qanat safety code v1\0";

/// Digits of a code.
pub const DIGITS: usize = 60;

/// Digits per group as shown.
pub const GROUP_DIGITS: usize = 5;

/// Groups per row as shown (3 rows).
pub const GROUPS_PER_ROW: usize = 4;

/// Bytes of the hash each half is made of.
const HALF_BYTES: usize = 30;

/// Bytes of each chunk that gives 5 digits.
const CHUNK_BYTES: usize = 5;

/// The safety code of a pair of members in one conversation: 60 ASCII digits.
///
/// Made by [`SafetyCode::new`] or read back by [`SafetyCode::parse`]; its [`fmt::Display`] is the
/// 12 groups of 5 on one line, [`SafetyCode::rows`] the 3 rows of 4 groups. `Debug` shows no
/// digit (a code names a pair of keys).
#[derive(Clone, PartialEq, Eq)]
pub struct SafetyCode(String);

impl SafetyCode {
    /// The code of the members with keys `a` and `b` (in either order) in the conversation
    /// `conversation`. `None` if the conversation's id is longer than its u16 length prefix
    /// holds (Qanat makes 32-byte ids).
    pub fn new(conversation: &[u8], a: &[u8; 32], b: &[u8; 32]) -> Option<Self> {
        let len = u16::try_from(conversation.len()).ok()?;
        let (low, high) = if a <= b { (a, b) } else { (b, a) };
        let mut code = String::with_capacity(DIGITS);
        for key in [low, high] {
            let mut h = Sha512::new();
            h.update(LABEL);
            h.update(len.to_be_bytes());
            h.update(conversation);
            h.update(key);
            let hash = h.finalize();
            for chunk in hash[..HALF_BYTES].chunks_exact(CHUNK_BYTES) {
                let n = chunk.iter().fold(0u64, |n, b| n << 8 | u64::from(*b));
                code.push_str(&format!("{:05}", n % 100_000));
            }
        }
        Some(Self(code))
    }

    /// A code as a person typed or pasted it: 60 ASCII digits, with any whitespace between
    /// them (ignored). `None` for anything else.
    pub fn parse(text: &str) -> Option<Self> {
        let digits: String = text.chars().filter(|c| !c.is_whitespace()).collect();
        Self::from_digits(&digits)
    }

    /// Exactly 60 ASCII digits.
    pub(crate) fn from_digits(digits: &str) -> Option<Self> {
        (digits.len() == DIGITS && digits.bytes().all(|b| b.is_ascii_digit()))
            .then(|| Self(digits.to_owned()))
    }

    /// The 60 digits, without separators.
    pub fn digits(&self) -> &str {
        &self.0
    }

    /// The 12 groups of 5 digits.
    pub fn groups(&self) -> impl Iterator<Item = &str> {
        // ASCII digits only: every index is a character boundary.
        (0..DIGITS / GROUP_DIGITS).filter_map(|i| self.0.get(i * GROUP_DIGITS..(i + 1) * GROUP_DIGITS))
    }

    /// The 3 rows of 4 groups, each group separated by a space.
    pub fn rows(&self) -> Vec<String> {
        let groups: Vec<&str> = self.groups().collect();
        groups.chunks(GROUPS_PER_ROW).map(|row| row.join(" ")).collect()
    }
}

impl fmt::Display for SafetyCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, g) in self.groups().enumerate() {
            if i > 0 {
                f.write_str(" ")?;
            }
            f.write_str(g)?;
        }
        Ok(())
    }
}

impl fmt::Debug for SafetyCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SafetyCode(..)")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn both_orders_give_one_code_of_sixty_digits() {
        let (a, b) = ([1u8; 32], [2u8; 32]);
        let code = SafetyCode::new(&[7; 32], &a, &b).unwrap();
        assert_eq!(code, SafetyCode::new(&[7; 32], &b, &a).unwrap());
        assert_eq!(code.digits().len(), DIGITS);
        assert!(code.digits().bytes().all(|c| c.is_ascii_digit()));
        // The lower key's half comes first: the code of (a, a) starts with a's half.
        let aa = SafetyCode::new(&[7; 32], &a, &a).unwrap();
        assert_eq!(code.digits()[..30], aa.digits()[..30]);
        assert_ne!(code, SafetyCode::new(&[8; 32], &a, &b).unwrap(), "another conversation");
    }

    #[test]
    fn shown_as_twelve_groups_in_three_rows_and_read_back() {
        let code = SafetyCode::new(b"conversation", &[3; 32], &[4; 32]).unwrap();
        let rows = code.rows();
        assert_eq!(rows.len(), 3);
        for row in &rows {
            assert_eq!(row.len(), 4 * 5 + 3);
            assert_eq!(row.split(' ').count(), 4);
        }
        assert_eq!(code.to_string(), rows.join(" "));
        assert_eq!(SafetyCode::parse(&rows.join("\n")), Some(code.clone()));
        assert_eq!(SafetyCode::parse(&format!("  {} ", code.digits())), Some(code.clone()));
        assert_eq!(format!("{code:?}"), "SafetyCode(..)");
        for bad in
            ["", "123", &code.digits()[1..], &format!("{}0", code.digits()), &code.digits().replace('1', "x")]
        {
            if bad != code.digits() {
                assert_eq!(SafetyCode::parse(bad), None, "{bad:?}");
            }
        }
        // Other digits than ASCII's are refused (people compare the characters they see).
        let arabic: String =
            code.digits().chars().map(|c| char::from_u32(0x0660 + (c as u32 - 0x30)).unwrap()).collect();
        assert_eq!(SafetyCode::parse(&arabic), None);
    }

    #[test]
    fn a_conversation_id_over_the_length_prefix_is_refused() {
        assert!(SafetyCode::new(&vec![0; 65_535], &[0; 32], &[1; 32]).is_some());
        assert!(SafetyCode::new(&vec![0; 65_536], &[0; 32], &[1; 32]).is_none());
    }
}
